"""Candidate vs champion on the same texts: registration scores the champion on the candidate's
held-out split and keeps both predictions; review list, the review page and the champion gate read
that comparison (n, 95% intervals, per-label change, the texts whose prediction changed) and the
rows added and removed per label since the champion's data."""
import json
from types import SimpleNamespace

import pytest

from registry.artifacts import compare, serving
from registry.review import approval, reviewer
from registry.storage import store
from tests import governance as g
from workspace.errors import UserError

LABELS = ("Billing", "Login")
TEXTS = ["refund my card", "charged twice", "invoice missing", "cannot sign in", "password reset",
         "locked out", "2fa broken", "wrong amount", "login loop"]
TRUE = [0, 0, 0, 1, 1, 1, 1, 0, 1]
CAND = [0, 0, 0, 1, 1, 1, 0, 1, 1]          # 7 of 9 right
CHAMP = ["Billing", "Billing", "Login", "Login", "Login", "Login", "Login", "Billing", "Billing"]  # 7 of 9


def test_wilson_and_paired_interval():
    low, high = compare.wilson(8, 9)
    assert 0.56 < low < 0.57 and 0.98 < high < 0.99  # 0.889 on 9 texts is [0.57, 0.98]
    assert compare.wilson(0, 0) == (0.0, 1.0)
    diff, low, high = compare.paired_difference(worse=1, better=0, n=9)
    assert diff == pytest.approx(-1 / 9) and low < diff < high and high > 0


def test_champion_gate_on_the_same_texts_survives_a_small_split():
    """One text worse out of 9 is within what 9 texts can tell: the gate passes; 6 worse fails."""
    settings = g.tiny_settings_with(gates={"champion_tolerance": 0.02})
    champ = SimpleNamespace(version="1", tags={"query_accuracy": "1.0"})

    def mv(worse, better=0, n=9):
        diff, low, high = compare.paired_difference(worse, better, n)
        return SimpleNamespace(version="2", tags={
            "validation": "passed", "isolation": "passed", "query_accuracy": str(1 - worse / n),
            "compared_with": "1", "compare_n": str(n), "compare_candidate_correct": str(n - worse),
            "compare_champion_correct": str(n), "compare_difference": str(diff),
            "compare_difference_low": str(low), "compare_difference_high": str(high)})

    assert approval.gate_failures(mv(1), champ, settings) == []
    failed = approval.gate_failures(mv(6), champ, settings)
    assert len(failed) == 1 and failed[0].startswith("champion (on the same 9 held-out texts")


def test_baseline_gate_fails_only_a_baseline_ahead_beyond_the_noise_of_the_same_examples():
    """The candidate ships the base's adaptation unless another method wins beyond its noise; the
    gate judges the best baseline the same way, on the same cross-validated examples: 2 points ahead
    on 30 examples is noise (it was a failure when the gate compared the raw accuracies), 20 is not."""
    settings = g.tiny_settings_with(gates={"baseline_tolerance": 0.0})

    def mv(gain, se):
        return SimpleNamespace(version="1", tags={
            "validation": "passed", "isolation": "passed", "query_accuracy": "0.80", "n_query": "30",
            "baseline_accuracy": str(0.80 + gain), "baseline_method": "logreg-names-frozen",
            "baseline_gain": str(gain), "baseline_gain_se": str(se)})

    assert approval.gate_failures(mv(0.033, 0.033), None, settings) == []
    failed = approval.gate_failures(mv(0.2, 0.07), None, settings)
    assert len(failed) == 1 and failed[0].startswith("baseline (logreg-names-frozen is 20.0 points ahead")
    old = SimpleNamespace(version="1", tags={"validation": "passed", "isolation": "passed", "query_accuracy": "0.8",
                                             "baseline_accuracy": "0.9", "baseline_method": "no-meta"})
    assert approval.gate_failures(old, None, settings)[0].startswith("baseline (0.800 < no-meta"), \
        "a version registered before the paired gain is judged as it was"


def test_registration_scores_the_champion_on_the_candidates_held_out_texts(tmp_path, monkeypatch):
    ws, settings = g.fresh_workspace(tmp_path / "ws")
    base, base_dir = g.make_base(ws)
    first = g.register(ws, base, base_dir, "cmp", requested_by="bob", labels=LABELS, seed=1)
    approval.approve(ws, settings, "cmp", first, "alice", "first champion")
    seen = []

    def champion_predict(tenant, texts, batch_size=64):  # the hand-built champion cannot really predict
        seen.append((tenant, list(texts)))
        return [{"text": t, "label": label, "score": 0.9} for t, label in zip(texts, CHAMP)]

    monkeypatch.setattr(serving, "predict", champion_predict)
    held_out = {"y_true": TRUE, "y_pred": CAND, "rows": list(range(9)), "texts": TEXTS}
    second = g.register(ws, base, base_dir, "cmp", requested_by="bob", labels=LABELS, seed=2, held_out=held_out)
    assert seen == [("cmp", TEXTS)]
    tags = store.client().get_model_version("tailor-tenant-cmp", second).tags
    assert tags["compared_with"] == first and tags["compare_n"] == "9"
    assert tags["compare_candidate_correct"] == "7" and tags["compare_champion_correct"] == "7"

    row = next(r for r in approval.list_reviews("pending", settings) if r["version"] == second)
    same = row["same_texts"]
    assert same["n"] == 9 and same["champion_version"] == first
    assert same["candidate"]["interval"][0] < 7 / 9 < same["candidate"]["interval"][1]
    from tailor.commands import same_texts_cell  # the `tailor review list` column
    assert same_texts_cell(same) == f"0.778 [0.45,0.94] vs v{first} 0.778 [0.45,0.94], n=9"

    page = reviewer.candidate(settings, "cmp", second)
    cmp = page["comparison"]
    assert cmp["current"] and cmp["champion_pred"] == CHAMP
    changed = {(r["text"], r["old"], r["new"], r["true"]) for r in cmp["changed"]}
    assert changed == {("invoice missing", "Login", "Billing", "Billing"),
                       ("2fa broken", "Login", "Billing", "Login"),
                       ("wrong amount", "Billing", "Login", "Billing"),
                       ("login loop", "Billing", "Login", "Login")}
    billing = next(r for r in cmp["per_label"] if r["label"] == "Billing")
    assert billing["champion_recall"] == 0.75 and billing["candidate_recall"] == 0.75
    assert page["gates"] == "passed"


def test_first_candidate_has_nothing_to_compare(tmp_path):
    ws, settings = g.fresh_workspace(tmp_path / "ws")
    base, base_dir = g.make_base(ws)
    held_out = {"y_true": TRUE, "y_pred": CAND, "texts": TEXTS}
    version = g.register(ws, base, base_dir, "solo", labels=LABELS, held_out=held_out)
    assert "compared_with" not in store.client().get_model_version("tailor-tenant-solo", version).tags
    assert reviewer.candidate(settings, "solo", version)["comparison"] is None


def test_review_page_shows_the_comparison(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from tailor.web import users
    from tailor.web.app import create_app
    from tests.unit.test_web import login

    ws, settings = g.fresh_workspace(tmp_path / "ws")
    base, base_dir = g.make_base(ws)
    first = g.register(ws, base, base_dir, "cmpw", requested_by="bob", labels=LABELS, seed=1)
    approval.approve(ws, settings, "cmpw", first, "alice", "first champion")
    monkeypatch.setattr(serving, "predict", lambda tenant, texts, batch_size=64: [
        {"text": t, "label": label, "score": 0.9} for t, label in zip(texts, CHAMP)])
    second = g.register(ws, base, base_dir, "cmpw", requested_by="bob", labels=LABELS, seed=2,
                        held_out={"y_true": TRUE, "y_pred": CAND, "texts": TEXTS})
    users.add_user(ws, "alice", "alice's long password")
    c = TestClient(create_app(ws, settings), base_url="http://localhost")
    login(c, "alice")
    page = c.get(f"/t/cmpw/v/{second}").text
    assert "Against the champion, on the same texts" in page and 'id="changed"' in page
    assert "invoice missing" in page and "7 / 9" in page and "0.45 – 0.94" in page


def test_data_change_counts_rows_added_and_removed_per_label():
    """A row is its text and label: a relabelled text leaves one label and joins the other; at
    most three examples per label and direction, in file order; the tag stays under its limit."""
    before = [("refund", "Billing"), ("invoice", "Billing"), ("reset", "Login"), ("2fa", "Login")]
    after = [("refund", "Billing"), ("2fa", "Billing"), ("reset", "Login")] + [(f"new {i}", "Login") for i in range(5)]
    change = compare.data_change(before, after)
    assert (change["added"], change["removed"], change["rows_before"], change["rows_after"]) == (6, 2, 4, 8)
    billing, login = change["labels"]
    assert (billing["added"], billing["removed"], billing["added_examples"], billing["removed_examples"]) == (
        1, 1, ["2fa"], ["invoice"])
    assert (login["added"], login["removed"], login["removed_examples"]) == (5, 1, ["2fa"])
    assert login["added_examples"] == ["new 0", "new 1", "new 2"]
    long = {**change, "labels": [{**r, "added_examples": ["x" * 500] * 3} for r in change["labels"]]}
    tag = compare.data_change_tag(long, 600)
    assert len(tag) <= 600 and json.loads(tag)["labels"][1]["added"] == 5
    assert "x" * 10 not in tag and "2fa" not in tag, "the tag (copied into the audit log) holds counts, never texts"
    text = compare.data_change_text({"champion_version": "1", **change})
    assert text == "+6 -2 since v1 (Billing +1 -1, Login +5 -1)"


def _register_on(ws, base, base_dir, tenant, data_version, seed, data_rows=None) -> str:
    """A hand-built candidate whose manifest names ``data_version``."""
    from registry.artifacts import candidates

    delta = g.make_delta(ws, base, tenant, labels=LABELS, seed=seed)
    manifest = json.loads((delta / "manifest.json").read_text())
    (delta / "manifest.json").write_text(json.dumps({**manifest, "data_version": data_version}))
    return candidates.register_candidate(ws, tenant, delta, base_dir, base=base, validation=g.PASSED,
                                         requested_by="bob", data_rows=data_rows)


V1 = "text,label\nrefund my card,Billing\ninvoice missing,Billing\ncannot sign in,Login\nlocked out,Login\n"
V2 = ("text,label\nrefund my card,Billing\n<b>charged</b> twice,Billing\nwrong amount,Billing\n"
      "cannot sign in,Billing\nlocked out,Login\n")


def test_list_and_page_show_the_data_change_since_the_champion(tmp_path, monkeypatch, capsys):
    """Champion on data v1, candidate on v2 (rows added, removed, one relabelled): registration
    reads both versions through DVC (v1 from the remote: it is gone from the local cache) and
    stores the change; `review list --json` shows counts (its tag, copied into the audit log, holds
    no texts) and the page the escaped examples (from the run's artifact)."""
    from fastapi.testclient import TestClient

    from flows.adaptation import version_rows
    from tailor.web import users
    from tailor.web.app import create_app
    from tests.unit.test_governance_cli import run
    from tests.unit.test_web import login
    from workspace import versioning
    from workspace.settings import StoreSettings

    ws, settings = g.fresh_workspace(tmp_path / "ws")
    versioning.init_repo(ws, StoreSettings())
    (tmp_path / "v1.csv").write_text(V1)
    (tmp_path / "v2.csv").write_text(V2)
    v1 = versioning.track(ws, "dchg", tmp_path / "v1.csv").md5
    v2 = versioning.track(ws, "dchg", tmp_path / "v2.csv").md5
    cached = next((ws.root / ".dvc" / "cache").rglob(v1.removeprefix("md5:")[2:]))
    cached.chmod(0o644)
    cached.unlink()
    base, base_dir = g.make_base(ws)
    first = _register_on(ws, base, base_dir, "dchg", v1, seed=1)
    approval.approve(ws, settings, "dchg", first, "alice", "first champion")
    second = _register_on(ws, base, base_dir, "dchg", v2, seed=2, data_rows=version_rows(ws, "dchg"))

    code, out = run(ws, "review", "list", "--json", capsys=capsys)
    (row,) = json.loads(out.out)
    change = row["data_change"]
    assert code == 0 and row["version"] == second
    assert (change["champion_version"], change["champion_data_version"], change["data_version"]) == (first, v1, v2)
    assert (change["added"], change["removed"]) == (3, 2)
    billing, login_ = change["labels"]
    assert (billing["added"], billing["removed"], login_["added"], login_["removed"]) == (3, 1, 0, 1)
    assert "added_examples" not in billing and "charged" not in out.out, "texts stay out of tags and the audit log"
    from registry.trail import audit

    assert "charged" not in json.dumps(audit.records(ws)), "the audit log never holds a tenant's texts"

    users.add_user(ws, "alice", "alice's long password")
    c = TestClient(create_app(ws, settings), base_url="http://localhost")
    login(c, "alice")
    page = c.get(f"/t/dchg/v/{second}").text
    assert "+3 added, −2 removed" in page and "<li>&lt;b&gt;charged&lt;/b&gt; twice</li>" in page
    assert "<b>charged" not in page
    assert f"+3 -2 since v{first} (Billing +3 -1, Login -1)" in c.get("/").text


def test_a_champion_data_version_that_cannot_be_read_is_said_not_fatal(tmp_path):
    ws, settings = g.fresh_workspace(tmp_path / "ws")
    base, base_dir = g.make_base(ws)
    first = _register_on(ws, base, base_dir, "dlost", "md5:" + "0" * 32, seed=1)
    approval.approve(ws, settings, "dlost", first, "alice", "first champion")

    def unreadable(md5):
        raise UserError(f"tenant dlost has no committed data version {md5}")

    second = _register_on(ws, base, base_dir, "dlost", "md5:" + "1" * 32, seed=2, data_rows=unreadable)
    change = reviewer.candidate(settings, "dlost", second)["data_changes"]
    assert change["error"] == ("the champion's data md5:" + "0" * 32 + " could not be read: tenant dlost has no "
                               "committed data version md5:" + "0" * 32)
    row = next(r for r in approval.list_reviews("pending", settings) if r["version"] == second)
    assert compare.data_change_text(row["data_change"]).startswith(f"unknown since v{first}: the champion's data")
