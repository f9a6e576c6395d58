"""Adapt tenants to the current base (in chunks, one Prefect task per chunk) and register each
delta as a pending candidate. A tenant that fails validation or adaptation is reported, not
registered, and never stops the others."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import runtime
from flows.common import checked_version, open_workspace, record_stage, sampled, say, tenants_with_data
from flows.retry import io_retry
from flows.runtime import flow_run_id
from lightning_modules.adaptation import AdaptationRejected, adapt_tenant
from lightning_modules.delta import load_base, save_delta
from lightning_modules.encoder import load_encoder
from registry import base_model, candidates, store
from workspace.errors import UserError
from workspace.provenance import code_version
from workspace.tenants import check_tenant_id


def _adapt_one(ws, settings, encoder, base_meta, base_ref, tenant: str) -> dict:
    frame, report, version = checked_version(ws, settings, tenant)
    outcome = {"tenant": tenant, "validation": report.to_dict(), "data_version": str(version.md5)}
    if not report.passed:
        return {**outcome, "status": "invalid", "reason": "; ".join(report.failures)}
    frame, sample = sampled(frame, settings)
    try:
        result = adapt_tenant(encoder, settings, base_meta, tenant, frame["text"].tolist(),
                              frame["label"].tolist(), ws.cache_dir)
    except AdaptationRejected as exc:
        return {**outcome, "status": "rejected", "reason": str(exc)}
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    manifest = {"tenant": tenant, "labels": result.labels,
                "base": {"name": base_ref.name, "version": base_ref.version, "digest": base_ref.digest},
                "encoder": {"name": encoder.name, "digest": encoder.digest},
                "data_version": version.md5, "data_git_commit": version.git_commit,
                "adaptation": {**result.adaptation, "sampled": sample}, "metrics": result.metrics,
                "code_version": code_version()}
    delta_dir = save_delta(ws.runs_dir / "deltas" / tenant / stamp, result.delta, manifest)
    return {**outcome, "status": "adapted", "delta_dir": str(delta_dir), "metrics": result.metrics,
            "adaptation": manifest["adaptation"], "held_out": result.held_out}


@task(name="adapt-chunk", cache_policy=NO_CACHE)
def adapt_chunk(root: str, tenants: list[str], base_dir: str, base: dict) -> list[dict]:
    ws, settings = open_workspace(root)
    encoder = load_encoder(settings.encoder)
    base_meta, _ = load_base(base_dir)
    ref = base_model.BaseRef(**base)
    outcomes = []
    for tenant in tenants:
        outcome = _contained(tenant, _adapt_one, ws, settings, encoder, base_meta, ref, tenant)
        m = outcome.get("metrics")
        detail = (f"acc {m['query_accuracy']:.3f} vs baseline {m['baseline_accuracy']:.3f}"
                  if m else outcome.get("reason", ""))
        if outcome["status"] not in ("failed", "error"):  # the face reports those, on one line
            say(f"  {tenant:<24} {outcome['status']:<9} {detail}")
        outcomes.append(outcome)
    return outcomes


@task(name="register-candidate", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=io_retry)
def register(root: str, outcome: dict, base_dir: str, base: dict, requested_by: str) -> str:
    ws, settings = open_workspace(root)
    store.configure(ws, settings)
    return candidates.register_candidate(ws, outcome["tenant"], outcome["delta_dir"], base_dir,
                                         base=base_model.BaseRef(**base), validation=outcome["validation"],
                                         requested_by=requested_by, flow_run_id=flow_run_id(),
                                         held_out=outcome.get("held_out"))


@flow(name="tailor-adapt", log_prints=False)
def adapt_flow(root: str, tenants: list[str] | None = None, requested_by: str = "service:scheduler") -> list[dict]:
    """Adapt ``tenants`` (None = every tenant with data) and register candidates."""
    ws, settings = open_workspace(root)
    store.configure(ws, settings)
    chosen = list(dict.fromkeys(tenants)) if tenants else tenants_with_data(ws)
    if not chosen:
        raise UserError("no tenant has data yet: run `tailor ingest TENANT FILE` first")
    ref = base_model.get_base()
    base_dir = str(base_model.download_base(ref, ws.cache_dir / "bases"))
    base = {"name": ref.name, "version": ref.version, "digest": ref.digest, "run_id": ref.run_id}
    say(f"adapting {len(chosen)} tenant(s) to {ref.name} v{ref.version}")
    size = settings.schedule.chunk_size
    chunks = [adapt_chunk.submit(root, chosen[i:i + size], base_dir, base) for i in range(0, len(chosen), size)]
    outcomes = [o for chunk in chunks for o in chunk.result()]
    for outcome in outcomes:
        if outcome["status"] == "adapted":
            done = _contained(outcome["tenant"], register, root, outcome, base_dir, base, requested_by)
            if isinstance(done, dict):  # registration failed: this tenant only
                outcome.update(done)
            else:
                outcome["version"] = done
    if tenants is None:  # the whole fleet: what the pipeline's adapt stage stands for
        record_stage(root, "adapt", {
            "base": {k: base[k] for k in ("name", "version", "digest")},
            "tenants": {o["tenant"]: {k: o[k] for k in ("status", "version", "reason", "data_version") if k in o}
                        for o in outcomes}})
    return outcomes


def run_adapt(root: str, tenants: list[str] | None = None, requested_by: str = "service:scheduler") -> list[dict]:
    """``adapt_flow`` with its chunks on the task runner params.yaml's ``schedule`` names."""
    _, settings = open_workspace(root)
    with runtime.api_for_workers(settings):
        return adapt_flow.with_options(task_runner=runtime.task_runner(settings))(root, tenants, requested_by)


def _contained(tenant: str, fn, *args):
    """``fn(*args)``, or a failed outcome for ``tenant``: one tenant's mistake or fault never costs
    the others their candidates. Internal errors keep their traceback in the log."""
    try:
        check_tenant_id(tenant)
        return fn(*args)
    except UserError as exc:
        return {"tenant": tenant, "status": "failed", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - contained per tenant, reported, logged
        logging.getLogger("tailor.flows").exception("adapting %s failed", tenant)
        return {"tenant": tenant, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
