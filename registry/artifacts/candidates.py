"""A tenant's adapted delta becomes a pending version of ``tailor-tenant-<id>`` with ``@candidate``.

The version's tags carry everything a reviewer and an auditor need (status, data version,
validation, isolation, base, metrics and which baseline, head, flow run, code version, requester)
and the digests every later load is checked against (delta bytes, labels, base). Its run holds
what MLflow's UI shows a reviewer: per-label metrics, a confusion-matrix PNG, the validation
summary and the tenant's data as a dataset input with its DVC digest.
"""
from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from registry.artifacts import checks, compare, evaluation, serving
from registry.artifacts.base_model import read_digest
from registry.artifacts.checks import BaseRef, labels_digest
from registry.artifacts.describe import describe
from registry.storage import owners, store
from registry.storage.names import CANDIDATE, CHAMPION, PENDING, PREFIX
from registry.trail import audit, identity, transitions
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.tenants import check_tenant_id, tenant_model_name

DataRows = Callable[[str], "list[tuple[str, str]]"]  # data version -> its (text, label) rows
MAX_TAG = 5000  # keep tag values short: they are for people and filters, not for documents


def _short_json(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_TAG else text[:MAX_TAG - 3] + "..."


def _version_tags(tenant: str, manifest: dict, base: BaseRef, validation: dict, iso: tuple,
                  requested_by: str, flow_run_id: str | None) -> dict[str, str]:
    metrics = manifest.get("metrics") or {}
    passed, reasons = iso
    summary = {k: validation.get(k) for k in ("passed", "failures", "stats", "suite", "checked_at", "leakage")}
    if isinstance(summary.get("leakage"), dict):  # its examples are texts: in the run's review/validation.json only
        summary["leakage"] = {k: v for k, v in summary["leakage"].items() if not k.endswith("_examples")}
    return {
        "status": PENDING,
        "tenant": tenant,
        "data_version": str(manifest.get("data_version", "")),
        "validation": "passed" if validation.get("passed") else "failed",
        "validation_report": _short_json(summary),
        "data_docs": str(validation.get("data_docs") or ""),
        "isolation": "passed" if passed else "failed: " + "; ".join(reasons)[:MAX_TAG],
        "base_version": str(base.version),
        "base_digest": base.digest,
        "delta_sha256": str(manifest.get("sha256", "")),
        "labels": _short_json(manifest.get("labels", [])),
        "labels_sha256": labels_digest(manifest.get("labels", [])),
        "metrics": _short_json({k: metrics.get(k) for k in ("query_accuracy", "baseline_accuracy")}),
        "query_accuracy": str(metrics.get("query_accuracy", "")),
        "n_query": str(metrics.get("n_query", "")),  # the held-out texts both accuracies were measured on
        "baseline_accuracy": str(metrics.get("baseline_accuracy", "")),
        "baseline_method": str(metrics.get("baseline_method", "") or ""),
        "baseline_gain": str(metrics.get("baseline_gain", "")),
        "baseline_gain_se": str(metrics.get("baseline_gain_se", "")),
        "head": head_text(manifest),
        "flow_run_id": flow_run_id or "",
        "code_version": str(manifest.get("code_version", "")),
        "settings_digest": str(manifest.get("settings_digest", "")),
        "requested_by": requested_by,
        "sampled": str(((manifest.get("adaptation") or {}).get("sampled") or {}).get("summary", "no")),
    }


def head_text(manifest: dict) -> str:
    """What the candidate carries, in words a reviewer reads: the base's own adaptation names the
    base and how it was trained (a base with no training step would say so in its algorithm), a
    frozen head names itself."""
    adaptation = manifest.get("adaptation") or {}
    head = str(adaptation.get("head", "") or "")
    if head != "base":
        return head
    base = manifest.get("base") or {}
    how = base.get("algorithm") or "trained"
    steps = adaptation.get("inner_steps")
    inner = f", {steps} inner steps" if steps else ""
    return f"base v{base.get('version', '?')} ({how}{inner})"


def _existing(tenant: str, manifest: dict, base: BaseRef):
    """A version already registered from this very delta (a retried task), if any."""
    for mv in store.versions(tenant_model_name(tenant)):
        t = mv.tags
        if (t.get("delta_sha256") == manifest.get("sha256") and t.get("base_digest") == base.digest
                and t.get("data_version") == str(manifest.get("data_version", ""))):
            return mv
    return None


def _log_review_artifacts(tenant: str, manifest: dict, validation: dict, held_out: dict | None,
                          metrics: dict[str, float]) -> None:
    """Into the active run: ``metrics`` with the per-label ones (one call), confusion matrix PNG,
    validation summary, dataset input."""
    import mlflow

    labels = list(manifest.get("labels") or [])
    y_true, y_pred = list((held_out or {}).get("y_true", [])), list((held_out or {}).get("y_pred", []))
    rows = evaluation.per_label(labels, y_true, y_pred)
    matrix = evaluation.confusion(labels, y_true, y_pred)
    review = {"labels": labels, "per_label": rows, "confusion": matrix, "n_held_out": len(y_true)}
    mlflow.log_dict(review, "review/per_label.json")
    mlflow.log_dict(validation, "review/validation.json")
    per_label = {}
    for i, row in enumerate(rows):
        per_label.update({f"label.{i}.precision": row["precision"], f"label.{i}.recall": row["recall"]})
    mlflow.log_metrics({**metrics, **per_label})
    with tempfile.TemporaryDirectory() as tmp:
        png = evaluation.confusion_png(labels, matrix, Path(tmp) / "confusion_matrix.png",
                                       f"{tenant}: held-out confusion ({len(y_true)} texts)")
        mlflow.log_artifact(str(png), "review")
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    data_version = str(manifest.get("data_version", ""))
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local files
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(f"data/tenants/{tenant}")
    dataset = MetaDataset(source=source, name=f"{tenant}@{data_version.removeprefix('md5:')[:12]}",
                          digest=data_version.removeprefix("md5:")[:36] or None)
    mlflow.log_input(dataset, context="training", tags={"dvc_md5": data_version,
                                                        "git_commit": str(manifest.get("data_git_commit") or "")})


def register_candidate(ws: Workspace, tenant: str, delta_dir: Path, base_dir: Path, *, base: BaseRef,
                       validation: dict, requested_by: str, flow_run_id: str | None = None,
                       held_out: dict | None = None, data_rows: DataRows | None = None) -> str:
    """Register ``delta_dir`` (+ ``base_dir``) as a pending version with ``@candidate``; its version.

    ``validation`` is the data validation report of the tenant's data (its ``passed`` is the
    gate); ``held_out`` the adaptation's held-out ``y_true``/``y_pred``; ``data_rows`` reads a data
    version's (text, label) rows, for the data change since the champion (not recorded without it).
    Registering the same delta twice returns the first version instead of a duplicate.
    """
    import mlflow

    from lightning_modules.delta import read_manifest
    from registry.artifacts import pyfunc

    check_tenant_id(tenant)
    delta_dir, base_dir = Path(delta_dir), Path(base_dir)
    manifest = read_manifest(delta_dir)
    if manifest.get("tenant") != tenant:
        raise UserError(f"{delta_dir} is a delta of tenant {manifest.get('tenant')!r}, not {tenant!r}")
    if read_digest(base_dir) != base.digest:
        raise UserError(f"{base_dir} is not {base.name} v{base.version}: its digest differs")
    requested_by = identity.normalise(requested_by)
    if not requested_by:
        raise UserError("say who requests the candidate (requested_by)")
    name = tenant_model_name(tenant)
    store.ensure_registered_model(name, f"Tailor tenant {tenant}: base + delta per version")
    with audit.lock(ws, tenant):
        transitions.recover(ws, tenant)
        found = _existing(tenant, manifest, base)
    if found is not None:
        return str(found.version)
    _refuse_erased(tenant, str(manifest.get("data_version", "")))  # before anything of its data is logged
    iso = checks.check(tenant, delta_dir, base)
    tags = _version_tags(tenant, manifest, base, validation or {}, iso, requested_by, flow_run_id)
    tags["files_sha256"] = checks.files_digest({"delta": delta_dir, "base": base_dir})
    champ = store.alias_version(name, CHAMPION)   # the model exists: ensured above
    comparison = champion_comparison(tenant, champ, manifest, held_out)
    tags.update(comparison_tags(comparison))
    changes = data_change_since_champion(champ, tags["data_version"], data_rows)
    if changes is not None:
        tags["data_change"] = compare.data_change_tag(changes, MAX_TAG)
    metrics = store.numeric(manifest.get("metrics") or {})
    params = {k: str(v)[:6000] for k, v in store.flatten("", manifest.get("adaptation") or {}).items()}
    params.update(base_version=str(base.version), data_version=tags["data_version"],
                  labels=tags["labels"][:6000])
    with mlflow.start_run(experiment_id=store.experiment_id(name),
                          run_name=f"adapt-{tenant}", tags={"tenant": tenant, "requested_by": requested_by,
                                                            "flow_run_id": flow_run_id or "",
                                                            **owners.owner_tags()}) as run:
        # the model first: MLflow copies the run's metrics so far onto a logged model, one query each
        info = pyfunc.log_tenant_model(delta_dir, base_dir)
        mlflow.log_params(params)
        _log_review_artifacts(tenant, manifest, validation or {}, held_out, metrics)
        if comparison is not None:
            mlflow.log_dict(comparison, "review/comparison.json")
        if changes is not None:
            mlflow.log_dict(changes, "review/data_change.json")

    def make():
        again = _existing(tenant, manifest, base)
        if again is not None:
            raise _Already(str(again.version))
        _refuse_erased(tenant, tags["data_version"])
        previous = store.alias_version(name, CANDIDATE)
        return plan_register(name, tenant, info.model_uri, run.info.run_id, info.model_id, tags, requested_by,
                             None if previous is None else str(previous.version), base)

    try:
        _, commit = transitions.execute(ws, tenant, make)
    except _Already as done:
        return done.version
    except UserError:
        _drop_artifacts(run.info.run_id, info.model_id)  # an erasure began meanwhile: nothing of its data stays
        raise
    return str(commit["to"])


def _drop_artifacts(run_id: str, model_id: str | None) -> None:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    c = store.client()
    get_artifact_repository(c.get_run(run_id).info.artifact_uri).delete_artifacts()
    if model_id:
        get_artifact_repository(c.get_logged_model(model_id).artifact_location).delete_artifacts()


def _refuse_erased(tenant: str, data_version: str) -> None:
    """No registration for a tenant under erasure, nor of data an erasure removed (an adaptation
    that read it before the erasure began)."""
    rm = store.client().get_registered_model(tenant_model_name(tenant))
    try:
        s = json.loads(rm.tags.get("erasure") or "null")
    except ValueError:
        return
    if not isinstance(s, dict):
        return
    if s.get("state") != "done":
        raise UserError(f"tenant {tenant} is being erased: nothing is registered for it")
    if data_version in (s.get("data_versions") or []):
        raise UserError(f"tenant {tenant}'s data {data_version} was erased at {s.get('at')}: not registered")


def champion_comparison(tenant: str, champ, manifest: dict, held_out: dict | None) -> dict | None:
    """The tenant's champion ``champ`` (a model version, or None) scored on the candidate's
    held-out texts, beside the candidate's own predictions (both kept: ``review/comparison.json``
    of the candidate's run); None without a champion or held-out texts. A champion that cannot be
    scored is recorded as such, not skipped."""
    texts = list((held_out or {}).get("texts") or [])
    if champ is None or not texts:
        return None
    labels = list(manifest.get("labels") or [])
    y_true = [labels[i] for i in held_out["y_true"]]
    cand = [labels[i] for i in held_out["y_pred"]]
    try:
        old = [row["label"] for row in serving.predict(tenant, texts)]
    except Exception as exc:  # noqa: BLE001 - the reviewer sees why there is no comparison
        return {"champion_version": str(champ.version), "error": _first_line(exc)}
    out = compare.compare(texts, y_true, cand, old)
    out.update(champion_version=str(champ.version), texts=texts, y_true=y_true, candidate_pred=cand,
               champion_pred=old)
    return out


def data_change_since_champion(champ, data_version: str, data_rows: DataRows | None) -> dict | None:
    """Rows added and removed per label between the data version of the champion ``champ`` (a
    model version, or None) and ``data_version`` (``compare.data_change``, with both versions
    named); None without a champion or a reader. A version that cannot be read is recorded as
    such (``error``), so registration goes on."""
    if champ is None or data_rows is None:
        return None
    before = champ.tags.get("data_version", "")
    out = {"champion_version": str(champ.version), "champion_data_version": before, "data_version": data_version,
           "same_data": before == data_version}
    if out["same_data"]:
        return {**out, "added": 0, "removed": 0, "labels": []}
    if not before:
        return {**out, "error": f"champion v{champ.version} records no data version"}
    try:
        old = data_rows(before)
    except Exception as exc:  # noqa: BLE001 - the reviewer reads why, the candidate is registered
        return {**out, "error": f"the champion's data {before} could not be read: {_first_line(exc)}"}
    try:
        new = data_rows(data_version)
    except Exception as exc:  # noqa: BLE001
        return {**out, "error": f"this version's data {data_version} could not be read: {_first_line(exc)}"}
    return {**out, **compare.data_change(old, new)}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:300] if text else type(exc).__name__)


def comparison_tags(comparison: dict | None) -> dict[str, str]:
    """What the champion gate and ``review list`` read without downloading the artifact."""
    if not comparison:
        return {}
    if "error" in comparison:
        return {"compare_error": f"champion v{comparison['champion_version']}: {comparison['error']}"[:MAX_TAG]}
    d = comparison["difference"]
    return {"compared_with": comparison["champion_version"], "compare_n": str(comparison["n"]),
            "compare_candidate_correct": str(comparison["candidate"]["correct"]),
            "compare_champion_correct": str(comparison["champion"]["correct"]),
            "compare_difference": f"{d['value']:.6f}", "compare_difference_low": f"{d['interval'][0]:.6f}",
            "compare_difference_high": f"{d['interval'][1]:.6f}",
            "compare_changed": str(len(comparison["changed"]))}


class _Already(Exception):
    def __init__(self, version: str):
        self.version = version


def plan_register(name: str, tenant: str, source: str, run_id: str, model_id: str | None, tags: dict,
                  requested_by: str, previous: str | None, base: BaseRef) -> transitions.Plan:
    """Create the version (with its tags) and point ``@candidate`` at it."""
    return transitions.Plan(
        action="register", model=name, tenant=tenant, actor=requested_by,
        reason="adapted delta registered for review", frm=previous, to=transitions.NEW,
        create={"source": source, "run_id": run_id, "model_id": model_id, "tags": tags,
                "description": describe(tags, "pending review")},
        aliases=[(CANDIDATE, transitions.NEW, None)],
        details={"data_version": tags["data_version"], "base_version": tags["base_version"],
                 "validation": tags["validation"], "isolation": tags["isolation"],
                 "metrics": {k: tags.get(k) for k in ("query_accuracy", "baseline_accuracy", "baseline_method")},
                 "head": tags.get("head"), "flow_run_id": tags.get("flow_run_id"), "run_id": run_id,
                 "delta_sha256": tags["delta_sha256"], "base_digest": base.digest})


def list_tenants() -> list[str]:
    """Tenants with a registered model, sorted."""
    return sorted(rm.name[len(PREFIX):] for rm in store.registered_models(f"{PREFIX}%")
                  if rm.name.startswith(PREFIX))


def newest_versions() -> dict[str, dict]:
    """tenant -> its newest version's tags plus ``version``, for every tenant in one paged search:
    what the fleet flow compares (data version, base digest, settings digest) to skip tenants that
    nothing changed for."""
    out = {}
    for mv in store.versions(f"{PREFIX}%", like=True):  # by name, then version: the newest wins
        if mv.name.startswith(PREFIX):
            out[mv.name[len(PREFIX):]] = {**mv.tags, "version": str(mv.version)}
    return out
