"""Adapt the base to one tenant: choose a method by cross-validation over all of the tenant's
examples, keep the default (the base's own adaptation) unless another method beats it there by a
margin the folds support, then fit the chosen method on all of the data; the result is a small
delta (adapters and a head, or a head alone when a frozen-encoder head was chosen).

Why cross-validation: choosing by accuracy on one held-out split of a few texts shipped worse than
always using the best fixed method (a split of 8 texts cannot tell methods 2 points apart, and the
maximum of noisy scores favours whichever method is noisiest). Every example is scored once, by a
model that did not see it; a method other than the default must beat it by ``adapt.choice_margin``
and by more than the paired differences' own noise (one-sided 95%).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from lightning_modules import baselines
from lightning_modules.algorithms import AdaptationDiverged
from lightning_modules.encoder import Encoder, frozen_layer_count
from lightning_modules.features import FeatureTable, lower_features
from lightning_modules.model import HEAD, init_meta_params, is_adapter, layout, prototype_head, top_model
from lightning_modules.tasks import TaskData, adapt_task, frozen_names_head, logreg_head, predictions
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
    # every example, scored once by the chosen method fitted without it (cross-validation), as label
    # indices into ``labels``: y_true and y_pred, for per-label metrics and the confusion matrix a
    # reviewer sees; ``rows``/``texts``: those examples (row indices into the tenant's table), on
    # which registration also scores the champion
    held_out: dict = field(default_factory=dict)


# "base": the registered base's own adaptation (its inner steps, then logistic regression with the
# label names on the adapted embeddings); the others need no trained base.
METHODS = ("base", "no-meta", "logreg-names-frozen", "logreg-frozen", "prototypes-frozen")
# what the choice may pick instead of the default: the strongest head without a base and the same
# adaptation without a base. The other two frozen heads are measured (the gate's baseline is the best
# of all four) but not chosen: they are weaker on average, and every extra candidate is one more
# chance for noise on a few dozen examples to win.
CANDIDATES = ("base", "no-meta", "logreg-names-frozen")
# what the gate compares with: every method without a trained base, the strongest frozen head
# (logistic regression with the label names as examples) included
BASELINES = ("no-meta", "logreg-names-frozen", "prototypes-frozen", "logreg-frozen")


def cv_folds(labels: list[str], k: int, seed: int) -> list[int]:
    """A fold (0..k'-1) per example, stratified and seeded: each label's examples dealt round the
    folds in a shuffled order. k' = min(k, the rarest label's count), so every fold holds out at
    least one example of every label; fewer than 2 of a label cannot be cross-validated."""
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    rarest = min(len(rows) for rows in by_label.values())
    if rarest < 2:
        few = sorted(label for label, rows in by_label.items() if len(rows) < 2)
        raise AdaptationRejected(f"label {few[0]!r} has 1 example; need 2 to measure")
    k = max(2, min(k, rarest))
    rng = random.Random(seed)
    fold = [0] * len(labels)
    offset = 0
    for label in sorted(by_label):
        rows = by_label[label][:]
        rng.shuffle(rows)
        for j, row in enumerate(rows):
            fold[row] = (j + offset) % k
        offset += len(rows)   # labels start at different folds, so fold sizes stay even
    return fold


def measuring_split(labels: list[str], k: int, seed: int) -> tuple[list[int], list[int]]:
    """(rows fitted on, rows scored) of the first cross-validation fold: what the data checks look
    at for texts on both sides of a fold."""
    folds = cv_folds(labels, k, seed)
    return [i for i, f in enumerate(folds) if f != 0], [i for i, f in enumerate(folds) if f == 0]


def _task(feats: FeatureTable, y: torch.Tensor, support: list[int], query: list[int], n_way: int,
          names: FeatureTable | None) -> TaskData:
    s, q = torch.tensor(support, dtype=torch.long), torch.tensor(query, dtype=torch.long)
    data = TaskData(feats.rows(s), y[s], feats.rows(q), y[q], n_way)
    return data.with_names((names.states, names.mask)) if names is not None else data


@dataclass
class _Tenant:
    """One tenant's examples, ready for every method: features, frozen embeddings, label names."""

    top: object
    feats: FeatureTable
    y: torch.Tensor
    n_way: int
    names: FeatureTable | None
    frozen_z: torch.Tensor
    names_z: torch.Tensor | None
    metas: dict
    steps: dict


def _fit(method: str, t: _Tenant, rows: list[int], cfg, mt) -> tuple[dict, list[float]]:
    """Fast weights of one method fitted on the examples ``rows`` (label names included)."""
    if method in ("base", "no-meta"):
        data = _task(t.feats, t.y, rows, rows[:1], t.n_way, t.names)
        return adapt_task(t.top, t.metas[method], data, t.steps[method], cfg.max_loss, optimizer=mt.optimizer,
                          head=cfg.head, objective=mt.objective)
    idx = torch.tensor(rows, dtype=torch.long)
    z, y = t.frozen_z[idx], t.y[idx]
    if method == "logreg-names-frozen":   # without names (adapt.label_names off) plain logreg
        return frozen_names_head(z, y, t.names_z, t.n_way, mt.name_weight or 1.0), []
    if method == "logreg-frozen":
        return logreg_head(z, y, t.n_way), []
    return prototype_head(z, y, t.n_way, torch.tensor(math.log(10.0))), []


def _predict(method: str, t: _Tenant, params: dict, rows: list[int]) -> torch.Tensor:
    idx = torch.tensor(rows, dtype=torch.long)
    if method in ("base", "no-meta"):
        return predictions(t.top, params, t.feats.rows(idx))
    z = t.frozen_z[idx]
    return (z @ params["head.weight"].T + params["head.bias"]).argmax(1)


def paired_gain(hits: list[bool], others: list[bool]) -> dict:
    """Mean of ``hits - others`` over the same examples and its standard error."""
    n = len(hits)
    diffs = [float(a) - float(b) for a, b in zip(hits, others)]
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / max(n - 1, 1)
    return {"gain": mean, "se": math.sqrt(var / n)}


def _z(alternatives: int) -> float:
    """The one-sided normal quantile at 5% / ``alternatives`` (Bonferroni)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - 0.05 / max(1, alternatives))


def choose(correct: dict[str, list[bool]], default: str, margin: float,
           candidates: tuple[str, ...] | None = None) -> tuple[str, dict]:
    """The default method, unless another of ``candidates`` (default: every method scored) gains
    at least ``margin`` over it on the same examples and more than its noise (a one-sided 95% test
    of the paired differences, Bonferroni-corrected over the alternatives); then the one with the
    largest gain. Returns (method, {method: {"gain", "se"}}) for the record."""
    gains = {method: paired_gain(hits, correct[default]) for method, hits in correct.items()}
    others = [m for m in (candidates or tuple(correct)) if m != default and m in correct]
    z = _z(len(others))
    winners = [m for m in others if gains[m]["gain"] >= margin and gains[m]["gain"] > z * gains[m]["se"]]
    chosen = max(winners, key=lambda m: (gains[m]["gain"], -list(correct).index(m))) if winners else default
    return chosen, gains


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (Wilson 1927): honest at small n and at 0 or 1."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


Features = Callable[[list[str]], FeatureTable]   # texts -> their frozen lower-layer states


def _prepare(encoder: Encoder, settings: Settings, base_meta: dict, texts: list[str], labels: list[str],
             cache_dir, base_steps: int | None, features: Features | None = None) -> tuple[_Tenant, list[str]]:
    cfg, mt = settings.adapt, settings.meta_train
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    y = torch.tensor([index[label] for label in labels])
    adapted_layers, rank, token_rank = layout(base_meta)
    top = top_model(encoder, adapted_layers, rank, token_rank)
    frozen = frozen_layer_count(encoder, adapted_layers)
    features = features or (lambda some: lower_features(encoder, some, frozen, cache_dir))
    feats = features(texts)
    name_feats = features(names) if cfg.label_names else None
    no_meta = init_meta_params(top, mt.inner_lr, mt.seed, mt.head_lr, mt.name_weight if cfg.label_names else 0.0)
    frozen_z = baselines.frozen_embeddings(top, no_meta, feats)
    names_z = baselines.frozen_embeddings(top, no_meta, name_feats) if name_feats is not None else None
    t = _Tenant(top, feats, y, len(names), name_feats, frozen_z, names_z, {"base": base_meta, "no-meta": no_meta},
                {"base": cfg.inner_steps if base_steps is None else base_steps, "no-meta": cfg.inner_steps})
    return t, names


def _delta(params: dict) -> dict:
    return {k: v for k, v in params.items() if is_adapter(k) or k in HEAD}


def fit_fixed(encoder: Encoder, settings: Settings, base_meta: dict, texts: list[str], labels: list[str], method: str,
              cache_dir=None, base_steps: int | None = None, features: Features | None = None) -> tuple[list[str], dict]:
    """(labels, delta) of one fixed ``method`` fitted on all the examples: no measuring, no choice
    (the benchmark's and the evidence's fixed columns)."""
    t, names = _prepare(encoder, settings, base_meta, texts, labels, cache_dir, base_steps, features)
    try:
        params, _ = _fit(method, t, list(range(len(texts))), settings.adapt, settings.meta_train)
    except AdaptationDiverged as exc:
        raise AdaptationRejected(f"adaptation diverged: {exc}") from None
    return names, _delta(params)


def adapt_tenant(encoder: Encoder, settings: Settings, base_meta: dict, tenant: str, texts: list[str],
                 labels: list[str], cache_dir=None, base_steps: int | None = None,
                 default: str | None = None, features: Features | None = None) -> AdaptationResult:
    """Score every method by cross-validation over all of the tenant's examples, choose (``choose``),
    then fit the chosen method on all of them.

    ``base_steps``: the inner steps the base was trained for (its info's ``adapt_steps``: 0 for a
    pooled base); default ``adapt.inner_steps``. ``default``: the method kept unless another wins
    by the margin (default ``adapt.default_method``). ``features``: texts -> their frozen states, when
    the caller holds them already (the benchmark); default: encoded here, through the cache.

    Raises ``AdaptationRejected`` with the reason."""
    cfg, mt = settings.adapt, settings.meta_train
    default = default or cfg.default_method
    folds = cv_folds(labels, cfg.cv_folds, cfg.seed)
    t, names = _prepare(encoder, settings, base_meta, texts, labels, cache_dir, base_steps, features)
    y = t.y
    pred = {m: [0] * len(texts) for m in METHODS}
    started = time.perf_counter()
    try:
        for k in sorted(set(folds)):
            fit_rows = [i for i, f in enumerate(folds) if f != k]
            score_rows = [i for i, f in enumerate(folds) if f == k]
            for method in METHODS:
                params, _ = _fit(method, t, fit_rows, cfg, mt)
                for row, p in zip(score_rows, _predict(method, t, params, score_rows).tolist()):
                    pred[method][row] = p
        correct = {m: [p == int(truth) for p, truth in zip(pred[m], y.tolist())] for m in METHODS}
        chosen, gains = choose(correct, default, cfg.choice_margin, CANDIDATES)
        final, final_losses = _fit(chosen, t, list(range(len(texts))), cfg, mt)
    except AdaptationDiverged as exc:
        raise AdaptationRejected(f"adaptation diverged: {exc}") from None
    seconds = time.perf_counter() - started
    n = len(texts)
    accs = {m: sum(correct[m]) / n for m in METHODS}
    baseline_method = max(BASELINES, key=lambda m: (accs[m], -BASELINES.index(m)))
    behind = paired_gain(correct[baseline_method], correct[chosen])   # what the gate judges
    low, high = wilson(sum(correct[chosen]), n)
    metrics = {
        "query_accuracy": accs[chosen], "query_accuracy_ci95": [low, high],
        "base_accuracy": accs["base"], "no_meta_accuracy": accs["no-meta"],
        "prototype_accuracy": accs["prototypes-frozen"], "logreg_accuracy": accs["logreg-frozen"],
        "logreg_names_accuracy": accs["logreg-names-frozen"],
        # the approval gate's baseline: the best of what needs no trained base, on the same examples
        "baseline_accuracy": accs[baseline_method], "baseline_method": baseline_method,
        # the baseline's paired gain over what ships, on the same examples, and its standard error
        "baseline_gain": behind["gain"], "baseline_gain_se": behind["se"],
        "n_support": n - sum(1 for f in folds if f == 0), "n_query": n, "n_labels": len(names),
        "cv_folds": len(set(folds)), "adapt_seconds": seconds,
        "final_support_loss": final_losses[-1] if final_losses else None,
    }
    delta = _delta(final)
    adaptation = {"algorithm": f"{mt.optimizer}-inner-loop", "inner_steps": t.steps[chosen] if chosen in t.steps else 0,
                  "head": chosen, "default_method": default, "head_fit": cfg.head, "label_names": cfg.label_names,
                  "adapted_layers": t.top.n_layers, "lora_rank": t.top.rank, "token_rank": t.top.token_rank,
                  "cv_folds": len(set(folds)), "choice_margin": cfg.choice_margin, "seed": cfg.seed,
                  "measured_on": f"{len(set(folds))}-fold cross-validation over all examples",
                  "registered_on": "all data",
                  "accuracies": {m: round(a, 4) for m, a in accs.items()},
                  "gains_vs_default": {m: {k: round(v, 4) for k, v in g.items()} for m, g in gains.items()}}
    return AdaptationResult(tenant, names, delta, metrics, adaptation,
                            {"y_true": y.tolist(), "y_pred": pred[chosen], "rows": list(range(n)),
                             "texts": list(texts)})
