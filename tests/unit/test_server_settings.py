"""Moving to servers by settings: which task runner params.yaml selects, which artifact root MLflow
gets, which remote failures are the user's to fix, and `tailor -w DIR init`."""
from types import SimpleNamespace

import pytest

from flows import runtime
from registry.storage import store
from tailor import cli
from workspace import remote
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import Settings, settings_from_dict


@pytest.mark.parametrize("raw, message", [
    ({"schedule": {"task_runner": "ray"}}, "use thread or dask"),
    ({"schedule": {"workers": 0}}, "workers must be >= 1"),
    ({"schedule": {"task_runner": "dask", "dask_address": "localhost"}}, "scheduler address"),
    ({"schedule": {"dask_address": "tcp://h:8786"}}, "needs schedule.task_runner: dask"),
    ({"stores": {"dvc_endpoint_url": "http://minio:9000"}}, "s3:// dvc_remote only"),
    ({"stores": {"dvc_remote": "s3://b/p", "dvc_endpoint_url": "minio:9000"}}, "http:// or https://"),
])
def test_wrong_server_settings_are_refused(raw, message):
    with pytest.raises(UserError, match=message):
        settings_from_dict(raw)


def test_the_task_runner_follows_params():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    threads = runtime.task_runner(Settings().replace("schedule", workers=3))
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3
    local = runtime.task_runner(Settings().replace("schedule", task_runner="dask", workers=2))
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs["n_workers"] == 2 and local.cluster_kwargs["threads_per_worker"] == 1
    remote_cluster = runtime.task_runner(Settings().replace("schedule", task_runner="dask",
                                                            dask_address="tcp://10.0.0.5:8786"))
    assert remote_cluster.address == "tcp://10.0.0.5:8786"


def test_a_tracking_server_gets_its_own_artifact_root(tmp_path):
    ws = Workspace(tmp_path).ensure()
    store.configure(ws, Settings())
    assert store._state["artifact_root"] == ws.artifacts_dir.resolve().as_uri()
    store.configure(ws, Settings().replace("stores", tracking_uri="http://mlflow.internal:5000"))
    assert store._state["artifact_root"] is None, "the server decides (mlflow-artifacts: when it serves them)"
    store.configure(ws, Settings().replace("stores", tracking_uri="http://m:5000", artifact_location="s3://b/a"))
    assert store._state["artifact_root"] == "s3://b/a"
    for where in ("file:///srv/mlruns/1", "/srv/mlruns/1", "./mlruns/1"):
        with pytest.raises(UserError, match="--serve-artifacts"):
            store._check_shared_artifacts(SimpleNamespace(name="tailor-x", artifact_location=where))
    for where in ("mlflow-artifacts:/1", "s3://bucket/1"):
        store._check_shared_artifacts(SimpleNamespace(name="tailor-x", artifact_location=where))
    store.configure(ws, Settings())


@pytest.mark.parametrize("cause, expected", [
    (ImportError("s3 is supported, but requires 'dvc-s3' to be installed"), "needs a plugin"),
    (type("NoCredentialsError", (Exception,), {})("Unable to locate credentials"), "no credentials"),
    (FileNotFoundError("The specified bucket does not exist"), "no such bucket"),
    (PermissionError("Access Denied"), "refused access"),
    (ConnectionError("connection reset"), None),  # may be transient: retried, not the user's to fix
    (TimeoutError("read timed out"), None),
])
def test_remote_failures_the_user_must_fix_are_told_apart(cause, expected):
    wrapped = RuntimeError("1 files failed to upload")
    wrapped.__cause__ = cause
    problem = remote._user_problem(remote._chain(wrapped), "s3://b/p")
    assert (problem is None) if expected is None else (expected in problem)


def test_workspace_option_names_the_folder_init_creates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TAILOR_HOME", raising=False)
    assert cli.main(["-w", "team-ws", "init"]) == 0
    assert (tmp_path / "team-ws" / "params.yaml").is_file() and (tmp_path / "team-ws" / "dvc.yaml").is_file()
    assert not (tmp_path / "params.yaml").exists(), "not the current directory"
    assert cli.main(["-w", "ignored", "init", "explicit"]) == 0
    assert (tmp_path / "explicit" / "params.yaml").is_file() and not (tmp_path / "ignored").exists()
