"""Governance from the CLI: review list shows gates and the champion, audit verify names drift
and --repair finishes interrupted work, the auditor's export covers every tenant down to the
data the base was trained on, users are added with hashed passwords."""
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from registry.review import approval
from registry.storage import store
from registry.trail import audit
from tailor import cli
from tailor.web import users
from tests import governance as g

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gov(tmp_path, monkeypatch):
    ws, settings = g.fresh_workspace(tmp_path / "ws")
    base, base_dir = g.make_base(ws)
    monkeypatch.setenv("TAILOR_USER", "alice")
    return {"ws": ws, "settings": settings, "base": base, "base_dir": base_dir}


def run(ws, *argv, capsys):
    capsys.readouterr()
    code = cli.main(["--workspace", str(ws.root), *argv])
    # a read command leaves the read-only view configured; the test's next library call writes,
    # as the next command (a fresh process) would, through MLflow
    store.writable()
    return code, capsys.readouterr()


def test_review_list_shows_gates_baseline_method_head_and_the_champion(gov, capsys):
    v1 = g.register(gov["ws"], gov["base"], gov["base_dir"], "rl", seed=1, qa=0.9)
    approval.approve(gov["ws"], gov["settings"], "rl", v1, "bob", "ok")
    g.register(gov["ws"], gov["base"], gov["base_dir"], "rl", seed=2, qa=0.5)
    code, out = run(gov["ws"], "review", "list", capsys=capsys)
    assert code == 0
    row = [line for line in out.out.splitlines() if line.startswith("rl ")][0]
    # every accuracy with its n and 95% Wilson interval (issue 31, finding 10)
    assert "0.500 [0.15,0.85] n=4 " in row and "0.800 [0.30,0.95] n=4 logreg" in row
    assert "v1 0.900 [0.51,1.00] n=4" in row and "meta-learned" in row
    assert "FAILS champion, baseline" in row
    code, out = run(gov["ws"], "review", "list", "--json", capsys=capsys)
    (r,) = json.loads(out.out)
    assert r["gates_failed"][0].startswith("champion (0.500 < champion v1 0.900") and r["champion_accuracy"] == 0.9
    assert r["accuracy"]["n"] == 4 and r["champion_measured"]["interval"][1] > 0.999
    code, out = run(gov["ws"], "lineage", "rl", capsys=capsys)
    assert code == 0 and "accuracy   0.900 [0.51,1.00] n=4 (baseline 0.800 [0.30,0.95] n=4 logreg" in out.out


def test_audit_verify_names_drift_and_repairs_interrupted_work(gov, capsys):
    v1 = g.register(gov["ws"], gov["base"], gov["base_dir"], "av", seed=1)
    code, out = run(gov["ws"], "audit", "verify", capsys=capsys)
    n = len(audit.records(gov["ws"]))
    assert code == 0 and f"all {n} record(s) checked" in out.out and "every tenant matches the log" in out.out
    env = {**os.environ, "TAILOR_FAULT": "approve:after-aliases", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tests.governance", str(gov["ws"].root), "approve", "av", v1, "carol"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == -9
    code, out = run(gov["ws"], "audit", "verify", capsys=capsys)
    assert code == 2 and "was interrupted; run `tailor audit verify --repair`" in out.out
    assert len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
    code, out = run(gov["ws"], "audit", "verify", "--repair", capsys=capsys)
    assert code == 0 and "repaired: av: approve" in out.out
    store.client().set_registered_model_alias("tailor-tenant-av", "candidate", v1)
    code, out = run(gov["ws"], "audit", "verify", capsys=capsys)  # from the checkpoint --repair wrote
    n = len(audit.records(gov["ws"]))
    assert code == 0 and f"no new records checked from the checkpoint at record {n}" in out.out
    code, out = run(gov["ws"], "audit", "verify", "--full", capsys=capsys)
    assert code == 2 and "@candidate points to v1 but no audit record put it there" in out.out
    v2 = g.register(gov["ws"], gov["base"], gov["base_dir"], "av", seed=2)
    store.client().set_registered_model_alias("tailor-tenant-av", "champion", v2)  # as MLflow's UI would
    code, out = run(gov["ws"], "predict", "av", "hello", capsys=capsys)
    assert code == 2 and out.err.strip() == (
        f"error: refusing to serve av: @champion points to v{v2} but the audit log's champion is v{v1} "
        "(moved outside Tailor); run `tailor audit verify`")


def test_lineage_all_exports_every_tenant_down_to_the_bases_training_data(gov, capsys, tmp_path):
    trained_on = {"acme": "md5:aaa"}
    ref, base_dir = g.make_base(gov["ws"], "trained-on-data", data_versions=trained_on)
    for tenant in ("la", "lb"):
        v = g.register(gov["ws"], ref, base_dir, tenant, seed=1)
        approval.approve(gov["ws"], gov["settings"], tenant, v, "bob", f"ok <b>{tenant}</b>")
    html = tmp_path / "report.html"
    code, out = run(gov["ws"], "lineage", "--all", "--json", "--html", str(html), capsys=capsys)
    assert code == 0
    report = json.loads(out.out)  # stdout is the JSON alone; where the HTML went is said on stderr
    assert "wrote the audit report (2 tenant(s))" in out.err
    assert report["audit"]["ok"] and [t["tenant"] for t in report["tenants"]] == ["la", "lb"]
    v = report["tenants"][0]["versions"][0]
    assert v["base"]["version"] == "2" and v["base"]["trained_on"] == trained_on
    assert [b["version"] for b in report["bases"]] == ["1", "2"]
    assert [(e["event"], e["actor"]) for e in v["events"]] == [("registered", "service:scheduler"), ("approved", "bob")]
    page = html.read_text()
    assert "ok &lt;b&gt;la&lt;/b&gt;" in page and "<b>la</b>" not in page and "md5:aaa" in page


def test_users_are_added_with_hashed_passwords(gov, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("long enough password\n"))
    code, out = run(gov["ws"], "user", "add", " Dana ", "--password-stdin", capsys=capsys)
    assert code == 0 and "user dana" in out.out
    stored = (gov["ws"].state_dir / "users.json").read_text()
    assert "long enough password" not in stored and "scrypt$" in stored
    assert users.check(gov["ws"], "DANA", "long enough password") == "dana"
    assert users.check(gov["ws"], "dana", "wrong") is None and users.check(gov["ws"], "nobody", "x") is None
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert run(gov["ws"], "user", "add", "eve", "--password-stdin", capsys=capsys)[0] == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO("long enough password\n"))
    assert run(gov["ws"], "user", "add", "service:bot", "--password-stdin", capsys=capsys)[0] == 2


def test_state_changing_commands_answer_json_alone_and_take_one_user_option(gov, capsys, monkeypatch):
    ws = gov["ws"]
    v1, v2, v3 = (g.register(ws, gov["base"], gov["base_dir"], "js", seed=i) for i in (1, 2, 3))
    code, out = run(ws, "review", "approve", "js", v1, "--user", "alice", "--reason", "ok", "--json", capsys=capsys)
    assert code == 0 and json.loads(out.out)["version"] == v1
    code, out = run(ws, "review", "approve", "js", v2, "--reviewer", "alice", "--reason", "ok", "--json",
                    capsys=capsys)  # the old option name still works
    assert code == 0 and json.loads(out.out)["version"] == v2
    code, out = run(ws, "review", "reject", "js", v3, "--user", "mallory", "--reason", "no", capsys=capsys)
    assert code == 2 and out.err.startswith("error: --user 'mallory' is not you")
    code, out = run(ws, "review", "reject", "js", v3, "--reason", "no", "--json", capsys=capsys)
    assert code == 0 and json.loads(out.out)["version"] == v3
    code, out = run(ws, "rollback", "js", "--reason", "back", "--json", capsys=capsys)
    assert code == 0 and json.loads(out.out)["action"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("long enough password\n"))
    code, out = run(ws, "user", "add", "erin", "--password-stdin", "--json", capsys=capsys)
    assert code == 0 and json.loads(out.out) == {"user": "erin"}
    code, out = run(ws, "lineage", "js", "--html", "x.html", capsys=capsys)
    assert code == 2 and "use it with --all" in out.err


def test_dry_runs_check_everything_and_change_nothing(gov, capsys):
    ws = gov["ws"]
    v1, v2 = (g.register(ws, gov["base"], gov["base_dir"], "dr", seed=i) for i in (1, 2))
    records = lambda: len(audit.records(ws, "dr"))  # noqa: E731
    before = records()
    code, out = run(ws, "review", "approve", "dr", v1, "--reason", "ok", "--dry-run", "--json", capsys=capsys)
    plan = json.loads(out.out)
    assert code == 0 and plan["dry_run"] and plan["action"] == "approve" and plan["to"] == v1
    assert store.alias_version("tailor-tenant-dr", "champion") is None and records() == before
    code, out = run(ws, "review", "reject", "dr", "9", "--reason", "no", "--dry-run", capsys=capsys)
    assert code == 2 and out.err.startswith("error: ") and records() == before, "a dry run runs the checks"
    code, out = run(ws, "review", "reject", "dr", v2, "--reason", "no", "--dry-run", capsys=capsys)
    assert code == 0 and out.out.startswith("dry run: alice would reject dr") and records() == before
    assert store.client().get_model_version("tailor-tenant-dr", v2).tags["status"] == "pending"
    approval.approve(ws, gov["settings"], "dr", v1, "bob", "ok")
    approval.approve(ws, gov["settings"], "dr", v2, "bob", "ok")
    before = records()
    code, out = run(ws, "rollback", "dr", "--reason", "back", "--dry-run", "--json", capsys=capsys)
    assert code == 0 and json.loads(out.out)["to"] == v1 and records() == before
    assert str(store.alias_version("tailor-tenant-dr", "champion").version) == v2


def test_a_deleted_tracking_database_is_refused_not_recreated_empty(gov, capsys):
    """Issue 31, finding 9: with `.tailor/mlflow.db` deleted, `review list` said "no pending
    candidates" over an empty database it had just created; the history is refused instead."""
    g.register(gov["ws"], gov["base"], gov["base_dir"], "gone", seed=1, qa=0.9)
    gov["ws"].mlflow_db.unlink()
    for argv in (["review", "list"], ["lineage", "gone"], ["audit", "verify"], ["adapt", "gone"]):
        code, out = run(gov["ws"], *argv, capsys=capsys)
        assert code == 2 and len(out.err.splitlines()) == 1, out.err
        assert "tracking database" in out.err and "missing" in out.err and "no pending" not in out.out
        assert not gov["ws"].mlflow_db.exists(), f"{argv[0]} created an empty database"
