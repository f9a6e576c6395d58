"""Hyper-parameter probe for meta-training, scored on the *validation* classes (never the evaluation
classes the report uses): meta-train with a fixed number of steps (no early stopping) and score
checkpoints on fixed 5-way 5-shot validation episodes, paired with the start (step 0).

    python -m benchmarks.meta_sweep --algorithm fomaml --meta-lr 0.003 --checks 40,120
    python -m benchmarks.meta_sweep --inner-lrs 0.05,0.5,2   # no meta-training: the start only

Same maths as ``MetaLearner.training_step`` (Adam on the meta-parameters, mean surrogate over the
meta-batch), without Lightning so checkpoints can be scored on many episodes. Appends one JSON line
per checkpoint to ``--out`` (default ``benchmarks/results/meta_sweep.jsonl``).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.meta_sweep", description=__doc__.splitlines()[0])
    ap.add_argument("--algorithm", default="fomaml", choices=("fomaml", "reptile", "maml"))
    ap.add_argument("--meta-lr", type=float, default=0.001)
    ap.add_argument("--inner-lrs", default="0.05", help="comma-separated; more than one: no meta-training")
    ap.add_argument("--adapted-layers", type=int, default=1)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--checks", default="40,120", help="meta-steps at which to score")
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--cache", type=Path, default=ROOT / "cache")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "meta_sweep.jsonl")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from benchmarks.meta_learning import FULL, prepare
    from benchmarks.methods import adapted_scores
    from lightning_modules.encoder import frozen_layer_count, load_encoder
    from lightning_modules.episodes import EpisodeSampler
    from lightning_modules.model import init_meta_params, top_model
    from lightning_modules.tasks import TaskData, meta_learn_task
    from lightning_modules.training import feature_table
    from workspace.settings import Settings

    torch.set_num_threads(1)
    s = Settings().replace("encoder", adapted_layers=args.adapted_layers, lora_rank=args.rank)
    cfg, steps = s.meta_train, s.adapt.inner_steps
    data = prepare(FULL, cfg.seed)
    enc = load_encoder(s.encoder)
    frozen = frozen_layer_count(enc, args.adapted_layers)
    top = top_model(enc, args.adapted_layers, args.rank)
    train, train_pools = feature_table(enc, data["train_in"], frozen, args.cache)
    val, val_pools = feature_table(enc, data["val_in"], frozen, args.cache)
    episodes = EpisodeSampler(val_pools, (5, 5), 5, 10, seed=123).fixed(args.episodes)
    sampler = EpisodeSampler(train_pools, (cfg.ways_min, cfg.ways_max), cfg.shots, cfg.query, cfg.seed)

    def score(meta):
        meta = {k: v.detach() for k, v in meta.items()}
        return [adapted_scores(top, meta, val, t, (steps,), steps, s.adapt.max_loss)[0][steps] for t in episodes]

    def record(tag: dict, accs: list[float], start: list[float]):
        diff = [a - b for a, b in zip(accs, start)]
        mean = sum(diff) / len(diff)
        sd = (sum((d - mean) ** 2 for d in diff) / max(1, len(diff) - 1)) ** 0.5
        row = {**tag, "val_acc": sum(accs) / len(accs), "vs_start": mean, "vs_start_se": sd / len(diff) ** 0.5,
               "episodes": len(accs)}
        print(json.dumps(row), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")

    base = {"adapted_layers": args.adapted_layers, "rank": args.rank, "adapt_steps": steps}
    lrs = [float(x) for x in args.inner_lrs.split(",")]
    start = score(init_meta_params(top, lrs[0], cfg.seed))
    if len(lrs) > 1:
        for lr in lrs:
            record({**base, "inner_lr": lr, "meta_step": 0}, score(init_meta_params(top, lr, cfg.seed)), start)
        return 0
    meta = {k: torch.nn.Parameter(v.clone()) for k, v in init_meta_params(top, lrs[0], cfg.seed).items()}
    opt = torch.optim.Adam(meta.values(), lr=args.meta_lr)
    tag = {**base, "algorithm": args.algorithm, "meta_lr": args.meta_lr, "inner_lr": lrs[0]}
    record({**tag, "meta_step": 0}, start, start)
    done, t0 = 0, time.perf_counter()
    for check in sorted(int(c) for c in args.checks.split(",")):
        while done < check:
            opt.zero_grad()
            for _ in range(cfg.meta_batch):
                surrogate, _ = meta_learn_task(top, meta, TaskData.from_task(train, sampler.sample()), args.algorithm,
                                               cfg.inner_steps, s.adapt.max_loss)
                (surrogate / cfg.meta_batch).backward()
            opt.step()
            done += 1
        record({**tag, "meta_step": check, "seconds": round(time.perf_counter() - t0)}, score(meta), start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
