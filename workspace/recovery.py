"""Undo a data change that did not finish: an exception rolls it back at once; a ``kill -9``
leaves a journal entry that the next command rolls back. Either way the tenant's folder becomes
exactly what its last commit says, so ``data show``, lineage and the file agree."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from workspace import journal
from workspace.dvcfiles import DATA_NAMES, dvc_checkout, dvc_path, md5_of, rel, version_of
from workspace.gitrepo import VersioningError, git, git_blobs
from workspace.paths import Workspace


def recover(ws: Workspace) -> list[str]:
    """Put back the last committed version of every tenant whose change a killed command left
    half done, and delete staging files; the tenants repaired. Cheap when nothing is left."""
    lock = journal.data_lock(ws)
    if lock.is_locked or (not journal.pending(ws) and not journal.leftovers(ws)):
        return []  # held by this thread: a change of ours is under way and recovered first
    with lock:  # a live writer holds it: wait; then every entry left is a dead one
        repaired = journal.pending(ws)
        if repaired:
            (ws.root / ".git" / "index.lock").unlink(missing_ok=True)  # a git killed mid-write
        for tenant in repaired:
            restore_committed(ws, tenant)
            journal.end(journal.journal_dir(ws) / f"{tenant}.json")
        journal.remove(journal.leftovers(ws))
    return repaired


@contextmanager
def rolled_back_on_failure(ws: Workspace, tenant: str, entry: Path):
    """Close the journal entry when the block succeeds; restore the last commit if it fails."""
    try:
        yield
    except BaseException:
        restore_committed(ws, tenant)
        journal.end(entry)
        raise
    journal.end(entry)


def restore_committed(ws: Workspace, tenant: str) -> None:
    """Make the tenant's folder what HEAD says: its .dvc and .gitignore from git, its data from
    the DVC cache (or remote); no data at all if HEAD has none. Other tenants are not touched."""
    folder = ws.tenant_dir(tenant)
    where = rel(ws, folder)
    git(ws, "reset", "-q", "--", where, check=False)  # unstage what a killed commit staged
    head = dict(zip(DATA_NAMES, git_blobs(ws, [f"HEAD:{where}/{n}.dvc" for n in DATA_NAMES])))
    kept = next((n for n, text in head.items() if text is not None), None)
    for name in DATA_NAMES:
        dvc_path(folder / name).unlink(missing_ok=True)
        if name != kept:
            (folder / name).unlink(missing_ok=True)
    (folder / ".gitignore").unlink(missing_ok=True)
    if kept is None:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # a first ingest that failed leaves no empty tenant folder behind
        return
    git(ws, "checkout", "HEAD", "--", where)
    want = version_of(tenant, f"{where}/{kept}.dvc", head[kept], None).md5.removeprefix("md5:")
    data = folder / kept
    if md5_of(data) != want:
        data.unlink(missing_ok=True)
        dvc_checkout(ws, dvc_path(data))
        if md5_of(data) != want:
            raise VersioningError(f"could not restore {where}/{kept} (md5:{want}) from the DVC cache or remote")
