"""``tailor audit verify``: the chain, its anchors, the trust root, open transitions, and drift.

By default it checks *incrementally*, as a CloudTrail digest chain is validated from a trusted
digest on: from the signed checkpoint the last clean verify of this workspace wrote
(``.tailor/audit-checkpoint.json``), it reads only the records after it, each tenant they touch
(that tenant's records and registry state), the anchors and the trust root, so its cost follows
what changed since, not the size of the log or of the fleet. ``--full`` checks every record, every
scope and every tenant; a verify that finds nothing wrong moves the checkpoint forward.
"""
from __future__ import annotations

from registry.storage import store
from registry.trail import anchor, audit, drift, index, transitions
from workspace import gitrepo, signing
from workspace.errors import UserError
from workspace.paths import Workspace

_FIX = "; after checking nothing was removed, `tailor audit verify --repair` anchors the verified log again"


def chain(ws: Workspace, full: bool = True, reanchor: bool = False) -> dict:
    """Recompute the chain (from the checkpoint, or all of it with ``full``), check each record's
    signature, each touched scope's own chain and mark, and the head against both anchors.

    Returns {"ok", "records", "problems", "head", "reanchored", "checked", "scopes"}: ``checked``
    says which records were read (``from``, ``to``, ``count``, ``checkpoint``, ``full``),
    ``scopes`` the scopes whose records were among them.
    """
    ring = audit.keyring(ws)
    uri = store.tracking_uri()
    cp = None if full else anchor.load_checkpoint(ws, ring, uri)
    start = cp["count"] if cp else 0
    hint = index.remote_head(index.experiment())["count"]
    recs, boundary = audit.records_after(start, max(hint - start, 0))
    problems: list[str] = []
    if ring.problem and (recs or start):
        problems.append(ring.problem)
    prev = None
    if start:
        if boundary is None or boundary.get("hash") != cp["hash"]:
            problems.append(f"record {start}, where the last verify's checkpoint ends, is missing or changed: records "
                            "were deleted or rewritten behind it; `tailor audit verify --full` names them")
            return _result(problems, start, None, cp, recs, {}, full)
        prev = boundary
    state = audit.open_of(prev, ring) if prev else {}
    by_scope: dict[str, list[dict]] = {}
    for record in recs:
        problem = audit.link_problem(prev, record, ring)
        if problem:
            problems.append(problem)
            break
        state = audit.next_open(state, record)
        if "open" in record and record["open"] != state:
            problems.append(f"record {record['seq']} lists open transitions the log does not have: a faulty writer")
            break
        by_scope.setdefault(audit.scope_of(record), []).append(record)
        prev = record
    head = {"count": prev["seq"] if prev else 0, "hash": prev["hash"] if prev else audit.GENESIS}
    reanchored = False
    if not problems:
        problems += _check_anchor("registry anchor (experiment tag)", index.remote_head(index.experiment()),
                                  head, recs, boundary)
        local, why = anchor.load(ws, ring, uri)
        if local is None and (why or head["count"]):
            why = why or f"workspace anchor ({anchor.ANCHOR}) is missing: deletions from the end of the log cannot be ruled out"
            if reanchor and not problems:
                key = signing.ensure_key(ws, store.signing_key_setting())
                anchor.write(ws, head, key, uri, store.signing_key_setting() or signing.DEFAULT_KEY)
                reanchored = True
            else:
                problems.append(why + _FIX)
        elif local is not None:
            problems += _check_anchor(f"workspace anchor ({anchor.ANCHOR})", local, head, recs, boundary)
        problems += [p for p in _scopes(ws, ring, by_scope, full) if p not in problems]
    out = _result(problems, start, head, cp, recs, by_scope, full)
    out["reanchored"] = reanchored
    return out


def _result(problems, start, head, cp, recs, by_scope, full) -> dict:
    head = head or {"count": start, "hash": (cp or {}).get("hash", audit.GENESIS)}
    return {"ok": not problems, "records": head["count"], "problems": problems, "head": head, "reanchored": False,
            "checked": {"from": start + 1, "to": head["count"], "count": len(recs), "full": cp is None,
                        "checkpoint": cp["count"] if cp else None},
            "scopes": sorted(by_scope)}


def _scopes(ws: Workspace, ring, by_scope: dict, full: bool) -> list[str]:
    """Each scope's own chain and mark: the scopes the new records touch (all with ``full``, whose
    records are all at hand; a mark with no records left is named too)."""
    problems = []
    scopes = set(by_scope) | (set(anchor.marks(ws)) if full else set())
    for scope in sorted(scopes):
        recs = by_scope.get(scope, []) if full else audit.records(ws, scope)
        problem = audit.scope_problem(ws, scope, recs, ring)
        if problem:
            problems.append(problem)
    return problems


def _check_anchor(name: str, head_seen: dict, head: dict, recs: list, boundary: dict | None) -> list[str]:
    try:
        count = int(head_seen.get("count", 0))
    except (TypeError, ValueError):
        return [f"{name} is unreadable"]
    if count > head["count"]:
        return [f"{name} says {count} record(s) but the log has {head['count']}: records were deleted from the end"]
    if count == 0:
        return []
    record = next((r for r in recs if r and r["seq"] == count), None)
    if record is None and boundary is not None and boundary["seq"] == count:
        record = boundary
    if record is None:
        record = index.by_seq(count)
    if record is None or record.get("hash") != head_seen.get("hash"):
        return [f"{name}: record {count} differs from the anchored one: the log was rewritten"]
    return []


def trust_root(ws: Workspace, ring) -> list[str]:
    """The pinned key and the key's path against the anchor and git history: each committed
    version of ``audit-signing.pub`` must be a key of the log, handed over by ``rotate-key``."""
    setting = store.signing_key_setting()
    problems = audit.trust_root_problems(ws, setting)
    if not (ws.root / ".git").exists():
        return problems
    known = {span.fingerprint for span in ring.spans}
    name = signing.PUBLIC_FILE
    status = gitrepo.git(ws, "status", "--porcelain", "--", name, check=False) or ""
    if status.strip() and not status.startswith("??"):   # untracked: never committed, nothing to differ from
        problems.append(f"{name} differs from the one committed in git: a key changes only by `tailor audit rotate-key`")
    commits = (gitrepo.git(ws, "log", "--format=%H", "--", name, check=False) or "").split()
    for commit in commits:
        text = gitrepo.git(ws, "show", f"{commit}:{name}", check=False) or ""
        raw = signing.parse_public(text)
        if raw is not None and ring.spans and _fp(raw) not in known:
            problems.append(f"{name} was changed in git commit {commit[:10]} to a key no `tailor audit rotate-key` "
                            f"record hands over to ({_fp(raw)[7:19]})")
    return problems


def _fp(raw: bytes) -> str:
    from registry.trail.keys import fingerprint

    return fingerprint(raw)


def verify_all(ws: Workspace, repair: bool = False, full: bool = False) -> dict:
    """{"ok", "records", "problems": [one line each], "repaired": [...], "head", "checked"}.

    With ``repair`` the interrupted transitions are finished first (and the whole log checked);
    without it each is named. Drift is never repaired here: an alias moved by hand needs a
    person's decision.
    """
    _settle(ws)
    repaired = []
    if repair:
        full = True
        for commit in transitions.repair(ws, transitions.open_tenants()):
            repaired.append(f"{commit.get('tenant') or 'tailor-base'}: {commit['action']} "
                            f"(intent {commit.get('intent')}) {commit['details'].get('outcome')}")
    result = chain(ws, full=full, reanchor=repair)
    if result["reanchored"]:
        repaired.append(f"workspace anchor written again at record {result['head']['count']} (the signed log verified)")
    problems = list(result["problems"])
    ring = audit.keyring(ws)
    problems += trust_root(ws, ring)
    try:
        for intent in audit.open_intents(None, every_tenant=True):
            problems.append(f"{intent.get('tenant') or 'tailor-base'}: {intent['action']} by {intent['actor']} "
                            f"(record {intent['seq']}) was interrupted; run `tailor audit verify --repair`")
    except UserError as exc:
        problems.append(str(exc))
    full = result["checked"]["full"]
    tenants = None if full else [s for s in result["scopes"] if not s.startswith("_")]
    problems += drift.differences(tenants, base="_base" in result["scopes"] or full)
    result["checked"]["tenants"] = "all" if full else len(tenants)
    if not problems:
        _checkpoint(ws, result["head"])
    return {"ok": not problems, "records": result["records"], "problems": problems, "repaired": repaired,
            "head": result["head"], "checked": result["checked"]}


def _checkpoint(ws: Workspace, head: dict) -> None:
    """Where the next verify starts; written only by a holder of the signing key."""
    setting = store.signing_key_setting()
    if not signing.key_path(ws, setting).exists():
        return
    try:
        key = signing.ensure_key(ws, setting)
        anchor.write_checkpoint(ws, head, key, store.tracking_uri(), audit.now())
    except (UserError, OSError):
        pass


def _settle(ws: Workspace) -> None:
    """Let transitions under way finish first: an open intent whose tenant lock a live command
    holds is a registration or approval in progress (its version may exist, its commit not yet),
    not an interrupted one. Once the lock is free, whatever is still open was left by a killed
    command. Waits as long as ``repair`` would (the lock's timeout)."""
    try:
        busy = transitions.open_tenants()
    except UserError:
        return  # named by the checks that follow
    if busy and store.lock_kind() == "registry":
        store.writable()  # that lock is kept in the registry itself
    for tenant in busy:
        with audit.lock(ws, tenant or audit.BASE_KEY):
            pass
