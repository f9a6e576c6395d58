"""Everything a reviewer needs about one candidate, read from the registry in one place, so the
review page (and anything else) never calls MLflow itself."""
from __future__ import annotations

import json
from pathlib import Path

from registry.artifacts import compare, serving
from registry.review import approval
from registry.storage import store
from registry.storage.names import CHAMPION
from workspace.errors import UserError
from workspace.settings import Settings
from workspace.tenants import check_tenant_id, tenant_model_name


def _artifact_json(run_id: str, path: str) -> dict:
    try:
        return json.loads(Path(store.client().download_artifacts(run_id, path)).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - an older version without review artifacts
        return {}


def data_changes(mv, champ) -> dict:
    """The rows added and removed per label since the champion's data, with examples, as
    registration stored them (``review/data_change.json``, else the ``data_change`` tag); for a
    version registered without them, the per-label row counts of both validation reports."""
    stored = compare.data_change_from_tag(mv.tags)
    if stored is not None:
        full = _artifact_json(mv.run_id, "review/data_change.json") if mv.run_id else {}
        return {**(full or stored), "stored": True}
    return label_counts(mv.tags, None if champ is None or str(champ.version) == str(mv.version) else champ.tags)


def label_counts(candidate_tags: dict, champion_tags: dict | None) -> dict:
    """Data version and per-label row counts before and now, from the validation reports."""
    now = (store.json_tag(candidate_tags, "validation_report").get("stats") or {}).get("label_counts") or {}
    if champion_tags is None:
        return {"champion_data_version": None, "data_version": candidate_tags.get("data_version"),
                "same_data": False, "labels": [{"label": k, "before": None, "after": v} for k, v in sorted(now.items())]}
    before = (store.json_tag(champion_tags, "validation_report").get("stats") or {}).get("label_counts") or {}
    rows = [{"label": k, "before": before.get(k), "after": now.get(k)} for k in sorted(set(before) | set(now))]
    return {"champion_data_version": champion_tags.get("data_version"), "data_version": candidate_tags.get("data_version"),
            "same_data": champion_tags.get("data_version") == candidate_tags.get("data_version"),
            "labels": [r for r in rows if r["before"] != r["after"]] or rows}


def candidate(settings: Settings, tenant: str, version: str) -> dict:
    """Summary, gates, champion comparison, per-label results, validation, isolation (checked now,
    on the stored bytes) and data changes of ``tenant`` v``version``."""
    check_tenant_id(tenant)
    name = tenant_model_name(tenant)
    if not store.has_model(name):
        raise UserError(f"tenant {tenant!r} has no registered versions")
    mv = store.model_version(name, version, f"tenant {tenant}")
    champ = store.alias_version(name, CHAMPION)
    out = approval.summary(mv, None, champ, settings)
    review = _artifact_json(mv.run_id, "review/per_label.json") if mv.run_id else {}
    problems = serving.verify_stored(mv)
    out.update(
        per_label=review.get("per_label", []), n_held_out=review.get("n_held_out"),
        validation_report=store.json_tag(mv.tags, "validation_report"),
        isolation_now={"passed": not problems, "problems": problems,
                       "checked": ["delta bytes vs the digest recorded at registration",
                                   "manifest tenant, base digest and label set vs the version's",
                                   "base bytes vs the registered base digest"]},
        data_changes=data_changes(mv, champ),
        description=mv.description or "", labels=_labels(mv.tags),
        comparison=_comparison(mv, champ), base_digest=mv.tags.get("base_digest", ""),
        flow_run_id=mv.tags.get("flow_run_id", ""), run=_run(mv))
    return out


def _run(mv) -> dict | None:
    """The MLflow run the version was logged in (its id and experiment), for a link to it."""
    if not mv.run_id:
        return None
    try:
        return {"run_id": mv.run_id, "experiment_id": str(store.client().get_run(mv.run_id).info.experiment_id)}
    except Exception:  # noqa: BLE001 - a run deleted from the store: the id alone
        return {"run_id": mv.run_id, "experiment_id": ""}


def _comparison(mv, champ) -> dict | None:
    """Candidate vs the champion it was compared with at registration, on the same held-out texts
    (``review/comparison.json``), with the per-label table and the texts whose prediction changed;
    ``current``: whether that champion is still the champion."""
    if not mv.tags.get("compared_with") and not mv.tags.get("compare_error"):
        return None
    found = _artifact_json(mv.run_id, "review/comparison.json") if mv.run_id else {}
    if not found:
        return {"error": mv.tags.get("compare_error") or "the comparison artifact is missing"}
    found["current"] = champ is not None and str(champ.version) == str(found.get("champion_version"))
    return found


def _labels(tags: dict) -> list[str]:
    try:
        value = json.loads(tags.get("labels") or "[]")
    except ValueError:
        return []
    return [str(x) for x in value] if isinstance(value, list) else []


def confusion_png(tenant: str, version: str) -> bytes:
    """The version's confusion-matrix PNG as logged at registration."""
    check_tenant_id(tenant)
    mv = store.model_version(tenant_model_name(tenant), version, f"tenant {tenant}")
    try:
        return Path(store.client().download_artifacts(mv.run_id, "review/confusion_matrix.png")).read_bytes()
    except Exception:  # noqa: BLE001
        raise UserError(f"{tenant} v{version} has no confusion matrix") from None
