"""The whole loop through the CLI and the real flows (Prefect, DVC, Great Expectations, MLflow),
on tiny tenants and the tiny encoder: what a user runs, and what a user must never lose."""
import csv
import json
import os
import re
import time

import pytest

from tailor import cli
from tests.conftest import edit_params, synthetic_tenant, tiny_settings
from tests.governance import approve_base_cli
from workspace.create import init_workspace

TENANTS = {
    "acme": ["animal", "food", "tool"], "globex": ["music", "sport", "car"],
    "initech": ["animal", "music", "law"], "umbrella": ["food", "sport", "weather"],
    "hooli": ["car", "tool", "law"], "newco": ["weather", "law", "music"],
}


def write_csv(path, texts, labels):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(texts, labels))
    return path


def tailor(ws, *argv, capsys=None, who=None):
    if who:
        os.environ["TAILOR_USER"] = who  # the identity the command acts as (as a shell would set it)
    if capsys:
        capsys.readouterr()  # drop what earlier commands printed
    code = cli.main(["--workspace", str(ws), *argv])
    from registry.storage import store

    # a read command leaves its read-only view configured; the test's own MLflow calls come next,
    # as the next command (a fresh process) would make them, through MLflow
    store.writable()
    out = capsys.readouterr() if capsys else None
    return code, out


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    inbox = tmp_path_factory.mktemp("inbox")
    settings = tiny_settings(tenants="acme,globex,initech,umbrella,hooli", val_tenants="hooli")
    ws = init_workspace(root, settings)
    files = {t: write_csv(inbox / f"{t}.csv", *synthetic_tenant(c, 10, seed=i))
             for i, (t, c) in enumerate(TENANTS.items())}
    results = {"ws": root, "inbox": inbox, "files": files}
    os.environ["TAILOR_USER"] = "Dana"  # who ingests and meta-trains
    for tenant, path in files.items():
        assert cli.main(["--workspace", str(root), "ingest", tenant, str(path)]) == 0
    # the first base of a workspace, registered even if no step of the tiny run beat its start
    assert cli.main(["--workspace", str(root), "meta-train", "--register-anyway"]) == 0
    approve_base_cli(root)  # bases are reviewed too: a second person approves it before adapt uses it
    os.environ["TAILOR_USER"] = "CI-Bot"
    assert cli.main(["--workspace", str(root), "adapt", "--all", "--requested-by", "ci-bot"]) == 0
    yield results
    os.environ.pop("TAILOR_USER", None)


def test_ingest_and_meta_train_name_the_person_who_ran_them(loop):
    """The base's register record names the person, not ``service:meta-train``; each tenant's data
    commit has them as its author (git says who committed; the author is who asked)."""
    import subprocess

    from registry.trail import audit

    base = [r for r in audit.records(None, audit.BASE_KEY) if r["action"] == "register-base"]
    assert base and {r["actor"] for r in base} == {"dana"}
    authors = subprocess.run(["git", "-C", str(loop["ws"]), "log", "--format=%an", "--", "data/tenants/acme"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert authors and set(authors) == {"dana"}


def test_every_tenant_has_a_pending_candidate(loop, capsys):
    code, out = tailor(loop["ws"], "review", "list", "--json", capsys=capsys)
    assert code == 0
    rows = json.loads(out.out)
    assert sorted(r["tenant"] for r in rows) == sorted(TENANTS)
    assert {r["status"] for r in rows} == {"pending"}


def test_approve_predict_rollback_and_lineage(loop, capsys):
    ws = loop["ws"]
    code, out = tailor(ws, "review", "approve", "newco", "1", "--reason", "ok", capsys=capsys, who=" ci-bot")
    assert code == 2 and "four-eyes" in out.err, "the requester may not approve, however spelled"
    code, out = tailor(ws, "review", "approve", "newco", "1", "--reviewer", "bob", "--reason", "ok",
                       capsys=capsys, who="alice")
    assert code == 2 and "is not you" in out.err, "a flag cannot act as someone else"
    assert tailor(ws, "review", "approve", "newco", "1", "--reviewer", "Alice", "--reason", "ok",
                  "--override-reason", "tiny test model", who="alice")[0] == 0
    asked = {"rain snow storm": "Weather", "fog hail sleet": "Weather", "court judge jury": "Law",
             "appeal verdict bail": "Law", "guitar piano drum": "Music", "violin harp choir": "Music"}
    code, out = tailor(ws, "predict", "newco", *asked, "--json", capsys=capsys)
    assert code == 0
    labels = [row["label"] for row in json.loads(out.out)]
    # texts it never saw: right on most, and every label in use (a constant answer would fail both)
    assert set(labels) == {"Weather", "Law", "Music"}
    assert sum(got == want for got, want in zip(labels, asked.values())) >= 5
    # new data -> second candidate -> approve -> rollback to v1
    write_csv(loop["inbox"] / "newco2.csv", *synthetic_tenant(TENANTS["newco"], 8, seed=42))
    assert tailor(ws, "ingest", "newco", str(loop["inbox"] / "newco2.csv"))[0] == 0
    code, out = tailor(ws, "adapt", "--all", "--dry-run", "--json", capsys=capsys, who="bob")
    plan = json.loads(out.out)  # newco's data changed: it, and nothing is registered by asking
    assert code == 0 and plan["dry_run"] and {"tenant": "newco", "why": "data changed"} in plan["would_adapt"]
    from registry.storage import store

    assert len(store.versions("tailor-tenant-newco")) == 1
    assert tailor(ws, "adapt", "newco", who="bob")[0] == 0
    assert tailor(ws, "review", "approve", "newco", "2", "--reason", "ok",
                  "--override-reason", "tiny test model", who="alice")[0] == 0
    assert tailor(ws, "rollback", "newco", "--reason", "regression", who="alice")[0] == 0
    code, out = tailor(ws, "lineage", "newco", "--json", capsys=capsys)
    lineage = json.loads(out.out)
    assert lineage["champion"] == "1"
    v1 = lineage["versions"][0]
    assert v1["version"] == "1" and v1["data_version"].startswith("md5:")
    assert v1["base_version"] == "1" and v1["validation"] == "passed"
    events = [(e["action"], e["actor"]) for e in v1["events"]]
    assert ("approve", "alice") in events and ("rollback", "alice") in events
    code, out = tailor(ws, "lineage", "newco", "--version", "2", "--json", capsys=capsys)
    assert json.loads(out.out)["versions"][0]["status"] == "rolled_back"
    code, out = tailor(ws, "audit", "verify", capsys=capsys)
    assert code == 0 and "intact" in out.out


def test_bad_file_is_refused_and_loses_nothing(loop, capsys):
    ws = loop["ws"]
    code, out = tailor(ws, "data", "show", "acme", "--json", capsys=capsys)
    before = json.loads(out.out)[0]["md5"]
    bad = write_csv(loop["inbox"] / "bad.csv", ["only one", "", "x"], ["A", "B", "B"])
    code, out = tailor(ws, "ingest", "acme", str(bad), capsys=capsys)
    assert code == 2
    assert "Traceback" not in out.err and len(out.err.strip().splitlines()) == 1
    code, out = tailor(ws, "data", "show", "acme", "--json", capsys=capsys)
    assert json.loads(out.out)[0]["md5"] == before
    assert any((ws / ".tailor" / "quarantine" / "acme").iterdir())


@pytest.mark.parametrize("argv, message", [
    (["ingest", "Bad_Id", "x.csv"], "invalid tenant id"),
    (["ingest", "acme", "/no/such/file.csv"], "no such file"),
    (["review", "approve", "acme", "99", "--reason", "x"], "acme"),
    (["predict", "nobody-here", "hello"], "nobody-here"),
    (["meta-train", "--algorithm", "sgd"], "'sgd' is not one of 'pooled', 'fomaml'"),
])
def test_user_mistakes_get_one_line_and_exit_2(loop, capsys, argv, message):
    code, out = tailor(loop["ws"], *argv, capsys=capsys)
    assert code == 2
    assert message in out.err and "Traceback" not in out.err
    assert len(out.err.strip().splitlines()) == 1


def test_mlflow_shows_what_a_reviewer_sees(loop, capsys):
    """Each version's run carries the confusion matrix, per-label metrics, the validation summary
    and the data as a dataset input with its DVC digest; its description follows its state; its
    validation page in Data Docs exists."""
    from pathlib import Path
    from urllib.parse import urlparse

    from registry.storage import store

    code, out = tailor(loop["ws"], "lineage", "acme", "--version", "1", "--json", capsys=capsys)
    v1 = json.loads(out.out)["versions"][0]
    c = store.client()
    mv = c.get_model_version("tailor-tenant-acme", "1")
    names = {a.path for a in c.list_artifacts(mv.run_id, "review")}
    assert names == {"review/confusion_matrix.png", "review/per_label.json", "review/validation.json"}
    review = json.loads(Path(c.download_artifacts(mv.run_id, "review/per_label.json")).read_text())
    assert [r["label"] for r in review["per_label"]] == sorted(["Animal", "Food", "Tool"])
    assert sum(map(sum, review["confusion"])) == review["n_held_out"] > 0
    run = c.get_run(mv.run_id)
    dataset = run.inputs.dataset_inputs[0]
    assert v1["data_version"].removeprefix("md5:").startswith(dataset.dataset.digest)
    assert {t.key: t.value for t in dataset.tags}["dvc_md5"] == v1["data_version"]
    from lightning_modules.adaptation import BASELINES

    assert mv.tags["baseline_method"] in BASELINES and mv.tags["head"]
    assert "pending review" in mv.description and "requested by ci-bot" in mv.description
    page = Path(urlparse(mv.tags["data_docs"]).path)
    assert page.is_file() and v1["data_version"].removeprefix("md5:") in str(page)
    approved = c.get_model_version("tailor-tenant-newco", "1")
    assert "approved by alice" in approved.description


# --- bad input and faults (issue 11): appended so they run after the loop above ----------------

def test_batch_adapt_reports_unknown_and_broken_tenants_on_one_line_and_registers_the_rest(loop, capsys):
    """`adapt a b c` with an unknown id, an invalid id, a hand-edited data file and a tenant larger
    than limits.max_adapt_rows: the good ones (the large one sampled) are registered."""
    from registry.storage import store

    ws, inbox = loop["ws"], loop["inbox"]
    big = write_csv(inbox / "bigco.csv", *synthetic_tenant(["animal", "law", "food"], 40, seed=9))
    assert tailor(ws, "ingest", "bigco", str(big))[0] == 0
    edited = ws / "data" / "tenants" / "initech" / "data.csv"
    original = edited.read_bytes()
    params = ws / "params.yaml"
    settings_text = params.read_text()
    try:
        edited.write_bytes(original + b"edited by hand,Animal\n")
        params.write_text(settings_text.replace("max_adapt_rows: 2000", "max_adapt_rows: 60"))
        code, out = tailor(ws, "adapt", "acme", "no-such-tenant", "Bad_Id", "initech", "bigco",
                           "--requested-by", "ci-bot", capsys=capsys, who="ci-bot")
    finally:
        edited.write_bytes(original)
        params.write_text(settings_text)
    assert code == 2
    assert len(out.err.splitlines()) == 1 and "Traceback" not in out.err
    assert all(t in out.err for t in ("no-such-tenant", "Bad_Id", "initech", "changed outside Tailor"))
    # bigco is new; acme's data and base are unchanged, so its delta is the one v1 already holds
    assert "1 new candidate(s) pending review, 1 already registered" in out.out
    bigco = store.versions("tailor-tenant-bigco")
    assert len(bigco) == 1 and bigco[0].tags["sampled"].startswith("60 of 120 rows (stratified by label")
    acme = store.versions("tailor-tenant-acme")
    assert acme and acme[0].tags["sampled"] == "no"


def test_predict_file_streams_neutralises_formulas_and_never_overwrites_its_input(loop, capsys, tmp_path):
    ws = loop["ws"]  # newco's champion is v1 after the rollback above
    texts = ["rain snow storm", "=cmd|' /C calc'!A0", "@SUM(1+1)", "+1 court", "-2 judge", "", "  ",
             *[f"court judge jury {i}" for i in range(150)]]
    src = write_csv(tmp_path / "in.csv", texts, ["?"] * len(texts))
    before = src.read_bytes()
    out_file = tmp_path / "out.csv"
    code, out = tailor(ws, "predict", "newco", "--file", str(src), "--out", str(out_file), capsys=capsys)
    assert code == 0 and out.err == "" and len(out.out.splitlines()) == 1
    assert f"wrote {len(texts)} predictions" in out.out and "rows/s" in out.out and "2 empty" in out.out
    with open(out_file, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows[:5]] == ["rain snow storm", "'=cmd|' /C calc'!A0", "'@SUM(1+1)",
                                             "'+1 court", "'-2 judge"]
    assert rows[5]["label"] == "" and rows[6]["label"] == ""  # an explicit empty result
    assert {r["label"] for r in rows[7:]} <= {"Weather", "Law", "Music"}
    link = tmp_path / "link.csv"
    link.symlink_to(src)
    for bad_out in (src, link):
        code, out = tailor(ws, "predict", "newco", "--file", str(src), "--out", str(bad_out), capsys=capsys)
        assert code == 2 and out.out == "" and len(out.err.splitlines()) == 1 and "input file" in out.err
    assert src.read_bytes() == before and link.is_symlink()


def test_mlflow_models_serve_answers_for_the_champion_as_tailor_predict_does(loop, capsys, tmp_path):
    """The warm path for traffic: `mlflow models serve` on `@champion` answers a request with the
    same labels `tailor predict` gives (newco's champion is v1 after the rollback above)."""
    import urllib.request

    from registry.storage import store
    from tests.servers import model_server

    texts = ["rain snow storm", "court judge jury", "guitar piano drum", "fog hail sleet"]
    code, out = tailor(loop["ws"], "predict", "newco", *texts, "--json", capsys=capsys)
    assert code == 0
    want = [row["label"] for row in json.loads(out.out)]
    assert len(set(want)) >= 2
    with model_server("models:/tailor-tenant-newco@champion", store.tracking_uri(), tmp_path / "serve.log") as srv:
        url = srv.ready(240)
        body = json.dumps({"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}}).encode()
        request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
    got = [row["label"] for row in answer["predictions"]]
    assert got == want


def test_predict_in_a_fresh_process_reads_the_store_without_mlflow(loop, capsys):
    """`tailor predict` answers quickly cold because it reads the embedded store with sqlite (no
    MLflow, Prefect, GX or DVC import), and gives the labels the in-process command gives."""
    import subprocess
    import sys

    texts = ["rain snow storm", "court judge jury", "guitar piano drum"]
    code, out = tailor(loop["ws"], "predict", "newco", *texts, "--json", capsys=capsys)
    assert code == 0
    want = [row["label"] for row in json.loads(out.out)]
    script = ("import json, sys; from tailor.cli import main; code = main(sys.argv[1:]); "
              "print(json.dumps(sorted(m for m in ('mlflow', 'sqlalchemy', 'prefect', 'great_expectations', "
              "'dvc', 'pytorch_lightning', 'pandas') if m in sys.modules)), file=sys.stderr); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, "--workspace", str(loop["ws"]), "predict", "newco", *texts,
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [row["label"] for row in json.loads(done.stdout)] == want
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("argv, message", [
    (["predict", "newco", ""], "text 1 is empty"),
    (["predict", "newco", "dog", "cat\udcff"], "text 2 is not UTF-8 text"),  # a non-UTF-8 byte in argv
    (["predict", "newco", "--file", "{tmp}/empty.csv"], "is empty"),
    (["predict", "newco", "--file", "{tmp}/notext.csv"], "lacks a text column"),
    (["predict", "newco", "--file", "{tmp}/latin1.csv"], "not UTF-8"),
    (["predict", "newco", "--file", "{tmp}/link.csv"], "symbolic link"),
    (["predict", "newco", "--file", "{tmp}/none.csv"], "no such file"),
    (["predict", "newco", "hi", "--out", "{tmp}"], "is a folder"),
    (["predict", "acme", "hello"], "acme"),  # no champion yet
])
def test_bad_predict_input_is_one_line(loop, capsys, tmp_path, argv, message):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "notext.csv").write_text("body\nhello\n")
    (tmp_path / "latin1.csv").write_bytes(b"text\ncaf\xe9\n")
    (tmp_path / "link.csv").symlink_to("/etc/passwd")
    code, out = tailor(loop["ws"], *[a.format(tmp=tmp_path) for a in argv], capsys=capsys)
    assert code == 2 and out.out == "" and len(out.err.splitlines()) == 1, out.err
    assert message in out.err and "Traceback" not in out.err


def test_every_commands_json_form_prints_json_alone(loop, capsys, tmp_path, monkeypatch):
    """`--json` means JSON alone on stdout, for every command and option combination that has it
    (issue 31, finding 7: `predict --file F --out G --json` printed a sentence)."""
    import io
    import sys

    ws = loop["ws"]
    inbox = loop["inbox"]
    write_csv(inbox / "jsonco.csv", *synthetic_tenant(["animal", "food", "tool"], 10, seed=77))
    texts = write_csv(tmp_path / "texts.csv", ["dog cat horse", "bread rice soup"], ["?", "?"])
    (tmp_path / "inbox").mkdir()
    write_csv(tmp_path / "inbox" / "jsonco2.csv", *synthetic_tenant(["animal", "food", "tool"], 9, seed=78))
    acme_md5 = json.loads(tailor(ws, "data", "show", "acme", "--json", capsys=capsys)[1].out)[-1]["md5"]
    runs = [
        (["init", str(tmp_path / "another"), "--json"], None),
        (["ingest", "acme", str(loop["files"]["acme"]), "--json"], None),   # unchanged: nothing to do
        (["ingest", "jsonco", str(inbox / "jsonco.csv"), "--json"], None),  # the flow runs
        (["ingest", "--dir", str(tmp_path / "inbox"), "--json"], None),
        (["validate", "jsonco", "--json"], None),
        (["adapt", "jsonco", "--json"], "ci-bot"),
        (["adapt", "--all", "--dry-run", "--json"], "ci-bot"),
        (["review", "list", "--json"], None),
        (["review", "list", "--status", "all", "--json"], None),
        (["review", "approve", "jsonco", "1", "--reason", "ok", "--override-reason", "tiny", "--dry-run", "--json"],
         "alice"),
        (["review", "approve", "jsonco", "1", "--reason", "ok", "--override-reason", "tiny", "--json"], "alice"),
        (["review", "reject", "acme", "1", "--reason", "no", "--dry-run", "--json"], "alice"),
        (["predict", "jsonco", "dog cat horse", "--json"], None),
        (["predict", "jsonco", "--file", str(texts), "--json"], None),
        (["predict", "jsonco", "--file", str(texts), "--out", str(tmp_path / "out.csv"), "--json"], None),
        (["predict", "jsonco", "--file", str(texts), "--out", str(tmp_path / "out.csv"), "--force", "--json"], None),
        (["lineage", "jsonco", "--json"], None),
        (["lineage", "jsonco", "--at", "2020-01-01T00:00:00Z", "--json"], None),
        (["lineage", "--all", "--json"], None),
        (["lineage", "--all", "--html", str(tmp_path / "report.html"), "--json"], None),
        (["audit", "verify", "--json"], None),
        (["data", "show", "jsonco", "--json"], None),
        (["data", "checkout", "acme", acme_md5[:8], "--dry-run", "--json"], None),
        (["user", "add", "jane", "--password-stdin", "--json"], None),
        (["meta-train", "--json"], None),
    ]
    for argv, who in runs:
        monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough password\n"))
        code, out = tailor(ws, *argv, capsys=capsys, who=who or "alice")
        assert code == 0, (argv, out.err[-1000:])
        try:
            json.loads(out.out)
        except ValueError:
            raise AssertionError(f"tailor {' '.join(argv)}: stdout is not JSON alone: {out.out[:500]!r}") from None


def test_meta_train_judges_the_base_on_tenants_it_never_trained_on(loop, capsys):
    """The evidence tenants are held out of training and early stopping; the base records only the
    data it was trained on; --json carries the evidence: paired differences with n and interval."""
    from registry.artifacts import base_model
    from registry.storage import store

    called = time.time()
    code, out = tailor(loop["ws"], "meta-train", "--json", "--register-anyway", capsys=capsys, who="Dana")
    assert code == 0, out.err[-1000:]
    ref = json.loads(out.out)
    # called in this (the test's) process, the budget counts from the command, not from the process's
    # start minutes ago (the demo's base got 54 s less); a finished run leaves no checkpoint to resume
    plan = next(line for line in out.err.splitlines() if "time budget" in line and "from the command's start" in line)
    assert int(re.search(r"\((\d+)s ago\)", plan).group(1)) <= time.time() - called + 1, plan
    assert not any((loop["ws"] / ".tailor" / "runs" / "meta-train-checkpoints").glob("*/*.ckpt"))
    held = set(ref["evidence_tenants"])
    assert held and not held & (set(ref["train_tenants"]) | set(ref["val_tenants"]))
    ev = ref["evidence"]
    assert set(ev["held_out_tenants"]) == held and ev["n_splits"] > 0
    for pair in ("new_base-frozen_names", "new_base-no_meta", "new_base-current_base"):
        assert pair in ev["paired"] and ev["paired"][pair]["n"] == ev["n_splits"], pair
    store.writable()
    mv = store.model_version(base_model.BASE_MODEL_NAME, ref["version"], base_model.BASE_MODEL_NAME)
    trained_on = {k.split(".", 1)[1] for k in mv.tags if k.startswith("data_version.")}
    assert trained_on == set(ref["train_tenants"]) | set(ref["val_tenants"]) and not trained_on & held
    assert mv.tags["evidence.paired.new_base-frozen_names"].endswith(f" {ev['n_splits']}")
    from registry.review.bases import evidence_from_tags, evidence_lines

    shown = evidence_lines(evidence_from_tags(mv.tags))   # what review list and the review page show
    assert any(line.startswith("paired new_base-frozen_names:") and f"n={ev['n_splits']}" in line for line in shown)
    assert any(line.startswith("accuracy new_base:") and "±" in line for line in shown)


def test_a_base_no_step_improved_is_not_registered_unless_asked(loop, capsys):
    """Issue 31, finding 8: a 1-minute budget ran 0 meta-steps and registered a base anyway, and every
    candidate then read "meta-learned". With no training step (meta_steps and pooled_steps 0) nothing
    can improve on the start: meta-train says so, registers nothing, and leaves the current base as it was."""
    from mlflow import MlflowClient

    from registry.artifacts import base_model
    from registry.storage import store

    params = loop["ws"] / "params.yaml"
    before_text = params.read_text(encoding="utf-8")
    store.writable()
    count = lambda: len(MlflowClient().search_model_versions(f"name='{base_model.BASE_MODEL_NAME}'"))  # noqa: E731
    before = count()
    edit_params(loop["ws"], "meta_train", meta_steps=0, pooled_steps=0)
    try:
        code, out = tailor(loop["ws"], "meta-train", "--json", capsys=capsys, who="Dana")
    finally:
        params.write_text(before_text, encoding="utf-8")
    assert code == 0, out.err[-1000:]
    ref = json.loads(out.out)
    assert ref["registered"] is False and "improved" in ref["reason"]
    store.writable()
    assert count() == before
