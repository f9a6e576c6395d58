"""The benchmark's data: the text sources (corpora.catalog.ALL_SOURCES), each turned into pseudo-tenants with human label names,
and the leave-one-source-out folds over them.

A fold leaves one source S out: meta-training sees four other sources, early stopping a fifth (V,
the next source in ``SOURCES`` order), and evaluation only S's classes. A text sampled into two
sources is dropped from both (the WordNet topic domains are glosses of the lexicographer classes
too), so no evaluated text is ever seen in meta-training or validation. Each source's tenants are
the same in every fold, so their cached frozen features serve every fold.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from corpora.catalog import ALL_SOURCES as SOURCES, label_name
from lightning_modules.episodes import EpisodeSampler, Task, TenantPool

WAYS, QUERY = 5, 10          # evaluation episodes: 5-way, 10 query texts per class
PER_TENANT = 8               # classes per pseudo-tenant (a short last group joins the one before)
MIN_TEXTS = 10               # a class needs this many texts to be kept (meta-training: 5 shots + 5 query)

Pools = dict[str, dict[str, list[str]]]               # source -> class key -> texts
TenantData = dict[str, tuple[list[str], list[str]]]   # tenant -> (texts, label names)


@dataclass(frozen=True)
class Fold:
    """Evaluate on ``test``; early-stop on ``val``; meta-train on ``train``."""

    test: str
    val: str
    train: tuple[str, ...]


def folds(sources: tuple[str, ...] = SOURCES) -> list[Fold]:
    """One fold per source, the validation source the next one round ``SOURCES``."""
    out = []
    for i, test in enumerate(SOURCES):
        if test in sources:
            val = SOURCES[(i + 1) % len(SOURCES)]
            out.append(Fold(test, val, tuple(s for s in SOURCES if s not in (test, val))))
    return out


def mask_leaks(raw: Pools) -> Pools:
    """Each class's texts with the words of its own label name masked (the readers of gcide, vera,
    debian-pkg and pydoc do so already; of the older sources, Home Assistant intents and FOLDOC leak
    their label in 74% and 37% of texts on average, see benchmarks/results/sources.md)."""
    from corpora.masking import mask_label_words

    return {s: {k: mask_label_words(v, label_name(k)) for k, v in classes.items()} for s, classes in raw.items()}


def clean_pools(raw: Pools, per_class: int, seed: int, min_texts: int = MIN_TEXTS, same=None) -> Pools:
    """At most ``per_class`` texts per class, seeded. A text in two classes of one source is dropped
    (its label would be ambiguous), and so is a text drawn for two sources (it would leak across
    folds). Classes left with fewer than ``min_texts`` texts are dropped. ``same``: what makes two
    texts the same (default: equal strings, as protocol 3's episodes have always been drawn; the
    in-domain protocols pass ``data_checks.leakage.normalise``, what their leakage check compares)."""
    same = same or (lambda t: t)
    drawn: Pools = {}
    for source in SOURCES:
        firsts = {key: {} for key in raw[source]}
        for key, texts in raw[source].items():
            for t in sorted(set(texts)):
                firsts[key].setdefault(same(t), t)
        count = Counter(k for forms in firsts.values() for k in forms)
        drawn[source] = {}
        for key in sorted(raw[source]):
            texts = sorted(t for k, t in firsts[key].items() if count[k] == 1)
            random.Random(f"{seed}:{key}:texts").shuffle(texts)
            drawn[source][key] = texts[:per_class]
    owners = Counter(same(t) for source in SOURCES for t in {t for ts in drawn[source].values() for t in ts})
    return {s: {k: kept for k, ts in drawn[s].items()
                if len(kept := [t for t in ts if owners[same(t)] == 1]) >= min_texts}
            for s in SOURCES}


def source_tenants(pools: Pools, source: str, seed: int, per_tenant: int = PER_TENANT) -> TenantData:
    """A source's classes grouped into pseudo-tenants of ``per_tenant`` classes, each class labelled
    with its human name (what a tenant would call it; the names are texts the adaptation uses)."""
    keys = sorted(pools[source])
    random.Random(f"{seed}:{source}:tenants").shuffle(keys)
    groups = [keys[i:i + per_tenant] for i in range(0, len(keys), per_tenant)]
    if len(groups) > 1 and len(groups[-1]) < per_tenant // 2 + 1:
        groups[-2] += groups.pop()
    out: TenantData = {}
    for i, group in enumerate(groups):
        names = [label_name(k) for k in group]
        if len(set(names)) != len(names):
            raise ValueError(f"{source}: two classes share a label name in {names}")
        out[f"{source}-{i:02d}"] = ([t for k in group for t in pools[source][k]],
                                    [n for k, n in zip(group, names) for _ in pools[source][k]])
    return out


def all_tenants(pools: Pools, seed: int) -> dict[str, TenantData]:
    return {s: source_tenants(pools, s, seed) for s in SOURCES}


def fold_data(tenants: dict[str, TenantData], fold: Fold) -> tuple[TenantData, TenantData]:
    """(meta-training tenants, validation tenants) of a fold; nothing of ``fold.test`` in either."""
    train = {t: v for s in fold.train for t, v in tenants[s].items()}
    return train, dict(tenants[fold.val])


def merged_pool(pools: list[TenantPool], name: str) -> TenantPool:
    """One pool of every class of a source's tenants (their label names are unique in a source)."""
    by_label, name_rows = {}, {}
    for p in pools:
        by_label.update(p.by_label)
        name_rows.update(p.name_rows or {})
    return TenantPool(name, by_label, name_rows or None)


def episodes(pool: TenantPool, source: str, shots: int, n: int, seed: int) -> list[Task]:
    """The first ``n`` evaluation episodes of a source at ``shots``: the same for every method
    (paired), and the first k of n are the k episodes a shorter run draws."""
    return EpisodeSampler([pool], (WAYS, WAYS), shots, QUERY, seed=hash_seed(seed, source, shots)).fixed(n)


def hash_seed(*parts) -> int:
    return random.Random(":".join(map(str, parts))).randrange(2**31)
