"""Meta-learning benchmark, leave one source out: for each of six text sources, meta-train on four
others, early-stop on a fifth, and score every method on the left-out source's classes, side by
side on the same episodes; plus why the inner loop moves or not, and what each method costs.

    python -m benchmarks.meta_learning            # full run (make bench), <= 90 min on 2 CPU cores
    python -m benchmarks.meta_learning --quick    # the same tables on 2 folds and few episodes (make bench-quick)

Writes ``meta_learning.md``, ``meta_learning.json`` and PNG plots to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from corpora.catalog import ALL_SOURCES

ROOT = Path(__file__).resolve().parent
SHOTS = (1, 5, 10)
CHECKPOINTS = (1, 2, 4, 8, 16)
ALGORITHMS = ("fomaml", "reptile")   # meta-trained per fold; second-order MAML is a cost reference
TRACE_STEPS = 16


@dataclass(frozen=True)
class Profile:
    """How much to run, per left-out source (fold)."""

    name: str
    folds: tuple[str, ...]        # left-out sources
    per_class: int                # texts kept per class
    episodes: dict                # shots -> episodes per fold
    curve_episodes: int           # the first N 5-shot episodes are also scored after each CHECKPOINTS count
    trace_episodes: int           # the first N 5-shot episodes: the inner loop traced step by step
    setfit_episodes: int          # the first N 5-shot episodes: SetFit too
    setfit_max_pairs: int | None  # None: setfit's own pair count
    cost_warmup: int              # meta-steps before timing
    cost_rounds: int              # timed meta-steps per algorithm
    memory_steps: int             # meta-steps watched for peak memory
    cost_repeats: int             # timed adaptations per method
    chunk: int                    # episodes per worker job
    meta_train: dict = field(default_factory=dict)   # changes to the product's meta_train settings


FULL = Profile("full", folds=ALL_SOURCES,
               per_class=40, episodes={1: 15, 5: 30, 10: 10}, curve_episodes=10, trace_episodes=6,
               setfit_episodes=6, setfit_max_pairs=None, cost_warmup=1, cost_rounds=3, memory_steps=2,
               cost_repeats=3, chunk=5, meta_train={"max_minutes": 4.0, "val_every": 50, "val_tasks": 16})
QUICK = Profile("quick", folds=("ha-intents", "fortunes"), per_class=40, episodes={1: 4, 5: 8, 10: 3},
                curve_episodes=4, trace_episodes=3, setfit_episodes=1, setfit_max_pairs=48, cost_warmup=0,
                cost_rounds=1, memory_steps=1, cost_repeats=1, chunk=4,
                meta_train={"max_minutes": 1.5, "val_every": 50, "val_tasks": 8})


def log(msg: str, t0: float) -> None:
    print(f"[{time.time() - t0:5.0f}s] {msg}", flush=True)


def parse_set(items: list[str]) -> dict[str, dict]:
    """``--set meta_train.meta_lr=0.003`` -> {"meta_train": {"meta_lr": 0.003}} (YAML-typed values)."""
    import yaml

    out: dict[str, dict] = {}
    for item in items:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if not (section and name and value):
            raise SystemExit(f"--set {item!r}: use SECTION.KEY=VALUE, e.g. meta_train.meta_lr=0.003")
        out.setdefault(section, {})[name] = yaml.safe_load(value)
    return out


def build_settings(profile: Profile, overrides: dict[str, dict]):
    from workspace.errors import UserError
    from workspace.settings import Settings, settings_from_dict

    raw = Settings().to_dict()
    raw["meta_train"].update(profile.meta_train)
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    try:
        return settings_from_dict(raw)
    except UserError as exc:
        raise SystemExit(f"--set: {exc}") from None


def old_settings(settings):
    """The adaptation before issue 15: SGD at 0.05 on every tensor, the prototype head, no label names."""
    s = settings.replace("meta_train", optimizer="sgd", inner_lr=0.05, head_lr=0.05, name_weight=0.0)
    return s.replace("adapt", head="inner", label_names=False)


def machine() -> dict:
    import platform

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    return {"nproc": os.cpu_count(), "torch": torch.__version__, "cpu": cpu, "python": platform.python_version(),
            "torch_threads_default": torch.get_num_threads()}


def _pool(workers: int, t0: float, threads: int = 1, fresh: bool = False) -> ProcessPoolExecutor:
    """Spawned workers with ``threads`` torch threads each; ``fresh``: a new process per job."""
    from benchmarks.jobs import init_worker

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker,
                               initargs=(t0, threads), max_tasks_per_child=1 if fresh else None)


def prepare(profile: Profile, seed: int) -> dict:
    from benchmarks.data import SOURCES, all_tenants, clean_pools, fold_data, folds, mask_leaks
    from corpora.catalog import class_pools

    pools = clean_pools(mask_leaks(class_pools(seed=seed, sources=SOURCES)), profile.per_class, seed)
    tenants = all_tenants(pools, seed)
    plan = folds(profile.folds)
    counts = {s: {"classes": len(pools[s]), "tenants": len(tenants[s]),
                  "texts": sum(len(t) for t, _ in tenants[s].values())} for s in SOURCES}
    return {"tenants": tenants, "folds": plan, "fold_data": {f.test: fold_data(tenants, f) for f in plan},
            "counts": counts}


class Runner:
    """Submits the jobs of every fold to the worker pool, collects results as work frees up, and
    submits a base's evaluations as soon as its meta-training ends."""

    def __init__(self, pool, settings, data, profile: Profile, args, t0: float):
        self.pool, self.settings, self.data, self.profile, self.args, self.t0 = pool, settings, data, profile, args, t0
        self.pending, self.records, self.training, self.trace, self.work, self.extra = {}, [], {}, [], [], {}
        self.bases: dict = {}

    def submit(self, kind: str, tag, fn, *args) -> None:
        self.pending[self.pool.submit(fn, *args)] = (kind, tag)

    def evals(self, fold: str, method: str, meta) -> None:
        from benchmarks import jobs

        p, s, tenants = self.profile, self.settings, self.data["tenants"][fold]
        for shots, n in p.episodes.items():
            for lo in range(0, n, p.chunk):
                self.submit("eval", (fold, method), jobs.eval_job, s, tenants, self.args.cache, fold, shots, lo,
                            min(n, lo + p.chunk), self.args.seed, method, meta, CHECKPOINTS,
                            p.curve_episodes if shots == 5 else 0)

    def start(self) -> None:
        from benchmarks import cost, jobs

        p, s, a = self.profile, self.settings, self.args
        for fold in self.data["folds"]:
            train, val = self.data["fold_data"][fold.test]
            for algorithm in ALGORITHMS:
                self.submit("meta-train", (fold.test, algorithm), jobs.meta_train_job, fold.test, algorithm, s,
                            train, val, a.cache)
        first = self.data["folds"][0].test
        self.submit("cost", "meta-step", cost.meta_step_times, s, self.data["fold_data"][first][0], a.cache,
                    ("maml", *ALGORITHMS), p.cost_warmup, p.cost_rounds)
        for fold in self.data["folds"]:
            tenants = self.data["tenants"][fold.test]
            self.evals(fold.test, "frozen", None)
            self.evals(fold.test, "no-meta", None)
            self.submit("trace", fold.test, jobs.trace_job, s, tenants, a.cache, fold.test, p.trace_episodes, a.seed,
                        TRACE_STEPS, {"old": old_settings(s), "new": s})
            if not a.skip_setfit:
                for i in range(p.setfit_episodes):
                    self.submit("setfit", fold.test, jobs.setfit_job, s, tenants, a.cache, fold.test, i,
                                p.episodes[5], a.seed, p.setfit_max_pairs)

    def collect(self) -> None:
        while self.pending:
            done, _ = wait(self.pending, return_when=FIRST_COMPLETED)
            for fut in done:
                (kind, tag), result = self.pending.pop(fut), fut.result()
                out = result["out"]
                self.work.append({"kind": kind, "tag": list(tag) if isinstance(tag, tuple) else tag,
                                  "wall_s": result["wall_s"], "cpu_s": result["cpu_s"]})
                if kind in ("eval", "setfit"):
                    self.records += out
                    scored = [r for r in out if "acc" in r]
                    mean = sum(r["acc"] for r in scored) / max(1, len(scored))
                    log(f"scored {kind} {tag[0] if isinstance(tag, tuple) else tag} {out[-1]['shots']}-shot "
                        f"{tag[1] if isinstance(tag, tuple) else 'setfit'} episodes {out[0]['episode']}-"
                        f"{out[-1]['episode']}: mean acc {mean:.3f}", self.t0)
                elif kind == "trace":
                    self.trace += out
                elif kind == "cost":
                    self.extra["meta_step_times"] = out
                else:
                    fold, algorithm = tag
                    self.training[f"{fold} {algorithm}"] = {k: out[k] for k in ("fold", "algorithm", "metrics", "history")}
                    self.bases[tag] = out["meta"]
                    m = out["metrics"]
                    log(f"meta-trained {fold} {algorithm}: kept step {m['best_step']} of {m['steps_run']}, validation "
                        f"{m['val_accuracy_start']:.3f} -> {m['val_accuracy']:.3f}", self.t0)
                    self.evals(fold, algorithm, out["meta"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.meta_learning", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the same tables on 2 folds and few episodes (<= 15 min)")
    ap.add_argument("--out", type=Path, default=ROOT / "results", help="where the report and plots go")
    ap.add_argument("--cache", type=Path, default=ROOT / "cache", help="cached frozen-encoder features")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (one torch thread each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", default="", help="comma-separated left-out sources (default: the profile's)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a setting of params.yaml (repeatable), e.g. meta_train.meta_lr=0.003")
    ap.add_argument("--skip-setfit", action="store_true", help="leave SetFit out (tuning runs)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    profile = QUICK if args.quick else FULL
    if args.folds:
        from benchmarks.data import SOURCES

        chosen = tuple(f.strip() for f in args.folds.split(",") if f.strip())
        unknown = sorted(set(chosen) - set(SOURCES))
        if unknown or not chosen:
            raise SystemExit(f"--folds: unknown source(s) {unknown}; choose from {', '.join(SOURCES)}")
        profile = Profile(**{**asdict(profile), "folds": chosen})
    settings = build_settings(profile, parse_set(args.set))
    command = " ".join(["python -m benchmarks.meta_learning", *(sys.argv[1:] if argv is None else argv)])
    info = {"command": command.strip(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "profile": profile.name,
            "load_start": os.getloadavg(), **machine()}
    log(f"{info['command']} on {info['nproc']} cores ({info['cpu']}), torch {info['torch']}", t0)
    data = prepare(profile, args.seed)
    log("folds (left out <- validation, meta-training): " + "; ".join(
        f"{f.test} <- {f.val}, {'+'.join(f.train)}" for f in data["folds"]), t0)
    from benchmarks import cost, jobs, report

    with _pool(args.workers, t0) as pool, _pool(1, t0, fresh=True) as probe:
        used = {s for f in data["folds"] for s in (f.test, f.val, *f.train)}
        texts = [t for s in sorted(used) for t, _ in data["tenants"][s].values()]
        start = time.time()
        feats = list(pool.map(jobs.features_job, [settings] * len(texts), texts, [args.cache] * len(texts)))
        work = [{"kind": "features", "tag": "all", "wall_s": time.time() - start,
                 "cpu_s": sum(f["cpu_s"] for f in feats)}]
        log(f"frozen features of {sum(map(len, texts))} texts cached", t0)
        first_train = data["fold_data"][data["folds"][0].test][0]
        memory = {a: probe.submit(cost.meta_step_memory, settings, first_train, args.cache, a, profile.memory_steps)
                  for a in ("maml", *ALGORITHMS)}
        run = Runner(pool, settings, data, profile, args, t0)
        run.start()
        run.collect()
        times = run.extra["meta_step_times"]
        steps = [{"algorithm": a, **times[a], **memory[a].result()["out"], "threads": times["threads"]}
                 for a in ("maml", *ALGORITHMS)]
    log("accuracy done; timing adaptation alone in a fresh process", t0)
    first = data["folds"][0].test
    with _pool(1, t0, threads=info["torch_threads_default"]) as pool:
        threads = sorted({1, info["torch_threads_default"]})
        adaptation = pool.submit(cost.adaptation_cost, settings, data["tenants"],
                                 {a: run.bases[(first, a)] for a in ALGORITHMS}, args.cache,
                                 profile.cost_repeats, threads).result()
    work += run.work + [{"kind": "cost", "tag": "adaptation", "wall_s": adaptation["wall_s"],
                         "cpu_s": adaptation["cpu_s"]}]
    info.update(runtime_s=time.time() - t0, load_end=os.getloadavg(), counts=data["counts"],
                folds=[asdict(f) for f in data["folds"]], profile_plan=asdict(profile), checkpoints=CHECKPOINTS,
                trace_steps=TRACE_STEPS, setfit_skipped=args.skip_setfit, settings=settings.to_dict(),
                old_settings=old_settings(settings).to_dict())
    results = {"info": info, "records": run.records, "training": run.training, "trace": run.trace, "work": work,
               "cost": {"meta_step": steps, "adaptation": adaptation["out"]}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "meta_learning.json").write_text(json.dumps(results, indent=1, sort_keys=True, default=str) + "\n")
    path = report.write(results, args.out)
    log(f"wrote {path} in {time.time() - t0:.0f}s", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
