"""Where tracebacks go: the workspace's ``.tailor/logs/tailor.log`` (rotated), never the user's
screen unless ``--debug``. Library and Prefect records land there too, through the root logger."""
from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from workspace.paths import Workspace

_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s - %(message)s"
_installed: dict[str, logging.Handler] = {}


def log_file(ws: Workspace) -> Path:
    return ws.state_dir / "logs" / "tailor.log"


def setup(ws: Workspace, debug: bool = False) -> Path | None:
    """Send the root logger (and Python warnings) to the workspace's log file; to stderr as well
    with ``debug``. Idempotent; a second workspace in the same process replaces the first."""
    if not ws.state_dir.is_dir():
        return None
    path = log_file(ws)
    root = logging.getLogger()
    for other in list(root.handlers):
        # Prefect's default logging config (loaded when Prefect is imported before Tailor's config
        # is in place) puts its console handler on the root logger, bound to the stderr of that
        # moment: tracebacks would reach the screen, or a stream closed since (tests). The face owns
        # the root logger: the log file, and the screen only with --debug.
        if type(other).__module__.startswith("prefect.") and isinstance(other, logging.StreamHandler):
            root.removeHandler(other)
    current = _installed.get("file")
    if current is None or getattr(current, "baseFilename", None) != str(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = _File(path, maxBytes=5 << 20, backupCount=3, encoding="utf-8", delay=True)
        handler.setFormatter(logging.Formatter(_FORMAT))
        if current is not None:
            root.removeHandler(current)
            current.close()
        root.addHandler(handler)
        _installed["file"] = handler
    if debug and "console" not in _installed:
        console = _Stderr()
        console.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(console)
        _installed["console"] = console
    elif not debug and "console" in _installed:  # a later command of the same process (tests)
        root.removeHandler(_installed.pop("console"))
    logging.getLogger("tailor").setLevel(logging.INFO)
    logging.captureWarnings(True)
    return path


class _Stderr(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a record arrives (it may be replaced)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def record(ws: Workspace | None, argv: list[str], exc: BaseException, user_error: bool,
           debug: bool = False) -> Path | None:
    """Write ``exc``'s traceback to the log file (and, with ``debug``, to stderr); the log file,
    or None if there is no workspace to hold one."""
    if ws is None or setup(ws, debug) is None:
        return None
    logging.getLogger("tailor").log(logging.INFO if user_error else logging.ERROR,
                                    "command %r failed (%s)", argv, "user error" if user_error else "internal error",
                                    exc_info=(type(exc), exc, exc.__traceback__))
    handler = _installed["file"]
    try:
        handler.flush()
    except OSError:
        handler.failed = True
    return None if getattr(handler, "failed", False) else log_file(ws)


class _File(RotatingFileHandler):
    """The log file; when it cannot be written (a full disk), records are dropped without a word
    instead of logging's "--- Logging error ---" and a traceback on stderr for every one of them,
    and the command's one line then says it has no traceback file."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        self.failed = True
