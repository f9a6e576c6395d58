"""The audit chain lives in the MLflow backend: edits, deletions and reordering break the chain,
and deleting the last records is caught by the two head anchors; replay answers "what served when"."""
import json
from datetime import datetime, timedelta, timezone

import pytest

from registry.storage import store
from registry.trail import audit
from registry.trail.verify import chain, verify_all
from tests import governance as g
from workspace import signing
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
    through_mlflow = chain(ws)
    with g.read_only(ws, load_settings(ws.params_file)):
        assert chain(ws) == through_mlflow
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


def test_an_edit_with_a_recomputed_hash_is_caught_by_its_signature(ws):
    recs = _write(ws)
    edited = {k: v for k, v in recs[1].items() if k != "_run_id"}
    edited["reason"] = "nothing to see"
    edited["hash"] = audit.record_hash(edited)
    _rewrite(recs[1]["_run_id"], edited)
    assert "record 2 (approve by alice) is not signed with the workspace key" in verify(ws)["problems"][0]


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
        "workspace anchor (audit-head.json) says 4 record(s) but the log has 3: records were deleted from the end",
        "tenant acme's audit records after record 3 are missing: this workspace saw record 4 (deleted outside Tailor)"]


def test_a_rewritten_tail_is_caught_by_the_anchors(ws):
    recs = _write(ws, 3)
    # re-chain a forged last record: the chain verifies, the anchored head hash does not
    forged = {k: v for k, v in recs[-1].items() if k != "_run_id"}
    forged["reason"] = "forged"
    forged["hash"] = audit.record_hash(forged)
    _rewrite(recs[-1]["_run_id"], forged)
    assert verify(ws)["problems"] == ["record 3 (approve by alice) is not signed with the workspace key: "
                                      "written or re-chained outside Tailor"]
    # even someone holding the key (re-signing the rewritten record) is caught by the anchors
    forged["sig"] = signing.sign(signing.ensure_key(ws), audit._record_message(forged["hash"]))
    _rewrite(recs[-1]["_run_id"], forged)
    assert any("rewritten" in p for p in verify(ws)["problems"])


@pytest.mark.parametrize("sig", [None, "c2lnbmF0dXJl"])
def test_a_forged_append_is_named_and_refused(ws, sig):
    _write(ws, 2)
    g.forge_append(**({} if sig is None else {"sig": sig}))
    assert verify(ws)["problems"] == ["record 3 (approve by bob) is not signed with the workspace key: "
                                      "written or re-chained outside Tailor"]
    assert "record 3 (approve by bob) is not signed" in audit.check_scope("acme", audit.records(ws, "acme"))
    with pytest.raises(UserError, match=r"audit record 3 \(approve by bob\) is not signed with the workspace key"):
        _write(ws, 1)  # never chained onto


def test_an_unsigned_next_record_is_not_adopted(ws):
    _write(ws, 2)
    g.forge_append(move_head=False)  # looks like a writer killed before it moved the head
    with pytest.raises(UserError, match=r"audit record 3 \(approve by bob\) is not signed with the workspace key"):
        _write(ws, 1)


def test_a_record_signed_with_another_key_is_refused(ws, tmp_path):
    _write(ws, 1)
    other = g.fresh_workspace(tmp_path / "other")[0]
    stranger = signing.ensure_key(other)  # a key of its own, pinned in another workspace
    store.configure(ws, load_settings(ws.params_file))
    record = g.forge_append()
    _rewrite(_run_of(ws, 2), {**record, "sig": signing.sign(stranger, audit._record_message(record["hash"]))})
    assert "record 2 (approve by bob) is not signed" in verify(ws)["problems"][0]


def test_a_missing_unreadable_foreign_or_unsigned_anchor_is_reported_not_skipped(ws):
    recs = _write(ws, 2)
    anchor = ws.state_dir / "audit-head.json"
    good = anchor.read_text()
    anchor.unlink()
    assert verify(ws)["problems"] == [
        "workspace anchor (audit-head.json) is missing: deletions from the end of the log cannot be ruled out; "
        "after checking nothing was removed, `tailor audit verify --repair` anchors the verified log again"]
    anchor.write_text("{not json")
    assert "workspace anchor (audit-head.json) is unreadable" in verify(ws)["problems"][0]
    anchor.write_text(json.dumps({**json.loads(good), "store": "sqlite:////elsewhere/mlflow.db"}))
    assert "belongs to another store ('sqlite:////elsewhere/mlflow.db')" in verify(ws)["problems"][0]
    anchor.write_text(json.dumps({**json.loads(good), "count": 1, "hash": recs[0]["hash"]}))  # sig is for 2
    assert "workspace anchor (audit-head.json) is not signed" in verify(ws)["problems"][0]
    # --repair writes it again, signed, once the signed chain verifies
    repaired = verify_all(ws, repair=True)
    assert repaired["ok"] and repaired["repaired"] == [
        "workspace anchor written again at record 2 (the signed log verified)"]
    assert verify(ws)["ok"]


def test_the_key_is_private_outside_the_store_and_pinned(ws):
    _write(ws, 1)
    key = signing.key_path(ws)
    assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600
    assert not key.is_relative_to(ws.artifacts_dir) and key != ws.mlflow_db
    assert (ws.root / "audit-signing.pub").read_text().startswith("tailor-audit-ed25519 ")
    key.unlink()  # a clone without the team's key: it cannot sign, an auditor can still verify
    with pytest.raises(UserError, match="no audit signing key .* pins one"):
        _write(ws, 1)
    assert verify(ws)["ok"]
    (ws.root / "audit-signing.pub").unlink()
    assert "cannot check who wrote the audit log: no audit public key" in verify(ws)["problems"][0]


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
