"""SetFit's recipe (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts"),
re-implemented with sentence-transformers because the ``setfit`` package is not installed.

Follows setfit 1.2.0's defaults: contrastive pairs from the support set with the "oversampling"
strategy (as many positive as negative pairs, the larger count of the two), CosineSimilarityLoss,
one epoch, batch 16, AdamW (lr 2e-5, weight decay 0.01) with 10% linear warm-up, seed 42; then a
scikit-learn LogisticRegression head on the fine-tuned encoder's embeddings. The whole encoder is
fine-tuned, so a tenant stores a full encoder copy plus the head.
"""
from __future__ import annotations

import random
import time

import numpy as np
import torch

PAIR_SEED, BATCH, LR, WEIGHT_DECAY, WARMUP = 42, 16, 2e-5, 0.01, 0.1


def contrastive_pairs(texts: list[str], labels: list[int], max_pairs: int | None = None):
    """setfit's ``ContrastiveDataset`` (oversampling): every pair i <= j in a fixed shuffled order,
    split into positives and negatives, each list cycled to the larger length, interleaved."""
    n = len(texts)
    idx = np.stack(np.triu_indices(n, 0), axis=-1)
    pos, neg = [], []
    for k in np.random.RandomState(seed=PAIR_SEED).permutation(len(idx)):
        i, j = idx[k]
        (pos if labels[i] == labels[j] else neg).append((texts[i], texts[j], float(labels[i] == labels[j])))
    size = max(len(pos), len(neg))
    pairs = []
    for m in range(size):
        pairs += [pos[m % len(pos)], neg[m % len(neg)]]
    return pairs[:max_pairs] if max_pairs else pairs


def _load_model():
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    from lightning_modules.encoder import packaged_model_dir

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    return SentenceTransformer(str(packaged_model_dir()), device="cpu")


def fit_predict(support: list[str], support_y: list[int], query: list[str],
                max_pairs: int | None = None, seed: int = PAIR_SEED) -> tuple[np.ndarray, float, int]:
    """Fine-tune a fresh copy of the encoder on the support set, fit the head, predict the query.

    Returns (predicted labels, adaptation seconds (fine-tuning + head, not predicting), pairs)."""
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    from sklearn.linear_model import LogisticRegression

    torch.manual_seed(seed)
    model = _load_model()
    start = time.perf_counter()
    pairs = contrastive_pairs(support, support_y, max_pairs)
    random.Random(seed).shuffle(pairs)
    loss_fn = CosineSimilarityLoss(model)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = (len(pairs) + BATCH - 1) // BATCH
    warm = max(1, int(steps * WARMUP))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
    model.train()
    for b in range(steps):
        batch = pairs[b * BATCH:(b + 1) * BATCH]
        feats = [model.preprocess([p[0] for p in batch]), model.preprocess([p[1] for p in batch])]
        loss = loss_fn(feats, torch.tensor([p[2] for p in batch]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    head = LogisticRegression()
    head.fit(model.encode(support, batch_size=64, convert_to_numpy=True), support_y)
    seconds = time.perf_counter() - start
    pred = head.predict(model.encode(query, batch_size=64, convert_to_numpy=True))
    return pred, seconds, len(pairs)


def head_bytes(n_way: int, dim: int = 384) -> int:
    """float32 coefficients and intercepts of the logistic-regression head (binary: one row)."""
    rows = 1 if n_way == 2 else n_way
    return 4 * rows * (dim + 1)
