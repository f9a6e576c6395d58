"""Great Expectations' outcome of a tenant suite, recorded under the rows and rules it ran on.

The suite's outcome depends only on the rows, the validation settings, the rules (the code of
``data_checks/expectations.py``) and GX's version. ``tailor validate`` and every adaptation
validate a tenant's current data again: usually rows that ingest validated under the same rules.
Answered from the record, they skip importing GX (2-5 s of a cold command); a change in any of
those four is another key, so a new run. Leakage checks are not recorded: they run every time.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

from workspace.safe_io import atomic_file


def key(frame, columns: list[str], settings, rules_digest: str) -> str:
    """The digest of everything the suite's outcome depends on."""
    rows = frame[columns].astype(object).where(frame[columns].notna(), None).values.tolist()
    material = {"columns": [str(c) for c in frame.columns], "rows": rows, "settings": asdict(settings),
                "rules": rules_digest, "gx": version("great_expectations")}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def read(folder: Path | None, digest: str | None) -> dict | None:
    """The recorded outcome ({"success", "failures", "gx_version", "checked_at"}), if any."""
    if folder is None or digest is None:
        return None
    try:
        found = json.loads((Path(folder) / f"{digest}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and found.get("key") == digest else None


def write(folder: Path | None, digest: str | None, outcome: dict) -> None:
    """Record ``outcome`` (written whole or not at all; a failure to record loses nothing)."""
    if folder is None or digest is None:
        return
    try:
        os.makedirs(folder, exist_ok=True)
        with atomic_file(Path(folder) / f"{digest}.json", "w", encoding="utf-8") as f:
            json.dump({**outcome, "key": digest}, f, sort_keys=True)
    except OSError:
        pass
