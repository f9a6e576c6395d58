"""Retention: ``data.keep_versions`` / ``data.keep_days`` prune every tenant's older data versions
(their bytes in the DVC cache and remote, and their validation pages), each tenant's pruning
recorded in the audit log first. Never pruned: a tenant's current version, and any version a
champion, a pending candidate or a base was trained on. Git keeps every version's pointer."""
from __future__ import annotations

import time

from prefect import flow

from data_checks import erasure as pages
from flows.common import open_workspace, say, tenants_with_data
from registry.review.data_lineage import protected
from registry.storage import store
from registry.trail import transitions
from workspace import erasure as data
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.tenants import tenant_model_name


def prune_plan(ws: Workspace, settings, now: float | None = None) -> dict:
    """tenant -> {"prune": [md5], "keep": {md5: why}} under the retention settings; only versions
    whose bytes are still somewhere are listed to prune."""
    keep_n, keep_days = settings.data.keep_versions, settings.data.keep_days
    if not keep_n and not keep_days:
        raise UserError("retention is off: set data.keep_versions and/or data.keep_days in params.yaml")
    now = time.time() if now is None else now
    guarded = protected()
    out = {}
    for tenant in tenants_with_data(ws):
        versions = data.data_versions(ws, tenant)
        stamps = data.version_times(ws, tenant)
        keep, prune = {}, []
        for i, v in enumerate(versions):
            age_days = (now - stamps.get(v.md5, now)) / 86400
            if i == 0:
                keep[v.md5] = "current"
            elif v.md5 in guarded.get(tenant, {}):
                keep[v.md5] = guarded[tenant][v.md5]
            elif keep_n and i < keep_n:
                keep[v.md5] = f"among the newest {keep_n} (data.keep_versions)"
            elif keep_days and age_days < keep_days:
                keep[v.md5] = f"{age_days:.0f} day(s) old, under data.keep_days {keep_days}"
            else:
                prune.append(v.md5)
        if prune:
            stored = data.where(ws, prune, settings.stores)
            prune = [m for m in prune if m in stored["cache"] or m in stored["remote"]]
        out[tenant] = {"prune": prune, "keep": keep}
    return out


def plan_record(tenant: str, md5s: list[str], keep: dict, actor: str, settings) -> transitions.Plan:
    """The audit record of one tenant's pruning (no registry change: the data is DVC's)."""
    return transitions.Plan(
        action="prune-data", model=tenant_model_name(tenant), tenant=tenant, actor=actor,
        reason=f"retention: data.keep_versions {settings.data.keep_versions}, data.keep_days {settings.data.keep_days}",
        details={"pruned": md5s, "kept": keep})


@flow(name="tailor-prune", flow_run_name="prune-data", log_prints=False)
def prune_flow(root: str, actor: str) -> dict:
    """Prune every tenant's data versions that retention lets go; tenant -> what was removed."""
    ws, settings = open_workspace(root)
    store.configure(ws, settings)
    done = {}
    for tenant, p in prune_plan(ws, settings).items():
        if not p["prune"]:
            continue
        transitions.execute(ws, tenant, lambda: plan_record(tenant, p["prune"], p["keep"], actor, settings))
        removed = data.prune(ws, tenant, p["prune"], settings.stores)
        removed["page_files"] = pages.prune_versions(ws, tenant, removed["pruned"])
        done[tenant] = removed
        say(f"  {tenant}: pruned {len(removed['pruned'])} data version(s)")
    return done
