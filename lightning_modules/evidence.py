"""A workspace's own evidence that training the base paid: tenants held out of training (never
trained on, nor used to stop early) are adapted as new tenants would be, from the new base, the
current base and the start without a trained base, and scored beside logistic regression with
label names on the frozen encoder, on the same few-shot splits (paired).

Each held-out tenant gives ``episodes`` splits: ``shots`` examples per label to adapt on (what a new
tenant arrives with), up to ``query`` other examples per label to score. An episode is the unit of
the interval (texts of one episode are not independent draws): a paired difference is the mean
over episodes of the accuracy difference, with a t-interval over episodes.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from lightning_modules.adaptation import AdaptationRejected, adapt_tenant, fit_fixed
from lightning_modules.encoder import Encoder, frozen_layer_count
from lightning_modules.features import lower_features
from lightning_modules.model import init_meta_params, layout, top_model
from lightning_modules.tasks import predictions
from workspace.settings import Settings

TenantData = dict[str, tuple[list[str], list[str]]]
# 97.5% quantiles of Student's t for df 1..30 (then the normal's 1.96)
_T975 = (12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13, 2.12, 2.11,
         2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05, 2.04)


def t975(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


def mean_ci(values: list[float]) -> dict:
    """Mean and the half-width of its 95% t-interval (None for fewer than 2 values)."""
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    if n < 2:
        return {"mean": mean, "ci95": None, "n": n}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"mean": mean, "ci95": t975(n - 1) * sd / math.sqrt(n), "n": n}


@dataclass(frozen=True)
class Split:
    tenant: str
    support: list[int]
    query: list[int]


def splits(tenants: TenantData, shots: int, query: int, episodes: int, seed: int) -> list[Split]:
    """Seeded few-shot splits of each tenant: ``shots`` per label to adapt on, up to ``query`` per
    label to score; labels with fewer than ``shots + 1`` examples are left out of that tenant's
    splits, and a tenant left with fewer than 2 labels gives none."""
    out = []
    for tenant in sorted(tenants):
        _, labels = tenants[tenant]
        by_label: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            by_label.setdefault(label, []).append(i)
        usable = sorted(label for label, rows in by_label.items() if len(rows) > shots)
        if len(usable) < 2:
            continue
        rng = random.Random(f"{seed}:{tenant}:evidence")
        for _ in range(episodes):
            support, scored = [], []
            for label in usable:
                rows = rng.sample(by_label[label], len(by_label[label]))
                support += rows[:shots]
                scored += rows[shots:shots + query]
            out.append(Split(tenant, sorted(support), sorted(scored)))
    return out


def _accuracy(encoder: Encoder, delta: dict, labels: list[str], texts: list[str], truth: list[str], cache_dir) -> float:
    layers, rank, token_rank = layout(delta)
    top = top_model(encoder, layers, rank, token_rank)
    feats = lower_features(encoder, texts, frozen_layer_count(encoder, layers), cache_dir)
    pred = predictions(top, delta, (feats.states, feats.mask)).tolist()
    return sum(labels[p] == t for p, t in zip(pred, truth)) / len(truth)


def gather(encoder: Encoder, settings: Settings, tenants: TenantData, bases: dict[str, tuple[dict, int] | None],
           cache_dir=None, episodes: int | None = None, deadline: float | None = None) -> dict:
    """Per method, the accuracy of each split; ``bases``: name -> (meta-parameters, inner steps) or
    None when there is none (no current base). Methods: each base through ``adapt_tenant`` (what a
    tenant gets, its per-tenant choice included), ``no_meta`` (the same adaptation from the start
    without a trained base, fixed) and ``frozen_names`` (logistic regression with label names on the
    frozen encoder, fixed). Past ``deadline`` (``time.monotonic()``) no new split starts, and a split
    the deadline overtakes between its methods is dropped (a row needs every method to be paired)."""
    import time

    cfg = settings.meta_train
    plan = splits(tenants, cfg.shots, cfg.query * 2, episodes or cfg.evidence_episodes, cfg.seed + 7)
    present = {name: b for name, b in bases.items() if b is not None}
    any_meta = next(iter(present.values()))[0]
    top = top_model(encoder, *layout(any_meta))
    start = init_meta_params(top, cfg.inner_lr, cfg.seed, cfg.head_lr, cfg.name_weight)
    methods = {**{name: (meta, steps, "base") for name, (meta, steps) in present.items()},
               "no_meta": (start, None, "no-meta"), "frozen_names": (start, None, "logreg-names-frozen")}
    rows: list[dict] = []
    longest = 0.0   # no split starts that the time left would not see to its end
    for split in plan:
        if deadline is not None and time.monotonic() + longest > deadline:
            break
        began = time.monotonic()
        texts, labels = tenants[split.tenant]
        s_texts, s_labels = [texts[i] for i in split.support], [labels[i] for i in split.support]
        q_texts, q_labels = [texts[i] for i in split.query], [labels[i] for i in split.query]
        row = {"tenant": split.tenant, "n_query": len(q_texts)}
        for name, (meta, steps, method) in methods.items():
            if deadline is not None and time.monotonic() > deadline:
                return {"rows": rows, "methods": list(methods)}
            try:
                if method == "base":
                    result = adapt_tenant(encoder, settings, meta, split.tenant, s_texts, s_labels, cache_dir,
                                          base_steps=steps)
                    names, delta = result.labels, result.delta
                else:
                    names, delta = fit_fixed(encoder, settings, meta, s_texts, s_labels, method, cache_dir, steps)
            except AdaptationRejected:
                row[name] = 1.0 / len(set(s_labels))   # a rejected adaptation serves nothing better than chance
                continue
            row[name] = _accuracy(encoder, delta, names, q_texts, q_labels, cache_dir)
        rows.append(row)
        longest = max(longest, time.monotonic() - began)
    return {"rows": rows, "methods": list(methods)}


def summarise(gathered: dict, tenants: list[str], reference: str = "new_base") -> dict:
    """Mean accuracy per method and paired differences ``reference - other``, each with n (splits)
    and a 95% interval; the numbers a reviewer and ``tailor meta-train --json`` see."""
    rows = gathered["rows"]
    methods = gathered["methods"]
    out = {"held_out_tenants": sorted(tenants), "n_tenants": len({r["tenant"] for r in rows}), "n_splits": len(rows),
           "n_queries": sum(r["n_query"] for r in rows), "accuracy": {}, "paired": {}}
    if not rows:
        return out
    for m in methods:
        out["accuracy"][m] = mean_ci([r[m] for r in rows])
    for m in methods:
        if m != reference:
            out["paired"][f"{reference}-{m}"] = mean_ci([r[reference] - r[m] for r in rows])
    return out
