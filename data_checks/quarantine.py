"""Quarantine: a refused file is kept, with the reason, where a person can inspect it, and the
tenant's current data is never touched. Only a bounded prefix of the file is kept (a 250 MB upload
must not fill the disk twice), never anything a symlink points to; the report records the whole
file's size and sha256, hashed in chunks."""
from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.safe_io import CHUNK, open_regular
from workspace.settings import LimitSettings
from workspace.tenants import check_tenant_id

if TYPE_CHECKING:
    from data_checks.expectations import ValidationReport


def safe_name(name: str) -> str:
    """A file name that is safe to create and to show: no separators, control or shell characters."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "file"
    return cleaned[:80]


def quarantine(ws: Workspace, tenant: str, src_file: Path, report: "ValidationReport | dict | str",
               limits: LimitSettings | None = None) -> Path:
    """Keep at most ``limits.quarantine_kb`` of ``src_file`` as
    ``.tailor/quarantine/<tenant>/<UTC stamp>-<name>`` and write ``<that path>.report.json``
    beside it (the report, or ``{"reason": ...}`` for a string, plus what was kept).

    A symlink, folder, pipe or device is not read at all: only its report is written.
    Returns the quarantined copy's path (which may not exist when nothing could be kept).
    """
    check_tenant_id(tenant)
    limits = limits or LimitSettings()
    src_file = Path(src_file)
    folder = ws.quarantine_dir(tenant)
    folder.mkdir(parents=True, exist_ok=True)
    at = datetime.now(timezone.utc)
    # microseconds keep two refusals of the same file in one second apart
    dest = folder / f"{at.strftime('%Y%m%dT%H%M%S%fZ')}-{safe_name(src_file.name)}"
    kept = _keep_prefix(src_file, dest, limits.quarantine_kb * 1024)
    if isinstance(report, str):
        body = {"reason": report}
    elif isinstance(report, dict):
        body = dict(report)
    else:
        body = report.to_dict()
    record = {"tenant": tenant, "source": str(src_file.absolute()), "quarantined_at": at.isoformat(), **kept,
              "report": body}
    report_path = dest.with_name(dest.name + ".report.json")
    # ensure_ascii: whatever the file held (escapes, control characters) is shown escaped
    report_path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str, ensure_ascii=True),
                           encoding="utf-8")
    return dest


def _keep_prefix(src: Path, dest: Path, limit: int) -> dict:
    """Copy the first ``limit`` bytes of a regular ``src`` to ``dest``; hash all of it in chunks."""
    try:
        with open_regular(src) as fd:
            sha, total = hashlib.sha256(), 0
            out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                while block := os.read(fd, CHUNK):
                    if total < limit:
                        os.write(out, block[:limit - total])
                    total += len(block)
                    sha.update(block)
            finally:
                os.close(out)
    except UserError as exc:  # a link, folder, pipe or device: keep nothing of it, say why
        return {"kept_bytes": 0, "not_kept": str(exc)}
    except OSError as exc:
        return {"kept_bytes": 0, "not_kept": f"cannot read: {exc.strerror or exc}"}
    return {"n_bytes": total, "kept_bytes": min(total, limit), "truncated": total > limit,
            "sha256": sha.hexdigest()}
