"""Units of benchmark work, each run in a worker process (one torch thread each: on a small, shared
CPU two single-threaded processes outrun one two-threaded process). Results are plain dicts."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

_STATE: dict = {}


def init_worker(t0: float, threads: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(threads)
    _STATE["t0"] = t0


def log(msg: str) -> None:
    print(f"[{time.time() - _STATE.get('t0', time.time()):5.0f}s] {msg}", flush=True)


def _encoder(settings):
    from lightning_modules.encoder import frozen_layer_count, load_encoder
    from lightning_modules.model import top_model

    enc = load_encoder(settings.encoder)
    top = top_model(enc, settings.encoder.adapted_layers, settings.encoder.lora_rank)
    return enc, top, frozen_layer_count(enc, settings.encoder.adapted_layers)


def _eval_state(settings, evalset, cache_dir):
    """Encoder, top model, the eval table's cached lower states and frozen embeddings (once per worker)."""
    from lightning_modules import baselines
    from lightning_modules.features import lower_features
    from lightning_modules.model import init_meta_params

    key = (settings.encoder, settings.meta_train.inner_lr, str(cache_dir), len(evalset.texts))
    if _STATE.get("eval_key") != key:
        enc, top, frozen = _encoder(settings)
        feats = lower_features(enc, evalset.texts, frozen, cache_dir)
        no_meta = init_meta_params(top, settings.meta_train.inner_lr, settings.meta_train.seed)
        z = baselines.frozen_embeddings(top, no_meta, feats)
        _STATE.update(eval_key=key, eval=(top, feats, z, no_meta))
    return _STATE["eval"]


def features_job(settings, texts: list[str], cache_dir: Path) -> int:
    """Compute and cache the frozen lower layers' outputs for one list of texts."""
    from lightning_modules.features import lower_features

    enc, _, frozen = _encoder(settings)
    return len(lower_features(enc, texts, frozen, cache_dir))


def meta_train_job(name: str, settings, train, val, cache_dir: Path) -> dict:
    """The product's Lightning meta-training with early stopping on the validation tenants."""
    from lightning_modules.training import meta_train

    enc, _, _ = _encoder(settings)
    out = Path(tempfile.mkdtemp(prefix="tailor-bench-base-"))
    try:
        result = meta_train(enc, settings, train, val, out / "base", cache_dir, say=lambda m: log(f"{name}: {m}"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"name": name, "meta": result.meta, "metrics": result.metrics,
            "history": [h for h in result.history if "val_acc" in h]}


def eval_job(settings, evalset, cache_dir, setting: str, shots: int, lo: int, hi: int, seed: int,
             method: str, meta: dict | None, checkpoints: tuple[int, ...], curve_episodes: int) -> list[dict]:
    """Score episodes ``lo..hi`` of one (setting, shots) with one method; ``meta`` None means the
    frozen-encoder baselines, "no-meta" the product's start without meta-learning."""
    from benchmarks.methods import adapted_scores, frozen_scores

    top, feats, z, no_meta = _eval_state(settings, evalset, cache_dir)
    steps = settings.adapt.inner_steps
    records = []
    for i, task in enumerate(evalset.episodes(setting, shots, hi, seed)[lo:hi], start=lo):
        base = {"setting": setting, "shots": shots, "episode": i}
        if method == "frozen":
            records += [{**base, "method": m, "acc": a} for m, a in frozen_scores(z, task).items()]
            continue
        marks = tuple(sorted(set(checkpoints) | {steps})) if i < curve_episodes else (steps,)
        scores, seconds, diverged = adapted_scores(top, no_meta if meta is None else meta, feats, task, marks,
                                                   steps, settings.adapt.max_loss)
        records.append({**base, "method": method, "acc": scores[steps], "curve": scores, "seconds": seconds,
                        "diverged": diverged})
    return records


def setfit_job(settings, evalset, cache_dir, setting: str, shots: int, index: int, n: int, seed: int,
               metas: dict[str, dict], max_pairs: int | None) -> list[dict]:
    """SetFit on one episode, and the product's adaptation timed on the same episode in the same
    process right before it, so the speed ratio compares like with like."""
    import numpy as np

    from benchmarks.methods import adapted_scores
    from benchmarks.setfit_baseline import fit_predict

    top, feats, _, _ = _eval_state(settings, evalset, cache_dir)
    task = evalset.episodes(setting, shots, n, seed)[index]
    steps = settings.adapt.inner_steps
    base = {"setting": setting, "shots": shots, "episode": index}
    records = []
    adapted_scores(top, next(iter(metas.values())), feats, task, (1,), 1, None)  # warm-up: lazy init off the clock
    for name, meta in metas.items():
        scores, seconds, _ = adapted_scores(top, meta, feats, task, (steps,), steps, settings.adapt.max_loss)
        records.append({**base, "method": f"{name}@setfit", "acc": scores[steps], "seconds": seconds})
    texts = evalset.texts
    support = [texts[int(i)] for i in task.support]
    query = [texts[int(i)] for i in task.query]
    pred, seconds, pairs = fit_predict(support, task.support_y.tolist(), query, max_pairs)
    acc = float(np.mean(pred == task.query_y.numpy()))
    log(f"SetFit {setting} {shots}-shot episode {index}: acc {acc:.3f}, {seconds:.1f}s ({pairs} pairs)")
    return records + [{**base, "method": "setfit", "acc": acc, "seconds": seconds, "pairs": pairs}]
