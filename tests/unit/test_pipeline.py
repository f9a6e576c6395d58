"""dvc.yaml from the template: which tenant data each stage lists, what happens to a team's own
stages, and why a stale file stops `dvc repro` instead of being rewritten under it."""
import dataclasses

import pytest
import yaml

from tests.conftest import tiny_settings
from workspace import pipeline, versioning
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import Settings


@pytest.fixture
def ws(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    for tenant, suffix in (("acme", "csv"), ("globex", "jsonl"), ("hooli", "csv")):
        folder = ws.tenant_dir(tenant)
        folder.mkdir(parents=True)
        (folder / f"data.{suffix}").write_text("text,label\n")
    return ws


def stages(ws):
    return yaml.safe_load((ws.root / "dvc.yaml").read_text())["stages"]


def test_every_params_key_in_the_template_is_a_setting():
    template = yaml.safe_load(pipeline.TEMPLATE.read_text())["stages"]
    settings = Settings()
    sections = {f.name: {g.name for g in dataclasses.fields(getattr(settings, f.name))}
                for f in dataclasses.fields(Settings)}
    for stage in template.values():
        for key in stage["params"]:
            section, _, name = key.partition(".")
            assert section in sections and (not name or name in sections[section]), key


def test_meta_train_lists_its_tenants_and_adapt_every_tenant(ws):
    pipeline.sync(ws, tiny_settings(tenants="acme", val_tenants="globex"))
    got = stages(ws)
    assert got["meta-train"]["deps"] == ["data/tenants/acme/data.csv", "data/tenants/globex/data.jsonl"]
    assert got["adapt"]["deps"] == ["pipeline/base.json", "data/tenants/acme/data.csv",
                                    "data/tenants/globex/data.jsonl", "data/tenants/hooli/data.csv"]
    pipeline.sync(ws, Settings())  # no tenants configured: meta-training reads every tenant
    assert len(stages(ws)["meta-train"]["deps"]) == 3


def test_a_teams_own_stage_is_kept(ws):
    pipeline.sync(ws, Settings())
    doc = yaml.safe_load((ws.root / "dvc.yaml").read_text())
    doc["stages"]["report"] = {"cmd": "python report.py", "deps": ["pipeline/candidates.json"]}
    (ws.root / "dvc.yaml").write_text(yaml.safe_dump(doc))
    assert pipeline.sync(ws, tiny_settings(tenants="acme", val_tenants="hooli")) is True
    assert stages(ws)["report"]["cmd"] == "python report.py"
    assert pipeline.sync(ws, tiny_settings(tenants="acme", val_tenants="hooli")) is False


def test_a_stale_file_stops_dvc_repro_with_one_line(ws, monkeypatch):
    pipeline.sync(ws, Settings())
    before = (ws.root / "dvc.yaml").read_text()
    monkeypatch.setenv("DVC_STAGE", "meta-train")  # what DVC sets while it runs a stage's command
    assert pipeline.sync(ws, Settings()) is False
    with pytest.raises(UserError, match="tailor init"):
        pipeline.sync(ws, tiny_settings(tenants="acme", val_tenants="hooli"))
    assert (ws.root / "dvc.yaml").read_text() == before, "never rewritten while DVC reads it"


def test_a_broken_dvc_yaml_is_a_user_error(ws):
    (ws.root / "dvc.yaml").write_text("stages: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        pipeline.sync(ws, Settings())


def test_a_file_edited_outside_tailor_has_no_data_version(tmp_path):
    ws = Workspace(tmp_path / "v").ensure()
    versioning.init_repo(ws, Settings().stores)
    src = tmp_path / "a.csv"
    src.write_text("text,label\nx,a\n")
    version = versioning.track(ws, "acme", src)
    assert versioning.verified_version(ws, "acme") == version
    (ws.root / version.path).write_text("text,label\nx,b\n")
    with pytest.raises(UserError, match="changed outside Tailor"):
        versioning.verified_version(ws, "acme")


def test_a_stage_that_cannot_be_locked_is_a_note_not_a_failure(tmp_path):
    """`tailor adapt --all` in a workspace whose base predates the pipeline: the candidates are
    registered by then, so a missing pipeline/base.json must not turn the command into a failure."""
    ws = Workspace(tmp_path / "old").ensure()
    (ws.root / "params.yaml").write_text("")
    versioning.init_repo(ws, Settings().stores)
    pipeline.sync(ws, Settings())
    note = pipeline.record(ws, "adapt", {"tenants": {}})
    assert note and "dvc.lock not updated" in note and "pipeline/base.json" in note
    assert (ws.root / "pipeline" / "candidates.json").is_file()


def test_a_command_renders_dvc_yaml_only_when_something_it_lists_changed(ws, monkeypatch):
    """Every command opens the workspace; listing every tenant's file in dvc.yaml each time grew
    with the fleet. It is rendered again only when a tenant folder, the settings' meta-training
    tenants or dvc.yaml changed, or the tenant a command just changed is not listed as it is."""
    settings = Settings()
    assert pipeline.sync_if_changed(ws, settings) is True
    rendered = []
    real = pipeline.render
    monkeypatch.setattr(pipeline, "render", lambda *a: rendered.append(1) or real(*a))
    assert pipeline.sync_if_changed(ws, settings) is False and rendered == []  # nothing changed: not rendered
    ws.tenant_dir("newco").mkdir()
    (ws.tenant_dir("newco") / "data.csv").write_text("text,label\n")
    assert pipeline.sync_if_changed(ws, settings) is True and "data/tenants/newco/data.csv" in stages(ws)["adapt"]["deps"]
    (ws.tenant_dir("acme") / "data.csv").unlink()  # acme's file changed type in its own folder
    (ws.tenant_dir("acme") / "data.jsonl").write_text("{}\n")
    assert pipeline.sync_if_changed(ws, settings, "hooli") is False  # hooli is listed as it is
    assert pipeline.sync_if_changed(ws, settings, "acme") is True
    assert "data/tenants/acme/data.jsonl" in stages(ws)["adapt"]["deps"]
    assert pipeline.sync_if_changed(ws, tiny_settings(tenants="acme", val_tenants="hooli")) is True
