"""The audit log: one hash-chained record per state change, kept in the MLflow backend beside the
models it describes (experiment ``tailor-audit``, one run per record), so it travels with a shared
registry instead of living on one machine.

Each record's ``hash`` is the sha256 of its canonical JSON (sorted keys, without ``hash``), and
``prev_hash`` is the hash of the record before it: editing, deleting or reordering a record breaks
the chain. Deleting the *last* records leaves a valid shorter chain, so the head (count and hash)
is anchored twice outside the records: as a tag of the experiment and in the workspace
(``.tailor/audit-head.json``). ``verify`` compares the chain with both.

The chain proves order, not authorship: anyone who can write the tracking store could append
correctly chained records. So each record's hash, and the workspace anchor, are signed with the
workspace signing key (``workspace.signing``), which that writer does not hold; ``verify`` and
serving refuse a record or anchor without a valid signature (docs/security.md).

A state change writes two records (``transitions``): an ``intent`` holding the plan, then a
``commit`` naming the intent. An intent without a commit is open work the next command finishes.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from registry.storage import store
from workspace import signing
from workspace.errors import UserError
from workspace.paths import Workspace

GENESIS = "0" * 64
EXPERIMENT = "tailor-audit"
CHAMPION_ACTIONS = ("approve", "rollback")  # the records that move a tenant's @champion
_CHUNK = 7000  # MLflow tag values hold 8,000 characters: longer records are split over tags
BASE_KEY = "_base"  # the lock/record key of tailor-base's transitions


def now() -> str:
    """UTC time, ISO 8601 with microseconds and a trailing Z."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def iso_ms(millis: int | None) -> str | None:
    """MLflow's millisecond timestamps in the log's format."""
    if millis is None:
        return None
    stamp = datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str | datetime) -> datetime:
    """A timezone-aware datetime; a naive one (or string) is taken as UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise UserError(f"{value!r} is not a time: use ISO 8601, e.g. 2026-03-01T12:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def record_hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k not in ("hash", "sig")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def lock(ws: Workspace, key: str, timeout: float = 120.0):
    """A lock across processes (``key``: "audit", a tenant id, or BASE_KEY): see ``registry.storage.locks``."""
    from registry.storage.locks import lock as make

    return make(ws, key, timeout)


def _record_message(digest: str) -> str:
    return f"tailor-audit-record/1 {digest}"


def _anchor_message(anchor: dict) -> str:
    return f"tailor-audit-anchor/1 {anchor.get('store')} {anchor.get('count')} {anchor.get('hash')}"


def signed_by(public, record: dict) -> bool:
    """Whether ``record`` carries a valid signature of its hash by ``public``'s key."""
    return signing.valid(public, _record_message(str(record.get("hash"))), record.get("sig"))


def unsigned(recs: list[dict], ws: Workspace | None) -> str | None:
    """Why ``recs`` may not be trusted (a record without a valid signature, or no key to check
    with), or None: what serving asks before it replays a tenant's records."""
    if not recs:
        return None
    public, why = signing.verifying_key(ws or _workspace_of_store(), store.signing_key_setting())
    if public is None:
        return f"cannot check who wrote the audit log: {why}"
    for record in recs:
        if record_hash({k: v for k, v in record.items() if k != "_run_id"}) != record.get("hash") \
                or not signed_by(public, record):
            return (f"audit record {record.get('seq')} ({record.get('action')} by {record.get('actor')}) is not "
                    "signed with the workspace key (written outside Tailor)")
    return None


def _workspace_of_store() -> Workspace | None:
    """Without a configured workspace (a pyfunc under ``mlflow models serve``): the workspace whose
    embedded store this is (``<ws>/.tailor/mlflow.db``), else None (``TAILOR_HOME`` or the current
    folder)."""
    from registry.storage.reader import sqlite_path

    db = sqlite_path(store.tracking_uri())
    if db is not None and db.parent.name == ".tailor" and (db.parent.parent / "params.yaml").is_file():
        return Workspace(db.parent.parent.resolve())
    return None


def _experiment() -> str:
    return store.experiment_id(EXPERIMENT)


def _anchor_file(ws: Workspace) -> Path:
    return ws.state_dir / "audit-head.json"


def _remote_head(exp_id: str | None) -> dict:
    if exp_id is None:  # read-only, before the first record
        return {"count": 0, "hash": GENESIS}
    tags = store.client().get_experiment(exp_id).tags
    try:
        return json.loads(tags["head"])
    except (KeyError, ValueError):
        return {"count": 0, "hash": GENESIS}


def _local_head(ws: Workspace) -> dict | None:
    try:
        return json.loads(_anchor_file(ws).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_local_head(ws: Workspace, head: dict, key) -> None:
    path = _anchor_file(ws)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    anchor = {**head, "store": store.tracking_uri()}
    anchor["sig"] = signing.sign(key, _anchor_message(anchor))
    tmp.write_text(json.dumps(anchor) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _tags_of(record: dict) -> dict[str, str]:
    text = json.dumps(record, sort_keys=True, ensure_ascii=False)
    tags = {"seq": f"{record['seq']:09d}", "tenant": record.get("tenant") or BASE_KEY,
            "action": record["action"], "phase": record.get("phase") or "event"}
    for i in range(0, len(text), _CHUNK):
        tags[f"record_{i // _CHUNK}"] = text[i:i + _CHUNK]
    if record.get("phase") == "intent":
        tags["open"] = "yes"
    if record.get("intent") is not None:
        tags["intent"] = f"{record['intent']:09d}"
    return tags


def _parse(run) -> dict | None:
    tags, parts, i = run.data.tags, [], 0
    while f"record_{i}" in tags:
        parts.append(tags[f"record_{i}"])
        i += 1
    try:
        record = json.loads("".join(parts))
    except ValueError:
        return None
    record["_run_id"] = run.info.run_id
    return record


def _search(filter_string: str = "", max_results: int | None = None) -> list[dict]:
    """Records matching ``filter_string``, oldest first (unparseable runs are returned as None)."""
    c, out, token = store.client(), [], None
    exp = _experiment()
    if exp is None:  # read-only, before the first record
        return out
    while True:
        page = c.search_runs([exp], filter_string=filter_string, order_by=["tags.seq ASC"],
                             max_results=min(max_results or 50000, 50000), page_token=token)
        out.extend(_parse(run) for run in page)
        token = page.token
        if not token or (max_results and len(out) >= max_results):
            return out


def _by_seq(seq: int) -> dict | None:
    found = _search(f"tags.seq = '{seq:09d}'")
    return found[0] if found else None


def append(ws: Workspace, *, actor: str, action: str, tenant: str | None, frm: str | None,
           to: str | None, reason: str, details: dict | None = None, phase: str | None = None,
           intent: int | None = None) -> dict:
    """Append one record chained to the head, signed, then move both anchors; returns the record."""
    key = signing.ensure_key(ws, store.signing_key_setting())
    public = key.public_key()
    exp = _experiment()
    with lock(ws, "audit"):
        head = _remote_head(exp)
        last = _by_seq(head["count"]) if head["count"] else None
        if head["count"] and (last is None or last.get("hash") != head["hash"] or not signed_by(public, last)):
            raise UserError(f"the audit log's head (record {head['count']}) is not a record signed with the workspace "
                            "key: it was written outside Tailor; run `tailor audit verify`")
        # A writer killed after creating its record but before moving the head left a valid next
        # record: adopt it instead of forking the chain. One nobody signed is refused, not adopted.
        while (nxt := _by_seq(head["count"] + 1)) is not None and nxt.get("prev_hash") == head["hash"]:
            if not signed_by(public, nxt):
                raise UserError(f"audit record {nxt['seq']} (run {nxt['_run_id']}) is not signed with the workspace "
                                "key: it was written outside Tailor; run `tailor audit verify`")
            head = {"count": head["count"] + 1, "hash": nxt["hash"]}
        record = {"seq": head["count"] + 1, "at": now(), "actor": actor, "action": action, "tenant": tenant,
                  "from": None if frm is None else str(frm), "to": None if to is None else str(to),
                  "reason": reason, "details": details or {}, "prev_hash": head["hash"]}
        if phase:
            record["phase"] = phase
        if intent is not None:
            record["intent"] = int(intent)
        record["hash"] = record_hash(record)
        record["sig"] = signing.sign(key, _record_message(record["hash"]))
        c = store.client()
        run = c.create_run(exp, run_name=f"audit-{record['seq']:09d}-{action}", tags=_tags_of(record))
        c.set_terminated(run.info.run_id, "FINISHED")
        new_head = {"count": record["seq"], "hash": record["hash"]}
        c.set_experiment_tag(exp, "head", json.dumps(new_head))
        _write_local_head(ws, new_head, key)
    record["_run_id"] = run.info.run_id
    return record


def close_intent(record: dict) -> None:
    """Mark an intent done (the ``open`` tag is outside the hashed record)."""
    store.client().set_tag(record["_run_id"], "open", "no")


def open_intents(tenant: str | None, every_tenant: bool = False) -> list[dict]:
    """Intents not yet marked done (of ``tenant``, None = tailor-base; or of everyone)."""
    query = "tags.open = 'yes'" + ("" if every_tenant else f" AND tags.tenant = '{tenant or BASE_KEY}'")
    return [r for r in _search(query) if r]


def commit_of(intent_seq: int) -> dict | None:
    found = [r for r in _search(f"tags.intent = '{intent_seq:09d}'") if r]
    return found[0] if found else None


def all_records() -> list[dict | None]:
    return _search()


def records(ws: Workspace | None = None, tenant: str | None = None) -> list[dict]:
    """Every record (of one tenant), oldest first; unreadable ones are skipped (``verify`` names them)."""
    found = _search("" if tenant is None else f"tags.tenant = '{tenant}'")
    return [r for r in found if r]


def effective(recs: list[dict]) -> list[dict]:
    """What happened: events, and committed intents as one record each (at = the commit's time,
    ``to`` completed by the commit, e.g. the version a register created); aborted and open
    intents are left out. Ordered by commit."""
    intents = {r["seq"]: r for r in recs if r.get("phase") == "intent"}
    out = []
    for r in recs:
        if r.get("phase") == "commit":
            intent = intents.get(r.get("intent"))
            if intent is None or r.get("details", {}).get("outcome") == "aborted":
                continue
            out.append({**intent, "at": r["at"], "to": r.get("to", intent.get("to")),
                        "commit_seq": r["seq"], "phase": "committed"})
        elif r.get("phase") in (None, "event"):
            out.append(r)
    return out


def verify(ws: Workspace, reanchor: bool = False) -> dict:
    """Recompute the chain, check every record's signature, and compare the head with both anchors.

    A missing, unreadable, foreign or unsigned workspace anchor is a problem, never skipped; with
    ``reanchor`` (``audit verify --repair``) it is written again once the signed chain verifies.
    Returns {"ok", "records", "problems": [one line each], "head": {"count", "hash"}, "reanchored"}.
    """
    recs = all_records()
    problems: list[str] = []
    public, why = signing.verifying_key(ws, store.signing_key_setting())
    if recs and public is None:
        problems.append(f"cannot check who wrote the audit log: {why}")
    prev = GENESIS
    for i, record in enumerate(recs, start=1):
        if record is None:
            problems.append(f"record {i} is not readable JSON")
            break
        if record.get("seq") != i:
            problems.append(f"record at position {i} has seq {record.get('seq')}: a record was deleted, "
                            "inserted or moved")
            break
        if record.get("prev_hash") != prev:
            problems.append(f"record {i} does not follow record {i - 1}: the chain is broken")
            break
        stored = record.get("hash")
        if record_hash({k: v for k, v in record.items() if k != "_run_id"}) != stored:
            problems.append(f"record {i} was changed after it was written (hash mismatch)")
            break
        if public is not None and not signed_by(public, record):
            problems.append(f"record {i} ({record.get('action')} by {record.get('actor')}) is not signed with the "
                            "workspace key: written or re-chained outside Tailor")
            break
        prev = stored
    head = {"count": len(recs), "hash": prev}
    reanchored = False
    if not problems:
        problems += _check_anchor("registry anchor (experiment tag)", _remote_head(_experiment()), recs, head)
        local = _check_local(ws, public, recs, head)
        if local and reanchor and local[0][1] and not problems:
            _write_local_head(ws, head, signing.ensure_key(ws, store.signing_key_setting()))
            reanchored = True
        elif local:
            problems.append(local[0][0])
    return {"ok": not problems, "records": len(recs), "problems": problems, "head": head, "reanchored": reanchored}


def _check_local(ws: Workspace, public, recs: list, head: dict) -> list[tuple[str, bool]]:
    """[(problem, whether re-anchoring may fix it)] of the workspace anchor."""
    path = _anchor_file(ws)
    name = f"workspace anchor ({path.name})"
    fix = "; after checking nothing was removed, `tailor audit verify --repair` anchors the verified log again"
    if not path.exists():
        return [] if not recs else [(f"{name} is missing: deletions from the end of the log cannot be ruled "
                                     f"out{fix}", True)]
    local = _local_head(ws)
    if not isinstance(local, dict):
        return [(f"{name} is unreadable{fix}", True)]
    if local.get("store") != store.tracking_uri():
        return [(f"{name} belongs to another store ({local.get('store')!r}){fix}", True)]
    if public is not None and not signing.valid(public, _anchor_message(local), local.get("sig")):
        return [(f"{name} is not signed with the workspace key (written outside Tailor){fix}", True)]
    return [(p, False) for p in _check_anchor(name, local, recs, head)]


def _check_anchor(name: str, anchor: dict, recs: list, head: dict) -> list[str]:
    try:
        count = int(anchor.get("count", 0))
    except (TypeError, ValueError):
        return [f"{name} is unreadable"]
    if count > head["count"]:
        return [f"{name} says {count} record(s) but the log has {head['count']}: "
                "records were deleted from the end"]
    if count and recs[count - 1].get("hash") != anchor.get("hash"):
        return [f"{name}: record {count} differs from the anchored one: the log was rewritten"]
    return []


def served_at(ws: Workspace, tenant: str, at: str | datetime) -> str | None:
    """The champion version of ``tenant`` at time ``at``, replayed from approve/rollback records."""
    when = parse_time(at)
    version = None
    for record in effective(records(ws, tenant)):
        if record.get("action") in CHAMPION_ACTIONS and parse_time(record["at"]) <= when:
            version = record.get("to")
    return version
