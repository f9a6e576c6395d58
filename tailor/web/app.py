"""The review page: log in, see pending candidates with their gates and the champion, open one
(per-label results, confusion matrix, validation report, isolation, data changes), approve or
reject it with a reason. Decisions go through ``registry.review.approval`` (the same transitions as the
CLI) as the logged-in identity. Jinja2 escapes everything rendered."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from registry.artifacts import compare
from registry.review import approval, bases, lineage, reviewer
from registry.storage.names import PENDING
from tailor.commands import same_texts_cell
from tailor.web import security, users
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import Settings

TEMPLATES = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                        autoescape=select_autoescape(default=True, default_for_string=True))
TEMPLATES.filters["data_change"] = compare.data_change_text  # `+3 -1 since v1 (Billing +2 -1, Login +1)`
TEMPLATES.filters["measured"] = compare.measured_text  # `0.833 [0.55,0.95] n=12`
TEMPLATES.filters["same_texts"] = same_texts_cell  # `0.833 [0.55,0.95] vs v1 0.667 [0.39,0.86], n=12`


async def _form(request: Request) -> dict:
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _docs_link(ws: Workspace, uri: str | None) -> str | None:
    """A file:// Data Docs page as a link this app serves (only inside the workspace's site)."""
    if not uri:
        return None
    path = Path(urlparse(uri).path)
    try:
        return "/docs/" + quote(str(path.resolve().relative_to(ws.data_docs_dir.resolve())))
    except ValueError:
        return None


STATIC = Path(__file__).parent / "static"
# the app's own pages: nothing but this origin's stylesheet and images, no script, never framed
PAGE_CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
# Data Docs pages (Great Expectations links its scripts and styles from CDNs): sandboxed into an
# origin of their own, no script runs and nothing loads from elsewhere
DOCS_CSP = ("sandbox; default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "frame-ancestors 'none'")
LOCAL_HOSTS = ["localhost", "127.0.0.1", "::1", "[::1]"]

# CLI wording in a refusal, as the page says it
PAGE_WORDS = {"reason must not be empty: pass --reason TEXT": "write a reason before you decide",
              "Fix it, or approve with --override-reason TEXT": "Fix it, or say why you override the failed gates",
              "use `tailor rollback`": "use rollback (tailor rollback)"}


def page_words(message: str) -> str:
    for cli, words in PAGE_WORDS.items():
        message = message.replace(cli, words)
    return message


def _run_link(settings: Settings, run: dict | None) -> str | None:
    uri = settings.stores.tracking_uri
    if run and uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{quote(run['experiment_id'])}/runs/{quote(run['run_id'])}"
    return None


def create_app(ws: Workspace, settings: Settings, allowed_hosts: list[str] | None = None) -> FastAPI:
    """``allowed_hosts``: the Host names answered (others get 400, against DNS rebinding); by
    default the local names."""
    app = FastAPI(title="Tailor review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SessionMiddleware, secret_key=security.session_secret(ws), session_cookie="tailor_review",
                       same_site="strict", https_only=False, max_age=8 * 3600)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts or LOCAL_HOSTS))
    backoff = security.LoginBackoff()

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        docs = request.url.path.startswith("/docs/")
        response.headers["Content-Security-Policy"] = DOCS_CSP if docs else PAGE_CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def page(request: Request, name: str, status: int = 200, **values) -> HTMLResponse:
        flash = request.session.pop("flash", None) or {}
        values = {"notice": flash.get("notice"), "error": flash.get("error"), **values}
        html = TEMPLATES.get_template(name).render(user=security.current_user(request, ws),
                                                   csrf=security.csrf_token(request), **values)
        return HTMLResponse(html, status_code=status)

    def need_user(request: Request) -> str:
        user = security.current_user(request, ws)
        if not user:
            raise HTTPException(303, headers={"Location": "/login"})
        return user

    @app.get("/static/review.css")
    def stylesheet():
        return FileResponse(STATIC / "review.css", media_type="text/css")

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    @app.get("/login")
    def login_form(request: Request):
        return page(request, "login.html", error=None)

    @app.post("/login")
    async def login(request: Request):
        form = await _form(request)
        security.check_csrf(request, form)
        name = users.identity.normalise(form.get("user", ""))
        keys = ("user:" + name, "client:" + (request.client.host if request.client else "?"))
        wait = backoff.wait(*keys)
        if wait > 0:
            return page(request, "login.html", status=429,
                        error=f"too many failed sign-ins: try again in {int(wait) + 1} s")
        who = users.check(ws, name, form.get("password", ""))
        if who is None:
            backoff.failed(*keys)
            return page(request, "login.html", status=401, error="unknown user or wrong password")
        backoff.succeeded(*keys)
        request.session.clear()
        request.session.update(user=who, sid=users.session_token(ws, who))
        return RedirectResponse("/", status_code=303)

    @app.post("/logout")
    async def logout(request: Request):
        security.check_csrf(request, await _form(request))
        who = security.current_user(request, ws)
        if who:
            users.end_sessions(ws, who)  # every session of this user ends, a copied cookie included
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/")
    def pending(request: Request):
        need_user(request)
        rows = approval.list_reviews(PENDING, settings)
        return page(request, "list.html", rows=rows, bases=bases.list_bases(PENDING))

    @app.get("/base/v/{version}")
    def base_candidate(request: Request, version: str):
        need_user(request)
        try:
            info = bases.base_page(version)
        except UserError as exc:
            return page(request, "error.html", status=404, error=page_words(str(exc)))
        return page(request, "base_model.html", b=info)

    @app.post("/base/v/{version}/{decision}")
    async def decide_base(request: Request, version: str, decision: str):
        user = need_user(request)
        form = await _form(request)
        security.check_csrf(request, form)
        here = f"/base/v/{quote(version, safe='')}"
        if decision not in ("approve", "reject"):
            raise HTTPException(404, "unknown decision")
        if not form.get("reason", "").strip():
            request.session["flash"] = {"error": f"write a reason before you {decision}"}
            return RedirectResponse(here, status_code=303)
        try:
            if decision == "approve":
                result = bases.approve_base(ws, settings, version, user, form.get("reason", ""))
                notice = f"tailor-base v{result['version']} is now current (approved by {user})"
            else:
                bases.reject_base(ws, version, user, form.get("reason", ""))
                notice = f"tailor-base v{version} rejected by {user}"
        except UserError as exc:
            request.session["flash"] = {"error": page_words(str(exc))}
            return RedirectResponse(here, status_code=303)
        request.session["flash"] = {"notice": notice}
        return RedirectResponse(here, status_code=303)

    @app.get("/t/{tenant}/v/{version}")
    def candidate(request: Request, tenant: str, version: str):
        need_user(request)
        return _candidate_page(request, tenant, version)

    def _candidate_page(request: Request, tenant: str, version: str, error: str | None = None,
                        notice: str | None = None, status: int = 200):
        try:
            info = reviewer.candidate(settings, tenant, version)
        except UserError as exc:
            return page(request, "error.html", status=404, error=page_words(str(exc)))
        waiting = [r for r in approval.list_reviews(PENDING, None)
                   if (r["tenant"], r["version"]) != (info["tenant"], info["version"])]
        later = [r for r in waiting if (r["tenant"], int(r["version"])) > (info["tenant"], int(info["version"]))]
        following = (later or waiting or [None])[0]
        extra = {} if error is None and notice is None else {"error": error, "notice": notice}
        decisions, history = lineage.decisions(ws, info["tenant"], info["version"])
        return page(request, "candidate.html", status=status, c=info, docs=_docs_link(ws, info.get("data_docs")),
                    run_link=_run_link(settings, info.get("run")), next_pending=following,
                    decisions=decisions, history=history, **extra)

    @app.get("/t/{tenant}/v/{version}/confusion.png")
    def confusion(request: Request, tenant: str, version: str):
        need_user(request)
        try:
            return Response(reviewer.confusion_png(tenant, version), media_type="image/png")
        except UserError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.post("/t/{tenant}/v/{version}/{decision}")
    async def decide(request: Request, tenant: str, version: str, decision: str):
        user = need_user(request)
        form = await _form(request)
        security.check_csrf(request, form)
        here = f"/t/{quote(tenant, safe='')}/v/{quote(version, safe='')}"
        if decision in ("approve", "reject") and not form.get("reason", "").strip():
            request.session["flash"] = {"error": f"write a reason before you {decision}"}
            return RedirectResponse(here, status_code=303)
        try:
            if decision == "approve":
                result = approval.approve(ws, settings, tenant, version, user, form.get("reason", ""),
                                          override_reason=form.get("override_reason") or None)
                notice = f"{tenant} v{result['version']} is now champion (approved by {user})"
            elif decision == "reject":
                approval.reject(ws, tenant, version, user, form.get("reason", ""))
                notice = f"{tenant} v{version} rejected by {user}"
            else:
                raise HTTPException(404, "unknown decision")
        except UserError as exc:
            request.session["flash"] = {"error": page_words(str(exc))}
            return RedirectResponse(here, status_code=303)
        # post/redirect/get: a reload shows the page again instead of deciding twice
        request.session["flash"] = {"notice": notice}
        return RedirectResponse(here, status_code=303)

    @app.get("/docs/{path:path}")
    def docs(request: Request, path: str):
        need_user(request)
        root = ws.data_docs_dir.resolve()
        target = (root / path).resolve()
        if root not in target.parents or not target.is_file():
            raise HTTPException(404, "no such page")
        return FileResponse(target)

    return app


def serve(ws: Workspace, settings: Settings, host: str, port: int) -> None:
    """Run the app with uvicorn until Ctrl-C (one process; decisions are serialised by the locks)."""
    import uvicorn

    if not users.load(ws):
        raise UserError("no review-page users yet: add one with `tailor user add NAME`")
    print(f"review page on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    import socket

    # on every interface: this machine's own names; behind a proxy, the proxy must send one of them
    hosts = LOCAL_HOSTS + ([host] if host not in ("0.0.0.0", "::", "") else [socket.gethostname(), socket.getfqdn()])
    uvicorn.run(create_app(ws, settings, hosts), host=host, port=port, log_level="warning")
