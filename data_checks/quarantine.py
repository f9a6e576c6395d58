"""Quarantine: a rejected file is kept, with the reason, where a person can inspect it, and the
tenant's current data is never touched."""
from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.tenants import check_tenant_id

if TYPE_CHECKING:
    from data_checks.expectations import ValidationReport


def quarantine(ws: Workspace, tenant: str, src_file: Path,
               report: "ValidationReport | dict | str") -> Path:
    """Copy ``src_file`` to ``.tailor/quarantine/<tenant>/<UTC stamp>-<name>`` and write
    ``<that path>.report.json`` beside it (the report, or ``{"reason": ...}`` for a string).

    Returns the quarantined copy's path.
    """
    check_tenant_id(tenant)
    src_file = Path(src_file)
    if not src_file.is_file():
        raise UserError(f"cannot quarantine {src_file}: it is not a file")
    folder = ws.quarantine_dir(tenant)
    folder.mkdir(parents=True, exist_ok=True)
    at = datetime.now(timezone.utc)
    # microseconds keep two rejections of the same file in one second apart
    dest = folder / f"{at.strftime('%Y%m%dT%H%M%S%fZ')}-{src_file.name}"
    shutil.copy2(src_file, dest)
    if isinstance(report, str):
        body = {"reason": report}
    elif isinstance(report, dict):
        body = dict(report)
    else:
        body = report.to_dict()
    record = {"tenant": tenant, "source": str(src_file.resolve()), "quarantined_at": at.isoformat(),
              "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(), "report": body}
    report_path = dest.with_name(dest.name + ".report.json")
    report_path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return dest
