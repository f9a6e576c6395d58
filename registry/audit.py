"""The audit log: one hash-chained JSON line per state change, so an auditor can replay and trust it.

Each record's ``hash`` is the sha256 of its canonical JSON (sorted keys, without ``hash``), and
``prev_hash`` is the hash of the record before it, so editing, deleting or reordering a line
breaks the chain from there on. Truncating the *last* lines cannot be detected from the file
alone: anchor the latest hash elsewhere (e.g. print it in a report) to catch that too.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from workspace.errors import UserError
from workspace.paths import Workspace

GENESIS = "0" * 64
CHAMPION_ACTIONS = ("approve", "rollback")  # the records that move a tenant's @champion


def now() -> str:
    """UTC time, ISO 8601 with microseconds and a trailing Z."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def iso_ms(millis: int | None) -> str | None:
    """MLflow's millisecond timestamps in the log's format."""
    if millis is None:
        return None
    stamp = datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str | datetime) -> datetime:
    """A timezone-aware datetime; a naive one (or string) is taken as UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise UserError(f"{value!r} is not a time: use ISO 8601, e.g. 2026-03-01T12:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def record_hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@contextmanager
def _locked(path: Path):
    """The log opened for reading and appending under an exclusive lock (one writer at a time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _last_line(fd: int) -> bytes:
    """The last non-empty line, read backwards from the end (the log may grow large)."""
    end = os.lseek(fd, 0, os.SEEK_END)
    pos, tail = end, b""
    while pos > 0:
        step = min(4096, pos)
        pos -= step
        tail = os.pread(fd, step, pos) + tail
        lines = tail.rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or pos == 0:
            return lines[-1]
    return b""


def append(ws: Workspace, *, actor: str, action: str, tenant: str | None, frm: str | None,
           to: str | None, reason: str, details: dict | None = None) -> dict:
    """Append one record, chained to the last one, and fsync it before returning it."""
    with _locked(ws.audit_log) as fd:
        last = _last_line(fd)
        if last:
            try:
                prev = json.loads(last)
                seq, prev_hash = int(prev["seq"]) + 1, prev["hash"]
            except (ValueError, KeyError, TypeError):
                raise UserError(f"{ws.audit_log}: the last line is not an audit record; "
                                "run `tailor audit verify` and restore the log") from None
        else:
            seq, prev_hash = 1, GENESIS
        record = {"seq": seq, "at": now(), "actor": actor, "action": action, "tenant": tenant,
                  "from": None if frm is None else str(frm), "to": None if to is None else str(to),
                  "reason": reason, "details": details or {}, "prev_hash": prev_hash}
        record["hash"] = record_hash(record)
        line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    return record


def _lines(ws: Workspace) -> list[str]:
    if not ws.audit_log.exists():
        return []
    return [line for line in ws.audit_log.read_text(encoding="utf-8").splitlines() if line.strip()]


def verify(ws: Workspace) -> tuple[bool, int, str | None]:
    """Recompute the chain: (ok, records checked, the first problem found or None)."""
    prev_hash = GENESIS
    lines = _lines(ws)
    for i, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            seq, stored, linked = record["seq"], record["hash"], record["prev_hash"]
        except (ValueError, KeyError, TypeError):
            return False, len(lines), f"line {i} is not an audit record"
        if seq != i:
            return False, len(lines), f"line {i} has seq {seq}: a record was deleted, inserted or moved"
        if linked != prev_hash:
            return False, len(lines), f"record {seq} does not follow record {seq - 1}: the chain is broken"
        if record_hash(record) != stored:
            return False, len(lines), f"record {seq} was changed after it was written (hash mismatch)"
        prev_hash = stored
    return True, len(lines), None


def records(ws: Workspace, tenant: str | None = None) -> list[dict]:
    """All records (of one tenant), oldest first. Lines that do not parse are skipped: use ``verify``."""
    out = []
    for line in _lines(ws):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if tenant is None or record.get("tenant") == tenant:
            out.append(record)
    return out


def served_at(ws: Workspace, tenant: str, at: str | datetime) -> str | None:
    """The champion version of ``tenant`` at time ``at``, replayed from approve/rollback records."""
    when = parse_time(at)
    version = None
    for record in records(ws, tenant):
        if record.get("action") in CHAMPION_ACTIONS and parse_time(record["at"]) <= when:
            version = record.get("to")
    return version
