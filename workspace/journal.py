"""Crash safety for data changes: one cross-process lock, and a journal entry that exists exactly
while a tenant's data is being changed.

A process killed with ``kill -9`` releases its lock (the kernel drops ``flock`` locks with the
process) but leaves its journal entry; the next command that takes the lock finds the entry, knows
its writer is dead, and puts the tenant back to its last committed version.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from workspace.locking import Announced
from workspace.paths import Workspace

_LEGACY = ("backup-*", "incoming-*")  # what versions before the journal left behind after a kill


def data_lock(ws: Workspace) -> Announced:
    """The workspace's data-plane lock (reentrant; one per path per process; held across
    processes, so two commands never interleave git, DVC or a tenant's files). A command that
    waits for it says whom it waits for."""
    path = ws.state_dir / "locks" / "data.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return Announced(FileLock(str(path), is_singleton=True), "data")


def journal_dir(ws: Workspace) -> Path:
    return ws.state_dir / "journal"


def staging_dir(ws: Workspace) -> Path:
    return ws.state_dir / "staging"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def begin(ws: Workspace, tenant: str, action: str) -> Path:
    """Record, durably, that ``tenant``'s data is about to change."""
    folder = journal_dir(ws)
    folder.mkdir(parents=True, exist_ok=True)
    entry = folder / f"{tenant}.json"
    body = {"tenant": tenant, "action": action, "pid": os.getpid(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{tenant}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(body, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, entry)
    fsync_dir(folder)
    return entry


def end(entry: Path) -> None:
    entry.unlink(missing_ok=True)
    fsync_dir(entry.parent)


def pending(ws: Workspace) -> list[str]:
    """Tenants whose data change has begun and not ended (a dead writer, unless the lock is held)."""
    folder = journal_dir(ws)
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def leftovers(ws: Workspace) -> list[Path]:
    """Staging files and legacy backup folders: only a killed writer leaves them."""
    found = [p for pattern in _LEGACY for p in ws.state_dir.glob(pattern)] if ws.state_dir.is_dir() else []
    stage = staging_dir(ws)
    found += list(stage.iterdir()) if stage.is_dir() else []
    found += list(journal_dir(ws).glob(".*.tmp")) if journal_dir(ws).is_dir() else []
    return found


def remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
