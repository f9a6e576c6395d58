"""Which tenants' current data hold a text: a persistent index for the cross-tenant check of a
single ingest, so one tenant's file costs its own texts rather than a read of every other tenant's
file (0.14 s at 1,000 tenants, growing with the fleet).

The index (``.tailor/text-index.sqlite``, a cache: deleting it loses nothing) maps the digest of
each normalised text to the tenants holding it, and records for each tenant the stat of the data
file it indexed. Before each query the tenants' data files are stat-ed (a few milliseconds at
thousands of tenants) and any tenant whose file changed since, by whatever path (ingest, bulk
ingest, ``data checkout``, a crash recovery, a clone), is indexed again; so the answer is always
that of reading every other tenant's current file, which ``tests/data/test_leakage.py`` checks.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

from data_checks.leakage import normalise
from data_checks.reading import iter_texts
from workspace import versioning
from workspace.errors import UserError
from workspace.paths import Workspace

_SCHEMA = ("CREATE TABLE IF NOT EXISTS owners (key TEXT NOT NULL, tenant TEXT NOT NULL, PRIMARY KEY (key, tenant))",
           "CREATE INDEX IF NOT EXISTS owners_tenant ON owners (tenant)",
           "CREATE TABLE IF NOT EXISTS tenants (tenant TEXT PRIMARY KEY, stamp TEXT NOT NULL)")


def key(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:32]


def path(ws: Workspace) -> Path:
    return ws.state_dir / "text-index.sqlite"


def _stamp(file: Path) -> str | None:
    try:
        st = os.stat(file)
    except OSError:
        return None
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def refresh(ws: Workspace, db: sqlite3.Connection) -> int:
    """Index again every tenant whose current data file changed since it was indexed, forget
    tenants without data; how many were indexed. Runs in one write transaction."""
    current = {tenant: (file, _stamp(file)) for tenant, file in versioning.data_files(ws).items()}
    db.execute("BEGIN IMMEDIATE")  # one refresher at a time; readers see the old or the new index
    try:
        stored = dict(db.execute("SELECT tenant, stamp FROM tenants"))
        gone = [t for t in stored if t not in current]
        changed = [t for t, (_, stamp) in current.items() if stamp is not None and stored.get(t) != stamp]
        for tenant in gone + changed:
            db.execute("DELETE FROM owners WHERE tenant = ?", (tenant,))
            db.execute("DELETE FROM tenants WHERE tenant = ?", (tenant,))
        for tenant in changed:
            file, stamp = current[tenant]
            try:
                keys = {key(t) for t in iter_texts(file)}  # validated when ingested: streamed, not parsed
            except (UserError, OSError):
                keys = set()  # unreadable now: it shares nothing; its stamp says when to look again
            db.executemany("INSERT OR IGNORE INTO owners (key, tenant) VALUES (?, ?)", ((k, tenant) for k in keys))
            db.execute("INSERT INTO tenants (tenant, stamp) VALUES (?, ?)", (tenant, stamp))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return len(changed)


def overlap(ws: Workspace, tenant: str, texts: Iterable[str]) -> tuple[dict[str, int], int]:
    """(other tenant -> how many of ``texts``, normalised and distinct, its current data also holds;
    how many other tenants were compared): what ``leakage.cross_tenant_overlap`` gives against
    every other tenant's current file."""
    keys = sorted({key(t) for t in texts})
    with closing(_connect(ws)) as db:
        refresh(ws, db)
        counts: dict[str, int] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            for other, n in db.execute(f"SELECT tenant, COUNT(*) FROM owners WHERE key IN "
                                       f"({','.join('?' * len(chunk))}) AND tenant != ? GROUP BY tenant",
                                       (*chunk, tenant)):
                counts[other] = counts.get(other, 0) + n
        (compared,), = db.execute("SELECT COUNT(*) FROM tenants WHERE tenant != ?", (tenant,))
    return counts, compared


def _connect(ws: Workspace) -> sqlite3.Connection:
    target = path(ws)
    target.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(target, timeout=60, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for statement in _SCHEMA:
        db.execute(statement)
    return db
