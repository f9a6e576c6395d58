"""A throwaway PostgreSQL server for the tests and benchmarks: Debian's ``postgresql`` package
(the Makefile installs it), ``initdb`` in a temporary folder, a free local port, stopped and
removed at the end. PostgreSQL refuses to run as root, so as root (CI, this machine) the server
runs as ``nobody`` (``runuser``), in a folder of its own under /tmp that ``nobody`` can reach.
Connections are local and trusted (no password): the server listens on 127.0.0.1 only.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "tailor"


def bin_dir() -> Path:
    """The newest installed PostgreSQL's programs (``/usr/lib/postgresql/<major>/bin``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `make setup` installs Debian's postgresql package")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """``with Postgres() as pg: url = pg.database("mlflow")``."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tailor-pg-", dir="/tmp"))
        self.port = _free_port()
        self.bin = bin_dir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.folder, "nobody")

    def _run(self, *argv: str) -> str:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self.as_root:
            command = ["runuser", "-u", "nobody", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd="/tmp")
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        return done.stdout

    def start(self) -> "Postgres":
        data = self.folder / "data"
        self._run("initdb", "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.folder / "server.log"), "-w",
                  "-t", "120", "start")
        return self

    def database(self, name: str) -> str:
        """Create database ``name``; its URL for SQLAlchemy/MLflow (``postgresql://``)."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return self.url(name)

    def url(self, name: str, driver: str = "") -> str:
        return f"postgresql{'+' + driver if driver else ''}://{USER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "Postgres":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def race_worker(argv: list[str]) -> int:
    """``python -m tests.postgres ROOT approve|reject WHO GO-FILE TENANT:VERSION...``: the trials one
    by one, each started together with the other worker (a barrier of files beside GO-FILE), as
    two reviewers' commands would run them; prints {tenant: exit code} (0 done, 2 refused)."""
    import json
    import sys
    import time

    from registry.review import approval
    from registry.storage import store
    from workspace.errors import UserError
    from workspace.paths import Workspace
    from workspace.settings import load_settings

    root, action, who, go, *trials = argv
    ws = Workspace(Path(root))
    settings = load_settings(ws.params_file)
    store.configure(ws, settings)
    store.client().search_experiments()  # connected before the first trial starts
    other = "reject" if action == "approve" else "approve"
    codes = {}
    for i, trial in enumerate(trials):
        tenant, version = trial.split(":")
        Path(f"{go}.{action}.{i}").touch()
        deadline = time.monotonic() + 120
        while not Path(f"{go}.{other}.{i}").exists():  # the other worker died: say so rather than wait
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {other} worker never reached trial {i}")
            time.sleep(0.005)
        try:
            if action == "approve":
                approval.approve(ws, settings, tenant, version, who, "race", override_reason="test")
            else:
                approval.reject(ws, tenant, version, who, "race")
            codes[tenant] = 0
        except UserError as exc:
            print(f"{tenant}: {exc}", file=sys.stderr)
            codes[tenant] = 2
        except BaseException:
            Path(f"{go}.{action}.{len(trials)}").touch()
            raise
    print(json.dumps(codes))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(race_worker(sys.argv[1:]))
