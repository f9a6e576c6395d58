"""The audit log: a hash chain that exposes edited, deleted and reordered records, safe to append
from many writers, and replayable to answer "what served tenant X at time T"."""
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from registry import audit
from workspace.errors import UserError
from workspace.paths import Workspace


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path)


def _write(ws, n=4):
    return [audit.append(ws, actor="alice", action="approve", tenant="acme", frm=str(i) if i else None,
                         to=str(i + 1), reason=f"step {i}", details={"n": i}) for i in range(n)]


def _lines(ws):
    return ws.audit_log.read_text(encoding="utf-8").splitlines()


def test_records_are_chained_and_verify(ws):
    assert audit.verify(ws) == (True, 0, None)  # no log yet is a valid empty log
    recs = _write(ws)
    assert [r["seq"] for r in recs] == [1, 2, 3, 4]
    assert recs[0]["prev_hash"] == audit.GENESIS and recs[1]["prev_hash"] == recs[0]["hash"]
    assert set(recs[0]) == {"seq", "at", "actor", "action", "tenant", "from", "to", "reason", "details",
                            "prev_hash", "hash"}
    assert audit.verify(ws) == (True, 4, None)
    assert audit.records(ws, "acme") == recs and audit.records(ws, "other") == []


def test_an_edited_line_is_detected(ws):
    _write(ws)
    lines = _lines(ws)
    record = json.loads(lines[1])
    record["actor"] = "mallory"
    lines[1] = json.dumps(record, sort_keys=True)
    ws.audit_log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ok, n, problem = audit.verify(ws)
    assert not ok and n == 4 and "record 2 was changed" in problem


def test_an_edit_with_a_recomputed_hash_still_breaks_the_chain(ws):
    _write(ws)
    lines = _lines(ws)
    record = json.loads(lines[1])
    record["reason"] = "nothing to see"
    record["hash"] = audit.record_hash(record)
    lines[1] = json.dumps(record, sort_keys=True)
    ws.audit_log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ok, _, problem = audit.verify(ws)
    assert not ok and "record 3 does not follow record 2" in problem


def test_a_deleted_line_is_detected(ws):
    _write(ws)
    lines = _lines(ws)
    del lines[1]
    ws.audit_log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ok, n, problem = audit.verify(ws)
    assert not ok and n == 3 and "deleted" in problem


def test_reordered_lines_are_detected(ws):
    _write(ws)
    lines = _lines(ws)
    lines[1], lines[2] = lines[2], lines[1]
    ws.audit_log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert not audit.verify(ws)[0]


def test_a_garbled_last_line_stops_appending_instead_of_forking_the_chain(ws):
    _write(ws, 2)
    with open(ws.audit_log, "a", encoding="utf-8") as f:
        f.write("not json\n")
    assert audit.verify(ws)[2] == "line 3 is not an audit record"
    with pytest.raises(UserError, match="audit verify"):
        _write(ws, 1)


def test_concurrent_writers_keep_one_chain(ws):
    def writer(k):
        for i in range(15):
            audit.append(ws, actor=f"w{k}", action="register", tenant=f"t{k}", frm=None, to=str(i), reason="x")

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert audit.verify(ws) == (True, 90, None)


def test_served_at_replays_approvals_and_rollbacks(ws):
    def at(record):
        return datetime.fromisoformat(record["at"])

    register = audit.append(ws, actor="s", action="register", tenant="acme", frm=None, to="1", reason="r")
    a1 = audit.append(ws, actor="alice", action="approve", tenant="acme", frm=None, to="1", reason="ok")
    audit.append(ws, actor="bob", action="approve", tenant="other", frm=None, to="7", reason="ok")
    a2 = audit.append(ws, actor="alice", action="approve", tenant="acme", frm="1", to="2", reason="ok")
    rb = audit.append(ws, actor="ops", action="rollback", tenant="acme", frm="2", to="1", reason="bad")
    tick = timedelta(microseconds=1)
    assert audit.served_at(ws, "acme", at(register)) is None  # registered is not served
    assert audit.served_at(ws, "acme", at(a1)) == "1"
    assert audit.served_at(ws, "acme", at(a2) - tick) == "1"
    assert audit.served_at(ws, "acme", at(a2)) == "2"
    assert audit.served_at(ws, "acme", at(rb)) == "1"
    assert audit.served_at(ws, "acme", at(a1) - timedelta(days=1)) is None
    assert audit.served_at(ws, "other", datetime.now(timezone.utc)) == "7"
    naive_utc = at(a2).replace(tzinfo=None)  # a time without zone is read as UTC
    assert audit.served_at(ws, "acme", naive_utc) == "2"
    assert audit.served_at(ws, "acme", a2["at"]) == "2"  # the log's own ISO strings work too
    with pytest.raises(UserError, match="not a time"):
        audit.served_at(ws, "acme", "yesterday")
