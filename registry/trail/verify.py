"""``tailor audit verify``: the chain, its two anchors, open transitions, and drift in one answer."""
from __future__ import annotations

from registry.storage import store
from registry.trail import audit, drift, transitions
from workspace.paths import Workspace


def verify_all(ws: Workspace, repair: bool = False) -> dict:
    """{"ok", "records", "problems": [one line each], "repaired": [...], "head"}.

    With ``repair`` the interrupted transitions are finished first; without it each is named.
    Drift is never repaired here: an alias moved by hand needs a person's decision.
    """
    _settle(ws)
    repaired = []
    if repair:
        for commit in transitions.repair(ws, transitions.open_tenants()):
            repaired.append(f"{commit.get('tenant') or 'tailor-base'}: {commit['action']} "
                            f"(intent {commit.get('intent')}) {commit['details'].get('outcome')}")
    chain = audit.verify(ws, reanchor=repair)
    if chain["reanchored"]:
        repaired.append(f"workspace anchor written again at record {chain['head']['count']} (the signed log verified)")
    problems = list(chain["problems"])
    for intent in audit.open_intents(None, every_tenant=True):
        problems.append(f"{intent.get('tenant') or 'tailor-base'}: {intent['action']} by {intent['actor']} "
                        f"(record {intent['seq']}) was interrupted; run `tailor audit verify --repair`")
    problems += drift.differences()
    return {"ok": not problems, "records": chain["records"], "problems": problems, "repaired": repaired,
            "head": chain["head"]}


def _settle(ws: Workspace) -> None:
    """Let transitions under way finish first: an open intent whose tenant lock a live command
    holds is a registration or approval in progress (its version may exist, its commit not yet),
    not an interrupted one. Once the lock is free, whatever is still open was left by a killed
    command. Waits as long as ``repair`` would (the lock's timeout)."""
    busy = transitions.open_tenants()
    if busy and store.lock_kind() == "registry":
        store.writable()  # that lock is kept in the registry itself
    for tenant in busy:
        with audit.lock(ws, tenant or audit.BASE_KEY):
            pass
