"""Lineage for auditors: what served a tenant (now or at a time), trained on what, approved by whom.

Facts about a version come from its registry tags; who did what and when comes from the audit log.
"""
from __future__ import annotations

from datetime import datetime

from registry.artifacts.compare import measured_text
from registry.review.approval import summary
from registry.storage import store
from registry.storage.names import CANDIDATE, CHAMPION
from registry.trail import audit
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.tenants import check_tenant_id, tenant_model_name

_DECISION_TAGS = ("approved_by", "approved_at", "approval_reason", "gates", "override_reason",
                  "rejected_by", "rejected_at", "rejection_reason",
                  "rolled_back_by", "rolled_back_at", "rollback_reason")


def _what(record: dict, version: str) -> str | None:
    """What an audit record meant for ``version`` (None: it did not concern it)."""
    action, frm, to = record.get("action"), record.get("from"), record.get("to")
    if to == version:
        return {"register": "registered", "approve": "approved",
                "rollback": f"restored (rollback from v{frm})"}.get(action)
    if frm == version:
        return {"reject": "rejected", "approve": f"replaced by v{to}",
                "rollback": f"rolled back to v{to}"}.get(action)
    return None


def _events(log: list[dict], version: str) -> list[dict]:
    out = []
    for r in log:
        what = _what(r, version)
        if what:
            out.append({"seq": r.get("seq"), "at": r.get("at"), "actor": r.get("actor"),
                        "action": r.get("action"), "event": what, "reason": r.get("reason")})
    return out


def _entry(mv, log: list[dict], aliases: dict) -> dict:
    t = mv.tags
    entry = summary(mv, aliases)
    entry.update(base={"name": "tailor-base", "version": t.get("base_version", ""),
                       "digest": t.get("base_digest", "")},
                 delta_sha256=t.get("delta_sha256", ""), flow_run_id=t.get("flow_run_id", ""),
                 code_version=t.get("code_version", ""), run_id=mv.run_id or "",
                 validation_report=t.get("validation_report", ""),
                 decision={k: t[k] for k in _DECISION_TAGS if k in t},
                 events=_events(log, str(mv.version)))
    return entry


def decisions(ws: Workspace, tenant: str, version: str, last: int = 20) -> tuple[list[dict], list[dict]]:
    """What the audit log says happened to ``tenant`` v``version`` (who, when, why, oldest first),
    and the tenant's ``last`` records, newest first."""
    log = audit.effective(audit.records(ws, check_tenant_id(tenant)))
    history = [{k: r.get(k) for k in ("seq", "at", "actor", "action", "from", "to", "reason")} for r in log]
    return _events(log, str(version)), history[::-1][:last]


def lineage(ws: Workspace, tenant: str, version: str | None = None, at: datetime | str | None = None) -> dict:
    """The champion and candidate of ``tenant`` (or ``version``, or what served at ``at``)."""
    check_tenant_id(tenant)
    name = tenant_model_name(tenant)
    if not store.has_model(name):
        raise UserError(f"tenant {tenant!r} has no registered versions: run `tailor adapt {tenant}` first")
    champion = store.alias_version(name, CHAMPION)
    candidate = store.alias_version(name, CANDIDATE)
    log = audit.effective(audit.records(ws, tenant))
    out = {"tenant": tenant, "champion": None if champion is None else str(champion.version),
           "candidate": None if candidate is None else str(candidate.version)}
    if champion is not None:
        from registry.trail.drift import champion_problem

        out["drift"] = champion_problem(tenant, champion)
    if version is not None:
        chosen = [str(store.model_version(name, version, f"tenant {tenant}").version)]
        out["asked"] = {"version": chosen[0]}
    elif at is not None:
        when = audit.parse_time(at)
        served = audit.served_at(ws, tenant, when)
        chosen = [served] if served else []
        out["asked"] = {"at": when.isoformat().replace("+00:00", "Z"), "served": served}
    else:
        chosen = [v for v in (out["champion"], out["candidate"]) if v is not None]
        chosen = list(dict.fromkeys(chosen))
    client = store.client()
    aliases = store.aliases(name)
    out["versions"] = [_entry(client.get_model_version(name, v), log, aliases) for v in chosen]
    return out


def _short(digest: str, n: int = 12) -> str:
    kind, _, value = (digest or "").partition(":")
    return f"{kind}:{value[:n]}" if value else (digest or "-")[:n + 7]


def _when(iso: str | None) -> str:
    return f"{iso[:10]} {iso[11:19]}Z" if iso and len(iso) >= 19 else (iso or "-")


def render(d: dict) -> str:
    """Short lines for a person."""
    lines = [f"tenant {d['tenant']}   champion {'v' + d['champion'] if d['champion'] else 'none'}   "
             f"candidate {'v' + d['candidate'] if d['candidate'] else 'none'}"]
    asked = d.get("asked", {})
    if "at" in asked:
        lines.append(f"at {asked['at']}: " + (f"v{asked['served']} was serving" if asked["served"]
                                              else "no approved version was serving"))
    for v in d["versions"]:
        roles = [r for r in ("champion", "candidate") if d.get(r) == v["version"]]
        lines.append("")
        lines.append(f"v{v['version']}  {v['status']}" + (f"  (@{', @'.join(roles)})" if roles else ""))
        lines.append(f"  data       {v['data_version'] or '-'}   validation {v['validation'] or '-'}   "
                     f"isolation {v['isolation'] or '-'}")
        lines.append(f"  base       {v['base']['name']} v{v['base']['version']}   {_short(v['base']['digest'])}")
        lines.append(f"  accuracy   {measured_text(v.get('accuracy'))} (baseline {measured_text(v.get('baseline'))} "
                     f"{v.get('baseline_method') or 'no-meta'}; 95% Wilson intervals)   head {v.get('head') or '-'}")
        lines.append(f"  produced   by {v['requested_by'] or '-'} at {_when(v['created'])}   "
                     f"flow run {v['flow_run_id'] or '-'}   code {v['code_version'] or '-'}")
        for e in v["events"]:
            reason = f': "{e["reason"]}"' if e.get("reason") else ""
            lines.append(f"  {_when(e['at'])}  {e['event']} by {e['actor']}{reason}")
    if d.get("drift"):
        lines.append(f"WARNING: {d['drift']} (`tailor audit verify` names every difference)")
    if not d["versions"] and "at" not in asked:
        lines.append("no champion or candidate yet")
    return "\n".join(lines)
