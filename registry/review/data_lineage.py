"""Lineage from a tenant's data: which bases were meta-trained on it, and which tenants' champions
were adapted from those bases (and the tenant's own versions), each between which dates. Facts
about versions come from their tags; the dates from the audit log (when an alias reached a version
and when it left). The same facts tell retention which data versions must be kept."""
from __future__ import annotations

from registry.review import bases as base_review
from registry.storage import store
from registry.storage.names import CHAMPION, PENDING, PREFIX
from registry.trail import audit
from registry.trail.transitions import NEW, Plan
from workspace.paths import Workspace
from workspace.tenants import BASE_MODEL_NAME, check_tenant_id

CURRENT = "current"


def alias_periods(records: list[dict], model: str, alias: str) -> dict[str, list[list]]:
    """version -> [[from, to or None], ...]: when ``alias`` of ``model`` pointed at it, replayed
    from the committed plans of the audit log (``to`` None: it still does)."""
    out: dict[str, list[list]] = {}
    holder = None
    for r in audit.effective(records):
        raw = (r.get("details") or {}).get("plan")
        if not raw or raw.get("model") != model:
            continue
        plan = Plan.from_json(raw)
        for name, target, only_if in plan.aliases:
            if name != alias:
                continue
            target = r.get("to") if target == NEW else target
            only_if = r.get("to") if only_if == NEW else only_if
            if target is None and only_if is not None and holder != str(only_if):
                continue
            if holder is not None and holder != (None if target is None else str(target)):
                out[holder][-1][1] = r["at"]
                holder = None
            if target is not None and holder != str(target):
                holder = str(target)
                out.setdefault(holder, []).append([r["at"], None])
    return out


def _periods_text(periods: list[list]) -> str:
    return ", ".join(f"{_day(a)} → {_day(b) if b else 'now'}" for a, b in periods) or "never"


def _day(iso: str | None) -> str:
    return f"{iso[:10]} {iso[11:16]}Z" if iso and len(iso) >= 16 else (iso or "-")


def tenant_data(ws: Workspace, tenant: str) -> dict:
    """What was trained on ``tenant``'s data, and when each served or was current."""
    check_tenant_id(tenant)
    log = audit.records(ws)
    bases = [mv for mv in (store.versions(BASE_MODEL_NAME) if store.has_model(BASE_MODEL_NAME) else [])
             if f"data_version.{tenant}" in mv.tags]
    current = alias_periods(log, BASE_MODEL_NAME, CURRENT)
    out_bases = []
    for mv in bases:
        s = base_review.summary(mv)
        out_bases.append({"version": str(mv.version), "data_version": mv.tags[f"data_version.{tenant}"],
                          "status": s["status"], "requested_by": s["requested_by"], "created": s["created"],
                          "decision": s["decision"], "erased_data": s["erased_data"], "run_id": s["run_id"],
                          "evidence": s["evidence"], "evidence_lines": s["evidence_lines"],
                          "current": current.get(str(mv.version), [])})
    chosen = {b["version"] for b in out_bases}
    adapted, own = [], []
    by_tenant: dict[str, list[dict]] = {}
    for r in log:
        by_tenant.setdefault(r.get("tenant"), []).append(r)
    periods_of: dict[str, dict] = {}
    for mv in store.versions(f"{PREFIX}%", like=True):
        other = mv.name[len(PREFIX):]
        mine = other == tenant
        if not mine and mv.tags.get("base_version") not in chosen:
            continue
        if other not in periods_of:
            periods_of[other] = alias_periods(by_tenant.get(other, []), mv.name, CHAMPION)
        periods = periods_of[other].get(str(mv.version), [])
        if not mine and not periods and mv.tags.get("status") != PENDING:
            continue
        entry = {"tenant": other, "version": str(mv.version), "status": mv.tags.get("status", ""),
                 "base_version": mv.tags.get("base_version", ""), "data_version": mv.tags.get("data_version", ""),
                 "run_id": mv.run_id or "", "champion": periods}
        (own if mine else adapted).append(entry)
    from registry.review.erasure import state

    return {"tenant": tenant, "erasure": state(tenant), "bases": out_bases, "champions": adapted, "own": own}


def render(d: dict) -> str:
    """Short lines for an auditor."""
    lines = [f"data of tenant {d['tenant']}"]
    e = d.get("erasure")
    if e:
        lines[0] += (f": erased at {e.get('at')} by {e.get('by')}" if e.get("state") == "done"
                     else f": erasure under way since {e.get('at')}")
    lines.append("")
    lines.append(f"bases meta-trained on it: {len(d['bases']) or 'none'}")
    for b in d["bases"]:
        flag = f"   CONTAINS ERASED DATA ({', '.join(b['erased_data'])})" if b["erased_data"] else ""
        lines.append(f"  tailor-base v{b['version']}  {b['status']}  trained on {b['data_version']}  "
                     f"by {b['requested_by'] or '-'}  current: {_periods_text(b['current'])}{flag}")
        for line in b["evidence_lines"]:
            lines.append(f"      evidence: {line}")
    lines.append(f"tenants' versions adapted from those bases: {len(d['champions']) or 'none'}")
    for c in d["champions"]:
        lines.append(f"  {c['tenant']} v{c['version']}  {c['status']}  from base v{c['base_version']}  "
                     f"champion: {_periods_text(c['champion'])}")
    lines.append(f"its own versions (adapted on its data): {len(d['own']) or 'none'}")
    for c in d["own"]:
        lines.append(f"  {c['tenant']} v{c['version']}  {c['status']}  data {c['data_version'] or '-'}  "
                     f"champion: {_periods_text(c['champion'])}")
    return "\n".join(lines)


def protected() -> dict[str, dict[str, str]]:
    """tenant -> {data version: why it must be kept}: the data a champion, a pending candidate or
    any base was trained on (retention never prunes them)."""
    out: dict[str, dict[str, str]] = {}
    champions = {rm.name: str(rm.aliases[CHAMPION]) for rm in store.registered_models(f"{PREFIX}%")
                 if CHAMPION in rm.aliases}
    for mv in store.versions(f"{PREFIX}%", like=True):
        tenant, md5 = mv.name[len(PREFIX):], mv.tags.get("data_version")
        if not md5:
            continue
        if champions.get(mv.name) == str(mv.version):
            out.setdefault(tenant, {})[md5] = f"champion v{mv.version} was trained on it"
        elif mv.tags.get("status") == PENDING:
            out.setdefault(tenant, {}).setdefault(md5, f"pending candidate v{mv.version} was trained on it")
    for mv in store.versions(BASE_MODEL_NAME) if store.has_model(BASE_MODEL_NAME) else []:
        for key, md5 in mv.tags.items():
            if key.startswith("data_version."):
                out.setdefault(key.removeprefix("data_version."), {}).setdefault(
                    md5, f"tailor-base v{mv.version} was meta-trained on it")
    return out
