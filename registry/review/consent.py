"""Consent: whether a tenant's data may train the shared base, recorded and audited per tenant.

``tailor tenant set TENANT --train-base yes|no --reason`` is a transition like an approval: a plan
(the tenant model's ``train_base`` tag) applied under the tenant's lock with an audit intent and
commit. What meta-training decides from is the signed audit log, not the tag: the tag is the log's
copy for MLflow's UI, and a tag edited outside Tailor is drift that ``audit verify`` names. A tenant
with no record follows ``data.train_base_default`` in params.yaml (committed with the workspace).
"""
from __future__ import annotations

from registry.storage import store
from registry.trail import audit, identity, transitions
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import Settings
from workspace.tenants import check_tenant_id, tenant_model_name

ACTION = "set-consent"
TAG = "train_base"  # registered-model tag of the tenant: yes | no (a copy of the audit log's answer)


def _word(allow: bool) -> str:
    return "yes" if allow else "no"


def plan_consent(tenant: str, allow: bool, actor: str, reason: str, previous: dict | None) -> transitions.Plan:
    """The tenant model's ``train_base`` tag set to yes/no, with who, when and why in the record."""
    return transitions.Plan(
        action=ACTION, model=tenant_model_name(tenant), tenant=tenant, actor=actor, reason=reason,
        frm=None if previous is None else _word(previous["train_base"]), to=_word(allow),
        model_tags={TAG: _word(allow)}, details={"train_base": allow})


def set_consent(ws: Workspace, tenant: str, allow: bool, actor: str, reason: str, dry_run: bool = False) -> dict:
    """Record whether ``tenant``'s data may train the shared base (a person decides, with a reason)."""
    actor = identity.require_person(actor, "record a tenant's consent")
    if not reason or not str(reason).strip():
        raise UserError("reason must not be empty: pass --reason TEXT")
    reason = str(reason).strip()
    check_tenant_id(tenant)

    def make():
        return plan_consent(tenant, allow, actor, reason, recorded(ws, [tenant]).get(tenant))

    if dry_run:
        return transitions.preview(tenant, make)
    store.ensure_registered_model(tenant_model_name(tenant), f"Tailor tenant {tenant}: base + delta per version")
    plan, commit = transitions.execute(ws, tenant, make)
    return {"tenant": tenant, "train_base": allow, "previous": plan.frm, "by": actor, "at": commit["at"],
            "reason": reason, "audit_seq": commit["seq"]}


def recorded(ws: Workspace, tenants: list[str] | None = None, log: list[dict] | None = None) -> dict[str, dict]:
    """tenant -> its last committed consent record ({"train_base", "by", "at", "reason", "seq"}),
    from the audit log; a tenant whose consent records are not signed with the workspace key maps
    to {"unverifiable": why}. ``log``: the records, when the caller has read them already."""
    recs = [r for r in (audit.records(ws) if log is None else log) if r.get("action") == ACTION
            and (tenants is None or r.get("tenant") in tenants)]
    out: dict[str, dict] = {}
    by_tenant: dict[str, list[dict]] = {}
    for r in recs:
        by_tenant.setdefault(r["tenant"], []).append(r)
    ring = audit.keyring(ws) if by_tenant else None
    for tenant, mine in by_tenant.items():
        forged = unsigned(mine, ring)
        if forged:
            out[tenant] = {"unverifiable": forged}
            continue
        done = audit.effective(mine)
        if done:
            last = done[-1]
            out[tenant] = {"train_base": bool((last.get("details") or {}).get("train_base")), "by": last.get("actor"),
                           "at": last.get("at"), "reason": last.get("reason"), "seq": last.get("seq")}
    return out


def unsigned(recs: list[dict], ring) -> str | None:
    """Why ``recs`` may not be trusted (no key to check them with, or a record the log's keys did
    not sign), or None."""
    if not ring.spans:
        return ring.problem
    bad = next((r for r in recs if not audit.trusted(r, ring)), None)
    return audit.not_signed(bad) if bad else None


def decisions(ws: Workspace, settings: Settings, tenants: list[str], log: list[dict] | None = None) -> dict[str, dict]:
    """tenant -> {"train_base": bool, "source": "recorded" | "default" | "unverifiable", "why": text}
    for each of ``tenants``: what meta-training may use, and the line that says why."""
    found = recorded(ws, tenants, log)
    default = settings.data.train_base_default
    out = {}
    for tenant in tenants:
        r = found.get(tenant)
        if r is None:
            out[tenant] = {"train_base": default, "source": "default",
                           "why": f"params.yaml data.train_base_default is {str(default).lower()}"}
        elif "unverifiable" in r:
            out[tenant] = {"train_base": False, "source": "unverifiable", "why": r["unverifiable"]}
        else:
            out[tenant] = {"train_base": r["train_base"], "source": "recorded", "by": r["by"], "at": r["at"],
                           "why": f"{_word(r['train_base'])}, recorded by {r['by']} at {r['at']}: {r['reason']}"}
    return out


def split(ws: Workspace, settings: Settings, tenants: list[str]) -> tuple[list[str], dict[str, str]]:
    """(the tenants whose data may train the base, in order; tenant -> why each other one may not)."""
    found = decisions(ws, settings, tenants)
    allowed = [t for t in tenants if found[t]["train_base"]]
    left_out = {t: ("no consent to train the base: " + found[t]["why"]) for t in tenants if not found[t]["train_base"]}
    return allowed, left_out
