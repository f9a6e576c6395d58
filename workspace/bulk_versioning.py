"""Versioning many tenants' files at once (``tailor ingest --dir``): one ``dvc add``, one ``dvc push``
and one git commit per batch instead of per tenant (~4 s each: 1,000 tenants one by one would take
over an hour).

The same order as ``versioning.track``, for the whole batch: stage every file (fsync), open a
journal entry per tenant, rename into place, let DVC hash and push them, then record them with one
git commit (the atomic step) and close the entries. A failure or a ``kill -9`` before the commit
puts every tenant of the batch back to its last committed version (now, or at the next command
that takes the data lock); other tenants are never touched.
"""
from __future__ import annotations

import os
from pathlib import Path

from workspace import faults, journal, remote
from workspace.dvcfiles import SUFFIXES, DataVersion, dvc_path, dvc_repo, md5_of, rel, version_of
from workspace.errors import UserError
from workspace.gitrepo import author as git_author
from workspace.gitrepo import git
from workspace.paths import Workspace
from workspace.recovery import recover, restore_committed
from workspace.settings import StoreSettings
from workspace.tenants import check_tenant_id
from workspace.versioning import (_drop_other_data, _require_repo, _stage_copy, add_files, current_version,
                                  ensure_remote, locked, push_files)


def track_many(ws: Workspace, files: list[tuple[str, Path, str | None]], store: StoreSettings | None = None,
               max_bytes: int | None = None, author: str = "") -> dict[str, DataVersion | str]:
    """Make each ``(tenant, src, expected md5 or None)`` the tenant's data, in one DVC add + push and
    one git commit; tenant -> its version, or why its file was not versioned (a file that changed
    since it was validated, or cannot be copied). Unchanged files keep their version, no commit.

    Raises:
        VersioningError, UserError: the batch as a whole failed (a remote refused the push, git
            failed); no tenant of the batch changed.
    """
    _require_repo(ws)
    out: dict[str, DataVersion | str] = {}
    with locked(ws):
        recover(ws)
        where = ensure_remote(ws, store)
        staged: dict[str, tuple[Path, Path]] = {}  # tenant -> (staged copy, target)
        try:
            for tenant, src, expected in files:
                check_tenant_id(tenant)
                suffix = Path(src).suffix.lower()
                target = ws.tenant_dir(tenant) / f"data{suffix}"
                try:
                    if suffix not in SUFFIXES:
                        raise UserError(f"{src}: only .csv and .jsonl files can be versioned")
                    copy, md5 = _stage_copy(ws, tenant, Path(src), max_bytes)
                except (UserError, OSError) as exc:
                    out[tenant] = str(exc)
                    continue
                if expected and md5 != expected:
                    copy.unlink(missing_ok=True)
                    out[tenant] = f"{src} changed while it was being ingested: ingest it again"
                    continue
                now = current_version(ws, tenant)
                if (now is not None and now.git_commit and now.md5 == f"md5:{md5}"
                        and now.path == rel(ws, target) and md5_of(target) == md5):
                    copy.unlink(missing_ok=True)
                    out[tenant] = now
                    continue
                staged[tenant] = (copy, target)
            if staged:
                out.update(_commit_batch(ws, staged, where, author))
        finally:
            for copy, _ in staged.values():
                copy.unlink(missing_ok=True)
    return out


def _commit_batch(ws: Workspace, staged: dict[str, tuple[Path, Path]], where: str,
                  author: str = "") -> dict[str, DataVersion]:
    entries = {tenant: journal.begin(ws, tenant, "ingest") for tenant in staged}
    faults.point("bulk:journaled")
    try:
        for copy, target in staged.values():
            target.parent.mkdir(parents=True, exist_ok=True)
            _drop_other_data(target)
            os.replace(copy, target)
            journal.fsync_dir(target.parent)
        faults.point("bulk:renamed")
        targets = [target for _, target in staged.values()]
        with dvc_repo()(str(ws.root)) as repo:
            add_files(repo, targets)  # DVC's stages of these files alone: no repository-wide collection
            with remote.translated_errors(where):
                push_files(repo, [dvc_path(t) for t in targets])
        faults.point("bulk:pushed")
        versions = {tenant: version_of(tenant, rel(ws, dvc_path(target)),
                                       dvc_path(target).read_text(encoding="utf-8"), None)
                    for tenant, (_, target) in staged.items()}
        folders = [rel(ws, ws.tenant_dir(tenant)) for tenant in staged]
        git(ws, "add", "-A", "--", *folders)
        if git(ws, "diff", "--cached", "--quiet", "--", *folders, check=False, rc=True):
            git(ws, "commit", "-q", *([f"--author={git_author(author)}"] if author else []),
                "-m", f"data: {len(staged)} tenant(s) (bulk ingest)", "--", *folders)
        commit = git(ws, "rev-parse", "HEAD")
        faults.point("bulk:committed")
    except BaseException:
        for tenant, entry in entries.items():
            restore_committed(ws, tenant)
            journal.end(entry)
        raise
    for entry in entries.values():
        journal.end(entry)
    return {tenant: DataVersion(**{**v.to_dict(), "git_commit": commit}) for tenant, v in versions.items()}
