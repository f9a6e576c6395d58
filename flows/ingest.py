"""Ingest: read and validate a tenant file, then version it with DVC; bad files go to quarantine
and leave the tenant's current data untouched."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from data_checks.expectations import validate_frame
from data_checks.quarantine import quarantine
from data_checks.report_page import write_page
from data_checks.reading import load_tenant_file
from data_checks import text_index
from flows.common import open_workspace
from flows.retry import io_retry
from workspace import versioning
from workspace.errors import UserError
from workspace.tenants import check_tenant_id


@task(name="validate-file", cache_policy=NO_CACHE)
def validate_file(root: str, tenant: str, file: str) -> dict:
    """The validation report, and the md5 of exactly the bytes that were validated."""
    ws, settings = open_workspace(root)
    loaded = load_tenant_file(Path(file), settings.limits)
    # run_name: the md5 DVC will version these bytes under, so the kept validation page is found by it
    texts = loaded.frame["text"].dropna().astype(str).tolist() if "text" in loaded.frame.columns else []
    # the cross-tenant check through the workspace's text index: this file's texts, not every other file
    report = validate_frame(tenant, loaded.frame, settings.validation, ws.data_docs_dir, run_name=loaded.md5,
                            overlap=text_index.overlap(ws, tenant, texts), recorded=ws.validation_records)
    # Tailor's own page of this validation, readable offline (GX's Data Docs load their assets from CDNs)
    page = write_page(ws.data_docs_dir, tenant, report, loaded.md5)
    return {**report.to_dict(), "file_md5": loaded.md5, "page": page}


@task(name="version-data", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=io_retry)
def version_data(root: str, tenant: str, file: str, md5: str, author: str = "") -> dict:
    ws, settings = open_workspace(root)
    return versioning.track(ws, tenant, Path(file), settings.stores, expected_md5=md5,
                            max_bytes=settings.limits.max_bytes, author=author).to_dict()


@task(name="quarantine-file", cache_policy=NO_CACHE, retries=1, retry_condition_fn=io_retry)
def quarantine_file(root: str, tenant: str, file: str, report: dict | str) -> str:
    ws, settings = open_workspace(root)
    return str(quarantine(ws, tenant, Path(file), report, settings.limits))


@flow(name="tailor-ingest", flow_run_name="ingest-{tenant}", log_prints=False)
def ingest_flow(root: str, tenant: str, file: str, author: str = "") -> dict:
    """Returns {"tenant", "passed", "data_version" | "quarantined", "report"}. ``author``: who ran
    it, the author of the data's git commit."""
    check_tenant_id(tenant)
    try:
        report = validate_file(root, tenant, file)
    except UserError as exc:  # unreadable: keep it for the team to look at, then say why
        quarantine_file(root, tenant, file, str(exc))
        raise
    if not report["passed"]:
        where = quarantine_file(root, tenant, file, report)
        return {"tenant": tenant, "passed": False, "quarantined": where, "page": report.pop("page"), "report": report}
    version = version_data(root, tenant, file, report.pop("file_md5"), author)
    return {"tenant": tenant, "passed": True, "data_version": version, "page": report.pop("page"), "report": report}
