"""One task, end to end: build the losses, meta-learn on it, or adapt and score it.

Shared by the LightningModule, the tenant adaptation and the benchmark, so all three run the
same maths.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lightning_modules import algorithms as alg
from lightning_modules.episodes import Task
from lightning_modules.features import FeatureTable
from lightning_modules.model import TopModel, task_init


@dataclass
class TaskData:
    support: tuple[torch.Tensor, torch.Tensor]
    support_y: torch.Tensor
    query: tuple[torch.Tensor, torch.Tensor]
    query_y: torch.Tensor
    n_way: int

    @classmethod
    def from_task(cls, feats: FeatureTable, task: Task) -> "TaskData":
        device = feats.states.device
        return cls(feats.rows(task.support.to(device)), task.support_y.to(device),
                   feats.rows(task.query.to(device)), task.query_y.to(device), task.n_way)


def loss_fn(top: TopModel, data: tuple, y: torch.Tensor):
    states, mask = data
    return lambda params: F.cross_entropy(top.logits(params, states, mask), y)


def meta_learn_task(top: TopModel, meta: dict, data: TaskData, algorithm: str, steps: int,
                    max_loss: float | None = None) -> tuple[torch.Tensor, float]:
    """Surrogate loss whose gradient w.r.t. ``meta`` is this task's meta-gradient, and the query loss."""
    init, lrs = task_init(top, meta, *data.support, data.support_y, data.n_way)
    support = loss_fn(top, data.support, data.support_y)
    query = loss_fn(top, data.query, data.query_y)
    if algorithm == "fomaml":
        grad = alg.fomaml_meta_grad(support, query, init, lrs, steps, max_loss)
    elif algorithm == "maml":
        # second-order needs the double backward of attention, which only the math kernel has
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            grad = alg.maml_meta_grad(support, query, init, lrs, steps, max_loss)
    elif algorithm == "reptile":
        # .float(): the cache is float16, and cat under bf16 autocast refuses mixed inputs
        both = (torch.cat([data.support[0].float(), data.query[0].float()]),
                torch.cat([data.support[1], data.query[1]]))
        task = loss_fn(top, both, torch.cat([data.support_y, data.query_y]))
        grad = alg.reptile_meta_grad(task, init, lrs, steps, max_loss)
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    return alg.backprop_meta_grad(init, lrs, grad), grad.query_loss


def adapt_task(top: TopModel, meta: dict, data: TaskData, steps: int, max_loss: float | None = None):
    """Adapt from ``meta`` on the support set; returns (adapted fast weights, support losses)."""
    with torch.no_grad():
        init, lrs = task_init(top, meta, *data.support, data.support_y, data.n_way)
    result = alg.adapt(loss_fn(top, data.support, data.support_y), init, lrs, steps, max_loss)
    return result.params, result.losses


@torch.no_grad()
def accuracy(top: TopModel, params: dict, data: tuple, y: torch.Tensor) -> float:
    return (top.logits(params, *data).argmax(1) == y).float().mean().item()


def evaluate_task(top: TopModel, meta: dict, data: TaskData, steps: int) -> float:
    params, _ = adapt_task(top, meta, data, steps)
    return accuracy(top, params, data.query, data.query_y)
