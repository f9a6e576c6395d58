"""The model version description a person reads in MLflow's UI: kept current on every transition."""
from __future__ import annotations


def _num(value) -> str:
    try:
        return f"{float(value):.3f}"
    except (TypeError, ValueError):
        return "-"


def describe(tags: dict, state: str) -> str:
    """Markdown: state, who/when/why, gates, metrics against the baseline, data and base."""
    t = tags
    lines = [f"**{t.get('tenant', '?')}: {state}** (status `{t.get('status', '?')}`)", ""]
    if t.get("approved_by"):
        lines.append(f"- approved by {t['approved_by']} at {t.get('approved_at', '?')}: {t.get('approval_reason', '')}")
        lines.append(f"- gates: {t.get('gates', '-')}"
                     + (f" (override: {t['override_reason']})" if t.get("override_reason") else ""))
    if t.get("rejected_by"):
        lines.append(f"- rejected by {t['rejected_by']} at {t.get('rejected_at', '?')}: {t.get('rejection_reason', '')}")
    if t.get("rolled_back_by"):
        lines.append(f"- rolled back by {t['rolled_back_by']} at {t.get('rolled_back_at', '?')}: "
                     f"{t.get('rollback_reason', '')}")
    lines += [
        f"- requested by {t.get('requested_by', '-')}",
        f"- accuracy {_measured(t, 'query_accuracy')} vs baseline {_measured(t, 'baseline_accuracy')} "
        f"({t.get('baseline_method') or 'no-meta'}); head: {t.get('head') or '-'}",
        f"- data {t.get('data_version', '-')}, validation {t.get('validation', '-')}, "
        f"isolation {t.get('isolation', '-')}",
        f"- base tailor-base v{t.get('base_version', '?')} ({t.get('base_digest', '')[:19]})",
    ]
    return "\n".join(lines)


def _measured(t: dict, key: str) -> str:
    """``0.833 [0.55,0.95] n=12`` from a version's tags (the held-out ``n_query``)."""
    from registry.artifacts.compare import measured, measured_text

    try:
        value, n = float(t[key]), int(float(t.get("n_query") or 0))
    except (KeyError, ValueError):
        return _num(t.get(key))
    return measured_text(measured(value, n or None))
