"""Every file a command writes on request goes through ``workspace.outputs`` (issue 31, finding 6):
never the workspace's own files or folders, never anything but a regular file replaced (a device,
a FIFO or a /proc path is written in place), an existing file only with --force."""
import os
import stat
import threading

import pytest

from tailor import cli
from tests.conftest import tiny_settings
from workspace import outputs
from workspace.create import init_workspace
from workspace.errors import UserError
from workspace.paths import Workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return init_workspace(tmp_path_factory.mktemp("out") / "ws", tiny_settings())


def write(target: outputs.Output, text: str = "a,b\n") -> None:
    with target.open() as f:
        f.write(text)


OWN = ["params.yaml", "audit-signing.pub", "dvc.yaml", "dvc.lock", ".gitignore", ".dvcignore", ".git/config",
       ".dvc/config", "data/x.csv", "data/tenants/acme/data.csv", ".tailor/mlflow.db", ".tailor/new.html", "data"]


@pytest.mark.parametrize("name", OWN)
def test_the_workspaces_own_files_and_folders_are_refused(ws, name):
    before = {p: p.read_bytes() for p in ws.root.glob("*") if p.is_file()}
    with pytest.raises(UserError, match="workspace's own"):
        outputs.requested(ws, ws.root / name, "--out", force=True)
    assert before == {p: p.read_bytes() for p in ws.root.glob("*") if p.is_file()}


def test_links_to_the_workspaces_files_are_refused(ws, tmp_path):
    (tmp_path / "sym.csv").symlink_to(ws.params_file)
    os.link(ws.root / "audit-signing.pub", tmp_path / "hard.pub")
    (tmp_path / "into").symlink_to(ws.root / ".tailor")
    for path, why in ((tmp_path / "sym.csv", "workspace's own"), (tmp_path / "hard.pub", "workspace's own"),
                      (tmp_path / "into" / "report.html", "workspace's own")):
        with pytest.raises(UserError, match=why):
            outputs.requested(ws, path, "--out", force=True)


def test_stores_the_settings_put_elsewhere_are_refused(ws, tmp_path):
    key = tmp_path / "team.key"
    key.write_text("secret")
    stores = tiny_settings().stores.__class__(signing_key=str(key), tracking_uri=f"sqlite:///{tmp_path}/t.db")
    for path in (key, tmp_path / "t.db"):
        with pytest.raises(UserError, match="workspace's own"):
            outputs.requested(ws, path, "--out", force=True, stores=stores)


def test_an_existing_file_needs_force_and_keeps_its_mode(ws, tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("old")
    os.chmod(path, 0o640)
    with pytest.raises(UserError, match="exists: pass --force"):
        outputs.requested(ws, path, "--out")
    assert path.read_text() == "old"
    write(outputs.requested(ws, path, "--out", force=True), "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o640
    fresh = tmp_path / "fresh.csv"
    write(outputs.requested(ws, fresh, "--out"))
    assert fresh.read_text() == "a,b\n" and not list(tmp_path.glob(".*.part"))


def test_a_failed_write_leaves_the_old_file(ws, tmp_path):
    path = tmp_path / "keep.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with outputs.requested(ws, path, "--out", force=True).open() as f:
            f.write("half")
            raise RuntimeError("crash while writing")
    assert path.read_text() == "old" and not list(tmp_path.glob(".*.part"))


def test_a_device_is_written_in_place_never_renamed_over():
    """As root, `--out /dev/null` used to replace the device node with a regular file."""
    ws = Workspace(outputs.Path("/nonexistent-ws"))
    target = outputs.requested(ws, "/dev/null", "--out")
    assert target.how == "in place"
    write(target)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_fifo_and_a_proc_fd_are_written_in_place(ws, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="nobody reads"):
        write(outputs.requested(ws, fifo, "--out"))  # no reader: refused, not a hang
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()), daemon=True)
    reader.start()
    import time

    deadline = time.time() + 10
    while True:  # the reader thread opens the FIFO meanwhile
        try:
            write(outputs.requested(ws, fifo, "--out"), "through the pipe\n")
            break
        except UserError:
            assert time.time() < deadline
            time.sleep(0.05)
    reader.join(10)
    assert got == ["through the pipe\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    r, w = os.pipe()
    try:
        target = outputs.requested(ws, f"/proc/self/fd/{w}", "--out")
        assert target.how == "in place"
        write(target, "x\n")
        assert os.read(r, 10) == b"x\n"
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("make, why", [
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.symlink_to(p.parent / "nowhere"), "link to nothing"),
    (lambda p: None, "does not exist"),
])
def test_folders_dangling_links_and_missing_folders_are_refused(ws, tmp_path, make, why):
    path = tmp_path / "target"
    make(path)
    given = path / "x.csv" if why == "does not exist" else path
    with pytest.raises(UserError, match=why):
        outputs.requested(ws, given, "--out")


def test_lineage_html_over_params_yaml_is_refused_in_one_line(ws, capsys):
    """The issue: `tailor lineage --all --html params.yaml` wrote HTML over the settings, exit 0."""
    before = ws.params_file.read_bytes()
    capsys.readouterr()
    code = cli.main(["-w", str(ws.root), "lineage", "--all", "--html", str(ws.params_file)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "workspace's own" in err, err
    assert ws.params_file.read_bytes() == before


@pytest.mark.parametrize("name", ["audit-signing.pub", "data/x.csv", "params.yaml", ".tailor/x.csv"])
def test_predict_out_into_the_workspace_is_refused_before_any_model_loads(ws, capsys, name):
    capsys.readouterr()
    code = cli.main(["-w", str(ws.root), "predict", "acme", "hello", "--out", str(ws.root / name)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "workspace's own" in err, err
    assert not (ws.root / "data" / "x.csv").exists()
