"""`tailor serve --pool` against a real `prefect server start`: the deployment goes to a process work
pool with params.yaml's cron and timezone, and a `prefect worker` (a subprocess, as on a team's
machine) picks up a triggered run, which registers the tenants' candidates. Slow (two servers'
worth of start-up): `make test-slow`; the served path (`tailor serve`) runs in `make test`
(tests/flows/test_fleet.py)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tailor import cli
from tests.conftest import synthetic_tenant, tiny_settings
from tests.e2e.test_loop import TENANTS, write_csv
from tests.flows.test_fleet import _api
from tests.governance import approve_base_cli
from tests.servers import prefect_server
from workspace import versioning
from workspace.create import init_workspace

pytestmark = pytest.mark.slow


def test_a_worker_on_the_pool_runs_the_deployed_fleet_flow(tmp_path):
    with prefect_server(tmp_path / "server") as server:
        fleet = ["acme", "globex", "initech", "umbrella"]
        settings = tiny_settings(tenants="acme,globex,initech", val_tenants="umbrella")
        root = tmp_path / "ws"
        ws = init_workspace(root, settings.replace("schedule", adapt_cron="15 4 * * *", timezone="Asia/Tokyo"))
        for i, tenant in enumerate(fleet):
            versioning.track(ws, tenant, write_csv(tmp_path / f"{tenant}.csv", *synthetic_tenant(TENANTS[tenant], 10, seed=i)))
        assert cli.main(["-w", str(root), "meta-train", "--register-anyway"]) == 0
        approve_base_cli(root)
        url = server.ready()
        params = root / "params.yaml"
        params.write_text(params.read_text().replace('prefect_api_url: ""', f'prefect_api_url: "{url}"'))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_API_URL=url, PREFECT_HOME=str(tmp_path / "worker-home"), TAILOR_USER="ci-bot")
        deploy = subprocess.run([sys.executable, "-c", "from tailor.cli import console; console()", "-w", str(root),
                                 "serve", "--pool", "tailor"], env=env, capture_output=True, text=True, timeout=300)
        assert deploy.returncode == 0, deploy.stderr[-3000:]
        assert "prefect worker start --pool tailor" in deploy.stdout
        found = _api(url, "/deployments/filter", {"deployments": {"name": {"any_": ["nightly-adapt"]}}})
        assert len(found) == 1 and found[0]["work_pool_name"] == "tailor"
        schedule = found[0]["schedules"][0]["schedule"]
        assert (schedule["cron"], schedule["timezone"]) == ("15 4 * * *", "Asia/Tokyo")
        run = _api(url, f"/deployments/{found[0]['id']}/create_flow_run", {})
        log = open(tmp_path / "worker.log", "wb")
        worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "tailor",
                                   "--type", "process"], env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline, state = time.monotonic() + 240, None
            while time.monotonic() < deadline and state not in ("COMPLETED", "FAILED", "CRASHED"):
                time.sleep(1)
                state = _api(url, f"/flow_runs/{run['id']}")["state"]["type"]
            assert state == "COMPLETED", (tmp_path / "worker.log").read_text()[-3000:]
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
            log.close()
    record = json.loads((root / "pipeline" / "candidates.json").read_text())["tenants"]
    assert {t: record[t]["status"] for t in fleet} == {t: "adapted" for t in fleet}
    from registry.storage import store

    assert all(store.versions(f"tailor-tenant-{t}") for t in fleet)
