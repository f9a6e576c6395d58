"""Prefect's environment for one command: its home in the workspace, the embedded API server (or a
configured one), where tasks run (threads or a Dask cluster), and Prefect's logs in the workspace's
log file, on screen only with ``--debug``.

Prefect reads its settings when it is first imported, so ``configure`` runs before any flow module
is imported (the CLI imports flows lazily for this reason).

The embedded server is this module's, not Prefect's: Prefect's own ephemeral server is a child
that outlives a command killed with ``kill -9`` (one ~200 MB orphan per kill). Here one server
per workspace is found through ``server.json`` under a start lock, reused by every command that
runs meanwhile, and stops itself once no live command holds a lease on it: within seconds of a
killed command, ``stores.prefect_idle_seconds`` after one that ended cleanly
(``flows/prefect_server.py``).
"""
from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from workspace.paths import Workspace
from workspace.settings import Settings

STARTUP_SECONDS = 180  # a loaded 2-core machine took over 20 s; Prefect's own default gives up sooner
_leases: dict[str, int] = {}  # workspace prefect home -> lease fd, held until this process ends

_LOGGING = """\
version: 1
disable_existing_loggers: False
formatters:
  plain:
    format: "%(asctime)s %(process)d %(levelname)s %(name)s - %(message)s"
handlers:
  api:
    level: 0
    class: prefect.logging.handlers.APILogHandler
loggers:
  prefect:
    level: "${PREFECT_LOGGING_LEVEL}"
  prefect.flow_runs:
    level: INFO
    handlers: [api]
  prefect.task_runs:
    level: INFO
    handlers: [api]
"""  # run logs reach the Prefect API (its UI) at INFO; no console handler: records propagate to the
# root logger, which the face points at the workspace's log file (and the screen with --debug)


def configure(ws: Workspace, settings: Settings, debug: bool = False, api_url: str | None = None,
              meanwhile: Callable[[], None] | None = None) -> None:
    """Prefect's environment for this command; ``api_url`` (``tailor serve``) overrides the API.
    ``meanwhile`` runs while an embedded server starts (seconds in its own process): the command's
    imports, say; Prefect's own too, since its settings are read again below."""
    if "prefect.context" in sys.modules and os.environ.get("PREFECT_API_URL"):
        # Prefect fixed its settings (and its events client) when it was imported: a second
        # workspace in the same process (tests) keeps using the first one's server and home
        return
    environment(ws, debug)
    database_environment(settings)
    if api_url:
        os.environ["PREFECT_API_URL"] = api_url
    elif settings.stores.prefect_api_url:
        os.environ["PREFECT_API_URL"] = settings.stores.prefect_api_url
    else:
        os.environ["PREFECT_API_URL"] = embedded_server(ws, settings.stores.prefect_idle_seconds, meanwhile)
    if "prefect.context" in sys.modules:  # imported before this first configure: read the env again
        sys.modules["prefect.context"].refresh_global_settings_context()


def environment(ws: Workspace, debug: bool = False) -> None:
    """Prefect's home, logging (the workspace's log file; the screen only with ``--debug``) and
    analytics settings, without an API: for a command that imports flows but runs none
    (``adapt --dry-run``), and the first part of ``configure``."""
    ws.prefect_home.mkdir(parents=True, exist_ok=True)
    logging_yml = ws.prefect_home / "logging.yml"
    if not logging_yml.exists() or logging_yml.read_text() != _LOGGING:
        logging_yml.write_text(_LOGGING, encoding="utf-8")
    env = {
        "PREFECT_HOME": str(ws.prefect_home),
        "PREFECT_LOGGING_SETTINGS_PATH": str(logging_yml),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO" if debug else "WARNING",
        "PREFECT_LOGGING_SERVER_LEVEL": "WARNING",
        "PREFECT_LOGGING_LOG_PRINTS": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        "PREFECT_TASKS_REFRESH_CACHE": "false",
        # Dask's scheduler and workers (processes that inherit this) log every start and stop
        "DASK_LOGGING__DISTRIBUTED": "info" if debug else "error",
    }
    os.environ.update(env)


DATABASE_ENV = "PREFECT_SERVER_DATABASE_CONNECTION_URL"  # Prefect 3's name (PREFECT_API_DATABASE_... before)


def database_environment(settings: Settings) -> None:
    """The database of the Prefect server this command starts (embedded, or ``tailor serve``'s):
    ``stores.prefect_database_url`` (PostgreSQL), else Prefect's default sqlite file in the
    workspace's PREFECT_HOME. A URL in the environment beforehand (a team's own setup) is kept
    when the setting is empty."""
    url = settings.stores.prefect_database_url
    if url:
        os.environ[DATABASE_ENV] = url
        os.environ.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)  # the older name would win otherwise


def embedded_server(ws: Workspace, idle_seconds: float, meanwhile: Callable[[], None] | None = None) -> str:
    """The workspace's embedded server's API URL: the running one if it answers, else a new one
    (``meanwhile`` runs while it starts). This process holds a lease on it until it ends."""
    home = ws.prefect_home
    key = str(home)
    if key not in _leases:
        fd = os.open(home / "server.lease", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a server is deciding to stop
        (home / "server.linger").unlink(missing_ok=True)  # from here, our death decides how long it stays
        if not _leases:
            atexit.register(_leave)
        _leases[key] = fd
    with FileLock(str(home / "server.start.lock")):
        info = _read_info(home)
        if info and _alive(info.get("pid")) and _healthy(info["api_url"], 5):
            return info["api_url"]
        return _start(ws, idle_seconds, meanwhile)


def _leave() -> None:
    """At a clean exit: where this process is the last command on a server, tell the server to
    stay ``idle`` seconds for the next one (a killed command says nothing: it stops at once)."""
    for key, fd in list(_leases.items()):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # granted only to the last holder
        except OSError:
            continue  # another command still holds a lease: the last of them decides
        try:
            (Path(key) / "server.linger").touch()
        except OSError:
            pass
        finally:
            os.close(fd)
            del _leases[key]


# Runs ``python ARGS...`` in this process once the kernel is told to SIGTERM it when its parent dies
# (PR_SET_PDEATHSIG, kept across exec): a `tailor serve` killed with -9 takes its server along.
# The parent may have died before prctl: then exit at once.
_TETHERED = ("import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
             "os.getppid() == int(sys.argv[1]) or sys.exit(1); "
             "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])")


def start_full_server(ws: Workspace, settings: Settings | None = None) -> tuple[str, subprocess.Popen]:
    """A ``prefect server start`` with its scheduler (which the embedded server does not run), on
    a free port with the workspace's PREFECT_HOME, for ``tailor serve``: (API URL, process). The
    caller stops it with ``stop_full_server``; if the caller dies first (its thread that called
    this, on Linux), the server gets SIGTERM from the kernel."""
    if settings is not None:
        database_environment(settings)
    log_path = ws.state_dir / "logs" / "prefect-server-serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    ws.prefect_home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    # the UI asks its server where the API is (/ui-settings); unset, Prefect answers PREFECT_API_URL
    # or else the default port 4200, never the --port given here
    env = {**os.environ, "PREFECT_HOME": str(ws.prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": os.environ.get("PREFECT_UI_ENABLED", "true"),
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
           "PREFECT_UI_API_URL": url, "PREFECT_UI_URL": url.removesuffix("/api")}
    env.pop("PREFECT_API_URL", None)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-c", _TETHERED, str(os.getpid()), "-m", "prefect", "server",
                                 "start", "--host", "127.0.0.1", "--port", str(port)],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    if not _healthy(url, STARTUP_SECONDS, proc):
        stop_full_server(proc)
        raise RuntimeError(f"the local Prefect server did not start; see {log_path}")
    return url, proc


def stop_full_server(proc: subprocess.Popen, grace: float = 20) -> None:
    """Stop a server of ``start_full_server`` (its process group: uvicorn and its services):
    ``grace`` seconds to stop cleanly after SIGTERM, then SIGKILL."""
    import signal

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def server_pid(ws: Workspace) -> int | None:
    """The pid of the workspace's embedded server, if one is recorded (for tests and `--debug`)."""
    info = _read_info(ws.prefect_home)
    return info.get("pid") if info else None


def _start(ws: Workspace, idle_seconds: float, meanwhile: Callable[[], None] | None = None) -> str:
    home = ws.prefect_home
    log_dir = ws.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):  # a port taken between choosing and binding it: once more
        port = _free_port()
        url = f"http://127.0.0.1:{port}/api"
        with open(log_dir / "prefect-server.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "flows.prefect_server", "--port", str(port), "--home", str(home),
                 "--idle", str(idle_seconds)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                cwd=str(Path(__file__).resolve().parent.parent), env={**os.environ, "PREFECT_API_URL": ""})
        if meanwhile is not None:
            meanwhile, run = None, meanwhile  # once, even if a second server has to be started
            run()
        if _healthy(url, STARTUP_SECONDS, proc):
            tmp = home / f".server.json.{os.getpid()}"
            tmp.write_text(json.dumps({"pid": proc.pid, "port": port, "api_url": url,
                                       "started": time.time()}), encoding="utf-8")
            os.replace(tmp, home / "server.json")
            return url
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    _raise_if_disk_full(log_dir / "prefect-server.log")
    raise RuntimeError(f"the embedded Prefect server did not start; see {log_dir / 'prefect-server.log'}")


def _raise_if_disk_full(log: Path) -> None:
    """A server that died of a full disk says so in its log (its SQLite database or its files), or
    the disk has no room left even for that: raise it as the OSError it is, which the CLI
    reports as one line and exit 2."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        tail = ""
    if ("No space left on device" in tail or "database or disk is full" in tail
            or shutil.disk_usage(log.parent).free < (1 << 20)):  # too full even to log why
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(log.parent.parent))


def _read_info(home: Path) -> dict | None:
    try:
        return json.loads((home / "server.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is not a server
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _healthy(api_url: str, seconds: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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

    Without one, each Dask worker process would start its own embedded Prefect server (seconds
    each, one more writer on the same database). ``configure`` already points every command at
    one API (``stores.prefect_api_url`` or the workspace's shared embedded server), which task
    runs sent to workers inherit; only a process that skipped ``configure`` needs a server here.
    """
    if (settings.schedule.task_runner != "dask" or settings.stores.prefect_api_url
            or os.environ.get("PREFECT_API_URL")):
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()  # the same one Prefect would start for this process
    server.start(timeout=STARTUP_SECONDS)
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield
