"""The review page: log in, see pending candidates with their gates and the champion, open one
(per-label results, confusion matrix, validation report, isolation, data changes), approve or
reject it with a reason. Decisions go through ``registry.approval`` (the same transitions as the
CLI) as the logged-in identity. Jinja2 escapes everything rendered."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.middleware.sessions import SessionMiddleware

from registry import approval, review
from registry.candidates import PENDING
from tailor.web import security, users
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import Settings

TEMPLATES = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                        autoescape=select_autoescape(default=True, default_for_string=True))


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


def create_app(ws: Workspace, settings: Settings) -> FastAPI:
    app = FastAPI(title="Tailor review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SessionMiddleware, secret_key=security.session_secret(ws), session_cookie="tailor_review",
                       same_site="strict", https_only=False, max_age=8 * 3600)

    def page(request: Request, name: str, status: int = 200, **values) -> HTMLResponse:
        html = TEMPLATES.get_template(name).render(user=security.current_user(request),
                                                   csrf=security.csrf_token(request), **values)
        return HTMLResponse(html, status_code=status, headers={"X-Frame-Options": "DENY",
                                                               "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'"})

    def need_user(request: Request) -> str:
        user = security.current_user(request)
        if not user:
            raise HTTPException(303, headers={"Location": "/login"})
        return user

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
        who = users.check(ws, form.get("user", ""), form.get("password", ""))
        if who is None:
            return page(request, "login.html", status=401, error="unknown user or wrong password")
        request.session.clear()
        request.session["user"] = who
        return RedirectResponse("/", status_code=303)

    @app.post("/logout")
    async def logout(request: Request):
        security.check_csrf(request, await _form(request))
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/")
    def pending(request: Request):
        need_user(request)
        rows = approval.list_reviews(PENDING, settings)
        return page(request, "list.html", rows=rows)

    @app.get("/t/{tenant}/v/{version}")
    def candidate(request: Request, tenant: str, version: str):
        need_user(request)
        return _candidate_page(request, tenant, version)

    def _candidate_page(request: Request, tenant: str, version: str, error: str | None = None,
                        notice: str | None = None, status: int = 200):
        try:
            info = review.candidate(settings, tenant, version)
        except UserError as exc:
            return page(request, "error.html", status=404, error=str(exc))
        return page(request, "candidate.html", status=status, c=info, error=error, notice=notice,
                    docs=_docs_link(ws, info.get("data_docs")))

    @app.get("/t/{tenant}/v/{version}/confusion.png")
    def confusion(request: Request, tenant: str, version: str):
        need_user(request)
        try:
            return Response(review.confusion_png(tenant, version), media_type="image/png")
        except UserError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.post("/t/{tenant}/v/{version}/{decision}")
    async def decide(request: Request, tenant: str, version: str, decision: str):
        user = need_user(request)
        form = await _form(request)
        security.check_csrf(request, form)
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
            return _candidate_page(request, tenant, version, error=str(exc), status=400)
        return _candidate_page(request, tenant, version, notice=notice)

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
    uvicorn.run(create_app(ws, settings), host=host, port=port, log_level="warning")
