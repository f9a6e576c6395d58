"""Meta-learning benchmark: few-shot accuracy on classes never seen in meta-training (in-domain and
on an unseen source), every method side by side on the same episodes, and what each costs.

    python -m benchmarks.meta_learning            # full run, ~10-15 min on 2 CPU cores
    python -m benchmarks.meta_learning --quick    # smoke run, a couple of minutes

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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SHOTS = (1, 5, 10)
SETTINGS_ = ("in-domain", "cross-domain")
CHECKPOINTS = (1, 2, 4, 8, 16)
ALGORITHMS = ("fomaml", "reptile")   # meta-trained for accuracy; second-order MAML is a cost reference


@dataclass(frozen=True)
class Profile:
    """How much to run. ``episodes``: per (setting, shots); the first ``curve_episodes`` 5-shot
    episodes are also scored after each inner-step count in ``CHECKPOINTS``."""

    name: str
    per_class: int               # texts kept per class
    episodes: dict
    curve_episodes: int
    setfit_episodes: int
    setfit_max_pairs: int | None   # None: setfit's own pair count
    cost_warmup: int             # meta-steps before timing
    cost_rounds: int             # timed meta-steps per algorithm
    memory_steps: int            # meta-steps watched for peak memory
    cost_repeats: int            # timed adaptations per method
    chunk: int                   # episodes per worker job
    all_threads: bool = True     # time adaptation at 1 thread and at torch's default, not 1 only
    cross_algorithms: tuple = ("fomaml",)   # meta-trained without the held-out source
    meta_train: dict = field(default_factory=dict)


FULL = Profile("full", per_class=40, curve_episodes=30, setfit_episodes=3, setfit_max_pairs=None,
               cost_warmup=1, cost_rounds=4, memory_steps=2, cost_repeats=3, chunk=25,
               episodes={("in-domain", 1): 50, ("in-domain", 5): 200, ("in-domain", 10): 25,
                         ("cross-domain", 1): 50, ("cross-domain", 5): 200, ("cross-domain", 10): 25})
QUICK = Profile("quick", per_class=20, curve_episodes=2, setfit_episodes=1, setfit_max_pairs=32,
                cost_warmup=0, cost_rounds=1, memory_steps=1, cost_repeats=1, chunk=2, all_threads=False,
                cross_algorithms=ALGORITHMS, episodes={(s, k): 2 for s in SETTINGS_ for k in SHOTS},
                meta_train={"meta_steps": 2, "meta_batch": 2, "val_every": 1, "val_tasks": 2, "patience": 1})


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
    from workspace.settings import Settings, settings_from_dict

    raw = Settings().to_dict()
    raw["meta_train"].update(profile.meta_train)
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    return settings_from_dict(raw)


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


def run_accuracy(pool, settings, data, profile: Profile, cache: Path, seed: int, t0: float, skip_setfit: bool,
                 cross: tuple[str, ...]):
    """Meta-train the bases and score every method on every episode, as work frees up; the
    interleaved meta-step timing runs beside them (its ratios do not depend on the load)."""
    from benchmarks import cost, jobs

    ev = data["eval"]
    runs = {("in-domain", a): (data["train_in"], data["val_in"]) for a in ALGORITHMS}
    runs.update({("cross-domain", a): (data["train_x"], data["val_x"]) for a in cross})
    pending, records, training, bases, extra = {}, [], {}, {}, {}

    def submit(tag, fn, *args):
        pending[pool.submit(fn, *args)] = tag

    def evals(setting, method, meta):
        for shots in SHOTS:
            n = profile.episodes[(setting, shots)]
            for lo in range(0, n, profile.chunk):
                submit("eval", jobs.eval_job, settings, ev, cache, setting, shots, lo, min(n, lo + profile.chunk),
                       seed, method, meta, CHECKPOINTS, profile.curve_episodes if shots == 5 else 0)

    for (setting, a), (train, val) in runs.items():
        submit(("train", setting, a), jobs.meta_train_job, f"{setting} {a}",
               settings.replace("meta_train", algorithm=a), train, val, cache)
    submit("cost", cost.meta_step_times, settings, data["train_in"], cache, ("maml", *ALGORITHMS),
           profile.cost_warmup, profile.cost_rounds)
    for setting in SETTINGS_:
        evals(setting, "frozen", None)
        evals(setting, "no-meta", None)
    setfit_sent = skip_setfit
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            tag, result = pending.pop(fut), fut.result()
            if tag == "eval":
                records += result
                r = result[-1]
                log(f"scored {r['setting']} {r['shots']}-shot {r['method']} up to episode {r['episode']}", t0)
            elif tag == "setfit":
                records += result
            elif tag == "cost":
                extra["meta_step_times"] = result
            else:
                _, setting, a = tag
                training[f"{setting} {a}"] = {"metrics": result["metrics"], "history": result["history"]}
                bases[(setting, a)] = result["meta"]
                evals(setting, a, result["meta"])
        if not setfit_sent and all(("in-domain", a) in bases for a in ALGORITHMS):
            setfit_sent = True
            metas = {a: bases[("in-domain", a)] for a in ALGORITHMS}
            n = profile.episodes[("in-domain", 5)]
            for i in range(profile.setfit_episodes):
                submit("setfit", jobs.setfit_job, settings, ev, cache, "in-domain", 5, i, n, seed, metas,
                       profile.setfit_max_pairs)
    return records, training, bases, extra


def prepare(profile: Profile, seed: int) -> dict:
    from benchmarks.data import HELD_OUT_SOURCE, SOURCES, EvalSet, clean_pools, kept, split_classes, tenants
    from tailor.demo_data import class_pools

    raw = class_pools(seed=seed)
    split = split_classes(raw, seed)
    pools = clean_pools(raw, split, profile.per_class, seed)
    split = kept(split, pools)
    train_in = tenants(pools, split.train, SOURCES, 8, "train", seed)
    val_in = tenants(pools, split.val, SOURCES, 100, "val", seed)
    without = lambda d: {k: v for k, v in d.items() if HELD_OUT_SOURCE not in k}  # noqa: E731
    counts = {group: {s: len(getattr(split, group)[s]) for s in SOURCES} for group in ("train", "val", "eval")}
    return {"split": split, "pools": pools, "train_in": train_in, "val_in": val_in, "train_x": without(train_in),
            "val_x": without(val_in), "eval": EvalSet.build(pools, split), "counts": counts,
            "n_tenants": {"train_in": len(train_in), "train_x": len(without(train_in))}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.meta_learning", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: few episodes, 4 meta-steps")
    ap.add_argument("--out", type=Path, default=ROOT / "results", help="where the report and plots go")
    ap.add_argument("--cache", type=Path, default=ROOT / "cache", help="cached frozen-encoder features")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (one torch thread each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a setting of params.yaml (repeatable), e.g. meta_train.meta_lr=0.003")
    ap.add_argument("--skip-setfit", action="store_true", help="leave SetFit out (tuning runs)")
    ap.add_argument("--cross-reptile", action="store_true",
                    help="also meta-train Reptile without the held-out source (adds ~4 min)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    profile = QUICK if args.quick else FULL
    settings = build_settings(profile, parse_set(args.set))
    command = " ".join(["python -m benchmarks.meta_learning", *(sys.argv[1:] if argv is None else argv)])
    info = {"command": command.strip(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "profile": profile.name,
            "load_start": os.getloadavg(), **machine()}
    log(f"{info['command']} on {info['nproc']} cores ({info['cpu']}), torch {info['torch']}", t0)
    data = prepare(profile, args.seed)
    log(f"classes (train/val/eval per source): {data['counts']}", t0)
    from benchmarks import cost, jobs, report

    cross = tuple(dict.fromkeys(profile.cross_algorithms + (("reptile",) if args.cross_reptile else ())))
    with _pool(args.workers, t0) as pool, _pool(1, t0, fresh=True) as probe:
        texts = [v[0] for d in ("train_in", "val_in") for v in data[d].values()] + [data["eval"].texts]
        list(pool.map(jobs.features_job, [settings] * len(texts), texts, [args.cache] * len(texts)))
        log(f"frozen features of {sum(map(len, texts))} texts cached", t0)
        memory = {a: probe.submit(cost.meta_step_memory, settings, data["train_in"], args.cache, a,
                                  profile.memory_steps) for a in ("maml", *ALGORITHMS)}
        records, training, bases, extra = run_accuracy(pool, settings, data, profile, args.cache, args.seed, t0,
                                                       args.skip_setfit, cross)
        times = extra["meta_step_times"]
        steps = [{"algorithm": a, **times[a], **memory[a].result(), "threads": times["threads"]}
                 for a in ("maml", *ALGORITHMS)]
    log("accuracy done; timing adaptation alone in a fresh process", t0)
    with _pool(1, t0, threads=info["torch_threads_default"]) as pool:
        threads = sorted({1, info["torch_threads_default"]}) if profile.all_threads else [1]
        adaptation = pool.submit(cost.adaptation_cost, settings, data["eval"],
                                 {a: bases[("in-domain", a)] for a in ALGORITHMS}, args.cache,
                                 profile.cost_repeats, threads).result()
    info.update(runtime_s=time.time() - t0, load_end=os.getloadavg(), counts=data["counts"],
                n_tenants=data["n_tenants"], episodes={f"{s} {k}": n for (s, k), n in profile.episodes.items()},
                curve_episodes=profile.curve_episodes, cross_algorithms=list(cross),
                cost_plan={"warmup": profile.cost_warmup, "rounds": profile.cost_rounds,
                           "memory_steps": profile.memory_steps, "repeats": profile.cost_repeats},
                setfit_episodes=0 if args.skip_setfit else profile.setfit_episodes,
                per_class=profile.per_class, checkpoints=CHECKPOINTS, settings=settings.to_dict())
    results = {"info": info, "records": records, "training": training,
               "cost": {"meta_step": steps, "adaptation": adaptation}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "meta_learning.json").write_text(json.dumps(results, indent=1, sort_keys=True, default=str) + "\n")
    path = report.write(results, args.out)
    log(f"wrote {path} in {time.time() - t0:.0f}s", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
