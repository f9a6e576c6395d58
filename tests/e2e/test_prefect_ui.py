"""The Prefect UI that `tailor serve` starts, in a real browser (Debian's chromium): its pages reach
their own API (not Prefect's default port 4200) and list a flow run made against that server; a
`tailor serve` killed with -9 takes that server along within 5 s."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import wait_for
from tests.conftest import tiny_settings
from tests.e2e.test_review_page import ROOT, browser  # noqa: F401 - fixture
from workspace.create import init_workspace

TINY_FLOW = """
from prefect import flow

@flow(name="ui-check", flow_run_name="tiny-run-for-the-ui")
def tiny():
    return 1

tiny()
"""


def started_ui(proc, seconds: float = 240) -> str:
    """The UI address `tailor serve` prints once its Prefect server is up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError("tailor serve exited before its Prefect server was up")
        found = re.search(r"its UI: (http://127\.0\.0\.1:\d+)", line)
        if found:
            return found.group(1)
    raise RuntimeError("tailor serve printed no Prefect UI address")


def servers_on(port: int) -> list[int]:
    """Live (non-zombie) `prefect server start` processes listening on ``port``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except (OSError, NotADirectoryError):
            continue
        if b"server" in cmd and b"start" in cmd and str(port).encode() in cmd and state != "Z":
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow   # a Prefect server, a flow in its own process and a browser: ~30 s on 2 cores
def test_the_ui_of_tailor_serve_lists_a_flow_run(tmp_path, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    root = tmp_path / "ws"
    init_workspace(root, tiny_settings())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)
    serve = subprocess.Popen([sys.executable, "-c", "from tailor.cli import console; console()", "--workspace",
                              str(root), "serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        ui = started_ui(serve)
        port = int(ui.rsplit(":", 1)[1])
        assert servers_on(port)
        subprocess.run([sys.executable, "-c", TINY_FLOW], check=True, timeout=180, cwd=tmp_path,
                       env={**env, "PREFECT_API_URL": ui + "/api", "PREFECT_HOME": str(tmp_path / "client")},
                       capture_output=True)
        browser.set_window_size(1600, 1200)  # narrower, the run list sits below the fold (not in .text)
        browser.get(ui + "/runs")
        # the page's data comes from the API it was told of: the run is listed only if it reached it
        WebDriverWait(browser, 60).until(lambda b: "tiny-run-for-the-ui" in b.find_element("tag name", "body").text)
        serve.kill()
        serve.wait(timeout=30)
        assert wait_for(lambda: servers_on(port) == [], 5), "the Prefect server outlived `tailor serve` killed with -9"
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGINT)
            serve.wait(timeout=60)
