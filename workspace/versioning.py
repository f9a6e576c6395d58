"""Data versions: every DVC (and its git) call in Tailor, so each tenant's data has one content hash
and one commit, and a failed update always leaves the previous version current."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from workspace import remote
from workspace.errors import UserError
from workspace.gitrepo import VersioningError, ensure_line, git, git_blobs, remove_line
from workspace.paths import Workspace
from workspace.settings import StoreSettings, load_settings
from workspace.tenants import check_tenant_id

SUFFIXES = (".csv", ".jsonl")
DATA_NAMES = tuple(f"data{s}" for s in SUFFIXES)  # one data file per tenant, of either type
_LOCK = threading.RLock()  # DVC's repo lock fails fast; threads of one process queue here instead


@dataclass(frozen=True)
class DataVersion:
    """A tenant's data as DVC hashed it, and the git commit of its ``.dvc`` file (if committed)."""

    tenant: str
    md5: str  # "md5:<hex>"
    git_commit: str | None
    path: str  # data file, relative to the workspace root
    n_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        git = f" (git {self.git_commit[:7]})" if self.git_commit else ""
        return f"md5:{self.md5.removeprefix('md5:')[:8]}…{git}"


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
    Repo = _dvc()
    if not (root / ".dvc").is_dir():
        Repo.init(str(root)).close()
    with Repo(str(root)) as repo:
        remote.configure(repo, ws, store)
    ensure_line(root / ".gitignore", ".tailor/")
    setup = [".dvc/config", ".dvc/.gitignore", ".dvcignore", ".gitignore"]
    setup += [name for name in ("params.yaml", "dvc.yaml") if (root / name).exists()]  # versioned too
    git(ws, "add", "--", *setup)
    if git(ws, "diff", "--cached", "--quiet", "--", *setup, check=False, rc=True):
        git(ws, "commit", "-q", "-m", "tailor: initialise DVC data versioning", "--", *setup)


def ensure_remote(ws: Workspace, store: StoreSettings | None = None) -> str:
    """Point the DVC remote at ``store`` (default: params.yaml's) and commit .dvc/config if that
    changed it, so a fresh clone pulls from the same place; returns the remote for messages."""
    store = store if store is not None else load_settings(ws.params_file).stores
    with _LOCK, _dvc()(str(ws.root)) as repo:
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
    folder = ws.tenant_dir(tenant)
    found = [folder / n for n in DATA_NAMES if (folder / n).is_file()]
    tracked = [p for p in found if _dvc_path(p).is_file()]
    return (tracked or found or [None])[0]


def tenants_with_data(ws: Workspace) -> list[str]:
    """Every tenant folder holding a data file, sorted."""
    if not ws.data_dir.is_dir():
        return []
    return sorted(p.name for p in ws.data_dir.iterdir() if p.is_dir() and data_file(ws, p.name) is not None)


def verified_version(ws: Workspace, tenant: str) -> DataVersion:
    """The tenant's data version, after checking that the file on disk is what DVC versioned.

    Raises:
        UserError: no versioned data, or the file was edited outside Tailor (its md5 differs), so
            no data version describes it.
    """
    version = current_version(ws, tenant)
    if version is None:
        raise UserError(f"tenant {tenant!r} has no versioned data: run `tailor ingest {tenant} FILE`")
    if _md5(ws.root / version.path) != version.md5.removeprefix("md5:"):
        raise UserError(f"{version.path} was changed outside Tailor, so no data version describes it: "
                        f"`tailor ingest {tenant} FILE` it, or `tailor data checkout {tenant} {version.md5[:12]}`")
    return version


def current_version(ws: Workspace, tenant: str) -> DataVersion | None:
    """The version in the working tree; ``git_commit`` is None while its .dvc is uncommitted."""
    dvcfile = _tenant_dvc_file(ws, tenant)
    if dvcfile is None:
        return None
    rel = _rel(ws, dvcfile)
    commit = git(ws, "log", "-1", "--format=%H", "--", rel) or None
    if commit and git(ws, "diff", "--quiet", "HEAD", "--", rel, check=False, rc=True):
        commit = None  # edited since: the last commit does not describe this data
    return _version(tenant, rel, dvcfile.read_text(encoding="utf-8"), commit)


def history(ws: Workspace, tenant: str) -> list[DataVersion]:
    """Every committed version of the tenant's data, newest first (git log of its .dvc file)."""
    folder = _rel(ws, ws.tenant_dir(tenant))
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
    return [_version(tenant, p, t, c) for (c, p), t in zip(wanted, texts) if t is not None]


# --- changing versions -------------------------------------------------------------------------

def track(ws: Workspace, tenant: str, src: Path, store: StoreSettings | None = None) -> DataVersion:
    """Make ``src`` the tenant's data: copy, ``dvc add``, ``dvc push``, commit the .dvc file.

    Idempotent (same content: same version, no commit) and atomic: on any failure the
    tenant's previous data file, .dvc file and .gitignore are restored. Other tenants'
    files are never written and never committed. ``store``: where to push (default: params.yaml's).
    """
    check_tenant_id(tenant)
    _require_repo(ws)
    src = Path(src)
    if not src.is_file():
        raise UserError(f"no such file: {src}")
    suffix = src.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"{src}: only .csv and .jsonl files can be versioned")
    target = ws.tenant_dir(tenant) / f"data{suffix}"
    with _LOCK:
        where = ensure_remote(ws, store)
        staged, md5 = _stage_copy(ws, src)  # a copy first: an unreadable src changes nothing
        try:
            now = current_version(ws, tenant)
            if (now is not None and now.git_commit and now.md5 == f"md5:{md5}"
                    and now.path == _rel(ws, target) and _md5(target) == md5):
                return now
            with _restored_on_failure(ws, tenant):
                target.parent.mkdir(parents=True, exist_ok=True)
                _drop_other_data(target)
                os.replace(staged, target)
                with _dvc()(str(ws.root)) as repo:
                    repo.add([str(target)])
                    with remote.translated_errors(where):
                        _push(repo, _dvc_path(target))
                version = _version(tenant, _rel(ws, _dvc_path(target)),
                                   _dvc_path(target).read_text(encoding="utf-8"), None)
                commit = _commit_tenant(ws, tenant, f"data: {tenant} {version.md5}")
        finally:
            staged.unlink(missing_ok=True)
    return DataVersion(**{**version.to_dict(), "git_commit": commit})


def checkout(ws: Workspace, tenant: str, rev: str, store: StoreSettings | None = None) -> DataVersion:
    """Restore the tenant's data as of a git revision or an md5 (prefix), and commit that.

    Raises:
        UserError: ``rev`` names no commit or md5 of this tenant's data.
    """
    check_tenant_id(tenant)
    _require_repo(ws)
    with _LOCK:
        commit, dvc_rel = _resolve(ws, tenant, rev)
        text = git_blobs(ws, [f"{commit}:{dvc_rel}"])[0] or ""
        wanted = _version(tenant, dvc_rel, text, commit)
        now = current_version(ws, tenant)
        data = ws.root / wanted.path
        if (now is not None and now.git_commit and (now.md5, now.path) == (wanted.md5, wanted.path)
                and _md5(data) == wanted.md5.removeprefix("md5:")):
            return now
        dvcfile = ws.root / dvc_rel
        where = ensure_remote(ws, store)
        with _restored_on_failure(ws, tenant):
            _drop_other_data(data)
            dvcfile.parent.mkdir(parents=True, exist_ok=True)
            dvcfile.write_text(text, encoding="utf-8")
            ensure_line(dvcfile.parent / ".gitignore", f"/{data.name}")
            Repo = _dvc()
            from dvc.exceptions import CheckoutError

            with Repo(str(ws.root)) as repo:
                try:
                    repo.checkout(targets=[str(dvcfile)], force=True)
                except CheckoutError:  # not in the local cache: fetch it from the remote
                    with remote.translated_errors(where):
                        repo.pull(targets=[str(dvcfile)], force=True)
            if _md5(data) != wanted.md5.removeprefix("md5:"):
                raise VersioningError(f"restored {wanted.path} does not match {wanted.md5}")
            commit = _commit_tenant(ws, tenant, f"data: {tenant} checkout {rev}")
    return DataVersion(**{**wanted.to_dict(), "git_commit": commit})


def _push(repo, dvcfile: Path) -> int:
    """Upload one tenant's object to the default remote (a seam tests use to simulate failure)."""
    return repo.push(targets=[str(dvcfile)])


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
    folder = _rel(ws, ws.tenant_dir(tenant))
    for name in DATA_NAMES:
        if git_blobs(ws, [f"{commit}:{folder}/{name}.dvc"])[0] is not None:
            return commit, f"{folder}/{name}.dvc"
    raise UserError(f"tenant {tenant} had no data at {rev!r}")


@contextmanager
def _restored_on_failure(ws: Workspace, tenant: str):
    """Back up the tenant's data, .dvc files and .gitignore; put them back if the block fails."""
    folder = ws.tenant_dir(tenant)
    names = [*DATA_NAMES, *(f"{n}.dvc" for n in DATA_NAMES), ".gitignore"]
    ws.state_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ws.state_dir, prefix="backup-") as tmp:
        kept = [n for n in names if (folder / n).is_file()]
        for name in kept:
            shutil.copy2(folder / name, Path(tmp) / name)
        try:
            yield
        except BaseException:
            for name in names:
                (folder / name).unlink(missing_ok=True)
            for name in kept:
                shutil.copy2(Path(tmp) / name, folder / name)
            if not kept and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()  # a first track that failed leaves no empty tenant folder behind
            git(ws, "reset", "-q", "--", _rel(ws, folder), check=False)  # unstage what we staged
            raise


def _commit_tenant(ws: Workspace, tenant: str, message: str) -> str:
    """Commit only this tenant's folder; return the commit that holds its current .dvc file."""
    folder = _rel(ws, ws.tenant_dir(tenant))
    git(ws, "add", "-A", "--", folder)
    if git(ws, "diff", "--cached", "--quiet", "--", folder, check=False, rc=True):
        git(ws, "commit", "-q", "-m", message, "--", folder)
        return git(ws, "rev-parse", "HEAD")
    dvcfile = _tenant_dvc_file(ws, tenant)
    return git(ws, "log", "-1", "--format=%H", "--", _rel(ws, dvcfile)) if dvcfile else ""


def _drop_other_data(target: Path) -> None:
    """One data file per tenant: remove the other type's file, .dvc file and ignore entry."""
    for name in DATA_NAMES:
        other = target.with_name(name)
        if other != target:
            other.unlink(missing_ok=True)
            _dvc_path(other).unlink(missing_ok=True)
            remove_line(target.parent / ".gitignore", f"/{name}")


# --- small helpers -----------------------------------------------------------------------------

def _version(tenant: str, dvc_rel: str, dvc_text: str, commit: str | None) -> DataVersion:
    out = (yaml.safe_load(dvc_text) or {}).get("outs", [{}])[0]
    if "md5" not in out:
        raise VersioningError(f"{dvc_rel} has no md5: was it written by DVC?")
    return DataVersion(tenant=tenant, md5=f"md5:{out['md5']}", git_commit=commit or None,
                       path=dvc_rel.removesuffix(".dvc"), n_bytes=int(out.get("size", 0)))


def _tenant_dvc_file(ws: Workspace, tenant: str) -> Path | None:
    folder = ws.tenant_dir(tenant)
    return next((folder / f"{n}.dvc" for n in DATA_NAMES if (folder / f"{n}.dvc").is_file()), None)


def _dvc_path(data: Path) -> Path:
    return data.with_name(data.name + ".dvc")


def _rel(ws: Workspace, path: Path) -> str:
    return Path(path).resolve().relative_to(ws.root.resolve()).as_posix()


def _require_repo(ws: Workspace) -> None:
    if not (ws.root / ".dvc").is_dir() or not (ws.root / ".git").exists():
        raise UserError(f"{ws.root} has no data repository: run `tailor init {ws.root}` first")


def _stage_copy(ws: Workspace, src: Path) -> tuple[Path, str]:
    """Copy ``src`` into ``.tailor/`` (same filesystem as the target) and hash it on the way."""
    ws.state_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=ws.state_dir, prefix="incoming-")
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            for block in iter(lambda: inp.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
    except OSError as exc:
        Path(name).unlink(missing_ok=True)
        raise UserError(f"cannot read {src}: {exc.strerror or exc}") from None
    return Path(name), digest.hexdigest()


def _md5(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dvc():
    """DVC's ``Repo`` class, with its info logs, progress bars and analytics off the user's screen."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo  # importing dvc installs console handlers at INFO: lower them after

    for name in ("dvc", "dvc_objects", "dvc_data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("dvc.progress").setLevel(logging.CRITICAL)  # bars show at <= ERROR on a tty
    return Repo
