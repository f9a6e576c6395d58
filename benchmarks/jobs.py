"""Units of benchmark work, each run in a worker process (one torch thread each: on a small, shared
CPU two single-threaded processes outrun one two-threaded process). Results are plain dicts; each
job also reports its wall and CPU seconds (``timed``), so a run can be sized from another."""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

_STATE: dict = {}
_SOURCES: dict = {}   # a worker's evaluation tables, by source (at most two kept: ~150 MB each)


def init_worker(t0: float, threads: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(threads)
    _STATE["t0"] = t0


def log(msg: str) -> None:
    print(f"[{time.time() - _STATE.get('t0', time.time()):5.0f}s] {msg}", flush=True)


def timed(fn):
    """``{"out": fn(...), "wall_s": ..., "cpu_s": ...}``: CPU seconds barely depend on what else
    loads the machine, so they size a run better than wall time on a shared CPU."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        return {"out": out, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    return run


def encoder(settings):
    from lightning_modules.encoder import frozen_layer_count, load_encoder
    from lightning_modules.model import top_model

    enc = load_encoder(settings.encoder)
    top = top_model(enc, settings.encoder.adapted_layers, settings.encoder.lora_rank, settings.encoder.token_rank)
    return enc, top, frozen_layer_count(enc, settings.encoder.adapted_layers)


def no_meta(settings, top) -> dict:
    """The product's start without meta-learning, at these settings."""
    from lightning_modules.model import init_meta_params

    mt, names = settings.meta_train, settings.adapt.label_names
    return init_meta_params(top, mt.inner_lr, mt.seed, mt.head_lr, mt.name_weight if names else 0.0)


def source_state(settings, source: str, tenants, cache_dir):
    """A left-out source's evaluation table (its tenants' cached features, one pool of all its
    classes, its label names) and frozen embeddings, built once per worker."""
    from benchmarks.data import merged_pool
    from lightning_modules import baselines
    from lightning_modules.training import feature_table

    key = (source, settings.encoder, str(cache_dir))
    if key not in _SOURCES:
        enc, top, frozen = encoder(settings)
        feats, pools, names = feature_table(enc, tenants, frozen, cache_dir, names=True)
        start = no_meta(settings.replace("adapt", label_names=True), top)
        z = baselines.frozen_embeddings(top, start, feats)
        names_z = baselines.frozen_embeddings(top, start, names)
        if len(_SOURCES) >= 2:
            _SOURCES.pop(next(iter(_SOURCES)))
        _SOURCES[key] = {"top": top, "feats": feats, "names": names, "pool": merged_pool(pools, source), "z": z,
                       "names_z": names_z}
    return _SOURCES[key]


@timed
def features_job(settings, texts: list[str], cache_dir: Path) -> int:
    """Compute and cache the frozen lower layers' outputs for one tenant's texts (and label names)."""
    from lightning_modules.features import lower_features

    enc, _, frozen = encoder(settings)
    return len(lower_features(enc, texts, frozen, cache_dir))


@timed
def meta_train_job(fold: str, algorithm: str, settings, train, val, cache_dir: Path) -> dict:
    """The product's Lightning meta-training, early-stopped on the validation source's tenants."""
    from lightning_modules.training import meta_train

    enc, _, _ = encoder(settings)
    out = Path(tempfile.mkdtemp(prefix="tailor-bench-base-"))
    name = f"{fold} {algorithm}"
    try:
        result = meta_train(enc, settings.replace("meta_train", algorithm=algorithm), train, val, out / "base",
                            cache_dir, say=lambda m: log(f"{name}: {m}"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"fold": fold, "algorithm": algorithm, "meta": result.meta, "metrics": result.metrics,
            "history": [h for h in result.history if "val_acc" in h]}


def _episode(state, settings, source: str, shots: int, index: int, n: int, seed: int, names: bool = True):
    from benchmarks.data import episodes
    from lightning_modules.tasks import TaskData

    task = episodes(state["pool"], source, shots, n, seed)[index]
    return task, TaskData.from_task(state["feats"], task, state["names"] if names else None)


@timed
def eval_job(settings, tenants, cache_dir, source: str, shots: int, lo: int, hi: int, seed: int,
             method: str, meta: dict | None, marks: tuple[int, ...], curve_episodes: int) -> list[dict]:
    """Score episodes ``lo..hi`` of one left-out source at ``shots`` with one method: "frozen" (the
    frozen-encoder baselines), "no-meta" (the product's adaptation from its start without
    meta-learning) or a meta-trained base (``meta``)."""
    from benchmarks.methods import adapted_scores, frozen_scores

    state = source_state(settings, source, tenants, cache_dir)
    steps, mt = settings.adapt.inner_steps, settings.meta_train
    start = meta if meta is not None else no_meta(settings, state["top"])
    records = []
    for i in range(lo, hi):
        task, data = _episode(state, settings, source, shots, i, hi, seed, settings.adapt.label_names)
        base = {"fold": source, "shots": shots, "episode": i}
        if method == "frozen":
            scores = frozen_scores(state["z"], state["names_z"], task, mt.name_weight)
            records += [{**base, "method": m, "acc": a} for m, a in scores.items()]
            continue
        at = tuple(sorted(set(marks) | {steps})) if i < curve_episodes else (steps,)
        scores, diverged = adapted_scores(state["top"], start, data, at, mt.optimizer, settings.adapt.head,
                                          settings.adapt.max_loss)
        records.append({**base, "method": method, "acc": scores[steps], "curve": scores, "diverged": diverged})
    return records


@timed
def trace_job(settings, tenants, cache_dir, source: str, n: int, seed: int, steps: int,
              variants: dict) -> list[dict]:
    """The inner loop of the start without meta-learning, step by step, on the first ``n`` 5-shot
    episodes, under each of ``variants`` ({name: settings})."""
    from benchmarks.methods import inner_loop_trace

    rows = []
    for name, s in variants.items():
        state = source_state(s, source, tenants, cache_dir)
        for i in range(n):
            _, data = _episode(state, s, source, 5, i, n, seed, s.adapt.label_names)
            for row in inner_loop_trace(state["top"], no_meta(s, state["top"]), data, steps,
                                        s.meta_train.optimizer, s.adapt.head, s.adapt.max_loss):
                rows.append({"fold": source, "variant": name, "episode": i, **row})
    return rows


@timed
def setfit_job(settings, tenants, cache_dir, source: str, index: int, n: int, seed: int,
               max_pairs: int | None) -> list[dict]:
    """SetFit on one 5-shot episode, and the product's adaptation timed on the same episode in the
    same process right before it (from the start without meta-learning: a base changes the values
    adapted, not the work), so the speed ratio compares like with like."""
    import numpy as np

    from benchmarks.setfit_baseline import fit_predict
    from lightning_modules.tasks import adapt_task

    state = source_state(settings, source, tenants, cache_dir)
    task, data = _episode(state, settings, source, 5, index, n, seed, settings.adapt.label_names)
    start_meta, mt = no_meta(settings, state["top"]), settings.meta_train
    adapt_task(state["top"], start_meta, data, 1)  # warm-up: lazy init off the clock
    start = time.perf_counter()
    adapt_task(state["top"], start_meta, data, settings.adapt.inner_steps, optimizer=mt.optimizer,
               head=settings.adapt.head)
    base = {"fold": source, "shots": 5, "episode": index}
    records = [{**base, "method": "tailor@setfit", "seconds": time.perf_counter() - start}]
    texts = [t for _, (ts, _) in sorted(tenants.items()) for t in ts]
    support = [texts[int(i)] for i in task.support]
    query = [texts[int(i)] for i in task.query]
    pred, seconds, pairs = fit_predict(support, task.support_y.tolist(), query, max_pairs)
    acc = float(np.mean(np.asarray(pred) == task.query_y.numpy()))
    log(f"SetFit {source} 5-shot episode {index}: acc {acc:.3f}, {seconds:.1f}s ({pairs} pairs)")
    return records + [{**base, "method": "setfit", "acc": acc, "seconds": seconds, "pairs": pairs}]
