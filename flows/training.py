"""Meta-train the base on the meta-training tenants and register it in MLflow as tailor-base."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import checked_version, open_workspace, record_stage, sampled, say, tenants_with_data
from flows.retry import io_retry
from flows.runtime import flow_run_id
from lightning_modules import evidence
from lightning_modules.delta import load_base
from lightning_modules.encoder import load_encoder
from lightning_modules.training import check_enough_examples, meta_train
from registry.artifacts import base_model
from registry.storage import store
from workspace.errors import UserError
from workspace.provenance import code_version


def choose_tenants(available: list[str], settings, left_out: dict[str, str] | None = None
                   ) -> tuple[list[str], list[str], list[str]]:
    """(training, early-stopping, evidence) tenants. From settings, else every tenant with data: a
    seeded ``meta_train.evidence_share`` held out for the evidence (with 4 tenants or more), then a
    seeded fifth of the rest for early stopping. Evidence tenants are never trained on nor used to
    stop: they are the new tenants on which the base is judged. ``available``: the tenants whose
    data may be used; ``left_out``: the others, which a configured list may name (they are left
    out, not an error)."""
    cfg = settings.meta_train
    skip = set(left_out or {})
    wanted = [t for t in cfg.tenant_list() if t not in skip] or available
    named = [t for t in cfg.val_tenant_list() + cfg.evidence_tenant_list() if t not in skip]
    missing = sorted(set(wanted + named) - set(available) - skip)
    if missing:
        raise UserError(f"meta_train tenants without data: {', '.join(missing)}; ingest them or fix params.yaml")
    both = sorted(set(cfg.val_tenant_list()) & set(cfg.evidence_tenant_list()))
    if both:
        raise UserError(f"meta_train: {', '.join(both)} named both in val_tenants and evidence_tenants; a tenant "
                        "that stops training early cannot also judge it")
    pool = sorted(wanted)
    evidence = [t for t in cfg.evidence_tenant_list() if t not in skip]
    if not evidence and cfg.evidence_share > 0 and len(pool) >= 4:
        rest = [t for t in pool if t not in cfg.val_tenant_list()]
        evidence = sorted(random.Random(f"{cfg.seed}:evidence").sample(rest, max(1, round(len(pool) * cfg.evidence_share))))
    val = [t for t in cfg.val_tenant_list() if t not in skip]
    if not val:
        rest = [t for t in pool if t not in evidence]
        val = random.Random(cfg.seed).sample(rest, max(1, len(rest) // 5)) if len(rest) > 1 else []
    train = [t for t in wanted if t not in val and t not in evidence]
    if not train or not val:
        raise UserError("meta-training needs at least 2 tenants with valid data whose data may train the base "
                        "(one is held out)" + (f"; left out: {', '.join(sorted(skip))}" if skip else ""))
    return train, val, evidence


@task(name="load-tenant-data", cache_policy=NO_CACHE)
def load_tenants(root: str, tenants: list[str]) -> tuple[dict, dict]:
    """(tenant -> (texts, labels), tenant -> data version) of the tenants whose data is valid.

    The version is that of exactly the bytes read (read under the data lock, and a file edited
    outside Tailor is refused), so the base model's record of its inputs cannot name data it did
    not see.
    """
    ws, settings = open_workspace(root)
    data, versions = {}, {}
    for tenant in tenants:
        frame, report, version = checked_version(ws, settings, tenant)
        if report.passed:
            frame, _ = sampled(frame, settings)  # no tenant's features may exhaust memory
            data[tenant] = (frame["text"].tolist(), frame["label"].tolist())
            versions[tenant] = version.md5
        else:
            say(f"  skipping {tenant}: its data fails validation ({report.failures[0]})")
    return data, versions


def _checkpoint_key(settings, algorithm: str, data_versions: dict) -> str:
    """Names the checkpoint folder after everything that decides the run: a rerun with the same
    inputs resumes where an interrupted one stopped; other inputs start afresh."""
    raw = json.dumps({"encoder": settings.to_dict()["encoder"], "meta_train": settings.to_dict()["meta_train"],
                      "adapt": settings.to_dict()["adapt"], "algorithm": algorithm, "data": data_versions,
                      "max_adapt_rows": settings.limits.max_adapt_rows},  # it decides which rows are seen
                     sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


# what the command keeps of meta_train.max_minutes after the evidence, for registering the base,
# recording the stage and exiting (measured: about 2 s on a quiet 2-core machine, five times that
# beside 8 busy processes; benchmarks/results/budget.md), scaled by the load per core when the
# flow starts, so the whole command stays in budget
REGISTER_RESERVE_S = 4.0
# share of the budget the evidence gets when there are evidence tenants (adapting them from each base)
EVIDENCE_SHARE = 0.2


@dataclass(frozen=True)
class Deadlines:
    """When training and the evidence must stop (``time.time()``; None without a budget), and the
    plan in words for the run's output."""

    training: float | None
    evidence: float | None
    plan: str = ""


def _load_per_core() -> float:
    try:
        return os.getloadavg()[0] / max(1, os.cpu_count() or 1)
    except OSError:
        return 1.0


def deadlines_of(settings, started_at: float | None, evidence: bool) -> Deadlines:
    """The command's start plus meta_train.max_minutes, less what registering needs at this load
    and, with evidence tenants, the evidence's share."""
    minutes = settings.meta_train.max_minutes
    if not minutes:
        return Deadlines(None, None, "no time budget (meta_train.max_minutes 0)")
    start = time.time() if started_at is None else started_at
    load = _load_per_core()
    reserve = REGISTER_RESERVE_S * max(1.0, load)
    end = start + minutes * 60 - reserve
    train_end = end - (minutes * 60 * EVIDENCE_SHARE if evidence else 0.0)
    plan = (f"time budget {minutes:g} min from the command's start ({time.time() - start:.0f}s ago): training "
            f"until {train_end - start:.0f}s" + (f", evidence until {end - start:.0f}s" if evidence else "") +
            f", {reserve:.0f}s kept to register (load {load:.1f} per core)")
    return Deadlines(train_end, end, plan)


def _monotonic(deadline_at: float | None) -> float | None:
    return None if deadline_at is None else time.monotonic() + deadline_at - time.time()


@task(name="meta-train", cache_policy=NO_CACHE)
def train_task(root: str, algorithm: str | None, train: dict, val: dict, data_versions: dict,
               deadline_at: float | None = None):
    ws, settings = open_workspace(root)
    if algorithm:
        settings = settings.replace("meta_train", algorithm=algorithm)
    store.configure(ws, settings)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    out = ws.runs_dir / f"base-{stamp}"
    key = _checkpoint_key(settings, settings.meta_train.algorithm, data_versions)
    logger = base_model.training_logger(f"meta-train-{stamp}")
    ddp = "ddp" in str(settings.meta_train.strategy)
    with _checkpoint_folder(ws.runs_dir / "meta-train-checkpoints" / key, shared=ddp) as checkpoints:
        result = meta_train(load_encoder(settings.encoder), settings, train, val, out, ws.cache_dir, say=say,
                            logger=logger, checkpoint_dir=checkpoints, progress=sys.stdout.isatty(),
                            deadline=_monotonic(deadline_at))
        if result.rank == 0 and not ddp:
            # a run that finished leaves nothing to resume: the next one with the same inputs starts
            # afresh (it resumed, and trained no step once its predecessors' time was counted). Under
            # DDP the other ranks may still read the best checkpoint: the folder stays.
            shutil.rmtree(checkpoints, ignore_errors=True)
    result.metrics["training_run_id"] = logger.run_id
    return result


@contextmanager
def _checkpoint_folder(folder: Path, shared: bool = False):
    """``folder``, the checkpoints of these inputs, held by this run: a killed run's are resumed by
    the next. While another run with the same inputs holds it, a private folder beside it, so that
    neither writes into, resumes or removes the other's. ``shared`` (DDP: every rank runs this and
    must use rank 0's folder): ``folder`` as it is."""
    if shared:
        yield folder
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{folder}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # released when this run ends, however it ends
        except OSError:
            folder = Path(tempfile.mkdtemp(prefix=f"{folder.name}-", dir=folder.parent))
        yield folder
    finally:
        os.close(fd)


def _current_base(settings):
    """(meta-parameters, inner steps) of the ``@current`` base, or None without one (or when it was
    trained for another encoder or layout: then it is not comparable and the evidence says so)."""
    try:
        ref = base_model.get_base()
    except UserError:
        return None, "no current base"
    meta, info = load_base(base_model.download_base(ref))
    if info.get("encoder", {}).get("name") != settings.encoder.name:
        return None, f"the current base v{ref.version} uses another encoder"
    return (meta, info.get("adapt_steps")), f"v{ref.version}"


@task(name="base-evidence", cache_policy=NO_CACHE)
def evidence_task(root: str, result, tenants: dict, data_versions: dict, deadline_at: float | None = None) -> dict:
    """The new base judged on tenants held out of training (``lightning_modules.evidence``)."""
    ws, settings = open_workspace(root)
    store.configure(ws, settings)
    current, which = _current_base(settings)
    say(f"judging the new base on {len(tenants)} tenant(s) held out of training, against the current base "
        f"({which}), the start without a trained base and the frozen head with names")
    bases = {"new_base": (result.meta, result.metrics.get("adapt_steps")), "current_base": current}
    gathered = evidence.gather(load_encoder(settings.encoder), settings, tenants, bases, ws.cache_dir,
                               deadline=_monotonic(deadline_at))
    out = evidence.summarise(gathered, list(tenants))
    out.update(current_base=which, data_versions=data_versions, shots=settings.meta_train.shots)
    return out


@task(name="register-base", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=io_retry)
def register_task(root: str, result, algorithm: str, data_versions: dict, trained_by: str = "service:meta-train",
                  left_out: dict | None = None, consent: dict | None = None, evidence: dict | None = None) -> dict:
    ws, settings = open_workspace(root)
    store.configure(ws, settings)
    ref = base_model.register_base(result.base_dir, params=result.params, metrics=result.metrics,
                                   history=result.history, data_versions=data_versions, actor=trained_by,
                                   left_out=left_out, consent=consent, evidence=evidence,
                                   tags={"flow_run_id": flow_run_id() or "", "code_version": code_version(),
                                         "algorithm": algorithm, "kept": str(result.metrics.get("kept", "")),
                                         "adapt_steps": str(result.metrics.get("adapt_steps", "")),
                                         "best_step": str(result.metrics.get("best_step", "")),
                                         "stop_reason": str(result.metrics.get("stop_reason", "")),
                                         "training_run_id": str(result.metrics.get("training_run_id", ""))})
    return {"registered": True, "name": ref.name, "version": ref.version, "digest": ref.digest,
            "metrics": result.metrics, "best_step": result.metrics.get("best_step"),
            "stop_reason": result.metrics.get("stop_reason"), "status": "pending", "requested_by": trained_by,
            "left_out": left_out or {}, "evidence": evidence}


def usable_tenants(ws, settings) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """(tenants whose data may train the base, tenant -> why each other one may not, tenant -> why
    each usable one may): the consent recorded in the audit log (else params.yaml's default), and
    tenants whose data was erased."""
    from registry.review import consent, erasure
    from workspace.erasure import erasing

    store.configure(ws, settings)
    available = tenants_with_data(ws)
    erased = erasure.erased_tenants()
    going = {t for t in available if erasing(ws, t) is not None or erased.get(t, "").startswith("erasure under way")}
    gone = {t: f"its data was erased ({why})" for t, why in erased.items() if t not in available}
    gone.update({t: "its erasure is under way" for t in going})
    available = [t for t in available if t not in going]
    allowed, left_out = consent.split(ws, settings, available)
    why = consent.decisions(ws, settings, allowed)
    return allowed, {**left_out, **gone}, {t: why[t]["why"] for t in allowed}


@flow(name="tailor-meta-train", log_prints=False)
def meta_train_flow(root: str, algorithm: str | None = None, started_at: float | None = None,
                    register_anyway: bool = False, trained_by: str = "service:meta-train") -> dict:
    """``started_at``: when the command began (``time.time()``); meta_train.max_minutes counts from it.
    A base on which no training step improved the held-out score is not registered unless
    ``register_anyway``: it would be the start weights under a new name. ``trained_by``: who asked;
    the base waits for someone else's approval. Only tenants whose data may train the base are used;
    the others are named with why."""
    ws, settings = open_workspace(root)
    configured = settings.meta_train.algorithm  # a different --algorithm is not what dvc.yaml reproduces
    if algorithm:
        settings = settings.replace("meta_train", algorithm=algorithm)
    allowed, left_out, consent = usable_tenants(ws, settings)
    for tenant, why in sorted(left_out.items()):
        say(f"  left out {tenant}: {why}")
    train_ids, val_ids, evidence_ids = choose_tenants(allowed, settings, left_out)
    say(f"training the base ({settings.meta_train.algorithm}) on {len(train_ids)} tenants, early-stopping on "
        f"{len(val_ids)} held-out: {', '.join(val_ids)}")
    if evidence_ids:
        say(f"evidence: {len(evidence_ids)} tenant(s) never trained on judge it: {', '.join(evidence_ids)}")
    else:
        say("evidence: none (fewer than 4 tenants with data, or meta_train.evidence_share 0)")
    deadlines = deadlines_of(settings, started_at, bool(evidence_ids))
    say(deadlines.plan)
    (train, train_versions), (val, val_versions) = load_tenants(root, train_ids), load_tenants(root, val_ids)
    if not train or not val:
        raise UserError("no valid meta-training or held-out tenant data left after validation")
    check_enough_examples(settings, train, val)   # before the encoder loads and features are cached
    data_versions = {**train_versions, **val_versions}
    result = train_task(root, algorithm, train, val, data_versions, deadlines.training)
    if not result.metrics.get("improved") and not register_anyway:
        # before the evidence: judging the untrained start against itself is time the budget lacks
        say("not registered: no training step improved the held-out score on the start weights (the base "
            "would be the untrained start); `tailor meta-train --register-anyway` registers it regardless")
        return {"registered": False, "reason": "no training step improved the held-out score",
                "train_tenants": sorted(train), "val_tenants": sorted(val), "evidence_tenants": sorted(evidence_ids),
                "left_out": left_out, "metrics": result.metrics, "best_step": result.metrics.get("best_step"),
                "stop_reason": result.metrics.get("stop_reason"), "evidence": None}
    summary = None
    if evidence_ids:
        evid, evid_versions = load_tenants(root, evidence_ids)
        if evid:
            summary = evidence_task(root, result, evid, evid_versions, deadlines.evidence)
    used = {t: consent[t] for t in data_versions if t in consent}
    ref = register_task(root, result, settings.meta_train.algorithm, data_versions, trained_by, left_out, used,
                        summary)
    ref.update(train_tenants=sorted(train), val_tenants=sorted(val), evidence_tenants=sorted(evidence_ids))
    record_stage(root, "meta-train", {
        "base": {k: ref[k] for k in ("name", "version", "digest")}, "algorithm": settings.meta_train.algorithm,
        "train_tenants": sorted(train), "val_tenants": sorted(val), "data_versions": data_versions,
        "evidence_tenants": sorted(evidence_ids), "left_out": sorted(left_out)},
        lock=algorithm in (None, configured))
    return ref
