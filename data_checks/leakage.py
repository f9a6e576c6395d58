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


class TextIndex:
    """Normalised text -> the tenants whose data holds it, built once for a bulk ingest so each
    tenant's cross-tenant overlap costs its own texts only (comparing every tenant with every
    other tenant's texts would read 1,000 files 1,000 times)."""

    def __init__(self) -> None:
        self._owners: dict[str, set[str]] = {}

    def add(self, tenant: str, texts: Iterable[str]) -> None:
        for key in {normalise(t) for t in texts}:
            self._owners.setdefault(key, set()).add(tenant)

    def overlap(self, tenant: str, texts: Iterable[str]) -> dict[str, int]:
        """What ``cross_tenant_overlap(texts, {every other indexed tenant: texts})`` returns."""
        out: dict[str, int] = {}
        for key in {normalise(t) for t in texts}:
            for other in self._owners.get(key, ()):
                if other != tenant:
                    out[other] = out.get(other, 0) + 1
        return out

    def tenants(self) -> set[str]:
        return {t for owners in self._owners.values() for t in owners}
