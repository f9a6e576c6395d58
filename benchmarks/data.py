"""The benchmark's classes, split by seed into meta-training, validation (early stopping) and
evaluation groups that never share a class or a text, and the fixed evaluation episodes.

In-domain: meta-train on most classes of every source, evaluate on held-out classes of every source.
Cross-domain: meta-train on the WordNet sources only, evaluate on held-out Home Assistant intents.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from lightning_modules.episodes import EpisodeSampler, Task, TenantPool, pools_from_labels

SOURCES = ("wordnet-lex", "wordnet-topic", "ha-intents")
HELD_OUT_SOURCE = "ha-intents"   # the unseen domain of the cross-domain evaluation
WAYS, QUERY = 5, 10               # evaluation episodes: 5-way, 10 query texts per class

Pools = dict[str, dict[str, list[str]]]       # source -> class key -> texts
TenantData = dict[str, tuple[list[str], list[str]]]   # tenant -> (texts, labels)


@dataclass(frozen=True)
class ClassSplit:
    """Per source: class keys for meta-training, validation and evaluation (disjoint)."""

    train: dict[str, list[str]]
    val: dict[str, list[str]]
    eval: dict[str, list[str]]


def split_classes(pools: Pools, seed: int, eval_share: float = 0.25, val_share: float = 0.15) -> ClassSplit:
    train, val, held = {}, {}, {}
    for source in SOURCES:
        keys = sorted(pools[source])
        random.Random(f"{seed}:{source}:split").shuffle(keys)
        n_eval = max(WAYS, round(len(keys) * eval_share))
        n_val = max(WAYS, round(len(keys) * val_share))
        held[source], val[source], train[source] = keys[:n_eval], keys[n_eval:n_eval + n_val], keys[n_eval + n_val:]
    return ClassSplit(train, val, held)


def clean_pools(pools: Pools, split: ClassSplit, per_class: int, seed: int, min_train: int = 10,
                min_eval: int = 20) -> Pools:
    """At most ``per_class`` texts per class; a text in two classes of one source is dropped (its
    label would be ambiguous), and no meta-training or validation text is an evaluation text.
    Classes left with too few texts for an episode (``min_train``, ``min_eval``) are dropped."""
    ambiguous, eval_texts, val_texts = set(), set(), set()
    for source in SOURCES:
        seen: dict[str, int] = {}
        for texts in pools[source].values():
            for t in set(texts):
                seen[t] = seen.get(t, 0) + 1
        ambiguous |= {t for t, n in seen.items() if n > 1}
        eval_texts |= {t for k in split.eval[source] for t in pools[source][k]}
        val_texts |= {t for k in split.val[source] for t in pools[source][k]}
    out: Pools = {}
    for source in SOURCES:
        out[source] = {}
        for group, banned in ((split.eval, ambiguous), (split.val, ambiguous | eval_texts),
                              (split.train, ambiguous | eval_texts | val_texts)):
            for key in group[source]:
                texts = sorted(t for t in set(pools[source][key]) if t not in banned)
                random.Random(f"{seed}:{key}:texts").shuffle(texts)
                if len(texts) >= (min_eval if group is split.eval else min_train):
                    out[source][key] = texts[:per_class]
    return out


def kept(split: ClassSplit, pools: Pools) -> ClassSplit:
    """The split restricted to the classes ``clean_pools`` kept."""
    only = lambda group: {s: [k for k in group[s] if k in pools[s]] for s in SOURCES}  # noqa: E731
    return ClassSplit(only(split.train), only(split.val), only(split.eval))


def tenants(pools: Pools, keys: dict[str, list[str]], sources: tuple[str, ...], per_tenant: int,
            prefix: str, seed: int) -> TenantData:
    """Classes grouped into pseudo-tenants of one source, ``per_tenant`` classes each (a short last
    group joins the one before), so the product's ``meta_train`` runs on them as is."""
    out: TenantData = {}
    for source in sources:
        ks = sorted(keys[source])
        random.Random(f"{seed}:{source}:{prefix}").shuffle(ks)
        groups = [ks[i:i + per_tenant] for i in range(0, len(ks), per_tenant)]
        if len(groups) > 1 and len(groups[-1]) < per_tenant // 2 + 1:
            groups[-2] += groups.pop()
        for i, group in enumerate(groups):
            texts = [t for k in group for t in pools[source][k]]
            labels = [k for k in group for _ in pools[source][k]]
            out[f"{prefix}-{source}-{i}"] = (texts, labels)
    return out


@dataclass
class EvalSet:
    """Every evaluation text in one table (one row each), and one pool of classes per source."""

    texts: list[str]
    labels: list[str]
    pools: dict[str, TenantPool]

    @classmethod
    def build(cls, pools: Pools, split: ClassSplit) -> "EvalSet":
        texts, labels, by_source = [], [], {}
        for source in SOURCES:
            mine = [(t, k) for k in split.eval[source] for t in pools[source][k]]
            by_source[source] = pools_from_labels(f"eval-{source}", [k for _, k in mine], len(texts))
            texts += [t for t, _ in mine]
            labels += [k for _, k in mine]
        return cls(texts, labels, by_source)

    def episodes(self, setting: str, shots: int, n: int, seed: int) -> list[Task]:
        """The same ``n`` episodes for every method (paired comparison); in-domain episodes draw a
        source uniformly, cross-domain episodes come from the held-out source only."""
        sources = SOURCES if setting == "in-domain" else (HELD_OUT_SOURCE,)
        sampler = EpisodeSampler([self.pools[s] for s in sources], (WAYS, WAYS), shots, QUERY,
                                 seed=hash_seed(seed, setting, shots))
        return sampler.fixed(n)


def hash_seed(*parts) -> int:
    return random.Random(":".join(map(str, parts))).randrange(2**31)
