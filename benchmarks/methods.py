"""Score one evaluation episode with each method, using the product's own functions.

Frozen-encoder baselines come from ``lightning_modules.baselines``; adapted methods run the
product's adaptation (``task_init`` + ``algorithms.adapt``, exactly what ``tasks.adapt_task`` does)
and are scored after 1, 2, 4, ... inner steps by continuing the same SGD run: plain SGD keeps no
state, so the score at step 8 equals ``evaluate_task(..., steps=8)`` (a unit test checks this).
"""
from __future__ import annotations

import time

import torch

from lightning_modules import algorithms as alg
from lightning_modules import baselines
from lightning_modules.episodes import Task
from lightning_modules.features import FeatureTable
from lightning_modules.model import TopModel, task_init
from lightning_modules.tasks import TaskData, accuracy, loss_fn



def frozen_scores(z: torch.Tensor, task: Task) -> dict[str, float]:
    """Prototype and logistic-regression accuracy on frozen embeddings ``z`` of the eval table."""
    rows = torch.cat([task.support, task.query])
    y = torch.cat([task.support_y, task.query_y])
    support, query = list(range(len(task.support))), list(range(len(task.support), len(rows)))
    zt = z[rows]
    return {"prototypes": baselines.prototype_accuracy(zt, y, support, query),
            "logreg": baselines.logreg_accuracy(zt, y, support, query)}


def adapted_scores(top: TopModel, meta: dict, feats: FeatureTable, task: Task, checkpoints: tuple[int, ...],
                   timed_steps: int, max_loss: float | None) -> tuple[dict[int, float], float | None, bool]:
    """Query accuracy after each number of inner steps in ``checkpoints`` (ascending), the seconds
    the adaptation took up to ``timed_steps`` (scoring excluded), and whether it diverged (then
    every later checkpoint scores chance, as a rejected adaptation serves nothing better)."""
    data = TaskData.from_task(feats, task)
    start = time.perf_counter()
    with torch.no_grad():
        params, lrs = task_init(top, meta, *data.support, data.support_y, data.n_way)
    support_loss = loss_fn(top, data.support, data.support_y)
    spent, done, seconds, scores = time.perf_counter() - start, 0, None, {}
    for step in checkpoints:
        start = time.perf_counter()
        try:
            params = alg.adapt(support_loss, params, lrs, step - done, max_loss).params
        except alg.AdaptationDiverged:
            return {**scores, **{c: 1.0 / data.n_way for c in checkpoints if c not in scores}}, seconds, True
        spent += time.perf_counter() - start
        done = step
        if step == timed_steps:
            seconds = spent
        scores[step] = accuracy(top, params, data.query, data.query_y)
    return scores, seconds, False
