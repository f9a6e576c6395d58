"""Helpers the flows share: the workspace's settings, its tenants, and their checked data (without
importing Prefect, so a quick command that only reads checked data does not pay for it)."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from data_checks.expectations import validate_frame
from data_checks.report_page import write_page
from data_checks.reading import load_tenant_file
from data_checks.sampling import bounded_sample
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


def checked_data(ws: Workspace, settings: Settings, tenant: str):
    """The tenant's current data and a fresh validation report of it (under today's settings),
    with the support/query leakage of the measuring split and a link to the data version's
    validation page kept at ingest."""
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
    # this validation's own page (offline, Tailor's); GX's Data Docs site keeps the ingest's
    report = validate_frame(tenant, loaded.frame, settings.validation, docs_dir=None,
                            split=measuring_split(loaded.frame, settings), recorded=ws.validation_records)
    page = write_page(ws.data_docs_dir, tenant, report, str(version.md5).removeprefix("md5:"))
    report = dataclasses.replace(report, data_docs=page, data_docs_index=str(ws.data_docs_dir / "index.html"))
    return loaded.frame, report, version


def measuring_split(frame, settings: Settings) -> tuple[list[int], list[int]] | None:
    """(rows fitted on, rows scored) of the first fold of the cross-validation adaptation measures
    with, over the rows it uses (``sampled``), as row numbers of the whole file; None when no
    split can be made."""
    from lightning_modules import adaptation  # torch: only when needed

    if "label" not in frame.columns:
        return None
    numbered = frame.assign(_row=range(len(frame)))
    used, _ = sampled(numbered, settings)
    try:
        support, query = adaptation.measuring_split(used["label"].astype(str).tolist(), settings.adapt.cv_folds,
                                                    settings.adapt.seed)
    except adaptation.AdaptationRejected:
        return None
    rows = used["_row"].tolist()
    return [rows[i] for i in support], [rows[i] for i in query]


def sampled(frame, settings: Settings):
    """The rows adaptation and meta-training may cache (``limits.max_adapt_rows``), and how they
    were chosen (None when the tenant fits)."""
    return bounded_sample(frame, settings.limits.max_adapt_rows, settings.adapt.seed,
                          settings.validation.min_examples_per_label)


def _record_stage(root: str, stage: str, payload: dict, lock: bool = True) -> None:
    """Write the pipeline stage's record (and, outside ``dvc repro``, its dvc.lock entry)."""
    ws, _ = open_workspace(root)
    problem = pipeline.record(ws, stage, payload, lock)
    if problem:
        say(f"note: {problem}")


def __getattr__(name: str):
    """``record_stage``, the Prefect task of ``_record_stage``, made on first use: this module
    does not import Prefect (~2 s), so ``tailor validate`` (``checked_data``) starts without it."""
    if name != "record_stage":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    made = task(name="record-pipeline-stage", cache_policy=NO_CACHE)(_record_stage)
    globals()["record_stage"] = made
    return made
