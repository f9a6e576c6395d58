"""Erase a departing tenant everywhere Tailor keeps its data, as one Prefect flow of idempotent steps.

Order (each step safe to repeat; a killed run is finished by running the command again):
marker (no ingest meanwhile) → the registry: versions archived, so nothing of the tenant serves
from here on → bases trained on its data marked (never adapted from again) → DVC: working files,
cache and remote → Great Expectations: pages, results, suite, quarantine → MLflow: the artifacts of
its runs → the workspace's caches derived from texts → Prefect: its own flow runs and their logs →
the embedded MLflow store compacted (overwritten tags leave no bytes behind) → the closing audit
record, with what was removed and the retraining planned.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from data_checks import erasure as pages
from flows.common import open_workspace, say
from flows.retry import io_retry
from registry.review import erasure as registry
from registry.storage import store
from registry.trail import audit
from workspace import erasure as data
from workspace import faults
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.tenants import check_tenant_id


def derived_caches(ws: Workspace, tenant: str, delta_keys: list[str]) -> list[Path]:
    """Workspace files computed from texts: every frozen-feature cache entry (keyed by a hash of the
    texts, so whose they are cannot be told: all go, and are computed again when needed), the
    recorded validation outcomes (likewise), this tenant's adaptation outputs, serving's copies
    of its versions and any staged copy of its files."""
    found = [p for p in ws.cache_dir.glob("*.safetensors")] if ws.cache_dir.is_dir() else []
    found += [ws.validation_records, ws.runs_dir / "deltas" / tenant]
    found += [p for key in delta_keys for p in (ws.cache_dir / "models").glob(f"{key}-*")]
    staging = ws.state_dir / "staging"
    found += list(staging.glob(f"{tenant}-*")) if staging.is_dir() else []
    return [p for p in found if p.exists()]


def prefect_runs(tenant: str) -> list:
    """Flow runs of this tenant alone (``ingest-<tenant>``, ``adapt-<tenant>``): their logs,
    task runs and artifacts go with them. Runs over many tenants name ids and counts only."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=[f"ingest-{tenant}", f"adapt-{tenant}"])))


def preview(ws: Workspace, settings, tenant: str) -> dict:
    """``tailor tenant erase --dry-run``: everything the erasure would remove or change, by store,
    every check run, nothing changed (no Prefect run: its runs are named by their pattern)."""
    check_tenant_id(tenant)
    d = data.erase_plan(ws, tenant, settings.stores)
    reg = registry.registry_plan(tenant)
    docs = pages.tenant_paths(ws, tenant)
    caches = derived_caches(ws, tenant, registry.cached_delta_keys(tenant))
    if not d["data_versions"] and not reg["versions"] and not docs:
        raise UserError(f"tenant {tenant!r} has no data, versions or pages here: nothing to erase")
    return {"dry_run": True, "tenant": tenant, "data": d, "registry": reg,
            "pages": [str(p.relative_to(ws.root)) for p in docs], "page_files": pages.count_files(docs),
            "caches": [str(p.relative_to(ws.root)) for p in caches],
            "prefect": f"flow runs named ingest-{tenant} and adapt-{tenant}, with their logs",
            "store": "the embedded MLflow database is compacted (VACUUM)" if store.tracking_uri().startswith("sqlite")
            else "a tracking server's database: compact it on the server",
            "plan": retrain_plan(tenant, reg)}


def retrain_plan(tenant: str, reg: dict) -> dict:
    """What has to be made again without the tenant: a new base if the current one was trained on
    its data, then each affected tenant's re-adaptation as an ordinary candidate."""
    steps = []
    if reg["bases"]:
        steps.append(f"meta-train a new base without {tenant} (`tailor meta-train`; its data is gone, so it is "
                     f"left out), then another person approves it (`tailor review approve --base-version N`)")
    if reg["readapt"]:
        steps.append(f"re-adapt {', '.join(sorted(reg['readapt']))} from the approved base (`tailor adapt --all`): "
                     "ordinary candidates, reviewed as usual")
    return {"new_base": bool(reg["bases"]), "current_base_affected": reg["retrain"],
            "readapt": sorted(reg["readapt"]), "steps": steps}


@task(name="erase-data", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=io_retry)
def erase_data_task(root: str, tenant: str) -> dict:
    ws, settings = open_workspace(root)
    return data.erase_data(ws, tenant, settings.stores)


@task(name="erase-pages", cache_policy=NO_CACHE)
def erase_pages_task(root: str, tenant: str) -> dict:
    ws, _ = open_workspace(root)
    return pages.erase_tenant(ws, tenant)


@task(name="erase-artifacts", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=io_retry)
def erase_artifacts_task(root: str, tenant: str) -> dict:
    ws, settings = open_workspace(root)
    store.configure(ws, settings)
    return registry.delete_artifacts(tenant)


@task(name="erase-prefect-runs", cache_policy=NO_CACHE)
def erase_prefect_task(tenant: str) -> list[str]:
    from prefect.client.orchestration import get_client

    runs = prefect_runs(tenant)
    with get_client(sync_client=True) as client:
        for run in runs:
            client.delete_flow_run(run.id)
    return [str(r.id) for r in runs]


@flow(name="tailor-erase", flow_run_name="erase-{tenant}", log_prints=False)
def erase_flow(root: str, tenant: str, actor: str, reason: str) -> dict:
    """Erase ``tenant``; returns what was removed where, and the retraining it plans."""
    check_tenant_id(tenant)
    ws, settings = open_workspace(root)
    store.configure(ws, settings)
    actor = registry.require_actor(actor)
    s = registry.state(tenant)
    left = data.data_versions(ws, tenant) if ws.tenant_dir(tenant).is_dir() else []
    if s and s.get("state") == "done" and not left and data.erasing(ws, tenant) is None:
        live = [v for v in registry.registry_plan(tenant)["versions"] if v["status"] != registry.STATUS]
        if not live and not ws.tenant_dir(tenant).exists():
            say(f"{tenant} was erased at {s.get('at')} by {s.get('by')}: nothing left to remove")
            return {"tenant": tenant, "already": True, "at": s.get("at"), "by": s.get("by")}
    md5s = [v.md5 for v in data.data_versions(ws, tenant)] or list((s or {}).get("data_versions") or [])
    if not md5s and not store.has_model(f"tailor-tenant-{tenant}") and not pages.tenant_paths(ws, tenant):
        raise UserError(f"tenant {tenant!r} has no data, versions or pages here: nothing to erase")
    if data.erasing(ws, tenant) is None:
        data.mark_erasing(ws, tenant, actor, audit.now())
    faults.point("erase:marked")  # crash tests: `tailor tenant erase` again finishes from any of these
    reg = registry.registry_plan(tenant)
    plan = retrain_plan(tenant, reg)
    began = registry.begin(ws, tenant, actor, reason, md5s)
    say(f"{tenant}: {'resuming the erasure begun at ' + began['since'] if began['resumed'] else 'erasing'}; "
        f"{len(reg['versions'])} version(s) archived, they serve no more")
    bases = registry.mark_bases(ws, tenant, actor, reason)
    faults.point("erase:registry")
    removed = erase_data_task(str(ws.root), tenant)
    faults.point("erase:data")
    docs = erase_pages_task(str(ws.root), tenant)
    keys = registry.cached_delta_keys(tenant)
    artifacts = erase_artifacts_task(str(ws.root), tenant)
    faults.point("erase:artifacts")
    caches = derived_caches(ws, tenant, keys)
    n_cache = sum(data.remove_tree(p) for p in caches)
    runs = erase_prefect_task(tenant)
    compacted = registry.compact_store()
    faults.point("erase:compacted")
    summary = {"data_versions": md5s, "cache_objects": len(removed["cache"]), "remote_objects": len(removed["remote"]),
               "shared_kept": removed["shared_kept"], "git_commit": removed["git_commit"],
               "page_files": docs["files"], "gx_objects": docs["gx_objects"],
               "runs": artifacts["runs"], "logged_models": artifacts["models"], "cache_files": n_cache,
               "prefect_runs": runs, "store_compacted": compacted, "bases_marked": bases, "plan": plan}
    commit = registry.finish(ws, tenant, actor, reason, summary)
    data.clear_erasing(ws, tenant)
    return {"tenant": tenant, "by": actor, "at": commit["at"], "audit_seq": commit["seq"],
            "versions_archived": [v["version"] for v in reg["versions"]], **summary}
