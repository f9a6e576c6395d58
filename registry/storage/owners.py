"""Runs a killed command left RUNNING: every run Tailor starts names its owner, and the next
command that opens the store marks the runs of owners that are gone FAILED."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

OWNER_HOST, OWNER_PID, OWNER_STARTED = "tailor.owner.host", "tailor.owner.pid", "tailor.owner.started"
FAILED_REASON = "tailor.failed_reason"
_swept: set[str] = set()
_sweep_lock = threading.Lock()


def owner_tags() -> dict[str, str]:
    """Tags naming this process as a run's owner (its start time tells a reused pid apart)."""
    import psutil

    return {OWNER_HOST: socket.gethostname(), OWNER_PID: str(os.getpid()),
            OWNER_STARTED: f"{psutil.Process().create_time():.2f}"}


def owner_alive(tags: dict) -> bool | None:
    """Whether the process named by a run's owner tags still runs; None when that cannot be told
    here (no owner tags, or another host)."""
    import psutil

    host, pid, started = tags.get(OWNER_HOST), tags.get(OWNER_PID), tags.get(OWNER_STARTED)
    if not (host and pid and started) or host != socket.gethostname():
        return None
    try:
        proc = psutil.Process(int(pid))
        return abs(proc.create_time() - float(started)) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, ValueError):
        return None


def fail_dead_runs(c) -> list[str]:
    """Mark FAILED, with a tag saying why, every RUNNING run in Tailor's experiments whose owning
    process has ended (a killed command); the run ids marked. Runs of live processes, of other
    hosts and without owner tags are left alone. ``c`` is the client: ``store.client()`` passes
itself in, so this module imports nothing from the store (no cycle)."""
    experiments, token = [], None
    while True:
        page = c.search_experiments(filter_string="name LIKE 'tailor-%'", max_results=1000, page_token=token)
        experiments += [e.experiment_id for e in page]
        token = page.token
        if not token:
            break
    if not experiments:
        return []
    marked = []
    for run in c.search_runs(experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        if owner_alive(tags) is not False:
            continue
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        c.set_tag(run.info.run_id, FAILED_REASON,
                  f"its process (pid {tags[OWNER_PID]} on {tags[OWNER_HOST]}) ended while the run was RUNNING "
                  f"(killed?); marked FAILED by pid {os.getpid()} at {at}")
        c.set_terminated(run.info.run_id, "FAILED")
        marked.append(run.info.run_id)
    return marked


def fail_dead_runs_once(c, uri: str) -> None:
    """``fail_dead_runs`` once per store and process; bookkeeping, so it never fails a command."""
    with _sweep_lock:
        if uri in _swept:
            return
        _swept.add(uri)
    try:
        fail_dead_runs(c)
    except Exception:  # noqa: BLE001 - a store that refuses the search is the next call's to report
        logging.getLogger(__name__).warning("could not look for runs left RUNNING by killed commands",
                                            exc_info=True)
