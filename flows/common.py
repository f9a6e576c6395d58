"""Helpers the flows share: the workspace's settings, its tenants, and their checked data."""
from __future__ import annotations

import sys
from pathlib import Path

from data_checks.expectations import validate_frame
from data_checks.reading import load_tenant_file
from data_checks.sampling import bounded_sample
from workspace import versioning
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import Settings, load_settings
from workspace.tenants import check_tenant_id


def say(message: str) -> None:
    print(message, flush=True, file=sys.stdout)


def open_workspace(root: str | Path) -> tuple[Workspace, Settings]:
    ws = Workspace.find(root)
    if not ws.is_initialised():
        raise UserError(f"{ws.root} is not a Tailor workspace: run `tailor init {ws.root}` first")
    return ws, load_settings(ws.params_file)


def tenants_with_data(ws: Workspace) -> list[str]:
    if not ws.data_dir.is_dir():
        return []
    return sorted(p.name for p in ws.data_dir.iterdir()
                  if p.is_dir() and versioning.data_file(ws, p.name) is not None)


def checked_data(ws: Workspace, settings: Settings, tenant: str):
    """The tenant's current data and a fresh validation report of it (under today's settings)."""
    frame, report, _ = checked_version(ws, settings, tenant)
    return frame, report


def checked_version(ws: Workspace, settings: Settings, tenant: str):
    """(frame, validation report, data version), where the version is that of exactly the bytes
    read: read under the data lock, so no ingest swaps the file in between, and a file edited by
    hand (it no longer matches its recorded md5) is refused rather than recorded under the old md5.
    """
    check_tenant_id(tenant)
    with versioning.locked(ws):
        path = versioning.data_file(ws, tenant)
        if path is None:
            raise UserError(f"tenant {tenant!r} has no data: run `tailor ingest {tenant} FILE` first")
        version = versioning.current_version(ws, tenant)
        loaded = load_tenant_file(path, settings.limits)
    if version is None or loaded.md5 != version.md5.removeprefix("md5:"):
        recorded = f"its recorded version is {version.md5}" if version else "it has no recorded version"
        raise UserError(f"{path.relative_to(ws.root)} was changed outside Tailor (md5:{loaded.md5}; {recorded}): "
                        f"`tailor ingest {tenant} FILE` records new data, `tailor data checkout {tenant} "
                        f"{version.md5 if version else 'MD5'}` restores the recorded one")
    # Data Docs are built at ingest only: rebuilding them on every scheduled run costs disk per tenant
    report = validate_frame(tenant, loaded.frame, settings.validation, docs_dir=None)
    return loaded.frame, report, version


def sampled(frame, settings: Settings):
    """The rows adaptation and meta-training may cache (``limits.max_adapt_rows``), and how they
    were chosen (None when the tenant fits)."""
    return bounded_sample(frame, settings.limits.max_adapt_rows, settings.adapt.seed,
                          settings.validation.min_examples_per_label)
