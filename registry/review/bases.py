"""Bases are candidates too: a meta-trained base waits as a pending ``tailor-base`` version with
``@candidate`` and its evidence, and becomes ``@current`` (what ``adapt`` starts from) only when a
person other than who trained it approves it. Approving, rejecting or rolling back a base changes
``tailor-base`` alone: every tenant's champion keeps serving the base it carries."""
from __future__ import annotations

from registry.artifacts import base_model
from registry.artifacts.base_model import CURRENT, ERASED, EVIDENCE
from registry.storage import store
from registry.storage.names import APPROVED, CANDIDATE, PENDING, REJECTED
from registry.trail import audit, identity, transitions
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import Settings
from workspace.tenants import BASE_MODEL_NAME


def _need_text(value: str | None, what: str, flag: str) -> str:
    if not value or not str(value).strip():
        raise UserError(f"{what} must not be empty: pass {flag} TEXT")
    return str(value).strip()


def _version(version: str):
    if not store.has_model(BASE_MODEL_NAME):
        raise UserError("no base model: run `tailor meta-train` first")
    return store.model_version(BASE_MODEL_NAME, version, BASE_MODEL_NAME)


def evidence_from_tags(tags: dict) -> dict | None:
    """The evidence's summary as registration tagged it (``base_model.evidence_tags``), generically:
    every accuracy, every paired difference with its interval and n; None without evidence."""
    acc, paired = {}, {}
    for key, value in tags.items():
        if key.startswith(f"{EVIDENCE}.accuracy."):
            parts = value.split(" ")
            name = key.removeprefix(f"{EVIDENCE}.accuracy.")
            acc[name] = (_num(parts[0]) if len(parts) == 1 else   # a bare number, or "mean ci95 n"
                         {"mean": _num(parts[0]), "ci95": _num(parts[1]), "n": _int(parts[2] if len(parts) > 2 else "")})
        elif key.startswith(f"{EVIDENCE}.paired."):
            mean, ci95, n = (value.split(" ") + ["", "", ""])[:3]
            paired[key.removeprefix(f"{EVIDENCE}.paired.")] = {"mean": _num(mean), "ci95": _num(ci95), "n": _int(n)}
    if not acc and not paired:
        return None
    held = tags.get(f"{EVIDENCE}.held_out_tenants", "")
    return {"accuracy": dict(sorted(acc.items())), "paired": dict(sorted(paired.items())),
            "n_tenants": _int(tags.get(f"{EVIDENCE}.n_tenants")), "n_queries": _int(tags.get(f"{EVIDENCE}.n_queries")),
            "n_splits": _int(tags.get(f"{EVIDENCE}.n_splits")), "held_out_tenants": [t for t in held.split(",") if t]}


def evidence_lines(evidence: dict | None) -> list[str]:
    """The evidence for people: one line per accuracy and per paired difference (with n and its
    95% interval), whatever methods it compares."""
    if not evidence:
        return ["no evidence recorded"]
    lines = []
    head = [f"{evidence['n_tenants']} held-out tenant(s)" if evidence.get("n_tenants") is not None else "",
            f"{evidence['n_splits']} few-shot split(s)" if evidence.get("n_splits") is not None else "",
            f"{evidence['n_queries']} query texts" if evidence.get("n_queries") is not None else ""]
    if any(head):
        lines.append(", ".join(h for h in head if h) + (f" ({', '.join(evidence['held_out_tenants'])})"
                                                        if evidence.get("held_out_tenants") else ""))
    for name, value in (evidence.get("accuracy") or {}).items():
        if isinstance(value, dict):   # with its 95% interval over the splits and their count
            mean, ci = value.get("mean"), value.get("ci95")
            shown = "-" if mean is None else f"{mean:.3f}" + (f" ± {ci:.3f}" if ci is not None else "")
            lines.append(f"accuracy {name}: {shown}, n={value.get('n') if value.get('n') is not None else '?'}")
        else:
            lines.append(f"accuracy {name}: {'-' if value is None else f'{value:.3f}'}")
    for name, d in (evidence.get("paired") or {}).items():
        mean, ci = d.get("mean"), d.get("ci95")
        if mean is None:
            lines.append(f"paired {name}: -")
            continue
        interval = f" [{mean - ci:+.3f}, {mean + ci:+.3f}]" if ci is not None else ""
        lines.append(f"paired {name}: {mean:+.3f}" + (f" ± {ci:.3f}" if ci is not None else "")
                     + f"{interval}, n={d.get('n') if d.get('n') is not None else '?'}")
    return lines


def _num(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def summary(mv, current: str | None = None, candidate: str | None = None) -> dict:
    """What a reviewer sees of a base version: who trained it, on which tenants' data versions,
    who was left out and why, its evidence, and whether it contains erased data."""
    t = mv.tags
    aliases = [a for a, v in ((CURRENT, current), (CANDIDATE, candidate)) if v == str(mv.version)]
    trained_on = {k.removeprefix("data_version."): v for k, v in sorted(t.items()) if k.startswith("data_version.")}
    evidence = evidence_from_tags(t)
    erased = [x for x in t.get(ERASED, "").split(",") if x]
    return {"kind": "base", "model": BASE_MODEL_NAME, "tenant": None, "version": str(mv.version),
            "status": t.get("status") or "approved (before review)", "aliases": aliases,
            "digest": t.get("digest", ""), "algorithm": t.get("algorithm", ""), "requested_by": t.get("requested_by", ""),
            "created": audit.iso_ms(mv.creation_timestamp), "run_id": mv.run_id or "",
            "trained_on": trained_on, "left_out": store.json_tag(t, "left_out"), "evidence": evidence,
            "evidence_lines": evidence_lines(evidence), "erased_data": erased,
            "problem": base_model.base_problem(mv) if t.get("status") in (APPROVED, None, "") or erased else None,
            "decision": {k: t[k] for k in ("approved_by", "approved_at", "approval_reason", "rejected_by",
                                            "rejected_at", "rejection_reason") if k in t}}


def list_bases(status: str | None = PENDING) -> list[dict]:
    """Base versions with ``status`` (every one when None), oldest first."""
    if not store.has_model(BASE_MODEL_NAME):
        return []
    current = store.alias_version(BASE_MODEL_NAME, CURRENT)
    candidate = store.alias_version(BASE_MODEL_NAME, CANDIDATE)
    cur = None if current is None else str(current.version)
    cand = None if candidate is None else str(candidate.version)
    return [summary(mv, cur, cand) for mv in store.versions(BASE_MODEL_NAME)
            if status is None or mv.tags.get("status") == status]


def base_page(version: str) -> dict:
    """One base version for the review page, with its whole evidence (``evidence.json``) when logged."""
    mv = _version(version)
    current = store.alias_version(BASE_MODEL_NAME, CURRENT)
    candidate = store.alias_version(BASE_MODEL_NAME, CANDIDATE)
    out = summary(mv, None if current is None else str(current.version),
                  None if candidate is None else str(candidate.version))
    out["current_version"] = None if current is None else str(current.version)
    return out


def plan_approve_base(mv, settings: Settings, reviewer: str, reason: str, current) -> transitions.Plan:
    """Refuse (``UserError``) or plan: tags, ``@current`` -> version, ``@candidate`` off it."""
    version, status = str(mv.version), mv.tags.get("status")
    if status != PENDING:
        hint = {APPROVED: "it is already approved; to make an earlier base current use "
                          "`tailor rollback --base-version N`",
                REJECTED: "it was rejected; meta-train again for a new candidate"}
        raise UserError(f"{BASE_MODEL_NAME} v{version} is {status or 'not a reviewed candidate'}: "
                        f"{hint.get(status, 'only pending bases can be approved')}")
    if mv.tags.get(ERASED):
        raise UserError(f"{BASE_MODEL_NAME} v{version} contains data of erased tenant(s) {mv.tags[ERASED]}: "
                        "it can never be approved; meta-train a base without it")
    trained_by = mv.tags.get("requested_by", "")
    if settings.gates.four_eyes and identity.same_person(reviewer, trained_by):
        raise UserError(f"four-eyes: {reviewer} trained {BASE_MODEL_NAME} v{version} and cannot also approve it; "
                        "ask another reviewer")
    at = audit.now()
    previous = None if current is None else str(current.version)
    return transitions.Plan(
        action="approve-base", model=BASE_MODEL_NAME, tenant=None, actor=reviewer, reason=reason,
        frm=previous, to=version,
        tags={version: {"status": APPROVED, "approved_by": reviewer, "approved_at": at, "approval_reason": reason}},
        aliases=[(CURRENT, version, None), (CANDIDATE, None, version)],
        descriptions={version: f"meta-learned base {mv.tags.get('digest', '')[:19]}: approved by {reviewer} at {at}"},
        details={"requested_by": trained_by, "digest": mv.tags.get("digest", ""),
                 "evidence_sha256": mv.tags.get("evidence_sha256")})


def approve_base(ws: Workspace, settings: Settings, version: str, reviewer: str, reason: str,
                 dry_run: bool = False) -> dict:
    """Make base ``version`` ``@current``: what the next adaptations start from. Tenants' champions
    are not touched; they move only through their own candidates' review."""
    reviewer = identity.require_person(reviewer, "approve a base")
    reason = _need_text(reason, "reason", "--reason")

    def make():
        mv = _version(version)
        return plan_approve_base(mv, settings, reviewer, reason, store.alias_version(BASE_MODEL_NAME, CURRENT))

    if dry_run:
        return transitions.preview(None, make)
    plan, commit = transitions.execute(ws, None, make)
    return {"model": BASE_MODEL_NAME, "version": plan.to, "previous": plan.frm, "approved_by": reviewer,
            "approved_at": plan.tags[plan.to]["approved_at"], "audit_seq": commit["seq"]}


def plan_reject_base(mv, reviewer: str, reason: str) -> transitions.Plan:
    version, status = str(mv.version), mv.tags.get("status")
    if status != PENDING:
        hint = " (to stop adapting from it, approve another base or `tailor rollback --base-version N`)" \
            if status == APPROVED else ""
        raise UserError(f"{BASE_MODEL_NAME} v{version} is {status or 'not a reviewed candidate'}, not pending{hint}")
    tags = {"status": REJECTED, "rejected_by": reviewer, "rejected_at": audit.now(), "rejection_reason": reason}
    return transitions.Plan(
        action="reject-base", model=BASE_MODEL_NAME, tenant=None, actor=reviewer, reason=reason, frm=version,
        to=None, tags={version: tags}, aliases=[(CANDIDATE, None, version)],
        descriptions={version: f"meta-learned base {mv.tags.get('digest', '')[:19]}: rejected by {reviewer}"},
        details={"requested_by": mv.tags.get("requested_by", "")})


def reject_base(ws: Workspace, version: str, reviewer: str, reason: str, dry_run: bool = False) -> dict:
    """Close a pending base: it can never become current."""
    reviewer = identity.require_person(reviewer, "reject a base")
    reason = _need_text(reason, "reason", "--reason")

    def make():
        return plan_reject_base(_version(version), reviewer, reason)

    if dry_run:
        return transitions.preview(None, make)
    plan, commit = transitions.execute(ws, None, make)
    return {"model": BASE_MODEL_NAME, "version": plan.frm, "rejected_by": reviewer,
            "rejected_at": plan.tags[plan.frm]["rejected_at"], "audit_seq": commit["seq"]}
