"""Means with 95% confidence intervals (Student t over episodes): plain, paired, and stratified
over left-out sources."""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Estimate:
    mean: float
    half: float   # half-width of the 95% confidence interval
    n: int

    def pts(self, signed: bool = False) -> str:
        """In accuracy points, e.g. ``84.2 ± 1.1`` (``+2.0 ± 0.8`` when signed)."""
        if self.n == 0 or not math.isfinite(self.mean):
            return "–"
        body = f"{100 * self.mean:+.1f}" if signed else f"{100 * self.mean:.1f}"
        return f"{body} ± {100 * self.half:.1f}" if self.n > 1 and math.isfinite(self.half) else body


def estimate(values: list[float]) -> Estimate:
    n = len(values)
    if n == 0:
        return Estimate(float("nan"), float("nan"), 0)
    mean = sum(values) / n
    if n == 1:
        return Estimate(mean, float("nan"), 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Estimate(mean, stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n), n)


def paired(a: dict[int, float], b: dict[int, float]) -> Estimate:
    """Mean of a - b over the episodes both scored."""
    common = sorted(set(a) & set(b))
    return estimate([a[i] - b[i] for i in common])


def stratified(groups: list[list[float]]) -> Estimate:
    """Mean over groups, each group's mean weighing the same (e.g. left-out sources with their own
    episodes), with a 95% interval from the groups' own variances (Welch-Satterthwaite degrees of
    freedom): the spread between sources is what the mean is over, not noise."""
    groups = [g for g in groups if g]
    if not groups:
        return Estimate(float("nan"), float("nan"), 0)
    k, n = len(groups), sum(map(len, groups))
    mean = sum(sum(g) / len(g) for g in groups) / k
    if any(len(g) < 2 for g in groups):
        return Estimate(mean, float("nan"), n)
    var = [sum((v - sum(g) / len(g)) ** 2 for v in g) / (len(g) - 1) / len(g) / k**2 for g in groups]
    total = sum(var)
    if total == 0:
        return Estimate(mean, 0.0, n)
    df = total**2 / sum(v**2 / (len(g) - 1) for v, g in zip(var, groups))
    return Estimate(mean, stats.t.ppf(0.975, df) * math.sqrt(total), n)
