"""Prefect's environment for one command: its home in the workspace, the embedded server (or a
configured API), where tasks run (threads or a Dask cluster), and its own logs kept off the user's
screen unless ``--debug``.

Prefect reads its settings when it is first imported, so ``configure`` runs before any flow module
is imported (the CLI imports flows lazily for this reason).
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager

from workspace.paths import Workspace
from workspace.settings import Settings


def configure(ws: Workspace, settings: Settings, debug: bool = False) -> None:
    env = {
        "PREFECT_HOME": str(ws.prefect_home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO" if debug else "ERROR",
        "PREFECT_LOGGING_SERVER_LEVEL": "WARNING" if debug else "CRITICAL",
        "PREFECT_LOGGING_LOG_PRINTS": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        "PREFECT_TASKS_REFRESH_CACHE": "false",
        # Dask's scheduler and workers (processes that inherit this) log every start and stop
        "DASK_LOGGING__DISTRIBUTED": "info" if debug else "error",
    }
    if settings.stores.prefect_api_url:
        env["PREFECT_API_URL"] = settings.stores.prefect_api_url
    os.environ.update(env)
    ws.prefect_home.mkdir(parents=True, exist_ok=True)
    if not debug:
        # The embedded server logs CancelledError tracebacks while shutting down: not the user's concern.
        for name in ("prefect", "prefect.server", "prefect.client", "uvicorn", "httpx", "docket", "distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def flow_run_id() -> str | None:
    """The current Prefect flow run's id, or None outside a flow."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


def task_runner(settings: Settings):
    """The task runner ``schedule.task_runner`` names, for flows that fan out (``flow.with_options``).

    ``thread``: ``schedule.workers`` threads of this process. ``dask``: the Dask scheduler at
    ``schedule.dask_address``, or a local cluster of ``schedule.workers`` single-threaded
    processes started for the run (torch already uses several threads per process).
    """
    cfg = settings.schedule
    if cfg.task_runner == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=cfg.workers)
    from prefect_dask import DaskTaskRunner

    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


@contextmanager
def api_for_workers(settings: Settings):
    """Run flows against one Prefect API that task runs in other processes can reach too.

    Without it, each Dask worker process starts its own embedded Prefect server (seconds each,
    one more writer on the same database). With ``stores.prefect_api_url`` or the thread
    runner there is nothing to do.
    """
    if settings.schedule.task_runner != "dask" or settings.stores.prefect_api_url:
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()  # the same one Prefect would start for this process
    server.start(timeout=int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")))
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield
