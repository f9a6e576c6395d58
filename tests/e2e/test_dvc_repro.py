"""`dvc repro` in a workspace (real DVC, MLflow, Prefect; tiny encoder): stages list the tenant data
and params.yaml keys they read, a run by hand is recorded like a run by DVC, a change reruns exactly
the stages that depend on it, and a rerun reproduces the same base model from its inputs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tailor import cli
from tests.conftest import edit_params, synthetic_tenant, tiny_settings
from tests.e2e.test_loop import TENANTS, write_csv
from tests.governance import approve_base_cli
from workspace import versioning
from workspace.create import init_workspace

META = ["acme", "globex", "initech"]  # initech is the held-out tenant
FLEET = META + ["hooli"]


def dvc(root, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TAILOR_HOME"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the stages run `tailor`
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def changed_stages(root) -> set[str]:
    """What `dvc status` lists (through DVC's API, which reads the working directory)."""
    from dvc.repo import Repo

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        with Repo(str(root)) as repo:
            changed = set(repo.status())
    return changed - {f"data/tenants/{t}/data.csv.dvc" for t in FLEET}


def params_diff(root) -> dict:
    from dvc.repo import Repo

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        with Repo(str(root)) as repo:
            return repo.params.diff()


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline") / "ws"
    inbox = tmp_path_factory.mktemp("inbox")
    settings = tiny_settings(tenants="acme,globex", val_tenants="initech", patience=10, algorithm="fomaml",
                             meta_lr=0.05)  # meta-learning moves the weights here: best held-out step > 0
    ws = init_workspace(root, settings)
    for i, tenant in enumerate(FLEET):
        versioning.track(ws, tenant, write_csv(inbox / f"{tenant}.csv", *synthetic_tenant(TENANTS[tenant], 10, seed=i)))
    assert cli.main(["-w", str(root), "meta-train"]) == 0  # by hand: recorded in dvc.lock as if DVC ran it
    approve_base_cli(root)  # a second person approves the base: adapt starts from approved bases only
    assert cli.main(["-w", str(root), "adapt", "--all"]) == 0
    return {"root": root, "ws": ws, "inbox": inbox}


def test_stages_list_their_tenant_data_and_params(pipe):
    stages = yaml.safe_load((pipe["root"] / "dvc.yaml").read_text())["stages"]
    data = lambda ts: [f"data/tenants/{t}/data.csv" for t in ts]  # noqa: E731
    assert stages["meta-train"]["deps"] == data(META), "hooli is not a meta-training tenant"
    assert stages["adapt"]["deps"] == ["pipeline/base.json"] + data(sorted(FLEET))
    assert "meta_train" in stages["meta-train"]["params"] and "adapt" in stages["adapt"]["params"]
    dag = dvc(pipe["root"], "dag", "--dot").stdout
    assert '"meta-train" -> "adapt"' in dag


def test_the_base_records_every_tenants_data_version(pipe):
    from registry.artifacts import base_model
    from registry.storage import store
    from workspace.settings import load_settings

    ws = pipe["ws"]
    record = json.loads((pipe["root"] / "pipeline" / "base.json").read_text())
    expected = {t: versioning.current_version(ws, t).md5 for t in META}
    assert record["data_versions"] == expected
    store.configure(ws, load_settings(ws.params_file))
    tags = store.client().get_model_version("tailor-base", record["base"]["version"]).tags
    assert {k.removeprefix("data_version."): v for k, v in tags.items() if k.startswith("data_version.")} == expected
    cached = base_model.download_base(base_model.get_base(record["base"]["version"]), pipe["root"] / "dl")
    assert json.loads((cached / "inputs.json").read_text())["data_versions"] == expected


def test_nothing_changed_nothing_reruns(pipe):
    assert changed_stages(pipe["root"]) == set()
    out = dvc(pipe["root"], "repro").stdout
    assert "Stage 'meta-train' didn't change, skipping" in out and "Stage 'adapt' didn't change, skipping" in out
    assert "Running stage" not in out


def test_a_rerun_reproduces_the_same_base(pipe):
    """The stage's command again, on the recorded inputs: the same weights, so the same version."""
    from registry.artifacts import base_model
    from registry.storage import store

    root = pipe["root"]
    before = json.loads((root / "pipeline" / "base.json").read_text())
    lock = (root / "dvc.lock").read_text()
    assert cli.main(["-w", str(root), "meta-train"]) == 0
    assert json.loads((root / "pipeline" / "base.json").read_text()) == before
    assert (root / "dvc.lock").read_text() == lock and changed_stages(root) == set()
    run = store.client().get_run(base_model.get_base(before["base"]["version"]).run_id)
    assert run.data.metrics["best_step"] > 0, "the reproduced weights are meta-trained, not the seeded start"


def test_a_change_reruns_exactly_the_stages_that_depend_on_it(pipe):
    root, ws = pipe["root"], pipe["ws"]
    before = json.loads((root / "pipeline" / "base.json").read_text())
    edit_params(root, "adapt", inner_steps=5)
    assert changed_stages(root) == {"adapt"}
    assert params_diff(root)["diff"]["params.yaml"] == {"adapt.inner_steps": {"old": 4, "new": 5, "diff": 1}}
    new_hooli = write_csv(pipe["inbox"] / "hooli-2.csv", *synthetic_tenant(TENANTS["hooli"], 11, seed=7))
    versioning.track(ws, "hooli", new_hooli)  # not a meta-training tenant
    assert changed_stages(root) == {"adapt"}

    out = dvc(root, "repro").stdout
    assert "Stage 'meta-train' didn't change, skipping" in out and "Running stage 'adapt'" in out
    assert json.loads((root / "pipeline" / "base.json").read_text()) == before
    fleet = json.loads((root / "pipeline" / "candidates.json").read_text())["tenants"]
    assert fleet["hooli"]["data_version"] == versioning.current_version(ws, "hooli").md5
    # every tenant was adapted again; a tenant whose chosen method ignores inner_steps (a frozen head)
    # gets the same delta, which registration maps to the version it made before
    assert all(t["version"] == "2" or t.get("existing") for t in fleet.values()), fleet
    assert any(t["version"] == "2" for t in fleet.values()), "the changed setting reached the base's adaptations"
    assert changed_stages(root) == set()

    acme = write_csv(pipe["inbox"] / "acme-2.csv", *synthetic_tenant(TENANTS["acme"], 11, seed=8))
    versioning.track(ws, "acme", acme)  # a meta-training tenant: the base and, after it, the fleet
    assert changed_stages(root) == {"meta-train", "adapt"}
