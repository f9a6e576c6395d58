"""Erasure and retention, the data plane's part: a tenant's data files out of the working tree, the
DVC cache and the DVC remote; older data versions pruned from both. A helper of
``workspace/versioning.py`` (one owner of DVC): same data lock, same repo handle, same journal.

Git history keeps each version's ``.dvc`` pointer (md5, size, path), never the bytes: the bytes
live only in the cache and the remote, which is why removing them there is enough. An object that
another tenant's data also points to (the same file under two tenants) is kept: it is that
tenant's data too, and the result says so.

A marker (``.tailor/erasing/<tenant>.json``: who and when, no data) exists while a tenant's
erasure is under way; ``track`` refuses the tenant meanwhile, so no ingest races an erasure.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from workspace import remote
from workspace.dvcfiles import DATA_NAMES, DataVersion, dvc_path, dvc_repo, rel
from workspace.errors import UserError
from workspace.gitrepo import git, remove_line
from workspace.paths import Workspace
from workspace.safe_io import atomic_file
from workspace.settings import StoreSettings
from workspace.tenants import check_tenant_id
from workspace import versioning


# --- the marker ----------------------------------------------------------------------------------

def _marker(ws: Workspace, tenant: str) -> Path:
    return ws.state_dir / "erasing" / f"{check_tenant_id(tenant)}.json"


def erasing(ws: Workspace, tenant: str) -> dict | None:
    """The marker of an erasure under way ({"by", "at"}), or None."""
    try:
        return json.loads(_marker(ws, tenant).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def mark_erasing(ws: Workspace, tenant: str, by: str, at: str) -> None:
    path = _marker(ws, tenant)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"tenant": tenant, "by": by, "at": at}) + "\n")


def clear_erasing(ws: Workspace, tenant: str) -> None:
    _marker(ws, tenant).unlink(missing_ok=True)


def refuse_if_erasing(ws: Workspace, tenant: str) -> None:
    found = erasing(ws, tenant)
    if found is not None:
        raise UserError(f"tenant {tenant} is being erased (since {found.get('at')}, by {found.get('by')}): "
                        f"nothing is ingested for it until `tailor tenant erase {tenant}` has finished")


# --- versions ------------------------------------------------------------------------------------

def data_versions(ws: Workspace, tenant: str) -> list[DataVersion]:
    """Every data version of the tenant (its git history, and the working tree's if uncommitted),
    one per md5, newest first."""
    seen, out = set(), []
    current = versioning.current_version(ws, tenant)
    for v in ([current] if current is not None else []) + versioning.history(ws, tenant):
        if v.md5 not in seen:
            seen.add(v.md5)
            out.append(v)
    return out


def version_times(ws: Workspace, tenant: str) -> dict[str, int]:
    """md5 -> the latest time (unix seconds of its commit) at which it became the tenant's data."""
    folder = rel(ws, ws.tenant_dir(tenant))
    stamps = {}
    for line in git(ws, "log", "--format=%H %ct", "--", *(f"{folder}/{n}.dvc" for n in DATA_NAMES),
                    check=False).splitlines():
        commit, _, when = line.partition(" ")
        stamps[commit] = int(when or 0)
    out: dict[str, int] = {}
    for v in versioning.history(ws, tenant):
        out[v.md5] = max(out.get(v.md5, 0), stamps.get(v.git_commit or "", 0))
    return out


def shared(ws: Workspace, tenant: str, md5s: list[str]) -> set[str]:
    """The md5s that another tenant's data (any version, committed or in the working tree) also has."""
    out = set()
    mine = rel(ws, ws.tenant_dir(tenant)) + "/"
    for md5 in md5s:
        digest = md5.removeprefix("md5:")
        paths = git(ws, "log", "--all", f"-S{digest}", "--format=", "--name-only", "--", "data/tenants",
                    check=False).split()
        if any(not p.startswith(mine) for p in paths):
            out.add(md5)
    for other in ws.data_dir.glob("*/*.dvc") if ws.data_dir.is_dir() else []:
        if other.parent.name != tenant:
            text = other.read_text(encoding="utf-8", errors="replace")
            out |= {m for m in md5s if m.removeprefix("md5:") in text}
    return out


def where(ws: Workspace, md5s: list[str], store: StoreSettings | None = None) -> dict[str, list[str]]:
    """Which of ``md5s`` have bytes in the DVC cache and in the remote (``--dry-run``'s listing)."""
    found = {"cache": [], "remote": []}
    target = versioning.ensure_remote(ws, store)
    with dvc_repo()(str(ws.root)) as repo, remote.translated_errors(target):
        odb = repo.cloud.get_remote_odb(None, "gc")
        for md5 in md5s:
            digest = md5.removeprefix("md5:")
            if Path(repo.cache.local.oid_to_path(digest)).is_file():
                found["cache"].append(md5)
            if odb.fs.exists(odb.oid_to_path(digest)):
                found["remote"].append(md5)
    return found


def remove_objects(ws: Workspace, md5s: list[str], store: StoreSettings | None = None) -> dict[str, list[str]]:
    """Delete the bytes of ``md5s`` from the DVC cache and the remote (idempotent); call under the
    data lock. Returns which md5s had bytes removed where."""
    done = {"cache": [], "remote": []}
    target = versioning.ensure_remote(ws, store)
    with dvc_repo()(str(ws.root)) as repo, remote.translated_errors(target):
        odb = repo.cloud.get_remote_odb(None, "gc")
        for md5 in md5s:
            digest = md5.removeprefix("md5:")
            cached = Path(repo.cache.local.oid_to_path(digest))
            if cached.is_file():
                cached.chmod(0o644)   # DVC keeps cache files read-only
                cached.unlink()
                done["cache"].append(md5)
            path = odb.oid_to_path(digest)
            if odb.fs.exists(path):
                odb.fs.rm_file(path)
                done["remote"].append(md5)
    return done


# --- erasure and pruning -------------------------------------------------------------------------

def erase_plan(ws: Workspace, tenant: str, store: StoreSettings | None = None) -> dict:
    """What ``erase_data`` removes: the working files, and each version's bytes in cache and remote."""
    versions = data_versions(ws, tenant)
    md5s = [v.md5 for v in versions]
    kept = shared(ws, tenant, md5s)
    folder = ws.tenant_dir(tenant)
    files = [rel(ws, p) for p in sorted(folder.glob("*")) if p.is_file()] if folder.is_dir() else []
    return {"data_versions": md5s, "shared": sorted(kept), "files": files,
            "objects": where(ws, [m for m in md5s if m not in kept], store) if md5s else {"cache": [], "remote": []}}


def erase_data(ws: Workspace, tenant: str, store: StoreSettings | None = None) -> dict:
    """Remove the tenant's data: its folder (data file, ``.dvc`` file, ignore entry) in one commit,
    then every version's bytes from the DVC cache and the remote, except bytes another tenant's
    data shares. Idempotent: a second run finishes what a killed one left."""
    check_tenant_id(tenant)
    with versioning.locked(ws):
        versioning.recover(ws)
        md5s = [v.md5 for v in data_versions(ws, tenant)]
        kept = shared(ws, tenant, md5s)
        folder = ws.tenant_dir(tenant)
        commit = ""
        if folder.is_dir():
            for name in DATA_NAMES:
                (folder / name).unlink(missing_ok=True)
                dvc_path(folder / name).unlink(missing_ok=True)
                remove_line(folder / ".gitignore", f"/{name}")
            if (folder / ".gitignore").is_file() and not (folder / ".gitignore").read_text().strip():
                (folder / ".gitignore").unlink()
            commit = versioning._commit_tenant(ws, tenant, f"data: erase {tenant} ({len(md5s)} version(s))", "erase")
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        removed = remove_objects(ws, [m for m in md5s if m not in kept], store)
    return {"data_versions": md5s, "shared_kept": sorted(kept), "git_commit": commit, **removed}


def prune(ws: Workspace, tenant: str, md5s: list[str], store: StoreSettings | None = None) -> dict:
    """Remove the bytes of the tenant's data versions ``md5s`` (never its current one, nor bytes
    another tenant's data shares) from the DVC cache and the remote. Git keeps their pointers:
    ``tailor data checkout`` of a pruned version then says its bytes are gone."""
    check_tenant_id(tenant)
    with versioning.locked(ws):
        current = versioning.current_version(ws, tenant)
        wanted = [m for m in md5s if current is None or m != current.md5]
        kept = shared(ws, tenant, wanted)
        removed = remove_objects(ws, [m for m in wanted if m not in kept], store)
    return {"pruned": [m for m in wanted if m not in kept], "shared_kept": sorted(kept), **removed}


def remove_tree(path: Path) -> int:
    """Delete a folder or file if present; how many files went."""
    if not path.exists():
        return 0
    if path.is_file() or path.is_symlink():
        path.unlink()
        return 1
    n = sum(1 for p in path.rglob("*") if p.is_file())
    shutil.rmtree(path, onerror=lambda fn, p, exc: (os.chmod(p, 0o700), fn(p)))
    return n
