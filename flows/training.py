"""Meta-train the base on the meta-training tenants and register it in MLflow as tailor-base."""
from __future__ import annotations

import random
from datetime import datetime, timezone

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import checked_data, open_workspace, sampled, say, tenants_with_data
from flows.retry import io_retry
from flows.runtime import flow_run_id
from lightning_modules.encoder import load_encoder
from lightning_modules.training import meta_train
from registry import base_model, store
from workspace.errors import UserError
from workspace.provenance import code_version


def choose_tenants(available: list[str], settings) -> tuple[list[str], list[str]]:
    """(training, held-out) tenants from settings, else every tenant with a seeded fifth held out."""
    cfg = settings.meta_train
    wanted = cfg.tenant_list() or available
    missing = sorted(set(wanted + cfg.val_tenant_list()) - set(available))
    if missing:
        raise UserError(f"meta_train tenants without data: {', '.join(missing)}; ingest them or fix params.yaml")
    val = cfg.val_tenant_list()
    if not val:
        pool = sorted(wanted)
        val = random.Random(cfg.seed).sample(pool, max(1, len(pool) // 5)) if len(pool) > 1 else []
    train = [t for t in wanted if t not in val]
    if not train or not val:
        raise UserError("meta-training needs at least 2 tenants with valid data (one is held out)")
    return train, val


@task(name="load-tenant-data", cache_policy=NO_CACHE)
def load_tenants(root: str, tenants: list[str]) -> dict:
    ws, settings = open_workspace(root)
    data = {}
    for tenant in tenants:
        frame, report = checked_data(ws, settings, tenant)
        if report.passed:
            frame, _ = sampled(frame, settings)  # no tenant's features may exhaust memory
            data[tenant] = (frame["text"].tolist(), frame["label"].tolist())
        else:
            say(f"  skipping {tenant}: its data fails validation ({report.failures[0]})")
    return data


@task(name="meta-train", cache_policy=NO_CACHE)
def train_task(root: str, algorithm: str | None, train: dict, val: dict):
    ws, settings = open_workspace(root)
    if algorithm:
        settings = settings.replace("meta_train", algorithm=algorithm)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    out = ws.runs_dir / f"base-{stamp}"
    return meta_train(load_encoder(settings.encoder), settings, train, val, out, ws.cache_dir, say=say)


@task(name="register-base", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=io_retry)
def register_task(root: str, result, algorithm: str) -> dict:
    ws, settings = open_workspace(root)
    store.configure(ws, settings)
    ref = base_model.register_base(result.base_dir, params=result.params, metrics=result.metrics,
                                   history=result.history,
                                   tags={"flow_run_id": flow_run_id() or "", "code_version": code_version(),
                                         "algorithm": algorithm})
    return {"name": ref.name, "version": ref.version, "digest": ref.digest, "metrics": result.metrics}


@flow(name="tailor-meta-train", log_prints=False)
def meta_train_flow(root: str, algorithm: str | None = None) -> dict:
    ws, settings = open_workspace(root)
    if algorithm:
        settings = settings.replace("meta_train", algorithm=algorithm)
    train_ids, val_ids = choose_tenants(tenants_with_data(ws), settings)
    say(f"meta-training {settings.meta_train.algorithm} on {len(train_ids)} tenants, "
        f"early-stopping on {len(val_ids)} held-out: {', '.join(val_ids)}")
    train, val = load_tenants(root, train_ids), load_tenants(root, val_ids)
    if not train or not val:
        raise UserError("no valid meta-training or held-out tenant data left after validation")
    result = train_task(root, algorithm, train, val)
    return register_task(root, result, settings.meta_train.algorithm)
