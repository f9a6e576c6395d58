"""Both stores on PostgreSQL by settings alone (a real server the suite starts: tests/postgres.py):
MLflow's (``stores.tracking_uri: postgresql://...``) and the embedded Prefect server's
(``stores.prefect_database_url``). The governed loop through the CLI in fresh processes, a fleet
run while two reviewers approve at once, and the approve/reject race ten times: one winner each
time, nothing lost, ``audit verify`` intact. The CLI loop and the fleet run take minutes (`make
test-slow`); the race runs in `make test`, as do the read view's checks on PostgreSQL
(tests/unit/test_reader.py)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import synthetic_tenant, tiny_settings
from tests.e2e.test_loop import write_csv
from workspace.create import init_workspace

ROOT = Path(__file__).resolve().parents[2]
TENANTS = {"acme": ["animal", "food", "tool"], "globex": ["music", "sport", "car"],
           "initech": ["animal", "music", "law"], "umbrella": ["food", "sport", "weather"]}


def cli(root, *argv, who="ci-bot", wait=True):
    """``tailor -w ROOT ARGV`` in a fresh process, as a person (``who``) runs it."""
    env = {**os.environ, "TAILOR_USER": who, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", "from tailor.cli import console; console()", "-w", str(root),
                             *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def _rows(url: str, sql: str) -> list[tuple]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text(sql))]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg_loop(postgres, tmp_path_factory):
    root = tmp_path_factory.mktemp("pg") / "ws"
    inbox = tmp_path_factory.mktemp("pg-inbox")
    mlflow_url = postgres.database("loop_mlflow")
    postgres.database("loop_prefect")
    settings = tiny_settings(tenants="acme,globex,initech", val_tenants="umbrella")
    settings = settings.replace("stores", tracking_uri=mlflow_url,
                                prefect_database_url=postgres.url("loop_prefect", "asyncpg"),
                                prefect_idle_seconds=0.0)
    init_workspace(root, settings)
    for i, (tenant, classes) in enumerate(TENANTS.items()):
        write_csv(inbox / f"{tenant}.csv", *synthetic_tenant(classes, 10, seed=i))
    for argv in (["ingest", "--dir", str(inbox)], ["meta-train", "--register-anyway"],
                 ["review", "approve", "--base-version", "1", "--reason", "evidence read"], ["adapt", "--all"]):
        code, out, err = cli(root, *argv, **({"who": "base-reviewer"} if argv[0] == "review" else {}))
        assert code == 0, (argv, out, err)
    return {"root": root, "mlflow": mlflow_url, "prefect": postgres.url("loop_prefect")}


@pytest.mark.slow  # minutes of fresh CLI processes: `make test-slow`
def test_the_governed_loop_runs_on_postgresql_alone(pg_loop):
    root = pg_loop["root"]
    code, out, _ = cli(root, "review", "list", "--json")
    assert code == 0 and sorted(r["tenant"] for r in json.loads(out)) == sorted(TENANTS)
    # the stores are PostgreSQL's: MLflow's versions and Prefect's flow runs are rows there, no sqlite file
    assert len(_rows(pg_loop["mlflow"], "SELECT name FROM registered_models WHERE name LIKE 'tailor-tenant-%'")) == 4
    flows = {name for (name,) in _rows(pg_loop["prefect"], "SELECT f.name FROM flow_run r JOIN flow f "
                                                            "ON r.flow_id = f.id")}
    assert {"tailor-ingest-dir", "tailor-meta-train", "tailor-adapt"} <= flows
    assert not (root / ".tailor" / "mlflow.db").exists() and not (root / ".tailor" / "prefect" / "prefect.db").exists()
    code, _, err = cli(root, "review", "approve", "globex", "1", "--reason", "ok",
                       "--override-reason", "tiny test model", who="alice")
    assert code == 0, err
    code, out, err = cli(root, "predict", "globex", "guitar piano drum", "--json")
    assert code == 0 and json.loads(out)[0]["version"] == "1", err
    code, out, _ = cli(root, "lineage", "globex", "--json")
    assert json.loads(out)["champion"] == "1"
    code, out, err = cli(root, "audit", "verify")
    assert code == 0 and "intact" in out, err


@pytest.mark.slow
def test_a_fleet_run_while_two_reviewers_approve_at_once_loses_nothing(pg_loop, tmp_path):
    root = pg_loop["root"]
    for i, (tenant, classes) in enumerate(TENANTS.items()):  # new data for every tenant: a second version each
        write_csv(tmp_path / f"{tenant}.csv", *synthetic_tenant(classes, 9, seed=100 + i))
    code, _, err = cli(root, "ingest", "--dir", str(tmp_path))
    assert code == 0, err
    fleet = cli(root, "adapt", "--all", wait=False)
    time.sleep(2)
    reviewers = [cli(root, "review", "approve", "acme", "1", "--reason", "ok", "--override-reason", "tiny",
                     who=who, wait=False) for who in ("alice", "bob")]
    reviewed = [(p.wait(timeout=600), p.stderr.read()) for p in reviewers]
    assert fleet.wait(timeout=600) == 0, fleet.stderr.read()
    assert sorted(code for code, _ in reviewed) == [0, 2], reviewed  # one winner; the other told why
    loser = next(err for code, err in reviewed if code == 2)
    assert "already approved" in loser and "Traceback" not in loser
    code, out, _ = cli(root, "review", "list", "--status", "all", "--json")
    rows = json.loads(out)
    assert {r["tenant"] for r in rows if r["version"] == "2"} == set(TENANTS)  # nothing lost
    acme = {r["version"]: r["status"] for r in rows if r["tenant"] == "acme"}
    assert acme == {"1": "approved", "2": "pending"}
    code, out, _ = cli(root, "lineage", "acme", "--json")
    events = [e for v in json.loads(out)["versions"] for e in v["events"] if e["action"] == "approve"]
    assert len(events) == 1 and json.loads(out)["champion"] == "1"
    code, out, err = cli(root, "audit", "verify")
    assert code == 0 and "intact" in out, err


def test_approve_against_reject_ten_times_one_winner_each(postgres, tmp_path):
    from registry.storage import store
    from registry.trail import audit
    from registry.trail.verify import verify_all
    from tests import governance as g

    ws, settings = g.fresh_workspace(tmp_path / "ws", tracking_uri=postgres.database("race"))
    base, base_dir = g.make_base(ws)
    trials = [(f"duel-{i}", g.register(ws, base, base_dir, f"duel-{i}")) for i in range(int(os.environ.get("RACE_TRIALS", "10")))]
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [subprocess.Popen([sys.executable, "-m", "tests.postgres", str(ws.root), action, who, str(go),
                                 *(f"{t}:{v}" for t, v in trials)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
               for action, who in (("approve", "alice"), ("reject", "bob"))]
    outs = [p.communicate(timeout=900) for p in workers]
    assert [p.returncode for p in workers] == [0, 0], outs
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    store.configure(ws, settings)
    for tenant, version in trials:
        codes = sorted(r[tenant] for r in results)
        assert codes == [0, 2], (tenant, codes)  # exactly one of approve and reject won
        status = store.client().get_model_version(f"tailor-tenant-{tenant}", version).tags["status"]
        champion = store.alias_version(f"tailor-tenant-{tenant}", "champion")
        winner = "approve" if results[0][tenant] == 0 else "reject"
        assert status == {"approve": "approved", "reject": "rejected"}[winner]
        assert (champion is not None) == (winner == "approve")  # never champion *and* rejected
        moves = [r["action"] for r in audit.effective(audit.records(ws, tenant)) if r["action"] != "register"]
        assert moves == [winner]
    assert verify_all(ws)["ok"]
