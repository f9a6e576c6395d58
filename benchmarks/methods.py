"""Score one evaluation episode with every method, through the product's own functions, on the
same support and query texts (paired).

Frozen-encoder heads: prototypes, logistic regression, and logistic regression with each label name
as one more example (``tasks.frozen_names_head``, the weight the product gives a name). Adapted:
``tasks.adapt_task`` from the start without a trained base, and from each base with the inner steps
it was trained for. ``tailor``: ``adaptation.adapt_tenant`` from the default base, the per-tenant
choice by cross-validation included: what a new tenant of the product gets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lightning_modules import baselines
from lightning_modules.adaptation import AdaptationRejected, adapt_tenant, fit_fixed
from lightning_modules.algorithms import AdaptationDiverged
from lightning_modules.features import FeatureTable
from lightning_modules.tasks import TaskData, accuracy, adapt_task, frozen_names_head, predictions

FROZEN = ("prototypes", "logreg", "logreg+names")


def _rows(state, texts: list[str]) -> torch.Tensor:
    return torch.tensor([state["row"][t] for t in texts], dtype=torch.long)


def features_of(state):
    """texts -> their rows of the state's tables (texts of the source, or category names)."""
    def look(texts: list[str]) -> FeatureTable:
        if all(t in state["row"] for t in texts):
            return FeatureTable(*state["feats"].rows(_rows(state, texts)))
        idx = torch.tensor([state["name_row"][t] for t in texts], dtype=torch.long)
        return FeatureTable(*state["names"].rows(idx))
    return look


def frozen_scores(state, s_rows, s_y, q_rows, q_y, names: list[str], name_weight: float) -> dict[str, float]:
    z = state["z"]
    y = torch.tensor(s_y)
    qy = torch.tensor(q_y)
    rows = torch.cat([s_rows, q_rows])
    support, query = list(range(len(s_rows))), list(range(len(s_rows), len(rows)))
    both = torch.cat([y, qy])
    out = {"prototypes": baselines.prototype_accuracy(z[rows], both, support, query),
           "logreg": baselines.logreg_accuracy(z[rows], both, support, query)}
    names_z = state["names_z"][torch.tensor([state["name_row"][n] for n in names], dtype=torch.long)]
    head = frozen_names_head(z[s_rows], y, names_z, len(names), name_weight)
    pred = F.linear(z[q_rows], head["head.weight"], head["head.bias"]).argmax(1)
    out["logreg+names"] = (pred == qy).float().mean().item()
    return out


def _adapted(top, meta, data: TaskData, steps: int, settings) -> float:
    mt = settings.meta_train
    try:
        params, _ = adapt_task(top, meta, data, steps, settings.adapt.max_loss, optimizer=mt.optimizer,
                               head=settings.adapt.head, objective=mt.objective)
    except AdaptationDiverged:
        return 1.0 / data.n_way   # a rejected adaptation serves nothing better than chance
    return accuracy(top, params, data.query, data.query_y)


def _tailor(settings, state, bases, default: str, s_texts, s_y, q_texts, q_y, names) -> dict:
    """The product's adapt_tenant from the default base, scored on the query through its delta."""
    from benchmarks.jobs import encoder

    enc, _, _ = encoder(settings)
    meta, steps = bases[default]
    labels = [names[y] for y in s_y]
    per_label = min(s_y.count(k) for k in set(s_y))
    look = features_of(state)
    try:
        if per_label >= 2:
            result = adapt_tenant(enc, settings, meta, "bench", s_texts, labels, base_steps=steps, features=look)
            order, delta = result.labels, result.delta
            chosen, cv = result.adaptation["head"], result.metrics["query_accuracy"]
        else:   # one example per label: nothing to cross-validate, the default method alone
            chosen, cv = settings.adapt.default_method, None
            order, delta = fit_fixed(enc, settings, meta, s_texts, labels, chosen, base_steps=steps, features=look)
    except AdaptationRejected:
        return {"acc": 1.0 / len(names), "chosen": "rejected"}
    from lightning_modules.model import layout, top_model

    top = top_model(enc, *layout(delta))
    pred = predictions(top, delta, look(q_texts).rows(torch.arange(len(q_texts)))).tolist()
    acc = sum(order[p] == names[y] for p, y in zip(pred, q_y)) / len(q_y)
    return {"acc": acc, "chosen": chosen, "cv_acc": cv}


def score_episode(settings, state, s_texts, s_y, q_texts, q_y, names, bases: dict, default: str) -> dict[str, dict]:
    """method -> {"acc": ...} on one episode (``bases``: algorithm -> (meta, inner steps) or absent)."""
    from benchmarks.jobs import no_meta

    top, mt = state["top"], settings.meta_train
    s_rows, q_rows = _rows(state, s_texts), _rows(state, q_texts)
    out = {m: {"acc": a} for m, a in frozen_scores(state, s_rows, s_y, q_rows, q_y, names,
                                                     mt.name_weight or 1.0).items()}
    feats = state["feats"]
    data = TaskData(feats.rows(s_rows), torch.tensor(s_y), feats.rows(q_rows), torch.tensor(q_y), len(names))
    if settings.adapt.label_names:
        idx = torch.tensor([state["name_row"][n] for n in names], dtype=torch.long)
        data = data.with_names(state["names"].rows(idx))
    out["no-meta"] = {"acc": _adapted(top, no_meta(settings, top), data, settings.adapt.inner_steps, settings)}
    for algorithm, (meta, steps) in bases.items():
        out[algorithm] = {"acc": _adapted(top, meta, data, settings.adapt.inner_steps if steps is None else steps,
                                          settings)}
    if default in bases:
        out["tailor"] = _tailor(settings, state, bases, default, s_texts, s_y, q_texts, q_y, names)
    return out
