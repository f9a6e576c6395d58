"""Every CSV Tailor writes goes through here: cells a spreadsheet would run as a formula are
neutralised (OWASP's CSV-injection advice), and the file appears whole or not at all."""
from __future__ import annotations

import csv
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from workspace.safe_io import atomic_file

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def neutralise(value) -> str:
    """``value`` as text, with a leading ``'`` when it starts like a formula (``=cmd|...``,
    ``+1``, ``@SUM``, ``-2+3``), so Excel and LibreOffice show it instead of running it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_rows(f, fieldnames: list[str]):
    """A ``write(rows)`` function writing the header, then neutralised rows, to the open text file ``f``."""
    writer = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
    writer.writeheader()

    def write(rows: Iterable[dict]) -> None:
        writer.writerows({k: neutralise(r.get(k)) for k in fieldnames} for r in rows)

    return write


@contextmanager
def csv_writer(path: Path, fieldnames: list[str]):
    """A ``write(rows)`` function for ``path``: rows go to a temporary file beside it, which
    replaces ``path`` only when the block ends without error (a crash leaves the old file)."""
    with atomic_file(Path(path), "w", suffix=".part", newline="", encoding="utf-8") as f:
        yield csv_rows(f, fieldnames)
