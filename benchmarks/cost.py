"""Cost: time per meta-step and peak memory of second-order MAML, FOMAML and Reptile, each in a fresh
process at the same settings on the same tasks; adaptation time and stored bytes per tenant."""
from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
from safetensors.torch import save_file

from benchmarks.jobs import _encoder, log


class PeakRSS:
    """Samples this process's resident memory every millisecond while active."""

    def __init__(self):
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def _meta_setup(settings, train, cache_dir, algorithms, n_batches: int):
    """Top model, the meta-training feature table, ``n_batches`` meta-batches of tasks (the same for
    every algorithm), and per algorithm its own meta-parameters and Adam optimiser."""
    from lightning_modules.episodes import EpisodeSampler
    from lightning_modules.model import init_meta_params
    from lightning_modules.training import feature_table

    cfg = settings.meta_train
    enc, top, frozen = _encoder(settings)
    feats, pools = feature_table(enc, train, frozen, cache_dir)
    sampler = EpisodeSampler(pools, (cfg.ways_min, cfg.ways_max), cfg.shots, cfg.query, cfg.seed)
    batches = [[sampler.sample() for _ in range(cfg.meta_batch)] for _ in range(n_batches)]
    state = {}
    for a in algorithms:
        meta = {k: torch.nn.Parameter(v.clone()) for k, v in init_meta_params(top, cfg.inner_lr, cfg.seed).items()}
        state[a] = (meta, torch.optim.Adam(meta.values(), lr=cfg.meta_lr))
    return top, feats, batches, state


def _meta_step(settings, top, feats, batch, algorithm: str, meta: dict, opt) -> float:
    """One outer update as the LightningModule does it; returns its seconds."""
    from lightning_modules.tasks import TaskData, meta_learn_task

    start = time.perf_counter()
    opt.zero_grad()
    for task in batch:
        surrogate, _ = meta_learn_task(top, meta, TaskData.from_task(feats, task), algorithm,
                                       settings.meta_train.inner_steps, settings.adapt.max_loss)
        (surrogate / len(batch)).backward()
    opt.step()
    return time.perf_counter() - start


def meta_step_times(settings, train, cache_dir, algorithms: tuple[str, ...], warmup: int, rounds: int) -> dict:
    """Seconds per meta-step, the algorithms interleaved step by step in one process on the same
    meta-batches, so whatever else loads the CPU loads each of them alike."""
    top, feats, batches, state = _meta_setup(settings, train, cache_dir, algorithms, warmup + rounds)
    times = {a: [] for a in algorithms}
    for i, batch in enumerate(batches):
        for a in algorithms[i % len(algorithms):] + algorithms[:i % len(algorithms)]:  # rotate the order
            seconds = _meta_step(settings, top, feats, batch, a, *state[a])
            if i >= warmup:
                times[a].append(seconds)
    out = {a: {"step_s": statistics.median(t), "step_s_all": t} for a, t in times.items()}
    log("meta-step seconds (median, interleaved): " + ", ".join(f"{a} {v['step_s']:.2f}" for a, v in out.items()))
    return {**out, "threads": torch.get_num_threads()}


def meta_step_memory(settings, train, cache_dir, algorithm: str, steps: int) -> dict:
    """Peak RSS above the RSS after setup over ``steps`` meta-steps. Run it in a fresh process."""
    top, feats, batches, state = _meta_setup(settings, train, cache_dir, (algorithm,), steps)
    setup_rss = psutil.Process().memory_info().rss
    with PeakRSS() as peak:
        for batch in batches:
            _meta_step(settings, top, feats, batch, algorithm, *state[algorithm])
    out = {"peak_mb": (peak.peak - setup_rss) / 2**20, "setup_mb": setup_rss / 2**20}
    log(f"meta-step memory {algorithm}: peak +{out['peak_mb']:.0f} MiB above setup ({out['setup_mb']:.0f} MiB)")
    return out


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _tenant(evalset, source: str, ways: int, per_class: int) -> tuple[list[str], list[str], list[int]]:
    pool = evalset.pools[source]
    rows = [r for label in pool.usable_labels(per_class)[:ways] for r in pool.by_label[label][:per_class]]
    return [evalset.texts[r] for r in rows], [evalset.labels[r] for r in rows], rows


def adaptation_cost(settings, evalset, metas: dict[str, dict], cache_dir, repeats: int,
                    thread_counts: list[int]) -> dict:
    """Per tenant of 50 examples (5 labels x 10), frozen part cached: seconds to adapt (the product's
    inner loop, all 50 as support), to fit prototypes / logistic regression on frozen embeddings,
    and the product's whole ``adapt_tenant`` (held-out measurement, baseline, re-adaptation); and
    the bytes each method stores per tenant."""
    from lightning_modules import baselines
    from lightning_modules.adaptation import adapt_tenant
    from lightning_modules.delta import save_delta
    from lightning_modules.encoder import packaged_model_dir
    from lightning_modules.features import lower_features
    from lightning_modules.model import HEAD, init_meta_params
    from lightning_modules.tasks import TaskData, adapt_task

    enc, top, frozen = _encoder(settings)
    steps = settings.adapt.inner_steps
    no_meta = init_meta_params(top, settings.meta_train.inner_lr, settings.meta_train.seed)
    meta = metas[settings.meta_train.algorithm]
    starts = {"no-meta": no_meta, **metas}
    out: dict = {"timing": [], "bytes": {}}
    for source in ("wordnet-lex", "ha-intents"):
        texts, labels, _ = _tenant(evalset, source, 5, 10)
        feats = lower_features(enc, texts, frozen, cache_dir)
        names = sorted(set(labels))
        y = torch.tensor([names.index(l) for l in labels])
        every = list(range(len(texts)))
        data = TaskData(feats.rows(torch.tensor(every)), y, feats.rows(torch.tensor(every)), y, len(names))

        def protos():
            z = baselines.frozen_embeddings(top, no_meta, feats)
            return torch.zeros(len(names), z.shape[1]).index_add(0, y, z) / 10

        def logreg():
            from sklearn.linear_model import LogisticRegression

            z = baselines.frozen_embeddings(top, no_meta, feats)
            return LogisticRegression(max_iter=1000, C=10.0).fit(z.numpy(), y.numpy())

        for threads in thread_counts:
            torch.set_num_threads(threads)
            timed = starts if threads == 1 else {settings.meta_train.algorithm: meta}
            row = {"source": source, "threads": threads, "n": len(texts),
                   **{f"{name}_s": _median_time(lambda: adapt_task(top, start, data, steps), repeats)
                      for name, start in timed.items()},
                   "prototypes_s": _median_time(protos, repeats),
                   "logreg_s": _median_time(logreg, repeats),
                   "adapt_tenant_s": _median_time(lambda: adapt_tenant(enc, settings, meta, "bench", texts, labels,
                                                                      cache_dir), max(1, repeats // 3))}
            out["timing"].append(row)
            tailor = row[settings.meta_train.algorithm + "_s"]
            log(f"adaptation cost {source}, {threads} thread(s): Tailor {tailor:.2f}s, "
                f"whole adapt_tenant {row['adapt_tenant_s']:.2f}s")
        if source == "wordnet-lex":
            params, _ = adapt_task(top, meta, data, steps)
            delta = {k: v for k, v in params.items() if k.startswith("L") or k in HEAD}
            clf = logreg()
            with tempfile.TemporaryDirectory() as tmp:
                path = save_delta(Path(tmp) / "delta", delta, {"tenant": "bench", "labels": names})
                out["bytes"]["tailor"] = (path / "delta.safetensors").stat().st_size
                out["bytes"]["manifest"] = (path / "manifest.json").stat().st_size
                save_file({"prototypes": protos().contiguous()}, f"{tmp}/p.safetensors")
                out["bytes"]["prototypes"] = Path(f"{tmp}/p.safetensors").stat().st_size
                head = {"coef": torch.tensor(clf.coef_, dtype=torch.float32).contiguous(),
                        "intercept": torch.tensor(clf.intercept_, dtype=torch.float32).contiguous()}
                save_file(head, f"{tmp}/l.safetensors")
                out["bytes"]["logreg"] = Path(f"{tmp}/l.safetensors").stat().st_size
            out["bytes"]["encoder"] = (packaged_model_dir() / "model.safetensors").stat().st_size
            out["bytes"]["delta_tensors"] = {k: list(v.shape) for k, v in sorted(delta.items())}
    return out
