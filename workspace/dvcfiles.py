"""The small DVC helpers the data plane shares: what a .dvc file says, where a tenant's files
are, md5s, and DVC's ``Repo`` imported quietly. Only ``workspace/`` uses them."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from workspace import remote
from workspace.errors import UserError
from workspace.journal import staging_dir
from workspace.gitrepo import VersioningError
from workspace.paths import Workspace
from workspace.safe_io import atomic_file

SUFFIXES = (".csv", ".jsonl")
DATA_NAMES = tuple(f"data{s}" for s in SUFFIXES)  # one data file per tenant, of either type


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


def version_of(tenant: str, dvc_rel: str, dvc_text: str, commit: str | None) -> DataVersion:
    out = (yaml.safe_load(dvc_text) or {}).get("outs", [{}])[0]
    if "md5" not in out:
        raise VersioningError(f"{dvc_rel} has no md5: was it written by DVC?")
    return DataVersion(tenant=tenant, md5=f"md5:{out['md5']}", git_commit=commit or None,
                       path=dvc_rel.removesuffix(".dvc"), n_bytes=int(out.get("size", 0)))


def tenant_dvc_file(ws: Workspace, tenant: str) -> Path | None:
    folder = ws.tenant_dir(tenant)
    return next((folder / f"{n}.dvc" for n in DATA_NAMES if (folder / f"{n}.dvc").is_file()), None)


def dvc_path(data: Path) -> Path:
    return data.with_name(data.name + ".dvc")


def rel(ws: Workspace, path: Path) -> str:
    return Path(path).resolve().relative_to(ws.root.resolve()).as_posix()


def md5_of(path: Path) -> str | None:
    """Hex md5 of a file, read in chunks; None if it is not a file."""
    if not path.is_file():
        return None
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dvc_repo():
    """DVC's ``Repo`` class, with its info logs, progress bars and analytics off the user's screen."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo  # importing dvc installs console handlers at INFO: lower them after

    for name in ("dvc", "dvc_objects", "dvc_data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("dvc.progress").setLevel(logging.CRITICAL)  # bars show at <= ERROR on a tty
    return Repo


def dvc_checkout(ws: Workspace, dvcfile: Path, where: str | None = None) -> None:
    """Put the data a .dvc file names in place: copied from the local cache when it is there (no
    remote is consulted, so a broken remote setting never stops a rollback), else pulled from the
    remote (``where`` names it in the one line a remote's failure becomes). Callers check the md5.

    Raises:
        UserError: the data is in neither the cache nor the remote; the line names the tenant, the
            data version and what to do.
    """
    from dvc.exceptions import CheckoutError

    want = version_of("", str(dvcfile), dvcfile.read_text(encoding="utf-8"), None).md5.removeprefix("md5:")
    data = dvcfile.with_name(dvcfile.name.removesuffix(".dvc"))
    with dvc_repo()(str(ws.root)) as repo:
        cached = Path(repo.cache.local.oid_to_path(want))
        if cached.is_file():
            _copy_durably(cached, data, staging_dir(ws))
            return
        where = where or remote.describe_configured(repo, ws)
        with remote.translated_errors(where):
            try:
                repo.pull(targets=[str(dvcfile)], force=True)
            except CheckoutError as exc:
                if cached.is_file():
                    raise
                tenant = dvcfile.parent.name  # data/tenants/<tenant>/data.csv.dvc
                raise UserError(f"tenant {tenant}'s data version md5:{want[:12]} is in neither the DVC cache nor "
                                f"the DVC remote {where}: ingest that file again (`tailor ingest {tenant} FILE`), or "
                                "point stores.dvc_remote in params.yaml at the remote that holds it") from exc


def _copy_durably(src: Path, dst: Path, staging: Path) -> None:
    """``src``'s bytes at ``dst``: written in ``staging`` (same filesystem; what a kill leaves there
    the next command removes), fsynced and renamed into place."""
    staging.mkdir(parents=True, exist_ok=True)
    with atomic_file(dst, "wb", folder=staging, prefix="restore-") as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)
