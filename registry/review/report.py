"""The auditor's export: every tenant, every version, who/when/why, and lineage down to data —
the tenant's data version, the base it was adapted from, and the data versions that base was
meta-trained on. One registry read of versions and one of the audit log, whatever the tenant count."""
from __future__ import annotations


from registry.review.lineage import _entry
from registry.storage import store
from registry.storage.names import PREFIX
from registry.trail import audit
from registry.trail.verify import verify_all
from workspace.paths import Workspace
from workspace.tenants import BASE_MODEL_NAME


def _bases(log: list[dict]) -> dict[str, dict]:
    from registry.review.bases import summary

    out = {}
    for mv in store.versions(BASE_MODEL_NAME) if store.has_model(BASE_MODEL_NAME) else []:
        trained_on = {k.removeprefix("data_version."): v for k, v in mv.tags.items() if k.startswith("data_version.")}
        s = summary(mv)
        out[str(mv.version)] = {
            "version": str(mv.version), "digest": mv.tags.get("digest", ""), "run_id": mv.run_id or "",
            "algorithm": mv.tags.get("algorithm", ""), "code_version": mv.tags.get("code_version", ""),
            "created": audit.iso_ms(mv.creation_timestamp), "trained_on": trained_on,
            "status": s["status"], "requested_by": s["requested_by"], "decision": s["decision"],
            "left_out": s["left_out"], "erased_data": s["erased_data"], "evidence": s["evidence"],
            "evidence_lines": s["evidence_lines"],
            "events": [{"seq": r["seq"], "at": r["at"], "actor": r["actor"], "action": r["action"],
                        "from": r.get("from"), "to": r.get("to"), "reason": r.get("reason")}
                       for r in log if r.get("tenant") is None and str(mv.version) in (r.get("to"), r.get("from"))]}
    return out


def audit_report(ws: Workspace) -> dict:
    """Everything an auditor asks for, as one JSON-able dict."""
    log = audit.effective(audit.records(ws))
    by_tenant: dict[str, list[dict]] = {}
    for r in log:
        by_tenant.setdefault(r.get("tenant"), []).append(r)
    bases = _bases(log)
    models = {rm.name: rm.aliases for rm in store.registered_models(f"{PREFIX}%")}
    versions: dict[str, list] = {}
    for mv in store.versions(f"{PREFIX}%", like=True):
        versions.setdefault(mv.name, []).append(mv)
    tenants = []
    for name in sorted(models):
        tenant = name.removeprefix(PREFIX)
        per_version: dict[str, list[str]] = {}
        for alias, v in models[name].items():
            per_version.setdefault(str(v), []).append(alias)
        entries = []
        for mv in versions.get(name, []):
            entry = _entry(mv, by_tenant.get(tenant, []), per_version)
            entry["base"]["trained_on"] = bases.get(entry["base"]["version"], {}).get("trained_on", {})
            entries.append(entry)
        tenants.append({"tenant": tenant, "champion": _str(models[name].get("champion")),
                        "candidate": _str(models[name].get("candidate")), "versions": entries})
    check = verify_all(ws, full=True)  # the report lists every record: check every one
    data_in: dict[str, list[str]] = {}   # tenant -> the bases meta-trained on its data
    for b in bases.values():
        for tenant in b["trained_on"]:
            data_in.setdefault(tenant, []).append(b["version"])
    return {"generated_at": audit.now(), "tracking_uri": store.tracking_uri(), "data_in": dict(sorted(data_in.items())),
            "audit": {"ok": check["ok"], "records": check["records"], "head": check["head"],
                      "problems": check["problems"]},
            "bases": list(bases.values()), "tenants": tenants,
            "log": [{k: r.get(k) for k in ("seq", "at", "actor", "action", "tenant", "from", "to", "reason")}
                    for r in log]}


def _str(value) -> str | None:
    return None if value is None else str(value)


def render_html(report: dict) -> str:
    """The same report as one self-contained, escaped HTML page."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from registry.artifacts.compare import measured_text

    env = Environment(loader=PackageLoader("registry.review", "templates"), autoescape=select_autoescape(default=True))
    env.filters["measured"] = measured_text  # `0.833 [0.55,0.95] n=12`
    return env.get_template("audit_report.html").render(r=report)
