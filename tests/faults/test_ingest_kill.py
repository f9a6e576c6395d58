"""kill -9 at every step of a data change: afterwards `tailor data show`, the version a command
records and the file on disk agree (old or new version, never a mix), and the next command
removes what the killed one left (journal entry, staged copy, git's index.lock)."""
import hashlib
import json
import subprocess
import sys

import pytest

from tailor import cli
from workspace import journal, versioning
from workspace.paths import Workspace
from workspace.settings import StoreSettings

TRACK = ("import sys; from pathlib import Path; from workspace import versioning; "
         "from workspace.paths import Workspace; "
         "versioning.track(Workspace(Path(sys.argv[1])), sys.argv[2], Path(sys.argv[3]))")
CHECKOUT = ("import sys; from pathlib import Path; from workspace import versioning; "
            "from workspace.paths import Workspace; "
            "versioning.checkout(Workspace(Path(sys.argv[1])), sys.argv[2], sys.argv[3])")
BEFORE_COMMIT = ["ingest:staged", "ingest:journaled", "ingest:renamed", "ingest:added", "ingest:pushed",
                 "ingest:git-added"]


def md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill") / "ws"
    ws = Workspace(root).ensure()
    (root / "params.yaml").write_text("{}\n")
    versioning.init_repo(ws, StoreSettings())
    return ws


def killed(code: str, env_point: str, *args) -> None:
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env={**__import__("os").environ, "TAILOR_FAULT": env_point}, timeout=120)
    assert done.returncode == -9, f"expected SIGKILL at {env_point}, got {done.returncode}: {done.stderr[-500:]}"


def shown_version(ws, tenant, capsys) -> str:
    capsys.readouterr()
    assert cli.main(["--workspace", str(ws.root), "data", "show", tenant, "--json"]) == 0
    return json.loads(capsys.readouterr().out)[0]["md5"]


def assert_agree(ws, tenant, expected: str, capsys) -> None:
    """data show, the recorded (committed) version and the bytes on disk all say ``expected``."""
    assert shown_version(ws, tenant, capsys) == expected
    version = versioning.current_version(ws, tenant)
    assert version.md5 == expected and version.git_commit is not None
    assert md5(versioning.data_file(ws, tenant).read_bytes()) == expected
    status = subprocess.run(["git", "-C", str(ws.root), "status", "--porcelain", "--", "data"],
                            capture_output=True, text=True).stdout
    assert status == "", f"uncommitted changes left behind: {status}"
    assert journal.pending(ws) == [] and journal.leftovers(ws) == []
    assert not (ws.root / ".git" / "index.lock").exists()


@pytest.mark.parametrize("point", BEFORE_COMMIT + ["ingest:committed"])
def test_kill_during_ingest_leaves_old_or_new_and_the_next_command_cleans_up(ws, tmp_path, point, capsys):
    tenant = "t-" + point.split(":")[1]
    old = tmp_path / "old.csv"
    old.write_text(f"text,label\nfirst {point},a\n")
    versioning.track(ws, tenant, old)
    new = tmp_path / "new.csv"
    new.write_text(f"text,label\nsecond {point},b\n")

    killed(TRACK, point, ws.root, tenant, new)

    left = journal.pending(ws) + [str(p) for p in journal.leftovers(ws)]
    assert left, "the killed command must leave something for the next one to clean"
    expected = md5(new.read_bytes()) if point == "ingest:committed" else md5(old.read_bytes())
    assert_agree(ws, tenant, expected, capsys)
    # and the tenant can be ingested again as usual
    assert versioning.track(ws, tenant, new).md5 == md5(new.read_bytes())
    assert_agree(ws, tenant, md5(new.read_bytes()), capsys)


def test_kill_during_the_first_ingest_leaves_no_tenant(ws, tmp_path, capsys):
    src = tmp_path / "first.csv"
    src.write_text("text,label\nonly,a\n")
    killed(TRACK, "ingest:added", ws.root, "newcomer", src)
    assert versioning.recover(ws) == ["newcomer"]
    assert versioning.data_file(ws, "newcomer") is None and versioning.current_version(ws, "newcomer") is None
    assert cli.main(["--workspace", str(ws.root), "data", "show", "newcomer"]) == 2


@pytest.mark.parametrize("point", ["checkout:written", "checkout:git-added"])
def test_kill_during_checkout_leaves_the_current_version(ws, tmp_path, point, capsys):
    tenant = "c-" + point.split(":")[1]
    first, second = tmp_path / "1.csv", tmp_path / "2.jsonl"
    first.write_text(f"text,label\none {point},a\n")
    second.write_text(f'{{"text": "two {point}", "label": "b"}}\n')
    old = versioning.track(ws, tenant, first)
    versioning.track(ws, tenant, second)

    killed(CHECKOUT, point, ws.root, tenant, old.md5)

    assert_agree(ws, tenant, md5(second.read_bytes()), capsys)
    assert versioning.checkout(ws, tenant, old.md5).md5 == old.md5
    assert_agree(ws, tenant, old.md5, capsys)


def test_two_ingests_at_once_both_land(ws, tmp_path, capsys):
    """Two processes changing data at once queue on the data lock (DVC's own lock would fail one)."""
    procs, files = [], {}
    for tenant in ("both-a", "both-b", "both-c"):
        files[tenant] = tmp_path / f"{tenant}.csv"
        files[tenant].write_text(f"text,label\n{tenant} text,a\n")
        procs.append(subprocess.Popen([sys.executable, "-c", TRACK, str(ws.root), tenant, str(files[tenant])],
                                      stderr=subprocess.PIPE, text=True))
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-500:]
    for tenant, src in files.items():
        assert_agree(ws, tenant, md5(src.read_bytes()), capsys)
