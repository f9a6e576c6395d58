"""No orphan Prefect servers: the embedded server is shared by the commands that run at once, waits
for the next command after a clean end, and is gone within 5 s of a last command killed with
SIGKILL."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import wait_for
from tests.conftest import synthetic_tenant, tiny_settings
from workspace.create import init_workspace

TAILOR = str(Path(sys.executable).with_name("tailor"))
# what every command does first: take a lease on the workspace's server (starting it if none answers)
CLIENT = ("import sys; from pathlib import Path; from flows import runtime; from workspace.paths import Workspace; "
          "print(runtime.embedded_server(Workspace(Path(sys.argv[1])), 120))")


def servers_of(home: Path) -> list[int]:
    """Live (non-zombie) processes serving this workspace's Prefect home."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if b"flows.prefect_server" in cmd and str(home).encode() in cmd and state != "Z":
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow   # a minute or more of servers and subprocesses: `make test-slow` (keeps `make test` < 15 min)
def test_commands_share_the_server_and_a_killed_last_one_leaves_none_within_5_s(tmp_path):
    root = tmp_path / "ws"
    # a long idle: a command that ends cleanly keeps the server for the next; a killed one does not
    init_workspace(root, tiny_settings().replace("stores", prefect_idle_seconds=120.0))
    home = root / ".tailor" / "prefect"
    texts, labels = synthetic_tenant(["animal", "food"], 6)
    good, bad = tmp_path / "t.csv", tmp_path / "h.csv"
    good.write_text("text,label\n" + "".join(f"{t},{lb}\n" for t, lb in zip(texts, labels)))
    bad.write_text("text,label\n")
    assert servers_of(home) == []
    # a command that ends cleanly (a refused file: exit 2) starts the server and leaves it waiting
    ingest_bad = [TAILOR, "--workspace", str(root), "ingest", "acme", str(bad)]
    done = subprocess.run(ingest_bad, capture_output=True, text=True, timeout=240)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    server = json.loads((home / "server.json").read_text())["pid"]
    assert servers_of(home) == [server]
    # the next command reuses it, hangs mid-ingest and is SIGKILLed there, the last to end
    env = {**os.environ, "TAILOR_FAULT": "ingest:renamed", "TAILOR_FAULT_DELAY": "300"}
    first = subprocess.Popen([TAILOR, "--workspace", str(root), "ingest", "acme", str(good)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: (root / ".tailor" / "staging").is_dir() and not any(
        (root / ".tailor" / "staging").iterdir()) and (root / ".tailor" / "journal" / "acme.json").exists(),
        240), "the first command never reached the ingest"
    assert json.loads((home / "server.json").read_text())["pid"] == server
    # a client starting meanwhile reuses that server too and, not the last one, ends without keeping it
    client = subprocess.run([sys.executable, "-c", CLIENT, str(root)], capture_output=True, text=True, timeout=120)
    assert client.stdout.strip() == json.loads((home / "server.json").read_text())["api_url"], client.stderr
    assert servers_of(home) == [server] and not (home / "server.linger").exists()

    assert first.poll() is None, "the first command ended before the client"
    first.kill()
    assert first.wait(timeout=60) == -signal.SIGKILL
    assert wait_for(lambda: servers_of(home) == [], 5), "the server outlived the command killed with -9 by 5 s"
    assert not (home / "server.json").exists()
