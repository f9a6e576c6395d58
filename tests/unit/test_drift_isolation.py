"""Out-of-band changes are named and never served: an alias moved in MLflow, a tag edited, a
version deleted; a delta swapped for another tenant's, or its manifest edited, is refused at
approval, by `tailor predict` and by the pyfunc (`mlflow models serve`)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest

from registry.artifacts import serving
from registry.review import approval
from registry.storage import store
from registry.trail.verify import verify_all
from tests import governance as g
from workspace.errors import UserError


@pytest.fixture
def gov(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # loading a pyfunc adds its bundled code to sys.path
    ws, settings = g.fresh_workspace(tmp_path / "ws")
    base, base_dir = g.make_base(ws)
    return {"ws": ws, "settings": settings, "base": base, "base_dir": base_dir}


def reg(gov, tenant, **kw):
    return g.register(gov["ws"], gov["base"], gov["base_dir"], tenant, **kw)


def approve(gov, tenant, version):
    return approval.approve(gov["ws"], gov["settings"], tenant, version, "alice", "ok")


def stored_folder(tenant, version) -> Path:
    uri = store.client().get_model_version_download_uri(f"tailor-tenant-{tenant}", version)
    return Path(urlparse(uri).path) / "data" / "artifacts"


def clear_cache(gov):
    shutil.rmtree(gov["ws"].cache_dir / "models", ignore_errors=True)


def champion_as_predict_reads_it(gov, tenant):
    """``serving.champion`` through the read-only sqlite view, as `tailor predict` calls it."""
    with g.read_only(gov["ws"], gov["settings"]):
        return serving.champion(tenant)


def load_pyfunc(uri):
    return mlflow.pyfunc.load_model(uri)


def refused_everywhere(gov, tenant: str, pattern: str) -> None:
    """Serving, `tailor predict`'s read-only path and the MLflow pyfunc all refuse ``tenant``'s
    champion with ``pattern`` in the message."""
    with pytest.raises(UserError, match=pattern):
        serving.champion(tenant)
    with pytest.raises(UserError, match=pattern):
        champion_as_predict_reads_it(gov, tenant)
    with pytest.raises(Exception, match=pattern):
        load_pyfunc(f"models:/tailor-tenant-{tenant}@champion")


def test_an_alias_moved_outside_tailor_is_named_and_refused_everywhere(gov):
    v1 = reg(gov, "drift", seed=1)
    approve(gov, "drift", v1)
    v2 = reg(gov, "drift", seed=2, qa=0.5)  # fails the baseline gate
    assert verify_all(gov["ws"])["ok"]
    store.client().set_registered_model_alias("tailor-tenant-drift", "champion", v2)  # what MLflow's UI does
    problems = verify_all(gov["ws"], full=True)["problems"]
    assert problems == [f"tailor-tenant-drift: @champion points to v{v2} but the audit log says v{v1} "
                        "(alias moved outside Tailor)"]
    refused_everywhere(gov, "drift", r"refusing to serve drift: @champion points to v2 ")
    with pytest.raises(UserError, match=r"audit verify"):   # the CLI's refusal says what to run
        serving.champion("drift")
    store.client().set_registered_model_alias("tailor-tenant-drift", "champion", v1)  # put back: served again
    assert serving.champion("drift")[0] == v1 and verify_all(gov["ws"], full=True)["ok"]
    assert champion_as_predict_reads_it(gov, "drift")[0] == v1


def test_edited_tags_deleted_and_hand_made_versions_are_named(gov):
    v1 = reg(gov, "tags", seed=1)
    approve(gov, "tags", v1)
    v2 = reg(gov, "tags", seed=2)
    c = store.client()
    c.set_model_version_tag("tailor-tenant-tags", v1, "approved_by", "mallory")
    c.set_model_version_tag("tailor-tenant-tags", v1, "status", "rejected")
    c.delete_model_version("tailor-tenant-tags", v2)
    rogue = c.create_model_version("tailor-tenant-tags", "file:///nowhere", tags={"status": "approved"})
    problems = verify_all(gov["ws"])["problems"]
    assert f"tailor-tenant-tags: v{v1} tag approved_by is 'mallory', the audit log says 'alice' " \
           "(edited outside Tailor)" in problems
    assert any(f"v{v1} tag status is 'rejected'" in p for p in problems)
    assert f"tailor-tenant-tags: @candidate was removed outside Tailor (the audit log says v{v2})" in problems
    assert f"tailor-tenant-tags: v{v2} was deleted outside Tailor" in problems
    assert f"tailor-tenant-tags: v{rogue.version} has no register record (created outside Tailor)" in problems
    with pytest.raises(UserError, match="tag status was edited"):
        serving.champion("tags")
    with pytest.raises(UserError, match="tag status was edited"):
        champion_as_predict_reads_it(gov, "tags")


def _swap_in(gov, victim, version, donor, donor_version, edit_manifest=True):
    """Replace ``victim``'s stored delta with ``donor``'s, manifest edited to name the victim."""
    dst, src = stored_folder(victim, version) / "delta", stored_folder(donor, donor_version) / "delta"
    shutil.copy(src / "delta.safetensors", dst / "delta.safetensors")
    manifest = json.loads((src / "manifest.json").read_text())
    if edit_manifest:
        manifest["tenant"] = victim
    (dst / "manifest.json").write_text(json.dumps(manifest))


def test_a_swapped_delta_is_refused_at_approval_predict_and_pyfunc(gov):
    a1, b1 = reg(gov, "iso-a", labels=("Billing", "Login")), reg(gov, "iso-b", labels=("Refund", "Spam"), seed=5)
    _swap_in(gov, "iso-a", a1, "iso-b", b1)
    with pytest.raises(UserError, match="fail isolation .*delta bytes"):
        approve(gov, "iso-a", a1)
    assert store.alias_version("tailor-tenant-iso-a", "champion") is None
    with pytest.raises(Exception, match="delta bytes"):
        load_pyfunc(f"models:/tailor-tenant-iso-a/{a1}")


def test_a_champion_swapped_after_approval_is_refused_and_served_again_once_restored(gov):
    a1, b1 = reg(gov, "iso-c"), reg(gov, "iso-d", labels=("Refund", "Spam"), seed=5)
    approve(gov, "iso-c", a1)
    folder = stored_folder("iso-c", a1) / "delta"
    backup = {p.name: p.read_bytes() for p in folder.iterdir()}
    _swap_in(gov, "iso-c", a1, "iso-d", b1)
    clear_cache(gov)  # another machine, or a fresh cache: nothing verified locally yet
    with pytest.raises(UserError, match="refused: delta bytes"):
        serving.champion("iso-c")
    with pytest.raises(UserError, match="refused: delta bytes"):  # files copied from the local artifact root
        champion_as_predict_reads_it(gov, "iso-c")
    with pytest.raises(Exception, match="delta bytes"):
        load_pyfunc("models:/tailor-tenant-iso-c@champion")
    for name, data in backup.items():
        (folder / name).write_bytes(data)
    clear_cache(gov)
    assert champion_as_predict_reads_it(gov, "iso-c")[0] == a1
    version, local = serving.champion("iso-c")  # the cache is keyed by content: the restored files serve
    assert version == a1 and json.loads((local / "delta" / "manifest.json").read_text())["tenant"] == "iso-c"


def test_an_edited_manifest_or_cache_is_refused_or_fetched_again(gov):
    v = reg(gov, "iso-e")
    approve(gov, "iso-e", v)
    _, local = serving.champion("iso-e")
    manifest = json.loads((local / "delta" / "manifest.json").read_text())
    (local / "delta" / "manifest.json").write_text(json.dumps({**manifest, "labels": ["Billing", "Other"]}))
    _, again = serving.champion("iso-e")  # an edited local copy is dropped and fetched again, checked
    assert json.loads((again / "delta" / "manifest.json").read_text())["labels"] == ["Billing", "Login"]
    stored = stored_folder("iso-e", v) / "delta" / "manifest.json"
    stored.write_text(json.dumps({**manifest, "labels": ["Login", "Billing"]}))  # reordered: rows would swap
    clear_cache(gov)
    with pytest.raises(UserError, match="labels differ"):
        serving.champion("iso-e")
    with pytest.raises(UserError, match="labels differ"):
        champion_as_predict_reads_it(gov, "iso-e")


def test_a_forged_approval_is_named_and_refused_everywhere(gov):
    """A writer of the tracking store approves a rejected version as Tailor would: a correctly
    chained intent and commit, the tags and the alias, all through MLflow's API, without the key."""
    from registry.trail import transitions

    v1 = reg(gov, "forge", seed=1)
    approve(gov, "forge", v1)
    v2 = reg(gov, "forge", seed=2)
    approval.reject(gov["ws"], "forge", v2, "alice", "worse")
    plan = transitions.Plan(action="approve", model="tailor-tenant-forge", tenant="forge", actor="alice",
                            reason="ok", frm=v1, to=v2, tags={v2: {"status": "approved", "approved_by": "alice"}},
                            aliases=[("champion", v2, None)])
    intent = g.forge_append(action="approve", tenant="forge", actor="alice", frm=v1, to=v2, reason="ok",
                            phase="intent", details={"plan": plan.to_json()})
    g.forge_append(action="approve", tenant="forge", actor="alice", frm=v1, to=v2, reason="ok", phase="commit",
                   intent=intent["seq"], details={"outcome": "applied"})
    transitions.apply(plan)
    forged = f"audit record {intent['seq']} (approve by alice) is not signed with the workspace key"
    problems = verify_all(gov["ws"])["problems"]
    assert problems == [f"record {intent['seq']} (approve by alice) is not signed with the workspace key: "
                        "written or re-chained outside Tailor"]
    refused_everywhere(gov, "forge", rf"refusing to serve forge: {re.escape(forged)}")


def _edit_config(folder: Path, **changes) -> None:
    """Edit (add) a ``model_config`` in a stored version's ``MLmodel``, as the artifact store allows:
    the loader reads none, so whatever it says changes nothing."""
    import yaml

    path = folder.parent.parent / "MLmodel"
    meta = yaml.safe_load(path.read_text())
    meta["flavors"]["python_function"].setdefault("config", {}).update(changes)
    path.write_text(yaml.safe_dump(meta))


def test_a_swap_with_its_config_edited_too_is_refused_by_the_pyfunc(gov, tmp_path):
    """Delta, manifest and the ``MLmodel``'s model_config edited together (the database untouched):
    the files agree with the config beside them, not with the registry."""
    a1, b1 = reg(gov, "iso-f"), reg(gov, "iso-g", labels=("Refund", "Spam"), seed=5)
    approve(gov, "iso-f", a1)
    _swap_in(gov, "iso-f", a1, "iso-g", b1)
    donor = store.client().get_model_version("tailor-tenant-iso-g", b1).tags
    _edit_config(stored_folder("iso-f", a1), delta_sha256=donor["delta_sha256"], labels_sha256=donor["labels_sha256"])
    with pytest.raises(Exception, match=r"not the ones registered as tailor-tenant-iso-f v1: delta bytes"):
        load_pyfunc("models:/tailor-tenant-iso-f@champion")
    clear_cache(gov)
    with pytest.raises(UserError, match="refused: delta bytes"):
        champion_as_predict_reads_it(gov, "iso-f")
    # `mlflow models serve` says it in one line and stops, instead of a traceback
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.tracking_uri(), "PYTHONPATH": os.getcwd(),
           "TAILOR_HOME": str(gov["ws"].root), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/tailor-tenant-iso-f@champion",
                          "--env-manager", "local", "--port", "0"], env=env, capture_output=True, text=True,
                         timeout=300)
    said = [line for line in (out.stdout + out.stderr).splitlines() if "tailor:" in line]
    # (MLflow's CLI itself then reports that its server process exited with 2)
    assert out.returncode != 0 and "load_context" not in out.stderr and "RefusedToLoad" not in out.stderr
    assert len(said) == 1 and "not the ones registered as tailor-tenant-iso-f v1: delta bytes" in said[0]


def test_another_versions_folder_copied_over_the_champion_is_refused_by_the_pyfunc(gov, monkeypatch):
    """The whole folder of a pending or a rejected version (MLmodel, files, all) copied over the
    champion's: the pyfunc serves the version the registry resolved, so the files are refused.
    (Before, it served what the folder said it was: the pending version was served as champion.)"""
    v1 = reg(gov, "iso-h", seed=1)
    approve(gov, "iso-h", v1)
    v2 = reg(gov, "iso-h", seed=2)
    v3 = reg(gov, "iso-h", seed=3)
    approval.reject(gov["ws"], "iso-h", v3, "alice", "worse")
    champion = stored_folder("iso-h", v1).parent.parent
    for donor in (v2, v3):
        shutil.rmtree(champion)
        shutil.copytree(stored_folder("iso-h", donor).parent.parent, champion)
        with pytest.raises(Exception, match=f"its files are not the ones registered as tailor-tenant-iso-h v{v1}"):
            load_pyfunc("models:/tailor-tenant-iso-h@champion")
    with pytest.raises(Exception, match=f"v{v3}, which was rejected"):
        load_pyfunc(f"models:/tailor-tenant-iso-h/{v3}")
    loaded = []  # the tiny test base has no encoder: record what would be loaded instead
    monkeypatch.setattr("lightning_modules.inference.load_predictor", lambda base, delta, tenant: loaded.append(delta))
    load_pyfunc(f"models:/tailor-tenant-iso-h/{v2}")  # asked for by version: a pending candidate loads
    assert loaded == [stored_folder("iso-h", v2) / "delta"]
