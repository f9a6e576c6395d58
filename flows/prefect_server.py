"""The workspace's embedded Prefect API server, shared by the commands that run at the same time
and gone soon after the last of them ends: within seconds of a command killed with ``kill -9``,
``idle`` seconds after one that ended cleanly (for the next command to reuse it).

Each command holds a shared ``flock`` on ``server.lease`` for as long as it lives; the kernel
drops it when the command dies. The last command to end cleanly leaves ``server.linger`` behind
(``runtime._leave``); a command that takes a lease removes it. The server tries for an exclusive
lock every half second: once it has one, no command uses it, and it stops at once, or after
``idle`` seconds in a row when ``server.linger`` says the last command left cleanly. It removes
``server.json`` first (still holding the lock, so no command can find it half-closed), then gives
uvicorn ``GRACE`` seconds to close and ends the process itself if that was not enough.

Run as ``python -m flows.prefect_server --port P --home DIR --idle S`` by ``flows.runtime``.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import threading
import time
from pathlib import Path

POLL = 0.5    # seconds between lease checks
GRACE = 2.0   # seconds uvicorn gets to close (Prefect's services flush events on shutdown) before exit


def _watch(server, home: Path, idle: float) -> None:
    fd = os.open(home / "server.lease", os.O_RDWR | os.O_CREAT, 0o600)
    idle_since = None
    while not server.should_exit:
        time.sleep(POLL)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # some command holds its lease
            idle_since = None
            continue
        try:
            idle_since = idle_since or time.monotonic()
            linger = idle if (home / "server.linger").exists() else 0.0  # no stamp: the last one was killed
            if time.monotonic() - idle_since >= linger:
                info = home / "server.json"
                try:
                    if json.loads(info.read_text()).get("pid") == os.getpid():
                        info.unlink()
                        (home / "server.linger").unlink(missing_ok=True)
                except (OSError, ValueError):
                    pass
                server.should_exit = True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    time.sleep(GRACE + 1)  # a daemon thread: reached only while uvicorn is still closing
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    # what Prefect's own ephemeral server sets: no UI, no background services
    os.environ.update({"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"})
    import uvicorn
    from prefect.server.api.server import create_app

    config = uvicorn.Config(create_app(ephemeral=True, final=True), host="127.0.0.1", port=args.port,
                            log_level="error", lifespan="on", timeout_graceful_shutdown=GRACE)
    server = uvicorn.Server(config)
    threading.Thread(target=_watch, args=(server, args.home, args.idle), daemon=True).start()
    server.run()


if __name__ == "__main__":
    main()
