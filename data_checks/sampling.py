"""Bounded tenants: adaptation and meta-training cache features for every row they use (about
50 KB per row for all-MiniLM-L6-v2 at 64 tokens), so a very large tenant is sampled down to
``limits.max_adapt_rows`` rows, stratified by label and seeded, and what was done is recorded."""
from __future__ import annotations

import random

import pandas as pd


def bounded_sample(frame: pd.DataFrame, max_rows: int, seed: int, min_per_label: int = 2
                   ) -> tuple[pd.DataFrame, dict | None]:
    """At most ``max_rows`` rows of ``frame`` (more only if every label's minimum needs it).

    Each label keeps ``min(count, min_per_label)`` rows, then the rest of the budget is shared in
    proportion to label sizes (largest remainder), so label shares stay as in the file and no
    label disappears. Rows keep their file order. Returns the frame unchanged and None when it
    fits; otherwise the sample and ``{"rows", "kept", "limit", "method", "seed", "summary"}``.
    """
    n = len(frame)
    if n <= max_rows:
        return frame, None
    groups = {label: list(idx) for label, idx in sorted(frame.groupby("label", sort=True).indices.items())}
    floor = {label: min(len(rows), min_per_label) for label, rows in groups.items()}
    budget = max(max_rows - sum(floor.values()), 0)
    spare = {label: len(rows) - floor[label] for label, rows in groups.items()}
    total_spare = sum(spare.values()) or 1
    shares = {label: spare[label] * budget / total_spare for label in groups}
    quota = {label: floor[label] + int(shares[label]) for label in groups}
    left = min(budget, sum(spare.values())) - sum(int(s) for s in shares.values())
    for label in sorted(groups, key=lambda lb: (int(shares[lb]) - shares[lb], lb))[:max(left, 0)]:
        quota[label] += 1
    rng = random.Random(seed)
    keep = sorted(i for label, rows in groups.items() for i in rng.sample(rows, min(quota[label], len(rows))))
    sample = frame.iloc[keep].reset_index(drop=True)
    return sample, {"rows": n, "kept": len(sample), "limit": max_rows, "method": "stratified by label",
                    "seed": seed, "summary": f"{len(sample)} of {n} rows (stratified by label, seed {seed}, "
                                             f"limits.max_adapt_rows {max_rows})"}
