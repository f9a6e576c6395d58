"""A command waiting on a lock says whom it waits for, within a second or so (issue 31, finding 9:
a second command waiting on the data lock printed nothing for 30 s)."""
import subprocess
import sys
import threading
import time

from workspace import journal
from workspace.paths import Workspace

HOLDER = ("import sys, time; from pathlib import Path; sys.argv = ['tailor', 'ingest', 'acme', '/tmp/a.csv']\n"
          "from workspace import journal; from workspace.paths import Workspace\n"
          "with journal.data_lock(Workspace(Path(sys.stdin.readline().strip()))):\n"
          "    print('held', flush=True); time.sleep(float(sys.stdin.readline()))\n")


def test_a_waiting_command_names_the_holder_of_the_data_lock(tmp_path, capsys):
    ws = Workspace(tmp_path / "ws").ensure()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={"TAILOR_USER": "bob", "PATH": "/usr/bin:/bin"})
    holder.stdin.write(f"{ws.root}\n4\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "held"
    said = []

    def watch():  # what the waiting command has said after 2.5 s, while it still waits
        time.sleep(2.5)
        said.append(capsys.readouterr().err)

    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.monotonic()
    with journal.data_lock(ws):
        waited = time.monotonic() - start
    watcher.join()
    holder.wait(10)
    assert waited > 2.5, "it waited for the holder"
    assert said and "waiting for the data lock" in said[0], said
    assert "tailor ingest acme" in said[0] and "bob" in said[0] and f"pid {holder.pid}" in said[0], said[0]


def test_an_uncontended_or_reentrant_lock_says_nothing(tmp_path, capsys):
    ws = Workspace(tmp_path / "ws").ensure()
    with journal.data_lock(ws):
        with journal.data_lock(ws):  # the same process again: reentrant, no wait
            pass
    assert capsys.readouterr().err == ""
