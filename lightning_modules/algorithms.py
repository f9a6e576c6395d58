"""First-order meta-learning as pure functions over parameter dicts, testable without Lightning.

``init`` maps names to tensors that may depend (with autograd) on the meta-parameters: the
meta-gradient with respect to ``init`` is returned, and the caller back-propagates it into the
meta-parameters, so "first order" means: the inner loop is not differentiated, the initialisation is.

References:
  Finn, Abbeel, Levine 2017, Model-Agnostic Meta-Learning (MAML; FOMAML is its first-order case).
  Nichol, Achiam, Schulman 2018, On First-Order Meta-Learning Algorithms (Reptile).
  Li, Zhou, Chen, Li 2017, Meta-SGD (per-parameter inner learning rates).
  Kingma, Ba 2015, Adam (the inner loop's update direction when ``optimizer="adam"``).
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
    steps: list[Params] = field(default_factory=list)  # per step, detached: the update direction before lr


def _leaves(params: Params) -> Params:
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


def _check(loss: torch.Tensor, step: int, max_loss: float | None) -> None:
    value = float(loss.detach())
    if not math.isfinite(value) or (max_loss is not None and value > max_loss):
        raise AdaptationDiverged(f"inner loss {value:.4g} at step {step} (limit {max_loss})")


class AdamDirection:
    """Adam's update direction (Kingma & Ba 2015) as a pure function of the gradient history, so
    the per-tensor learning rates of Meta-SGD scale it exactly as they scale plain SGD's gradient."""

    def __init__(self, betas=(0.9, 0.999), eps: float = 1e-8):
        self.b1, self.b2, self.eps, self.t = betas[0], betas[1], eps, 0
        self.m: Params = {}
        self.v: Params = {}

    def direction(self, grads: Params) -> Params:
        self.t += 1
        out = {}
        for k, g in grads.items():
            g = g.detach()
            self.m[k] = self.b1 * self.m.get(k, torch.zeros_like(g)) + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v.get(k, torch.zeros_like(g)) + (1 - self.b2) * g * g
            m_hat, v_hat = self.m[k] / (1 - self.b1 ** self.t), self.v[k] / (1 - self.b2 ** self.t)
            out[k] = m_hat / (v_hat.sqrt() + self.eps)
        return out


def inner_loop(loss_fn: LossFn, init: Params, lrs: Params, steps: int, *, create_graph: bool = False,
               max_loss: float | None = None, keep_steps: bool = False, optimizer: str = "sgd",
               on_step: Callable[[int, Params], None] | None = None) -> InnerResult:
    """``steps`` updates with one learning rate per tensor: plain SGD, or Adam's direction scaled by
    the same per-tensor rates (``optimizer="adam"``: robust to the very different gradient scales of
    adapters and head, so few steps learn without tuning each rate by hand).

    With ``create_graph`` (SGD only) the result stays a differentiable function of ``init``
    (second-order MAML); otherwise the loop starts from detached copies and nothing is
    differentiated through it. ``on_step(k, params)`` sees the parameters after step k (scoring
    along the way without re-running the loop).
    """
    if create_graph and optimizer != "sgd":
        raise ValueError("second-order MAML differentiates plain SGD only")
    params = dict(init) if create_graph else _leaves(init)
    lrs = {k: (v if create_graph else v.detach()) for k, v in lrs.items()}
    adam = AdamDirection() if optimizer == "adam" else None
    result = InnerResult(params=params)
    for step in range(steps):
        loss = loss_fn(params)
        _check(loss, step, max_loss)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        grads = dict(zip(params.keys(), grads))
        direction = adam.direction(grads) if adam is not None else grads
        params = {k: params[k] - lrs[k] * direction[k] for k in params}
        if not create_graph:
            params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        result.losses.append(float(loss.detach()))
        if keep_steps:
            result.steps.append({k: d.detach() for k, d in direction.items()})
        if on_step is not None:
            on_step(step + 1, params)
    result.params = params
    return result


def adapt(loss_fn: LossFn, init: Params, lrs: Params, steps: int, max_loss: float | None = None,
          optimizer: str = "sgd", on_step: Callable[[int, Params], None] | None = None) -> InnerResult:
    """Plain adaptation (inference time): first-order inner loop, results detached."""
    result = inner_loop(loss_fn, init, lrs, steps, max_loss=max_loss, optimizer=optimizer, on_step=on_step)
    result.params = {k: v.detach() for k, v in result.params.items()}
    return result


@dataclass
class MetaGrad:
    init: Params          # d(query loss)/d(init), to back-propagate into the meta-parameters
    lrs: Params           # d(query loss)/d(lr), first-order (zero-filled where not learned)
    query_loss: float
    query_logits: torch.Tensor | None = None


def fomaml_meta_grad(support_loss: LossFn, query_loss: LossFn, init: Params, lrs: Params, steps: int,
                     max_loss: float | None = None, query_logits: Callable | None = None,
                     optimizer: str = "sgd") -> MetaGrad:
    """First-order MAML: the query-loss gradient at the adapted parameters, taken as the gradient
    at the initialisation (the Jacobian of the inner loop is replaced by the identity).

    The inner learning rates get the matching first-order hypergradient: with
    theta_K = theta_0 - sum_k lr * u_k and each update direction u_k (the gradient for SGD, Adam's
    normalised step for Adam) held constant, dL/dlr = -sum_k <dL/dtheta_K, u_k>.
    """
    inner = inner_loop(support_loss, init, lrs, steps, max_loss=max_loss, keep_steps=True, optimizer=optimizer)
    adapted = inner.params
    loss = query_loss(adapted)
    _check(loss, steps, max_loss)
    grads = dict(zip(adapted.keys(), torch.autograd.grad(loss, list(adapted.values()))))
    lr_grads = {k: -sum((grads[k] * u[k]).sum() for u in inner.steps) for k in lrs}
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
                      max_loss: float | None = None, optimizer: str = "sgd") -> MetaGrad:
    """Reptile: the pseudo-gradient ``init - adapted``; an outer SGD step with rate eps on it is
    exactly ``reptile_update``. Inner learning rates are not learned (zero gradient)."""
    inner = inner_loop(task_loss, init, lrs, steps, max_loss=max_loss, optimizer=optimizer)
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
