"""Adapt the base to one tenant: measure on a held-out split against baselines that need no
meta-learning, keep the best (a candidate is never worse there than what no meta-learning gives),
then refit it on all the tenant's data; the result is a small delta (adapters and a head, or a head
alone when a frozen-encoder head won)."""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import torch

from lightning_modules import baselines
from lightning_modules.algorithms import AdaptationDiverged
from lightning_modules.encoder import Encoder, frozen_layer_count
from lightning_modules.features import FeatureTable, lower_features
from lightning_modules.model import HEAD, init_meta_params, is_adapter, layout, prototype_head, top_model
from lightning_modules.tasks import TaskData, accuracy, adapt_task, frozen_names_head, logreg_head, predictions
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
    # for per-label metrics and the confusion matrix a reviewer sees; ``rows``/``texts``: the held-out
    # texts (row indices into the tenant's table), on which registration also scores the champion
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


def _task(feats: FeatureTable, y: torch.Tensor, support: list[int], query: list[int], n_way: int,
          names: FeatureTable | None) -> TaskData:
    s, q = torch.tensor(support), torch.tensor(query)
    data = TaskData(feats.rows(s), y[s], feats.rows(q), y[q], n_way)
    return data.with_names((names.states, names.mask)) if names is not None else data


# On a tie, the first in this order is kept: the product's own adaptation before a frozen head.
METHODS = ("meta-learned", "no-meta", "logreg-names-frozen", "logreg-frozen", "prototypes-frozen")
# what the gate compares with: every method without meta-learning, the strongest frozen head
# (logistic regression with the label names as examples) included
BASELINES = ("no-meta", "logreg-names-frozen", "prototypes-frozen", "logreg-frozen")


def _fit(method: str, top, metas: dict, data: TaskData, frozen_z: torch.Tensor, rows: list[int], cfg, mt,
         names_z: torch.Tensor | None = None):
    """Fast weights of one method fitted on ``data``'s support (``rows``: its example rows in the
    tenant's table, for the frozen heads; ``names_z``: the frozen embeddings of the label names,
    each one more example of its class for ``logreg-names-frozen``)."""
    if method in ("meta-learned", "no-meta"):
        params, losses = adapt_task(top, metas[method], data, cfg.inner_steps, cfg.max_loss,
                                    optimizer=mt.optimizer, head=cfg.head, objective=mt.objective)
        return params, losses
    z, y = frozen_z[rows], data.support_y[:len(rows)]
    if method == "logreg-names-frozen":   # without names (adapt.label_names off) plain logreg
        return frozen_names_head(z, y, names_z, data.n_way, mt.name_weight or 1.0), []
    if method == "logreg-frozen":
        return logreg_head(z, y, data.n_way), []
    return prototype_head(z, y, data.n_way, torch.tensor(math.log(10.0))), []


def adapt_tenant(encoder: Encoder, settings: Settings, base_meta: dict, tenant: str, texts: list[str],
                 labels: list[str], cache_dir=None) -> AdaptationResult:
    """Measure every method on a held-out split, keep the best (the meta-learned adaptation unless a
    method without meta-learning beats it there), then refit that method on all the tenant's data.

    Raises ``AdaptationRejected`` with the reason."""
    cfg, mt = settings.adapt, settings.meta_train
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    y = torch.tensor([index[label] for label in labels])
    adapted_layers, rank, token_rank = layout(base_meta)
    top = top_model(encoder, adapted_layers, rank, token_rank)
    frozen = frozen_layer_count(encoder, adapted_layers)
    feats = lower_features(encoder, texts, frozen, cache_dir)
    name_feats = lower_features(encoder, names, frozen, cache_dir) if cfg.label_names else None
    support, query = stratified_split(labels, cfg.holdout_fraction, cfg.seed)
    held_out = _task(feats, y, support, query, len(names), name_feats)
    no_meta = init_meta_params(top, mt.inner_lr, mt.seed, mt.head_lr, mt.name_weight if cfg.label_names else 0.0)
    metas = {"meta-learned": base_meta, "no-meta": no_meta}
    frozen_z = baselines.frozen_embeddings(top, no_meta, feats)
    names_z = baselines.frozen_embeddings(top, no_meta, name_feats) if name_feats is not None else None
    fitted, accs, seconds = {}, {}, 0.0
    try:
        for method in METHODS:
            start = time.perf_counter()
            fitted[method], _ = _fit(method, top, metas, held_out, frozen_z, support, cfg, mt, names_z)
            if method == "meta-learned":
                seconds = time.perf_counter() - start
            accs[method] = accuracy(top, fitted[method], held_out.query, held_out.query_y)
        chosen = max(METHODS, key=lambda m: (accs[m], -METHODS.index(m)))
        everything = _task(feats, y, list(range(len(texts))), query, len(names), name_feats)
        final, final_losses = _fit(chosen, top, metas, everything, frozen_z, list(range(len(texts))), cfg, mt,
                                   names_z)
    except AdaptationDiverged as exc:
        raise AdaptationRejected(f"adaptation diverged: {exc}") from None
    baseline_method = max(BASELINES, key=lambda m: (accs[m], -BASELINES.index(m)))
    metrics = {
        "query_accuracy": accs[chosen], "meta_accuracy": accs["meta-learned"],
        "no_meta_accuracy": accs["no-meta"], "prototype_accuracy": accs["prototypes-frozen"],
        "logreg_accuracy": accs["logreg-frozen"], "logreg_names_accuracy": accs["logreg-names-frozen"],
        # the approval gate's baseline: the best of what needs no meta-learning, on the same split
        "baseline_accuracy": accs[baseline_method], "baseline_method": baseline_method,
        "n_support": len(support), "n_query": len(query), "n_labels": len(names),
        "adapt_seconds": seconds, "final_support_loss": final_losses[-1] if final_losses else None,
    }
    delta = {k: v for k, v in final.items() if is_adapter(k) or k in HEAD}
    y_pred = predictions(top, fitted[chosen], held_out.query).tolist()
    adaptation = {"algorithm": f"{mt.optimizer}-inner-loop", "inner_steps": cfg.inner_steps, "head": chosen,
                  "head_fit": cfg.head, "label_names": cfg.label_names, "adapted_layers": adapted_layers,
                  "lora_rank": rank, "token_rank": token_rank, "holdout_fraction": cfg.holdout_fraction, "seed": cfg.seed,
                  "measured_on": "held-out split", "registered_on": "all data",
                  "accuracies": {m: round(a, 4) for m, a in accs.items()}}
    return AdaptationResult(tenant, names, delta, metrics, adaptation,
                            {"y_true": held_out.query_y.tolist(), "y_pred": y_pred,
                             "rows": list(query), "texts": [texts[i] for i in query]})
