"""Inner loops side by side, leave one source out, from the start without meta-learning: which
per-tenant objective changes the representation usefully from 5 examples, and whether an ensemble
with the strongest frozen head (logistic regression with the label names) beats either alone.

    python -m benchmarks.inner_loops                 # every source, 5-shot (about 15 min on 2 cores)
    python -m benchmarks.inner_loops --episodes 6    # a quicker look
    python -m benchmarks.inner_loops --meta-minutes 3  # also meta-train each fold per objective (about 40 min)

Methods, each scored on the same episodes (paired), all followed by the product's head (logistic
regression on the adapted embeddings, label names as examples):
  frozen+names         logistic regression with names on the frozen encoder (the strongest frozen head)
  ce                   the product's inner loop (cross-entropy through the token adapter, Adam direction)
  contrastive          SetFit's objective on the token adapter: cosine similarity of every pair of
                       support texts and label names pushed to 1 (same label) or 0
  X+ens                X's class probabilities averaged with frozen+names's
Writes ``inner_loops.md`` and ``.json`` to ``--out``. Nothing here tunes on a left-out source: every
method and setting is fixed before the run, and every source is reported.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# (objective, factor on the adapters' inner learning rates), fixed before any run
# (a first look also had contrastive at 10x: -6.2 +- 1.0 points, left out since)
VARIANTS = {"ce": ("ce", 1.0), "contrastive": ("contrastive", 1.0), "contrastive-lr3x": ("contrastive", 3.0)}
OBJECTIVES = ("ce", "contrastive")   # meta-learned with --meta-minutes, one base per fold and objective


def methods(meta: bool) -> tuple[str, ...]:
    names = [*VARIANTS, *((f"{o} (meta)" for o in OBJECTIVES) if meta else ())]
    return ("frozen+names", *(f"{v}{e}" for v in names for e in ("", "+ens")))


def _probs(top, params, data) -> "torch.Tensor":
    import torch

    from lightning_modules.tasks import embed

    z = embed(top, params, data)
    return torch.softmax(torch.nn.functional.linear(z, params["head.weight"], params["head.bias"]), 1)


def episode_scores(state, settings, task, data, steps: int, bases: dict) -> dict[str, float]:
    """Query accuracy of every method on one episode."""
    import torch

    from benchmarks.jobs import no_meta
    from lightning_modules.model import is_adapter
    from lightning_modules.tasks import adapt_task, frozen_names_head

    top, y = state["top"], data.query_y
    start = no_meta(settings, top)
    frozen = frozen_names_head(state["z"][task.support], task.support_y, state["names_z"][task.name_rows],
                               task.n_way, settings.meta_train.name_weight)
    p_frozen = torch.softmax(torch.nn.functional.linear(state["z"][task.query], frozen["head.weight"],
                                                        frozen["head.bias"]), 1)
    out = {"frozen+names": p_frozen}
    for name, (objective, factor) in VARIANTS.items():
        meta = {k: (v + math.log(factor) if k.startswith("log_lr.") and is_adapter(k[len("log_lr."):]) else v)
                for k, v in start.items()}
        params, _ = adapt_task(top, meta, data, steps, settings.adapt.max_loss, optimizer=settings.meta_train.optimizer,
                               head="logreg", objective=objective)
        p = _probs(top, params, data.query)
        out[name], out[f"{name}+ens"] = p, (p + p_frozen) / 2
    for objective, meta in bases.items():
        params, _ = adapt_task(top, meta, data, steps, settings.adapt.max_loss, optimizer=settings.meta_train.optimizer,
                               head="logreg", objective=objective)
        p = _probs(top, params, data.query)
        out[f"{objective} (meta)"], out[f"{objective} (meta)+ens"] = p, (p + p_frozen) / 2
    return {m: float((p.argmax(1) == y).float().mean()) for m, p in out.items()}


def source_job(settings, tenants, cache_dir, source: str, n: int, seed: int, steps: int, bases: dict) -> list[dict]:
    from benchmarks.jobs import _episode, source_state

    state = source_state(settings, source, tenants, cache_dir)
    rows = []
    for i in range(n):
        task, data = _episode(state, settings, source, 5, i, n, seed, True)
        rows += [{"fold": source, "episode": i, "method": m, "acc": a}
                 for m, a in episode_scores(state, settings, task, data, steps, bases).items()]
    return rows


def compare(rows: list[dict], info: dict) -> dict:
    """Per method and left-out source, the paired differences from frozen+names; and the method
    chosen leave one source out (for each source, the best mean difference on the other sources)."""
    methods_ = methods(bool(info.get("training")))
    sources = sorted({r["fold"] for r in rows})
    acc = {(r["fold"], r["method"], r["episode"]): r["acc"] for r in rows}
    diffs: dict[str, list[list[float]]] = {m: [] for m in methods_[1:]}
    bases = []
    for s in sources:
        eps = sorted({e for (f, _, e) in acc if f == s})
        base = [acc[(s, "frozen+names", e)] for e in eps]
        bases.append(base)
        for m in methods_[1:]:
            diffs[m].append([acc[(s, m, e)] - b for e, b in zip(eps, base)])
    chosen, picked = [], {}
    for i, s in enumerate(sources):
        others = {m: sum(sum(d[j]) / len(d[j]) for j in range(len(sources)) if j != i) for m, d in diffs.items()}
        picked[s] = max(others, key=others.get)
        chosen.append(diffs[picked[s]][i])
    return {"sources": sources, "bases": bases, "diffs": diffs, "chosen": chosen, "picked": picked}


def _chosen_line(c: dict) -> str:
    from benchmarks.stats import stratified

    return ("**Chosen leave one source out** (for each left-out source, the method with the best mean difference "
            f"on the other sources, scored on the left-out one): **{stratified(c['chosen']).pts(signed=True)}** points "
            "vs frozen+names. Chosen: " + "; ".join(f"{s}: {m}" for s, m in c["picked"].items()) + ".")


def _training_line(info: dict) -> str:
    return (f"Meta-training per fold and objective (the product's `meta_train`, fomaml, at most {info['meta_minutes']} "
            "min, early stopping on the fold's validation source), kept step of steps run: "
            + "; ".join(f"{k} {m['best_step']}/{m['steps_run']}" for k, m in sorted(info["training"].items())) + ".")


def report(rows: list[dict], info: dict) -> str:
    from benchmarks.stats import estimate, stratified

    c = compare(rows, info)
    lines = ["# Inner loops side by side: leave one source out, 5-shot", "",
             f"Generated by `{info['command']}` on {info['started']} in {info['runtime_s'] / 60:.1f} min "
             f"({info['episodes']} episodes per source, {info['steps']} inner steps, load average "
             f"{info['load_start'][0]:.2f} at start). Not tuned on any left-out source: every method and "
             "setting was fixed before the run.", "",
             "Accuracy of logistic regression with label names on the frozen encoder (the strongest frozen "
             "head), then each method's paired difference from it in points, ± the 95% interval over episodes "
             "(the mean over sources weighs each source the same). A method without \"(meta)\" adapts from the "
             "start without meta-learning; \"+ens\" averages its class probabilities with frozen+names's.", "",
             "| method | **mean over sources** | " + " | ".join(c["sources"]) + " |",
             "|---" * (len(c["sources"]) + 2) + "|",
             "| frozen+names (accuracy) | **" + stratified(c["bases"]).pts() + "** | "
             + " | ".join(estimate(b).pts() for b in c["bases"]) + " |"]
    for m, d in c["diffs"].items():
        lines.append(f"| {m} − frozen+names | **{stratified(d).pts(signed=True)}** | "
                     + " | ".join(estimate(x).pts(signed=True) for x in d) + " |")
    lines += ["", _reading(c)]
    if info.get("training"):
        lines += ["", _training_line(info)]
    return "\n".join(lines + ["", _chosen_line(c)]) + "\n"


def _reading(c: dict) -> str:
    """What the table says, computed: who is ahead of frozen+names beyond the interval, and what
    meta-learning adds to each objective (paired on the same episodes)."""
    from benchmarks.stats import stratified

    ahead = [m for m, d in c["diffs"].items() if stratified(d).mean - stratified(d).half > 0]
    out = ("Ahead of frozen+names beyond the 95% interval, mean over sources: "
           + (", ".join(ahead) if ahead else "**no method**") + ".")
    gains = []
    for o in OBJECTIVES:
        if f"{o} (meta)" in c["diffs"]:
            d = [[a - b for a, b in zip(x, y)] for x, y in zip(c["diffs"][f"{o} (meta)"], c["diffs"][o])]
            gains.append(f"{o} {stratified(d).pts(signed=True)}")
    return out + (" The meta-learned start minus the no-meta start, same objective, paired: "
                  + "; ".join(gains) + " points." if gains else "")


def summary(results: dict) -> list[str]:
    """The comparison's headline for the meta-learning report's "what was tried"."""
    from benchmarks.stats import stratified

    rows, info = results["records"], results["info"]
    c = compare(rows, info)
    means = "; ".join(f"{m} {stratified(d).pts(signed=True)}" for m, d in c["diffs"].items())
    return ["### Inner loops compared (`inner_loops.md`)", "",
            f"From `{info['command']}` ({info['started']}; {info['episodes']} 5-shot episodes per left-out source, "
            f"every source): paired difference from logistic regression with names on the frozen encoder, mean over "
            f"sources, in points: {means}.", "", _reading(c), "", _chosen_line(c), ""] + (
        [_training_line(info), ""] if info.get("training") else [])


def main(argv: list[str] | None = None) -> int:
    from benchmarks.meta_learning import FULL, build_settings, log, machine, prepare
    from benchmarks.jobs import init_worker

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=20, help="5-shot episodes per left-out source")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=ROOT / "cache")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--meta-minutes", type=float, default=0.0,
                    help="also meta-train each fold with each inner objective for this long and score the bases")
    args = ap.parse_args(argv)
    t0 = time.time()
    settings = build_settings(FULL, {})
    info = {"command": " ".join(["python -m benchmarks.inner_loops", *(sys.argv[1:] if argv is None else argv)]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_start": os.getloadavg(),
            "episodes": args.episodes, "steps": settings.adapt.inner_steps, **machine()}
    data = prepare(FULL, args.seed)
    import multiprocessing

    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker,
                             initargs=(t0, 1)) as pool:
        bases: dict = {s: {} for s in FULL.folds}
        if args.meta_minutes:
            from benchmarks.jobs import meta_train_job

            info["meta_minutes"], info["training"] = args.meta_minutes, {}
            trained = {}
            for f in data["folds"]:
                train, val = data["fold_data"][f.test]
                for o in OBJECTIVES:
                    s_o = settings.replace("meta_train", objective=o, max_minutes=args.meta_minutes)
                    trained[(f.test, o)] = pool.submit(meta_train_job, f.test, "fomaml", s_o, train, val, args.cache)
            for (fold, o), fut in trained.items():
                out = fut.result()["out"]
                bases[fold][o] = out["meta"]
                m = out["metrics"]
                info["training"][f"{fold} {o}"] = {k: m[k] for k in ("best_step", "steps_run", "val_accuracy_start",
                                                                     "val_accuracy")}
                log(f"meta-trained {fold} {o}: kept step {m['best_step']} of {m['steps_run']}", t0)
        futures = {s: pool.submit(source_job, settings, data["tenants"][s], args.cache, s, args.episodes, args.seed,
                                  settings.adapt.inner_steps, bases[s]) for s in FULL.folds}
        rows = []
        for s, fut in futures.items():
            rows += fut.result()
            log(f"{s}: " + ", ".join(f"{m} {sum(r['acc'] for r in rows if r['fold'] == s and r['method'] == m) / args.episodes:.3f}"
                                     for m in methods(bool(args.meta_minutes))), t0)
    info["runtime_s"] = time.time() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inner_loops.json").write_text(json.dumps({"info": info, "records": rows}, indent=1, default=str) + "\n")
    (args.out / "inner_loops.md").write_text(report(rows, info))
    print(report(rows, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
