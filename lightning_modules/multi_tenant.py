"""Many tenants in one forward pass: the frozen encoder runs once for a group of requests of
different tenants, then each tenant's adapted top runs on its own rows (S-LoRA's unified
batching, Sheng et al. 2023, for small classifiers).

A request is ``(predictor, texts)`` with a loaded ``TenantPredictor``; predictors that share an
encoder and a frozen depth share the lower pass (their base was trained on the same encoder).
"""
from __future__ import annotations

import numpy as np
import torch

from lightning_modules.features import lower_features


@torch.no_grad()
def predict_many(requests: list[tuple[object, list[str]]], batch_size: int = 64) -> list[np.ndarray]:
    """Label probabilities [len(texts), n_labels] for each request, in order.

    Texts of one lower group are sorted by length and encoded ``batch_size`` at a time (less
    padding); every tenant's top then runs once on all of its rows of the group.
    """
    out: list[np.ndarray | None] = [None] * len(requests)
    groups: dict[tuple, list[int]] = {}
    for i, (predictor, _) in enumerate(requests):
        groups.setdefault((id(predictor.encoder), predictor.frozen), []).append(i)
    for members in groups.values():
        first = requests[members[0]][0]
        texts = [t for i in members for t in requests[i][1]]
        if not texts:
            for i in members:
                out[i] = np.zeros((0, len(requests[i][0].labels)), dtype=np.float32)
            continue
        order = sorted(range(len(texts)), key=lambda k: len(texts[k]))
        states, masks = [], []
        for start in range(0, len(order), batch_size):
            feats = lower_features(first.encoder, [texts[k] for k in order[start:start + batch_size]], first.frozen)
            states.append(feats.states)
            masks.append(feats.mask)
        width = max(s.shape[1] for s in states)
        states = torch.cat([torch.nn.functional.pad(s, (0, 0, 0, width - s.shape[1])) for s in states])
        mask = torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for m in masks])
        back = torch.empty(len(order), dtype=torch.long)
        back[torch.tensor(order)] = torch.arange(len(order))  # text k sits at row back[k]
        offset = 0
        for i in members:
            predictor, its = requests[i]
            rows = back[offset:offset + len(its)]
            offset += len(its)
            logits = predictor.top.logits(predictor.params, states[rows], mask[rows])
            out[i] = torch.softmax(logits.float(), 1).numpy()
    return out  # type: ignore[return-value]
