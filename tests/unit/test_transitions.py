"""Governance that holds: plans are pure, approvals serialise across processes, a process killed
at any step leaves the old or the new state and the next command (or --repair) completes it."""
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from registry.artifacts import candidates
from registry.review import approval
from registry.storage import store
from registry.trail import audit, identity, transitions
from registry.trail.verify import chain, verify_all
from tests import governance as g
from workspace.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gov(tmp_path):
    ws, settings = g.fresh_workspace(tmp_path / "ws")
    base, base_dir = g.make_base(ws)
    return {"ws": ws, "settings": settings, "base": base, "base_dir": base_dir}


def reg(gov, tenant, **kw):
    return g.register(gov["ws"], gov["base"], gov["base_dir"], tenant, **kw)


def champion(tenant):
    mv = store.alias_version(f"tailor-tenant-{tenant}", "champion")
    return None if mv is None else str(mv.version)


def status(tenant, version):
    return store.client().get_model_version(f"tailor-tenant-{tenant}", version).tags.get("status")


def spawn(gov, action, tenant, version, who, go=None, fault=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TAILOR_FAULT", None)
    if fault:
        env["TAILOR_FAULT"] = fault
    argv = [sys.executable, "-m", "tests.governance", str(gov["ws"].root), action, tenant, version, who]
    return subprocess.Popen(argv + ([str(go)] if go else []), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- pure plans -----------------------------------------------------------------------------------

class MV:
    def __init__(self, version, **tags):
        self.name, self.version, self.tags = "tailor-tenant-t", version, {"tenant": "t", **tags}


def test_approve_plan_is_data_and_refuses_before_anything_is_written(settings):
    mv = MV("2", status="pending", requested_by="bob", validation="passed", isolation="passed",
            query_accuracy="0.9", baseline_accuracy="0.8")
    plan = approval.plan_approve(mv, MV("1", query_accuracy="0.85"), settings, "alice", "ok", "", [])
    assert (plan.action, plan.frm, plan.to, plan.actor) == ("approve", "1", "2", "alice")
    assert plan.aliases == [("champion", "2", None), ("candidate", None, "2")]
    assert plan.tags["2"]["status"] == "approved" and set(plan.descriptions) == {"1", "2"}
    assert transitions.Plan.from_json(plan.to_json()) == plan  # the intent record replays exactly
    with pytest.raises(UserError, match="four-eyes"):
        approval.plan_approve(mv, None, settings, "  BOB ", "ok", "", [])
    with pytest.raises(UserError, match="fail isolation"):
        approval.plan_approve(mv, None, settings, "alice", "ok", "", ["delta bytes differ"])
    with pytest.raises(UserError, match="already approved"):
        approval.plan_approve(MV("2", status="approved"), None, settings, "alice", "ok", "", [])


def test_identities_are_normalised_and_a_service_may_not_approve(monkeypatch):
    assert identity.normalise("  Alice\u00a0 SMITH ") == "alice smith"
    assert identity.same_person("ALICE", " alice") and not identity.same_person("", "")
    with pytest.raises(UserError, match="service identity"):
        identity.require_person("Service:Scheduler", "approve")
    monkeypatch.setenv("TAILOR_USER", "Carol")
    assert identity.resolve(None, "--reviewer") == "carol" == identity.resolve(" CAROL", "--reviewer")
    with pytest.raises(UserError, match="is not you"):
        identity.resolve("dave", "--reviewer")
    assert identity.may_rollback_alone("ops", "*") and not identity.may_rollback_alone("service:x", "*")
    assert identity.may_rollback_alone("Ops", "ops,lead") and not identity.may_rollback_alone("bob", "ops")


def test_the_scheduler_requests_but_cannot_approve(gov):
    v = reg(gov, "svc")
    with pytest.raises(UserError, match="service identity"):
        approval.approve(gov["ws"], gov["settings"], "svc", v, "service:scheduler", "ok")
    assert status("svc", v) == "pending"


def test_rollback_by_someone_not_allowed_alone_needs_a_second_person(gov):
    ws, settings = gov["ws"], gov["settings"].replace("gates", rollback_alone="ops-lead")
    v1, v2 = reg(gov, "rb2", seed=1), None
    approval.approve(ws, settings, "rb2", v1, "alice", "ok")
    v2 = reg(gov, "rb2", seed=2)
    approval.approve(ws, settings, "rb2", v2, "alice", "ok")
    first = approval.rollback(ws, settings, "rb2", "bob", "complaints")
    assert first["action"] == "request-rollback" and champion("rb2") == v2
    with pytest.raises(UserError, match="another person"):
        approval.rollback(ws, settings, "rb2", " BOB", "again")
    with pytest.raises(UserError, match="service identity"):
        approval.rollback(ws, settings, "rb2", "service:scheduler", "x")
    done = approval.rollback(ws, settings, "rb2", "carol", "confirmed")
    assert done["action"] == "rollback" and champion("rb2") == v1
    assert done["details"]["requested_by"] == "bob"
    last = audit.effective(audit.records(ws, "rb2"))[-1]
    assert (last["action"], last["actor"]) == ("rollback", "carol")
    assert verify_all(ws)["ok"]


# --- concurrency across processes -----------------------------------------------------------------

def test_two_processes_approving_two_candidates_leave_one_champion_and_one_history(gov, tmp_path):
    v1, v2 = reg(gov, "race", seed=1), reg(gov, "race", seed=2)
    go = tmp_path / "go"
    procs = [spawn(gov, "approve", "race", v, "alice", go) for v in (v1, v2)]
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    moves = [r for r in audit.effective(audit.records(gov["ws"], "race")) if r["action"] == "approve"]
    assert len(moves) == 2 and moves[0]["from"] is None and moves[1]["from"] == moves[0]["to"]
    assert champion("race") == moves[1]["to"]  # exactly one champion: the last approval's
    assert {status("race", v1), status("race", v2)} == {"approved"}
    assert verify_all(gov["ws"])["ok"]


def test_approve_and_reject_of_one_version_at_once_one_wins(gov, tmp_path):
    v = reg(gov, "duel")
    go = tmp_path / "go"
    procs = [spawn(gov, "approve", "duel", v, "alice", go), spawn(gov, "reject", "duel", v, "bob", go)]
    go.touch()
    for p in procs:
        p.communicate(timeout=120)
    assert sorted(p.returncode for p in procs) == [0, 2]
    final = status("duel", v)
    assert (final == "approved") == (champion("duel") == v)  # never champion *and* rejected
    assert verify_all(gov["ws"])["ok"]


def test_threads_appending_keep_one_chain(gov):
    before = chain(gov["ws"])["records"]

    def writer(k):
        for i in range(5):
            audit.append(gov["ws"], actor=f"w{k}", action="note", tenant=f"t{k}", frm=None, to=str(i), reason="x")

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = chain(gov["ws"])
    assert result["ok"] and result["records"] == before + 20


# --- crashes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("point", [p for p in transitions.POINTS if p != "after-create"])
def test_a_process_killed_at_any_step_is_completed_by_repair(gov, point):
    v1 = reg(gov, "crash", seed=1)
    approval.approve(gov["ws"], gov["settings"], "crash", v1, "alice", "first")
    v2 = reg(gov, "crash", seed=2)
    proc = spawn(gov, "approve", "crash", v2, "alice", fault=f"approve:{point}")
    proc.communicate(timeout=120)
    assert proc.returncode == -9  # SIGKILL: no cleanup ran
    before = champion("crash")
    assert before in (v1, v2)  # the old state, or the new one: never no champion
    check = verify_all(gov["ws"])
    if point != "after-commit":
        assert not check["ok"] and any("interrupted" in p for p in check["problems"])
    repaired = verify_all(gov["ws"], repair=True)
    assert repaired["ok"], repaired["problems"]
    assert champion("crash") == v2 and status("crash", v2) == "approved"
    approvals = [r for r in audit.effective(audit.records(gov["ws"], "crash"))
                 if r["action"] == "approve" and r["to"] == v2]
    assert len(approvals) == 1 and approvals[0]["from"] == v1


def test_the_next_command_completes_an_interrupted_approval(gov):
    v1 = reg(gov, "next", seed=1)
    proc = spawn(gov, "approve", "next", v1, "alice", fault="approve:after-tags")
    proc.communicate(timeout=120)
    assert champion("next") is None and status("next", v1) == "approved"  # half applied
    v2 = reg(gov, "next", seed=2)  # the next command on this tenant finishes the approval first
    assert champion("next") == v1
    assert [r["action"] for r in audit.effective(audit.records(gov["ws"], "next"))] == \
        ["register", "approve", "register"]
    assert v2 != v1 and verify_all(gov["ws"])["ok"]


def test_predict_reading_the_store_read_only_finishes_an_interrupted_approval_first(gov):
    """`tailor predict` reads through the sqlite view; open work makes it switch to MLflow's client,
    finish the transition, and serve the champion the approval meant."""
    from registry.artifacts import serving

    v1 = reg(gov, "pnext", seed=1)
    proc = spawn(gov, "approve", "pnext", v1, "alice", fault="approve:after-tags")
    proc.communicate(timeout=120)
    assert champion("pnext") is None and status("pnext", v1) == "approved"  # half applied
    with g.read_only(gov["ws"], gov["settings"]):
        version, _ = serving.champion("pnext")
    assert version == v1 and champion("pnext") == v1 and verify_all(gov["ws"])["ok"]


def test_a_register_killed_after_creating_the_version_is_completed_not_duplicated(gov, monkeypatch):
    delta = g.make_delta(gov["ws"], gov["base"], "reg-crash")
    kw = dict(base=gov["base"], validation=g.PASSED, requested_by="service:scheduler")
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r});"
            "from tests import governance as g; from registry.storage import store; from registry.artifacts import candidates;"
            "from workspace.paths import Workspace; from workspace.settings import Settings;"
            f"ws = Workspace(__import__('pathlib').Path({str(gov['ws'].root)!r})); store.configure(ws, Settings());"
            "base = __import__('registry.artifacts.base_model', fromlist=['x']).get_base();"
            f"candidates.register_candidate(ws, 'reg-crash', {str(delta)!r}, {str(gov['base_dir'])!r}, base=base,"
            " validation=g.PASSED, requested_by='service:scheduler')")
    env = {**os.environ, "TAILOR_FAULT": "register:after-create"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert store.alias_version("tailor-tenant-reg-crash", "candidate") is None  # not yet a candidate
    version = candidates.register_candidate(gov["ws"], "reg-crash", delta, gov["base_dir"], **kw)
    assert store.alias_version("tailor-tenant-reg-crash", "candidate").version == int(version)
    assert len(store.versions("tailor-tenant-reg-crash")) == 1
    assert verify_all(gov["ws"])["ok"]


# --- the database lock used with a tracking server -------------------------------------------------

@pytest.fixture
def gov_registry_lock(tmp_path):
    settings = g.tiny_settings_with(stores={"lock": "registry"})
    ws, settings = g.fresh_workspace(tmp_path / "ws", settings)
    (ws.root / "params.yaml").write_text("stores:\n  lock: registry\n", encoding="utf-8")  # the workers' too
    base, base_dir = g.make_base(ws)
    return {"ws": ws, "settings": settings, "base": base, "base_dir": base_dir}


def test_the_registry_lock_serialises_two_processes_and_leaves_no_row(gov_registry_lock, tmp_path):
    gov = gov_registry_lock
    assert store.lock_kind() == "registry"
    v1, v2 = reg(gov, "dbl", seed=1), reg(gov, "dbl", seed=2)
    go = tmp_path / "go"
    procs = [spawn(gov, "approve", "dbl", v, "alice", go) for v in (v1, v2)]
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    moves = [r for r in audit.effective(audit.records(gov["ws"], "dbl")) if r["action"] == "approve"]
    assert moves[1]["from"] == moves[0]["to"] and champion("dbl") == moves[1]["to"]
    assert not store.registered_models("tailor-lock-%")  # every lock was released
    assert not (gov["ws"].state_dir / "locks" / "dbl.lock").exists()  # and no file lock was used
    assert verify_all(gov["ws"])["ok"]


def test_a_registry_lock_left_by_a_dead_process_is_taken_over_and_a_live_one_waits(gov_registry_lock):
    import time as clock

    from registry.storage.locks import RegistryLock

    gov = gov_registry_lock
    v = reg(gov, "stale")
    store.client().create_registered_model("tailor-lock-stale", tags={"owner": "dead:1:x", "since": str(clock.time() - 1000)})
    approval.approve(gov["ws"], gov["settings"], "stale", v, "alice", "ok")  # took the stale lock over
    assert champion("stale") == v and not store.registered_models("tailor-lock-%")
    with RegistryLock("busy"):
        with pytest.raises(UserError, match="busy: another transition holds its lock"):
            with RegistryLock("busy", timeout=0.3):
                pass
    assert not store.registered_models("tailor-lock-%")


def test_audit_verify_waits_for_a_registration_under_way_instead_of_calling_it_interrupted(gov, monkeypatch):
    """Two commands at once: `audit verify` while another command is between a registration's
    intent and its commit sees an open intent and a version without a register record; it waits
    for the live writer's lock and then finds the log and registry in agreement."""
    import time

    from registry.trail import transitions
    from registry.trail.verify import verify_all

    real, started = transitions.apply, threading.Event()

    def slow_apply(plan):
        started.set()
        time.sleep(3)
        return real(plan)

    monkeypatch.setattr(transitions, "apply", slow_apply)
    writer = threading.Thread(target=reg, args=(gov, "busy"), kwargs={"seed": 1})
    writer.start()
    assert started.wait(60)
    result = verify_all(gov["ws"])
    writer.join()
    assert result["ok"], result["problems"]
    assert champion("busy") is None and status("busy", "1") == "pending"
