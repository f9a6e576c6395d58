"""What moving to servers costs: each store path beside the embedded one, through the same functions
the CLI runs. Ingest (validation + DVC add, push, commit) to a local DVC remote vs an S3 server;
register a candidate, and predict with a champion cold (download + load) and warm, on sqlite +
local artifacts vs an MLflow tracking server serving artifacts; fleet adaptation on threads vs a
local Dask cluster. Servers run as local subprocesses (moto for S3), so the numbers are the
protocol's cost without a network's latency. The tiny encoder keeps the model's cost out of it.
Writes ``benchmarks/results/servers.md``.

    python -m benchmarks.servers                 # about 5 minutes on 2 busy cores
    python -m benchmarks.servers --tenants 4     # fewer tenants, quicker, noisier
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = [["animal", "food", "tool"], ["music", "sport", "car"], ["animal", "music", "law"],
           ["food", "sport", "weather"], ["car", "tool", "law"], ["weather", "law", "music"]]


def _timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def _workspace(root: Path, n: int, stores: dict, schedule: dict):
    from tests.conftest import synthetic_tenant, tiny_settings
    from tests.e2e.test_loop import write_csv
    from workspace.create import init_workspace

    tenants = [f"tenant-{i:02d}" for i in range(n)]
    settings = tiny_settings(tenants=",".join(tenants[1:]), val_tenants=tenants[0])
    settings = settings.replace("stores", **stores).replace("schedule", **schedule)
    ws = init_workspace(root / "ws", settings)
    (root / "inbox").mkdir()
    files = {t: write_csv(root / "inbox" / f"{t}.csv", *synthetic_tenant(CLASSES[i % len(CLASSES)], 10, seed=i))
             for i, t in enumerate(tenants)}
    return ws, files


def measure(root: Path, n: int, stores: dict, schedule: dict) -> dict:
    """Seconds per operation (lists, one entry per tenant) for one configuration of stores."""
    from tailor import commands
    from tests.servers import dask_cluster

    ws, files = _workspace(root, n, stores, schedule)
    ctx = commands.Context(ws.root)
    ctx.open(prefect=True, mlflow=False)  # Prefect's settings before Prefect is first imported
    from flows.adaptation import _adapt_one
    from flows.fleet import settings_digest
    from lightning_modules.delta import load_base
    from lightning_modules.encoder import load_encoder
    from registry.artifacts import base_model, candidates, serving
    from registry.review import approval

    out: dict[str, list[float]] = {"ingest": [], "register": [], "predict_cold": [], "predict_warm": []}
    for tenant, path in files.items():
        out["ingest"].append(_timed(commands.ingest, ctx, tenant, path))
    out["meta_train"] = [_timed(commands.meta_train, ctx, None, False, True)]
    from registry.review import bases

    bases.approve_base(ws, ctx.open()[1], "1", "benchmark-base-reviewer", "benchmark base")  # a second person
    _, settings = ctx.open()
    ref = base_model.get_base()
    base_dir = base_model.download_base(ref, ws.cache_dir / "bases")
    base_meta, _ = load_base(base_dir)
    encoder = load_encoder(settings.encoder)
    for tenant in files:
        outcome = _adapt_one(ws, settings, encoder, base_meta, ref, tenant, settings_digest(settings))
        start = time.perf_counter()
        version = candidates.register_candidate(ws, tenant, outcome["delta_dir"], base_dir, base=ref,
                                                validation=outcome["validation"], requested_by="bench")
        out["register"].append(time.perf_counter() - start)
        approval.approve(ws, settings, tenant, version, "reviewer", "benchmark",
                         override_reason="benchmark of the stores, not of the model")
    # the fleet again (forced: nothing changed), on the configured task runner: the candidates exist
    # (same deltas), so this is adaptation, chunking and the runner's own cost
    out["adapt_fleet"] = [_timed(commands.adapt, ctx, None, "bench", True)]
    if schedule.get("task_runner") == "dask":
        with dask_cluster(2) as (address, _):
            _set_schedule(ws, dask_address=address)
            commands.adapt(ctx, None, "bench", True)  # the workers import Tailor once
            out["adapt_fleet_running"] = [_timed(commands.adapt, ctx, None, "bench", True)]
    for tenant in files:
        serving._loaded.clear()
        shutil.rmtree(ws.cache_dir / "models", ignore_errors=True)
        out["predict_cold"].append(_timed(serving.predict, tenant, ["dog cat horse"]))
        out["predict_warm"].append(_timed(serving.predict, tenant, ["bread rice soup"]))
    return out


def _set_schedule(ws, **values) -> None:
    import yaml

    doc = yaml.safe_load(ws.params_file.read_text(encoding="utf-8"))
    doc["schedule"].update(values)
    ws.params_file.write_text(yaml.safe_dump(doc), encoding="utf-8")


def _fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f} s"
    return f"{statistics.median(values):.2f} s (median of {len(values)}; {min(values):.2f}-{max(values):.2f})"


def report(n: int, embedded: dict, servers: dict, startup: dict, seconds: float) -> str:
    rows = [
        ("ingest one tenant (validate, DVC add + push, git commit)", "ingest", "local folder remote", "S3 (moto server)"),
        ("register one candidate (run, pyfunc model, version, alias)", "register", "sqlite + local artifacts",
         "MLflow server, mlflow-artifacts: proxy"),
        ("predict, cold: download champion + load + 1 text", "predict_cold", "sqlite + local artifacts", "MLflow server"),
        ("predict, warm: 1 text, champion loaded", "predict_warm", "in process", "in process (alias lookup on the server)"),
        ("meta-train the base (tiny encoder, 6 steps) + register", "meta_train", "sqlite", "MLflow server"),
        (f"adapt the fleet ({n} tenants, 2 per chunk)", "adapt_fleet", "1 thread", "local Dask cluster of 2 started for the run"),
    ]
    lines = [
        "# Servers beside the embedded stores",
        "",
        f"`python -m benchmarks.servers --tenants {n}` on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average at start {startup['load']:.1f} "
        f"(the machine was shared: read ratios, not absolute seconds). Whole run: {seconds:.0f} s.",
        "Servers are local subprocesses: this is each protocol's cost without network latency. Tiny encoder, "
        f"{n} tenants of 30 rows; the same functions the CLI calls.",
        "",
        "| operation | embedded | seconds | server path | seconds | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for title, key, left, right in rows:
        a, b = embedded[key], servers[key]
        ratio = statistics.median(b) / statistics.median(a)
        lines.append(f"| {title} | {left} | {_fmt(a)} | {right} | {_fmt(b)} | {ratio:.1f}x |")
    running = servers.get("adapt_fleet_running")
    if running:
        a = embedded["adapt_fleet"]
        lines.append(f"| adapt the fleet, cluster already running | 1 thread | {_fmt(a)} | `schedule.dask_address` "
                     f"of a running 2-worker cluster | {_fmt(running)} | {statistics.median(running) / statistics.median(a):.1f}x |")
    lines += [
        "",
        "Register and adapt-the-fleet rows: registration is timed once per tenant on a fresh delta; the "
        "fleet run that follows finds each candidate already registered (same delta), so it times "
        "adaptation, chunking and the task runner.",
        "",
        "Starting the servers (once per team, not per command):",
        "",
        f"- `mlflow server --serve-artifacts` (sqlite backend, fresh): {startup['mlflow']:.1f} s until /health answers",
        f"- moto S3 server: {startup['moto']:.1f} s",
        "- local Dask cluster of 2 worker processes: started by each `tailor adapt` run when `schedule.dask_address` "
        "is empty (inside the fleet row); a long-lived cluster (`dask_address`) avoids it",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=6)
    args = parser.parse_args(argv)
    from tests.servers import S3_ENV, mlflow_server, s3_server

    os.environ.update(S3_ENV)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tailor-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        with s3_server(tmp / "moto") as s3_url:
            moto_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            with mlflow_server(tmp / "mlflow") as server:
                tracking = server.ready()
                mlflow_s = time.perf_counter() - t0
                print(f"servers up: moto {moto_s:.1f}s, mlflow {mlflow_s:.1f}s", flush=True)
                embedded = measure(tmp / "embedded", args.tenants, {}, {"chunk_size": 2})
                print("embedded done", flush=True)
                servers = measure(tmp / "servers", args.tenants,
                                  {"dvc_remote": "s3://tailor/dvc", "dvc_endpoint_url": s3_url, "tracking_uri": tracking},
                                  {"chunk_size": 2, "task_runner": "dask", "workers": 2})
    text = report(args.tenants, embedded, servers, {"load": load, "moto": moto_s, "mlflow": mlflow_s},
                  time.perf_counter() - started)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "servers.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
