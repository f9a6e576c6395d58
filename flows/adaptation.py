"""Adapt tenants to the current base and register each delta as a pending candidate.

Tenants run in chunks (one Prefect task per chunk: a task run costs the server more than a tiny
tenant's adaptation), ``schedule.workers`` chunks at once on the task runner ``schedule`` names.
Every tenant's outcome is its own: a data, validation, adaptation or store error ends that tenant
with a reason, a crashed chunk ends its own tenants only, and each chunk's candidates are
registered as soon as the chunk is done, while the others still compute. A fleet run (no tenant
list) adapts only the tenants whose data version, base or adaptation settings changed since their
newest version, so a rerun after a crash registers nothing twice and an unchanged fleet does no
work. Each run leaves a markdown artifact: registered, not registered and skipped, with why.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from prefect import flow, get_run_logger, tags, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from data_checks.reading import load_tenant_file
from flows import fleet, progress, runtime
from flows.common import checked_version, open_workspace, record_stage, sampled, say, tenants_with_data
from flows.runtime import flow_run_id
from lightning_modules.adaptation import AdaptationRejected, adapt_tenant
from lightning_modules.delta import load_base, save_delta
from lightning_modules.encoder import load_encoder
from registry.artifacts import base_model, candidates, compare
from registry.storage import store
from workspace import faults, versioning
from workspace.errors import UserError
from workspace.provenance import code_version
from workspace.settings import load_settings
from workspace.tenants import check_tenant_id


def _adapt_one(ws, settings, encoder, base_meta, base_ref, tenant: str, digest: str,
               base_steps: int | None = None, base_algorithm: str = "") -> dict:
    checking = time.perf_counter()
    frame, report, version = checked_version(ws, settings, tenant)
    outcome = {"tenant": tenant, "validation": report.to_dict(), "data_version": str(version.md5)}
    if not report.passed:
        return {**outcome, "status": "invalid", "reason": "; ".join(report.failures)}
    frame, sample = sampled(frame, settings)
    started = time.perf_counter()
    try:
        result = adapt_tenant(encoder, settings, base_meta, tenant, frame["text"].tolist(),
                              frame["label"].tolist(), ws.cache_dir, base_steps=base_steps)
    except AdaptationRejected as exc:
        return {**outcome, "status": "rejected", "reason": str(exc)}
    outcome["seconds"] = {"check": round(started - checking, 4),  # where the time goes: benchmarks.fleet
                          "adapt": round(time.perf_counter() - started, 4)}
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    manifest = {"tenant": tenant, "labels": result.labels,
                "base": {"name": base_ref.name, "version": base_ref.version, "digest": base_ref.digest,
                         "algorithm": base_algorithm},
                "encoder": {"name": encoder.name, "digest": encoder.digest},
                "data_version": version.md5, "data_git_commit": version.git_commit,
                "adaptation": {**result.adaptation, "sampled": sample}, "metrics": result.metrics,
                "code_version": code_version(), "settings_digest": digest}
    delta_dir = save_delta(ws.runs_dir / "deltas" / tenant / stamp, result.delta, manifest)
    return {**outcome, "status": "adapted", "delta_dir": str(delta_dir), "metrics": result.metrics,
            "adaptation": manifest["adaptation"], "held_out": result.held_out}


ADAPT_TAG = "tailor-adapt"  # `prefect concurrency-limit create tailor-adapt N`: at most N chunks compute at
# once across every run, worker and machine on that server (schedule.workers bounds one run)


@task(name="adapt-chunk", cache_policy=NO_CACHE, tags=[ADAPT_TAG])
def adapt_chunk(root: str, tenants: list[str], base_dir: str, base: dict, digest: str) -> list[dict]:
    ws, settings = open_workspace(root)
    encoder = load_encoder(settings.encoder)
    base_meta, base_info = load_base(base_dir)
    ref = base_model.BaseRef(**base)
    logger = get_run_logger()
    outcomes = []
    for tenant in tenants:
        outcome = _contained(tenant, _adapt_one, ws, settings, encoder, base_meta, ref, tenant, digest,
                             base_info.get("adapt_steps"), base_info.get("algorithm") or base_info.get(
                                 "meta_train", {}).get("algorithm", ""))
        m = outcome.get("metrics")
        detail = (f"acc {compare.measured_text(compare.measured(m['query_accuracy'], m.get('n_query')))} vs "
                  f"baseline {m['baseline_accuracy']:.3f}" if m else outcome.get("reason", ""))
        logger.info("%s %s: %s", tenant, outcome["status"], detail)
        if outcome["status"] not in ("failed", "error"):  # the face reports those, on one line
            say(f"  {tenant:<24} {outcome['status']:<9} {detail}")
        outcomes.append(outcome)
    return outcomes


def version_rows(ws, tenant: str):
    """A reader of the tenant's data versions as (text, label) rows, read and checked as ingest
    reads them: registration compares the champion's data with the candidate's through it."""
    def rows(md5: str) -> list[tuple[str, str]]:
        settings = load_settings(ws.params_file)
        with versioning.version_file(ws, tenant, md5, settings.stores) as path:
            frame = load_tenant_file(path, settings.limits).frame
        return list(zip(frame["text"].tolist(), frame["label"].tolist()))
    return rows


def _register_one(ws, outcome: dict, base_dir: str, base: dict, requested_by: str) -> str:
    """Register one adapted tenant, retrying what may be transient (a locked store, a full disk
    freed meanwhile): registering is idempotent, a retry never makes a second version. Prefect's
    own retries work per task run, and a task run per tenant costs the server more than the
    registration itself at fleet size, so the retry of one tenant is this loop."""
    for attempt in range(1, REGISTER_TRIES + 1):
        try:
            return candidates.register_candidate(ws, outcome["tenant"], outcome["delta_dir"], base_dir,
                                                 base=base_model.BaseRef(**base), validation=outcome["validation"],
                                                 requested_by=requested_by, flow_run_id=flow_run_id(),
                                                 held_out=outcome.get("held_out"),
                                                 data_rows=version_rows(ws, outcome["tenant"]))
        except UserError:
            raise
        except Exception:  # noqa: BLE001 - retried, then contained by the caller
            if attempt == REGISTER_TRIES:
                raise
            logging.getLogger("tailor.flows").warning("registering %s failed; retrying", outcome["tenant"],
                                                      exc_info=True)
            time.sleep(REGISTER_DELAY * attempt)


def _already_registered(outcome: dict, base: dict) -> tuple[str, str] | None:
    """(version, status) of a version registered earlier from this very delta, if any."""
    from pathlib import Path

    from lightning_modules.delta import read_manifest

    if not store.has_model(f"{candidates.PREFIX}{outcome['tenant']}"):
        return None
    found = candidates._existing(outcome["tenant"], read_manifest(Path(outcome["delta_dir"])),
                                 base_model.BaseRef(**base))
    return None if found is None else (str(found.version), found.tags.get("status", ""))


REGISTER_TRIES, REGISTER_DELAY = 3, 2.0  # what the per-tenant task had: retries=2, 2 s apart


@task(name="register-candidates", cache_policy=NO_CACHE)
def register_chunk(root: str, outcomes: list[dict], base_dir: str, base: dict, requested_by: str) -> list[dict]:
    """Register a chunk's adapted tenants one by one; each outcome gets its ``version`` or, for
    that tenant alone, ``failed``/``error`` with the reason."""
    ws, settings = open_workspace(root)
    store.configure(ws, settings)
    logger = get_run_logger()
    for outcome in outcomes:
        started = time.perf_counter()
        prior = _contained(outcome["tenant"], _already_registered, outcome, base)
        done = _contained(outcome["tenant"], _register_one, ws, outcome, base_dir, base, requested_by)
        outcome.setdefault("seconds", {})["register"] = round(time.perf_counter() - started, 4)
        if isinstance(done, dict):  # registration failed: this tenant only
            outcome.update(done)
            logger.warning("%s not registered: %s", outcome["tenant"], done["reason"])
        else:
            outcome["version"] = done
            # an identical delta maps to the version it made before: say so, with that version's status
            if isinstance(prior, tuple) and prior[0] == done:
                outcome["existing"] = prior[1]
            logger.info("%s %s v%s (%s)", outcome["tenant"],
                        "already registered as" if "existing" in outcome else "registered as", done,
                        outcome.get("existing", "pending review"))
            faults.point("adapt:registered")  # crash tests: killed between two tenants
    return outcomes


def _run_name() -> str:
    """``adapt-fleet``, ``adapt-acme`` or ``adapt-acme-and-3-more``: the Prefect UI tells runs apart."""
    from prefect.runtime import flow_run

    chosen = (flow_run.parameters or {}).get("tenants")
    if not chosen:
        return "adapt-fleet"
    return f"adapt-{chosen[0]}" + (f"-and-{len(chosen) - 1}-more" if len(chosen) > 1 else "")


def _plan(ws, settings, tenants: list[str] | None, force: bool):
    """(tenants chosen, the current base, the adaptation settings' digest, which of them to adapt
    and why): ``tenants`` a person named are adapted; the fleet (None) only where something changed."""
    chosen = list(dict.fromkeys(tenants)) if tenants else tenants_with_data(ws)
    if not chosen:
        raise UserError("no tenant has data yet: run `tailor ingest TENANT FILE` first")
    ref = base_model.usable_base()  # approved by a second person, no erased tenant's data in it
    digest = fleet.settings_digest(settings)
    if tenants is None:
        todo = fleet.plan(chosen, versioning.recorded_md5s(ws, chosen), candidates.newest_versions(),
                          ref.digest, digest, force)
    else:
        todo = fleet.FleetPlan(todo=chosen, why={t: "requested" for t in chosen})
    return chosen, ref, digest, todo


def preview_adapt(ws, settings, tenants: list[str] | None = None, force: bool = False) -> dict:
    """What ``adapt`` would do (``--dry-run``) in a workspace whose store is configured: the same
    choice of tenants, nothing adapted or registered, no flow run."""
    _, ref, _, todo = _plan(ws, settings, tenants, force)
    return {"dry_run": True, "base": {"name": ref.name, "version": ref.version},
            "would_adapt": [{"tenant": t, "why": todo.why.get(t, "")} for t in todo.todo],
            "unchanged": [o["tenant"] for o in todo.skipped]}


@flow(name="tailor-adapt", flow_run_name=_run_name, log_prints=False)
def adapt_flow(root: str, tenants: list[str] | None = None, requested_by: str = "service:scheduler",
               force: bool = False) -> list[dict]:
    """Adapt ``tenants``, or (None) every tenant with data whose data, base or adaptation settings
    changed since its newest version (every one with ``force``); register candidates. One outcome
    per tenant, in the order chosen."""
    started = time.perf_counter()
    logger = get_run_logger()
    ws, settings = open_workspace(root)
    store.configure(ws, settings)
    chosen, ref, digest, todo = _plan(ws, settings, tenants, force)
    base = {"name": ref.name, "version": ref.version, "digest": ref.digest, "run_id": ref.run_id}
    done = {o["tenant"]: o for o in todo.skipped}
    say(f"adapting {len(todo.todo)} tenant(s) to {ref.name} v{ref.version}"
        + (f"; {len(todo.skipped)} unchanged since their newest version (skipped)" if todo.skipped else ""))
    logger.info("%d tenant(s): %d to adapt to %s v%s, %d unchanged", len(chosen), len(todo.todo), ref.name,
                ref.version, len(todo.skipped))
    if todo.todo:
        base_dir = str(base_model.download_base(ref, ws.cache_dir / "bases"))
        with progress.step("adapting tenants", len(todo.todo)) as bar:
            for outcome in _adapt_and_register(root, todo, base_dir, base, digest, requested_by,
                                               settings.schedule.chunk_size):
                done[outcome["tenant"]] = outcome
                bar.advance()
    outcomes = [_lean(done[t]) for t in chosen]
    summary = fleet.summary_markdown(outcomes, base, time.perf_counter() - started)
    create_markdown_artifact(summary, key="tailor-fleet-adaptation" if tenants is None else "tailor-adaptation",
                             description=f"adaptation to {ref.name} v{ref.version}")
    logger.info("%s", summary.splitlines()[2])
    if tenants is None:  # the whole fleet: what the pipeline's adapt stage stands for
        record_stage(root, "adapt", {
            "base": {k: base[k] for k in ("name", "version", "digest")},
            "tenants": {o["tenant"]: {k: o[k] for k in ("status", "version", "existing", "latest_version", "reason",
                                                         "data_version") if k in o}
                        for o in outcomes}})
    return outcomes


def _adapt_and_register(root: str, todo: fleet.FleetPlan, base_dir: str, base: dict, digest: str,
                        requested_by: str, size: int):
    """Yield each tenant's final outcome: chunks are submitted to the task runner (which bounds how
    many compute at once) and, as each one finishes, its candidates are registered here, in the
    flow's thread, while the others still compute: one task run per chunk (a task run per tenant
    cost the embedded server more than the registration itself)."""
    chunks = [todo.todo[i:i + size] for i in range(0, len(todo.todo), size)]
    futures = {}
    for chunk in chunks:
        name = f"adapt-{chunk[0]}" + (f"-to-{chunk[-1]}" if len(chunk) > 1 else "")
        with tags(*(f"tenant:{t}" for t in chunk[:_TAGGED])):
            futures[adapt_chunk.with_options(task_run_name=name).submit(root, chunk, base_dir, base, digest)] = chunk
    for future in as_completed(list(futures)):
        chunk = futures[future]
        try:
            outcomes = future.result()
        except Exception as exc:  # noqa: BLE001 - a crashed chunk (a worker lost, out of memory) ends its own tenants
            logging.getLogger("tailor.flows").error("chunk %s crashed", chunk, exc_info=exc)
            reason = f"its chunk crashed: {type(exc).__name__}: {exc}".splitlines()[0]
            outcomes = [{"tenant": t, "status": "error", "reason": reason} for t in chunk]
        adapted = [o for o in outcomes if o["status"] == "adapted"]
        for outcome in adapted:
            outcome["why"] = todo.why.get(outcome["tenant"], "")
        if adapted:
            name = f"register-{adapted[0]['tenant']}" + (f"-and-{len(adapted) - 1}-more" if len(adapted) > 1 else "")
            try:
                registered = register_chunk.with_options(task_run_name=name)(root, adapted, base_dir, base,
                                                                             requested_by)
            except Exception as exc:  # noqa: BLE001 - the task itself failed (its tenants are contained inside)
                logging.getLogger("tailor.flows").error("registering %s failed", name, exc_info=exc)
                reason = f"registration failed: {type(exc).__name__}: {exc}".splitlines()[0]
                registered = [{**o, "status": "error", "reason": reason} for o in adapted]
            by_tenant = {o["tenant"]: o for o in registered}
            outcomes = [by_tenant.get(o["tenant"], o) for o in outcomes]
        yield from outcomes


_TAGGED = 20  # tenant tags per chunk: each distinct tag costs the Prefect server a little per run


def _lean(outcome: dict) -> dict:
    """The outcome without the held-out predictions (kept in MLflow; large at 1,000 tenants)."""
    return {k: v for k, v in outcome.items() if k != "held_out"}


def run_adapt(root: str, tenants: list[str] | None = None, requested_by: str = "service:scheduler",
              force: bool = False) -> list[dict]:
    """``adapt_flow`` with its chunks on the task runner params.yaml's ``schedule`` names, the flow
    run tagged ``fleet`` or with the tenants it was asked for."""
    _, settings = open_workspace(root)
    run_tags = ["tailor", "fleet"] if tenants is None else ["tailor", *(f"tenant:{t}" for t in tenants[:_TAGGED])]
    with runtime.api_for_workers(settings), tags(*run_tags):
        return adapt_flow.with_options(task_runner=runtime.task_runner(settings))(root, tenants, requested_by, force)


@flow(name="tailor-fleet", flow_run_name="fleet-{requested_by}", log_prints=False)
def scheduled_adapt(root: str, requested_by: str = "service:scheduler", force: bool = False) -> dict:
    """What the schedule runs (``tailor serve``, a work pool's worker): the fleet flow on the task
    runner params.yaml names, as a subflow. Returns how many tenants ended how (the run's
    artifact says which and why)."""
    return fleet.counts(run_adapt(root, None, requested_by, force))


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
