"""`tailor serve`: the scheduled deployments (nightly re-adaptation of every tenant).

Schedules need a long-lived Prefect API. With ``stores.prefect_api_url`` set, that server is used;
otherwise a local ``prefect server start`` is launched with the workspace's PREFECT_HOME and
stopped on exit.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from flows.common import say
from workspace.errors import UserError

LOCAL_API = "http://127.0.0.1:4200/api"


def _wait_healthy(url: str, seconds: float = 180.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1.0)
    raise UserError(f"the Prefect server at {url} did not answer within {seconds:.0f}s")


def _start_local_server(ws) -> subprocess.Popen:
    log = open(ws.prefect_home / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", "4200"], stdout=log, stderr=log, env=os.environ.copy())
    os.environ["PREFECT_API_URL"] = LOCAL_API
    _wait_healthy(LOCAL_API)
    return proc


def serve(ws, settings, once: bool = False) -> None:
    from flows.adaptation import adapt_flow, run_adapt
    from flows.runtime import task_runner

    if once:
        run_adapt(str(ws.root), None, "service:scheduler")
        return
    server = None
    if not settings.stores.prefect_api_url:
        say(f"starting a local Prefect server at {LOCAL_API} (log: {ws.prefect_home / 'server.log'})")
        server = _start_local_server(ws)
    try:
        from prefect import serve as prefect_serve

        deployment = adapt_flow.with_options(task_runner=task_runner(settings)).to_deployment(
            name="nightly-adapt", cron=settings.schedule.adapt_cron, timezone=settings.schedule.timezone,
            parameters={"root": str(ws.root), "tenants": None, "requested_by": "service:scheduler"},
            description="Re-adapt every tenant to the current base; candidates wait for review.")
        say(f"serving tailor-adapt/nightly-adapt on cron '{settings.schedule.adapt_cron}' "
            f"({settings.schedule.timezone}); Ctrl-C to stop")
        prefect_serve(deployment, print_starting_message=False)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
