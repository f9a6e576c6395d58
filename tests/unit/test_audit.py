"""The audit chain lives in the MLflow backend: edits, deletions and reordering break the chain,
and deleting the last records is caught by the two head anchors; replay answers "what served when"."""
import json
from datetime import datetime, timedelta, timezone

import pytest

from registry import audit, store
from tests import governance as g
from workspace.errors import UserError
from workspace.settings import load_settings


@pytest.fixture
def ws(tmp_path):
    return g.fresh_workspace(tmp_path / "ws")[0]


def _write(ws, n=4):
    return [audit.append(ws, actor="alice", action="approve", tenant="acme", frm=str(i) if i else None,
                         to=str(i + 1), reason=f"step {i}", details={"n": i}) for i in range(n)]


def _run_of(ws, seq):
    return next(r["_run_id"] for r in audit.records(ws) if r["seq"] == seq)


def verify(ws):
    """``audit.verify`` through MLflow's client and through the read-only sqlite view that
    ``tailor audit verify`` uses: both must see the same chain, problems and head."""
    through_mlflow = audit.verify(ws)
    with g.read_only(ws, load_settings(ws.params_file)):
        assert audit.verify(ws) == through_mlflow
    return through_mlflow


def _rewrite(run_id, record):
    text = json.dumps({k: v for k, v in record.items() if k != "_run_id"}, sort_keys=True)
    store.client().set_tag(run_id, "record_0", text)


def test_records_are_chained_and_verify(ws):
    assert verify(ws)["ok"] and verify(ws)["records"] == 0
    recs = _write(ws)
    assert [r["seq"] for r in recs] == [1, 2, 3, 4]
    assert recs[0]["prev_hash"] == audit.GENESIS and recs[1]["prev_hash"] == recs[0]["hash"]
    result = verify(ws)
    assert result["ok"] and result["records"] == 4 and result["head"]["hash"] == recs[-1]["hash"]
    assert [r["seq"] for r in audit.records(ws, "acme")] == [1, 2, 3, 4] and audit.records(ws, "other") == []
    # the chain is in the MLflow store, not in a workspace file
    assert not (ws.state_dir / "audit.jsonl").exists()
    exp = store.client().get_experiment_by_name(audit.EXPERIMENT)
    assert len(store.client().search_runs([exp.experiment_id])) == 4


def test_an_edited_record_is_detected(ws):
    recs = _write(ws)
    edited = {**recs[1], "actor": "mallory"}
    _rewrite(recs[1]["_run_id"], edited)
    result = verify(ws)
    assert not result["ok"] and "record 2 was changed" in result["problems"][0]


def test_an_edit_with_a_recomputed_hash_still_breaks_the_chain(ws):
    recs = _write(ws)
    edited = {k: v for k, v in recs[1].items() if k != "_run_id"}
    edited["reason"] = "nothing to see"
    edited["hash"] = audit.record_hash(edited)
    _rewrite(recs[1]["_run_id"], edited)
    assert "record 3 does not follow record 2" in verify(ws)["problems"][0]


def test_a_deleted_record_is_detected(ws):
    recs = _write(ws)
    store.client().delete_run(recs[1]["_run_id"])
    result = verify(ws)
    assert not result["ok"] and "deleted" in result["problems"][0]


def test_deleting_the_last_records_is_caught_by_the_anchors(ws):
    recs = _write(ws)
    store.client().delete_run(recs[-1]["_run_id"])
    result = verify(ws)
    assert not result["ok"] and "deleted from the end" in result["problems"][0]
    # moving the registry's anchor back too still leaves the workspace's anchor
    exp = store.client().get_experiment_by_name(audit.EXPERIMENT).experiment_id
    store.client().set_experiment_tag(exp, "head", json.dumps({"count": 3, "hash": recs[2]["hash"]}))
    result = verify(ws)
    assert not result["ok"] and result["problems"] == [
        "workspace anchor (audit-head.json) says 4 record(s) but the log has 3: records were deleted from the end"]


def test_a_rewritten_tail_is_caught_by_the_anchors(ws):
    recs = _write(ws, 3)
    # re-chain a forged last record: the chain verifies, the anchored head hash does not
    forged = {k: v for k, v in recs[-1].items() if k != "_run_id"}
    forged["reason"] = "forged"
    forged["hash"] = audit.record_hash(forged)
    _rewrite(recs[-1]["_run_id"], forged)
    assert any("rewritten" in p for p in verify(ws)["problems"])


def test_a_writer_killed_before_moving_the_head_is_adopted_not_forked(ws):
    _write(ws, 2)
    exp = store.client().get_experiment_by_name(audit.EXPERIMENT).experiment_id
    head = json.loads(store.client().get_experiment(exp).tags["head"])
    _write(ws, 1)
    store.client().set_experiment_tag(exp, "head", json.dumps(head))  # as if killed before the head moved
    _write(ws, 1)
    result = verify(ws)
    assert result["ok"] and result["records"] == 4


def test_served_at_replays_committed_approvals_and_rollbacks(ws):
    def at(record):
        return datetime.fromisoformat(record["at"].replace("Z", "+00:00"))

    register = audit.append(ws, actor="s", action="register", tenant="acme", frm=None, to="1", reason="r")
    a1 = audit.append(ws, actor="alice", action="approve", tenant="acme", frm=None, to="1", reason="ok")
    audit.append(ws, actor="bob", action="approve", tenant="other", frm=None, to="7", reason="ok")
    a2 = audit.append(ws, actor="alice", action="approve", tenant="acme", frm="1", to="2", reason="ok")
    rb = audit.append(ws, actor="ops", action="rollback", tenant="acme", frm="2", to="1", reason="bad")
    # an intent that never committed moved nothing
    audit.append(ws, actor="eve", action="approve", tenant="acme", frm="1", to="3", reason="x", phase="intent")
    tick = timedelta(microseconds=1)
    assert audit.served_at(ws, "acme", at(register)) is None
    assert audit.served_at(ws, "acme", at(a1)) == "1"
    assert audit.served_at(ws, "acme", at(a2) - tick) == "1"
    assert audit.served_at(ws, "acme", at(a2)) == "2"
    assert audit.served_at(ws, "acme", at(rb)) == "1"
    assert audit.served_at(ws, "acme", datetime.now(timezone.utc)) == "1"
    assert audit.served_at(ws, "other", datetime.now(timezone.utc)) == "7"
    assert audit.served_at(ws, "acme", at(a2).replace(tzinfo=None)) == "2"
    with pytest.raises(UserError, match="not a time"):
        audit.served_at(ws, "acme", "yesterday")
