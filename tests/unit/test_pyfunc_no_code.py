"""Issue 31, finding 3: `mlflow models serve` ran code from the artifact store. The pyfunc bundled
Tailor's code in the model folder (first on ``sys.path`` in a fresh process) and a pickled
``python_model``: one edited line in the bundled checks plus a swapped delta served tenant A with
tenant B's labels. Now the folder holds data and a loader's name only, the loader comes from the
serving environment, and whatever the folder says is checked against the registry and the log."""
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pandas as pd
import pytest

from lightning_modules.delta import save_delta
from registry.artifacts import candidates
from registry.storage import store
from tests.conftest import synthetic_tenant
from tests.unit.test_registry import approve, reg  # noqa: F401 - a real tiny base, module-scoped

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["rain snow storm", "judge jury verdict", "dog cat horse", "hail fog sun"]


def _adapted(reg, tenant, classes, seed):
    from lightning_modules.adaptation import adapt_tenant

    texts, labels = synthetic_tenant(classes, 8, seed=seed)
    out = adapt_tenant(reg["encoder"], reg["settings"], reg["meta"], tenant, texts, labels)
    ref = reg["base"]
    manifest = {"tenant": tenant, "labels": out.labels, "data_version": f"md5:{tenant}", "code_version": "git:test",
                "base": {"name": ref.name, "version": ref.version, "digest": ref.digest},
                "adaptation": out.adaptation, "metrics": out.metrics}
    delta = save_delta(reg["root"] / "deltas" / tenant, out.delta, manifest)
    return candidates.register_candidate(reg["ws"], tenant, delta, reg["base_dir"], base=ref,
                                         validation={"passed": True, "failures": []}, requested_by="scheduler")


@pytest.fixture(scope="module")
def pair(reg):  # noqa: F811
    a = _adapted(reg, "nc-a", ["weather", "law", "animal"], 1)
    approve(reg, "nc-a", a, override_reason="tiny test encoder")
    b = _adapted(reg, "nc-b", ["food", "tool"], 2)  # other labels: Food, Tool
    return {"a": a, "b": b, "root_a": _folder("nc-a", a), "root_b": _folder("nc-b", b)}


def _folder(tenant, version) -> Path:
    uri = store.client().get_model_version_download_uri(f"tailor-tenant-{tenant}", version)
    return Path(urlparse(uri).path)


def _labels(uri):
    return mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"text": TEXTS}))["label"].tolist()


def test_the_model_folder_carries_no_code(pair):
    root = pair["root_a"]
    assert not [p for p in root.rglob("*") if p.suffix in (".py", ".pyc", ".pkl")], "code in the artifact store"
    assert not (root / "code").exists()


def test_every_file_of_the_model_folder_edited_is_refused_or_answers_right(pair):
    uri = "models:/tailor-tenant-nc-a@champion"
    right = _labels(uri)
    root, donor_root = pair["root_a"], pair["root_b"]
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "registered_model_meta")
    assert {p.name for p in files} >= {"MLmodel", "requirements.txt", "delta.safetensors", "manifest.json",
                                       "base.safetensors", "base.json"}
    refused = []
    for path in files:
        original = path.read_bytes()
        donor = donor_root / path.relative_to(root)
        middle = len(original) // 2
        edits = {"junk appended": original + b"\n# edited\n"}
        if original:
            edits["a byte flipped"] = original[:middle] + bytes([original[middle] ^ 1]) + original[middle + 1:]
        if donor.is_file() and donor.read_bytes() != original:
            edits["tenant nc-b's file"] = donor.read_bytes()
        for what, data in edits.items():
            path.write_bytes(data)
            try:
                got = _labels(uri)
            except Exception:  # noqa: BLE001 - a refusal (ours or MLflow's): nothing served
                refused.append((path.name, what))
            else:
                assert got == right, f"{path.relative_to(root)} ({what}) served {got}, not {right}"
            finally:
                path.write_bytes(original)
    # every data file is checked: each edit of the delta, its manifest and the base is refused
    for name in ("delta.safetensors", "manifest.json", "base.safetensors", "base.json"):
        assert {w for n, w in refused if n == name} >= {"junk appended", "a byte flipped"}, name
    assert _labels(uri) == right


def test_a_swapped_delta_and_an_edited_code_file_serve_nothing_in_a_fresh_process(pair):
    """The finding's exact attack, in a process that imports nothing before MLflow loads the model
    (as `mlflow models serve` does): B's delta under A's champion, its manifest renamed to A, and
    the bundled checks edited to accept anything (if there are bundled checks to edit)."""
    from registry.storage.names import PREFIX

    root, donor = pair["root_a"], pair["root_b"]
    delta = next(root.rglob("delta.safetensors")).parent
    other = next(donor.rglob("delta.safetensors")).parent
    backup = {p: p.read_bytes() for p in delta.iterdir()}
    edited = []
    try:
        (delta / "delta.safetensors").write_bytes((other / "delta.safetensors").read_bytes())
        manifest = json.loads((other / "manifest.json").read_text())
        (delta / "manifest.json").write_text(json.dumps({**manifest, "tenant": "nc-a"}))
        for checks in root.rglob("checks.py"):  # only a folder that carries code has any
            edited.append(checks)
            checks.write_text(checks.read_text() + "\n\ndef verify_artifacts(recorded, folder):\n    return []\n")
        script = ("import json, sys, mlflow, pandas\n"
                  "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
                  "labels = model.predict(pandas.DataFrame({'text': sys.argv[2:]}))['label'].tolist()\n"
                  "print('SERVED', json.dumps(labels))\n")
        env = {**os.environ, "MLFLOW_TRACKING_URI": store.tracking_uri(), "TAILOR_HOME": str(store.workspace().root),
               "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        out = subprocess.run([sys.executable, "-c", script, f"models:/{PREFIX}nc-a@champion", *TEXTS], env=env,
                             cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    finally:
        for path, data in backup.items():
            path.write_bytes(data)
    served = [line for line in out.stdout.splitlines() if line.startswith("SERVED")]
    assert not served, f"served {served} (bundled code edited: {[str(p.relative_to(root)) for p in edited]})"
    assert out.returncode != 0 and "delta bytes" in out.stderr


def test_a_version_registered_by_older_code_loads_with_todays_checks(reg, pair, monkeypatch, tmp_path):  # noqa: F811
    """Versions logged before carry a pickled ``TenantModel`` and their files under ``artifacts/``:
    in a process where Tailor is installed they load through today's loader and checks, and
    `tailor predict` finds their files too. (`mlflow models serve` in a fresh process still runs the
    code bundled in such a folder: docs/security.md says how to retire them.)"""
    import shutil

    from registry.artifacts import pyfunc, serving

    def logged_as_before(delta_dir, base_dir):
        staging = tmp_path / "before"
        for key, src in (("delta", delta_dir), ("base", base_dir)):
            shutil.copytree(src, staging / "artifacts" / key)
        return mlflow.pyfunc.log_model(name="model", python_model=pyfunc.TenantModel(),
                                       artifacts={k: str(staging / "artifacts" / k) for k in ("delta", "base")},
                                       pip_requirements=["mlflow"], model_config={"tenant": "nc-old"})

    monkeypatch.setattr(pyfunc, "log_tenant_model", logged_as_before)
    version = _adapted(reg, "nc-old", ["music", "sport"], 3)
    root = _folder("nc-old", version)
    assert (root / "python_model.pkl").is_file() and (root / "artifacts" / "delta").is_dir()
    labels = _labels(f"models:/tailor-tenant-nc-old/{version}")
    assert set(labels) <= {"Music", "Sport"}
    approve(reg, "nc-old", version, override_reason="tiny test encoder")
    assert [r["label"] for r in serving.predict("nc-old", TEXTS)] == labels
    delta = root / "artifacts" / "delta" / "delta.safetensors"
    original = delta.read_bytes()
    delta.write_bytes((pair["root_b"] / "data" / "artifacts" / "delta" / "delta.safetensors").read_bytes())
    try:
        with pytest.raises(Exception, match="delta bytes"):
            _labels("models:/tailor-tenant-nc-old@champion")
    finally:
        delta.write_bytes(original)
