"""Who acts: every state change names an identity, never just a free-text flag.

The CLI acts as the configured identity (``TAILOR_USER``) or else the OS user; the review page
acts as its logged-in user; the scheduler acts as ``service:scheduler``. Identities are compared
normalised (Unicode NFKC, case and spacing make no new person), and a name that only looks like
another is refused where identities enter (``tailor user add``, ``TAILOR_USER``): invisible
characters (a zero-width space) and letters of different scripts mixed in one name (a Cyrillic
"о" in a Latin name), after Unicode TR39's "highly restrictive" profile. A ``service:`` identity may
request candidates but never approve, reject or roll back unless a setting names it.
"""
from __future__ import annotations

import getpass
import os
import unicodedata

from workspace.errors import UserError

SERVICE_PREFIX = "service:"
SCHEDULER = "service:scheduler"


# Scripts that may share one name (TR39 "highly restrictive"): Latin with Japanese, Chinese or Korean.
_MIXES = ({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}, {"LATIN", "HAN", "BOPOMOFO"}, {"LATIN", "HAN", "HANGUL"})
# Letters that render as nothing (fillers), beside the format characters (category Cf).
_BLANK = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}


def _invisible(ch: str) -> bool:
    return ch in _BLANK or (unicodedata.category(ch) in ("Cf", "Cc", "Co", "Cn", "Zl", "Zp") and ch not in "\t\n")


def normalise(name: str | None) -> str:
    """``"  Alice  Smith "`` and ``"alice smith"`` are one person (and so is ``"al\\u200bice"``:
    invisible characters are dropped before names are compared)."""
    text = unicodedata.normalize("NFKC", str(name or ""))
    return " ".join("".join(ch for ch in text if not _invisible(ch)).casefold().split())


def _script(ch: str) -> str | None:
    """The script of a letter, from its Unicode name (``unicodedata`` has no script property);
    None for what any script uses (digits, punctuation, modifier letters)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    word = unicodedata.name(ch, "").split(" ")[0]
    if word in ("CJK", "IDEOGRAPHIC"):
        return "HAN"
    if word == "KATAKANA-HIRAGANA":
        return "KATAKANA"
    return None if word in ("", "MODIFIER") else word


def look_alike_problem(name: str) -> str | None:
    """Why ``name`` could pass for someone else's name, or None."""
    text = unicodedata.normalize("NFKC", str(name or ""))
    hidden = sorted({f"U+{ord(ch):04X}" for ch in text if _invisible(ch)})
    if hidden:
        return f"contains invisible character(s) {', '.join(hidden)}"
    scripts = {s for s in map(_script, text) if s}
    if len(scripts) > 1 and not any(scripts <= mix for mix in _MIXES):
        return f"mixes letters of {' and '.join(sorted(s.title() for s in scripts))}, so it can look like another name"
    return None


def checked(name: str, what: str) -> str:
    """``name`` normalised, or a one-line refusal naming ``what`` when it could pass for another."""
    problem = look_alike_problem(name)
    if problem:
        raise UserError(f"{what} {name.strip()!r} {problem}: type it in one script, without hidden characters")
    return normalise(name)


def is_service(identity: str) -> bool:
    return normalise(identity).startswith(SERVICE_PREFIX)


def cli_identity() -> str:
    """The CLI's actor: ``TAILOR_USER`` if set, else the OS user."""
    configured = os.environ.get("TAILOR_USER", "").strip()
    if configured:
        return checked(configured, "TAILOR_USER")
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
