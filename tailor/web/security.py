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


def current_user(request: Request, ws: Workspace | None = None) -> str | None:
    """The signed-in user, only while the session's token is still the user's (``ws`` given): a
    logout, a password reset or the user's removal ends every session, an old cookie included."""
    who = request.session.get("user")
    if not who or ws is None:
        return who
    from tailor.web import users

    token = users.session_token(ws, who)
    if token is None or not hmac.compare_digest(str(request.session.get("sid", "")), token):
        request.session.clear()
        return None
    return who


class LoginBackoff:
    """Failed sign-ins per user name and per client: after ``free`` failures within ``window``
    seconds, each next try waits twice as long as the one before (up to ``cap``), and a try during
    the wait is refused without checking the password, so guessing runs at a few per minute."""

    def __init__(self, free: int = 5, window: float = 300.0, base: float = 1.0, cap: float = 300.0, clock=None):
        import time

        self.free, self.window, self.base, self.cap = free, window, base, cap
        self.clock = clock or time.monotonic
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str) -> list[float]:
        now = self.clock()
        kept = [t for t in self._failures.get(key, []) if now - t < self.window]
        self._failures[key] = kept
        return kept

    def wait(self, *keys: str) -> float:
        """Seconds until a try for any of ``keys`` is allowed again (0: now)."""
        longest = 0.0
        for key in keys:
            recent = self._recent(key)
            if len(recent) >= self.free:
                delay = min(self.cap, self.base * 2 ** (len(recent) - self.free))
                longest = max(longest, recent[-1] + delay - self.clock())
        return max(0.0, longest)

    def failed(self, *keys: str) -> None:
        for key in keys:
            self._recent(key).append(self.clock())

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)
