"""Sessions and CSRF for the review page: a signed session cookie (Starlette's SessionMiddleware,
key kept in the workspace), a per-session token every form must echo, and an Origin check, so a
page on another origin cannot post a decision with the reviewer's cookie."""
from __future__ import annotations

import hmac
import os
import secrets
from urllib.parse import urlparse

from fastapi import HTTPException, Request

from workspace.paths import Workspace


def session_secret(ws: Workspace) -> str:
    """A random key created once per workspace (0600), so sessions survive restarts."""
    path = ws.state_dir / "web-secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, form: dict) -> None:
    """Refuse a POST whose token is not the session's, or that comes from another origin."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin and origin != "null":
        if urlparse(origin).netloc != request.url.netloc:
            raise HTTPException(403, "cross-site request refused")
    elif origin == "null":
        raise HTTPException(403, "cross-site request refused")
    expected = request.session.get("csrf", "")
    if not expected or not hmac.compare_digest(str(form.get("csrf", "")), expected):
        raise HTTPException(403, "missing or wrong form token (reload the page)")


def current_user(request: Request) -> str | None:
    return request.session.get("user")
