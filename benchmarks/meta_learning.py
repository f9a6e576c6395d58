"""Base-training benchmark, three protocols side by side: does training one base across tenants pay
for a new tenant, and which training (pooled, FOMAML, Reptile, pooled then FOMAML)?

1. recurring categories: new tenants of a trained domain whose categories training tenants have
   under other real names or at another granularity;
2. new categories of a trained domain;
3. a new domain (leave one source out).

Every method scores the same episodes (5-way, 1/5/10 shots, paired): logistic regression with label
names on the frozen encoder, SetFit, the adaptation without a trained base, each base's own
adaptation, and ``tailor``: the product's ``adapt_tenant`` from the default base, its per-tenant
choice included. See ``benchmarks.protocols``.

    python -m benchmarks.meta_learning            # full run (make bench), <= 2 h on 2 CPU cores
    python -m benchmarks.meta_learning --quick    # the same tables on 2 sources, few episodes (make bench-quick)

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
ALGORITHMS = ("pooled", "fomaml", "reptile", "pooled-fomaml")


@dataclass(frozen=True)
class Profile:
    """How much to run."""

    name: str
    sources: tuple[str, ...]      # sources of every protocol (protocol 3: the left-out sources)
    per_class_out: int            # texts per class, protocol 3 (as the earlier runs: their episodes)
    per_class_in: int             # texts per class, protocols 1 and 2 (halved between training and evaluation)
    episodes: dict                # shots -> episodes per source and protocol
    setfit_episodes: int          # the first N 5-shot episodes of protocols 1 and 2: SetFit too
    setfit_max_pairs: int | None  # None: setfit's own pair count
    cost_warmup: int
    cost_rounds: int
    memory_steps: int
    cost_repeats: int
    chunk: int                    # episodes per worker job
    meta_train: dict = field(default_factory=dict)   # changes to the product's meta_train settings


FULL = Profile("full", sources=ALL_SOURCES, per_class_out=40, per_class_in=100, episodes={1: 10, 5: 20, 10: 6},
               setfit_episodes=3, setfit_max_pairs=None, cost_warmup=1, cost_rounds=3, memory_steps=2,
               cost_repeats=3, chunk=5, meta_train={"max_minutes": 1.0, "val_every": 25, "val_tasks": 16})
QUICK = Profile("quick", sources=("ha-intents", "bible"), per_class_out=40, per_class_in=100,
                episodes={1: 2, 5: 6, 10: 2}, setfit_episodes=1, setfit_max_pairs=48, cost_warmup=0, cost_rounds=1,
                memory_steps=1, cost_repeats=1, chunk=3,
                meta_train={"max_minutes": 0.5, "val_every": 25, "val_tasks": 8})


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
    """Every protocol's data: protocol 3's tenants and folds as the earlier runs had them, protocols
    1 and 2's in-domain splits (checked text-disjoint), and which (protocol, source) can be drawn."""
    from benchmarks import protocols
    from benchmarks.data import SOURCES, all_tenants, clean_pools, fold_data, folds, mask_leaks
    from corpora.catalog import all_regroupings, class_pools, label_name
    from data_checks.leakage import normalise

    raw = mask_leaks(class_pools(seed=seed, sources=SOURCES))
    pools = clean_pools(raw, profile.per_class_out, seed)
    tenants = all_tenants(pools, seed)
    plan = folds(profile.sources)
    wide = clean_pools(raw, profile.per_class_in, seed, same=normalise)
    wide = {s: wide[s] for s in profile.sources}
    splits = protocols.in_domain_splits(wide, all_regroupings(wide, seed), label_name, seed)
    runs = {p: [s for s in profile.sources if protocols.usable(splits[s], p, 5)] for p in protocols.IN_DOMAIN}
    runs["new-domain"] = [f.test for f in plan]
    counts = {s: {"classes": len(pools[s]), "tenants": len(tenants[s]),
                  "texts": sum(len(t) for t, _ in tenants[s].values())} for s in SOURCES}
    in_counts = {s: {"train_tenants": len(sp.train), "val_tenants": len(sp.val),
                     "train_texts": sum(len(t) for t, _ in sp.train.values()),
                     "recurring": {k: sum(c.kind == k for c in sp.recurring) for k in ("renamed", "merged", "split")},
                     "new": len(sp.new), "skipped": sp.skipped} for s, sp in splits.items()}
    return {"tenants": tenants, "folds": plan, "fold_data": {f.test: fold_data(tenants, f) for f in plan},
            "splits": splits, "runs": runs, "counts": counts, "in_counts": in_counts}


class Runner:
    """Submits every job to the worker pool and collects results as work frees up: a training set's
    episodes are scored as soon as each of its bases is trained."""

    def __init__(self, pool, settings, data, profile: Profile, args, t0: float):
        self.pool, self.settings, self.data, self.profile, self.args, self.t0 = pool, settings, data, profile, args, t0
        self.pending, self.records, self.training, self.work, self.extra = {}, [], {}, [], {}
        self.bases: dict = {}

    def submit(self, kind: str, tag, fn, *args) -> None:
        self.pending[self.pool.submit(fn, *args)] = (kind, tag)

    def keys(self) -> dict[str, tuple]:
        """Training set -> (its training tenants, validation tenants, the protocols it is judged on)."""
        out = {}
        for source, split in self.data["splits"].items():
            judged = [p for p in ("recurring", "new-categories") if source in self.data["runs"][p]]
            if judged:
                out[f"in:{source}"] = (split.train, split.val, judged)
        for fold in self.data["folds"]:
            train, val = self.data["fold_data"][fold.test]
            out[f"out:{fold.test}"] = (train, val, ["new-domain"])
        return out

    def evals(self, key: str, protocols_: list[str]) -> None:
        from benchmarks import jobs

        p, s = self.profile, self.settings
        source = key.split(":", 1)[1]
        bases = {a: (self.bases[(key, a)]["meta"], self.bases[(key, a)]["metrics"].get("adapt_steps"))
                 for a in ALGORITHMS}
        default = s.meta_train.algorithm
        from benchmarks import protocols

        for protocol in protocols_:
            data = self.data["tenants"][source] if protocol == "new-domain" else self.data["splits"][source]
            for shots, n in p.episodes.items():
                if protocol != "new-domain" and not protocols.usable(data, protocol, shots):
                    self.extra.setdefault("not_drawn", []).append([protocol, source, shots])
                    continue
                for lo in range(0, n, p.chunk):
                    self.submit("eval", (protocol, source), jobs.episode_job, s, protocol, source, data,
                                self.args.cache, shots, lo, min(n, lo + p.chunk), n, self.args.seed, bases, default)

    def start(self) -> None:
        from benchmarks import cost, jobs

        p, s, a = self.profile, self.settings, self.args
        for key, (train, val, _) in self.keys().items():
            for algorithm in ALGORITHMS:
                self.submit("train", (key, algorithm), jobs.meta_train_job, key, algorithm, s, train, val, a.cache)
        first = self.data["folds"][0].test
        self.submit("cost", "meta-step", cost.meta_step_times, s, self.data["fold_data"][first][0], a.cache,
                    ("maml", "fomaml", "reptile"), p.cost_warmup, p.cost_rounds)
        if a.skip_setfit:
            return
        for protocol in ("recurring", "new-categories"):
            for source in self.data["runs"][protocol]:
                for i in range(p.setfit_episodes):
                    self.submit("setfit", (protocol, source), jobs.setfit_job, s, protocol, source,
                                self.data["splits"][source], a.cache, i, p.episodes[5], a.seed, p.setfit_max_pairs)
        reused = reuse_setfit(self.args.out / "meta_learning.json", self.data["runs"]["new-domain"])
        self.records += reused
        self.extra["setfit_reused"] = len([r for r in reused if r["method"] == "setfit"])
        if not reused:   # no earlier run: protocol 3's SetFit episodes are run too
            for source in self.data["runs"]["new-domain"]:
                for i in range(p.setfit_episodes):
                    self.submit("setfit", ("new-domain", source), jobs.setfit_job, s, "new-domain", source,
                                self.data["tenants"][source], a.cache, i, p.episodes[5], a.seed, p.setfit_max_pairs)

    def collect(self) -> None:
        keys = self.keys()
        while self.pending:
            done, _ = wait(self.pending, return_when=FIRST_COMPLETED)
            for fut in done:
                (kind, tag), result = self.pending.pop(fut), fut.result()
                out = result["out"]
                self.work.append({"kind": kind, "tag": list(tag) if isinstance(tag, tuple) else tag,
                                  "wall_s": result["wall_s"], "cpu_s": result["cpu_s"]})
                if kind in ("eval", "setfit"):
                    self.records += out
                    scored = [r for r in out if r.get("method") in ("tailor", "setfit") and "acc" in r]
                    mean = sum(r["acc"] for r in scored) / max(1, len(scored))
                    log(f"scored {kind} {tag[0]} {tag[1]} {out[-1]['shots']}-shot episodes {out[0]['episode']}-"
                        f"{out[-1]['episode']}: {'tailor' if kind == 'eval' else 'setfit'} {mean:.3f}", self.t0)
                elif kind == "cost":
                    self.extra["meta_step_times"] = out
                else:
                    key, algorithm = tag
                    self.training[f"{key} {algorithm}"] = {k: out[k] for k in ("key", "algorithm", "metrics", "history")}
                    self.bases[tag] = out
                    m = out["metrics"]
                    log(f"trained {key} {algorithm}: kept {m['kept']} step {m['best_step']} of {m['steps_run']}, "
                        f"validation {m['val_accuracy_start']:.3f} -> {m['val_accuracy'] or 0:.3f}", self.t0)
                    if all((key, a) in self.bases for a in ALGORITHMS):
                        self.evals(key, keys[key][2])


def reuse_setfit(path: Path, sources: list[str]) -> list[dict]:
    """Protocol 3's SetFit records of an earlier run (its episodes are unchanged: the same sources,
    cleaning, tenants and sampler), re-keyed as this run's records; [] when there is none."""
    if not path.is_file():
        return []
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return []
    out = []
    for r in old.get("records", []):
        if r.get("method") not in ("setfit", "tailor@setfit"):
            continue
        protocol = r.get("protocol", "new-domain")
        source = r.get("source", r.get("fold"))
        if protocol == "new-domain" and source in sources:
            out.append({**{k: v for k, v in r.items() if k != "fold"}, "protocol": protocol, "source": source,
                        "reused_from": old.get("info", {}).get("started", "an earlier run")})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.meta_learning", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the same tables on 2 sources and few episodes (< 15 min)")
    ap.add_argument("--out", type=Path, default=ROOT / "results", help="where the report and plots go")
    ap.add_argument("--cache", type=Path, default=ROOT / "cache", help="cached frozen-encoder features")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (one torch thread each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sources", default="", help="comma-separated sources (default: the profile's)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a setting of params.yaml (repeatable), e.g. meta_train.pooled_lr=0.003")
    ap.add_argument("--skip-setfit", action="store_true", help="leave SetFit out (tuning runs)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    profile = QUICK if args.quick else FULL
    if args.sources:
        chosen = tuple(f.strip() for f in args.sources.split(",") if f.strip())
        unknown = sorted(set(chosen) - set(ALL_SOURCES))
        if unknown or not chosen:
            raise SystemExit(f"--sources: unknown source(s) {unknown}; choose from {', '.join(ALL_SOURCES)}")
        profile = Profile(**{**asdict(profile), "sources": chosen})
    settings = build_settings(profile, parse_set(args.set))
    command = " ".join(["python -m benchmarks.meta_learning", *(sys.argv[1:] if argv is None else argv)])
    info = {"command": command.strip(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "profile": profile.name,
            "load_start": os.getloadavg(), **machine()}
    log(f"{info['command']} on {info['nproc']} cores ({info['cpu']}), torch {info['torch']}", t0)
    data = prepare(profile, args.seed)
    log("runs: " + "; ".join(f"{p}: {', '.join(s)}" for p, s in data["runs"].items()), t0)
    from benchmarks import cost, jobs, report

    texts: list[list[str]] = []
    with _pool(args.workers, t0) as pool, _pool(1, t0, fresh=True) as probe:
        texts += [t for s in sorted(data["tenants"]) for t, _ in data["tenants"][s].values()]
        for split in data["splits"].values():
            texts += [ts for ts, _ in split.train.values()] + [ts for ts, _ in split.val.values()]
            texts += list(jobs.in_domain_texts(split))
        start = time.time()
        feats = list(pool.map(jobs.features_job, [settings] * len(texts), texts, [args.cache] * len(texts)))
        work = [{"kind": "features", "tag": "all", "wall_s": time.time() - start,
                 "cpu_s": sum(f["cpu_s"] for f in feats)}]
        log(f"frozen features of {sum(map(len, texts))} tenant texts cached", t0)
        first_train = data["fold_data"][data["folds"][0].test][0]
        memory = {a: probe.submit(cost.meta_step_memory, settings, first_train, args.cache, a, profile.memory_steps)
                  for a in ("maml", "fomaml", "reptile")}
        run = Runner(pool, settings, data, profile, args, t0)
        run.start()
        run.collect()
        times = run.extra["meta_step_times"]
        steps = [{"algorithm": a, **times[a], **memory[a].result()["out"], "threads": times["threads"]}
                 for a in ("maml", "fomaml", "reptile")]
    log("accuracy done; timing adaptation alone in a fresh process", t0)
    first = data["folds"][0].test
    with _pool(1, t0, threads=info["torch_threads_default"]) as pool:
        threads = sorted({1, info["torch_threads_default"]})
        bases = {a: (run.bases[(f"out:{first}", a)]["meta"], run.bases[(f"out:{first}", a)]["metrics"].get("adapt_steps"))
                 for a in ALGORITHMS}
        adaptation = pool.submit(cost.adaptation_cost, settings, data["tenants"], bases, args.cache,
                                 profile.cost_repeats, threads).result()
    work += run.work + [{"kind": "cost", "tag": "adaptation", "wall_s": adaptation["wall_s"],
                         "cpu_s": adaptation["cpu_s"]}]
    info.update(runtime_s=time.time() - t0, load_end=os.getloadavg(), counts=data["counts"],
                in_counts=data["in_counts"], runs=data["runs"], folds=[asdict(f) for f in data["folds"]],
                profile_plan=asdict(profile), algorithms=ALGORITHMS, setfit_skipped=args.skip_setfit,
                setfit_reused=run.extra.get("setfit_reused", 0), settings=settings.to_dict())
    results = {"info": info, "records": run.records, "training": run.training, "work": work,
               "cost": {"meta_step": steps, "adaptation": adaptation["out"]}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "meta_learning.json").write_text(json.dumps(results, indent=1, sort_keys=True, default=str) + "\n")
    path = report.write(results, args.out)
    log(f"wrote {path} in {time.time() - t0:.0f}s", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
