"""The meta-gradients are what the papers define, checked against hand-built references."""
import math

import pytest
import torch

from lightning_modules import algorithms as alg

torch.manual_seed(0)
X_S, Y_S = torch.randn(8, 3), torch.randn(8)
X_Q, Y_Q = torch.randn(6, 3), torch.randn(6)


def mse(x, y):
    # a small nonlinear model so the Hessian is not constant
    return lambda p: ((torch.tanh(x @ p["w"]) * p["a"] + p["b"] - y) ** 2).mean()


def params():
    return {"w": torch.tensor([0.3, -0.2, 0.5]), "a": torch.tensor(1.5), "b": torch.tensor(0.1)}


LRS = {"w": torch.tensor(0.1), "a": torch.tensor(0.05), "b": torch.tensor(0.2)}


def manual_adapt(p, steps):
    p = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    for _ in range(steps):
        g = torch.autograd.grad(mse(X_S, Y_S)(p), list(p.values()))
        p = {k: (v - LRS[k] * gi).detach().requires_grad_(True) for (k, v), gi in zip(p.items(), g)}
    return p


def test_fomaml_grad_is_query_grad_at_adapted_detached_copy():
    got = alg.fomaml_meta_grad(mse(X_S, Y_S), mse(X_Q, Y_Q), params(), LRS, steps=3)
    adapted = manual_adapt(params(), 3)
    want = torch.autograd.grad(mse(X_Q, Y_Q)(adapted), list(adapted.values()))
    for (k, _), w in zip(adapted.items(), want):
        torch.testing.assert_close(got.init[k], w)


def test_reptile_pseudo_gradient_is_init_minus_hand_adapted_weights_and_sgd_on_it_is_the_update():
    x, y = torch.cat([X_S, X_Q]), torch.cat([Y_S, Y_Q])
    grad = alg.reptile_meta_grad(mse(x, y), params(), LRS, steps=4)
    # the reference adapts by hand (its own SGD loop), not with the function under test
    p = {k: v.clone().requires_grad_(True) for k, v in params().items()}
    for _ in range(4):
        g = torch.autograd.grad(mse(x, y)(p), list(p.values()))
        p = {k: (v - LRS[k] * gi).detach().requires_grad_(True) for (k, v), gi in zip(p.items(), g)}
    for k in params():
        torch.testing.assert_close(grad.init[k], params()[k] - p[k].detach())
    eps = 0.3   # theta - eps * (theta - phi) == theta + eps * (phi - theta): Reptile's update
    updated = alg.reptile_update(params(), {k: v.detach() for k, v in p.items()}, eps)
    for k in params():
        torch.testing.assert_close(params()[k] - eps * grad.init[k], updated[k])
        torch.testing.assert_close(updated[k], params()[k] + eps * (p[k].detach() - params()[k]))


def test_the_adam_inner_loop_is_torch_adam_with_one_rate_per_tensor():
    got = alg.inner_loop(mse(X_S, Y_S), params(), LRS, steps=5, optimizer="adam").params
    p = {k: torch.nn.Parameter(v.clone()) for k, v in params().items()}
    opt = torch.optim.Adam([{"params": [p[k]], "lr": float(LRS[k])} for k in p], betas=(0.9, 0.999), eps=1e-8)
    for _ in range(5):
        opt.zero_grad()
        mse(X_S, Y_S)(p).backward()
        opt.step()
    for k in p:
        torch.testing.assert_close(got[k].detach(), p[k].detach(), rtol=1e-5, atol=1e-6)


def test_first_order_lr_hypergradient_with_adam_is_exact_for_one_step():
    # one Adam step moves by lr * u, u = g / (|g| + eps) elementwise, which does not depend on lr
    fo = alg.fomaml_meta_grad(mse(X_S, Y_S), mse(X_Q, Y_Q), params(), LRS, steps=1, optimizer="adam")
    for k in LRS:
        def query_after(lr):
            lrs = {**LRS, k: torch.tensor(lr)}
            return mse(X_Q, Y_Q)(alg.adapt(mse(X_S, Y_S), params(), lrs, 1, optimizer="adam").params).item()
        h = 1e-4
        numeric = (query_after(LRS[k].item() + h) - query_after(LRS[k].item() - h)) / (2 * h)
        assert math.isclose(fo.lrs[k].item(), numeric, rel_tol=2e-2, abs_tol=1e-4), k


def _flat(d):
    return torch.cat([v.reshape(-1) for v in d.values()])


def test_second_order_maml_differs_from_fomaml_exactly_by_the_hessian_term():
    # one inner step: theta' = theta - A g_s(theta);  MAML = (I - A H_s(theta)) g_q(theta');
    # FOMAML = g_q(theta'); difference = -A H_s(theta) g_q(theta'), a Hessian-vector product.
    fo = alg.fomaml_meta_grad(mse(X_S, Y_S), mse(X_Q, Y_Q), params(), LRS, steps=1)
    so = alg.maml_meta_grad(mse(X_S, Y_S), mse(X_Q, Y_Q), params(), LRS, steps=1)
    theta = {k: v.clone().requires_grad_(True) for k, v in params().items()}
    g_s = torch.autograd.grad(mse(X_S, Y_S)(theta), list(theta.values()), create_graph=True)
    # H is symmetric and A diagonal (one rate per tensor), so (I - A H)^T g_q = g_q - H (A g_q).
    av = [LRS[k] * fo.init[k] for k in theta]
    h_av = torch.autograd.grad(g_s, list(theta.values()), grad_outputs=av)
    expected = {k: fo.init[k] - h for k, h in zip(theta, h_av)}
    for k in theta:
        torch.testing.assert_close(so.init[k], expected[k], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(_flat(so.init), _flat(fo.init)), "the second-order term must matter here"


def test_first_order_lr_hypergradient_is_exact_for_one_step():
    fo = alg.fomaml_meta_grad(mse(X_S, Y_S), mse(X_Q, Y_Q), params(), LRS, steps=1)
    for k in LRS:
        def query_after(lr):
            lrs = {**LRS, k: torch.tensor(lr)}
            return mse(X_Q, Y_Q)(alg.adapt(mse(X_S, Y_S), params(), lrs, 1).params).item()
        h = 1e-3
        numeric = (query_after(LRS[k].item() + h) - query_after(LRS[k].item() - h)) / (2 * h)
        assert math.isclose(fo.lrs[k].item(), numeric, rel_tol=2e-2, abs_tol=1e-4), k


def test_backprop_chains_meta_gradient_through_the_initialisation():
    meta = {k: v.clone().requires_grad_(True) for k, v in params().items()}
    init = {k: 2 * v for k, v in meta.items()}  # init depends on the meta-parameters
    grad = alg.fomaml_meta_grad(mse(X_S, Y_S), mse(X_Q, Y_Q), init, LRS, steps=2)
    alg.backprop_meta_grad(init, LRS, grad).backward()
    for k in meta:
        torch.testing.assert_close(meta[k].grad, 2 * grad.init[k])


@pytest.mark.parametrize("bad_lr", [1e6, float("nan")])
def test_diverging_inner_loop_is_stopped(bad_lr):
    lrs = {k: torch.tensor(bad_lr) for k in LRS}
    with pytest.raises(alg.AdaptationDiverged):
        alg.inner_loop(mse(X_S, Y_S), params(), lrs, steps=6, max_loss=50.0)
