"""Tenants per second: batched adaptation (``batched.adapt_many``, vmap over tenants) against a loop of
``tasks.adapt_task`` over the same tenants, same model and data; and one meta-training step per
algorithm (bf16 autocast on CUDA, as the LightningModule runs it). CUDA if there is one, else CPU.
Prints each number as soon as it has it; writes ``benchmarks/results/gpu.md``.

    python -m benchmarks.gpu                       # a few minutes on one H100
    python -m benchmarks.gpu --quick               # CPU smoke run, under a minute
    python -m benchmarks.gpu --texts data.noun.gz  # WordNet file elsewhere (plain or gzip)
"""
from __future__ import annotations

import argparse
import gzip
import random
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from lightning_modules.batched import adapt_many
from lightning_modules.encoder import frozen_layer_count, load_encoder
from lightning_modules.features import FeatureTable, lower_features
from lightning_modules.model import init_meta_params, top_model
from lightning_modules.tasks import TaskData, accuracy, adapt_task, meta_learn_task
from workspace.settings import AdaptSettings, EncoderSettings, MetaTrainSettings

WORDNET = Path("/usr/share/wordnet/data.noun")
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Plan:
    tenants: int          # tenants adapted by each batched run
    loop_tenants: int     # the per-tenant loop runs on the first of them ...
    loop_seconds: float   # ... until this much time has passed
    chunks: tuple         # tenants per vmap call, one run each
    per_class: int        # texts per WordNet class in the feature table
    meta_reps: int        # timed meta-steps per algorithm
    ways: tuple = (3, 8)  # labels per tenant
    shots: tuple = (3, 8)  # support rows per label
    max_length: int = 64  # tokens per text
    meta: dict = field(default_factory=dict)  # MetaTrainSettings changes


PLANS = {"cuda": Plan(1024, 128, 40.0, (32, 128, 512), 40, 5),
         "cpu": Plan(16, 8, 60.0, (16,), 20, 1),  # a 2-core CPU adapts ~0.2 tenants/s: minutes
         # a smoke run: small tenants and short texts, so a 2-core CPU finishes in under a minute
         "quick": Plan(6, 6, 6.0, (6,), 8, 1, (2, 3), (2, 3), 32,
                       {"meta_batch": 2, "inner_steps": 2, "ways_max": 3, "shots": 2, "query": 2})}
QUERY = 5  # query rows per label of an adaptation tenant


def say(message: str) -> None:
    print(message, flush=True)


def wordnet_classes(path: Path, per_class: int, seed: int) -> dict[str, list[str]]:
    """Noun glosses grouped by WordNet lexicographer file (noun.animal, noun.artifact, ...)."""
    opener = gzip.open if path.suffix == ".gz" else open
    by_class: dict[str, list[str]] = {}
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(" ") or "|" not in line:
                continue
            gloss = line.split("|", 1)[1].split('; "')[0].strip()
            by_class.setdefault(f"noun.{line.split(' ', 2)[1]}", []).append(gloss)
    rng = random.Random(seed)
    return {c: rng.sample(g, per_class) for c, g in sorted(by_class.items()) if len(g) >= per_class}


def synthetic_classes(per_class: int, seed: int, n_classes: int = 24) -> dict[str, list[str]]:
    """Stand-in when no WordNet file is there: each class draws from its own made-up vocabulary."""
    rng = random.Random(seed)
    syllables = "ka lo mi ne ru sa ti vo be da fe gu ho ji pe zu".split()
    word = lambda: "".join(rng.sample(syllables, 3))  # noqa: E731
    shared = [word() for _ in range(40)]
    out = {}
    for c in range(n_classes):
        own = [word() for _ in range(15)]
        out[f"class{c}"] = [" ".join(rng.choice(own if rng.random() < 0.5 else shared)
                                     for _ in range(rng.randint(6, 24))) for _ in range(per_class)]
    return out


def sample_tenants(feats: FeatureTable, rows: dict[str, list[int]], n: int, ways: tuple, shots: tuple,
                   query: int, seed: int) -> list[TaskData]:
    """Tenants with their own label counts and (unbalanced) support sizes, on the features' device."""
    rng, device = random.Random(seed), feats.states.device
    out = []
    for _ in range(n):
        classes = rng.sample(sorted(rows), rng.randint(*ways))
        s, sy, q, qy = [], [], [], []
        for y, c in enumerate(classes):
            k = rng.randint(*shots)
            picked = rng.sample(rows[c], k + query)
            s, sy, q, qy = s + picked[:k], sy + [y] * k, q + picked[k:], qy + [y] * query
        t = lambda xs: torch.tensor(xs, device=device)  # noqa: E731
        out.append(TaskData(feats.rows(t(s)), t(sy), feats.rows(t(q)), t(qy), len(classes)))
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def run_loop(top, meta, tenants, steps, limit: float, device) -> tuple[list[dict], float]:
    """``adapt_task`` tenant after tenant until ``limit`` seconds have passed; (results, tenants/s)."""
    out, start = [], time.perf_counter()
    for t in tenants:
        out.append(adapt_task(top, meta, t, steps)[0])
        if time.perf_counter() - start > limit:
            break
    sync(device)
    return out, len(out) / (time.perf_counter() - start)


def run_batched(top, meta, tenants, steps, chunk: int, device) -> tuple[list[dict] | None, dict]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        out, seconds = timed(lambda: adapt_many(top, meta, tenants, steps, chunk=chunk), device)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None, {}
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return out, {"tenants": len(tenants), "chunk": chunk, "seconds": seconds, "rate": len(tenants) / seconds,
                 "peak_gib": peak}


def agreement(top, loop: list[dict], batched: list[dict], tenants: list[TaskData]) -> dict:
    n = len(loop)
    acc_loop = [accuracy(top, p, t.query, t.query_y) for p, t in zip(loop, tenants)]
    acc_batched = [accuracy(top, p, t.query, t.query_y) for p, t in zip(batched[:n], tenants)]
    return {"compared": n, "max_abs_diff": max(max(float((a[k] - b[k]).abs().max()) for k in a)
                                               for a, b in zip(loop, batched)),
            "same_accuracy": sum(a == b for a, b in zip(acc_loop, acc_batched)),
            "acc_loop": statistics.mean(acc_loop), "acc_batched": statistics.mean(acc_batched)}


def bench_adaptation(top, meta, tenants, steps, plan, device) -> tuple[list[dict], list[dict]]:
    """Full float32 (the product's setting) first; on CUDA then the same with TF32 matmuls allowed."""
    rows, checks = [], []
    # warm-up: kernels, library handles, and the per-shape set-up that a first call of each tenant's
    # shape pays (seconds on CPU): the loop is timed on shapes it has seen, which favours the loop
    adapt_many(top, meta, tenants[:4], steps)
    run_loop(top, meta, tenants[:plan.loop_tenants], steps, plan.loop_seconds / 2, device)
    modes = ["fp32"] + (["tf32"] if device.type == "cuda" else [])
    for mode in modes:
        torch.set_float32_matmul_precision("high" if mode == "tf32" else "highest")  # "high" allows TF32
        try:
            limit = plan.loop_seconds / len(modes)
            loop, loop_rate = run_loop(top, meta, tenants[:plan.loop_tenants], steps, limit, device)
            rows.append({"method": f"per-tenant loop, {mode}", "tenants": len(loop), "chunk": 1,
                         "seconds": len(loop) / loop_rate, "rate": loop_rate, "base": loop_rate})
            say(f"  {mode} loop:    {len(loop):>5} tenants  {len(loop) / loop_rate:7.2f}s  {loop_rate:8.1f} tenants/s")
            first = None
            best = max((r for r in rows if r["method"].startswith("batched")), key=lambda r: r["rate"], default=None)
            for chunk in plan.chunks if mode == "fp32" or best is None else (best["chunk"],):
                out, row = run_batched(top, meta, tenants, steps, chunk, device)
                if out is None:
                    say(f"  {mode} batched: chunk {chunk}: out of GPU memory, skipped")
                    continue
                first = first or out
                rows.append({"method": f"batched (adapt_many), {mode}", "base": loop_rate, **row})
                say(f"  {mode} batched: {row['tenants']:>5} tenants  {row['seconds']:7.2f}s  {row['rate']:8.1f} tenants/s  "
                    f"chunk {chunk}  x{row['rate'] / loop_rate:.1f} vs loop"
                    + (f"  peak {row['peak_gib']:.1f} GiB" if device.type == "cuda" else ""))
            if first is not None:
                check = {"mode": mode, **agreement(top, loop, first, tenants)}
                checks.append(check)
                say(f"  {mode} agreement on {check['compared']} tenants: max |weight diff| {check['max_abs_diff']:.2e}, "
                    f"same query accuracy on {check['same_accuracy']}/{check['compared']} "
                    f"(mean {check['acc_loop']:.3f} vs {check['acc_batched']:.3f})")
        finally:
            torch.set_float32_matmul_precision("highest")
    return rows, checks


def bench_meta_steps(top, meta0, feats, rows_by_class, cfg: MetaTrainSettings, reps: int, device) -> list[dict]:
    """One outer step as ``MetaLearner.training_step`` runs it: meta_batch tasks, bf16 autocast on CUDA."""
    out = []
    for algorithm in ("fomaml", "reptile", "maml"):
        meta = {k: v.detach().clone().to(device).requires_grad_(True) for k, v in meta0.items()}
        opt = torch.optim.Adam(meta.values(), lr=cfg.meta_lr)
        batches = [sample_tenants(feats, rows_by_class, cfg.meta_batch, (cfg.ways_min, cfg.ways_max),
                                  (cfg.shots, cfg.shots), cfg.query, seed=100 + i) for i in range(reps + 1)]

        def step(batch):
            opt.zero_grad()
            for task in batch:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    surrogate, _ = meta_learn_task(top, meta, task, algorithm, cfg.inner_steps, 50.0)
                (surrogate / len(batch)).backward()
            opt.step()

        try:
            step(batches[0])  # warm-up
            seconds = [timed(lambda: step(b), device)[1] for b in batches[1:]]
        except Exception as exc:  # report and go on: one broken algorithm must not hide the others
            say(f"  meta-step {algorithm:<7} FAILED: {type(exc).__name__}: {exc}")
            out.append({"algorithm": algorithm, "error": f"{type(exc).__name__}: {exc}"})
            continue
        out.append({"algorithm": algorithm, "seconds": statistics.median(seconds), "reps": len(seconds)})
        say(f"  meta-step {algorithm:<7} {statistics.median(seconds) * 1000:8.1f} ms  (median of {len(seconds)}, "
            f"{cfg.meta_batch} tasks x {cfg.inner_steps} inner steps)")
    return out


def write_report(path: Path, header: dict, adapt_rows: list, checks: list, meta_rows: list) -> None:
    lines = ["# GPU path: batched adaptation and meta-step cost", "",
             f"Command: `{header['command']}`", ""]
    lines += [f"- {k}: {v}" for k, v in header.items() if k != "command"]
    lines += ["", "## Adaptation throughput (same tenants, same model)", "",
              "fp32: full float32 matmuls, PyTorch's default and the product's setting; tf32: TF32 tensor-core "
              "matmuls allowed, for both methods alike. 'vs loop' compares with the loop of the same mode.", "",
              "| method | tenants | chunk | seconds | tenants/s | vs loop | peak GPU GiB |", "|---|---|---|---|---|---|---|"]
    for r in adapt_rows:
        peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib", float("nan")) == r.get("peak_gib") else "-"
        lines.append(f"| {r['method']} | {r['tenants']} | {r['chunk']} | {r['seconds']:.2f} | {r['rate']:.1f} | "
                     f"x{r['rate'] / r['base']:.1f} | {peak} |")
    for c in checks:
        lines += ["", f"Agreement ({c['mode']}) on the {c['compared']} tenants both ran: max |weight difference| "
                      f"{c['max_abs_diff']:.2e}; same query accuracy on {c['same_accuracy']}/{c['compared']} "
                      f"(mean {c['acc_loop']:.3f} loop, {c['acc_batched']:.3f} batched)."]
    lines += ["", "## One meta-training step (bf16 autocast on CUDA)", "", "| algorithm | ms per step | note |",
              "|---|---|---|"]
    for r in meta_rows:
        lines.append(f"| {r['algorithm']} | {r['seconds'] * 1000:.1f} | median of {r['reps']} |" if "seconds" in r
                     else f"| {r['algorithm']} | - | failed: {r['error'][:160]} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    say(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CPU smoke run, under a minute")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda if available)")
    ap.add_argument("--texts", type=Path, default=WORDNET, help="WordNet data.noun (plain or .gz)")
    ap.add_argument("--out", type=Path, default=None, help="report path (default: results/gpu.md)")
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.quick else "cpu"))
    plan = PLANS["quick" if args.quick else device.type]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    say(f"device: {name}; torch {torch.__version__}")

    enc_settings = EncoderSettings(name="all-MiniLM-L6-v2", adapted_layers=1, max_length=plan.max_length)
    encoder = load_encoder(enc_settings)
    top = top_model(encoder, enc_settings.adapted_layers, enc_settings.lora_rank).to(device)
    if args.texts.exists():
        classes, source = wordnet_classes(args.texts, plan.per_class, seed=0), f"WordNet noun glosses ({args.texts})"
    else:
        classes, source = synthetic_classes(plan.per_class, seed=0), "synthetic texts (no WordNet file found)"
    texts = [t for c in classes for t in classes[c]]
    rows, i = {}, 0
    for c in classes:
        rows[c], i = list(range(i, i + len(classes[c]))), i + len(classes[c])
    feats, seconds = timed(lambda: lower_features(encoder, texts, frozen_layer_count(encoder, 1)), torch.device("cpu"))
    feats = feats.to(device)
    say(f"texts: {source}: {len(classes)} classes x {plan.per_class}; frozen features in {seconds:.1f}s")

    steps = AdaptSettings().inner_steps
    cfg = replace(MetaTrainSettings(), **plan.meta)
    meta = {k: v.to(device) for k, v in init_meta_params(top, cfg.inner_lr, seed=0).items()}
    tenants = sample_tenants(feats, rows, plan.tenants, plan.ways, plan.shots, QUERY, seed=0)
    support = [len(t.support_y) for t in tenants]
    shape = (f"{plan.ways[0]}-{plan.ways[1]} labels, {plan.shots[0]}-{plan.shots[1]} support rows per label "
             f"(support {min(support)}-{max(support)} rows), {QUERY} query rows per label, "
             f"texts up to {plan.max_length} tokens")
    say(f"adaptation: {len(tenants)} tenants, {shape}, {steps} inner steps")
    adapt_rows, checks = bench_adaptation(top, meta, tenants, steps, plan, device)
    say("meta-training step:")
    meta_rows = bench_meta_steps(top, meta, feats, rows, cfg, plan.meta_reps, device)

    header = {"command": "python -m benchmarks.gpu" + (" --quick" if args.quick else ""), "device": name,
              "torch": torch.__version__, "encoder": f"all-MiniLM-L6-v2, adapted_layers=1, lora_rank={enc_settings.lora_rank}",
              "texts": source, "tenants": f"{len(tenants)}: {shape}", "inner steps": steps,
              "meta-step tasks": f"{cfg.meta_batch} per step, {cfg.ways_min}-{cfg.ways_max} labels, {cfg.shots} shots, "
                                 f"{cfg.query} query, {cfg.inner_steps} inner steps", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = args.out or RESULTS / ("gpu-quick.md" if args.quick else "gpu.md")
    write_report(out, header, adapt_rows, checks, meta_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
