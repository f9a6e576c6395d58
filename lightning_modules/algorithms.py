"""First-order meta-learning as pure functions over parameter dicts, testable without Lightning.

``init`` maps names to tensors that may depend (with autograd) on the meta-parameters: the
meta-gradient with respect to ``init`` is returned, and the caller back-propagates it into the
meta-parameters, so "first order" means: the inner loop is not differentiated, the initialisation is.

References:
  Finn, Abbeel, Levine 2017, Model-Agnostic Meta-Learning (MAML; FOMAML is its first-order case).
  Nichol, Achiam, Schulman 2018, On First-Order Meta-Learning Algorithms (Reptile).
  Li, Zhou, Chen, Li 2017, Meta-SGD (per-parameter inner learning rates).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params], torch.Tensor]


class AdaptationDiverged(RuntimeError):
    """The inner loop produced a non-finite or exploding loss; nothing adapted may be used."""


@dataclass
class InnerResult:
    params: Params
    losses: list[float] = field(default_factory=list)
    grads: list[Params] = field(default_factory=list)  # per step, detached


def _leaves(params: Params) -> Params:
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


def _check(loss: torch.Tensor, step: int, max_loss: float | None) -> None:
    value = float(loss.detach())
    if not math.isfinite(value) or (max_loss is not None and value > max_loss):
        raise AdaptationDiverged(f"inner loss {value:.4g} at step {step} (limit {max_loss})")


def inner_loop(loss_fn: LossFn, init: Params, lrs: Params, steps: int, *, create_graph: bool = False,
               max_loss: float | None = None, keep_grads: bool = False) -> InnerResult:
    """``steps`` of SGD with one learning rate per tensor.

    With ``create_graph`` the result stays a differentiable function of ``init`` (second-order MAML);
    otherwise the loop starts from detached copies and nothing is differentiated through it.
    """
    params = dict(init) if create_graph else _leaves(init)
    lrs = {k: (v if create_graph else v.detach()) for k, v in lrs.items()}
    result = InnerResult(params=params)
    for step in range(steps):
        loss = loss_fn(params)
        _check(loss, step, max_loss)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        grads = dict(zip(params.keys(), grads))
        params = {k: params[k] - lrs[k] * grads[k] for k in params}
        if not create_graph:
            params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        result.losses.append(float(loss.detach()))
        if keep_grads:
            result.grads.append({k: g.detach() for k, g in grads.items()})
    result.params = params
    return result


def adapt(loss_fn: LossFn, init: Params, lrs: Params, steps: int, max_loss: float | None = None) -> InnerResult:
    """Plain adaptation (inference time): first-order inner loop, results detached."""
    result = inner_loop(loss_fn, init, lrs, steps, max_loss=max_loss)
    result.params = {k: v.detach() for k, v in result.params.items()}
    return result


@dataclass
class MetaGrad:
    init: Params          # d(query loss)/d(init), to back-propagate into the meta-parameters
    lrs: Params           # d(query loss)/d(lr), first-order (zero-filled where not learned)
    query_loss: float
    query_logits: torch.Tensor | None = None


def fomaml_meta_grad(support_loss: LossFn, query_loss: LossFn, init: Params, lrs: Params, steps: int,
                     max_loss: float | None = None, query_logits: Callable | None = None) -> MetaGrad:
    """First-order MAML: the query-loss gradient at the adapted parameters, taken as the gradient
    at the initialisation (the Jacobian of the inner loop is replaced by the identity).

    The inner learning rates get the matching first-order hypergradient: with
    theta_K = theta_0 - sum_k lr * g_k and each g_k held constant, dL/dlr = -sum_k <dL/dtheta_K, g_k>.
    """
    inner = inner_loop(support_loss, init, lrs, steps, max_loss=max_loss, keep_grads=True)
    adapted = inner.params
    loss = query_loss(adapted)
    _check(loss, steps, max_loss)
    grads = dict(zip(adapted.keys(), torch.autograd.grad(loss, list(adapted.values()))))
    lr_grads = {k: -sum((grads[k] * g[k]).sum() for g in inner.grads) for k in lrs}
    logits = query_logits(adapted).detach() if query_logits else None
    return MetaGrad(init=grads, lrs=lr_grads, query_loss=float(loss.detach()), query_logits=logits)


def maml_meta_grad(support_loss: LossFn, query_loss: LossFn, init: Params, lrs: Params, steps: int,
                   max_loss: float | None = None) -> MetaGrad:
    """Second-order MAML, for reference and cost comparison: differentiate through the inner loop."""
    init_leaves = {k: v.detach().clone().requires_grad_(True) for k, v in init.items()}
    lr_leaves = {k: v.detach().clone().requires_grad_(True) for k, v in lrs.items()}
    inner = inner_loop(support_loss, init_leaves, lr_leaves, steps, create_graph=True, max_loss=max_loss)
    loss = query_loss(inner.params)
    _check(loss, steps, max_loss)
    leaves = [*init_leaves.values(), *lr_leaves.values()]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    grads = [torch.zeros_like(l) if g is None else g for l, g in zip(leaves, grads)]
    n = len(init_leaves)
    return MetaGrad(init=dict(zip(init_leaves, grads[:n])), lrs=dict(zip(lr_leaves, grads[n:])),
                    query_loss=float(loss.detach()))


def reptile_meta_grad(task_loss: LossFn, init: Params, lrs: Params, steps: int,
                      max_loss: float | None = None) -> MetaGrad:
    """Reptile: the pseudo-gradient ``init - adapted``; an outer SGD step with rate eps on it is
    exactly ``reptile_update``. Inner learning rates are not learned (zero gradient)."""
    inner = inner_loop(task_loss, init, lrs, steps, max_loss=max_loss)
    delta = {k: init[k].detach() - inner.params[k].detach() for k in init}
    return MetaGrad(init=delta, lrs={k: torch.zeros_like(v) for k, v in lrs.items()},
                    query_loss=inner.losses[-1] if inner.losses else float("nan"))


def reptile_update(params: Params, adapted: Params, epsilon: float) -> Params:
    """theta <- theta + epsilon * (phi - theta)."""
    return {k: params[k] + epsilon * (adapted[k] - params[k]) for k in params}


def backprop_meta_grad(init: Params, lrs: Params, grad: MetaGrad) -> torch.Tensor:
    """A surrogate scalar whose gradient w.r.t. the meta-parameters is the meta-gradient chained
    through ``init`` (and ``lrs``); call ``.backward()`` (or Lightning's ``manual_backward``) on it."""
    terms = [(v * grad.init[k]).sum() for k, v in init.items() if v.requires_grad]
    terms += [(v * grad.lrs[k]).sum() for k, v in lrs.items() if v.requires_grad and k in grad.lrs]
    return torch.stack(terms).sum() if terms else torch.zeros(())
