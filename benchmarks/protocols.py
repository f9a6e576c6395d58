"""The benchmark's three protocols: which tenants a base is trained on and which new tenants judge it.

1. ``recurring``: new tenants of a trained domain whose categories the training tenants have under
   other real names or at another granularity (``corpora.regrouping``: renamed, merged, split). Each
   class of the source that recurs has its texts split in two halves: the training tenants see one
   half under the class's own name, the evaluation tenants the other half under the other
   taxonomy's name.
2. ``new-categories``: new tenants of a trained domain with categories no training tenant has
   (classes of the same source held out of training whole).
3. ``new-domain``: a source no training tenant comes from (leave one source out, ``benchmarks.data``;
   kept as it was, so its episodes are the earlier runs' episodes).

Protocols 1 and 2 share one base per source and algorithm: trained on that source's training
tenants, early-stopped on a fifth of them held out. Nothing an evaluation tenant holds is in the
training or validation tenants' texts (``check_disjoint``: text-disjoint after normalising case,
Unicode form and spacing).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from benchmarks.data import Pools, TenantData, hash_seed
from data_checks.leakage import normalise

PROTOCOLS = ("recurring", "new-categories", "new-domain")
IN_DOMAIN = PROTOCOLS[:2]
TITLES = {"recurring": "1. recurring categories (a trained domain, categories under other names and granularity)",
          "new-categories": "2. new categories of a trained domain",
          "new-domain": "3. a new domain (leave one source out)"}
NEW_SHARE = 0.3          # classes of a source held out of training whole, for protocol 2
PER_TENANT = 8           # classes per training tenant
WAYS, QUERY = 5, 10      # evaluation episodes: 5-way, 10 query texts per category


@dataclass(frozen=True)
class Category:
    """One category of an evaluation tenant: its name there, and its texts."""

    name: str
    kind: str                      # renamed | merged | split | new
    members: tuple[str, ...]       # the source's class keys it draws on
    texts: tuple[str, ...]
    taxonomy: str = ""


@dataclass
class InDomain:
    """One source's in-domain split: training and validation tenants, and the categories of the
    evaluation tenants of protocols 1 and 2."""

    source: str
    train: TenantData
    val: TenantData
    recurring: list[Category]
    new: list[Category]
    skipped: dict = field(default_factory=dict)   # why some regroupings were not used, counted

    def categories(self, protocol: str) -> list[Category]:
        return self.recurring if protocol == "recurring" else self.new


def _tenants(source: str, keys: list[str], texts_of: dict[str, list[str]], label_of, seed: int) -> TenantData:
    groups = [keys[i:i + PER_TENANT] for i in range(0, len(keys), PER_TENANT)]
    if len(groups) > 1 and len(groups[-1]) < PER_TENANT // 2 + 1:
        groups[-2] += groups.pop()
    return {f"{source}-{i:02d}": ([t for k in g for t in texts_of[k]], [label_of(k) for k in g for _ in texts_of[k]])
            for i, g in enumerate(groups)}


def in_domain(source: str, pools: dict[str, list[str]], regroupings: list, label_of, seed: int) -> InDomain:
    """Split ``source``'s classes (``pools``: key -> texts) into training, validation and the two
    in-domain protocols' categories. ``regroupings``: the source's ``corpora.regrouping.Regrouping``s."""
    # What is held out of training whole (protocol 2's classes, then the validation tenants') is taken
    # first from the classes no regrouping covers, then a regrouping's classes together, so as few
    # recurring categories as possible lose a class to it: they need every class of theirs trained.
    covered = {k for r in regroupings for k in r.members if k in pools}
    rng = random.Random(f"{seed}:{source}:in-domain")
    keys = sorted(set(pools) - covered)
    rng.shuffle(keys)
    groups = [sorted(set(r.members) & set(pools)) for r in regroupings]
    rng.shuffle(groups)
    for group in sorted(groups, key=len, reverse=True):   # the widest merges held out together, first
        keys += [k for k in group if k not in keys]
    n_new = max(WAYS, round(NEW_SHARE * len(keys)))
    new_keys, seen = sorted(keys[:n_new]), keys[n_new:]
    halves = {}
    for key in seen:
        texts = list(pools[key])
        random.Random(f"{seed}:{key}:halves").shuffle(texts)
        halves[key] = (texts[: len(texts) // 2], texts[len(texts) // 2:])
    tenants = _tenants(source, seen, {k: halves[k][0] for k in seen}, label_of, seed)
    names = sorted(tenants)   # the first tenants hold the uncovered classes left: they validate
    val_ids = set(names[:max(1, len(names) // 5)]) if len(names) > 1 else set()
    train = {t: v for t, v in tenants.items() if t not in val_ids}
    val = {t: v for t, v in tenants.items() if t in val_ids}
    trained = {k for k in seen if label_of(k) in {lab for _, labs in train.values() for lab in labs}}
    recurring, skipped = [], {}
    for r in regroupings:
        if not set(r.members) <= trained:
            skipped["a class not in training"] = skipped.get("a class not in training", 0) + 1
            continue
        held = [t for k in r.members for t in halves[k][1]]
        if r.texts is not None:
            own = set(r.texts)
            held = [t for t in held if t in own]
        recurring.append(Category(r.name, r.kind, tuple(r.members), tuple(held), r.taxonomy))
    new = [Category(label_of(k), "new", (k,), tuple(pools[k])) for k in new_keys]
    return InDomain(source, train, val, recurring, new, skipped)


def check_disjoint(split: InDomain) -> None:
    """Raise ValueError naming the first evaluation text that a training or validation tenant also
    holds (after normalising), for either in-domain protocol."""
    seen = {normalise(t) for data in (split.train, split.val) for texts, _ in data.values() for t in texts}
    for protocol in IN_DOMAIN:
        for cat in split.categories(protocol):
            for text in cat.texts:
                if normalise(text) in seen:
                    raise ValueError(f"{split.source} {protocol}: the evaluation text {text[:60]!r} of "
                                     f"{cat.name!r} is also in a training or validation tenant")


@dataclass(frozen=True)
class Episode:
    """A new tenant: ``WAYS`` categories, ``shots`` texts of each to adapt on, up to ``QUERY`` others scored."""

    protocol: str
    source: str
    shots: int
    index: int
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    support: tuple[tuple[str, int], ...]   # (text, class index)
    query: tuple[tuple[str, int], ...]


def episodes(split: InDomain, protocol: str, shots: int, n: int, seed: int) -> list[Episode]:
    """The first ``n`` episodes of one in-domain protocol at ``shots``: the same for every method
    (paired). Categories of one episode share no text and no name (a merged category and one of its
    members never meet; two splits of one class may: that is the hard case a split is)."""
    cats = [c for c in split.categories(protocol) if len(c.texts) >= shots + QUERY]
    rng = random.Random(hash_seed(seed, protocol, split.source, shots))
    out = []
    for index in range(n):
        for _ in range(200):
            picked: list[Category] = []
            used: set[str] = set()
            for cat in rng.sample(cats, len(cats)):
                if cat.name.lower() in {p.name.lower() for p in picked} or used & set(cat.texts):
                    continue
                picked.append(cat)
                used |= set(cat.texts)
                if len(picked) == WAYS:
                    break
            if len(picked) == WAYS:
                break
        else:
            raise ValueError(f"{split.source} {protocol}: cannot draw {WAYS} disjoint categories with "
                             f"{shots + QUERY} texts each ({len(cats)} usable)")
        support, query = [], []
        for y, cat in enumerate(picked):
            texts = rng.sample(cat.texts, shots + QUERY)
            support += [(t, y) for t in texts[:shots]]
            query += [(t, y) for t in texts[shots:]]
        out.append(Episode(protocol, split.source, shots, index, tuple(c.name for c in picked),
                           tuple(c.kind for c in picked), tuple(support), tuple(query)))
    return out


def usable(split: InDomain, protocol: str, shots: int = 5) -> bool:
    """Whether one episode of this protocol can be drawn (enough disjoint categories with texts)."""
    try:
        episodes(split, protocol, shots, 1, 0)
    except ValueError:
        return False
    return True


def in_domain_splits(pools: Pools, regroupings: dict[str, list], label_of, seed: int) -> dict[str, InDomain]:
    """Every source's in-domain split, each checked text-disjoint."""
    out = {}
    for source in pools:
        split = in_domain(source, pools[source], regroupings.get(source, []), label_of, seed)
        check_disjoint(split)
        out[source] = split
    return out
