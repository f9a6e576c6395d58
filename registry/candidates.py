"""A tenant's adapted delta becomes a pending version of ``tailor-tenant-<id>`` with ``@candidate``.

The version's tags carry everything a reviewer and an auditor need (status, data version,
validation, isolation, base, metrics, flow run, code version, requester); the version itself is a
pyfunc bundling base + delta.
"""
from __future__ import annotations

import json
from pathlib import Path

from lightning_modules.delta import read_manifest
from registry import audit, isolation, store
from registry.base_model import BaseRef, read_digest
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.tenants import check_tenant_id, tenant_model_name

PENDING, APPROVED, REJECTED, ROLLED_BACK = "pending", "approved", "rejected", "rolled_back"
CANDIDATE, CHAMPION = "candidate", "champion"
PREFIX = "tailor-tenant-"
MAX_TAG = 5000  # keep tag values short: they are for people and filters, not for documents


def _short_json(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_TAG else text[:MAX_TAG - 3] + "..."


def _version_tags(tenant: str, manifest: dict, base: BaseRef, validation: dict, iso: tuple,
                  requested_by: str, flow_run_id: str | None) -> dict[str, str]:
    metrics = manifest.get("metrics") or {}
    passed, reasons = iso
    return {
        "status": PENDING,
        "tenant": tenant,
        "data_version": str(manifest.get("data_version", "")),
        "validation": "passed" if validation.get("passed") else "failed",
        "validation_report": _short_json(validation),
        "isolation": "passed" if passed else "failed: " + "; ".join(reasons)[:MAX_TAG],
        "base_version": str(base.version),
        "base_digest": base.digest,
        "delta_sha256": str(manifest.get("sha256", "")),
        "labels": _short_json(manifest.get("labels", [])),
        "metrics": _short_json({k: metrics.get(k) for k in ("query_accuracy", "baseline_accuracy")}),
        "query_accuracy": str(metrics.get("query_accuracy", "")),
        "baseline_accuracy": str(metrics.get("baseline_accuracy", "")),
        "flow_run_id": flow_run_id or "",
        "code_version": str(manifest.get("code_version", "")),
        "requested_by": requested_by,
        "sampled": str(((manifest.get("adaptation") or {}).get("sampled") or {}).get("summary", "no")),
    }


def _existing(tenant: str, manifest: dict, base: BaseRef):
    """A version already registered from this very delta (a retried task), if any."""
    for mv in store.versions(tenant_model_name(tenant)):
        t = mv.tags
        if (t.get("delta_sha256") == manifest.get("sha256") and t.get("base_digest") == base.digest
                and t.get("data_version") == str(manifest.get("data_version", ""))):
            return mv
    return None


def register_candidate(ws: Workspace, tenant: str, delta_dir: Path, base_dir: Path, *, base: BaseRef,
                       validation: dict, requested_by: str, flow_run_id: str | None = None) -> str:
    """Register ``delta_dir`` (+ ``base_dir``) as a pending version with ``@candidate``; its version.

    ``validation`` is the data validation report of the tenant's data (its ``passed`` is the
    gate). Registering the same delta twice returns the first version instead of a duplicate.
    """
    import mlflow

    from registry import pyfunc

    check_tenant_id(tenant)
    delta_dir, base_dir = Path(delta_dir), Path(base_dir)
    manifest = read_manifest(delta_dir)
    if manifest.get("tenant") != tenant:
        raise UserError(f"{delta_dir} is a delta of tenant {manifest.get('tenant')!r}, not {tenant!r}")
    if read_digest(base_dir) != base.digest:
        raise UserError(f"{base_dir} is not {base.name} v{base.version}: its digest differs")
    if not requested_by:
        raise UserError("say who requests the candidate (requested_by)")
    name = tenant_model_name(tenant)
    store.ensure_registered_model(name, f"Tailor tenant {tenant}: base + delta per version")
    found = _existing(tenant, manifest, base)
    if found is not None:
        return str(found.version)
    iso = isolation.check(tenant, delta_dir, base)
    tags = _version_tags(tenant, manifest, base, validation or {}, iso, requested_by, flow_run_id)
    c = store.client()
    metrics = store.numeric(manifest.get("metrics") or {})
    params = {k: str(v)[:6000] for k, v in store.flatten("", manifest.get("adaptation") or {}).items()}
    params.update(base_version=str(base.version), data_version=tags["data_version"],
                  labels=tags["labels"][:6000])
    with mlflow.start_run(experiment_id=store.experiment_id(name),
                          run_name=f"adapt-{tenant}", tags={"tenant": tenant, "requested_by": requested_by,
                                                            "flow_run_id": flow_run_id or ""}) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        info = pyfunc.log_tenant_model(delta_dir, base_dir)
    mv = c.create_model_version(name, info.model_uri, run.info.run_id, tags=tags, model_id=info.model_id,
                                description=f"{tenant}: delta on {base.name} v{base.version}")
    previous = store.alias_version(name, CANDIDATE)
    c.set_registered_model_alias(name, CANDIDATE, mv.version)
    audit.append(ws, actor=requested_by, action="register", tenant=tenant,
                 frm=None if previous is None else previous.version, to=mv.version,
                 reason="adapted delta registered for review",
                 details={"data_version": tags["data_version"], "base_version": tags["base_version"],
                          "validation": tags["validation"], "isolation": tags["isolation"],
                          "metrics": {k: metrics.get(k) for k in ("query_accuracy", "baseline_accuracy")},
                          "flow_run_id": flow_run_id, "run_id": run.info.run_id})
    return str(mv.version)


def list_tenants() -> list[str]:
    """Tenants with a registered model, sorted."""
    out, token = [], None
    while True:
        page = store.client().search_registered_models(f"name LIKE '{PREFIX}%'", max_results=1000,
                                                       page_token=token)
        out.extend(rm.name[len(PREFIX):] for rm in page if rm.name.startswith(PREFIX))
        token = page.token
        if not token:
            return sorted(out)
