"""What a team gets without meta-learning, on the frozen encoder: class prototypes and
logistic regression on sentence embeddings."""
from __future__ import annotations

import numpy as np
import torch

from lightning_modules.features import FeatureTable
from lightning_modules.model import TopModel, is_adapter
from lightning_modules.tasks import LOGREG_C, one_blas_thread


@torch.no_grad()
def frozen_embeddings(top: TopModel, no_meta: dict, feats: FeatureTable, batch: int = 256) -> torch.Tensor:
    """Sentence embeddings of the frozen encoder (adapters at their zero start)."""
    fast = {k: v for k, v in no_meta.items() if is_adapter(k)}
    return torch.cat([top.embed(fast, *feats.rows(torch.arange(i, min(i + batch, len(feats)))))
                      for i in range(0, len(feats), batch)])


def prototype_accuracy(z: torch.Tensor, y: torch.Tensor, support: list[int], query: list[int]) -> float:
    s, q = torch.tensor(support), torch.tensor(query)
    n_way = int(y.max()) + 1
    protos = torch.zeros(n_way, z.shape[1]).index_add(0, y[s], z[s])
    protos = protos / torch.bincount(y[s], minlength=n_way).clamp_min(1).unsqueeze(1)
    pred = torch.cdist(z[q], protos).argmin(1)
    return (pred == y[q]).float().mean().item()


def logreg_accuracy(z: torch.Tensor, y: torch.Tensor, support: list[int], query: list[int]) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=1000, C=LOGREG_C)
    with one_blas_thread():
        clf.fit(z[support].numpy(), y[support].numpy())
    return float(np.mean(clf.predict(z[query].numpy()) == y[query].numpy()))
