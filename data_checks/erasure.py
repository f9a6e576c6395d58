"""Erasure and retention, the data contract's part: a tenant's validation pages (Great Expectations'
Data Docs and Tailor's own), its kept validation results (they may quote its rows), its suite,
checkpoint and data asset, its quarantined files; for retention, the pages and results of pruned
data versions. The indexes are written again without them."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from workspace.paths import Workspace
from workspace.tenants import check_tenant_id


def _gx_root(ws: Workspace) -> Path:
    return ws.data_docs_dir.parent / "gx"   # the file-backed context beside the site (expectations.open_context)


def tenant_paths(ws: Workspace, tenant: str, md5s: list[str] | None = None) -> list[Path]:
    """The files and folders that hold the tenant's validation pages and results (of the data
    versions ``md5s`` only, when given), and its quarantine folder (with all versions)."""
    check_tenant_id(tenant)
    suite = f"tailor-{tenant}"
    site, gx = ws.data_docs_dir, _gx_root(ws)
    folders = [site / "validations" / suite, gx / "uncommitted" / "validations" / suite, site / "tailor" / tenant]
    if md5s is not None:
        runs = [m.removeprefix("md5:") for m in md5s]
        return [f / run for f in folders for run in runs if (f / run).exists()]
    found = folders + [site / "expectations" / f"{suite}.html", ws.quarantine_dir(tenant)]
    return [p for p in found if p.exists()]


def count_files(paths: list[Path]) -> int:
    return sum(1 if p.is_file() else sum(1 for q in p.rglob("*") if q.is_file()) for p in paths)


def erase_tenant(ws: Workspace, tenant: str) -> dict:
    """Remove every validation page, result and quarantined file of ``tenant``, its suite,
    checkpoint, validation definition and data asset, then write both indexes again."""
    paths = tenant_paths(ws, tenant)
    n = count_files(paths)
    for path in paths:
        _remove(path)
    forgotten = _forget_in_gx(ws, tenant)
    _reindex(ws)
    return {"files": n, "paths": [str(p.relative_to(ws.root)) for p in paths], "gx_objects": forgotten}


def prune_versions(ws: Workspace, tenant: str, md5s: list[str]) -> int:
    """Remove the validation pages and results of the tenant's data versions ``md5s``; files removed."""
    paths = tenant_paths(ws, tenant, md5s)
    n = count_files(paths)
    for path in paths:
        _remove(path)
    if paths:
        _reindex(ws)
    return n


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _forget_in_gx(ws: Workspace, tenant: str) -> list[str]:
    """Delete the tenant's checkpoint, validation definition and suite through GX's API, and its own
    data asset where a workspace has one (validations before the shared ``tenant-file`` asset)."""
    if not (_gx_root(ws) / "great_expectations.yml").is_file():
        return []
    from data_checks.expectations import _gx_lock, _import_gx, open_context

    gx = _import_gx()
    name, gone = f"tailor-{tenant}", []
    with warnings.catch_warnings(), _gx_lock(ws.data_docs_dir):
        warnings.simplefilter("ignore")
        context = open_context(gx, ws.data_docs_dir)
        for kind, store in (("checkpoint", context.checkpoints), ("validation definition", context.validation_definitions),
                            ("suite", context.suites)):
            try:
                store.delete(name=name)
                gone.append(f"{kind} {name}")
            except Exception:  # noqa: BLE001 - GX raises several types for "not there"
                pass
        try:
            context.data_sources.get("tailor").delete_asset(tenant)
            gone.append(f"data asset {tenant}")
        except Exception:  # noqa: BLE001
            pass
    return gone


def _reindex(ws: Workspace) -> None:
    """Both sites' indexes from what is left: Tailor's pages, and GX's Data Docs index (built alone,
    no page rendered again)."""
    from data_checks.report_page import write_index

    if (ws.data_docs_dir / "tailor").is_dir():
        write_index(ws.data_docs_dir)
    if not (_gx_root(ws) / "great_expectations.yml").is_file():
        return
    from data_checks.expectations import _gx_lock, _import_gx, open_context

    gx = _import_gx()
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    with warnings.catch_warnings(), _gx_lock(ws.data_docs_dir):
        warnings.simplefilter("ignore")
        context = open_context(gx, ws.data_docs_dir)
        # an identifier nothing matches: GX renders no page, only the index of what its stores hold
        context.build_data_docs(site_names=["tailor"],
                                resource_identifiers=[ExpectationSuiteIdentifier("tailor-index-only")])
