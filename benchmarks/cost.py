"""Cost: time per meta-step and peak memory of second-order MAML, FOMAML and Reptile at the same
settings on the same tasks (label names included); adaptation time and stored bytes per tenant."""
from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
from safetensors.torch import save_file

from benchmarks.jobs import encoder, log, no_meta, timed


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
    """Top model, the meta-training feature and label-name tables, ``n_batches`` meta-batches of
    tasks (the same for every algorithm), and per algorithm its own meta-parameters and Adam."""
    from lightning_modules.episodes import EpisodeSampler
    from lightning_modules.training import feature_table

    cfg = settings.meta_train
    enc, top, frozen = encoder(settings)
    feats, pools, names = feature_table(enc, train, frozen, cache_dir, names=settings.adapt.label_names)
    sampler = EpisodeSampler(pools, (cfg.ways_min, cfg.ways_max), cfg.shots, cfg.query, cfg.seed)
    batches = [[sampler.sample() for _ in range(cfg.meta_batch)] for _ in range(n_batches)]
    state = {}
    for a in algorithms:
        meta = {k: torch.nn.Parameter(v.clone()) for k, v in no_meta(settings, top).items()}
        state[a] = (meta, torch.optim.Adam(meta.values(), lr=cfg.meta_lr))
    return top, (feats, names), batches, state


def _meta_step(settings, top, tables, batch, algorithm: str, meta: dict, opt) -> float:
    """One outer update as the LightningModule does it; returns its seconds. Second-order MAML
    differentiates plain SGD only, so its inner loop is SGD whatever ``meta_train.optimizer`` says."""
    from lightning_modules.tasks import TaskData, meta_learn_task

    feats, names = tables
    start = time.perf_counter()
    opt.zero_grad()
    for task in batch:
        surrogate, _ = meta_learn_task(top, meta, TaskData.from_task(feats, task, names), algorithm,
                                       settings.meta_train.inner_steps, settings.adapt.max_loss,
                                       optimizer=settings.meta_train.optimizer)
        (surrogate / len(batch)).backward()
    opt.step()
    return time.perf_counter() - start


@timed
def meta_step_times(settings, train, cache_dir, algorithms: tuple[str, ...], warmup: int, rounds: int) -> dict:
    """Seconds per meta-step, the algorithms interleaved step by step in one process on the same
    meta-batches, so whatever else loads the CPU loads each of them alike."""
    top, tables, batches, state = _meta_setup(settings, train, cache_dir, algorithms, warmup + rounds)
    times = {a: [] for a in algorithms}
    for i, batch in enumerate(batches):
        for a in algorithms[i % len(algorithms):] + algorithms[:i % len(algorithms)]:  # rotate the order
            seconds = _meta_step(settings, top, tables, batch, a, *state[a])
            if i >= warmup:
                times[a].append(seconds)
    out = {a: {"step_s": statistics.median(t), "step_s_all": t} for a, t in times.items()}
    log("meta-step seconds (median, interleaved): " + ", ".join(f"{a} {v['step_s']:.2f}" for a, v in out.items()))
    return {**out, "threads": torch.get_num_threads()}


@timed
def meta_step_memory(settings, train, cache_dir, algorithm: str, steps: int) -> dict:
    """Peak RSS above the RSS after setup over ``steps`` meta-steps. Run it in a fresh process."""
    top, tables, batches, state = _meta_setup(settings, train, cache_dir, (algorithm,), steps)
    setup_rss = psutil.Process().memory_info().rss
    with PeakRSS() as peak:
        for batch in batches:
            _meta_step(settings, top, tables, batch, algorithm, *state[algorithm])
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


TIMED_SOURCES = ("wordnet-lex", "bible")   # glosses of ~20 tokens; verses that fill the 64-token window


def _tenant(tenants, source: str, ways: int = 5, per_class: int = 10) -> tuple[list[str], list[str]]:
    """A tenant of ``ways`` x ``per_class`` texts from a source's first pseudo-tenant."""
    texts, labels = tenants[source][sorted(tenants[source])[0]]
    chosen = sorted(set(labels))[:ways]
    rows = [i for name in chosen for i in [j for j, lab in enumerate(labels) if lab == name][:per_class]]
    return [texts[i] for i in rows], [labels[i] for i in rows]


def _delta_bytes(delta: dict, labels: list[str]) -> tuple[int, int]:
    from lightning_modules.delta import save_delta

    with tempfile.TemporaryDirectory() as tmp:
        path = save_delta(Path(tmp) / "delta", delta, {"tenant": "bench", "labels": labels})
        return (path / "delta.safetensors").stat().st_size, (path / "manifest.json").stat().st_size


@timed
def adaptation_cost(settings, tenants, bases: dict[str, tuple[dict, int | None]], cache_dir, repeats: int,
                    thread_counts: list[int]) -> dict:
    """Per tenant of 50 examples (5 labels x 10, all of them the support set, label names added),
    frozen part cached: seconds of one adaptation (the product's ``adapt_task``) from each start
    (``bases``: algorithm -> (meta, its inner steps)), of prototypes / logistic regression on frozen
    embeddings, and of the product's whole ``adapt_tenant`` (cross-validation of every method, then
    the chosen one fitted on all 50); and the bytes each method stores per tenant."""
    from lightning_modules import baselines
    from lightning_modules.adaptation import adapt_tenant
    from lightning_modules.encoder import packaged_model_dir
    from lightning_modules.features import lower_features
    from lightning_modules.model import HEAD, is_adapter
    from lightning_modules.tasks import LOGREG_C, TaskData, adapt_task

    enc, top, frozen = encoder(settings)
    steps, mt, head = settings.adapt.inner_steps, settings.meta_train, settings.adapt.head
    start0 = no_meta(settings, top)
    meta, base_steps = bases[mt.algorithm]
    starts = {"no-meta": (start0, None), **bases}
    out: dict = {"timing": [], "bytes": {}, "sources": list(TIMED_SOURCES)}
    for source in TIMED_SOURCES:
        texts, labels = _tenant(tenants, source)
        names = sorted(set(labels))
        feats = lower_features(enc, texts, frozen, cache_dir)
        name_feats = lower_features(enc, names, frozen, cache_dir)
        y = torch.tensor([names.index(label) for label in labels])
        every = torch.arange(len(texts))
        data = TaskData(feats.rows(every), y, feats.rows(every), y, len(names))
        if settings.adapt.label_names:
            data = data.with_names((name_feats.states, name_feats.mask))

        def protos():
            z = baselines.frozen_embeddings(top, start0, feats)
            return torch.zeros(len(names), z.shape[1]).index_add(0, y, z) / 10

        def logreg():
            from sklearn.linear_model import LogisticRegression

            z = baselines.frozen_embeddings(top, start0, feats)
            return LogisticRegression(max_iter=1000, C=LOGREG_C).fit(z.numpy(), y.numpy())

        for threads in thread_counts:
            torch.set_num_threads(threads)
            timed_starts = starts if threads == 1 else {mt.algorithm: (meta, base_steps)}
            adapt = lambda m, k: adapt_task(top, m, data, steps if k is None else k, optimizer=mt.optimizer,  # noqa: E731
                                            head=head)
            row = {"source": source, "threads": threads, "n": len(texts),
                   **{f"{name}_s": _median_time(lambda m=m, k=k: adapt(m, k), repeats)
                      for name, (m, k) in timed_starts.items()},
                   "prototypes_s": _median_time(protos, repeats), "logreg_s": _median_time(logreg, repeats),
                   "adapt_tenant_s": _median_time(lambda: adapt_tenant(enc, settings, meta, "bench", texts, labels,
                                                                      cache_dir, base_steps=base_steps),
                                                  max(1, repeats // 3))}
            out["timing"].append(row)
            log(f"adaptation cost {source}, {threads} thread(s): one adaptation {row[mt.algorithm + '_s']:.2f}s, "
                f"whole adapt_tenant {row['adapt_tenant_s']:.2f}s")
        if source == TIMED_SOURCES[0]:
            params, _ = adapt_task(top, meta, data, steps if base_steps is None else base_steps,
                                   optimizer=mt.optimizer, head=head)
            adapted = {k: v for k, v in params.items() if is_adapter(k) or k in HEAD}
            product = adapt_tenant(enc, settings, meta, "bench", texts, labels, cache_dir, base_steps=base_steps)
            out["bytes"]["tailor"], out["bytes"]["manifest"] = _delta_bytes(adapted, names)
            out["bytes"]["product"], _ = _delta_bytes(product.delta, names)
            out["bytes"]["product_head"] = product.adaptation["head"]
            clf = logreg()
            with tempfile.TemporaryDirectory() as tmp:
                save_file({"prototypes": protos().contiguous()}, f"{tmp}/p.safetensors")
                out["bytes"]["prototypes"] = Path(f"{tmp}/p.safetensors").stat().st_size
                head_t = {"coef": torch.tensor(clf.coef_, dtype=torch.float32).contiguous(),
                          "intercept": torch.tensor(clf.intercept_, dtype=torch.float32).contiguous()}
                save_file(head_t, f"{tmp}/l.safetensors")
                out["bytes"]["logreg"] = Path(f"{tmp}/l.safetensors").stat().st_size
            out["bytes"]["encoder"] = (packaged_model_dir() / "model.safetensors").stat().st_size
            out["bytes"]["delta_tensors"] = {k: list(v.shape) for k, v in sorted(adapted.items())}
    return out
