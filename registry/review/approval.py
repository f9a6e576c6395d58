"""Review: approve (gates + four-eyes) moves ``@champion``, reject closes a candidate, rollback
restores the previous approved version. Each is a pure ``plan_*`` function over the versions it
reads; ``transitions.execute`` applies it under the tenant's lock with an audit intent and commit."""
from __future__ import annotations

import json

from registry.artifacts import compare, serving
from registry.artifacts.describe import describe
from registry.storage import store
from registry.storage.names import APPROVED, CANDIDATE, CHAMPION, PENDING, PREFIX, REJECTED, ROLLED_BACK
from registry.trail import audit, identity, transitions
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import Settings
from workspace.tenants import check_tenant_id, tenant_model_name

ROLLBACK_REQUEST = "rollback_request"  # registered-model tag: a rollback waiting for a second person


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
    paired = _float(t, "compare_difference_high")
    if (champion_mv is not None and str(champion_mv.version) != str(mv.version)
            and t.get("compared_with") == str(champion_mv.version) and paired is not None):
        # same texts: worse only when the paired difference's whole 95% interval is below -tolerance
        if compare.gate_failure(paired, g.champion_tolerance):
            failed.append(f"champion (on the same {t.get('compare_n')} held-out texts: "
                          f"{t.get('compare_candidate_correct')} right vs champion v{champion_mv.version}'s "
                          f"{t.get('compare_champion_correct')}; difference interval "
                          f"[{_float(t, 'compare_difference_low'):+.3f}, {paired:+.3f}] lies below "
                          f"-{g.champion_tolerance})")
    elif champion_mv is not None and str(champion_mv.version) != str(mv.version):
        champ = _float(champion_mv.tags, "query_accuracy")
        if champ is not None and acc < champ - g.champion_tolerance:
            failed.append(f"champion ({acc:.3f} < champion v{champion_mv.version} {champ:.3f} "
                          f"- tolerance {g.champion_tolerance})")
    gain, se = _float(t, "baseline_gain"), _float(t, "baseline_gain_se")
    method = t.get("baseline_method") or "no-meta"
    if gain is not None and se is not None:
        # paired on the same cross-validated examples: worse only beyond the tolerance and the noise
        if gain > g.baseline_tolerance and gain > BASELINE_Z * se:
            failed.append(f"baseline ({method} is {100 * gain:.1f} points ahead on the same {t.get('n_query')} "
                          f"examples, beyond their noise (standard error {100 * se:.1f}) and the tolerance "
                          f"{g.baseline_tolerance})")
    elif base is not None and acc < base - g.baseline_tolerance:   # a version registered before the paired gain
        failed.append(f"baseline ({acc:.3f} < {method} baseline {base:.3f} - tolerance {g.baseline_tolerance})")
    return failed


BASELINE_Z = 1.645   # one-sided 95%: the baseline gate fails a candidate the baseline beats beyond noise


def same_texts(t: dict) -> dict | None:
    """Candidate and champion on the candidate's held-out texts, from the version's tags: both
    accuracies with n and a 95% Wilson interval, and the paired difference's interval."""
    try:
        n, kc, kk = int(t["compare_n"]), int(t["compare_candidate_correct"]), int(t["compare_champion_correct"])
    except (KeyError, ValueError):
        return None if not t.get("compare_error") else {"error": t["compare_error"]}
    if n <= 0:
        return None
    return {"champion_version": t.get("compared_with"), "n": n,
            "candidate": {"correct": kc, "accuracy": kc / n, "interval": list(compare.wilson(kc, n))},
            "champion": {"correct": kk, "accuracy": kk / n, "interval": list(compare.wilson(kk, n))},
            "difference": {"value": _float(t, "compare_difference"),
                           "interval": [_float(t, "compare_difference_low"), _float(t, "compare_difference_high")]},
            "changed": int(t.get("compare_changed") or 0)}


def summary(mv, aliases: dict[str, list[str]] | None = None, champion_mv=None, settings: Settings | None = None) -> dict:
    """What a reviewer sees of a version (``aliases``: version -> aliases of its model)."""
    t = mv.tags
    aliases = store.aliases(mv.name) if aliases is None else aliases
    acc, base = _float(t, "query_accuracy"), _float(t, "baseline_accuracy")
    n = held_out_n(t)
    out = {"tenant": t.get("tenant") or mv.name.removeprefix(PREFIX), "version": str(mv.version),
           "status": t.get("status", ""), "aliases": sorted(aliases.get(str(mv.version), [])),
           "query_accuracy": acc, "baseline_accuracy": base, "baseline_method": t.get("baseline_method", ""),
           "head": t.get("head", ""),
           "metrics": {"query_accuracy": acc, "baseline_accuracy": base}, "n_query": n,
           "accuracy": compare.measured(acc, n), "baseline": compare.measured(base, n),
           "validation": t.get("validation", ""), "isolation": t.get("isolation", ""),
           "data_version": t.get("data_version", ""), "base_version": t.get("base_version", ""),
           "requested_by": t.get("requested_by", ""), "created": audit.iso_ms(mv.creation_timestamp),
           "data_docs": t.get("data_docs", ""), "same_texts": same_texts(t),
           "data_change": compare.data_change_from_tag(t)}
    if settings is not None:
        failed = gate_failures(mv, champion_mv, settings)
        out.update(gates="passed" if not failed else "FAILS " + ", ".join(f.split(" (")[0] for f in failed),
                   gates_failed=failed,
                   champion_version=None if champion_mv is None else str(champion_mv.version),
                   champion_accuracy=None if champion_mv is None else _float(champion_mv.tags, "query_accuracy"),
                   champion_measured=None if champion_mv is None else compare.measured(
                       _float(champion_mv.tags, "query_accuracy"), held_out_n(champion_mv.tags)))
    return out


def held_out_n(t: dict) -> int | None:
    """How many held-out texts a version's accuracy was measured on: its ``n_query`` tag, else (a
    version registered before that tag) the texts it was compared on, which are the same ones."""
    for key in ("n_query", "compare_n"):
        try:
            n = int(float(t.get(key) or 0))
        except ValueError:
            continue
        if n > 0:
            return n
    return None


def list_reviews(status: str | None = PENDING, settings: Settings | None = None, limit: int | None = None,
                 offset: int = 0, page: dict | None = None) -> list[dict]:
    """Versions of every tenant (with ``status``, or all when None), by tenant then version, with
    their gate results and the tenant's champion when ``settings`` are given; ``limit`` rows from
    ``offset`` (``page``, if given, receives ``total``). The store is asked for the versions with
    that status only (a tag filter), and for the aliases and champions of the page's tenants
    only: listing every registered model and every version grew with the fleet."""
    chosen = [mv for mv in store.versions(f"{PREFIX}%", like=True, tags={"status": status} if status else None)
              if mv.name.startswith(PREFIX)]
    if page is not None:
        page["total"] = len(chosen)
    chosen = chosen[offset:offset + limit if limit else None]
    tenants: dict[str, tuple] = {}
    for name in dict.fromkeys(mv.name for mv in chosen):
        names = store.client().get_registered_model(name).aliases
        champ = _version_or_none(name, names[CHAMPION]) if CHAMPION in names else None
        per_version: dict[str, list[str]] = {}
        for alias, v in names.items():
            per_version.setdefault(str(v), []).append(alias)
        tenants[name] = (per_version, champ)
    return [summary(mv, tenants[mv.name][0], tenants[mv.name][1], settings) for mv in chosen]


def _version_or_none(name: str, version) -> object | None:
    """The version, or None where the store has none (an alias left on a deleted version)."""
    try:
        return store.client().get_model_version(name, str(version))
    except store.errors() as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _refuse_erased_base(mv) -> None:
    """A candidate adapted from a base that contains an erased tenant's data never becomes champion."""
    from registry.artifacts.base_model import ERASED
    from workspace.tenants import BASE_MODEL_NAME

    base = mv.tags.get("base_version")
    if mv.tags.get("status") != PENDING or not base:
        return
    try:
        erased = store.client().get_model_version(BASE_MODEL_NAME, base).tags.get(ERASED)
    except store.errors():
        return
    if erased:
        raise UserError(f"{mv.tags.get('tenant')} v{mv.version} was adapted from tailor-base v{base}, which contains "
                        f"data of erased tenant(s) {erased}: re-adapt it from an approved base without that data")


def plan_approve(mv, champion_mv, settings: Settings, reviewer: str, reason: str,
                 override: str, artifact_problems: list[str]) -> transitions.Plan:
    """Refuse (``UserError``) or plan: tags, ``@champion`` -> version, ``@candidate`` off it."""
    tenant, name, version, status = mv.tags.get("tenant"), mv.name, str(mv.version), mv.tags.get("status")
    if status != PENDING:
        hint = {APPROVED: "it is already approved; to serve an earlier version use `tailor rollback`",
                REJECTED: "it was rejected; re-adapt the tenant for a new candidate",
                ROLLED_BACK: "it was rolled back; re-adapt the tenant for a new candidate"}
        raise UserError(f"{tenant} v{version} is {status or 'untagged'}: "
                        f"{hint.get(status, 'only pending versions can be approved')}")
    requested_by = mv.tags.get("requested_by", "")
    if settings.gates.four_eyes and identity.same_person(reviewer, requested_by):
        raise UserError(f"four-eyes: {reviewer} requested {tenant} v{version} and cannot also approve it; "
                        "ask another reviewer")
    if artifact_problems:
        raise UserError(f"{tenant} v{version} refused: its stored artifacts fail isolation "
                        f"({'; '.join(artifact_problems)}); re-adapt the tenant")
    failed = gate_failures(mv, champion_mv, settings)
    if failed and not override:
        raise UserError(f"{tenant} v{version} fails gate(s): {'; '.join(failed)}. "
                        "Fix it, or approve with --override-reason TEXT")
    at = audit.now()
    tags = {"status": APPROVED, "approved_by": reviewer, "approved_at": at, "approval_reason": reason,
            "gates": "passed" if not failed else "overridden: " + "; ".join(failed)}
    if failed:
        tags["override_reason"] = override
    previous = None if champion_mv is None else str(champion_mv.version)
    plan_tags = {version: tags}
    descriptions = {version: describe({**mv.tags, **tags}, "approved")}
    if previous and previous != version:
        descriptions[previous] = describe(champion_mv.tags, f"replaced as champion by v{version} at {at}")
    return transitions.Plan(
        action="approve", model=name, tenant=tenant, actor=reviewer, reason=reason, frm=previous, to=version,
        tags=plan_tags, aliases=[(CHAMPION, version, None), (CANDIDATE, None, version)],
        descriptions=descriptions,
        details={"gates_failed": failed, "override_reason": override or None, "requested_by": requested_by})


def approve(ws: Workspace, settings: Settings, tenant: str, version: str, reviewer: str, reason: str,
            override_reason: str | None = None, dry_run: bool = False) -> dict:
    """Make ``version`` the tenant's ``@champion`` if it passes the gates (or they are overridden)."""
    reviewer = identity.require_person(reviewer, "approve")
    reason = _need_text(reason, "reason", "--reason")
    override = (override_reason or "").strip()
    check_tenant_id(tenant)

    def make():
        mv = _version(tenant, version)
        champion_mv = store.alias_version(mv.name, CHAMPION)
        _refuse_erased_base(mv)
        problems = serving.verify_stored(mv) if mv.tags.get("status") == PENDING else []
        return plan_approve(mv, champion_mv, settings, reviewer, reason, override, problems)

    if dry_run:
        return transitions.preview(tenant, make)
    plan, commit = transitions.execute(ws, tenant, make)
    return {"tenant": tenant, "version": plan.to, "previous": plan.frm, "approved_by": reviewer,
            "approved_at": plan.tags[plan.to]["approved_at"], "gates_failed": plan.details["gates_failed"],
            "override_reason": override or None, "audit_seq": commit["seq"]}


def plan_reject(mv, reviewer: str, reason: str) -> transitions.Plan:
    tenant, version, status = mv.tags.get("tenant"), str(mv.version), mv.tags.get("status")
    if status != PENDING:
        hint = " (to stop serving it use `tailor rollback`)" if status == APPROVED else ""
        raise UserError(f"{tenant} v{version} is {status or 'untagged'}, not pending{hint}")
    tags = {"status": REJECTED, "rejected_by": reviewer, "rejected_at": audit.now(), "rejection_reason": reason}
    return transitions.Plan(
        action="reject", model=mv.name, tenant=tenant, actor=reviewer, reason=reason, frm=version, to=None,
        tags={version: tags}, aliases=[(CANDIDATE, None, version)],
        descriptions={version: describe({**mv.tags, **tags}, "rejected")},
        details={"requested_by": mv.tags.get("requested_by", "")})


def reject(ws: Workspace, tenant: str, version: str, reviewer: str, reason: str, dry_run: bool = False) -> dict:
    """Close a pending version: it can never be approved; ``@candidate`` leaves it."""
    reviewer = identity.require_person(reviewer, "reject")
    reason = _need_text(reason, "reason", "--reason")
    check_tenant_id(tenant)

    def make():
        return plan_reject(_version(tenant, version), reviewer, reason)

    if dry_run:
        return transitions.preview(tenant, make)
    plan, commit = transitions.execute(ws, tenant, make)
    tags = plan.tags[plan.frm]
    return {"tenant": tenant, "version": plan.frm, "rejected_by": reviewer, "rejected_at": tags["rejected_at"],
            "audit_seq": commit["seq"]}


def plan_rollback(name: str, tenant: str, current, earlier: list, actor: str, reason: str,
                  settings: Settings, request: dict | None) -> transitions.Plan:
    """Refuse, plan a rollback request (a second person must confirm), or plan the rollback."""
    if current is None:
        raise UserError(f"tenant {tenant} has no approved champion to roll back")
    if not earlier:
        raise UserError(f"tenant {tenant} has no earlier approved version to roll back to "
                        f"(v{current.version} is the only one)")
    alone = identity.may_rollback_alone(actor, settings.gates.rollback_alone)
    if not alone and identity.is_service(actor):
        raise UserError(f"{actor} is a service identity: it may not roll back (gates.rollback_alone)")
    if not alone and (request is None or identity.same_person(request.get("by"), actor)):
        if request is not None:
            raise UserError(f"rollback of {tenant} already requested by {actor}: another person must confirm "
                            f"it with `tailor rollback {tenant}`")
        at = audit.now()
        return transitions.Plan(
            action="request-rollback", model=name, tenant=tenant, actor=actor, reason=reason,
            frm=str(current.version), model_tags={ROLLBACK_REQUEST: json.dumps({"by": actor, "at": at, "reason": reason}, sort_keys=True)},
            details={"needs": "a second person (gates.rollback_alone)"})
    target = max(earlier, key=lambda mv: (mv.tags.get("approved_at", ""), int(mv.version)))
    at = audit.now()
    tags = {"status": ROLLED_BACK, "rolled_back_by": actor, "rolled_back_at": at, "rollback_reason": reason}
    details = {"alone": alone}
    if request is not None and not alone:
        details.update(requested_by=request.get("by"), request_reason=request.get("reason"))
    return transitions.Plan(
        action="rollback", model=name, tenant=tenant, actor=actor, reason=reason, frm=str(current.version),
        to=str(target.version), tags={str(current.version): tags}, aliases=[(CHAMPION, str(target.version), None)],
        descriptions={str(current.version): describe({**current.tags, **tags}, "rolled back"),
                      str(target.version): describe(target.tags, f"champion again after rollback at {at}")},
        model_tags={ROLLBACK_REQUEST: None} if request is not None else {}, details=details)


def rollback(ws: Workspace, settings: Settings, tenant: str, actor: str, reason: str, dry_run: bool = False) -> dict:
    """Point ``@champion`` at the previously approved version; the current one becomes rolled_back.
    Someone ``gates.rollback_alone`` does not name only requests it; a second person completes it."""
    actor = identity.normalise(actor)
    if not actor:
        raise UserError("rollback needs an identity: set TAILOR_USER")
    reason = _need_text(reason, "reason", "--reason")
    check_tenant_id(tenant)
    name = tenant_model_name(tenant)

    def make():
        if not store.has_model(name):
            raise UserError(f"tenant {tenant} has no approved champion to roll back")
        current = store.alias_version(name, CHAMPION)
        earlier = [] if current is None else [
            mv for mv in store.versions(name)
            if mv.tags.get("status") == APPROVED and str(mv.version) != str(current.version)]
        raw = store.client().get_registered_model(name).tags.get(ROLLBACK_REQUEST)
        return plan_rollback(name, tenant, current, earlier, actor, reason, settings,
                             json.loads(raw) if raw else None)

    if dry_run:
        return transitions.preview(tenant, make)
    plan, commit = transitions.execute(ws, tenant, make)
    return {"tenant": tenant, "action": plan.action, "from": plan.frm, "to": plan.to, "by": actor,
            "at": commit["at"], "audit_seq": commit["seq"], "details": plan.details}
