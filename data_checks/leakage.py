"""Leakage checks: a text in both the support (train) and query (eval) split would inflate
accuracy; a tenant's texts found in another tenant's data suggest a mixed-up export."""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable


def normalise(text: str) -> str:
    """Case, Unicode form and whitespace differences do not make two examples different."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split())


def check_leakage(train_texts: Iterable[str], eval_texts: Iterable[str]) -> list[str]:
    """The eval texts (as given, first occurrence, in order) that also occur in train after
    normalising; an empty list means the splits share no text."""
    seen = {normalise(t) for t in train_texts}
    leaked, reported = [], set()
    for text in eval_texts:
        key = normalise(text)
        if key in seen and key not in reported:
            reported.add(key)
            leaked.append(text)
    return leaked


def cross_tenant_overlap(texts: Iterable[str], others: dict[str, Iterable[str]]) -> dict[str, int]:
    """tenant -> how many of ``texts`` (normalised, distinct) also occur in that tenant's texts;
    tenants sharing none are left out."""
    mine = {normalise(t) for t in texts}
    out = {}
    for tenant, theirs in others.items():
        n = len(mine & {normalise(t) for t in theirs})
        if n:
            out[tenant] = n
    return out
