"""`tailor ingest --dir`: a folder of tenant files through one flow, on the real DVC, git and Great
Expectations. Each file is validated and quarantined as a single ingest would; the good ones are
versioned one git commit (and one DVC push) per batch; a bad file touches no other tenant; a
kill -9 in the middle of a batch leaves every tenant of it at its previous version."""
import os
import subprocess
import sys

import pytest
import yaml

from tailor import cli
from tests.conftest import synthetic_tenant, tiny_settings
from tests.e2e.test_loop import write_csv
from workspace import versioning
from workspace.create import init_workspace
from workspace.dvcfiles import md5_of
from workspace.gitrepo import git
from workspace.paths import Workspace

GOOD = {"t-01": ["animal", "food"], "t-02": ["tool", "music"], "t-03": ["sport", "car"],
        "t-04": ["weather", "law"], "t-05": ["animal", "law"]}


@pytest.fixture(scope="module")
def bulk(tmp_path_factory):
    root = tmp_path_factory.mktemp("bulk") / "ws"
    ws = init_workspace(root, tiny_settings().replace("schedule", ingest_batch=3))
    inbox = tmp_path_factory.mktemp("inbox")
    acme = write_csv(inbox / "acme-v1.csv", *synthetic_tenant(["music", "car"], 6, seed=40))
    assert cli.main(["-w", str(root), "ingest", "acme", str(acme)]) == 0
    folder = tmp_path_factory.mktemp("folder")
    for i, (tenant, classes) in enumerate(GOOD.items()):
        write_csv(folder / f"{tenant}.csv", *synthetic_tenant(classes, 6, seed=i))
    write_csv(folder / "acme.csv", *synthetic_tenant(["food"], 8, seed=41))  # one label: fails validation
    (folder / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    write_csv(folder / "Bad_Name.csv", *synthetic_tenant(["food", "tool"], 6, seed=42))
    write_csv(folder / "copyco.csv", *synthetic_tenant(["music", "car"], 6, seed=40))  # acme's texts
    (folder / "notes.txt").write_text("not a tenant file")
    return {"root": root, "ws": ws, "folder": folder, "acme": versioning.current_version(ws, "acme")}


def bulk_commits(root):
    return git(Workspace(root), "log", "--format=%s").count("(bulk ingest)")


def test_good_files_are_versioned_one_commit_per_batch_and_bad_ones_quarantined(bulk, capsys):
    root, ws, folder = bulk["root"], bulk["ws"], bulk["folder"]
    capsys.readouterr()
    code = cli.main(["-w", str(root), "ingest", "--dir", str(folder)])
    out = capsys.readouterr()
    assert code == 2 and len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
    assert "5 tenant file(s) versioned, 4 refused" in out.out
    for tenant in GOOD:
        version = versioning.current_version(ws, tenant)
        assert version.git_commit and version.md5 == f"md5:{md5_of(folder / f'{tenant}.csv')}"
    assert bulk_commits(root) == 2, "5 good files in batches of 3: two commits"
    assert versioning.current_version(ws, "acme") == bulk["acme"], "a refused file leaves the previous data"
    for tenant, words in (("acme", "distinct label"), ("binary", "NUL bytes"), ("copyco", "cross-tenant")):
        assert tenant in out.out and words in out.out.split(f"{tenant}.csv:")[1].splitlines()[0]
        assert list((ws.state_dir / "quarantine" / tenant).glob("*.report.json")), f"{tenant} not quarantined"
        assert versioning.current_version(ws, tenant) is None or tenant == "acme"
    assert "Bad_Name.csv: failed" in out.out and not (ws.data_dir / "Bad_Name").exists()
    assert "notes.txt" not in out.out
    assert "t-01" in (root / "dvc.yaml").read_text(), "the pipeline lists the new tenants' data"


def test_every_validated_file_has_its_data_docs_pages_and_index_entry(bulk):
    """Batching the Data Docs build must not lose what a single ingest shows: each validated file's
    result page (found by its data version, as the review page finds it), its suite's page, and
    a line in the site's index; a refused file's failing result is in the site too."""
    from data_checks.expectations import docs_page

    ws, folder = bulk["ws"], bulk["folder"]
    site = ws.data_docs_dir
    index = (site / "index.html").read_text(encoding="utf-8")
    for tenant in [*GOOD, "copyco"]:
        page = docs_page(site, tenant, md5_of(folder / f"{tenant}.csv"))
        assert page is not None, f"no Data Docs page for {tenant}'s validated file"
        assert (site / "expectations" / f"tailor-{tenant}.html").is_file(), f"no suite page for {tenant}"
        assert f"tailor-{tenant}" in index
    results = list((ws.state_dir / "gx" / "uncommitted" / "validations" / "tailor-t-01").rglob("*.json"))
    assert results, "the validation result is kept in the file-backed GX context"
    config = yaml.safe_load((ws.state_dir / "gx" / "great_expectations.yml").read_text(encoding="utf-8"))
    assets = config["fluent_datasources"]["tailor"]["assets"]
    # one asset for every tenant: the config GX parses on every open does not grow with the fleet
    assert list(assets) == ["tenant-file"] and list(assets["tenant-file"]["batch_definitions"]) == ["whole-file"]


def test_an_unchanged_folder_again_commits_nothing(bulk, capsys):
    before = bulk_commits(bulk["root"])
    assert cli.main(["-w", str(bulk["root"]), "ingest", "--dir", str(bulk["folder"])]) == 2
    assert bulk_commits(bulk["root"]) == before


def test_kill_9_in_the_middle_of_a_batch_leaves_its_tenants_as_they_were(bulk, tmp_path):
    root, ws = bulk["root"], bulk["ws"]
    folder = tmp_path / "new"
    folder.mkdir()
    write_csv(folder / "t-01.csv", *synthetic_tenant(["food", "law"], 7, seed=50))  # a new version of t-01
    write_csv(folder / "t-06.csv", *synthetic_tenant(["tool", "car"], 7, seed=51))  # a new tenant
    t01 = versioning.current_version(ws, "t-01")
    env = {**os.environ, "TAILOR_FAULT": "bulk:pushed"}
    killed = subprocess.run([sys.executable, "-c", "from tailor.cli import console; console()", "-w", str(root),
                             "ingest", "--dir", str(folder)], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert versioning.current_version(ws, "t-01") == t01  # the next command rolls the batch back
    assert md5_of(versioning.data_file(ws, "t-01")) == t01.md5.removeprefix("md5:")
    assert versioning.current_version(ws, "t-06") is None and versioning.data_file(ws, "t-06") is None
    assert cli.main(["-w", str(root), "ingest", "--dir", str(folder)]) == 0
    assert versioning.current_version(ws, "t-06").git_commit == versioning.current_version(ws, "t-01").git_commit
