"""Who acts: every state change names an identity, never just a free-text flag.

The CLI acts as the configured identity (``TAILOR_USER``) or else the OS user; the review page
acts as its logged-in user; the scheduler acts as ``service:scheduler``. Identities are compared
normalised (Unicode form, case and spacing make no new person). A ``service:`` identity may
request candidates but never approve, reject or roll back unless a setting names it.
"""
from __future__ import annotations

import getpass
import os
import unicodedata

from workspace.errors import UserError

SERVICE_PREFIX = "service:"
SCHEDULER = "service:scheduler"


def normalise(name: str | None) -> str:
    """``"  Alice  Smith "`` and ``"alice smith"`` are one person."""
    return " ".join(unicodedata.normalize("NFKC", str(name or "")).casefold().split())


def is_service(identity: str) -> bool:
    return normalise(identity).startswith(SERVICE_PREFIX)


def cli_identity() -> str:
    """The CLI's actor: ``TAILOR_USER`` if set, else the OS user."""
    configured = os.environ.get("TAILOR_USER", "").strip()
    if configured:
        return normalise(configured)
    try:
        return normalise(getpass.getuser())
    except (KeyError, OSError):
        raise UserError("cannot tell who you are: set TAILOR_USER to your identity") from None


def resolve(claimed: str | None, flag: str) -> str:
    """The CLI identity; a ``flag`` value naming someone else is refused (no acting as another)."""
    identity = cli_identity()
    if claimed and claimed.strip() and normalise(claimed) != identity:
        raise UserError(f"{flag} {claimed.strip()!r} is not you: you act as {identity!r} "
                        "(the OS user, or TAILOR_USER)")
    return identity


def require_person(identity: str, what: str) -> str:
    """A normalised human identity, or a one-line refusal for a service identity."""
    who = normalise(identity)
    if not who:
        raise UserError(f"{what} needs an identity: set TAILOR_USER or log in")
    if is_service(who):
        raise UserError(f"{who} is a service identity: it may request candidates but not {what}")
    return who


def same_person(a: str | None, b: str | None) -> bool:
    return bool(normalise(a)) and normalise(a) == normalise(b)


def may_rollback_alone(identity: str, allowed: str) -> bool:
    """``allowed``: "*" (any person) or comma-separated identities (services only if named)."""
    names = {normalise(n) for n in allowed.split(",") if n.strip()}
    who = normalise(identity)
    if who in names:
        return True
    return "*" in names and not is_service(who)
