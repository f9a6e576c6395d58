"""What a fleet run has to do, decided before any work, and what it did, for people.

Plain functions (no Prefect, no MLflow): the adaptation flow feeds them the tenants' recorded data
versions and their newest versions' tags, so "adapt or skip" is testable on its own.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

# What a candidate depends on besides its data and base: changing any of it re-adapts every tenant.
# (validation: the candidate's gate is its data's report; max_adapt_rows: which rows it saw)
ADAPTATION_SECTIONS = ("encoder", "adapt", "validation")


def settings_digest(settings) -> str:
    """sha256 of the settings a candidate depends on (sorted-key JSON), recorded on each version so
    a later fleet run sees whether they changed since."""
    raw = settings.to_dict()
    chosen = {name: raw[name] for name in ADAPTATION_SECTIONS}
    chosen["max_adapt_rows"] = raw["limits"]["max_adapt_rows"]
    text = json.dumps(chosen, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class FleetPlan:
    todo: list[str] = field(default_factory=list)        # tenants to adapt, in the order given
    why: dict[str, str] = field(default_factory=dict)    # tenant -> what changed
    skipped: list[dict] = field(default_factory=list)    # outcomes decided without work


def plan(tenants: list[str], data_versions: dict[str, str | None], newest: dict[str, dict],
         base_digest: str, digest: str, force: bool = False) -> FleetPlan:
    """Adapt a tenant when its data version, the base or the adaptation settings differ from its
    newest version's (or it has none, or ``force``); skip it otherwise, whatever that version's
    review status (re-adapting the same inputs would only repeat the same candidate)."""
    out = FleetPlan()
    for tenant in tenants:
        last = newest.get(tenant)
        if force or last is None:
            out.todo.append(tenant)
            out.why[tenant] = "forced" if force else "first candidate"
            continue
        changed = [what for what, now, then in (("data", data_versions.get(tenant), last.get("data_version")),
                                                ("base", base_digest, last.get("base_digest")),
                                                ("settings", digest, last.get("settings_digest")))
                   if now != then]
        if changed:
            out.todo.append(tenant)
            out.why[tenant] = ", ".join(changed) + " changed"
        else:
            out.skipped.append({"tenant": tenant, "status": "skipped", "version": None,
                                "latest_version": str(last["version"]),
                                "data_version": data_versions.get(tenant),
                                "reason": f"unchanged since v{last['version']} ({last.get('status', '?')})"})
    return out


def counts(outcomes: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in outcomes:
        key = "registered" if o.get("version") else o["status"]
        out[key] = out.get(key, 0) + 1
    return out


def summary_markdown(outcomes: list[dict], base: dict, seconds: float) -> str:
    """The fleet run's Prefect artifact: counts, then registered, failed and skipped tenants, each
    with why."""
    c = counts(outcomes)
    lines = [f"# Fleet adaptation to {base.get('name', 'tailor-base')} v{base.get('version', '?')}", "",
             f"{len(outcomes)} tenant(s) in {seconds:.1f} s: "
             + ", ".join(f"**{n}** {k}" for k, n in sorted(c.items())), ""]
    sections = (("Registered", lambda o: bool(o.get("version"))),
                ("Not registered", lambda o: not o.get("version") and o["status"] != "skipped"),
                ("Skipped", lambda o: o["status"] == "skipped"))
    for title, keep in sections:
        rows = sorted((o for o in outcomes if keep(o)), key=lambda o: o["tenant"])
        if not rows:
            continue
        lines += [f"## {title} ({len(rows)})", "", "| tenant | outcome | detail |", "|---|---|---|"]
        lines += [f"| {_cell(o['tenant'])} | {o['status']} | {_cell(_detail(o))} |" for o in rows[:2000]]
        if len(rows) > 2000:
            lines.append(f"| … | | {len(rows) - 2000} more |")
        lines.append("")
    return "\n".join(lines)


def _detail(o: dict) -> str:
    m = o.get("metrics")
    if o.get("version") and m:
        from registry.artifacts.compare import measured, measured_text

        return (f"v{o['version']}: accuracy {measured_text(measured(m['query_accuracy'], m.get('n_query')))} vs "
                f"baseline {m['baseline_accuracy']:.3f}"
                + (f" ({o['why']})" if o.get("why") else ""))
    return str(o.get("reason", ""))


def _cell(text) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")[:300]
