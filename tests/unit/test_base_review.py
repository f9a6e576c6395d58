"""Bases are candidates too: a meta-trained base waits for a second person's approval before any
adaptation starts from it, shows its evidence generically, and approving, rejecting or rolling
back a base never touches a tenant's champion; a base with an erased tenant's data is refused."""
import json
import re

import pytest
from fastapi.testclient import TestClient

from registry.artifacts import base_model
from registry.review import approval, bases, erasure
from registry.storage import store
from registry.trail.verify import verify_all
from tailor.web import users
from tailor.web.app import create_app
from tests import governance as g
from tests.unit.test_governance_cli import run
from tests.unit.test_transitions import spawn
from workspace.errors import UserError

EVIDENCE = {"held_out_tenants": ["h1", "h2"], "n_tenants": 2, "n_queries": 120,
            "accuracy": {"new_base": 0.81, "no_meta": 0.78, "current_base": 0.80, "frozen_names": 0.79},
            "paired": {"new_base-frozen_names": {"mean": 0.02, "ci95": 0.015, "n": 120},
                       "new_base-current_base": {"mean": 0.01, "ci95": 0.02, "n": 120}}}


@pytest.fixture
def gov(tmp_path, monkeypatch):
    ws, settings = g.fresh_workspace(tmp_path / "ws")
    base, base_dir = g.make_base(ws)            # v1: approved, @current
    monkeypatch.setenv("TAILOR_USER", "alice")
    return {"ws": ws, "settings": settings, "base": base, "base_dir": base_dir}


def champions() -> dict[str, str]:
    return {rm.name: str(rm.aliases.get("champion")) for rm in store.registered_models("tailor-tenant-%")}


def test_a_new_base_waits_for_a_second_person_before_adapt_uses_it(gov, capsys):
    ws, settings = gov["ws"], gov["settings"]
    new, _ = g.make_base(ws, "next", approve=False, evidence=EVIDENCE)
    mv = store.client().get_model_version("tailor-base", new.version)
    assert mv.tags["status"] == "pending" and mv.tags["requested_by"] == "service:meta-train"
    assert base_model.usable_base() == gov["base"], "adapt still starts from the approved base"
    assert str(store.alias_version("tailor-base", "candidate").version) == new.version
    with pytest.raises(UserError, match="service identity"):
        bases.approve_base(ws, settings, new.version, "service:scheduler", "ok")
    code, out = run(ws, "review", "approve", "--base-version", new.version, "--reason", "ok", "--dry-run", capsys=capsys)
    assert code == 0 and "would approve-base tailor-base" in out.out
    assert base_model.usable_base() == gov["base"], "a dry run changes nothing"
    code, out = run(ws, "review", "approve", "--base-version", new.version, "--reason", "evidence read", capsys=capsys)
    assert code == 0 and f"tailor-base v{new.version} is now current (approved by alice)" in out.out
    assert base_model.usable_base() == new and store.alias_version("tailor-base", "candidate") is None
    assert verify_all(ws)["ok"]


def test_who_trained_a_base_cannot_approve_it(gov, capsys):
    new, _ = g.make_base(gov["ws"], "mine", approve=False, actor="alice")
    code, out = run(gov["ws"], "review", "approve", "--base-version", new.version, "--reason", "mine", capsys=capsys)
    assert code == 2 and out.err.strip() == (f"error: four-eyes: alice trained tailor-base v{new.version} and cannot "
                                             "also approve it; ask another reviewer")
    assert bases.approve_base(gov["ws"], gov["settings"], new.version, " Carol ", "ok")["approved_by"] == "carol"


def test_the_evidence_is_stored_and_shown_generically(gov, capsys):
    new, _ = g.make_base(gov["ws"], "evid", approve=False, evidence=EVIDENCE)
    mv = store.client().get_model_version("tailor-base", new.version)
    stored = json.loads(open(store.client().download_artifacts(mv.run_id, "evidence.json")).read())
    assert stored == EVIDENCE
    shown = bases.evidence_from_tags(mv.tags)
    assert shown["accuracy"] == EVIDENCE["accuracy"] and shown["n_queries"] == 120
    assert shown["paired"]["new_base-frozen_names"] == {"mean": 0.02, "ci95": 0.015, "n": 120}
    code, out = run(gov["ws"], "review", "list", capsys=capsys)
    assert "accuracy frozen_names: 0.790" in out.out and "paired new_base-frozen_names: +0.020 ± 0.015" in out.out
    assert "n=120" in out.out
    code, out = run(gov["ws"], "review", "list", "--json", capsys=capsys)
    (row,) = [r for r in json.loads(out.out) if r["kind"] == "base"]
    assert row["evidence"]["accuracy"]["new_base"] == 0.81 and row["status"] == "pending"
    report = gov["ws"].root / "audit.html"
    assert run(gov["ws"], "lineage", "--all", "--html", str(report), capsys=capsys)[0] == 0
    html = report.read_text()
    assert f'href="#evidence-base-v{new.version}"' in html and f'id="evidence-base-v{new.version}"' in html
    assert "paired new_base-frozen_names: +0.020 ± 0.015 [+0.005, +0.035], n=120" in html


def test_rejecting_or_rolling_back_a_base_never_touches_champions(gov):
    ws, settings = gov["ws"], gov["settings"]
    v = g.register(ws, gov["base"], gov["base_dir"], "keep")
    approval.approve(ws, settings, "keep", v, "alice", "ok")
    before = champions()
    rejected, _ = g.make_base(ws, "bad", approve=False)
    bases.reject_base(ws, rejected.version, "alice", "worse on held-out tenants")
    with pytest.raises(UserError, match="rejected"):
        bases.approve_base(ws, settings, rejected.version, "carol", "changed my mind")
    good, _ = g.make_base(ws, "good")
    assert base_model.usable_base() == good
    base_model.set_current_base(ws, gov["base"].version, actor="alice", reason="the new one regressed")
    assert base_model.usable_base() == gov["base"]
    with pytest.raises(UserError, match="is rejected, not approved"):
        base_model.set_current_base(ws, rejected.version, actor="alice", reason="x")
    assert champions() == before, "every champion keeps the base it was adapted from"
    assert verify_all(ws)["ok"]


def test_a_base_with_erased_data_is_refused_for_adapt_approval_and_rollback(gov):
    ws, settings = gov["ws"], gov["settings"]
    trained, trained_dir = g.make_base(ws, "on-gone", data_versions={"gone": "md5:aaa", "stays": "md5:bbb"})
    pending, _ = g.make_base(ws, "on-gone-2", approve=False, data_versions={"gone": "md5:ccc"})
    v = g.register(ws, trained, trained_dir, "stays")
    assert erasure.mark_bases(ws, "gone", "alice", "customer left") == sorted([trained.version, pending.version], key=int)
    with pytest.raises(UserError, match="contains data of erased tenant"):
        base_model.usable_base()
    with pytest.raises(UserError, match="can never be approved"):
        bases.approve_base(ws, settings, pending.version, "carol", "ok")
    with pytest.raises(UserError, match="erased"):
        base_model.set_current_base(ws, trained.version, actor="alice", reason="x")
    with pytest.raises(UserError, match="adapted from tailor-base v.* which contains data of erased tenant"):
        approval.approve(ws, settings, "stays", v, "alice", "ok")
    assert erasure.mark_bases(ws, "gone", "alice", "again") == sorted([trained.version, pending.version], key=int)
    assert verify_all(ws)["ok"]


@pytest.mark.slow   # the same executor as the tenants' duel (test_transitions), two processes: `make test-slow`
def test_approve_and_reject_of_one_base_at_once_one_wins(gov, tmp_path):
    new, _ = g.make_base(gov["ws"], "duel", approve=False)
    go = tmp_path / "go"
    procs = [spawn(gov, "approve-base", "-", new.version, "alice", go),
             spawn(gov, "reject-base", "-", new.version, "bob", go)]
    go.touch()
    for p in procs:
        p.communicate(timeout=120)
    assert sorted(p.returncode for p in procs) == [0, 2]
    final = store.client().get_model_version("tailor-base", new.version).tags["status"]
    assert (final == "approved") == (base_model.get_base().version == new.version)
    assert verify_all(gov["ws"])["ok"]


def test_approving_a_base_while_its_tenant_is_erased_never_leaves_a_usable_base_with_erased_data(gov, tmp_path):
    new, _ = g.make_base(gov["ws"], "race", approve=False, data_versions={"leaving": "md5:ddd"})
    go = tmp_path / "go"
    procs = [spawn(gov, "approve-base", "-", new.version, "alice", go), spawn(gov, "erase", "leaving", "-", "bob", go)]
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert procs[1].returncode == 0, outs[1]
    mv = store.client().get_model_version("tailor-base", new.version)
    assert mv.tags["erased_data"] == "leaving"
    if procs[0].returncode == 0:   # approved first, marked after: current, but adapt refuses it
        with pytest.raises(UserError, match="erased"):
            base_model.usable_base()
    else:                          # marked first: the approval was refused
        assert mv.tags["status"] == "pending" and base_model.usable_base() == gov["base"]
    assert verify_all(gov["ws"])["ok"]


def test_the_review_page_lists_a_pending_base_and_a_second_person_approves_it(gov):
    ws, settings = gov["ws"], gov["settings"]
    new, _ = g.make_base(ws, "web", approve=False, evidence=EVIDENCE)
    for who in ("alice", "bob"):
        users.add_user(ws, who, f"{who}'s long password")
    c = TestClient(create_app(ws, settings), base_url="http://localhost")
    from tests.unit.test_web import login, token

    login(c, "alice")
    listing = c.get("/").text
    assert f'href="/base/v/{new.version}"' in listing and "paired new_base-frozen_names: +0.020" in listing
    page = c.get(f"/base/v/{new.version}").text
    assert 'id="evidence-paired"' in page and "[+0.005, +0.035]" in page and "<td>120</td>" in page
    done = c.post(f"/base/v/{new.version}/approve", data={"reason": "evidence read", "csrf": token(page)})
    assert done.history[0].status_code == 303 and "is now current (approved by alice)" in done.text
    assert base_model.usable_base() == new
    assert re.search(r'id="status">approved<', c.get(f"/base/v/{new.version}").text)
