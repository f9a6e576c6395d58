"""The audit log: one hash-chained record per state change, kept in the MLflow backend beside the
models it describes (experiment ``tailor-audit``, one run per record), so it travels with a shared
registry instead of living on one machine.

Each record's ``hash`` is the sha256 of its canonical JSON (sorted keys, without ``hash``), and
``prev_hash`` is the hash of the record before it: editing, deleting or reordering a record breaks
the chain. Each record also names the previous record of its own *scope* (``scope_prev``: the
tenant, ``_base`` for tailor-base, ``_keys`` for key rotations), so a tenant's history is a chain
of its own that serving checks without reading the others'. The chain proves order, not
authorship, so every record's hash is signed with the workspace key (``workspace.signing``,
``keys``), which a writer of the tracking store does not hold.

What is decided from the log is decided from the signed records alone. The run tags (``seq``,
``tenant``, ``action``, ``phase``) are an index to find records by; a record found through them
is checked (its content, hash and signature) before it is used, and one the index hides is
noticed by the chain (a gap) or by what this workspace saw (``anchor``: the head only moves
forward, each scope's mark too). Which intents are open is carried in every record (``open``),
so recovery reads it from the signed head, never from a tag anyone could set.

A state change writes two records (``transitions``): an ``intent`` holding the plan, then a
``commit`` naming the intent. An intent without a commit is open work the next command finishes.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

from registry.storage import store
from registry.trail import anchor, keys
from registry.trail.index import (BASE_KEY, EXPERIMENT, GENESIS, all_records, by_seq, descending,  # noqa: F401
                                  experiment, records, records_after, remote_head, scope_of, search,
                                  tags_of as _tags_of)
from workspace import signing
from workspace.errors import UserError
from workspace.paths import Workspace

CHAMPION_ACTIONS = ("approve", "rollback")  # the records that move a tenant's @champion


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
    body = {k: v for k, v in record.items() if k not in ("hash", "sig", "_run_id")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def lock(ws: Workspace, key: str, timeout: float = 120.0):
    """A lock across processes (``key``: "audit", a tenant id, or BASE_KEY): see ``registry.storage.locks``."""
    from registry.storage.locks import lock as make

    return make(ws, key, timeout)


_record_message = keys.record_message


def scope_name(scope: str) -> str:
    return {BASE_KEY: "tailor-base", keys.SCOPE: "the signing keys"}.get(scope, f"tenant {scope}")


def hash_ok(record: dict) -> bool:
    return isinstance(record, dict) and record_hash(record) == record.get("hash")


def keyring(ws: Workspace | None) -> keys.Keyring:
    """The keys that check the log: the pinned public key and those it replaced (``keys``)."""
    public, why = signing.verifying_key(ws or _workspace_of_store(), store.signing_key_setting())
    if public is None:
        return keys.Keyring([], f"cannot check who wrote the audit log: {why}")
    rotations = [r for r in search(f"tags.action = '{keys.ROTATE}'") if r and scope_of(r) == keys.SCOPE]
    return keys.build(signing.raw_public(public), rotations, hash_ok)


def trusted(record, ring: keys.Keyring) -> bool:
    return isinstance(record, dict) and hash_ok(record) and ring.signed(record)


def not_signed(record: dict) -> str:
    return (f"audit record {record.get('seq')} ({record.get('action')} by {record.get('actor')}) is not signed "
            "with the workspace key: written or re-chained outside Tailor")


def _workspace_of_store() -> Workspace | None:
    """Without a configured workspace (a pyfunc under ``mlflow models serve``): the workspace whose
    embedded store this is (``<ws>/.tailor/mlflow.db``), else None (``TAILOR_HOME`` or the current
    folder)."""
    from registry.storage.reader import sqlite_path

    db = sqlite_path(store.tracking_uri())
    if db is not None and db.parent.name == ".tailor" and (db.parent.parent / "params.yaml").is_file():
        return Workspace(db.parent.parent.resolve())
    return None


def workspace() -> Workspace | None:
    """The workspace whose anchor and marks the checks read: the configured one, else the one whose
    embedded store this is, else ``TAILOR_HOME`` or the current folder when it is a workspace (a
    pyfunc under ``mlflow models serve``)."""
    found = store.workspace() or _workspace_of_store()
    if found is None and Workspace.find().params_file.is_file():
        found = Workspace.find()
    return found


def link_problem(prev: dict | None, record: dict | None, ring: keys.Keyring) -> str | None:
    """Why ``record`` is not the signed record that follows ``prev`` (None: the start), or None."""
    want = (prev["seq"] if prev else 0) + 1
    if record is None:
        return f"record {want} is not readable JSON"
    seq = record["seq"]
    if seq > want:
        gone = f"record {want} is" if seq == want + 1 else f"records {want} to {seq - 1} are"
        return f"{gone} missing from the log (sequence numbers jump from {want - 1} to {seq}): deleted outside Tailor"
    if seq < want:
        return f"record {seq} appears again after record {want - 1}: a record was copied or moved"
    if record.get("prev_hash") != (prev["hash"] if prev else GENESIS):
        return f"record {seq} does not follow record {seq - 1}: the chain is broken"
    if not hash_ok(record):
        return f"record {seq} was changed after it was written (hash mismatch)"
    if not ring.signed(record):
        return not_signed(record).removeprefix("audit ")
    return None


def checked_tail(ws: Workspace, ring: keys.Keyring) -> dict | None:
    """The head record of the log, for a writer: every record after this workspace's anchor must
    be there, chained and signed, and the anchored record unchanged; with no anchor this workspace
    trusts (a fresh clone, the first record, a lost anchor), the whole chain is checked once."""
    local, _ = anchor.load(ws, ring, store.tracking_uri())
    start = local["count"] if local else 0
    recs, boundary = records_after(start, remote_head(experiment())["count"] - start)
    prev = None
    if start:
        if boundary is None or boundary.get("hash") != local["hash"]:
            raise UserError(f"the audit log no longer holds record {start} as this workspace's anchor saw it: "
                            "records were deleted or rewritten outside Tailor; run `tailor audit verify`")
        prev = boundary
    for record in recs:
        problem = link_problem(prev, record, ring)
        if problem:
            raise UserError(f"audit {problem}; run `tailor audit verify`")
        prev = record
    return prev


def signed_tail(ws: Workspace | None, ring: keys.Keyring) -> dict | None:
    """The newest record of the signed chain, for a reader: from the newer of the registry's head
    tag and this workspace's anchor, forward while the next record is chained and signed. Acting
    on it goes through ``append``, which checks the whole way from the anchor."""
    exp = experiment()
    if exp is None:
        return None
    hint = max(remote_head(exp)["count"], anchor.peek_count(ws) if ws else 0)
    record = by_seq(hint) if hint else None
    if not trusted(record, ring):
        record = next((r for r in descending() if trusted(r, ring)), None)
    while record is not None:
        nxt = by_seq(record["seq"] + 1)
        if nxt is None or nxt.get("prev_hash") != record["hash"] or not trusted(nxt, ring):
            break
        record = nxt
    return record


def next_open(before: dict, record: dict) -> dict[str, list[int]]:
    """The open intents after ``record``: an intent opens, its commit closes it."""
    out = {scope: list(seqs) for scope, seqs in before.items()}
    if record.get("phase") == "intent":
        out.setdefault(scope_of(record), []).append(record["seq"])
    if record.get("phase") == "commit":
        out = {scope: [s for s in seqs if s != record.get("intent")] for scope, seqs in out.items()}
    return {scope: sorted(seqs) for scope, seqs in sorted(out.items()) if seqs}


_LEGACY: dict[str, dict] = {}


def open_of(head: dict | None, ring: keys.Keyring) -> dict[str, list[int]]:
    """The open intents as of ``head`` (a signed record): carried in it, or, for a log written
    before records carried them, derived once from every signed record up to it."""
    if head is None:
        return {}
    if isinstance(head.get("open"), dict):
        return head["open"]
    if head["hash"] not in _LEGACY:
        state: dict = {}
        for record in sorted((r for r in search() if trusted(r, ring) and r["seq"] <= head["seq"]),
                             key=lambda r: r["seq"]):
            state = next_open(state, record)
        _LEGACY.clear()
        _LEGACY[head["hash"]] = state
    return _LEGACY[head["hash"]]


def scope_problem(ws: Workspace | None, scope: str, recs: list[dict], ring: keys.Keyring) -> str | None:
    """Why ``scope``'s records ``recs`` (as the index found them) may not be trusted, or None:
    a record not signed, a record its successor names missing (``scope_prev``), or records ending
    before the newest one this workspace saw of the scope (its mark)."""
    if recs and not ring.spans:
        return ring.problem
    name, prev = scope_name(scope), None
    for record in recs:
        if not trusted(record, ring):
            return not_signed(record)
        if "scope_prev" in record:
            have = [prev["seq"], prev["hash"]] if prev else None
            want = record["scope_prev"]
            if want != have:
                if isinstance(want, list) and want and (prev is None or prev["seq"] < want[0]):
                    return (f"audit record {want[0]} of {name} is missing (record {record['seq']} follows it): "
                            "deleted outside Tailor")
                return (f"audit record {record['seq']} of {name} does not follow record "
                        f"{prev['seq'] if prev else 'none'}: the log was rewritten outside Tailor")
        prev = record
    seen = anchor.mark(ws, scope)
    if seen is not None:
        if prev is None or prev["seq"] < seen["seq"]:
            after = f"after record {prev['seq']}" if prev else "all"
            return (f"{name}'s audit records {after} are missing: this workspace saw record {seen['seq']} "
                    "(deleted outside Tailor)")
        same = next((r for r in recs if r["seq"] == seen["seq"]), None)
        if same is None:
            return f"audit record {seen['seq']} of {name}, which this workspace saw, is missing (deleted outside Tailor)"
        if same["hash"] != seen.get("hash"):
            return f"audit record {seen['seq']} of {name} is not the one this workspace saw (rewritten outside Tailor)"
    return None


def check_scope(scope: str, recs: list[dict], ring: keys.Keyring | None = None) -> str | None:
    """``scope_problem`` for a reader (serving): on success the scope's mark moves forward to its
    newest record, so this workspace notices if that record is deleted later."""
    ws = workspace()
    ring = ring or keyring(ws)
    problem = scope_problem(ws, scope, recs, ring)
    if problem is None and recs:
        anchor.advance_mark(ws, scope, recs[-1]["seq"], recs[-1]["hash"])
    return problem


def trust_root_problems(ws: Workspace, setting: str) -> list[str]:
    """What differs between the trust root this workspace uses (the pinned key, the
    ``stores.signing_key`` path) and the one its anchor pins: a change made outside ``rotate-key``."""
    data = anchor._read_json(anchor.anchor_file(ws))
    if not isinstance(data, dict) or "key" not in data:
        return []
    out = []
    try:
        pinned = signing.pinned_public(ws)
    except UserError as exc:
        return [str(exc)]
    if pinned is not None and keys.fingerprint(pinned) != data.get("key"):
        out.append(f"{signing.PUBLIC_FILE} (key {keys.short(keys.fingerprint(pinned))}) is not the key the workspace "
                   f"anchor pins ({keys.short(data.get('key'))}): a key changes only by `tailor audit rotate-key`")
    if signing.key_path(ws, setting) != signing.key_path(ws, str(data.get("key_path") or "")):
        out.append(f"stores.signing_key is {setting or signing.DEFAULT_KEY!r} but the workspace anchor pins "
                   f"{data.get('key_path')!r}: the key's path changes only by `tailor audit rotate-key`")
    return out


def append(ws: Workspace, *, actor: str, action: str, tenant: str | None, frm: str | None,
           to: str | None, reason: str, details: dict | None = None, phase: str | None = None,
           intent: int | None = None, scope: str | None = None) -> dict:
    """Append one record chained to the head (and to its scope's last record), signed, then move
    the anchors forward; returns the record."""
    setting = store.signing_key_setting()
    key = signing.ensure_key(ws, setting)
    exp = experiment()
    with lock(ws, "audit"):
        root = trust_root_problems(ws, setting)
        if root:
            raise UserError(f"{root[0]}; run `tailor audit verify`")
        ring = keyring(ws)
        head = checked_tail(ws, ring)
        seq = (head["seq"] if head else 0) + 1
        if ring.key_at(seq) != signing.raw_public(key):
            raise UserError(ring.problem or f"the signing key may not sign audit record {seq}: run `tailor audit verify`")
        record = {"seq": seq, "at": now(), "actor": actor, "action": action, "tenant": tenant,
                  "from": None if frm is None else str(frm), "to": None if to is None else str(to),
                  "reason": reason, "details": details or {}, "prev_hash": head["hash"] if head else GENESIS}
        if phase:
            record["phase"] = phase
        if intent is not None:
            record["intent"] = int(intent)
        if scope and scope != (tenant or BASE_KEY):
            record["scope"] = scope
        own = records(ws, scope_of(record))
        problem = scope_problem(ws, scope_of(record), own, ring)
        if problem:
            raise UserError(f"{problem}; run `tailor audit verify`")
        record["scope_prev"] = [own[-1]["seq"], own[-1]["hash"]] if own else None
        record["open"] = next_open(open_of(head, ring), record)
        record["hash"] = record_hash(record)
        record["sig"] = signing.sign(key, _record_message(record["hash"]))
        c = store.client()
        run = c.create_run(exp, run_name=f"audit-{seq:09d}-{action}", tags=_tags_of(record))
        c.set_terminated(run.info.run_id, "FINISHED")
        new_head = {"count": seq, "hash": record["hash"]}
        c.set_experiment_tag(exp, "head", json.dumps(new_head))
        anchor.write(ws, new_head, key, store.tracking_uri(), setting or signing.DEFAULT_KEY)
        anchor.advance_mark(ws, scope_of(record), seq, record["hash"], strict=True)
    record["_run_id"] = run.info.run_id
    return record


def open_intents(tenant: str | None, every_tenant: bool = False) -> list[dict]:
    """Intents not yet committed (of ``tenant``, None = tailor-base; or of everyone), as the
    signed head of the log says: never from a tag."""
    ws = workspace()
    ring = keyring(ws)
    state = open_of(signed_tail(ws, ring), ring)
    wanted = sorted(s for scope, seqs in state.items() if every_tenant or scope == (tenant or BASE_KEY)
                    for s in seqs)
    out = []
    for seq in wanted:
        record = by_seq(seq)
        if not trusted(record, ring) or record.get("phase") != "intent":
            raise UserError(f"audit record {seq}, a transition the log says is under way, is missing or not signed: "
                            "run `tailor audit verify`")
        out.append(record)
    return out


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


def served_at(ws: Workspace, tenant: str, at: str | datetime) -> str | None:
    """The champion version of ``tenant`` at time ``at``, replayed from approve/rollback records."""
    when = parse_time(at)
    version = None
    for record in effective(records(ws, tenant)):
        if record.get("action") in CHAMPION_ACTIONS and parse_time(record["at"]) <= when:
            version = record.get("to")
    return version
