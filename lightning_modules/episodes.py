"""Few-shot tasks sampled from tenants: variable ways, label permutation, tenants drawn evenly."""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch


@dataclass  # not frozen: Lightning moves dataclass batches between devices field by field
class Task:
    """Indices into a feature table: support and query examples with task-local labels 0..n_way-1."""

    tenant: str
    classes: tuple[str, ...]
    support: torch.Tensor
    support_y: torch.Tensor
    query: torch.Tensor
    query_y: torch.Tensor
    name_rows: torch.Tensor | None = None   # row of each class's label name in a names table

    @property
    def n_way(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class TenantPool:
    """One tenant's examples: label name -> row indices in the shared feature table."""

    tenant: str
    by_label: dict[str, list[int]]
    name_rows: dict[str, int] | None = None   # label -> row of its name in a names table

    def usable_labels(self, need: int) -> list[str]:
        return sorted(label for label, rows in self.by_label.items() if len(rows) >= need)


def pools_from_labels(tenant: str, labels: list[str], offset: int = 0,
                      name_rows: dict[str, int] | None = None) -> TenantPool:
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(offset + i)
    return TenantPool(tenant, by_label, name_rows)


class EpisodeSampler:
    """Draws tasks: a tenant uniformly (so large tenants do not dominate), then 2+ of its labels in
    random order (the head never sees a fixed label index), then support and query rows per label."""

    def __init__(self, pools: list[TenantPool], ways: tuple[int, int], shots: int, query: int, seed: int = 0):
        self.shots, self.query, self.ways = shots, query, ways
        self.pools = [p for p in pools if len(p.usable_labels(shots + query)) >= 2]
        if not self.pools:
            raise ValueError(f"no tenant has 2 labels with {shots + query}+ examples each")
        self.rng = random.Random(seed)

    def sample(self) -> Task:
        pool = self.rng.choice(self.pools)
        labels = pool.usable_labels(self.shots + self.query)
        n_way = self.rng.randint(min(self.ways[0], len(labels)), min(self.ways[1], len(labels)))
        classes = self.rng.sample(labels, n_way)
        support, support_y, query, query_y = [], [], [], []
        for y, label in enumerate(classes):
            rows = self.rng.sample(pool.by_label[label], self.shots + self.query)
            support += rows[:self.shots]
            support_y += [y] * self.shots
            query += rows[self.shots:]
            query_y += [y] * self.query
        as_long = lambda xs: torch.tensor(xs, dtype=torch.long)
        names = as_long([pool.name_rows[c] for c in classes]) if pool.name_rows else None
        return Task(pool.tenant, tuple(classes), as_long(support), as_long(support_y), as_long(query),
                    as_long(query_y), names)

    def fixed(self, n: int) -> list[Task]:
        """``n`` tasks drawn once, for validation curves that compare like with like."""
        return [self.sample() for _ in range(n)]


class TaskStream(torch.utils.data.IterableDataset):
    """An endless stream of tasks for Lightning's training loop."""

    def __init__(self, sampler: EpisodeSampler):
        self.sampler = sampler

    def __iter__(self):
        while True:
            yield self.sampler.sample()


def collate_tasks(tasks: list[Task]) -> list[Task]:
    return tasks
