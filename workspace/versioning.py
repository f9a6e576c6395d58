"""Data versions: every DVC (and its git) call in Tailor, so each tenant's data has one content hash
and one commit, and a failed update always leaves the previous version current."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from workspace import faults, journal, remote
from workspace.dvcfiles import (DATA_NAMES, SUFFIXES, DataVersion, dvc_checkout, dvc_path, dvc_repo, md5_of,
                                rel, tenant_dvc_file, version_of)
from workspace.errors import UserError
from workspace.gitrepo import VersioningError, ensure_line, git, git_blobs, remove_line
from workspace.gitrepo import author as gitrepo_author
from workspace.paths import Workspace
from workspace.recovery import recover, restore_committed, rolled_back_on_failure
from workspace.safe_io import read_limited, stream_copy
from workspace.settings import StoreSettings, load_settings
from workspace.tenants import check_tenant_id

__all__ = ["DATA_NAMES", "SUFFIXES", "DataVersion", "checkout", "current_version", "data_file", "ensure_remote",
           "history", "init_repo", "locked", "recover", "restore_committed", "tenants_with_data", "track",
           "unchanged_version", "verified_version", "version_file"]


# --- workspace setup ---------------------------------------------------------------------------

def init_repo(ws: Workspace, store: StoreSettings) -> None:
    """Make ``ws.root`` a git + DVC repo with remote ``local`` (idempotent) and commit the setup.

    ``store.dvc_remote`` is a URL (s3://, gs://, ...) or a local folder, relative to the
    workspace root; empty means ``.tailor/dvc-remote``. Changing it later needs no re-init: every
    push and pull points the remote at the current setting first (``ensure_remote``).
    """
    root = ws.root
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".git").exists():
        git(ws, "init", "-q")
    for key, value in (("user.name", "tailor"), ("user.email", "tailor@localhost")):
        if git(ws, "config", key, check=False) == "":
            git(ws, "config", "--local", key, value)  # commits need an author; keep a user's own
    Repo = dvc_repo()
    if not (root / ".dvc").is_dir():
        Repo.init(str(root)).close()
    with Repo(str(root)) as repo:
        remote.configure(repo, ws, store)
    ensure_line(root / ".gitignore", ".tailor/")
    setup = [".dvc/config", ".dvc/.gitignore", ".dvcignore", ".gitignore"]
    setup += [name for name in ("params.yaml", "dvc.yaml", "audit-signing.pub")
              if (root / name).exists()]  # versioned too (the pinned audit public key: docs/security.md)
    git(ws, "add", "--", *setup)
    if git(ws, "diff", "--cached", "--quiet", "--", *setup, check=False, rc=True):
        git(ws, "commit", "-q", "-m", "tailor: initialise DVC data versioning", "--", *setup)


def ensure_remote(ws: Workspace, store: StoreSettings | None = None) -> str:
    """Point the DVC remote at ``store`` (default: params.yaml's) and commit .dvc/config if that
    changed it, so a fresh clone pulls from the same place; returns the remote for messages."""
    store = store if store is not None else load_settings(ws.params_file).stores
    with locked(ws):
        with dvc_repo()(str(ws.root)) as repo:
            changed = remote.configure(repo, ws, store)
        if changed:  # committed with the setting that caused it, so a clone pulls from the same place
            files = [".dvc/config", "params.yaml"] if ws.params_file.exists() else [".dvc/config"]
            git(ws, "add", "--", *files)
            if git(ws, "diff", "--cached", "--quiet", "--", *files, check=False, rc=True):
                git(ws, "commit", "-q", "-m", f"data: DVC remote is {remote.describe(ws, store)}", "--", *files)
    return remote.describe(ws, store)


# --- reading versions --------------------------------------------------------------------------

def data_file(ws: Workspace, tenant: str) -> Path | None:
    """The tenant's current data file, or None if it has none."""
    recover(ws)
    return _current_file(ws, tenant)


def _current_file(ws: Workspace, tenant: str) -> Path | None:
    folder = ws.tenant_dir(tenant)
    found = [folder / n for n in DATA_NAMES if (folder / n).is_file()]
    tracked = [p for p in found if dvc_path(p).is_file()]
    return (tracked or found or [None])[0]


def data_files(ws: Workspace) -> dict[str, Path]:
    """Tenant -> its current data file, for every tenant with one, sorted by tenant: one recovery
    check for all of them (``data_file`` per tenant makes one each, seconds at 1,000 tenants)."""
    if not ws.data_dir.is_dir():
        return {}
    recover(ws)
    found = {p.name: _current_file(ws, p.name) for p in sorted(ws.data_dir.iterdir()) if p.is_dir()}
    return {tenant: path for tenant, path in found.items() if path is not None}


def tenants_with_data(ws: Workspace) -> list[str]:
    """Every tenant folder holding a data file, sorted."""
    return list(data_files(ws))


def verified_version(ws: Workspace, tenant: str) -> DataVersion:
    """The tenant's data version, after checking that the file on disk is what DVC versioned.

    Raises:
        UserError: no versioned data, or the file was edited outside Tailor (its md5 differs), so
            no data version describes it.
    """
    with locked(ws):  # no ingest swaps the file between reading its version and hashing it
        version = current_version(ws, tenant)
        if version is None:
            raise UserError(f"tenant {tenant!r} has no versioned data: run `tailor ingest {tenant} FILE`")
        actual = md5_of(ws.root / version.path)
    if actual != version.md5.removeprefix("md5:"):
        raise UserError(f"{version.path} was changed outside Tailor, so no data version describes it: "
                        f"`tailor ingest {tenant} FILE` it, or `tailor data checkout {tenant} {version.md5[:12]}`")
    return version


def current_version(ws: Workspace, tenant: str) -> DataVersion | None:
    """The version in the working tree; ``git_commit`` is None while its .dvc is uncommitted."""
    recover(ws)
    dvcfile = tenant_dvc_file(ws, tenant)
    if dvcfile is None:
        return None
    where = rel(ws, dvcfile)
    commit = git(ws, "log", "-1", "--format=%H", "--", where) or None
    if commit and git(ws, "diff", "--quiet", "HEAD", "--", where, check=False, rc=True):
        commit = None  # edited since: the last commit does not describe this data
    return version_of(tenant, where, dvcfile.read_text(encoding="utf-8"), commit)


def recorded_md5s(ws: Workspace, tenants: list[str]) -> dict[str, str | None]:
    """tenant -> the md5 its .dvc file records (None without one): read from the files alone, no
    git, so a fleet of 1,000 tenants is checked for changes in a fraction of a second."""
    recover(ws)
    out = {}
    for tenant in tenants:
        dvcfile = tenant_dvc_file(ws, tenant)
        try:
            out[tenant] = version_of(tenant, rel(ws, dvcfile), dvcfile.read_text(encoding="utf-8"), None).md5 \
                if dvcfile is not None else None
        except (OSError, VersioningError, ValueError, yaml.YAMLError):
            out[tenant] = None  # adapting it says what is wrong
    return out


def history(ws: Workspace, tenant: str) -> list[DataVersion]:
    """Every committed version of the tenant's data, newest first (git log of its .dvc file)."""
    recover(ws)
    folder = rel(ws, ws.tenant_dir(tenant))
    paths = [f"{folder}/{n}.dvc" for n in DATA_NAMES]
    log = git(ws, "log", "--no-renames", "--format=@%H", "--name-status", "--", *paths, check=False)
    wanted: list[tuple[str, str]] = []
    commit = ""
    for line in log.splitlines():
        if line.startswith("@"):
            commit = line[1:]
        elif line and not line.startswith("D"):
            wanted.append((commit, line.split("\t", 1)[1]))
    texts = git_blobs(ws, [f"{c}:{p}" for c, p in wanted])
    return [version_of(tenant, p, t, c) for (c, p), t in zip(wanted, texts) if t is not None]


@contextmanager
def version_file(ws: Workspace, tenant: str, md5: str, store: StoreSettings | None = None) -> Iterator[Path]:
    """A private copy of the tenant's data as of ``md5`` (``md5:``-prefixed or hex), named with its
    file type: from DVC's local cache, else downloaded from the remote. The working tree and the
    cache are not touched; the copy is deleted when the block ends.

    Raises:
        UserError: the tenant's history has no such version, or its bytes are in neither place.
    """
    check_tenant_id(tenant)
    digest = md5.removeprefix("md5:")
    found = next((v for v in history(ws, tenant) if v.md5 == f"md5:{digest}"), None)
    if found is None:
        raise UserError(f"tenant {tenant} has no committed data version md5:{digest}")
    with tempfile.TemporaryDirectory(prefix="tailor-version-") as tmp:
        copy = Path(tmp) / Path(found.path).name
        with dvc_repo()(str(ws.root)) as repo:
            cached = Path(repo.cache.local.oid_to_path(digest))
            if cached.is_file():
                shutil.copyfile(cached, copy)
        if not copy.is_file():
            where = ensure_remote(ws, store)
            with dvc_repo()(str(ws.root)) as repo, remote.translated_errors(where):
                odb = repo.cloud.get_remote_odb(None, "fetch")
                if odb.fs.exists(odb.oid_to_path(digest)):
                    odb.fs.get_file(odb.oid_to_path(digest), str(copy))
        if md5_of(copy) != digest:
            raise UserError(f"the bytes of {tenant}'s data md5:{digest} are in neither the DVC cache nor the remote")
        yield copy


def locked(ws: Workspace):
    """Hold the data lock: no data change of another command interleaves with the block."""
    return journal.data_lock(ws)


# --- changing versions -------------------------------------------------------------------------
#
# A change is made in one order, so that a kill at any point leaves the old version or the new one:
# stage the new bytes in .tailor/staging (fsync), open a journal entry, rename into place, let DVC
# hash and push it, then record it with one git commit (the atomic step), and close the entry.
# Whoever next takes the lock and finds an open entry restores the tenant's last committed version.

def track(ws: Workspace, tenant: str, src: Path, store: StoreSettings | None = None, *,
          expected_md5: str | None = None, max_bytes: int | None = None, author: str = "") -> DataVersion:
    """Make ``src`` the tenant's data: copy, ``dvc add``, ``dvc push``, commit the .dvc file
    (``author``: the person who ingested it, the commit's author).

    Idempotent (same content: same version, no commit) and atomic, under kill -9 too: the
    tenant's previous data file, .dvc file and .gitignore stay current until the commit. Other
    tenants' files are never written and never committed. ``expected_md5`` (hex) refuses a file
    that changed since it was validated. ``store``: where to push (default: params.yaml's).
    """
    check_tenant_id(tenant)
    _require_repo(ws)
    src = Path(src)
    suffix = src.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"{src}: only .csv and .jsonl files can be versioned")
    target = ws.tenant_dir(tenant) / f"data{suffix}"
    with locked(ws):
        recover(ws)
        from workspace.erasure import refuse_if_erasing

        refuse_if_erasing(ws, tenant)  # an erasure under way removes what this would add
        where = ensure_remote(ws, store)
        staged, md5 = _stage_copy(ws, tenant, src, max_bytes)  # an unreadable src changes nothing
        try:
            if expected_md5 and md5 != expected_md5:
                raise UserError(f"{src} changed while it was being ingested: run the command again")
            now = _same_as_current(ws, tenant, target, md5)
            if now is not None:
                return now
            faults.point("ingest:staged")
            entry = journal.begin(ws, tenant, "ingest")
            faults.point("ingest:journaled")
            with rolled_back_on_failure(ws, tenant, entry):
                target.parent.mkdir(parents=True, exist_ok=True)
                _drop_other_data(target)
                os.replace(staged, target)
                journal.fsync_dir(target.parent)
                faults.point("ingest:renamed")
                with dvc_repo()(str(ws.root)) as repo:
                    add_files(repo, [target])
                    faults.point("ingest:added")
                    with remote.translated_errors(where):
                        _push(repo, dvc_path(target))
                faults.point("ingest:pushed")
                version = version_of(tenant, rel(ws, dvc_path(target)),
                                     dvc_path(target).read_text(encoding="utf-8"), None)
                commit = _commit_tenant(ws, tenant, f"data: {tenant} {version.md5}", "ingest", author)
                faults.point("ingest:committed")
        finally:
            staged.unlink(missing_ok=True)
    return DataVersion(**{**version.to_dict(), "git_commit": commit})


def unchanged_version(ws: Workspace, tenant: str, src: Path, max_bytes: int) -> DataVersion | None:
    """The tenant's current, committed version when ``src`` holds exactly its bytes (and the file in
    the workspace still does): ``track`` of ``src`` would change nothing. None otherwise."""
    check_tenant_id(tenant)
    suffix = Path(src).suffix.lower()
    if suffix not in SUFFIXES:
        return None
    try:
        _, md5 = read_limited(Path(src), max_bytes)
    except UserError:  # unreadable or too big: never a current version; ingest reports and quarantines it
        return None
    with locked(ws):
        from workspace.erasure import refuse_if_erasing

        refuse_if_erasing(ws, tenant)  # not even "unchanged": its data is on its way out
        return _same_as_current(ws, tenant, ws.tenant_dir(tenant) / f"data{suffix}", md5)


def _same_as_current(ws: Workspace, tenant: str, target: Path, md5: str) -> DataVersion | None:
    """The current version if it is committed, at ``target`` and of md5 ``md5``, bytes on disk included."""
    now = current_version(ws, tenant)
    if (now is not None and now.git_commit and now.md5 == f"md5:{md5}"
            and now.path == rel(ws, target) and md5_of(target) == md5):
        return now
    return None


def checkout(ws: Workspace, tenant: str, rev: str, store: StoreSettings | None = None,
             dry_run: bool = False) -> DataVersion:
    """Restore the tenant's data as of a git revision or an md5 (prefix), and commit that.

    Raises:
        UserError: ``rev`` names no commit or md5 of this tenant's data.
    """
    check_tenant_id(tenant)
    _require_repo(ws)
    if dry_run:  # the version ``rev`` names, resolved as below; nothing written
        commit, dvc_rel = _resolve(ws, tenant, rev)
        return version_of(tenant, dvc_rel, git_blobs(ws, [f"{commit}:{dvc_rel}"])[0] or "", commit)
    with locked(ws):
        recover(ws)
        commit, dvc_rel = _resolve(ws, tenant, rev)
        text = git_blobs(ws, [f"{commit}:{dvc_rel}"])[0] or ""
        wanted = version_of(tenant, dvc_rel, text, commit)
        now = current_version(ws, tenant)
        data = ws.root / wanted.path
        if (now is not None and now.git_commit and (now.md5, now.path) == (wanted.md5, wanted.path)
                and md5_of(data) == wanted.md5.removeprefix("md5:")):
            return now
        dvcfile = ws.root / dvc_rel
        where = ensure_remote(ws, store)
        entry = journal.begin(ws, tenant, "checkout")
        with rolled_back_on_failure(ws, tenant, entry):
            _drop_other_data(data)
            dvcfile.parent.mkdir(parents=True, exist_ok=True)
            dvcfile.write_text(text, encoding="utf-8")
            ensure_line(dvcfile.parent / ".gitignore", f"/{data.name}")
            faults.point("checkout:written")
            dvc_checkout(ws, dvcfile, where)
            if md5_of(data) != wanted.md5.removeprefix("md5:"):
                raise VersioningError(f"restored {wanted.path} does not match {wanted.md5}")
            commit = _commit_tenant(ws, tenant, f"data: {tenant} checkout {rev}", "checkout")
    return DataVersion(**{**wanted.to_dict(), "git_commit": commit})


def add_files(repo, targets: list[Path]) -> None:
    """``dvc add`` of these data files alone: hash them into the cache and write each one's .dvc
    file, through DVC's own stage (the same .dvc file and .gitignore line as ``dvc add``).

    ``repo.add`` first collects every stage of the repository to check the pipeline graph for
    overlapping outputs: 6.8 s of a single ingest at 1,000 tenants, growing with the fleet. Tailor's
    layout cannot overlap (one data file per tenant folder, whose only .dvc file is its own, and
    the pipeline's dvc.yaml has no outputs under data/), so each stage is made from its own file.
    """
    with repo.lock, repo.scm_context:
        for target in targets:
            stage = repo.stage.create(single_stage=True, validate=False, fname=str(dvc_path(target)),
                                      wdir=str(target.parent), outs=[target.name])
            stage.add_outs()
            stage.dump()


def push_files(repo, dvcfiles: list[Path]) -> int:
    """Upload the objects these .dvc files name to the default remote, without collecting the
    repository's other stages (``repo.push(targets=...)`` builds the whole index first)."""
    from dvc.exceptions import UploadError
    from dvc_data.hashfile.hash_info import HashInfo

    wanted = [HashInfo("md5", version_of("", str(f), Path(f).read_text(encoding="utf-8"), None).md5
                       .removeprefix("md5:")) for f in dvcfiles]
    result = repo.cloud.push(wanted)
    if result.failed:
        raise UploadError(len(result.failed))
    return len(result.transferred)


def _push(repo, dvcfile: Path) -> int:
    """Upload one tenant's object to the default remote (a seam tests use to simulate failure)."""
    return push_files(repo, [dvcfile])


def _resolve(ws: Workspace, tenant: str, rev: str) -> tuple[str, str]:
    """(commit, .dvc path) for an md5 (prefix, ``md5:`` optional) or a git revision."""
    text = rev.strip()
    digest = text.lower().removeprefix("md5:")
    if len(digest) >= 4 and all(ch in "0123456789abcdef" for ch in digest):
        matches = [v for v in history(ws, tenant) if v.md5.removeprefix("md5:").startswith(digest)]
        if len({v.md5 for v in matches}) > 1:
            raise UserError(f"{rev!r} matches several data versions of {tenant}: give more characters")
        if matches:
            return matches[0].git_commit or "", matches[0].path + ".dvc"
    if text.lower().startswith("md5:"):
        raise UserError(f"tenant {tenant} never had data {rev}: see `tailor data show {tenant}`")
    commit = "" if text.startswith("-") else git(ws, "rev-parse", "--verify", "--quiet",
                                                  f"{text}^{{commit}}", check=False)
    if not commit:
        raise UserError(f"unknown revision {rev!r}: give a git commit or an md5 from `tailor data show {tenant}`")
    folder = rel(ws, ws.tenant_dir(tenant))
    for name in DATA_NAMES:
        if git_blobs(ws, [f"{commit}:{folder}/{name}.dvc"])[0] is not None:
            return commit, f"{folder}/{name}.dvc"
    raise UserError(f"tenant {tenant} had no data at {rev!r}")


def _commit_tenant(ws: Workspace, tenant: str, message: str, step: str = "commit", author: str = "") -> str:
    """Commit only this tenant's folder (``author``: who asked for it); return the commit that holds
    its current .dvc file."""
    folder = rel(ws, ws.tenant_dir(tenant))
    git(ws, "add", "-A", "--", folder)
    faults.point(f"{step}:git-added")
    if git(ws, "diff", "--cached", "--quiet", "--", folder, check=False, rc=True):
        git(ws, "commit", "-q", *([f"--author={gitrepo_author(author)}"] if author else []), "-m", message, "--", folder)
        return git(ws, "rev-parse", "HEAD")
    dvcfile = tenant_dvc_file(ws, tenant)
    return git(ws, "log", "-1", "--format=%H", "--", rel(ws, dvcfile)) if dvcfile else ""


def _drop_other_data(target: Path) -> None:
    """One data file per tenant: remove the other type's file, .dvc file and ignore entry."""
    for name in DATA_NAMES:
        other = target.with_name(name)
        if other != target:
            other.unlink(missing_ok=True)
            dvc_path(other).unlink(missing_ok=True)
            remove_line(target.parent / ".gitignore", f"/{name}")


# --- small helpers -----------------------------------------------------------------------------

def _require_repo(ws: Workspace) -> None:
    if not (ws.root / ".dvc").is_dir() or not (ws.root / ".git").exists():
        raise UserError(f"{ws.root} has no data repository: run `tailor init {ws.root}` first")


def _stage_copy(ws: Workspace, tenant: str, src: Path, max_bytes: int | None) -> tuple[Path, str]:
    """Copy ``src`` into .tailor/staging (same filesystem as the target), hashing on the way, and
    fsync it: what is renamed into place later is complete on disk."""
    folder = journal.staging_dir(ws)
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=f"{tenant}-")
    try:
        md5, _ = stream_copy(src, fd, max_bytes or (1 << 62))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        Path(name).unlink(missing_ok=True)
        raise
    os.close(fd)
    return Path(name), md5
