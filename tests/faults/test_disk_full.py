"""A full disk during ingest (an injected ENOSPC after DVC added the file, and the log file refusing
writes): one line on stderr, exit 2, and the previous data version still current and committed."""
import os
import subprocess
import sys

from tailor import cli
from tests.conftest import synthetic_tenant, tiny_settings
from workspace import journal, versioning
from workspace.create import init_workspace
from workspace.paths import Workspace

DRIVER = ("import logging, sys; from tailor import logs; from tailor.cli import main; "
          "from logging.handlers import RotatingFileHandler as H; "
          # the log file's disk is full too: every write of a record fails
          "H.emit = lambda self, record: self.handleError(record); sys.exit(main(sys.argv[1:]))")


def csv(per_label: int) -> str:
    texts, labels = synthetic_tenant(["animal", "food"], per_label)
    return "text,label\n" + "".join(f"{t},{lb}\n" for t, lb in zip(texts, labels))


def test_disk_full_during_ingest_is_one_line_and_keeps_the_data(tmp_path):
    root = tmp_path / "ws"
    init_workspace(root, tiny_settings())
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(csv(6))
    second.write_text(csv(7))
    assert cli.main(["--workspace", str(root), "ingest", "acme", str(first)]) == 0
    ws = Workspace(root)
    before = versioning.current_version(ws, "acme")
    done = subprocess.run([sys.executable, "-c", DRIVER, "--workspace", str(root), "ingest", "acme", str(second)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TAILOR_FAULT": "ingest:added:ENOSPC"})
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no space left on device" in done.stderr, done.stderr[-2000:]
    after = versioning.current_version(ws, "acme")
    assert after.md5 == before.md5 and after.git_commit == before.git_commit
    assert versioning.data_file(ws, "acme").read_text() == first.read_text()
    assert journal.pending(ws) == []


def _mount_tmpfs(where, size: str) -> str | None:
    """Mount a small tmpfs at ``where``; why not, when it cannot be done here."""
    import shutil

    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    return None if done.returncode == 0 else f"mount -t tmpfs failed: {done.stderr.strip()[:200]}"


def _fill(where) -> None:
    """Write until the filesystem says ENOSPC."""
    import errno

    block = b"\0" * (1 << 16)
    with open(where / "filler", "wb") as f:
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_really_full_filesystem_is_one_line_and_exit_2(tmp_path):
    """Issue 31, finding 9: on a full 20 MB tmpfs `tailor ingest` was "internal error:
    PrefectHTTPStatusError 500", exit 1, after 64 s. A real filesystem, really full, no injected fault."""
    import time

    import pytest

    mnt = tmp_path / "small"
    why = _mount_tmpfs(mnt, "64m")
    if why:
        pytest.skip(f"no small filesystem to fill: {why}")
    try:
        root = mnt / "ws"
        init_workspace(root, tiny_settings())
        first, second = tmp_path / "a.csv", tmp_path / "b.csv"
        first.write_text(csv(6))
        second.write_text(csv(7))
        assert cli.main(["--workspace", str(root), "ingest", "acme", str(first)]) == 0
        ws = Workspace(root)
        before = versioning.current_version(ws, "acme")
        _fill(mnt)
        for argv in (["ingest", "acme", str(second)], ["adapt", "acme"], ["review", "approve", "acme", "1",
                                                                           "--reason", "x"]):
            start = time.monotonic()
            done = subprocess.run([sys.executable, "-c", "from tailor.cli import console; console()",
                                   "--workspace", str(root), *argv], capture_output=True, text=True, timeout=300,
                                  env={**os.environ, "TAILOR_USER": "alice"})
            took = time.monotonic() - start
            assert done.returncode == 2, done.stderr[-2000:]
            assert done.stderr.count("\n") == 1 and "no space left on device" in done.stderr, done.stderr[-2000:]
            assert took < 60, f"{argv[0]}: {took:.0f} s"
        (mnt / "filler").unlink()
        after = versioning.current_version(ws, "acme")
        assert after.md5 == before.md5 and after.git_commit == before.git_commit
        assert versioning.data_file(ws, "acme").read_text() == first.read_text()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
