"""Fleet operations at scale, through the commands a team runs: bulk ingest + validation of N small
generated tenants (`tailor ingest --dir`), the fleet flow over them (`tailor adapt --all`: its wall
time against the time spent adapting), an unchanged rerun, one new tenant file to a registered
candidate through the CLI, and how fast the read commands answer on that workspace. Real DVC, Great
Expectations, MLflow (sqlite) and Prefect; the tiny encoder keeps the model's cost out of it unless
``--encoder real``. Writes ``benchmarks/results/fleet.md`` and ``fleet.json``.

    python -m benchmarks.fleet                     # 1,000 tenants (about 45 minutes on 2 busy cores)
    python -m benchmarks.fleet --tenants 200       # quicker (about 10 minutes)
    python -m benchmarks.fleet --ingest-only       # bulk ingest of 1,000 alone -> fleet-ingest.md
    python -m benchmarks.fleet --tenants 30 --encoder real   # all-MiniLM-L6-v2 -> fleet-real-encoder.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = [["animal", "food", "tool"], ["music", "sport", "car"], ["animal", "music", "law"],
           ["food", "sport", "weather"], ["car", "tool", "law"], ["weather", "law", "music"]]
TARGETS = {"ingest_minutes": 10.0, "overhead": 1.3, "unchanged_seconds": 30.0, "new_tenant_seconds": 30.0,
           "read_seconds": 1.5, "predict_seconds": 3.0}


def write_tenant(path: Path, tenant: str, i: int, per_label: int) -> Path:
    """A small tenant of 3 labels; every text carries the tenant id (no cross-tenant duplicates)."""
    from tests.conftest import synthetic_tenant

    texts, labels = synthetic_tenant(CLASSES[i % len(CLASSES)], per_label, seed=i)
    lines = ["text,label"] + [f"{t} {tenant},{lb}" for t, lb in zip(texts, labels)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cli(root: Path, *argv: str) -> float:
    """Seconds for one `tailor` command in a fresh process (what a person waits for)."""
    env = {**os.environ, "TAILOR_USER": "bench"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "from tailor.cli import console; console()", "-w", str(root),
                           *argv], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"tailor {' '.join(argv)} failed: {done.stderr[-1000:]}")
    return seconds


def _task_seconds(flow_name: str, runs: dict | None = None) -> dict[str, float]:
    """Seconds per task name (summed) of the newest run of ``flow_name``: where a run's time went.
    ``runs``, if given, receives the seconds of each task run by its name (one per batch)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                                    sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        out: dict[str, float] = {}
        offset = 0
        while True:
            page = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
                                         offset=offset, limit=200)
            for task_run in page:
                key = task_run.task_key.rsplit("-", 1)[0] if task_run.task_key else task_run.name
                out[key] = out.get(key, 0.0) + task_run.total_run_time.total_seconds()
                if runs is not None:
                    runs[task_run.name] = task_run.total_run_time.total_seconds()
            if len(page) < 200:
                return {"flow_run": run.total_run_time.total_seconds(), **out}
            offset += 200


def measure(workdir: Path, n: int, per_label: int, encoder: str, ingest_only: bool = False,
            task_runner: str = "thread", workers: int = 1) -> dict:
    from tailor import commands
    from tests.conftest import tiny_settings
    from workspace.create import init_workspace

    tenants = [f"t-{i:04d}" for i in range(n)]
    settings = tiny_settings(tenants=",".join(tenants[1:6]), val_tenants=tenants[0])
    if encoder == "real":
        from workspace.settings import Settings

        defaults = Settings().to_dict()  # the real encoder with the default adaptation (meta-training stays short)
        settings = settings.replace("encoder", **defaults["encoder"]).replace("adapt", **defaults["adapt"])
    settings = settings.replace("schedule", task_runner=task_runner, workers=workers)
    ws = init_workspace(workdir / "ws", settings)
    inbox = workdir / "inbox"
    inbox.mkdir()
    for i, tenant in enumerate(tenants):
        write_tenant(inbox / f"{tenant}.csv", tenant, i, per_label)
    ctx = commands.Context(ws.root)
    ctx.open(prefect=True, mlflow=False)  # Prefect's settings before Prefect is first imported
    os.environ["TAILOR_USER"] = "bench"  # who requests the candidates
    out: dict = {"tenants": n, "rows_per_tenant": 3 * per_label, "encoder": encoder,
                 "task_runner": task_runner, "workers": workers,
                 "at": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"}

    start = time.perf_counter()
    outcomes = commands.ingest_dir(ctx, inbox)
    out["ingest_seconds"] = time.perf_counter() - start
    out["ingest_versioned"] = sum(o["status"] == "versioned" for o in outcomes)
    runs: dict[str, float] = {}
    out["ingest_tasks"] = _task_seconds("tailor-ingest-dir", runs)
    size = settings.schedule.ingest_batch  # validation per tenant, batch by batch: flat, or growing with the store?
    out["validate_per_tenant"] = [round(runs[f"validate-batch-{k}-of-{-(-n // size)}"] / min(size, n - (k - 1) * size), 3)
                                  for k in range(1, -(-n // size) + 1) if f"validate-batch-{k}-of-{-(-n // size)}" in runs]
    if ingest_only:
        return out

    start = time.perf_counter()
    commands.meta_train(ctx, None)
    out["meta_train_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    outcomes = commands.adapt(ctx, None, "bench")
    out["fleet_seconds"] = time.perf_counter() - start
    done = [o for o in outcomes if o.get("seconds")]
    out["fleet_registered"] = sum(bool(o.get("version")) for o in outcomes)
    for part in ("check", "adapt", "register"):
        out[f"fleet_{part}_seconds"] = sum(o["seconds"].get(part, 0.0) for o in done)

    start = time.perf_counter()
    outcomes = commands.adapt(ctx, None, "bench")
    out["unchanged_seconds"] = time.perf_counter() - start
    out["unchanged_skipped"] = sum(o["status"] == "skipped" for o in outcomes)

    new = write_tenant(workdir / "newco.csv", "newco", n, per_label)
    out["new_tenant_ingest_seconds"] = _cli(ws.root, "ingest", "newco", str(new))
    out["new_tenant_adapt_seconds"] = _cli(ws.root, "adapt", "newco")

    from registry.review import approval

    approval.approve(ws, settings, tenants[1], "1", "reviewer", "benchmark",
                     override_reason="benchmark of the commands, not of the model")
    out["load_15min_at_end"] = round(os.getloadavg()[2], 2)  # how busy the cores were meanwhile
    out["commands"] = {" ".join(argv): _cli(ws.root, *argv) for argv in (
        ("review", "list"), ("lineage", tenants[1]), ("data", "show", tenants[1]), ("audit", "verify"),
        ("predict", tenants[1], "dog cat horse"))}
    return out


def report(r: dict) -> str:
    t = TARGETS
    n = r["tenants"]
    ingest_min = r["ingest_seconds"] / 60
    ingest_only = "fleet_seconds" not in r
    overhead = r.get("fleet_seconds", 0) / max(r.get("fleet_adapt_seconds", 0), 1e-9)
    work = sum(r.get(f"fleet_{k}_seconds", 0) for k in ("check", "adapt", "register"))
    new_total = r.get("new_tenant_ingest_seconds", 0) + r.get("new_tenant_adapt_seconds", 0)
    if ingest_only:
        r = {**r, **{k: 0 for k in ("fleet_seconds", "fleet_registered", "unchanged_skipped", "unchanged_seconds",
                                    "new_tenant_ingest_seconds", "new_tenant_adapt_seconds")}}

    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    lines = [f"# Fleet operations: {n} tenants", "",
             f"`python -m benchmarks.fleet --tenants {n}{' --ingest-only' if ingest_only else ''}"
             f"{'' if r['encoder'] == 'tiny' else ' --encoder ' + r['encoder']}"
             f"{'' if r.get('task_runner', 'thread') == 'thread' else ' --task-runner ' + r['task_runner']}"
             f"{'' if r.get('workers', 1) == 1 else ' --workers ' + str(r['workers'])}` on {platform.machine()} with {os.cpu_count()} cores"
             f"{'' if 'load_15min_at_end' not in r else ' (15-minute load average ' + str(r['load_15min_at_end']) + ' when it ended)'}"
             f", started {r.get('at') or f'{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC'}. "
             f"Each tenant: {r['rows_per_tenant']} rows, 3 labels; encoder: {r['encoder']}; adaptation chunks "
             f"on schedule.task_runner {r.get('task_runner', 'thread')} with {r.get('workers', 1)} worker(s). Real DVC (local "
             "remote), Great Expectations, MLflow (sqlite) and Prefect (the workspace's embedded server).", "",
             "| what | measured | target | |", "|---|---|---|---|",
             f"| bulk ingest + validation of {n} tenants (`tailor ingest --dir`) | {ingest_min:.1f} min "
             f"({n / max(ingest_min, 1e-9):.0f} tenants/min; {r['ingest_versioned']} versioned) | "
             f"< {t['ingest_minutes']:.0f} min | {mark(ingest_min < t['ingest_minutes'])} |",
             f"| fleet flow (`tailor adapt --all`) | {r['fleet_seconds']:.0f} s "
             f"({r['fleet_registered'] / max(r['fleet_seconds'] / 60, 1e-9):.0f} tenants/min; "
             f"{r['fleet_registered']} registered) | | |",
             f"| orchestration overhead: flow wall time / time adapting | {overhead:.2f}x | "
             f"<= {t['overhead']}x | {mark(overhead <= t['overhead'])} |",
             f"| flow wall time / each tenant's work (data check + adaptation + registration, summed) | "
             f"{r.get('fleet_seconds', 0) / max(work, 1e-9):.2f}x | | |",
             f"| unchanged rerun ({r['unchanged_skipped']} skipped) | {r['unchanged_seconds']:.1f} s | "
             f"< {t['unchanged_seconds']:.0f} s | {mark(r['unchanged_seconds'] < t['unchanged_seconds'])} |",
             f"| one new tenant file to a registered candidate (`tailor ingest` + `tailor adapt`, fresh "
             f"processes) | {new_total:.1f} s ({r['new_tenant_ingest_seconds']:.1f} + "
             f"{r['new_tenant_adapt_seconds']:.1f}) | < {t['new_tenant_seconds']:.0f} s | "
             f"{mark(new_total < t['new_tenant_seconds'])} |", ""]
    per_tenant = r.get("validate_per_tenant") or []
    batches = (f" Validation per tenant, batch by batch (seconds): {', '.join(f'{v:.2f}' for v in per_tenant)}."
               if per_tenant else "")
    if ingest_only:
        return "\n".join(lines[:6] + [lines[6]] + ["", "Bulk ingest, summed over its Prefect task runs (seconds): "
                          + ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["ingest_tasks"].items())) + "." + batches]) + "\n"
    lines += ["## Where the time goes", "",
              f"Bulk ingest, summed over its Prefect task runs (seconds): "
              + ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["ingest_tasks"].items())) + "." + batches, "",
              f"Fleet flow, summed over tenants (seconds): data check {r['fleet_check_seconds']:.1f}, adaptation "
              f"{r['fleet_adapt_seconds']:.1f}, registration in MLflow {r['fleet_register_seconds']:.1f}; "
              f"their sum {work:.1f} against {r['fleet_seconds']:.1f} s of wall time (registration runs in "
              "the flow's thread while the next chunk adapts). Meta-training (not a target) took "
              f"{r['meta_train_seconds']:.0f} s.", ""]
    lines += ["## Commands on this workspace (fresh process each, cold)", "", "| command | seconds | target |",
              "|---|---|---|"]
    for command, seconds in r["commands"].items():
        target = t["predict_seconds"] if command.startswith("predict") else t["read_seconds"]
        lines.append(f"| `tailor {command}` | {seconds:.1f} | < {target} s: {mark(seconds < target)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--per-label", type=int, default=10, help="rows per label (3 labels per tenant)")
    parser.add_argument("--encoder", choices=("tiny", "real"), default="tiny")
    parser.add_argument("--ingest-only", action="store_true", help="bulk ingest alone (fleet-ingest.md)")
    parser.add_argument("--task-runner", choices=("thread", "dask"), default="thread",
                        help="schedule.task_runner: adaptation chunks in a thread of the flow's process or in "
                             "processes of a local Dask cluster (registration stays in the flow's process)")
    parser.add_argument("--workers", type=int, default=1, help="schedule.workers")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", type=Path, help="build the workspace in this (new) folder and keep it")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True)
    with nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory(prefix="tailor-fleet-") as where:
        result = measure(Path(where), args.tenants, args.per_label, args.encoder, args.ingest_only,
                         args.task_runner, args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "fleet-ingest" if args.ingest_only else ("fleet" if args.encoder == "tiny" else "fleet-real-encoder")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    (args.out / f"{name}.md").write_text(report(result))
    print(report(result))


if __name__ == "__main__":
    main()
