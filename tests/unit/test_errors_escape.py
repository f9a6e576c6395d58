"""Errors that used to escape the one-line rule: too few examples per label for meta-training (said
before any work), a data version whose DVC object is gone from cache and remote (named, with what
to do), and MLflow runs a killed command left RUNNING (marked FAILED by the next command)."""
import subprocess

import psutil
import pytest

from tests.conftest import synthetic_tenant, tiny_settings
from workspace.errors import UserError

# --- 1. meta-training with too few examples per label -------------------------------------------

FEW = {"acme": synthetic_tenant(["animal", "food", "tool"], 12, seed=1),
       "beta": synthetic_tenant(["music", "sport"], 6, seed=2)}   # 6 < shots 5 + query 5


def _no_work(*args, **kwargs):
    raise AssertionError("work started before the data was checked")


def test_meta_train_refuses_too_few_examples_per_label_before_caching_features(tmp_path, monkeypatch):
    from lightning_modules import training
    from lightning_modules.encoder import load_encoder

    monkeypatch.setattr(training, "lower_features", _no_work)
    train, val = {"acme": FEW["acme"]}, {"beta": FEW["beta"]}
    with pytest.raises(UserError) as err:
        training.meta_train(load_encoder(tiny_settings().encoder), tiny_settings(), train, val, tmp_path / "base")
    line = str(err.value)
    assert "\n" not in line
    for words in ("held-out tenant", "beta", "'Music' 6", "'Sport' 6", "10 examples",
                  "meta_train.shots 5", "meta_train.query 5", "meta_train.val_tenants"):
        assert words in line, words


def test_meta_training_tenants_short_of_examples_are_refused_too_unless_no_step_runs(tmp_path, monkeypatch):
    from lightning_modules import training

    train, val = {"beta": FEW["beta"]}, {"acme": FEW["acme"]}
    with pytest.raises(UserError, match=r"no meta-training tenant .* beta \('Music' 6, 'Sport' 6\)"):
        training.check_enough_examples(tiny_settings(), train, val)
    training.check_enough_examples(tiny_settings(meta_steps=0), train, val)   # no task is drawn from them
    training.check_enough_examples(tiny_settings(shots=3, query=3), train, val)  # 6 examples are enough then


def test_the_meta_train_flow_checks_before_loading_the_encoder(tmp_path, monkeypatch):
    from flows import training as flow

    root = tmp_path / "ws"
    (root / ".tailor").mkdir(parents=True)
    (root / "params.yaml").write_text("encoder:\n  name: tiny\n", encoding="utf-8")
    monkeypatch.setattr(flow, "tenants_with_data", lambda ws: sorted(FEW))
    monkeypatch.setattr(flow, "choose_tenants", lambda available, settings, left_out=None: (["acme"], ["beta"], []))
    monkeypatch.setattr(flow, "load_tenants", lambda root, ids: ({t: FEW[t] for t in ids}, {t: "md5:x" for t in ids}))
    monkeypatch.setattr(flow, "train_task", _no_work)
    with pytest.raises(UserError, match="no held-out tenant has 2 such labels: beta"):
        flow.meta_train_flow.fn(str(root))


# --- 2. a data version whose object is in neither the DVC cache nor the remote ------------------

def _csv(path, n, seed):
    texts, labels = synthetic_tenant(["animal", "food"], n, seed)
    path.write_text("text,label\n" + "".join(f"{t},{lb}\n" for t, lb in zip(texts, labels)), encoding="utf-8")
    return path


def test_a_data_version_lost_from_cache_and_remote_is_one_line_naming_it(tmp_path, capsys):
    from tailor import cli
    from workspace import versioning
    from workspace.create import init_workspace
    from workspace.dvcfiles import md5_of

    ws = init_workspace(tmp_path / "ws", tiny_settings())
    old = versioning.track(ws, "acme", _csv(tmp_path / "a.csv", 6, 0))
    new = versioning.track(ws, "acme", _csv(tmp_path / "b.csv", 7, 1))
    digest = old.md5.removeprefix("md5:")
    lost = [p for folder in (ws.root / ".dvc" / "cache", ws.dvc_remote_dir)
            for p in folder.rglob(digest[2:]) if p.parent.name == digest[:2]]
    assert len(lost) == 2, lost
    for path in lost:
        path.unlink()
    capsys.readouterr()
    code = cli.main(["--workspace", str(ws.root), "data", "checkout", "acme", digest[:12]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    for words in ("acme", f"md5:{digest[:12]}", "neither the DVC cache nor the DVC remote .tailor/dvc-remote",
                  "tailor ingest acme FILE", "stores.dvc_remote"):
        assert words in err, words
    assert md5_of(ws.root / new.path) == new.md5.removeprefix("md5:"), "the current version stays current"


# --- 3. runs a killed command left RUNNING ------------------------------------------------------

def _owner(pid: int, started: float) -> dict:
    import socket

    from registry.storage import owners
    return {owners.OWNER_HOST: socket.gethostname(), owners.OWNER_PID: str(pid),
            owners.OWNER_STARTED: f"{started:.2f}"}


def test_the_next_command_marks_runs_of_dead_processes_failed_and_leaves_live_ones(tmp_path):
    from mlflow import MlflowClient

    from registry.storage import owners, store
    from tests.governance import fresh_workspace, make_base, register

    ws, _ = fresh_workspace(tmp_path / "ws")   # configured; MLflow's client not opened yet
    raw = MlflowClient(tracking_uri=store.tracking_uri())
    exp = raw.create_experiment("tailor-tenant-acme", artifact_location=ws.artifacts_dir.resolve().as_uri())
    killed = subprocess.Popen(["sleep", "60"])
    killed_tags = _owner(killed.pid, psutil.Process(killed.pid).create_time())
    killed.kill()
    killed.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        runs = {name: raw.create_run(exp, run_name=name, tags=tags).info.run_id for name, tags in {
            "killed": killed_tags,
            "alive": _owner(alive.pid, psutil.Process(alive.pid).create_time()),
            "pid reused": _owner(alive.pid, psutil.Process(alive.pid).create_time() - 100),
            "this process": owners.owner_tags(),
            "no owner": {}}.items()}
        store.client()   # what the next command does first with the store
        status = {name: raw.get_run(run_id) for name, run_id in runs.items()}
    finally:
        alive.kill()
        alive.wait()
    assert {name: run.info.status for name, run in status.items()} == {
        "killed": "FAILED", "alive": "RUNNING", "pid reused": "FAILED", "this process": "RUNNING",
        "no owner": "RUNNING"}
    assert f"pid {killed.pid}" in status["killed"].data.tags[owners.FAILED_REASON]
    assert owners.FAILED_REASON not in status["alive"].data.tags

    # the runs Tailor starts carry their owner, so the sweep can find them after a kill
    from registry.artifacts import base_model

    base, base_dir = make_base(ws)
    register(ws, base, base_dir, "acme")
    base_model.training_logger("meta-train-test").run_id   # Lightning's logger creates its run
    mine = owners.owner_tags()
    tailor_runs = [r for e in ("tailor-meta-train", "tailor-tenant-acme")
                   for r in raw.search_runs([raw.get_experiment_by_name(e).experiment_id])
                   if r.info.run_id not in runs.values()]
    assert len(tailor_runs) == 3
    for run in tailor_runs:
        assert {k: run.data.tags.get(k) for k in mine} == mine, run.info.run_name


def test_prefects_default_console_handler_never_prints_a_users_traceback(tmp_path, capsys):
    """Prefect imported before Tailor's logging config loads its own: a console handler on the root
    logger, bound to the stderr of that moment. A user error's traceback (logged for the log file)
    must not reach the screen, nor a stream closed since ("--- Logging error ---")."""
    import io
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    from tailor import logs
    from workspace.paths import Workspace

    ws = Workspace(tmp_path)
    ws.state_dir.mkdir(parents=True)
    gone = io.StringIO()
    console = PrefectConsoleHandler(stream=gone)
    logging.getLogger().addHandler(console)
    gone.close()
    try:
        logs.record(ws, ["tailor", "x"], UserError("bad input"), user_error=True)
        assert console not in logging.getLogger().handlers
        assert "Logging error" not in capsys.readouterr().err
        assert "bad input" in logs.log_file(ws).read_text()
    finally:
        logging.getLogger().removeHandler(console)
