"""Real servers the tests and `python -m benchmarks.servers` start as subprocesses on free local
ports: an S3-compatible server (moto), an MLflow tracking server that serves artifacts, and a
local Dask cluster of two worker processes. Each is stopped (by its own process id) on exit."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, seconds: float) -> bool:
    """Whether ``predicate()`` became true within ``seconds`` (polled every 0.2 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def in_threads(client, n: int, seconds: float = 120) -> list[Exception]:
    """Run ``client(i)`` for i in 0..n-1 side by side; the exceptions they raised."""
    import threading

    failures: list[Exception] = []

    def run(i):
        try:
            client(i)
        except Exception as exc:  # noqa: BLE001 - returned to the test
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds)
    return failures


class Server:
    """A server subprocess on a local port; ``ready()`` waits for its health URL (so several can
    start side by side while a test prepares other things)."""

    def __init__(self, proc: subprocess.Popen, url: str, health: str, log: Path):
        self.proc, self.url, self.health, self.log = proc, url, health, log

    def ready(self, seconds: float = 180) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.url} exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.health, timeout=2):
                    return self.url
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{self.url} did not answer within {seconds:.0f}s: {self.log.read_text()[-2000:]}")


@contextmanager
def _serving(argv: list[str], url: str, health: str, log: Path, env: dict | None = None):
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # its own process group: `mlflow server` runs uvicorn and a job runner as children
        proc = subprocess.Popen(argv, stdout=out, stderr=out, env={**os.environ, **(env or {})},
                                start_new_session=True)
    try:
        yield Server(proc, url, health, log)
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """A throwaway server: a few seconds to stop cleanly, then killed (its whole process group)."""
    from flows.runtime import stop_full_server

    stop_full_server(proc, grace=5)


@contextmanager
def s3_server(folder: Path, buckets: tuple[str, ...] = ("tailor",)):
    """Yields the endpoint URL of a moto S3 server with ``buckets`` created (S3_ENV credentials)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _serving([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], url,
                  f"{url}/moto-api/", Path(folder) / "moto.log") as server:
        server.ready()
        import boto3

        s3 = boto3.client("s3", endpoint_url=url, **{k.lower(): v for k, v in S3_ENV.items()
                                                      if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1")
        for bucket in buckets:
            s3.create_bucket(Bucket=bucket)
        yield url


@contextmanager
def mlflow_server(folder: Path):
    """Yields a ``Server`` running ``mlflow server --serve-artifacts`` on sqlite, artifacts under
    ``folder``; call ``ready()`` for its URL (it takes 10-30 s to start)."""
    folder = Path(folder)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--serve-artifacts",
            "--artifacts-destination", str(folder / "artifacts")]
    with _serving(argv, url, f"{url}/health", folder / "mlflow-server.log") as server:
        yield server


@contextmanager
def api_server(root: Path, log: Path):
    """Yields a ``Server`` running ``tailor serve-api`` on the workspace ``root`` (this checkout's
    code); ``ready()`` waits for /readyz (the encoder loaded, the registry read)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-c", "from tailor.cli import console; console()", "-w", str(root),
            "serve-api", "--port", str(port)]
    with _serving(argv, url, f"{url}/readyz", log, env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])}) as server:
        yield server


@contextmanager
def model_server(model_uri: str, tracking_uri: str, log: Path):
    """Yields a ``Server`` running ``mlflow models serve`` on a registered version (the warm path
    for traffic), in this environment (``--env-manager local``); ``ready()`` waits for /ping."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PATH")}
    # mlflow execs `uvicorn` by name: the environment's bin folder must be on PATH (an activated venv)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    os.environ.update(MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_REGISTRY_URI=tracking_uri, PATH=path)
    try:
        with _serving(argv, url, f"{url}/ping", Path(log)) as server:
            yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def dask_cluster(workers: int = 2):
    """Yields (scheduler address, client) of a local cluster of single-threaded worker processes."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield cluster.scheduler_address, client


@contextmanager
def prefect_server(folder: Path):
    """Yields a ``Server`` running ``prefect server start`` (with its scheduler) and PREFECT_HOME in
    ``folder``; ``ready()`` returns its API URL."""
    folder = Path(folder)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(folder / "prefect-home"), PREFECT_UI_ENABLED="false",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    log = folder / "prefect-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=out, stderr=out, env=env, start_new_session=True)
    try:
        yield Server(proc, url, f"{url}/health", log)
    finally:
        _stop_group(proc)
