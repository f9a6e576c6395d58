"""Consent to train the shared base: recorded by a person with a reason, audited, read back from
the signed audit log (a record forged in the tracking store counts as no consent), the workspace
default from params.yaml, and meta-training's choice of tenants follows it."""
import json

import pytest

from flows.training import choose_tenants
from registry.review import consent
from registry.storage import store
from registry.trail import audit
from registry.trail.verify import verify_all
from tests import governance as g
from tests.conftest import tiny_settings
from tests.unit.test_governance_cli import run
from workspace.errors import UserError


@pytest.fixture
def gov(tmp_path, monkeypatch):
    ws, settings = g.fresh_workspace(tmp_path / "ws")
    monkeypatch.setenv("TAILOR_USER", "alice")
    return {"ws": ws, "settings": settings}


def test_consent_is_recorded_audited_and_read_back_with_the_default_for_the_rest(gov, capsys):
    ws, settings = gov["ws"], gov["settings"]
    code, out = run(ws, "tenant", "set", "acme", "--train-base", "no", "--reason", "contract 7.2", "--json",
                    capsys=capsys)
    result = json.loads(out.out)
    assert code == 0 and result["train_base"] is False and result["by"] == "alice" and result["previous"] is None
    found = consent.decisions(ws, settings, ["acme", "globex"])
    assert found["acme"]["train_base"] is False and found["acme"]["source"] == "recorded"
    assert "contract 7.2" in found["acme"]["why"] and found["globex"] == {
        "train_base": True, "source": "default", "why": "params.yaml data.train_base_default is true"}
    strict = settings.replace("data", train_base_default=False)
    assert consent.decisions(ws, strict, ["globex"])["globex"]["train_base"] is False
    assert store.client().get_registered_model("tailor-tenant-acme").tags["train_base"] == "no"
    records = [r for r in audit.effective(audit.records(ws, "acme")) if r["action"] == "set-consent"]
    assert [(r["actor"], r["to"], r["reason"]) for r in records] == [("alice", "no", "contract 7.2")]
    assert verify_all(ws)["ok"]
    code, out = run(ws, "tenant", "set", "acme", "--train-base", "yes", "--reason", "new contract", capsys=capsys)
    assert code == 0 and consent.decisions(ws, settings, ["acme"])["acme"]["train_base"] is True


def test_a_dry_run_changes_nothing_and_mistakes_are_one_line(gov, capsys):
    ws = gov["ws"]
    code, out = run(ws, "tenant", "set", "acme", "--train-base", "no", "--reason", "x", "--dry-run", capsys=capsys)
    assert code == 0 and "dry run" in out.out and consent.recorded(ws, ["acme"]) == {}
    for argv, words in ((["--train-base", "maybe", "--reason", "x"], "'maybe' is not one of 'yes', 'no'"),
                        (["--train-base", "no", "--reason", " "], "reason must not be empty")):
        code, out = run(ws, "tenant", "set", "acme", *argv, capsys=capsys)
        assert code == 2 and words in out.err and len(out.err.strip().splitlines()) == 1
    with pytest.raises(UserError, match="service identity"):
        consent.set_consent(ws, "acme", True, "service:scheduler", "x")


def test_a_consent_record_forged_in_the_tracking_store_is_not_consent(gov):
    """What the decision reads: the signed audit log. A writer of the tracking store can append a
    chained record saying yes, but without the workspace key it is not signed: no consent."""
    ws, settings = gov["ws"], gov["settings"]
    consent.set_consent(ws, "acme", False, "alice", "customer said no")
    g.forge_append(action="set-consent", tenant="acme", to="yes", details={"train_base": True})
    found = consent.decisions(ws, settings, ["acme"])["acme"]
    assert found["train_base"] is False and found["source"] == "unverifiable"


def test_meta_training_leaves_out_tenants_without_consent_even_when_configured():
    settings = tiny_settings(tenants="acme,globex,nocon", val_tenants="hooli")
    train, val, evidence = choose_tenants(["acme", "globex", "hooli"], settings, {"nocon": "no consent"})
    assert train == ["acme", "globex"] and val == ["hooli"] and evidence == []
    with pytest.raises(UserError, match="left out: nocon"):
        choose_tenants(["acme"], tiny_settings(tenants="acme,nocon"), {"nocon": "no consent"})
