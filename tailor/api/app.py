"""The prediction API: every tenant's ``@champion`` from one process (``tailor serve-api``).

Routes: ``POST /v1/tenants/{tenant}/predict`` (texts of one tenant), ``POST /v1/predict`` (texts of
several tenants in one request), ``GET /healthz``, ``GET /readyz``, ``GET /metrics`` (Prometheus).
A caller authenticates with its API key (``Authorization: Bearer KEY`` or ``X-API-Key``) and may
query only its own tenants (403 otherwise). A champion the isolation or drift checks refuse is a
409 with the one-line reason; a tenant without a champion is a 404. Every response carries an
``X-Request-ID`` (the caller's, or a new one), and every log line of the request names it.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, field_validator

from tailor.api.engine import Engine, Refused
from tailor.api.keys import Caller, KeyRing
from tailor.api.limits import BodyLimit
from tailor.api.metrics import Metrics
from tailor.output import not_unicode
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import Settings
from workspace.tenants import check_tenant_id

log = logging.getLogger("tailor.api")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Texts(BaseModel):
    texts: list[str] = Field(min_length=1, description="texts to classify")

    @field_validator("texts")
    @classmethod
    def _unicode(cls, texts: list[str]) -> list[str]:
        bad = not_unicode(texts)
        if bad:   # a lone surrogate ("\ud800" in JSON): the encoder cannot take it
            raise ValueError(f"text {bad} is not Unicode text (it holds a lone surrogate)")
        return texts


class TenantTexts(Texts):
    tenant: str


class Mixed(BaseModel):
    requests: list[TenantTexts] = Field(min_length=1, description="texts of one or more tenants")


def _encodable(value):
    """``value`` with every string made encodable as UTF-8 (lone surrogates backslash-escaped)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encodable(v) for v in value]
    return value


def create_app(ws: Workspace, settings: Settings, engine: Engine | None = None, start: bool = True) -> FastAPI:
    metrics = engine.metrics if engine is not None else Metrics()
    keys = KeyRing(ws)
    engine = engine or Engine(settings, metrics, on_poll=keys.refresh)
    conf = settings.serving

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start:
            await run_in_threadpool(engine.start)
        log.info("serving: %d caller key(s), cache of %d tenants, poll every %.1f s",
                 len(keys), conf.cache_tenants, conf.poll_seconds)
        yield
        log.info("shutting down: answering queued requests")
        await run_in_threadpool(engine.stop)

    app = FastAPI(title="Tailor predictions", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=conf.max_request_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        # FastAPI's own 422 echoes the input, and rendering a lone surrogate ("\ud800" in the
        # JSON) as UTF-8 fails into a 500: the same answer, with such characters escaped
        return JSONResponse(status_code=422, content={"detail": _encodable(jsonable_encoder(exc.errors()))})
    app.state.engine, app.state.keys, app.state.metrics = engine, keys, metrics

    @app.middleware("http")
    async def request_id(request: Request, call_next):
        given = request.headers.get("x-request-id", "")
        rid = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = rid
        start = time.perf_counter()
        response = await call_next(request)
        took = time.perf_counter() - start
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.http.labels(path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(took)
        response.headers["X-Request-ID"] = rid
        if path.startswith("/v1/"):
            log.info("request_id=%s caller=%s %s %s status=%d ms=%.1f", rid, getattr(request.state, "caller", "-"),
                     request.method, request.url.path, response.status_code, took * 1000)
        return response

    def caller(request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key")
        who = keys.caller(key)
        if who is None:
            raise HTTPException(401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"})
        request.state.caller = who.name
        return who

    def known(tenant: str) -> str:
        """A tenant's metric label: its id when it has a champion in the registry, else "unknown"
        (a caller's made-up names grow no label series)."""
        return tenant if engine.known(tenant) else "unknown"

    def allowed(who: Caller, tenant: str, request: Request) -> None:
        if not who.may_query(tenant):
            metrics.requests.labels(known(tenant), "forbidden").inc()
            log.warning("request_id=%s caller=%s may not query tenant %r", request.state.request_id, who.name,
                        tenant[:80])
            raise HTTPException(403, f"caller {who.name} may not query tenant {tenant[:80]}")
        try:
            check_tenant_id(tenant)
        except UserError as exc:
            raise HTTPException(400, str(exc)) from None

    def too_many(n: int) -> None:
        if n > conf.max_request_texts:
            raise HTTPException(413, f"{n} texts in one request; at most {conf.max_request_texts} "
                                     "(serving.max_request_texts)")

    @app.post("/v1/tenants/{tenant}/predict")
    def predict(tenant: str, body: Texts, request: Request, who: Caller = Depends(caller)):
        allowed(who, tenant, request)
        too_many(len(body.texts))
        try:
            result = engine.predict(tenant, body.texts)
        except Refused as exc:
            metrics.requests.labels(known(tenant), "refused" if exc.status == 409 else "no_champion").inc()
            log.warning("request_id=%s tenant=%s refused (%d): %s", request.state.request_id, tenant, exc.status, exc)
            return JSONResponse({"detail": str(exc), "tenant": tenant}, status_code=exc.status)
        metrics.requests.labels(tenant, "ok").inc()
        return {**result, "request_id": request.state.request_id}

    @app.post("/v1/predict")
    def predict_mixed(body: Mixed, request: Request, who: Caller = Depends(caller)):
        """Texts of several tenants: every tenant is checked first (one forbidden tenant: 403 for
        the whole request); then all are queued together, so they share one frozen pass. A refused
        tenant's item carries ``error`` and ``status`` (409/404); the others are answered."""
        for item in body.requests:
            allowed(who, item.tenant, request)
        too_many(sum(len(item.texts) for item in body.requests))
        started = []
        for item in body.requests:
            try:
                started.append(engine.start_predict(item.tenant, item.texts))
            except Refused as exc:
                metrics.requests.labels(known(item.tenant), "refused" if exc.status == 409 else "no_champion").inc()
                log.warning("request_id=%s tenant=%s refused (%d): %s", request.state.request_id, item.tenant,
                            exc.status, exc)
                started.append({"tenant": item.tenant, "error": str(exc), "status": exc.status})
        results = []
        for item, s in zip(body.requests, started):
            if isinstance(s, dict):
                results.append(s)
            else:
                results.append(engine.wait(s))
                metrics.requests.labels(item.tenant, "ok").inc()
        return {"results": results, "request_id": request.state.request_id}

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/readyz")
    def readyz():
        ok, why = engine.ready()
        body = {"ready": ok, "reason": why, "resident_tenants": engine.resident()}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(ws: Workspace, settings: Settings, host: str, port: int) -> None:
    """Run the API with uvicorn until SIGINT/SIGTERM; requests in flight finish first
    (``serving.shutdown_seconds``)."""
    import uvicorn

    handler = logging.StreamHandler()  # the workspace's log file keeps errors; requests go to stderr
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    app = create_app(ws, settings)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False,
                            timeout_graceful_shutdown=settings.serving.shutdown_seconds)
    from tailor.api import local

    local.announce(ws, host, port)  # the same workspace's `tailor predict` asks this process (warm)
    try:
        uvicorn.Server(config).run()
    finally:
        local.withdraw(ws)
