"""Who acts: every state change names an identity, never just a free-text flag.

The CLI acts as the configured identity (``TAILOR_USER``) or else the OS user; the review page
acts as its logged-in user; the scheduler acts as ``service:scheduler``. Identities are compared
normalised (Unicode NFKC, case, spacing, default-ignorable code points and combining marks attached
to no letter make no new person), and a name that only looks like another is refused where
identities enter (``tailor user add``, ``TAILOR_USER``): an invisible addition (a zero-width space,
a combining grapheme joiner, a variation selector: Unicode's Default_Ignorable_Code_Point), a
combining mark attached to no letter, letters of different scripts mixed in one name (a Cyrillic
"о" in a Latin name, after Unicode TR39's "highly restrictive" profile), and a name whose UTS #39
skeleton is a service identity's without being one (``service꞉scheduler`` with U+A789). A service
identity is recognised by its skeleton, not by its spelling: it may request candidates but never
approve, reject or roll back unless a setting names it, and never logs in.
"""
from __future__ import annotations

import getpass
import os
import re
import unicodedata

import regex

from workspace.errors import UserError

SERVICE_PREFIX = "service:"
SCHEDULER = "service:scheduler"


# Scripts that may share one name (TR39 "highly restrictive"): Latin with Japanese, Chinese or Korean.
_MIXES = ({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}, {"LATIN", "HAN", "BOPOMOFO"}, {"LATIN", "HAN", "HANGUL"})
# Letters that render as nothing and are not default-ignorable (the Braille blank), beside the
# format, control, private-use, unassigned and separator characters.
_BLANK = {"\u2800"}
# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): joiners, variation
# selectors, the combining grapheme joiner, fillers, tags; 4,174 code points ("regex" has the property)
_IGNORABLE = regex.compile(r"\p{Default_Ignorable_Code_Point}")
_MARKS = ("Mn", "Me")
# UTS #39 confusables: every single character whose skeleton (ICU 72's SpoofChecker.getSkeleton,
# Unicode 15.0's confusables.txt), case-folded, is one of the characters of "service:", less those
# that NFKC and case folding already turn into it (the lower-case rows are those confusable_homoglyphs
# 3.3.1 ships). Generated one code point at a time with PyICU 2.17; the skeleton below uses it.
_CONFUSABLE_SOURCES = {
    "s": ("\u01bd\u0405\u0455\u054f\u13d5\u13da\ua4e2\ua731\uabaa\U00010296\U00010420\U00010448"
          "\U000118c1\U00016f3a"),
    "e": ("\u0395\u0415\u0435\u04bd\u13ac\u212e\u22ff\u2d39\ua4f0\uab32\U00010286\U000118a6"
          "\U000118ae\U0001d6ac\U0001d6e6\U0001d720\U0001d75a\U0001d794"),
    "r": ("\u01a6\u0433\u13a1\u13d2\u1587\u1d26\u2c85\ua4e3\uab47\uab48\uab81\U000104b4"
          "\U00016f35\U0001d216"),
    "v": ("\u03bd\u0474\u0475\u05d8\u0667\u06f7\u13d9\u142f\u1d20\u2228\u22c1\u2d38\ua4e6\ua6df"
          "\uaba9\U0001051d\U00011706\U000118a0\U000118c0\U00016f08\U0001d20d\U0001d6ce"
          "\U0001d708\U0001d742\U0001d77c\U0001d7b6"),
    "i": ("\u0131\u0269\u026a\u02db\u037a\u03b9\u0456\u04cf\u13a5\u1fbe\u2373\ua647\uab75"
          "\U000118c3\U0001d6a4\U0001d6ca\U0001d704\U0001d73e\U0001d778\U0001d7b2"),
    "c": ("\u03f2\u03f9\u0421\u0441\u13df\u1d04\u2ca4\u2ca5\ua4da\uabaf\U000102a2\U00010302"
          "\U00010415\U0001043d\U0001051c\U000118e9\U000118f2\U0001f74c"),
    ":": ("\u02d0\u02f8\u0589\u05c3\u0703\u0704\u0903\u0a83\u16ec\u1803\u1809\u205a\u2236\ua4fd"
          "\ua789\ufe30"),
}
_PROTOTYPE = {src: proto for proto, sources in _CONFUSABLE_SOURCES.items() for src in sources}


def skeleton(text: str) -> str:
    """UTS #39's skeleton of ``text`` case-folded (NFD, default-ignorables removed, each character
    by its prototype, NFD again), as far as it can spell ``service:`` (the table above); a
    character outside the table stands for its NFKC form, spacing and invisible characters for nothing."""
    out = []
    for ch in unicodedata.normalize("NFD", str(text)):
        if not _invisible(ch) and not ch.isspace():
            folded = unicodedata.normalize("NFKC", ch).casefold()
            out.append(_PROTOTYPE.get(ch) or "".join(_PROTOTYPE.get(c, c) for c in folded))
    return "".join(unicodedata.normalize("NFD", "".join(out)).split())


def _invisible(ch: str) -> bool:
    return (ch in _BLANK or _IGNORABLE.match(ch) is not None
            or (unicodedata.category(ch) in ("Cf", "Cc", "Co", "Cn", "Zl", "Zp") and ch not in "\t\n"))


# the one spelling of a service identity: ``service:`` then a lower-case name
_SERVICE_NAME = re.compile(r"service:[a-z0-9][a-z0-9._-]*")
_SERVICE_SKELETON = skeleton(SERVICE_PREFIX)


def _loose_marks(text: str) -> list[int]:
    """Positions of the combining marks (Mn, Me) in ``text`` attached to no letter: at the start,
    or after a space, digit, punctuation or symbol (a mark after a letter, or after the marks of a
    letter, belongs to that letter: "é" written as e + U+0301, a Devanagari vowel sign)."""
    loose, base = [], None
    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        if category in _MARKS:
            if base is None or not base.startswith("L"):
                loose.append(i)
        elif not category.startswith("M") and not _invisible(ch):
            base = category
    return loose


def _visible(text: str) -> str:
    """``text`` without what adds nothing a reader sees: invisible characters, then combining
    marks attached to no letter."""
    text = "".join(ch for ch in text if not _invisible(ch))
    loose = set(_loose_marks(text))
    return "".join(ch for i, ch in enumerate(text) if i not in loose)


def normalise(name: str | None) -> str:
    """``"  Alice  Smith "`` and ``"alice smith"`` are one person (and so are ``"al\\u200bice"``
    and ``"alice\\u034f"``: invisible characters and loose combining marks are dropped before
    names are compared)."""
    text = unicodedata.normalize("NFKC", str(name or ""))
    return " ".join(_visible(text).casefold().split())


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
    loose = sorted({f"U+{ord(text[i]):04X}" for i in _loose_marks(text)})
    if loose:
        return f"contains combining mark(s) {', '.join(loose)} attached to no letter"
    scripts = {s for s in map(_script, text) if s}
    if len(scripts) > 1 and not any(scripts <= mix for mix in _MIXES):
        return f"mixes letters of {' and '.join(sorted(s.title() for s in scripts))}, so it can look like another name"
    if is_service(name) and not _SERVICE_NAME.fullmatch(normalise(text)):
        return "looks like a service identity (service:NAME) without being one"
    return None


def checked(name: str, what: str) -> str:
    """``name`` normalised, or a one-line refusal naming ``what`` when it could pass for another."""
    problem = look_alike_problem(name)
    if problem:
        shown = ascii(name.strip()[:80])  # every hidden character visible as an escape
        raise UserError(f"{what} {shown} {problem}: type it in one script, without hidden characters")
    return normalise(name)


def is_service(identity: str) -> bool:
    """Whether ``identity`` reads as a service identity: its UTS #39 skeleton, spaces left out,
    starts with that of ``service:``, so ``service꞉scheduler`` (U+A789) and ``service :scheduler``
    are services too."""
    return any(skeleton(form).startswith(_SERVICE_SKELETON) for form in (identity or "", normalise(identity)))


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
    if is_service(identity):
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
    return "*" in names and not is_service(identity)
