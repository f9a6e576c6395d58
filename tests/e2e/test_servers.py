"""A team on servers, set in params.yaml alone: an MLflow tracking server that serves artifacts
(`mlflow server --serve-artifacts`) and a Dask cluster of two worker processes, both started here
on free local ports. Fleet adaptation runs its chunks on both workers; candidates registered from
one workspace load and predict from a fresh clone that never saw their files."""
import importlib
import hashlib
import json
import os
import subprocess
import time

import pytest
from distributed import wait

from tailor import cli
from tests.conftest import synthetic_tenant, tiny_settings
from tests.e2e.test_loop import TENANTS, write_csv
from tests.servers import api_server, dask_cluster, in_threads, mlflow_server
from tests.governance import approve_base_cli, share_signing_key
from workspace import versioning
from workspace.create import init_workspace
from workspace.paths import Workspace

FLEET = ["acme", "globex", "initech", "umbrella"]


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as server, dask_cluster(2) as (address, client):
        # workers import Tailor's flows while the rest is prepared (as a long-lived cluster would have)
        warming = [client.submit(importlib.import_module, "flows.adaptation", workers=[w], pure=False)
                   for w in client.scheduler_info()["workers"]]
        settings = tiny_settings(tenants="acme,globex,initech", val_tenants="umbrella")
        settings = settings.replace("stores", tracking_uri=server.url)
        settings = settings.replace("schedule", task_runner="dask", dask_address=address, chunk_size=2)
        settings = settings.replace("serving", poll_seconds=0.3, verify_seconds=1.0)
        root = tmp_path_factory.mktemp("team") / "ws"
        inbox = tmp_path_factory.mktemp("inbox")
        ws = init_workspace(root, settings)
        for i, tenant in enumerate(FLEET):
            versioning.track(ws, tenant, write_csv(inbox / f"{tenant}.csv", *synthetic_tenant(TENANTS[tenant], 10, seed=i)))
        server.ready()  # started first: it warms up while the cluster starts and the data is versioned
        wait(warming)
        assert cli.main(["-w", str(root), "meta-train", "--register-anyway"]) == 0
        approve_base_cli(root)
        client.get_task_stream()  # starts the scheduler's record of which worker ran what
        os.environ["TAILOR_USER"] = "ci-bot"  # who requests the candidates (identities, issue 10)
        try:
            assert cli.main(["-w", str(root), "adapt", "--all"]) == 0
        finally:
            os.environ.pop("TAILOR_USER", None)
        ran_on = {t["worker"] for t in client.get_task_stream() if str(t["key"]).startswith("adapt_chunk-")}
        yield {"root": root, "tracking": server.url, "ran_on": ran_on, "workers": set(client.scheduler_info()["workers"]),
               "artifacts": server.log.parent / "artifacts"}


def test_fleet_adaptation_runs_on_both_dask_workers(team):
    assert len(team["workers"]) == 2
    assert team["ran_on"] == team["workers"], "two chunks of two tenants, one on each worker"
    record = json.loads((team["root"] / "pipeline" / "candidates.json").read_text())
    assert sorted(record["tenants"]) == FLEET
    assert {t["status"] for t in record["tenants"].values()} == {"adapted"}


def test_artifacts_go_through_the_servers_proxy(team):
    from registry.storage import store

    ws = Workspace(team["root"])
    from workspace.settings import load_settings

    store.configure(ws, load_settings(ws.params_file))
    experiments = store.client().search_experiments()
    assert experiments and all(e.artifact_location.startswith("mlflow-artifacts:") for e in experiments
                               if e.name.startswith("tailor-"))
    assert not any(ws.artifacts_dir.iterdir()), "nothing written to the workspace's local artifact root"


def test_a_clone_predicts_with_candidates_registered_elsewhere(team, tmp_path, capsys):
    root = team["root"]
    os.environ["TAILOR_USER"] = "alice"
    try:
        assert cli.main(["-w", str(root), "review", "approve", "acme", "1", "--reason", "ok",
                         "--override-reason", "tiny test model"]) == 0
    finally:
        os.environ.pop("TAILOR_USER", None)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    share_signing_key(root, clone)
    assert cli.main(["init", str(clone)]) == 0
    capsys.readouterr()
    assert cli.main(["-w", str(clone), "predict", "acme", "dog cat horse", "bread rice soup", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["label"] for r in rows} <= {"Animal", "Food", "Tool"}
    downloaded = [d for d in (clone / ".tailor" / "cache" / "models").iterdir() if (d / "delta").is_dir()]
    assert downloaded, "the clone loaded the champion through the tracking server"


def test_serve_api_serves_from_the_tracking_server(team, capsys):
    """`tailor serve-api` on the team's registry: champions fetched through the server's artifact
    proxy answer as `tailor predict` does, under concurrent mixed-tenant load; an approval reaches
    serving without a restart, and so does a rollback; a caller sees only its tenants; a delta edited in the server's
    artifact store and in the local cache is a 409, then served again once restored."""
    from registry.review import approval
    from registry.storage import store
    from tailor.api import keys
    from workspace.settings import load_settings
    from tests.e2e.test_serve_api import ASK, call, predict_cli, same, _wait_version

    root, ws = team["root"], Workspace(team["root"])
    os.environ["TAILOR_USER"] = "alice"
    try:
        for tenant in ("acme", "globex"):  # acme may be approved already (the clone test)
            cli.main(["-w", str(root), "review", "approve", tenant, "1", "--reason", "ok",
                      "--override-reason", "tiny test model"])
    finally:
        os.environ.pop("TAILOR_USER", None)
    every, acme_only = keys.add_key(ws, "ops", ["*"]), keys.add_key(ws, "acme-app", ["acme"])
    ask = {"acme": ASK["acme"], "globex": ASK["globex"]}
    expected = {t: predict_cli(root, t, texts, capsys) for t, texts in ask.items()}
    with api_server(root, root.parent / "serve-api.log") as server:
        url = server.ready(90)
        answers = []

        def client(i):
            for n in range(4):
                mixed = [{"tenant": t, "texts": ask[t][(i + n) % 2:]} for t in ask]
                status, body, _ = call(url, "/v1/predict", {"requests": mixed}, every)
                assert status == 200, body
                answers.extend(body["results"])

        failures = in_threads(client, 4)
        assert not failures, failures[:3]
        assert len(answers) == 4 * 4 * 2
        for answer in answers:
            same(answer, expected[answer["tenant"]])

        assert call(url, "/v1/tenants/globex/predict", {"texts": ["dog"]}, acme_only)[0] == 403
        status, body, _ = call(url, "/v1/tenants/initech/predict", {"texts": ["dog"]}, every)
        assert status == 404 and "no approved champion" in body["detail"]
        settings = load_settings(ws.params_file)
        store.configure(ws, settings)
        approval.approve(ws, settings, "initech", "1", "alice", "now", override_reason="tiny test model")
        body, took = _wait_version(url, every, "initech", "1", ASK["initech"])
        same(body, predict_cli(root, "initech", ASK["initech"], capsys))
        # a second version, approved then rolled back: each reaches serving without a restart
        versioning.track(ws, "initech", write_csv(root.parent / "initech2.csv",
                                                  *synthetic_tenant(TENANTS["initech"], 9, seed=11)))
        os.environ["TAILOR_USER"] = "ci-bot"
        try:
            assert cli.main(["-w", str(root), "adapt", "initech"]) == 0
        finally:
            os.environ.pop("TAILOR_USER", None)
        store.configure(ws, settings)
        approval.approve(ws, settings, "initech", "2", "alice", "new data", override_reason="tiny test model")
        body, took = _wait_version(url, every, "initech", "2", ASK["initech"])
        same(body, predict_cli(root, "initech", ASK["initech"], capsys))
        store.configure(ws, settings)
        approval.rollback(ws, settings, "initech", "alice", "back to v1")
        body, took = _wait_version(url, every, "initech", "1", ASK["initech"])
        same(body, predict_cli(root, "initech", ASK["initech"], capsys))
        store.configure(ws, settings)

        digest = store.client().get_model_version("tailor-tenant-globex", "1").tags["delta_sha256"]
        globex = {p: p.read_bytes() for folder in (team["artifacts"], root / ".tailor" / "cache" / "models")
                  for p in folder.rglob("delta.safetensors") if hashlib.sha256(p.read_bytes()).hexdigest() == digest}
        assert len(globex) >= 2, "globex's delta in the server's artifact store and in the local cache"
        try:
            for path, data in globex.items():
                path.write_bytes(data[:-4] + b"\x00\x00\x00\x01")
            deadline = time.monotonic() + 10
            while (answer := call(url, "/v1/tenants/globex/predict", {"texts": ["dog"]}, every))[0] != 409:
                assert answer[0] == 200 and time.monotonic() < deadline, answer
                time.sleep(0.3)
            assert "not the ones registered" in answer[1]["detail"] and "\n" not in answer[1]["detail"]
        finally:
            for path, data in globex.items():
                if path.parent.is_dir():  # the edited cache folder is dropped and fetched again
                    path.write_bytes(data)
        deadline = time.monotonic() + 10
        while call(url, "/v1/tenants/globex/predict", {"texts": ["dog"]}, every)[0] != 200:
            assert time.monotonic() < deadline, "the restored delta was not served again"
            time.sleep(0.3)
