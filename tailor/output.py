"""Output for people: short lines and plain tables; ``--json`` output for machines."""
from __future__ import annotations

import json
import sys


def table(rows: list[dict], columns: list[str], headers: list[str] | None = None) -> str:
    headers = headers or columns
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else printable(str(value))


def printable(text: str) -> str:
    """``text`` with control characters (newlines, terminal escapes) shown escaped, so a value
    from a user's file can neither break a line nor drive the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def one_line(text: str) -> str:
    """A message as one printable line."""
    return printable(" ".join(text.split()) if "\n" in text or "\r" in text else text)


def emit_json(value) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def not_unicode(texts) -> int | None:
    """The 1-based number of the first text that is not Unicode text the encoder can take (a lone
    surrogate: what a byte that is not UTF-8 in a command line decodes to), or None."""
    for n, text in enumerate(texts, start=1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return n
    return None
