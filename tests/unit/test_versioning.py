"""Data versions with real git and DVC: a version is DVC's md5 plus the commit of its .dvc file,
re-tracking is idempotent, old data can be restored, and a failed update changes nothing."""
import hashlib
import subprocess

import pytest

from workspace import versioning
from workspace.errors import UserError
from workspace.gitrepo import VersioningError
from workspace.paths import Workspace
from workspace.settings import StoreSettings


def git(ws, *args):
    return subprocess.run(["git", "-C", str(ws.root), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def commits(ws) -> int:
    return int(git(ws, "rev-list", "--count", "HEAD"))


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("versioning") / "ws").ensure()
    versioning.init_repo(ws, StoreSettings())
    return ws


@pytest.fixture
def write(tmp_path):
    def _write(name, text):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return _write


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_init_is_idempotent_and_configures_the_remote(ws):
    before = commits(ws)
    versioning.init_repo(ws, StoreSettings())
    assert commits(ws) == before and git(ws, "status", "--porcelain") == ""
    config = (ws.root / ".dvc" / "config").read_text()
    assert "analytics = False" in config and "remote = local" in config
    assert "../.tailor/dvc-remote" in config  # relative: the workspace folder can move
    assert (ws.root / ".gitignore").read_text().splitlines().count(".tailor/") == 1


def test_track_returns_dvcs_md5_and_pushes_the_object(ws, write, capfd):
    src = write("a.csv", "text,label\nreset my password,SSO\n")
    version = versioning.track(ws, "md5-check", src)
    dvc_text = (ws.tenant_dir("md5-check") / "data.csv.dvc").read_text()
    assert version.md5 == f"md5:{md5(src)}" and f"md5: {md5(src)}" in dvc_text
    assert version.path == "data/tenants/md5-check/data.csv" and version.n_bytes == src.stat().st_size
    assert version.git_commit == git(ws, "rev-parse", "HEAD")
    assert str(version) == f"md5:{md5(src)[:8]}… (git {version.git_commit[:7]})"
    digest = md5(src)
    assert (ws.dvc_remote_dir / "files" / "md5" / digest[:2] / digest[2:]).is_file()
    assert versioning.data_file(ws, "md5-check").read_bytes() == src.read_bytes()
    assert versioning.current_version(ws, "md5-check") == version
    out, err = capfd.readouterr()
    assert out == "" and err == "", "DVC and git must keep their output off the user's screen"


def test_tracking_the_same_content_again_is_a_no_op(ws, write):
    src = write("a.csv", "text,label\nhello,a\n")
    first = versioning.track(ws, "same", src)
    before = commits(ws)
    again = versioning.track(ws, "same", write("copy.csv", src.read_text()))
    assert again == first and commits(ws) == before


def test_new_content_is_a_new_version_and_checkout_restores_the_old(ws, write):
    old = versioning.track(ws, "evolve", write("v1.csv", "text,label\nfirst,a\n"))
    new = versioning.track(ws, "evolve", write("v2.csv", "text,label\nsecond,b\n"))
    assert new.md5 != old.md5 and new.git_commit != old.git_commit
    assert [v.md5 for v in versioning.history(ws, "evolve")] == [new.md5, old.md5]

    restored = versioning.checkout(ws, "evolve", old.md5[:12])  # "md5:" + 8 hex characters
    assert restored.md5 == old.md5 and versioning.current_version(ws, "evolve") == restored
    assert versioning.data_file(ws, "evolve").read_text() == "text,label\nfirst,a\n"
    assert git(ws, "log", "-1", "--format=%s") == f"data: evolve checkout {old.md5[:12]}"

    by_commit = versioning.checkout(ws, "evolve", new.git_commit[:10])
    assert by_commit.md5 == new.md5
    assert versioning.data_file(ws, "evolve").read_text() == "text,label\nsecond,b\n"
    assert git(ws, "status", "--porcelain") == ""


def test_a_dry_run_checkout_names_the_version_and_changes_nothing(ws, write):
    old = versioning.track(ws, "dry", write("d1.csv", "text,label\nfirst,a\n"))
    new = versioning.track(ws, "dry", write("d2.csv", "text,label\nsecond,b\n"))
    head = git(ws, "rev-parse", "HEAD")
    would = versioning.checkout(ws, "dry", old.md5[:12], dry_run=True)
    assert would.md5 == old.md5 and would.git_commit == old.git_commit
    assert versioning.current_version(ws, "dry").md5 == new.md5 and git(ws, "rev-parse", "HEAD") == head
    assert versioning.data_file(ws, "dry").read_text() == "text,label\nsecond,b\n"
    with pytest.raises(UserError):
        versioning.checkout(ws, "dry", "md5:ffffffff", dry_run=True)


def test_checkout_fetches_from_the_remote_when_the_local_cache_is_gone(ws, write):
    old = versioning.track(ws, "recover", write("v1.csv", "text,label\nkept remotely,a\n"))
    versioning.track(ws, "recover", write("v2.csv", "text,label\nnewer,a\n"))
    digest = old.md5.removeprefix("md5:")
    (ws.root / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]).unlink()
    versioning.checkout(ws, "recover", old.md5)
    assert versioning.data_file(ws, "recover").read_text() == "text,label\nkept remotely,a\n"


def test_unknown_revision_is_a_user_error(ws, write):
    versioning.track(ws, "revs", write("a.csv", "text,label\nx,a\n"))
    for rev in ("md5:0000000000", "no-such-branch", "--all"):
        with pytest.raises(UserError):
            versioning.checkout(ws, "revs", rev)


def test_a_failed_push_leaves_the_previous_version_current(ws, write, monkeypatch):
    before = versioning.track(ws, "atomic", write("v1.csv", "text,label\ngood,a\n"))
    head = git(ws, "rev-parse", "HEAD")

    def remote_down(repo, dvcfile):
        raise ConnectionError("remote unreachable")

    monkeypatch.setattr(versioning, "_push", remote_down)
    with pytest.raises(VersioningError, match="remote unreachable"):
        versioning.track(ws, "atomic", write("v2.jsonl", '{"text": "new", "label": "b"}\n'))

    assert versioning.current_version(ws, "atomic") == before
    assert versioning.data_file(ws, "atomic").read_text() == "text,label\ngood,a\n"
    assert sorted(p.name for p in ws.tenant_dir("atomic").iterdir()) == [".gitignore", "data.csv", "data.csv.dvc"]
    assert git(ws, "rev-parse", "HEAD") == head and git(ws, "status", "--porcelain") == ""


def test_a_failed_first_track_leaves_no_trace(ws, write, monkeypatch):
    monkeypatch.setattr(versioning, "_push", lambda repo, dvcfile: 1 / 0)
    with pytest.raises(VersioningError):
        versioning.track(ws, "brand-new", write("a.csv", "text,label\nx,a\n"))
    assert versioning.current_version(ws, "brand-new") is None
    assert versioning.data_file(ws, "brand-new") is None
    assert not ws.tenant_dir("brand-new").exists()
    assert git(ws, "status", "--porcelain") == ""


def test_missing_source_or_wrong_type_is_a_user_error_and_changes_nothing(ws, write, tmp_path):
    before = versioning.track(ws, "inputs", write("a.csv", "text,label\nx,a\n"))
    with pytest.raises(UserError, match="no such file"):
        versioning.track(ws, "inputs", tmp_path / "missing.csv")
    with pytest.raises(UserError, match="only .csv and .jsonl"):
        versioning.track(ws, "inputs", write("a.txt", "x"))
    assert versioning.current_version(ws, "inputs") == before


def test_switching_file_type_keeps_one_data_file(ws, write):
    versioning.track(ws, "switch", write("a.csv", "text,label\nx,a\n"))
    version = versioning.track(ws, "switch", write("b.jsonl", '{"text": "x", "label": "a"}\n'))
    assert version.path.endswith("data.jsonl")
    assert sorted(p.name for p in ws.tenant_dir("switch").iterdir()) == [".gitignore", "data.jsonl", "data.jsonl.dvc"]
    assert len(versioning.history(ws, "switch")) == 2


def test_tracking_one_tenant_never_touches_another(ws, write):
    a = versioning.track(ws, "tenant-a", write("a.csv", "text,label\nalpha,a\n"))
    files_a = {p.name: p.read_bytes() for p in ws.tenant_dir("tenant-a").iterdir()}
    b = versioning.track(ws, "tenant-b", write("b.csv", "text,label\nbeta,b\n"))
    assert versioning.current_version(ws, "tenant-a") == a
    assert {p.name: p.read_bytes() for p in ws.tenant_dir("tenant-a").iterdir()} == files_a
    changed = git(ws, "show", "--name-only", "--format=", b.git_commit).splitlines()
    assert changed and all(path.startswith("data/tenants/tenant-b/") for path in changed)


def test_uninitialised_workspace_is_a_user_error(tmp_path, write):
    with pytest.raises(UserError, match="tailor init"):
        versioning.track(Workspace(tmp_path / "bare"), "acme", write("a.csv", "text,label\nx,a\n"))


def test_unchanged_version_names_the_current_version_only_for_its_exact_bytes(ws, write):
    src = write("u.csv", "text,label\nreset my password,SSO\nrefund please,Billing\n")
    current = versioning.track(ws, "unchanged", src)
    limit = 1 << 20
    assert versioning.unchanged_version(ws, "unchanged", write("again.csv", src.read_text()), limit) == current
    assert versioning.unchanged_version(ws, "unchanged", write("new.csv", src.read_text() + "more,SSO\n"), limit) is None
    assert versioning.unchanged_version(ws, "nobody-yet", src, limit) is None
    # the workspace's file edited by hand: re-ingesting the recorded bytes must restore it, not skip
    data = versioning.data_file(ws, "unchanged")
    data.write_text(data.read_text() + "edited,SSO\n", encoding="utf-8")
    assert versioning.unchanged_version(ws, "unchanged", src, limit) is None


def test_versioning_one_tenant_collects_no_other_tenants_stage(ws, write, monkeypatch):
    """`dvc add` and `dvc push` of one file collected every tenant's stage first (the graph check
    and the index: 6.8 s of one ingest at 1,000 tenants). Tailor's add and push touch the tenant's
    own .dvc file only: with DVC's repository-wide collection made to fail, a tenant is still
    versioned, pushed and restorable."""
    from dvc.repo import Repo

    def collected(*args, **kwargs):
        raise AssertionError("collected every stage of the repository")

    for name in ("check_graph", "find_outs_by_path", "push"):
        monkeypatch.setattr(Repo, name, collected)
    monkeypatch.setattr(Repo, "index", property(collected))
    version = versioning.track(ws, "solo", write("solo.csv", "text,label\nfirst,a\nsecond,b\n"))
    assert version.git_commit and version.md5 == f"md5:{md5(ws.root / version.path)}"
    remote = ws.state_dir / "dvc-remote" / "files" / "md5" / version.md5[4:6] / version.md5[6:]
    assert remote.is_file()  # pushed
