"""Prefect's environment for one command: its home in the workspace, the embedded server (or a
configured API), and its own logs kept off the user's screen unless ``--debug``.

Prefect reads its settings when it is first imported, so ``configure`` runs before any flow module
is imported (the CLI imports flows lazily for this reason).
"""
from __future__ import annotations

import logging
import os

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
    }
    if settings.stores.prefect_api_url:
        env["PREFECT_API_URL"] = settings.stores.prefect_api_url
    os.environ.update(env)
    ws.prefect_home.mkdir(parents=True, exist_ok=True)
    if not debug:
        # The embedded server logs CancelledError tracebacks while shutting down: not the user's concern.
        for name in ("prefect", "prefect.server", "prefect.client", "uvicorn", "httpx", "docket"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def flow_run_id() -> str | None:
    """The current Prefect flow run's id, or None outside a flow."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None
