"""Consent, base review and erasure through the CLI and the real flows (Prefect, DVC, Great
Expectations, MLflow) on tiny tenants: a tenant with marked sentences is ingested (and once
refused, so it is quarantined and its validation page quotes it), trained into a base, adapted,
approved, served, validated and reviewed, then erased; a byte search of the whole workspace then
finds none of its sentences, while the same search of a copy taken just before the erasure finds
them in every store."""
import csv
import json
import os
import random
import shutil
import subprocess

import pytest

from tailor import cli
from tests.bytesearch import occurrences, stores
from tests.conftest import WORDS, synthetic_tenant, tiny_settings
from workspace.create import init_workspace

MARK = "zqxv"   # in every marked sentence, at both ends, and nowhere else (no tenant id, file or label has it)
OTHERS = {"acme": ["animal", "food", "tool"], "globex": ["music", "sport", "car"], "hooli": ["car", "tool", "law"],
          "nocon": ["weather", "law", "music"]}


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def marked(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(f"{MARK}{seed}{c[:3]}{i:02d} " + " ".join(rng.sample(WORDS[c], 3)) + f" said the customer {MARK}{seed}{i:02d}",
             c.title()) for c in ("weather", "sport", "food") for i in range(n)]


def tailor(ws, *argv, capsys, who=None):
    if who:
        os.environ["TAILOR_USER"] = who
    capsys.readouterr()
    code = cli.main(["--workspace", str(ws), *argv])
    from registry.storage import store

    store.writable()  # the next call writes, as the next command (a fresh process) would
    return code, capsys.readouterr()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("erasure") / "ws"
    inbox = tmp_path_factory.mktemp("inbox")
    ws = init_workspace(root, tiny_settings(tenants="acme,globex,secret,nocon", val_tenants="hooli"))
    said = {}

    def run(*argv, who="alice"):
        os.environ["TAILOR_USER"] = who
        from registry.storage import store

        code = cli.main(["--workspace", str(root), *argv])
        store.writable()
        return code

    for i, (tenant, classes) in enumerate(OTHERS.items()):
        texts, labels = synthetic_tenant(classes, 10, seed=i)
        assert run("ingest", tenant, str(write_csv(inbox / f"{tenant}.csv", zip(texts, labels)))) == 0
    sentences = marked(10, 1)
    assert run("ingest", "secret", str(write_csv(inbox / "secret.csv", sentences))) == 0
    long = f"{MARK}1long " + "the customer wrote at length " * 200 + MARK   # over validation.max_text_chars
    bad = [(long, "Weather")] + [(sentences[0][0], "Weather")] * 8 + sentences[1:4]  # refused; its pages quote them
    assert run("ingest", "secret", str(write_csv(inbox / "bad.csv", bad))) == 2
    assert run("tenant", "set", "nocon", "--train-base", "no", "--reason", "contract 7.2: no pooled training") == 0
    assert run("meta-train", "--register-anyway", who="trainer") == 0
    said["adapt_before_approval"] = run("adapt", "--all", who="bob")
    said["trainer_approves"] = run("review", "approve", "--base-version", "1", "--reason", "mine", who="trainer")
    assert run("review", "approve", "--base-version", "1", "--reason", "evidence read", who="alice") == 0
    assert run("adapt", "--all", who="bob") == 0
    for tenant in ("secret", "acme"):
        assert run("review", "approve", tenant, "1", "--reason", "ok", "--override-reason", "tiny test model") == 0
    assert run("predict", "secret", "rain snow storm") == 0
    assert run("validate", "secret") == 0
    more = marked(12, 1)
    assert run("ingest", "secret", str(write_csv(inbox / "secret-2.csv", more))) == 0
    assert run("adapt", "secret", who="bob") == 0   # v2: compared with v1 on its texts, data change since v1
    assert run("review", "list", "--json") == 0
    os.environ.pop("TAILOR_USER", None)
    return {"root": root, "ws": ws, "inbox": inbox, "said": said,
            "sentences": sorted({t for t, _ in sentences + more})}


def test_a_non_consenting_tenant_never_reaches_a_base(world, capsys):
    from registry.storage import store

    code, out = tailor(world["root"], "review", "list", "--status", "all", "--json", capsys=capsys)
    (base,) = [r for r in json.loads(out.out) if r["kind"] == "base"]
    assert set(base["trained_on"]) == {"acme", "globex", "secret", "hooli"}, "nocon said no"
    assert "nocon" in base["left_out"] and "contract 7.2" in base["left_out"]["nocon"]
    tags = store.client().get_model_version("tailor-base", "1").tags
    assert "data_version.nocon" not in tags
    code, out = tailor(world["root"], "tenant", "show", "nocon", "--json", capsys=capsys)
    shown = json.loads(out.out)
    assert shown["train_base"] is False and shown["consent"]["source"] == "recorded"


def test_a_base_without_approval_is_never_used_by_adapt(world):
    assert world["said"]["adapt_before_approval"] == 2, "adapt refused while the only base waited for review"
    assert world["said"]["trainer_approves"] == 2, "four eyes: who trained the base cannot approve it"


def test_erasure_leaves_no_sentence_of_the_tenant_anywhere(world, capsys, tmp_path):
    root = world["root"]
    needles = [s.encode() for s in world["sentences"]] + [MARK.encode()]

    # the same search, on the workspace as it is before the erasure: it finds the sentences
    before = tmp_path / "before"
    shutil.copytree(root, before, symlinks=True)
    hits = occurrences(before, needles)
    assert hits[MARK], "the search cannot find what it looks for"
    found_in = stores(before, hits[MARK])
    for place in (".dvc/cache", ".tailor/dvc-remote", ".tailor/mlartifacts", ".tailor/data_docs", ".tailor/gx",
                  ".tailor/quarantine", "data/tenants"):
        assert place in found_in, f"before erasure the sentences are in {place}"
    assert ".tailor/mlflow.db" not in found_in, "tags and the audit log (in the tracking store) never hold texts"
    assert sum(1 for s in world["sentences"] if hits[s]) == len(world["sentences"]), "every sentence is found"

    code, out = tailor(root, "tenant", "erase", "secret", "--reason", "customer left", "--dry-run", "--json",
                       capsys=capsys, who="alice")
    plan = json.loads(out.out)
    assert code == 0 and plan["dry_run"] and len(plan["data"]["data_versions"]) == 2
    assert {v["version"] for v in plan["registry"]["versions"]} == {"1", "2"} and plan["registry"]["bases"]
    assert occurrences(root, [MARK.encode()])[MARK], "a dry run changes nothing"

    code, out = tailor(root, "tenant", "erase", "secret", "--reason", "customer left", "--json", capsys=capsys,
                       who="alice")
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["bases_marked"] == ["1"] and result["plan"]["new_base"] and "acme" in result["plan"]["readapt"]
    assert {"suite tailor-secret", "checkpoint tailor-secret"} <= set(result["gx_objects"])  # one shared data asset
    assert len(result["prefect_runs"]) >= 3, "its ingest runs (and their logs) are deleted from Prefect"

    after = occurrences(root, needles)
    assert {n: h for n, h in after.items() if h} == {}, "no sentence of the erased tenant is left anywhere"

    # git history keeps the .dvc pointers (md5, size), never the bytes
    log = subprocess.run(["git", "-C", str(root), "log", "-p", "--", "data/tenants/secret"], capture_output=True,
                         text=True, check=True).stdout
    assert "md5:" in log and "data: erase secret" in log and MARK not in log

    code, out = tailor(root, "audit", "verify", capsys=capsys)
    assert code == 0 and "intact" in out.out, out.out + out.err
    code, out = tailor(root, "predict", "secret", "rain", capsys=capsys)
    assert code == 2 and len(out.err.strip().splitlines()) == 1
    code, out = tailor(root, "adapt", "--all", capsys=capsys, who="bob")
    assert code == 2 and "contains data of erased tenant(s) secret" in out.err
    code, out = tailor(root, "rollback", "--base-version", "1", "--reason", "x", capsys=capsys, who="alice")
    assert code == 2 and "erased" in out.err

    code, out = tailor(root, "lineage", "--tenant-data", "secret", "--json", capsys=capsys)
    lineage = json.loads(out.out)
    assert lineage["erasure"]["state"] == "done" and [b["version"] for b in lineage["bases"]] == ["1"]
    assert lineage["bases"][0]["erased_data"] == ["secret"]
    assert {(c["tenant"], c["version"]) for c in lineage["champions"]} >= {("acme", "1")}
    assert {c["status"] for c in lineage["own"]} == {"erased"}
    code, out = tailor(root, "tenant", "erase", "secret", "--reason", "again", capsys=capsys, who="alice")
    assert code == 0 and "nothing left to remove" in out.out


@pytest.mark.slow   # a workspace trained and adapted, then five killed `tailor` processes: `make test-slow`
def test_an_erasure_killed_at_each_step_is_finished_by_running_it_again(tmp_path, capsys):
    """kill -9 at every step of the erasure flow in turn: each run resumes where the killed one
    stopped; in between, nothing of the tenant serves, its ingest is refused and the audit log
    verifies; the last run finishes, and no sentence is left."""
    import sys
    from pathlib import Path

    from tests.governance import approve_base_cli

    root = tmp_path / "ws"
    init_workspace(root, tiny_settings(tenants="acme,secret", val_tenants="globex"))
    for i, tenant in enumerate(("acme", "globex")):
        texts, labels = synthetic_tenant(OTHERS[tenant], 10, seed=i)
        assert tailor(root, "ingest", tenant, str(write_csv(tmp_path / f"{tenant}.csv", zip(texts, labels))),
                      capsys=capsys)[0] == 0
    sentences = marked(10, 2)
    assert tailor(root, "ingest", "secret", str(write_csv(tmp_path / "secret.csv", sentences)), capsys=capsys)[0] == 0
    assert tailor(root, "meta-train", "--register-anyway", capsys=capsys, who="trainer")[0] == 0
    approve_base_cli(root)
    assert tailor(root, "adapt", "secret", capsys=capsys, who="bob")[0] == 0
    assert tailor(root, "review", "approve", "secret", "1", "--reason", "ok", "--override-reason", "tiny",
                  capsys=capsys, who="alice")[0] == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "TAILOR_USER": "alice"}
    argv = [sys.executable, "-c", "from tailor.cli import console; console()", "-w", str(root),
            "tenant", "erase", "secret", "--reason", "customer left"]
    for point in ("erase:marked", "erase:registry", "erase:data", "erase:artifacts", "erase:compacted"):
        killed = subprocess.run(argv, env={**env, "TAILOR_FAULT": point}, capture_output=True, text=True, timeout=600)
        assert killed.returncode == -9, (point, killed.stderr[-2000:])
        code, out = tailor(root, "audit", "verify", capsys=capsys)
        assert code == 0, (point, out.out)
        if point != "erase:marked":
            code, out = tailor(root, "predict", "secret", "rain", capsys=capsys)
            assert code == 2, f"after {point} nothing of the tenant serves"
        code, out = tailor(root, "ingest", "secret", str(tmp_path / "secret.csv"), capsys=capsys)
        assert code == 2 and "is being erased" in out.err
    code, out = tailor(root, "tenant", "erase", "secret", "--reason", "customer left", capsys=capsys, who="alice")
    assert code == 0, out.err
    after = occurrences(root, [MARK.encode()] + [t.encode() for t, _ in sentences])
    assert {n: h for n, h in after.items() if h} == {}
    erases = [line for line in subprocess.run(["git", "-C", str(root), "log", "--format=%s"], capture_output=True,
                                              text=True).stdout.splitlines() if line.startswith("data: erase secret")]
    assert len(erases) == 1, "the data was removed in one commit, not once per run"
    assert tailor(root, "audit", "verify", capsys=capsys)[0] == 0
