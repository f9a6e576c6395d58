"""``tailor audit verify``: the chain, its two anchors, open transitions, and drift in one answer."""
from __future__ import annotations

from registry import audit, drift, transitions
from workspace.paths import Workspace


def verify_all(ws: Workspace, repair: bool = False) -> dict:
    """{"ok", "records", "problems": [one line each], "repaired": [...], "head"}.

    With ``repair`` the interrupted transitions are finished first; without it each is named.
    Drift is never repaired here: an alias moved by hand needs a person's decision.
    """
    repaired = []
    if repair:
        for commit in transitions.repair(ws, transitions.open_tenants()):
            repaired.append(f"{commit.get('tenant') or 'tailor-base'}: {commit['action']} "
                            f"(intent {commit.get('intent')}) {commit['details'].get('outcome')}")
    chain = audit.verify(ws)
    problems = list(chain["problems"])
    for intent in audit.open_intents(None, every_tenant=True):
        problems.append(f"{intent.get('tenant') or 'tailor-base'}: {intent['action']} by {intent['actor']} "
                        f"(record {intent['seq']}) was interrupted; run `tailor audit verify --repair`")
    problems += drift.differences()
    return {"ok": not problems, "records": chain["records"], "problems": problems, "repaired": repaired,
            "head": chain["head"]}
