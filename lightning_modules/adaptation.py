"""Adapt the base to one tenant: measure on a held-out split against baselines that need no
meta-learning, then re-adapt on all the tenant's data; the result is a small delta."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import torch

from lightning_modules import baselines
from lightning_modules.algorithms import AdaptationDiverged
from lightning_modules.encoder import Encoder, frozen_layer_count
from lightning_modules.features import FeatureTable, lower_features
from lightning_modules.model import HEAD, init_meta_params, top_model
from lightning_modules.tasks import TaskData, accuracy, adapt_task
from workspace.settings import Settings


class AdaptationRejected(Exception):
    """Adaptation failed its own checks (diverged, too little data); no candidate may be registered."""


@dataclass
class AdaptationResult:
    tenant: str
    labels: list[str]
    delta: dict[str, torch.Tensor]
    metrics: dict
    adaptation: dict = field(default_factory=dict)
    # the held-out split as label indices into ``labels``: y_true and the chosen head's y_pred,
    # for per-label metrics and the confusion matrix a reviewer sees
    held_out: dict = field(default_factory=dict)


def stratified_split(labels: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Hold out ``fraction`` of each label (at least one example each side), seeded."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    support, query = [], []
    for label in sorted(by_label):
        rows = by_label[label][:]
        rng.shuffle(rows)
        if len(rows) < 2:
            raise AdaptationRejected(f"label {label!r} has {len(rows)} example(s); need 2 to measure")
        n_query = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
        query += rows[:n_query]
        support += rows[n_query:]
    return sorted(support), sorted(query)


def _task(feats: FeatureTable, y: torch.Tensor, support: list[int], query: list[int], n_way: int) -> TaskData:
    s, q = torch.tensor(support), torch.tensor(query)
    return TaskData(feats.rows(s), y[s], feats.rows(q), y[q], n_way)


def adapt_tenant(encoder: Encoder, settings: Settings, base_meta: dict, tenant: str, texts: list[str],
                 labels: list[str], cache_dir=None) -> AdaptationResult:
    """Measure, then re-adapt on everything. Raises ``AdaptationRejected`` with the reason."""
    cfg = settings.adapt
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    y = torch.tensor([index[label] for label in labels])
    top = top_model(encoder, settings.encoder.adapted_layers, settings.encoder.lora_rank)
    feats = lower_features(encoder, texts, frozen_layer_count(encoder, settings.encoder.adapted_layers), cache_dir)
    support, query = stratified_split(labels, cfg.holdout_fraction, cfg.seed)
    held_out = _task(feats, y, support, query, len(names))
    no_meta = init_meta_params(top, settings.meta_train.inner_lr, settings.meta_train.seed)
    try:
        start = time.perf_counter()
        params, losses = adapt_task(top, base_meta, held_out, cfg.inner_steps, cfg.max_loss)
        seconds = time.perf_counter() - start
        plain, _ = adapt_task(top, no_meta, held_out, cfg.inner_steps, cfg.max_loss)
        everything = _task(feats, y, list(range(len(texts))), query, len(names))
        final, final_losses = adapt_task(top, base_meta, everything, cfg.inner_steps, cfg.max_loss)
    except AdaptationDiverged as exc:
        raise AdaptationRejected(f"adaptation diverged: {exc}") from None
    frozen_emb = baselines.frozen_embeddings(top, no_meta, feats)
    metrics = {
        "query_accuracy": accuracy(top, params, held_out.query, held_out.query_y),
        "no_meta_accuracy": accuracy(top, plain, held_out.query, held_out.query_y),
        "prototype_accuracy": baselines.prototype_accuracy(frozen_emb, y, support, query),
        "logreg_accuracy": baselines.logreg_accuracy(frozen_emb, y, support, query),
        "n_support": len(support), "n_query": len(query), "n_labels": len(names),
        "adapt_seconds": seconds, "final_support_loss": final_losses[-1],
    }
    # The approval gate's baseline: the best of what needs no meta-learning, on the same split.
    baselines_ = {"no-meta": metrics["no_meta_accuracy"], "prototypes": metrics["prototype_accuracy"],
                  "logreg": metrics["logreg_accuracy"]}
    metrics["baseline_method"] = max(baselines_, key=baselines_.get)
    metrics["baseline_accuracy"] = baselines_[metrics["baseline_method"]]
    with torch.no_grad():
        y_pred = top.logits(params, *held_out.query).argmax(1).tolist()
    delta = {k: v for k, v in final.items() if k.startswith("L") or k in HEAD}
    adaptation = {"algorithm": "sgd-inner-loop", "inner_steps": cfg.inner_steps,
                  "holdout_fraction": cfg.holdout_fraction, "seed": cfg.seed,
                  "measured_on": "held-out split", "registered_on": "all data", "head": "meta-learned"}
    return AdaptationResult(tenant, names, delta, metrics, adaptation,
                            {"y_true": held_out.query_y.tolist(), "y_pred": y_pred})
