"""Adaptation learns what the frozen encoder cannot see.

A hand-built one-layer "encoder top" whose frozen weights never read two residual dimensions and
whose final LayerNorm erases them: a class written there (+c / -c, opposite signs, so LayerNorm's
mean and variance are the same for both classes) leaves the frozen sentence embedding identical in
distribution for both classes. The adapters (LoRA on the value path) can read it and write it where
the embedding keeps it. Frozen prototypes and logistic regression stay at chance; the product's
adaptation (``tasks.adapt_task``) must get there.
"""
import torch
from sklearn.linear_model import LogisticRegression

from lightning_modules import baselines
from lightning_modules.model import TopModel, init_meta_params
from lightning_modules.tasks import TaskData, accuracy, adapt_task

H, T, HIDDEN_SIGNAL = 8, 6, (0, 7)


def _frozen_top(seed: int = 0) -> TopModel:
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: torch.randn(*shape, generator=g) / shape[-1] ** 0.5  # noqa: E731
    w = {}
    for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
        w[f"L0.{name}.weight"], w[f"L0.{name}.bias"] = rnd(H, H), torch.zeros(H)
    w["L0.intermediate.dense.weight"], w["L0.intermediate.dense.bias"] = rnd(2 * H, H), torch.zeros(2 * H)
    w["L0.output.dense.weight"], w["L0.output.dense.bias"] = rnd(H, 2 * H), torch.zeros(H)
    for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
        w[f"L0.{ln}.weight"], w[f"L0.{ln}.bias"] = torch.ones(H), torch.zeros(H)
    for d in HIDDEN_SIGNAL:
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "intermediate.dense"):
            w[f"L0.{name}.weight"][:, d] = 0.0       # the frozen layer never reads the signal ...
        for name in ("attention.output.dense", "output.dense"):
            w[f"L0.{name}.weight"][d, :] = 0.0       # ... never writes where it lives ...
        w["L0.output.LayerNorm.weight"][d] = 0.0     # ... and the last LayerNorm erases it
    return TopModel(frozen=w, n_layers=1, n_heads=2, hidden=H, rank=2)


def _texts(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    states = torch.randn(n, T, H, generator=g)
    sign = (2 * y - 1).float()[:, None]
    states[:, :, HIDDEN_SIGNAL[0]] = 2.0 * sign
    states[:, :, HIDDEN_SIGNAL[1]] = -2.0 * sign
    return (states, torch.ones(n, T, dtype=torch.bool)), y


def test_adaptation_learns_a_class_the_frozen_embedding_cannot_separate():
    top = _frozen_top()
    (support, y_s), (query, y_q) = _texts(40, seed=1), _texts(200, seed=2)
    data = TaskData(support, y_s, query, y_q, 2)
    start = init_meta_params(top, inner_lr=0.05, seed=0, head_lr=0.05, name_weight=0.0)

    class Rows:  # the frozen baselines read a feature table
        def __init__(self, st, m):
            self.states, self.mask = st, m

        def __len__(self):
            return len(self.states)

        def rows(self, idx):
            return self.states[idx], self.mask[idx]

    z_s = baselines.frozen_embeddings(top, start, Rows(*support))
    z_q = baselines.frozen_embeddings(top, start, Rows(*query))
    frozen = (LogisticRegression(C=10, max_iter=2000).fit(z_s, y_s).predict(z_q) == y_q.numpy()).mean()
    both = torch.cat([z_s, z_q])
    labels = torch.cat([y_s, y_q])
    protos = baselines.prototype_accuracy(both, labels, list(range(40)), list(range(40, 240)))
    assert frozen < 0.65 and protos < 0.65, (frozen, protos)   # chance, by construction

    before, _ = adapt_task(top, start, data, steps=0, optimizer="adam", head="logreg")
    assert accuracy(top, before, query, y_q) < 0.65            # zero steps: still the frozen model
    adapted, losses = adapt_task(top, start, data, steps=20, optimizer="adam", head="logreg")
    assert losses[-1] < losses[0]
    assert accuracy(top, adapted, query, y_q) >= 0.9           # held-out texts, not the support set
