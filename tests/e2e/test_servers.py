"""A team on servers, set in params.yaml alone: an MLflow tracking server that serves artifacts
(`mlflow server --serve-artifacts`) and a Dask cluster of two worker processes, both started here
on free local ports. Fleet adaptation runs its chunks on both workers; candidates registered from
one workspace load and predict from a fresh clone that never saw their files."""
import importlib
import os
import json
import subprocess

import pytest
from distributed import wait

from tailor import cli
from tests.conftest import synthetic_tenant, tiny_settings
from tests.e2e.test_loop import TENANTS, write_csv
from tests.servers import dask_cluster, mlflow_server
from tests.governance import share_signing_key
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
        root = tmp_path_factory.mktemp("team") / "ws"
        inbox = tmp_path_factory.mktemp("inbox")
        ws = init_workspace(root, settings)
        for i, tenant in enumerate(FLEET):
            versioning.track(ws, tenant, write_csv(inbox / f"{tenant}.csv", *synthetic_tenant(TENANTS[tenant], 10, seed=i)))
        server.ready()  # started first: it warms up while the cluster starts and the data is versioned
        wait(warming)
        assert cli.main(["-w", str(root), "meta-train"]) == 0
        client.get_task_stream()  # starts the scheduler's record of which worker ran what
        os.environ["TAILOR_USER"] = "ci-bot"  # who requests the candidates (identities, issue 10)
        try:
            assert cli.main(["-w", str(root), "adapt", "--all"]) == 0
        finally:
            os.environ.pop("TAILOR_USER", None)
        ran_on = {t["worker"] for t in client.get_task_stream() if str(t["key"]).startswith("adapt_chunk-")}
        yield {"root": root, "tracking": server.url, "ran_on": ran_on, "workers": set(client.scheduler_info()["workers"])}


def test_fleet_adaptation_runs_on_both_dask_workers(team):
    assert len(team["workers"]) == 2
    assert team["ran_on"] == team["workers"], "two chunks of two tenants, one on each worker"
    record = json.loads((team["root"] / "pipeline" / "candidates.json").read_text())
    assert sorted(record["tenants"]) == FLEET
    assert {t["status"] for t in record["tenants"].values()} == {"adapted"}


def test_artifacts_go_through_the_servers_proxy(team):
    from registry import store

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
