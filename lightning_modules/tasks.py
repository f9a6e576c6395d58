"""One task, end to end: build the losses, meta-learn on it, or adapt and score it.

Shared by the LightningModule, the tenant adaptation and the benchmark, so all three run the
same maths. A task's support set may end with its label names (``support_is_name``): texts like
any other, weighted by the meta-learned name weight.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lightning_modules import algorithms as alg
from lightning_modules.episodes import Task
from lightning_modules.features import FeatureTable
from lightning_modules.model import HEAD, TopModel, prototype_head, task_init

LOGREG_C = 10.0  # logistic regression's regularisation, for the delta's head and the frozen baseline alike


@dataclass
class TaskData:
    support: tuple[torch.Tensor, torch.Tensor]
    support_y: torch.Tensor
    query: tuple[torch.Tensor, torch.Tensor]
    query_y: torch.Tensor
    n_way: int
    support_is_name: torch.Tensor | None = None   # bool per support row; None: no label names

    @classmethod
    def from_task(cls, feats: FeatureTable, task: Task, names: FeatureTable | None = None) -> "TaskData":
        """Rows of ``feats``; with ``names`` (a table of label-name texts) and ``task.name_rows``,
        each class's label name joins its support set."""
        device = feats.states.device
        data = cls(feats.rows(task.support.to(device)), task.support_y.to(device),
                   feats.rows(task.query.to(device)), task.query_y.to(device), task.n_way)
        if names is not None and task.name_rows is not None:
            data = data.with_names(names.rows(task.name_rows.to(names.states.device)))
        return data

    def with_names(self, name_rows: tuple[torch.Tensor, torch.Tensor]) -> "TaskData":
        """This task with one label-name row per class (class i's name is row i) added to the support."""
        states, mask = name_rows
        both = FeatureTable.concat([FeatureTable(*self.support), FeatureTable(states.to(self.support[0].device),
                                                                              mask.to(self.support[1].device))])
        y = torch.cat([self.support_y, torch.arange(self.n_way, device=self.support_y.device)])
        flag = torch.cat([torch.zeros(len(self.support_y), dtype=torch.bool),
                          torch.ones(self.n_way, dtype=torch.bool)]).to(y.device)
        return TaskData((both.states, both.mask), y, self.query, self.query_y, self.n_way, flag)


def loss_fn(top: TopModel, data: tuple, y: torch.Tensor, weight: torch.Tensor | None = None):
    states, mask = data
    if weight is None:
        return lambda params: F.cross_entropy(top.logits(params, states, mask), y)
    w = weight.detach()
    return lambda params: (F.cross_entropy(top.logits(params, states, mask), y, reduction="none") * w).sum() / w.sum()


def meta_learn_task(top: TopModel, meta: dict, data: TaskData, algorithm: str, steps: int,
                    max_loss: float | None = None, optimizer: str = "sgd",
                    objective: str = "ce") -> tuple[torch.Tensor, float]:
    """Surrogate loss whose gradient w.r.t. ``meta`` is this task's meta-gradient, and the query loss."""
    init, lrs, weight = task_init(top, meta, *data.support, data.support_y, data.n_way, data.support_is_name)
    if objective == "contrastive":
        return _meta_learn_contrastive(top, meta, data, init, lrs, weight, algorithm, steps, max_loss, optimizer)
    support = loss_fn(top, data.support, data.support_y, weight)
    query = loss_fn(top, data.query, data.query_y)
    if algorithm == "fomaml":
        grad = alg.fomaml_meta_grad(support, query, init, lrs, steps, max_loss, optimizer=optimizer)
    elif algorithm == "maml":
        # second-order needs the double backward of attention, which only the math kernel has
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            grad = alg.maml_meta_grad(support, query, init, lrs, steps, max_loss)
    elif algorithm == "reptile":
        both = FeatureTable.concat([FeatureTable(*data.support), FeatureTable(*data.query)])
        task = loss_fn(top, (both.states, both.mask), torch.cat([data.support_y, data.query_y]),
                       torch.cat([weight, torch.ones(len(data.query_y), device=weight.device)]))
        grad = alg.reptile_meta_grad(task, init, lrs, steps, max_loss, optimizer=optimizer)
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    return alg.backprop_meta_grad(init, lrs, grad), grad.query_loss


def _meta_learn_contrastive(top: TopModel, meta: dict, data: TaskData, init: dict, lrs: dict, weight, algorithm: str,
                            steps: int, max_loss, optimizer: str) -> tuple[torch.Tensor, float]:
    """The contrastive inner loop meta-learned first-order: what is learned is the adapters'
    initialisation and per-tensor step sizes. FOMAML's outer loss is the query cross-entropy of
    the prototype head on the adapted support embeddings (label names included); Reptile moves the
    start toward the adapters after the contrastive loop on support and query together."""
    adapters = {k: v for k, v in init.items() if k not in HEAD}
    rates = {k: v for k, v in lrs.items() if k in adapters}
    if algorithm == "fomaml":
        scale = meta["log_scale"].detach()

        def query(params: dict) -> torch.Tensor:
            head = prototype_head(top.embed(params, *data.support), data.support_y, data.n_way, scale, weight.detach())
            return F.cross_entropy(top.logits({**params, **head}, *data.query), data.query_y)
        grad = alg.fomaml_meta_grad(contrastive_loss_fn(top, data.support, data.support_y), query, adapters, rates,
                                    steps, max_loss, optimizer=optimizer)
    elif algorithm == "reptile":
        both = FeatureTable.concat([FeatureTable(*data.support), FeatureTable(*data.query)])
        task = contrastive_loss_fn(top, (both.states, both.mask), torch.cat([data.support_y, data.query_y]))
        grad = alg.reptile_meta_grad(task, adapters, rates, steps, max_loss, optimizer=optimizer)
    else:
        raise ValueError(f"the contrastive objective is meta-learned first-order only, not {algorithm!r}")
    return alg.backprop_meta_grad(adapters, rates, grad), grad.query_loss


@torch.no_grad()
def embed(top: TopModel, params: dict, data: tuple, batch: int = 256) -> torch.Tensor:
    states, mask = data
    return torch.cat([top.embed(params, states[i:i + batch], mask[i:i + batch])
                      for i in range(0, len(states), batch)]) if len(states) else torch.zeros(0, top.hidden)


_BLAS: list = []


def one_blas_thread():
    """NumPy's BLAS limited to one thread for a small fit: on a small problem (a tenant's few dozen
    examples) its threads only contend with torch's and with each other (measured: 34 ms per
    logistic regression with the default threads, 6 ms with one; adapt_tenant fits about 20)."""
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def logreg_head(z: torch.Tensor, y: torch.Tensor, n_way: int, weight: torch.Tensor | None = None,
                c: float = LOGREG_C) -> dict:
    """A logistic-regression head on embeddings ``z`` as ``head.weight``/``head.bias`` of the model's
    linear head (softmax over its logits gives scikit-learn's probabilities)."""
    from sklearn.linear_model import LogisticRegression

    w = None if weight is None else weight.detach().cpu().double().numpy()
    with one_blas_thread():
        clf = LogisticRegression(max_iter=1000, C=c).fit(z.detach().cpu().double().numpy(), y.cpu().numpy(),
                                                         sample_weight=w)
    coef, bias = np.zeros((n_way, z.shape[1])), np.zeros(n_way)
    if len(clf.classes_) == 2:   # one row: sigmoid(w.x + b) == softmax([-w.x/2 - b/2, w.x/2 + b/2])
        for sign, c_ in zip((-0.5, 0.5), clf.classes_):
            coef[c_], bias[c_] = sign * clf.coef_[0], sign * clf.intercept_[0]
    else:
        coef[clf.classes_], bias[clf.classes_] = clf.coef_, clf.intercept_
    missing = sorted(set(range(n_way)) - set(clf.classes_.tolist()))
    bias[missing] = -1e4   # a class with no example can never win
    dev, dt = z.device, z.dtype
    return {"head.weight": torch.tensor(coef, dtype=dt, device=dev), "head.bias": torch.tensor(bias, dtype=dt, device=dev)}


def contrastive_loss_fn(top: TopModel, data: tuple, y: torch.Tensor):
    """SetFit's objective (Tunstall et al. 2022) on the adapted part: the cosine similarity of every
    pair of support rows (label names included) pushed to 1 for the same label and 0 otherwise,
    positive and negative pairs weighing the same. It shapes the embedding itself, not a head."""
    states, mask = data
    same = y[:, None] == y[None, :]
    pos = same & ~torch.eye(len(y), dtype=torch.bool, device=y.device)
    neg = ~same

    def loss(params):
        z = top.embed(params, states, mask)
        cos = z @ z.T
        out = (cos[neg] ** 2).mean() if neg.any() else cos.sum() * 0
        return (out + ((1 - cos[pos]) ** 2).mean()) if pos.any() else out
    return loss


def adapt_task(top: TopModel, meta: dict, data: TaskData, steps: int, max_loss: float | None = None,
               optimizer: str = "sgd", head: str = "inner", on_step=None, objective: str = "ce"):
    """Adapt from ``meta`` on the support set; returns (adapted fast weights, support losses).

    ``objective="ce"``: cross-entropy of the head over the adapted embeddings (adapters and head
    move); ``"contrastive"``: ``contrastive_loss_fn`` on the adapters alone (the head stays at its
    prototype start, so pair it with ``head="logreg"``). ``head="logreg"`` then replaces the inner
    loop's head by logistic regression on the adapted embeddings of the support set (label names
    included, with their weight): a second-stage head fit on what the adapters learned."""
    with torch.no_grad():
        init, lrs, weight = task_init(top, meta, *data.support, data.support_y, data.n_way, data.support_is_name)
    if objective == "contrastive":
        fixed = {k: v for k, v in init.items() if k in HEAD}
        adapters = {k: v for k, v in init.items() if k not in HEAD}
        step = (lambda k, p: on_step(k, {**p, **fixed})) if on_step is not None else None
        result = alg.adapt(contrastive_loss_fn(top, data.support, data.support_y), adapters, lrs, steps, max_loss,
                           optimizer=optimizer, on_step=step)
        result.params = {**result.params, **fixed}
    else:
        result = alg.adapt(loss_fn(top, data.support, data.support_y, weight), init, lrs, steps, max_loss,
                           optimizer=optimizer, on_step=on_step)
    params = result.params
    if head == "logreg":
        z = embed(top, params, data.support)
        params = {**{k: v for k, v in params.items() if k not in HEAD},
                  **logreg_head(z, data.support_y, data.n_way, weight)}
    return params, result.losses


def frozen_names_head(z: torch.Tensor, y: torch.Tensor, names_z: torch.Tensor | None, n_way: int,
                      name_weight: float) -> dict:
    """Logistic regression on frozen embeddings ``z`` with each label name (row i of ``names_z`` is
    class i's) as one more example of weight ``name_weight``: the strongest head that needs no
    meta-learning. Without names it is plain logistic regression."""
    if names_z is None:
        return logreg_head(z, y, n_way)
    n = len(names_z)
    weight = torch.cat([torch.ones(len(y)), torch.full((n,), float(name_weight))])
    return logreg_head(torch.cat([z, names_z]), torch.cat([y, torch.arange(n)]), n_way, weight)


@torch.no_grad()
def predictions(top: TopModel, params: dict, data: tuple) -> torch.Tensor:
    states, mask = data
    return torch.cat([top.logits(params, states[i:i + 256], mask[i:i + 256]).argmax(1)
                      for i in range(0, len(states), 256)]) if len(states) else torch.zeros(0, dtype=torch.long)


def accuracy(top: TopModel, params: dict, data: tuple, y: torch.Tensor) -> float:
    return (predictions(top, params, data) == y).float().mean().item()


def evaluate_task(top: TopModel, meta: dict, data: TaskData, steps: int, optimizer: str = "sgd",
                  head: str = "inner", objective: str = "ce") -> float:
    params, _ = adapt_task(top, meta, data, steps, optimizer=optimizer, head=head, objective=objective)
    return accuracy(top, params, data.query, data.query_y)
