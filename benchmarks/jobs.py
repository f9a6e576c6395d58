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
def meta_train_job(key: str, algorithm: str, settings, train, val, cache_dir: Path) -> dict:
    """The product's Lightning base training (``meta_train``), early-stopped on ``val``; ``key``
    names the training set (a protocol's source or left-out source)."""
    from lightning_modules.training import meta_train

    enc, _, _ = encoder(settings)
    out = Path(tempfile.mkdtemp(prefix="tailor-bench-base-"))
    name = f"{key} {algorithm}"
    try:
        result = meta_train(enc, settings.replace("meta_train", algorithm=algorithm), train, val, out / "base",
                            cache_dir, say=lambda m: log(f"{name}: {m}"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"key": key, "algorithm": algorithm, "meta": result.meta, "metrics": result.metrics,
            "history": [h for h in result.history if "val_acc" in h]}


def in_domain_state(settings, split, cache_dir):
    """One source's in-domain table: every text of its training, validation and evaluation tenants
    (features cached once), their frozen embeddings, and every category name."""
    from lightning_modules import baselines
    from lightning_modules.features import lower_features

    key = ("in-domain", split.source, settings.encoder, str(cache_dir))
    if key not in _SOURCES:
        enc, top, frozen = encoder(settings)
        texts, names = in_domain_texts(split)
        feats = lower_features(enc, texts, frozen, cache_dir)
        name_feats = lower_features(enc, names, frozen, cache_dir)
        start = no_meta(settings.replace("adapt", label_names=True), top)
        _remember(key, {"top": top, "feats": feats, "row": {t: i for i, t in enumerate(texts)},
                        "names": name_feats, "name_row": {n: i for i, n in enumerate(names)},
                        "z": baselines.frozen_embeddings(top, start, feats),
                        "names_z": baselines.frozen_embeddings(top, start, name_feats), "texts": texts})
    return _SOURCES[key]


def in_domain_texts(split) -> tuple[list[str], list[str]]:
    """(every text, every category name) of one source's in-domain split, in the order its feature
    tables are built (and cached) in."""
    texts = sorted({t for data in (split.train, split.val) for ts, _ in data.values() for t in ts}
                   | {t for c in split.recurring + split.new for t in c.texts})
    return texts, sorted({c.name for c in split.recurring + split.new})


def _remember(key, state) -> None:
    if len(_SOURCES) >= 2:
        _SOURCES.pop(next(iter(_SOURCES)))
    _SOURCES[key] = state


def new_domain_state(settings, source: str, tenants, cache_dir):
    """A left-out source's table (``source_state``) with the lookups ``score_episode`` uses."""
    state = source_state(settings, source, tenants, cache_dir)
    if "row" not in state:   # the order training.feature_table built its tables in
        texts = [t for _, (ts, _) in sorted(tenants.items()) for t in ts]
        names = [n for _, (_, labs) in sorted(tenants.items()) for n in sorted(set(labs))]
        state.update(row={t: i for i, t in enumerate(texts)}, texts=texts,
                     name_row={n: i for i, n in enumerate(names)})
    return state


def _episode_texts(protocol: str, state, settings, source: str, shots: int, index: int, n: int, seed: int,
                   split=None):
    """(support texts, support y, query texts, query y, names, kinds) of one episode of any protocol."""
    from benchmarks import protocols
    from benchmarks.data import episodes

    if protocol == "new-domain":
        task = episodes(state["pool"], source, shots, n, seed)[index]
        texts = state["texts"]
        return ([texts[int(i)] for i in task.support], task.support_y.tolist(),
                [texts[int(i)] for i in task.query], task.query_y.tolist(), list(task.classes), ["new"] * task.n_way)
    ep = protocols.episodes(split, protocol, shots, n, seed)[index]
    return ([t for t, _ in ep.support], [y for _, y in ep.support], [t for t, _ in ep.query],
            [y for _, y in ep.query], list(ep.names), list(ep.kinds))


def episode_hash(support: list[str], query: list[str], names: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\x1f".join(support + ["|"] + query + ["|"] + names).encode()).hexdigest()[:16]


@timed
def episode_job(settings, protocol: str, source: str, data, cache_dir, shots: int, lo: int, hi: int, n: int,
                seed: int, bases: dict, default: str) -> list[dict]:
    """Score episodes ``lo..hi`` of one protocol and source with every method on the same episode:
    the frozen-encoder heads, the adaptation from the start without a trained base, each base's own
    adaptation (``bases``: algorithm -> (meta, inner steps)), and ``tailor``: the product's
    ``adapt_tenant`` from the default base, its per-tenant choice included (at 1 example per label
    nothing can be cross-validated: the default method alone, said in the record)."""
    from benchmarks.methods import score_episode

    if protocol == "new-domain":
        state = new_domain_state(settings, source, data, cache_dir)
        split = None
    else:
        state, split = in_domain_state(settings, data, cache_dir), data
    records = []
    for i in range(lo, hi):
        s_texts, s_y, q_texts, q_y, names, kinds = _episode_texts(protocol, state, settings, source, shots, i, n,
                                                                  seed, split)
        scores = score_episode(settings, state, s_texts, s_y, q_texts, q_y, names, bases, default)
        base = {"protocol": protocol, "source": source, "shots": shots, "episode": i, "kinds": kinds,
                "hash": episode_hash(s_texts, q_texts, names)}
        records += [{**base, "method": m, **r} for m, r in scores.items()]
    return records


@timed
def setfit_job(settings, protocol: str, source: str, data, cache_dir, index: int, n: int, seed: int,
               max_pairs: int | None) -> list[dict]:
    """SetFit on one 5-shot episode of a protocol, and the product's ``adapt_tenant`` timed on the
    same episode in the same process right before it, so the speed ratio compares like with like."""
    import numpy as np

    from benchmarks.setfit_baseline import fit_predict
    from lightning_modules.adaptation import adapt_tenant

    if protocol == "new-domain":
        state, split = new_domain_state(settings, source, data, cache_dir), None
    else:
        state, split = in_domain_state(settings, data, cache_dir), data
    s_texts, s_y, q_texts, q_y, names, _ = _episode_texts(protocol, state, settings, source, 5, index, n, seed, split)
    enc, top, _ = encoder(settings)
    labels = [names[y] for y in s_y]
    adapt_tenant(enc, settings, no_meta(settings, top), "bench", s_texts, labels, cache_dir)   # features cached
    start = time.perf_counter()
    adapt_tenant(enc, settings, no_meta(settings, top), "bench", s_texts, labels, cache_dir)
    base = {"protocol": protocol, "source": source, "shots": 5, "episode": index,
            "hash": episode_hash(s_texts, q_texts, names)}
    records = [{**base, "method": "tailor@setfit", "seconds": time.perf_counter() - start}]
    pred, seconds, pairs = fit_predict(s_texts, s_y, q_texts, max_pairs)
    acc = float(np.mean(np.asarray(pred) == np.asarray(q_y)))
    log(f"SetFit {protocol} {source} 5-shot episode {index}: acc {acc:.3f}, {seconds:.1f}s ({pairs} pairs)")
    return records + [{**base, "method": "setfit", "acc": acc, "seconds": seconds, "pairs": pairs}]
