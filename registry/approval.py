"""Review: approve (gates + four-eyes) moves ``@champion``, reject closes a candidate, rollback
restores the previous approved version. Each state change is tagged on the version and audited."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from registry import audit, store
from registry.candidates import APPROVED, CANDIDATE, CHAMPION, PENDING, PREFIX, REJECTED, ROLLED_BACK
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import Settings
from workspace.tenants import check_tenant_id, tenant_model_name


def _need_text(value: str | None, what: str, flag: str = "") -> str:
    if not value or not str(value).strip():
        raise UserError(f"{what} must not be empty" + (f": pass {flag} TEXT" if flag else ""))
    return str(value).strip()


def _version(tenant: str, version: str | int):
    name = tenant_model_name(tenant)
    if not store.has_model(name):
        raise UserError(f"tenant {tenant!r} has no registered versions: run `tailor adapt {tenant}` first")
    return store.model_version(name, version, f"tenant {tenant}")


def _float(tags: dict, key: str) -> float | None:
    try:
        return float(tags.get(key, ""))
    except ValueError:
        return None


def summary(mv, aliases: dict[str, list[str]] | None = None) -> dict:
    """What a reviewer sees of a version (``aliases``: version -> aliases of its model)."""
    t = mv.tags
    aliases = store.aliases(mv.name) if aliases is None else aliases
    acc, base = _float(t, "query_accuracy"), _float(t, "baseline_accuracy")
    return {"tenant": t.get("tenant") or mv.name.removeprefix(PREFIX), "version": str(mv.version),
            "status": t.get("status", ""), "aliases": sorted(aliases.get(str(mv.version), [])),
            "query_accuracy": acc, "baseline_accuracy": base,
            "metrics": {"query_accuracy": acc, "baseline_accuracy": base},
            "validation": t.get("validation", ""), "isolation": t.get("isolation", ""),
            "data_version": t.get("data_version", ""), "base_version": t.get("base_version", ""),
            "requested_by": t.get("requested_by", ""), "created": audit.iso_ms(mv.creation_timestamp)}


def list_reviews(status: str | None = PENDING) -> list[dict]:
    """Versions of every tenant (with ``status``, or all when None), by tenant then version."""
    chosen = [mv for mv in store.versions(f"{PREFIX}%", like=True)
              if mv.name.startswith(PREFIX) and (status is None or mv.tags.get("status") == status)]
    aliases = {name: store.aliases(name) for name in {mv.name for mv in chosen}}
    return [summary(mv, aliases[mv.name]) for mv in chosen]


def gate_failures(mv, champion_mv, settings: Settings) -> list[str]:
    """The gates ``mv`` fails, each named first (validation, isolation, champion, baseline)."""
    t, g = mv.tags, settings.gates
    failed = []
    if t.get("validation") != "passed":
        failed.append("validation (the tenant's data failed validation)")
    if t.get("isolation") != "passed":
        failed.append(f"isolation ({t.get('isolation', 'not checked')})")
    acc, base = _float(t, "query_accuracy"), _float(t, "baseline_accuracy")
    if acc is None:
        failed.append("metrics (no query_accuracy recorded)")
        return failed
    if champion_mv is not None and str(champion_mv.version) != str(mv.version):
        champ = _float(champion_mv.tags, "query_accuracy")
        if champ is not None and acc < champ - g.champion_tolerance:
            failed.append(f"champion ({acc:.3f} < champion v{champion_mv.version} {champ:.3f} "
                          f"- tolerance {g.champion_tolerance})")
    if base is not None and acc < base - g.baseline_tolerance:
        failed.append(f"baseline ({acc:.3f} < no-meta-learning baseline {base:.3f} "
                      f"- tolerance {g.baseline_tolerance})")
    return failed


def _drop_candidate_alias(name: str, version: str) -> None:
    current = store.alias_version(name, CANDIDATE)
    if current is not None and str(current.version) == str(version):
        store.client().delete_registered_model_alias(name, CANDIDATE)


def _set_tags(name: str, version: str, tags: dict) -> None:
    c = store.client()
    for key, value in tags.items():
        c.set_model_version_tag(name, str(version), key, str(value))


def approve(ws: Workspace, settings: Settings, tenant: str, version: str, reviewer: str, reason: str,
            override_reason: str | None = None) -> dict:
    """Make ``version`` the tenant's ``@champion`` if it passes the gates (or they are overridden)."""
    reviewer = _need_text(reviewer, "reviewer", "--reviewer")
    reason = _need_text(reason, "reason", "--reason")
    mv = _version(tenant, version)
    name, version, status = mv.name, str(mv.version), mv.tags.get("status")
    if status != PENDING:
        hint = {APPROVED: "it is already approved; to serve an earlier version use `tailor rollback`",
                REJECTED: "it was rejected; re-adapt the tenant for a new candidate",
                ROLLED_BACK: "it was rolled back; re-adapt the tenant for a new candidate"}
        raise UserError(f"{tenant} v{version} is {status or 'untagged'}: "
                        f"{hint.get(status, 'only pending versions can be approved')}")
    requested_by = mv.tags.get("requested_by", "")
    if settings.gates.four_eyes and reviewer == requested_by:
        raise UserError(f"four-eyes: {reviewer} requested {tenant} v{version} and cannot also approve it; "
                        "ask another reviewer")
    champion_mv = store.alias_version(name, CHAMPION)
    failed = gate_failures(mv, champion_mv, settings)
    override = (override_reason or "").strip()
    if failed and not override:
        raise UserError(f"{tenant} v{version} fails gate(s): {'; '.join(failed)}. "
                        "Fix it, or approve with --override-reason TEXT")
    at = audit.now()
    tags = {"status": APPROVED, "approved_by": reviewer, "approved_at": at, "approval_reason": reason,
            "gates": "passed" if not failed else "overridden: " + "; ".join(failed)}
    if failed:
        tags["override_reason"] = override
    _set_tags(name, version, tags)
    store.client().set_registered_model_alias(name, CHAMPION, version)
    _drop_candidate_alias(name, version)
    previous = None if champion_mv is None else str(champion_mv.version)
    record = audit.append(ws, actor=reviewer, action="approve", tenant=tenant, frm=previous, to=version,
                          reason=reason, details={"gates_failed": failed, "override_reason": override or None,
                                                  "requested_by": requested_by})
    return {"tenant": tenant, "version": version, "previous": previous, "approved_by": reviewer,
            "approved_at": at, "gates_failed": failed, "override_reason": override or None,
            "audit_seq": record["seq"]}


def reject(ws: Workspace, tenant: str, version: str, reviewer: str, reason: str) -> dict:
    """Close a pending version: it can never be approved; ``@candidate`` leaves it."""
    reviewer = _need_text(reviewer, "reviewer", "--reviewer")
    reason = _need_text(reason, "reason", "--reason")
    mv = _version(tenant, version)
    name, version, status = mv.name, str(mv.version), mv.tags.get("status")
    if status != PENDING:
        hint = " (to stop serving it use `tailor rollback`)" if status == APPROVED else ""
        raise UserError(f"{tenant} v{version} is {status or 'untagged'}, not pending{hint}")
    at = audit.now()
    _set_tags(name, version, {"status": REJECTED, "rejected_by": reviewer, "rejected_at": at,
                              "rejection_reason": reason})
    _drop_candidate_alias(name, version)
    record = audit.append(ws, actor=reviewer, action="reject", tenant=tenant, frm=version, to=None,
                          reason=reason, details={"requested_by": mv.tags.get("requested_by", "")})
    return {"tenant": tenant, "version": version, "rejected_by": reviewer, "rejected_at": at,
            "audit_seq": record["seq"]}


def rollback(ws: Workspace, tenant: str, actor: str, reason: str) -> dict:
    """Point ``@champion`` at the previously approved version; the current one becomes rolled_back."""
    actor = _need_text(actor, "who rolls back (actor)")
    reason = _need_text(reason, "reason", "--reason")
    check_tenant_id(tenant)
    name = tenant_model_name(tenant)
    current = store.alias_version(name, CHAMPION)
    if current is None:
        raise UserError(f"tenant {tenant} has no approved champion to roll back")
    earlier = [mv for mv in store.versions(name)
               if mv.tags.get("status") == APPROVED and str(mv.version) != str(current.version)]
    if not earlier:
        raise UserError(f"tenant {tenant} has no earlier approved version to roll back to "
                        f"(v{current.version} is the only one)")
    target = max(earlier, key=lambda mv: (mv.tags.get("approved_at", ""), int(mv.version)))
    at = audit.now()
    _set_tags(name, current.version, {"status": ROLLED_BACK, "rolled_back_by": actor,
                                      "rolled_back_at": at, "rollback_reason": reason})
    store.client().set_registered_model_alias(name, CHAMPION, target.version)
    record = audit.append(ws, actor=actor, action="rollback", tenant=tenant, frm=current.version,
                          to=target.version, reason=reason)
    return {"tenant": tenant, "from": str(current.version), "to": str(target.version), "by": actor,
            "at": at, "audit_seq": record["seq"]}


def champion(tenant: str) -> tuple[str, Path]:
    """(version, local folder holding ``delta/`` and ``base/``) of the tenant's champion, cached."""
    import mlflow

    check_tenant_id(tenant)
    name = tenant_model_name(tenant)
    mv = store.alias_version(name, CHAMPION)
    if mv is None:
        raise UserError(f"tenant {tenant} has no approved champion: run `tailor review approve "
                        f"{tenant} VERSION --reviewer NAME --reason TEXT`")
    version = str(mv.version)
    # Keyed by the delta's checksum too: a new MLflow store restarting at v1 never hits a stale copy.
    folder = store.workspace().cache_dir / "models" / tenant / f"v{version}-{mv.tags.get('delta_sha256', '')[:12]}"
    if not ((folder / "artifacts" / "delta").is_dir() and (folder / "artifacts" / "base").is_dir()):
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".download-"))
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(tmp))
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return version, folder / "artifacts"
