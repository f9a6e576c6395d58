"""No orphan Prefect servers: the embedded server is shared by the commands that run at once and
stops on its own after the last one ends, also when that command was killed with SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import synthetic_tenant, tiny_settings
from workspace.create import init_workspace

TAILOR = str(Path(sys.executable).with_name("tailor"))


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


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.slow   # a minute or more of servers and subprocesses: `make test-slow` (keeps `make test` < 15 min)
def test_a_killed_command_leaves_no_server_and_a_concurrent_one_shares_it(tmp_path):
    root = tmp_path / "ws"
    init_workspace(root, tiny_settings().replace("stores", prefect_idle_seconds=2.0))
    home = root / ".tailor" / "prefect"
    texts, labels = synthetic_tenant(["animal", "food"], 6)
    good, bad = tmp_path / "t.csv", tmp_path / "h.csv"
    good.write_text("text,label\n" + "".join(f"{t},{lb}\n" for t, lb in zip(texts, labels)))
    bad.write_text("text,label\n")
    assert servers_of(home) == []
    # the first command starts the server, then hangs mid-ingest for a while and is SIGKILLed there
    env = {**os.environ, "TAILOR_FAULT": "ingest:renamed", "TAILOR_FAULT_DELAY": "8"}
    first = subprocess.Popen([TAILOR, "--workspace", str(root), "ingest", "acme", str(good)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: (root / ".tailor" / "staging").is_dir() and not any(
        (root / ".tailor" / "staging").iterdir()) and (root / ".tailor" / "journal" / "acme.json").exists(),
        240), "the first command never reached the ingest"
    server = json.loads((home / "server.json").read_text())["pid"]
    # a command running meanwhile finds and reuses that server (its flow runs there, one line out)
    second = subprocess.run([TAILOR, "--workspace", str(root), "ingest", "acme", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and len(second.stderr.splitlines()) == 1, second.stderr
    assert servers_of(home) == [server]

    first.wait(timeout=120)
    assert first.returncode == -signal.SIGKILL
    assert wait_for(lambda: servers_of(home) == [], 30), "the server outlived the command killed with -9"
    assert not (home / "server.json").exists()
