"""The registry on a real MLflow (sqlite) store: base, candidates, gates, four-eyes, rollback, lineage.

One MLflow store per module (its first call migrates the schema, ~6 s); each test uses its own
tenant ids so the tests stay independent.
"""
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import save_file

from lightning_modules.delta import save_base, save_delta, sha256_file
from registry.artifacts import base_model, candidates, checks, serving
from registry.review import approval, lineage
from registry.storage import store
from registry.trail import audit
from tests.conftest import synthetic_tenant, tiny_settings
from workspace.errors import UserError
from workspace.paths import Workspace

TIMINGS = {}
PASSED = {"passed": True, "failures": []}


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """A workspace with a configured store and a real tiny base registered as @current."""
    from lightning_modules.encoder import load_encoder
    from lightning_modules.model import init_meta_params, top_model

    root = tmp_path_factory.mktemp("ws")
    ws = Workspace(root).ensure()
    settings = tiny_settings()
    store.configure(ws, settings)
    start = time.perf_counter()
    store.client().search_registered_models()  # the first call migrates the new sqlite store
    TIMINGS["first_mlflow_call_s"] = time.perf_counter() - start
    encoder = load_encoder(settings.encoder)
    top = top_model(encoder, settings.encoder.adapted_layers, settings.encoder.lora_rank)
    meta = init_meta_params(top, settings.meta_train.inner_lr, 0)
    info = {"encoder": {"name": encoder.name, "digest": encoder.digest},
            "encoder_settings": settings.to_dict()["encoder"], "metrics": {}}
    base_dir = save_base(root / "runs" / "base", meta, info)
    ref = base_model.register_base(base_dir, params={"meta_train": {"meta_steps": 0, "algorithm": "fomaml"}},
                                   metrics={"val_accuracy": 0.5},
                                   history=[{"step": 0, "val_acc": 0.4}, {"step": 5, "val_acc": 0.5}],
                                   tags={"algorithm": "fomaml"})
    from registry.review import bases

    bases.approve_base(ws, settings, ref.version, "base-reviewer", "evidence read")
    return {"ws": ws, "settings": settings, "base": ref, "base_dir": base_dir, "encoder": encoder,
            "meta": meta, "root": root}


def make_delta(reg, tenant, qa=0.9, baseline=0.8, labels=("Billing", "Login"), name=None, extra=None,
               manifest_tenant=None, data_version="md5:abc"):
    """A delta folder built by hand: adapters + a head, and a manifest as adaptation writes it."""
    tensors = {"L0.attention.self.query.lora_A": torch.randn(2, 8), "L0.attention.self.query.lora_B": torch.zeros(8, 2),
               "head.weight": torch.randn(len(labels), 8), "head.bias": torch.zeros(len(labels))}
    tensors.update(extra or {})
    ref = reg["base"]
    manifest = {"tenant": manifest_tenant or tenant, "labels": list(labels),
                "base": {"name": ref.name, "version": ref.version, "digest": ref.digest},
                "data_version": data_version, "code_version": "git:test",
                "adaptation": {"algorithm": "sgd-inner-loop", "inner_steps": 4, "seed": 0},
                "metrics": {"query_accuracy": qa, "baseline_accuracy": baseline, "n_support": 8, "n_query": 4}}
    return save_delta(reg["root"] / "deltas" / (name or f"{tenant}-{time.monotonic_ns()}"), tensors, manifest)


def candidate(reg, tenant, requested_by="scheduler", validation=PASSED, **kw):
    delta = make_delta(reg, tenant, **kw)
    return candidates.register_candidate(reg["ws"], tenant, delta, reg["base_dir"], base=reg["base"],
                                         validation=validation, requested_by=requested_by,
                                         flow_run_id="flow-123")


def tags(tenant, version):
    return store.client().get_model_version(f"tailor-tenant-{tenant}", str(version)).tags


def aliases(tenant):
    return {k: str(v) for k, v in store.client().get_registered_model(f"tailor-tenant-{tenant}").aliases.items()}


def approve(reg, tenant, version, reviewer="alice", reason="looks right", **kw):
    return approval.approve(reg["ws"], reg["settings"], tenant, version, reviewer, reason, **kw)


def test_registered_base_is_current_with_its_digest_and_downloads_once(reg, tmp_path):
    ref = base_model.get_base()
    assert ref == reg["base"] and ref.digest == json.loads((reg["base_dir"] / "base.json").read_text())["digest"]
    assert base_model.get_base(ref.version) == ref
    run = store.client().get_run(ref.run_id)
    assert run.data.params["meta_train.algorithm"] == "fomaml" and run.data.metrics["val_accuracy"] == 0.5
    history = store.client().get_metric_history(ref.run_id, "history.val_acc")
    assert [(m.step, m.value) for m in history] == [(0, 0.4), (5, 0.5)]
    folder = base_model.download_base(ref, tmp_path)
    assert f"sha256:{sha256_file(folder / 'base.safetensors')}" == ref.digest
    start = time.perf_counter()
    assert base_model.download_base(ref, tmp_path) == folder
    assert time.perf_counter() - start < 0.5  # served from the digest-keyed cache
    # Registering the same base again (a retried task) does not make a duplicate version.
    again = base_model.register_base(reg["base_dir"], params={}, metrics={})
    assert again.version == ref.version
    with pytest.raises(UserError, match="no version 99"):
        base_model.get_base("99")


def test_set_current_base_moves_current_and_back(reg, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    save_file({"x": torch.ones(3)}, str(other / "base.safetensors"))
    (other / "base.json").write_text(json.dumps(
        {"format": "tailor-base/1", "digest": f"sha256:{sha256_file(other / 'base.safetensors')}"}))
    new = base_model.register_base(other, params={}, metrics={})
    assert base_model.get_base() == reg["base"] and new.version != reg["base"].version, "pending: not current"
    from registry.review import bases

    bases.approve_base(reg["ws"], reg["settings"], new.version, "base-reviewer", "evidence read")
    assert base_model.get_base() == new
    base_model.set_current_base(reg["ws"], reg["base"].version, actor="ops", reason="new base regressed")
    assert base_model.get_base() == reg["base"]
    assert audit.effective(audit.records(reg["ws"]))[-1]["action"] == "set-base"


def test_candidate_is_pending_with_alias_tags_and_one_audit_record(reg):
    start = time.perf_counter()
    version = candidate(reg, "cand-a")
    TIMINGS["register_candidate_s"] = time.perf_counter() - start
    t = tags("cand-a", version)
    assert t["status"] == "pending" and t["validation"] == "passed" and t["isolation"] == "passed"
    assert t["data_version"] == "md5:abc" and t["base_version"] == reg["base"].version
    assert t["base_digest"] == reg["base"].digest and t["requested_by"] == "scheduler"
    assert t["flow_run_id"] == "flow-123" and t["code_version"] == "git:test"
    assert json.loads(t["metrics"]) == {"query_accuracy": 0.9, "baseline_accuracy": 0.8}
    assert aliases("cand-a") == {"candidate": version}
    records = audit.effective(audit.records(reg["ws"], "cand-a"))
    assert [(r["action"], r["to"]) for r in records] == [("register", version)]
    assert "cand-a" in candidates.list_tenants()
    review = [r for r in approval.list_reviews() if r["tenant"] == "cand-a"]
    assert [(r["version"], r["aliases"], r["requested_by"], r["query_accuracy"]) for r in review] == \
        [(version, ["candidate"], "scheduler", 0.9)]


def test_candidate_of_another_tenant_is_refused(reg):
    delta = make_delta(reg, "cand-b", manifest_tenant="cand-c")
    with pytest.raises(UserError, match="not 'cand-b'"):
        candidates.register_candidate(reg["ws"], "cand-b", delta, reg["base_dir"], base=reg["base"],
                                      validation=PASSED, requested_by="scheduler")


def test_approve_moves_champion_and_records_who_and_why(reg):
    v1 = candidate(reg, "appr")
    with pytest.raises(UserError, match="four-eyes"):
        approve(reg, "appr", v1, reviewer=" SCHEDULER ")  # case and spacing make no new person
    with pytest.raises(UserError, match="reason"):
        approve(reg, "appr", v1, reason="  ")
    result = approve(reg, "appr", v1, reviewer="alice", reason="beats baseline")
    assert result["version"] == v1 and result["previous"] is None
    assert aliases("appr") == {"champion": v1}  # @candidate left it
    t = tags("appr", v1)
    assert (t["status"], t["approved_by"], t["approval_reason"], t["gates"]) == \
        ("approved", "alice", "beats baseline", "passed")
    last = audit.effective(audit.records(reg["ws"], "appr"))[-1]
    assert (last["action"], last["actor"], last["from"], last["to"], last["reason"]) == \
        ("approve", "alice", None, v1, "beats baseline")
    with pytest.raises(UserError, match="already approved"):
        approve(reg, "appr", v1)
    with pytest.raises(UserError, match="no version 42"):
        approve(reg, "appr", "42")
    with pytest.raises(UserError, match="no registered versions"):
        approve(reg, "nobody-here", "1")


def test_failed_gates_are_named_and_an_override_needs_a_reason(reg):
    v1 = candidate(reg, "gate", qa=0.90, baseline=0.80)
    approve(reg, "gate", v1)
    worse = candidate(reg, "gate", qa=0.70, baseline=0.75)  # below champion - 0.02 and below baseline
    with pytest.raises(UserError, match=r"champion .*baseline") as err:
        approve(reg, "gate", worse)
    assert "--override-reason" in str(err.value)
    assert aliases("gate")["champion"] == v1 and tags("gate", worse)["status"] == "pending"
    invalid = candidate(reg, "gate", qa=0.95, validation={"passed": False, "failures": ["too few rows"]})
    with pytest.raises(UserError, match="validation"):
        approve(reg, "gate", invalid)
    result = approve(reg, "gate", worse, override_reason="hotfix: new label needed today")
    assert aliases("gate")["champion"] == worse and len(result["gates_failed"]) == 2
    t = tags("gate", worse)
    assert t["override_reason"] == "hotfix: new label needed today" and t["gates"].startswith("overridden")
    last = audit.effective(audit.records(reg["ws"], "gate"))[-1]
    assert last["details"]["override_reason"] == "hotfix: new label needed today"


def test_isolation_failure_is_a_gate(reg):
    bad = make_delta(reg, "iso", extra={"L0.attention.self.query.weight": torch.zeros(8, 8)})
    passed, reasons = checks.check("iso", bad, reg["base"])
    assert not passed and "outside the adapters and head" in reasons[0]
    version = candidates.register_candidate(reg["ws"], "iso", bad, reg["base_dir"], base=reg["base"],
                                            validation=PASSED, requested_by="scheduler")
    assert tags("iso", version)["isolation"].startswith("failed")
    with pytest.raises(UserError, match="isolation"):
        approve(reg, "iso", version)


def test_isolation_checks_tenant_base_checksum_and_labels(reg, tmp_path):
    good = make_delta(reg, "iso-b")
    assert checks.check("iso-b", good, reg["base"]) == (True, [])
    assert not checks.check("iso-c", good, reg["base"])[0]
    other_base = base_model.BaseRef("tailor-base", "9", "sha256:" + "0" * 64, "")
    assert any("adapted from base" in r for r in checks.check("iso-b", good, other_base)[1])
    dup = make_delta(reg, "iso-b", labels=("A", "A"))
    assert "labels are not unique" in checks.check("iso-b", dup, reg["base"])[1]
    with open(good / "delta.safetensors", "r+b") as f:  # flip a byte of the tensors
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    assert any("checksum" in r for r in checks.check("iso-b", good, reg["base"])[1])


def test_reject_closes_a_candidate(reg):
    version = candidate(reg, "rej")
    with pytest.raises(UserError, match="reason"):
        approval.reject(reg["ws"], "rej", version, "bob", "")
    approval.reject(reg["ws"], "rej", version, "bob", "labels look swapped")
    t = tags("rej", version)
    assert (t["status"], t["rejected_by"], t["rejection_reason"]) == ("rejected", "bob", "labels look swapped")
    assert "candidate" not in aliases("rej")
    assert "rejected by bob" in store.client().get_model_version("tailor-tenant-rej", version).description
    with pytest.raises(UserError, match="rejected"):
        approve(reg, "rej", version)
    assert audit.effective(audit.records(reg["ws"], "rej"))[-1]["action"] == "reject"


def test_rollback_restores_the_previous_approved_version(reg):
    with pytest.raises(UserError, match="no approved champion"):
        approval.rollback(reg["ws"], reg["settings"], "roll", "ops", "bad")
    v1 = candidate(reg, "roll")
    approve(reg, "roll", v1)
    with pytest.raises(UserError, match="no earlier approved version"):
        approval.rollback(reg["ws"], reg["settings"], "roll", "ops", "bad")
    v2 = candidate(reg, "roll")
    approve(reg, "roll", v2)
    v3 = candidate(reg, "roll")
    approve(reg, "roll", v3)
    result = approval.rollback(reg["ws"], reg["settings"], "roll", "ops", "complaints since v3")
    assert (result["from"], result["to"]) == (v3, v2) and aliases("roll")["champion"] == v2
    assert tags("roll", v3)["status"] == "rolled_back"
    c = store.client()
    assert "rolled back by ops" in c.get_model_version("tailor-tenant-roll", v3).description
    assert "champion again after rollback" in c.get_model_version("tailor-tenant-roll", v2).description
    approval.rollback(reg["ws"], reg["settings"], "roll", "ops", "v2 also bad")
    assert aliases("roll")["champion"] == v1
    with pytest.raises(UserError, match="rolled back"):
        approve(reg, "roll", v3)
    with pytest.raises(UserError, match="reason"):
        approval.rollback(reg["ws"], reg["settings"], "roll", "ops", "")


def test_one_tenants_actions_never_touch_another_tenants_aliases(reg):
    a1, b1 = candidate(reg, "iso-ta"), candidate(reg, "iso-tb")
    approve(reg, "iso-tb", b1)
    before = aliases("iso-tb")
    approve(reg, "iso-ta", a1)
    a2 = candidate(reg, "iso-ta")
    approve(reg, "iso-ta", a2)
    approval.rollback(reg["ws"], reg["settings"], "iso-ta", "ops", "test")
    a3 = candidate(reg, "iso-ta")
    approval.reject(reg["ws"], "iso-ta", a3, "bob", "no")
    assert aliases("iso-tb") == before == {"champion": b1}
    assert tags("iso-tb", b1)["status"] == "approved"


def test_served_at_and_lineage_replay_approvals_and_rollbacks(reg):
    v1 = candidate(reg, "lin", data_version="md5:one")
    t0 = datetime.now(timezone.utc)
    approve(reg, "lin", v1, reason="first")
    t1 = datetime.now(timezone.utc)
    v2 = candidate(reg, "lin", data_version="md5:two")
    approve(reg, "lin", v2, reviewer="carol", reason="second")
    t2 = datetime.now(timezone.utc)
    approval.rollback(reg["ws"], reg["settings"], "lin", "ops", "regression")
    t3 = datetime.now(timezone.utc)
    ws = reg["ws"]
    assert [audit.served_at(ws, "lin", t) for t in (t0, t1, t2, t3)] == [None, v1, v2, v1]
    v3 = candidate(reg, "lin", data_version="md5:three")
    d = lineage.lineage(ws, "lin")
    assert (d["champion"], d["candidate"]) == (v1, v3)
    champ = d["versions"][0]
    assert champ["data_version"] == "md5:one" and champ["base"]["version"] == reg["base"].version
    assert champ["base"]["digest"] == reg["base"].digest and champ["flow_run_id"] == "flow-123"
    assert [e["event"] for e in champ["events"]] == ["registered", "approved", f"replaced by v{v2}",
                                                     f"restored (rollback from v{v2})"]
    assert champ["events"][1]["actor"] == "alice" and champ["decision"]["approved_by"] == "alice"
    at = lineage.lineage(ws, "lin", at=t2)
    assert at["asked"]["served"] == v2 and at["versions"][0]["data_version"] == "md5:two"
    assert [e["event"] for e in at["versions"][0]["events"]][-1] == f"rolled back to v{v1}"
    assert lineage.lineage(ws, "lin", at=t0 - timedelta(days=1))["versions"] == []
    text = lineage.render(d)
    assert "md5:one" in text and "approved by alice" in text and f"tailor-base v{reg['base'].version}" in text
    assert lineage.lineage(ws, "lin", version=v2)["versions"][0]["status"] == "rolled_back"


def test_register_retry_returns_the_same_version(reg):
    delta = make_delta(reg, "retry")
    kw = dict(base=reg["base"], validation=PASSED, requested_by="scheduler")
    first = candidates.register_candidate(reg["ws"], "retry", delta, reg["base_dir"], **kw)
    assert candidates.register_candidate(reg["ws"], "retry", delta, reg["base_dir"], **kw) == first
    assert len(audit.effective(audit.records(reg["ws"], "retry"))) == 1


def test_tenant_model_predicts_with_a_fake_predictor(monkeypatch):
    """The pyfunc wrapper alone: input shapes in, label + score out (a fake predictor is enough)."""
    import numpy as np

    from registry.artifacts.pyfunc import Served

    class Fake:
        def predict_proba(self, texts):
            return ["A", "B"], np.array([[0.2, 0.8] if "b" in t else [0.9, 0.1] for t in texts])

    model = Served(Fake(), "t", "1")
    out = model.predict(pd.DataFrame({"text": ["a", "b"]}))
    assert out["label"].tolist() == ["A", "B"] and out["score"].tolist() == [0.9, 0.8]
    assert model.predict(["b"])["label"].tolist() == ["B"]
    assert len(model.predict([])) == 0


def test_real_version_loads_as_pyfunc_and_as_champion(reg, monkeypatch):
    """A real tiny base + adapted delta, registered, served by `mlflow.pyfunc` and by `champion()`."""
    import mlflow

    from lightning_modules.adaptation import adapt_tenant
    from lightning_modules.inference import load_predictor

    monkeypatch.setattr(sys, "path", list(sys.path))  # (MLflow adds a model's code paths to sys.path: none here)
    texts, labels = synthetic_tenant(["weather", "law", "animal"], 8, seed=3)
    out = adapt_tenant(reg["encoder"], reg["settings"], reg["meta"], "serve", texts, labels)
    ref = reg["base"]
    manifest = {"tenant": "serve", "labels": out.labels, "data_version": "md5:serve", "code_version": "git:test",
                "base": {"name": ref.name, "version": ref.version, "digest": ref.digest},
                "adaptation": out.adaptation, "metrics": out.metrics}
    delta = save_delta(reg["root"] / "deltas" / "serve", out.delta, manifest)
    assert checks.check("serve", delta, ref) == (True, [])
    version = candidates.register_candidate(reg["ws"], "serve", delta, reg["base_dir"], base=ref,
                                            validation=PASSED, requested_by="scheduler")
    model = mlflow.pyfunc.load_model("models:/tailor-tenant-serve@candidate")
    served = model.predict(pd.DataFrame({"text": texts}))
    # the model folder carries data and a loader's name, no code: Tailor comes from this environment
    root = Path(urlparse(store.client().get_model_version_download_uri("tailor-tenant-serve", version)).path)
    assert not (root / "code").exists() and not list(root.rglob("*.py")) and not list(root.rglob("*.pkl"))
    flavor = yaml.safe_load((root / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "registry.artifacts.pyfunc" and not flavor.get("code")
    assert any(line.startswith("tailor==") for line in (root / "requirements.txt").read_text().splitlines())
    direct = load_predictor(reg["base_dir"], delta).predict(texts)
    assert served["label"].tolist() == direct and set(direct) <= set(out.labels)
    assert ((served["score"] > 0) & (served["score"] <= 1)).all()
    with pytest.raises(UserError, match="no approved champion"):
        serving.champion("serve")
    approve(reg, "serve", version, override_reason="tiny test encoder")
    got, folder = serving.champion("serve")
    assert got == version and (folder / "delta" / "manifest.json").exists()
    assert load_predictor(folder / "base", folder / "delta").predict(texts) == direct
    rows = serving.predict("serve", texts)
    assert [r["label"] for r in rows] == direct
    assert set(rows[0]) == {"text", "label", "score", "version", "data_version"}
    tags = store.client().get_model_version("tailor-tenant-serve", version).tags
    assert {(r["version"], r["data_version"]) for r in rows} == {(version, tags["data_version"])}, \
        "every prediction names the champion version and data version that answered it"
    print(f"\ntimings: {json.dumps({k: round(v, 2) for k, v in TIMINGS.items()})}")


def test_an_unknown_tenant_is_said_to_be_unknown_not_to_need_an_approval(reg):
    candidate(reg, "known")
    with pytest.raises(UserError, match=r"no tenant nosuch in this registry.*tenants: .*known") as err:
        serving.champion("nosuch")
    assert "review approve" not in str(err.value)
