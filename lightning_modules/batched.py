"""Adapt many tenants at once: the same inner loop as ``tasks.adapt_task``, vectorised over tenants.

Tenants differ in label count and support size, so they are padded to common shapes: padded support
rows copy a real row and weigh 0 in the loss, padded classes get ``-inf`` logits (so their head rows
get no gradient and stay zero). Label names weigh the meta-learned name weight, as in
``model.task_init``. Adapters start from the meta-parameters, heads from each tenant's prototypes;
the gradients use ``torch.func.vmap(torch.func.grad_and_value(loss))`` over the tenant dimension;
the update (SGD, or Adam's direction, which is elementwise and so batches as it is) is scaled by the
per-tensor inner learning rates of ``meta["log_lr.*"]``. A logistic-regression head
(``head="logreg"``) is then fitted per tenant on its adapted embeddings. The point is the GPU: a
per-tenant loop there is bound by kernel launches and host syncs, one batched step is not
(``python -m benchmarks.gpu`` measures both on the same tenants).

Attention runs through PyTorch's math SDPA kernel here: it decomposes into matmul/softmax, which vmap
batches; under vmap the fused CPU kernel has no batching rule (PyTorch warns and loops per tenant).

References: Horace He, Richard Zou, functorch (2021), ``vmap`` and ``grad`` composable transforms;
Finn et al. 2017 (MAML) and Triantafillou et al. 2020 (Proto-MAML) for the maths being batched.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import grad_and_value, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from lightning_modules.algorithms import AdaptationDiverged, AdamDirection
from lightning_modules.model import HEAD, NAME_WEIGHT, TopModel, split_meta
from lightning_modules.tasks import TaskData, embed, logreg_head


@dataclass
class PaddedSupport:
    """Support sets of B tenants padded to N rows, C classes and T tokens."""

    states: torch.Tensor   # [B, N, T, H], the cache's dtype
    mask: torch.Tensor     # [B, N, T] bool
    y: torch.Tensor        # [B, N] long; padded rows point at class 0 (weight 0)
    weight: torch.Tensor   # [B, N] float: 1 real row, 0 padding
    is_name: torch.Tensor  # [B, N] bool: a label-name row
    classes: torch.Tensor  # [B, C] bool: real classes
    n_way: list[int]


def pad_support(tasks: list[TaskData], device) -> PaddedSupport:
    """Stack the tenants' support sets; padded rows repeat the tenant's first row (weight 0), so
    no row is fully masked (attention over no tokens would be NaN, and 0 * NaN is NaN)."""
    n = max(len(t.support_y) for t in tasks)
    c = max(t.n_way for t in tasks)
    width = max(int(t.support[1].sum(1).max()) for t in tasks)  # tokens of the longest real text
    states, masks, ys, weights, names, classes = [], [], [], [], [], []
    for t in tasks:
        s, m, y = t.support[0][:, :width], t.support[1][:, :width], t.support_y
        s = F.pad(s, (0, 0, 0, width - s.shape[1]))
        m = F.pad(m, (0, width - m.shape[1]))
        fill = n - len(y)
        states.append(torch.cat([s, s[:1].expand(fill, -1, -1)]))
        masks.append(torch.cat([m, m[:1].expand(fill, -1)]))
        ys.append(torch.cat([y, y.new_zeros(fill)]))
        weights.append(torch.cat([torch.ones(len(y)), torch.zeros(fill)]))
        flag = t.support_is_name.cpu() if t.support_is_name is not None else torch.zeros(len(y), dtype=torch.bool)
        names.append(torch.cat([flag, torch.zeros(fill, dtype=torch.bool)]))
        classes.append(torch.arange(c) < t.n_way)
    on = lambda xs: torch.stack([x.to(device) for x in xs])
    return PaddedSupport(on(states), on(masks), on(ys), on(weights), on(names), on(classes), [t.n_way for t in tasks])


def _embed(top: TopModel, params: dict, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``TopModel.embed`` without its data-dependent crop (``.item()`` cannot run under vmap);
    the caller crops once for the whole batch, and masked tokens change nothing."""
    h = states.float()
    for i in range(top.n_layers):
        h = top._layer(h, mask, params, i)
    weights = mask.unsqueeze(-1).float()
    pooled = (h * weights).sum(-2) / weights.sum(-2).clamp_min(1.0)
    return F.normalize(pooled, dim=-1)


def _prototype_heads(z: torch.Tensor, batch: PaddedSupport, log_scale: torch.Tensor, weight: torch.Tensor) -> dict:
    """``model.prototype_head`` for every tenant at once (one-hot sums instead of index_add);
    padded classes have no rows, so their prototype, weight and bias are zero."""
    onehot = F.one_hot(batch.y, batch.classes.shape[1]).to(z.dtype) * weight.unsqueeze(-1).to(z.dtype)
    protos = onehot.transpose(1, 2) @ z / onehot.sum(1).clamp_min(1e-6).unsqueeze(-1)
    scale = log_scale.exp()
    return {"head.weight": 2 * scale * protos, "head.bias": -scale * (protos ** 2).sum(-1)}


def _support_loss(top: TopModel):
    def loss(params, states, mask, y, weight, classes):
        logits = F.linear(_embed(top, params, states, mask), params["head.weight"], params["head.bias"])
        logits = logits.masked_fill(~classes, -math.inf)
        return (F.cross_entropy(logits, y, reduction="none") * weight).sum() / weight.sum()
    return loss


def _weights(meta: dict, batch: PaddedSupport) -> torch.Tensor:
    """Each row's weight in the loss and the prototypes: 0 padding, 1 example, the name weight for a name."""
    if NAME_WEIGHT not in meta:
        return batch.weight
    name_w = meta[NAME_WEIGHT].detach().exp().to(batch.weight.dtype)
    return torch.where(batch.is_name, batch.weight * name_w, batch.weight)


@torch.no_grad()
def adapt_stacked(top: TopModel, meta: dict, batch: PaddedSupport, steps: int,
                  optimizer: str = "sgd") -> tuple[dict, torch.Tensor]:
    """The inner loop for a padded batch: stacked fast weights ``{name: [B, ...]}`` and the
    support losses ``[steps, B]`` (kept on the device: no host sync per step)."""
    fast, lrs = split_meta({k: v.detach() for k, v in meta.items()})
    b, n = batch.y.shape
    weight = _weights(meta, batch)
    with sdpa_kernel(SDPBackend.MATH):
        # adapters are shared at the start, so one unbatched pass embeds every support row
        z = _embed(top, fast, batch.states.flatten(0, 1), batch.mask.flatten(0, 1)).view(b, n, -1)
        params = {k: v.expand(b, *v.shape).clone() for k, v in fast.items()}
        params.update(_prototype_heads(z, batch, meta["log_scale"].detach(), weight))
        step = vmap(grad_and_value(_support_loss(top)))
        adam = AdamDirection() if optimizer == "adam" else None
        losses = []
        for _ in range(steps):  # torch.func.grad ignores the outer no_grad, as it should
            grads, loss = step(params, batch.states, batch.mask, batch.y, weight, batch.classes)
            direction = adam.direction(grads) if adam is not None else grads
            params = {k: params[k] - lrs[k] * direction[k] for k in params}
            losses.append(loss)
    return params, torch.stack(losses) if losses else torch.zeros(0, b, device=batch.y.device)


def _check(losses: torch.Tensor, members: list[int], max_loss: float | None) -> None:
    bad = ~torch.isfinite(losses)
    if max_loss is not None:
        bad |= losses > max_loss
    if bad.any():  # one host sync per chunk, not one per step
        step, j = (int(i) for i in bad.nonzero()[0])
        raise AdaptationDiverged(f"tenant {members[j]}: inner loss {float(losses[step, j]):.4g} "
                                 f"at step {step} (limit {max_loss})")


def adapt_many(top: TopModel, meta: dict, tasks: list[TaskData], steps: int, max_loss: float | None = None,
               chunk: int = 256, optimizer: str = "sgd", head: str = "inner") -> list[dict]:
    """Adapt every task from ``meta`` on its support set, ``chunk`` tenants per vectorised batch.

    Returns one dict of adapted fast weights per task, equal (to float rounding) to what
    ``tasks.adapt_task`` returns for it with the same ``optimizer`` and ``head``, on ``top``'s device. Raises ``AdaptationDiverged`` naming
    the first tenant whose loss is non-finite or above ``max_loss``.
    """
    device = next(iter(top.frozen.values())).device
    # similar sizes share a chunk, so little is padded; results go back in the callers' order
    order = sorted(range(len(tasks)), key=lambda i: (len(tasks[i].support_y), tasks[i].n_way))
    out: list[dict | None] = [None] * len(tasks)
    for start in range(0, len(order), chunk):
        members = order[start:start + chunk]
        batch = pad_support([tasks[i] for i in members], device)
        params, losses = adapt_stacked(top, meta, batch, steps, optimizer)
        _check(losses, members, max_loss)
        weight = _weights(meta, batch)
        for j, (i, n_way) in enumerate(zip(members, batch.n_way)):
            out[i] = {k: (v[j, :n_way] if k.startswith("head.") else v[j]).clone() for k, v in params.items()}
            if head == "logreg":
                t, rows = tasks[i], len(tasks[i].support_y)
                z = embed(top, out[i], tuple(x.to(device) for x in t.support))
                out[i] = {**{k: v for k, v in out[i].items() if k not in HEAD},
                          **logreg_head(z, t.support_y.to(device), n_way, weight[j, :rows])}
    return out
