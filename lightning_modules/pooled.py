"""Pooled training of the base: the adapted parameters fitted on every training tenant's
categories at once, no inner loop.

Each training tenant keeps its own label set: one cosine head per tenant (its classes only, rows
started at the frozen encoder's class prototypes), so two tenants that name the same category
differently never fight over one output. What the base keeps is the adapters; the heads are thrown
away and a new tenant fits its own head on the adapted embeddings.

References:
  Tian, Wang, Krishnan, Tenenbaum, Isola 2020, Rethinking Few-Shot Image Classification: a Good
    Embedding Is All You Need? (RFS: train on all classes at once, then a logistic head per task).
  Chen, Liu, Xu, Darrell, Wang 2021, Meta-Baseline: Exploring Simple Meta-Learning for Few-Shot
    Learning (pooled classifier training first, then meta-training from its weights).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lightning_modules.features import FeatureTable
from lightning_modules.model import TopModel, is_adapter


@dataclass
class PooledRows:
    """Every training example as a row of the feature table, with its tenant and class."""

    rows: torch.Tensor      # [N] rows of the feature table
    tenant: torch.Tensor    # [N] tenant index
    label: torch.Tensor     # [N] class index within the tenant
    n_classes: list[int]    # classes per tenant

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def from_pools(cls, pools, name_rows_offset: int | None = None) -> "PooledRows":
        """From the episode sampler's tenant pools (label -> rows); with ``name_rows_offset`` each
        label name joins its class as one more row (the names table is appended after the texts)."""
        rows, tenant, label, n_classes = [], [], [], []
        for t, pool in enumerate(pools):
            names = sorted(pool.by_label)
            for c, name in enumerate(names):
                rows += pool.by_label[name]
                tenant += [t] * len(pool.by_label[name])
                label += [c] * len(pool.by_label[name])
                if name_rows_offset is not None and pool.name_rows:
                    rows.append(name_rows_offset + pool.name_rows[name])
                    tenant.append(t)
                    label.append(c)
            n_classes.append(len(names))
        return cls(torch.tensor(rows), torch.tensor(tenant), torch.tensor(label), n_classes)


def adapter_params(meta: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in meta.items() if is_adapter(k)}


@torch.no_grad()
def init_heads(top: TopModel, meta: dict, feats: FeatureTable, data: PooledRows, batch: int = 256) -> torch.Tensor:
    """[tenants, most classes, hidden] unit rows: each class's mean embedding under ``meta``'s
    adapters (zero rows for the classes a tenant does not have)."""
    fast = adapter_params(meta)
    z = torch.cat([top.embed(fast, *feats.rows(data.rows[i:i + batch])) for i in range(0, len(data), batch)])
    heads = torch.zeros(len(data.n_classes), max(data.n_classes), z.shape[1], dtype=z.dtype, device=z.device)
    heads.index_put_((data.tenant.to(z.device), data.label.to(z.device)), z, accumulate=True)
    return F.normalize(heads, dim=-1)


def class_mask(n_classes: list[int], device=None) -> torch.Tensor:
    """[tenants, most classes] True where a tenant has that class."""
    return torch.arange(max(n_classes), device=device)[None, :] < torch.tensor(n_classes, device=device)[:, None]


def pooled_loss(top: TopModel, adapters: dict, heads: torch.Tensor, log_scale: torch.Tensor, mask: torch.Tensor,
                states: torch.Tensor, token_mask: torch.Tensor, tenant: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row over its own tenant's classes: cosine logits, one learned scale."""
    z = top.embed(adapters, states, token_mask)
    logits = log_scale.exp() * torch.einsum("bh,bch->bc", z, F.normalize(heads[tenant], dim=-1))
    return F.cross_entropy(logits.masked_fill(~mask[tenant], -1e4), label)


def start_scale() -> torch.Tensor:
    return torch.tensor(math.log(10.0))


class RowStream(torch.utils.data.IterableDataset):
    """An endless stream of batches of row indices (into ``PooledRows``) for Lightning's loop."""

    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.batch, self.seed = n, batch, seed

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed)
        while True:
            yield torch.randint(0, self.n, (self.batch,), generator=gen)
