"""`tailor serve`: the scheduled deployments, from params.yaml's ``schedule`` section.

Schedules need a long-lived Prefect API with its scheduler running (the embedded server the other
commands share runs no background services): ``stores.prefect_api_url`` if set, else a local
``prefect server start`` the face launches (``runtime.start_full_server``) and stops on exit.
Prefect reads PREFECT_API_URL when it is first imported, so the face settles the URL
(``runtime.configure(api_url=...)``) before it imports this module.

Two ways to run the deployments:

* served here (default): ``prefect.serve`` creates them and runs their flow runs as subprocesses
  of this command until Ctrl-C;
* a process work pool (``--pool NAME``): ``flow.deploy`` registers them to the pool and returns;
  ``prefect worker start --pool NAME`` on a machine with this code and the workspace runs them.
  ``prefect.yaml`` at the repository root deploys the same flows with ``prefect deploy --all``.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from flows.common import say

CODE_ROOT = Path(__file__).resolve().parent.parent  # the folder holding flows/, registry/, ...
FLOW, DEPLOYMENT = "tailor-fleet", "nightly-adapt"


def deployment_args(ws, settings) -> dict:
    """What both ways deploy: the cron and timezone of params.yaml and the run's parameters."""
    from prefect.schedules import Cron

    cfg = settings.schedule
    return {"name": DEPLOYMENT, "schedules": [Cron(cfg.adapt_cron, timezone=cfg.timezone)],
            "parameters": {"root": str(ws.root), "requested_by": "service:scheduler"},
            "tags": ["tailor", "fleet"],
            "description": "Re-adapt every tenant whose data, base or adaptation settings changed; "
                           "candidates wait for review."}


def serve(ws, settings, once: bool = False, pool: str | None = None) -> None:
    """Serve (or, with ``pool``, deploy) the scheduled fleet adaptation; ``once``: run it now."""
    if once:
        from flows.adaptation import run_adapt

        run_adapt(str(ws.root), None, "service:scheduler")
        return
    from flows.adaptation import scheduled_adapt

    cfg = settings.schedule
    if pool:
        deploy_to_pool(ws, settings, pool)
        return
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import EntrypointType

    # a module path: the flow-run subprocess imports it wherever Tailor is installed, whatever its cwd
    deployment = scheduled_adapt.to_deployment(entrypoint_type=EntrypointType.MODULE_PATH,
                                               **deployment_args(ws, settings))
    say(f"serving {FLOW}/{DEPLOYMENT} on cron '{cfg.adapt_cron}' ({cfg.timezone}) against "
        f"{os.environ.get('PREFECT_API_URL')}; Ctrl-C to stop")
    prefect_serve(deployment, print_starting_message=False)


def deploy_to_pool(ws, settings, pool: str) -> str:
    """Create the process work pool if missing and deploy the fleet flow to it (code from this
    checkout); returns the deployment id. ``prefect worker start --pool POOL`` runs it."""
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    flow = Flow.from_source(source=str(CODE_ROOT), entrypoint="flows/adaptation.py:scheduled_adapt")
    with contextlib.redirect_stdout(io.StringIO()):  # Prefect's own tables; we say it in one line
        found = flow.deploy(work_pool_name=pool, build=False, push=False, print_next_steps=False,
                            ignore_warnings=True, **deployment_args(ws, settings))
    say(f"deployed {FLOW}/{DEPLOYMENT} (cron '{settings.schedule.adapt_cron}', {settings.schedule.timezone}) to "
        f"work pool {pool!r}; run it with `prefect worker start --pool {pool}`")
    return str(found)
