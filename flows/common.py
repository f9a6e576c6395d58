"""Helpers the flows share: the workspace's settings, its tenants, and their checked data."""
from __future__ import annotations

import sys
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_checks.expectations import validate_frame
from data_checks.reading import read_tenant_file
from workspace import pipeline, versioning
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
    return versioning.tenants_with_data(ws)


def other_tenants_texts(ws: Workspace, settings: Settings, tenant: str) -> dict[str, list[str]]:
    """Every other tenant's current texts, for the cross-tenant leakage check at ingest."""
    out = {}
    for other in tenants_with_data(ws):
        if other != tenant:
            try:
                out[other] = read_tenant_file(versioning.data_file(ws, other), settings.validation)["text"].tolist()
            except (UserError, KeyError):
                continue
    return out


def checked_data(ws: Workspace, settings: Settings, tenant: str):
    """The tenant's current data and a fresh validation report of it (under today's settings),
    with the support/query leakage of the measuring split and a link to the data version's
    validation page kept at ingest."""
    import dataclasses

    from data_checks.expectations import docs_page
    from lightning_modules.adaptation import AdaptationRejected, stratified_split

    check_tenant_id(tenant)
    path = versioning.data_file(ws, tenant)
    if path is None:
        raise UserError(f"tenant {tenant!r} has no data: run `tailor ingest {tenant} FILE` first")
    frame = read_tenant_file(path, settings.validation)
    try:
        split = stratified_split(frame["label"].astype(str).tolist(), settings.adapt.holdout_fraction,
                                 settings.adapt.seed) if "label" in frame.columns else None
    except AdaptationRejected:
        split = None
    # Data Docs pages are kept at ingest (one per data version); this run only links to it
    report = validate_frame(tenant, frame, settings.validation, docs_dir=None, split=split)
    version = versioning.current_version(ws, tenant)
    if version is not None:
        page = docs_page(ws.data_docs_dir, tenant, str(version.md5).removeprefix("md5:"))
        report = dataclasses.replace(report, data_docs=page,
                                     data_docs_index=str(ws.data_docs_dir / "index.html"))
    return frame, report


@task(name="record-pipeline-stage", cache_policy=NO_CACHE)
def record_stage(root: str, stage: str, payload: dict, lock: bool = True) -> None:
    """Write the pipeline stage's record (and, outside ``dvc repro``, its dvc.lock entry)."""
    ws, _ = open_workspace(root)
    problem = pipeline.record(ws, stage, payload, lock)
    if problem:
        say(f"note: {problem}")
