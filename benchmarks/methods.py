"""Score one evaluation episode with each method, through the product's own functions.

Frozen-encoder baselines come from ``lightning_modules.baselines`` (they see no label names), plus
logistic regression with each label name as one more example (``tasks.logreg_head``, the weight
the product gives a name): what names alone give. Adapted methods run the product's
``tasks.adapt_task`` once up to the largest step count asked for and are scored on the way
(``on_step``); with the product's logistic-regression head it is re-fitted on the adapted support
embeddings at each scored step, exactly as ``adapt_task`` fits it at its end, so the score after k
steps equals ``tasks.evaluate_task(..., steps=k)`` (a unit test checks this).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lightning_modules import baselines
from lightning_modules.algorithms import AdaptationDiverged
from lightning_modules.episodes import Task
from lightning_modules.model import HEAD, TopModel, example_weights, task_init
from lightning_modules.tasks import (TaskData, accuracy, adapt_task, embed, frozen_names_head, logreg_head, loss_fn,
                                     predictions)


def frozen_scores(z: torch.Tensor, names_z: torch.Tensor, task: Task, name_weight: float) -> dict[str, float]:
    """Prototypes and logistic regression on frozen embeddings ``z`` of the episode's table, and
    logistic regression with the label names (rows of ``names_z``) as weighted extra examples."""
    rows = torch.cat([task.support, task.query])
    y = torch.cat([task.support_y, task.query_y])
    support, query = list(range(len(task.support))), list(range(len(task.support), len(rows)))
    zt = z[rows]
    out = {"prototypes": baselines.prototype_accuracy(zt, y, support, query),
           "logreg": baselines.logreg_accuracy(zt, y, support, query)}
    if task.name_rows is not None:
        head = frozen_names_head(z[task.support], task.support_y, names_z[task.name_rows], task.n_way, name_weight)
        pred = F.linear(z[task.query], head["head.weight"], head["head.bias"]).argmax(1)
        out["logreg+names"] = (pred == task.query_y).float().mean().item()
    return out


def _head_fit(top: TopModel, meta: dict, data: TaskData, head: str):
    """The function ``adapt_task`` applies to the inner loop's parameters at its end."""
    if head != "logreg":
        return lambda params: params
    weight = example_weights(meta, data.support_is_name, len(data.support_y), data.support_y.device)

    def fit(params: dict) -> dict:
        z = embed(top, params, data.support)
        return {**{k: v for k, v in params.items() if k not in HEAD},
                **logreg_head(z, data.support_y, data.n_way, weight)}
    return fit


def adapted_scores(top: TopModel, meta: dict, data: TaskData, marks: tuple[int, ...], optimizer: str,
                   head: str, max_loss: float | None) -> tuple[dict[int, float], bool]:
    """Query accuracy after each step count in ``marks``, from one run of the product's inner loop,
    and whether it diverged (then the rest score chance: a rejected adaptation serves nothing better)."""
    fit, scores = _head_fit(top, meta, data, head), {}

    def on_step(k: int, params: dict) -> None:
        if k in marks:
            scores[k] = accuracy(top, fit({n: v.detach() for n, v in params.items()}), data.query, data.query_y)

    try:
        adapt_task(top, meta, data, max(marks), max_loss, optimizer=optimizer, head="inner", on_step=on_step)
    except AdaptationDiverged:
        return {**scores, **{k: 1.0 / data.n_way for k in marks if k not in scores}}, True
    return scores, False


def _grad_norms(top: TopModel, params: dict, data: TaskData, weight) -> tuple[float, float, float]:
    """(support loss, gradient norm of the adapters, of the head) at ``params``."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    loss = loss_fn(top, data.support, data.support_y, weight)(leaves)
    grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
    norm = lambda keys: float(torch.sqrt(sum((grads[k] ** 2).sum() for k in keys)))  # noqa: E731
    return float(loss.detach()), norm([k for k in grads if k not in HEAD]), norm([k for k in grads if k in HEAD])


def inner_loop_trace(top: TopModel, meta: dict, data: TaskData, steps: int, optimizer: str, head: str,
                     max_loss: float | None) -> list[dict]:
    """Per inner step k = 0..steps of one adaptation: support loss and gradient norms at the
    parameters after k steps, the share of query predictions (of the head ``adapt_task`` returns)
    that differ from step 0's, and query accuracy. Why an inner loop does or does not move."""
    with torch.no_grad():
        init, _, weight = task_init(top, meta, *data.support, data.support_y, data.n_way, data.support_is_name)
    states = {0: {k: v.detach() for k, v in init.items()}}

    def keep(k: int, params: dict) -> None:
        states[k] = {n: v.detach().clone() for n, v in params.items()}

    try:
        adapt_task(top, meta, data, steps, max_loss, optimizer=optimizer, head="inner", on_step=keep)
    except AdaptationDiverged:
        pass  # the trace stops where the loop stopped
    fit, rows, first = _head_fit(top, meta, data, head), [], None
    for k, params in sorted(states.items()):
        loss, g_adapters, g_head = _grad_norms(top, params, data, weight)
        pred = predictions(top, fit(params), data.query)
        first = pred if first is None else first
        rows.append({"step": k, "loss": loss, "grad_adapters": g_adapters, "grad_head": g_head,
                     "changed": float((pred != first).float().mean()),
                     "acc": float((pred == data.query_y).float().mean())})
    return rows
