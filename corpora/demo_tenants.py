"""Demo tenants from real text, so the demo and benchmarks meet label sets a customer could have."""
from __future__ import annotations

import csv
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from corpora.catalog import PREFIX, SOURCES, class_pools, label_name, source_of
from corpora.wordnet_db import WORDNET_DIR
from workspace.tenants import check_tenant_id

MIN_ROWS_PER_LABEL = 10

LEX, TOPIC, HA, FORT, BIBLE, FOLDOC = SOURCES
# (id, role, sources, number of labels, anchor classes). Anchors make an id's name true
# ("initech-legal" always has Law); the other classes are drawn by seed. Eval tenants take only
# classes held out of every meta-training tenant. A mixed tenant splits its labels over sources.
_PLAN: tuple[tuple[str, str, tuple[str, ...], int, tuple[str, ...]], ...] = (
    ("acme-catalog", "meta-train", (LEX,), 4, ("noun.artifact",)),
    ("globex-home", "meta-train", (HA,), 6, ("HassTurnOn", "HassTurnOff")),
    ("initech-legal", "meta-train", (TOPIC,), 5, ("law", "crime")),
    ("umbrella-health", "meta-train", (TOPIC,), 7, ("medicine", "anatomy")),
    ("hooli-wiki", "meta-train", (LEX,), 8, ()),
    ("stark-voice", "meta-train", (HA,), 9, ()),
    ("wayne-archive", "meta-train", (LEX, TOPIC), 6, ()),
    ("wonka-recipes", "meta-train", (LEX, TOPIC), 5, ("noun.food", "cooking")),
    ("cyberdyne-ops", "meta-train", (TOPIC,), 10, ("computer science", "electronics")),
    ("tyrell-biolab", "meta-train", (LEX,), 7, ("noun.animal", "noun.plant")),
    ("vandelay-imports", "meta-train", (LEX,), 10, ("noun.substance",)),
    ("soylent-assistant", "meta-train", (HA,), 4, ()),
    ("oscorp-research", "meta-train", (TOPIC,), 8, ("physics", "chemistry", "biology")),
    ("dunder-office", "meta-train", (HA,), 7, ("HassStartTimer", "HassListAddItem")),
    ("bluth-quotes", "meta-train", (FORT,), 6, ("politics", "food")),
    ("nakatomi-verses", "meta-train", (BIBLE,), 6, ("Genesis", "Psalms")),
    ("initrode-jargon", "meta-train", (FOLDOC,), 6, ("networking", "programming")),
    ("sterling-fortunes", "eval", (FORT,), 5, ()),
    ("saxon-bible", "eval", (BIBLE,), 5, ()),
    ("wernham-glossary", "eval", (FOLDOC,), 5, ()),
    ("massive-library", "eval", (LEX,), 6, ()),
    ("aperture-journal", "eval", (TOPIC,), 5, ()),
    ("piedpiper-home", "eval", (HA,), 5, ()),
    ("gringotts-docs", "eval", (LEX, TOPIC), 4, ()),
    ("monarch-voice", "eval", (HA,), 4, ()),
    # new tenants whose categories the meta-training tenants have under another real name (a WordNet
    # synonym of the class's name), with texts no meta-training file holds: what a SaaS mostly sees
    ("vought-lexicon", "recurring", (LEX,), 3, ()),
    ("hooli-topics", "recurring", (TOPIC,), 5, ()),
    ("bluth-sayings", "recurring", (FORT,), 3, ()),
)
# Other wordings a tenant may choose, so the same class is not always the same string.
_ALIASES = {
    "wordnet-lex:noun.animal": ["Fauna", "Wildlife"], "wordnet-lex:noun.plant": ["Flora"],
    "wordnet-lex:noun.food": ["Food"], "wordnet-lex:noun.person": ["Persons", "Roles"],
    "wordnet-lex:noun.artifact": ["Man-made objects", "Products"], "wordnet-lex:noun.location": ["Locations"],
    "wordnet-lex:noun.substance": ["Materials"], "wordnet-lex:verb.motion": ["Movement"],
    "wordnet-topic:law": ["Legal"], "wordnet-topic:medicine": ["Medical"],
    "wordnet-topic:computer science": ["Computing"], "wordnet-topic:sport": ["Sports"],
    "ha-intent:HassTurnOn": ["Switch on"], "ha-intent:HassTurnOff": ["Switch off"],
    "ha-intent:HassGetWeather": ["Weather forecast"], "ha-intent:HassStartTimer": ["New timer"],
}


@dataclass(frozen=True)
class DemoTenant:
    id: str
    role: str                 # "meta-train" | "eval" (new categories) | "recurring" (trained categories, renamed)
    sources: list[str]
    labels: list[str]
    class_keys: list[str]     # labels[i] names class_keys[i]
    path: Path
    n_rows: int


@dataclass(frozen=True)
class DemoCatalog:
    out_dir: Path
    seed: int
    tenants: list[DemoTenant]
    bad_file: Path

    def meta_train(self) -> list[DemoTenant]:
        return [t for t in self.tenants if t.role == "meta-train"]

    def evaluation(self) -> list[DemoTenant]:
        """Tenants judged as new ones: new categories ("eval") and renamed trained ones ("recurring")."""
        return [t for t in self.tenants if t.role in ("eval", "recurring")]

    def to_json(self) -> str:
        """Sorted-key JSON with paths relative to out_dir, so equal builds give equal bytes."""
        rel = lambda p: Path(p).relative_to(self.out_dir).as_posix()  # noqa: E731
        tenants = [{**asdict(t), "path": rel(t.path)} for t in self.tenants]
        return json.dumps({"format": "tailor-demo-catalog/1", "seed": self.seed, "tenants": tenants,
                           "bad_file": rel(self.bad_file)}, indent=2, sort_keys=True) + "\n"


def _key(source: str, name: str) -> str:
    return f"{PREFIX[source]}:{name}"


def _split(n: int, sources: tuple[str, ...]) -> list[int]:
    """Labels per source: as even as possible, the first sources taking the remainder."""
    return [n // len(sources) + (i < n % len(sources)) for i in range(len(sources))]


def _holdout(pools, seed: int) -> dict[str, list[str]]:
    """Per source, the classes reserved for eval tenants: as many as they need, never an anchor."""
    anchors = {_key(s, a) for _, _, srcs, _, names in _PLAN for s in srcs for a in names}
    need = {s: 0 for s in SOURCES}
    for _, role, srcs, n, _ in _PLAN:
        if role == "eval":
            for s, k in zip(srcs, _split(n, srcs)):
                need[s] += k
    rng = random.Random(f"{seed}:holdout")
    return {s: rng.sample(sorted(set(pools[s]) - anchors), need[s]) for s in SOURCES}


def _pick_classes(tenant, srcs, n, anchors, pools, held, seed) -> list[str]:
    """A meta-training tenant's classes: its anchors, then seeded draws outside the holdout."""
    rng = random.Random(f"{seed}:{tenant}:classes")
    keys: list[str] = []
    for s, k in zip(srcs, _split(n, srcs)):
        mine = [_key(s, a) for a in anchors if _key(s, a) in pools[s]][:k]
        keys += mine + rng.sample(sorted(set(pools[s]) - set(mine) - set(held[s])), k - len(mine))
    missing = [a for a in anchors if not any(key.partition(":")[2] == a for key in keys)]
    if missing:
        raise ValueError(f"demo plan: anchor classes {missing} of {tenant} are in no source pool")
    return keys


def _tenant_rows(tenant, keys, pools, per_label, banned, seed,
                 named: dict[str, str] | None = None) -> tuple[list[str], list[list[str]]]:
    """Label names and shuffled (text, label) rows; a text appears at most once per tenant.
    ``named``: the label each key goes by (else its human name or an alias, drawn)."""
    rng = random.Random(f"{seed}:{tenant}:rows")
    labels, rows, used = [], [], set(banned)
    for key in keys:
        names = [label_name(key), *_ALIASES.get(key, [])]
        label = names[0] if rng.random() < 0.6 else rng.choice(names)
        label = (named or {}).get(key, label)
        pool = pools[source_of(key)][key]
        texts = [t for t in rng.sample(pool, len(pool)) if t not in used][:per_label]
        if len(texts) < MIN_ROWS_PER_LABEL or label in labels:
            raise ValueError(f"demo tenant {tenant}: class {key} gives {len(texts)} texts / label {label!r}")
        used.update(texts)
        labels.append(label)
        rows += [[t, label] for t in texts]
    rng.shuffle(rows)
    return labels, rows


def _recurring(tenant, srcs, n, pools, trained: set[str], banned: set[str], seed) -> tuple[list[str], dict[str, str]]:
    """A recurring tenant's classes: classes meta-training tenants have that another real name fits
    (``corpora`` regroupings of kind renamed) and that have texts left no meta-training file holds,
    seeded; and the name each goes by here."""
    from corpora.catalog import REGROUPINGS

    rng = random.Random(f"{seed}:{tenant}:classes")
    keys, names = [], {}
    for s, k in zip(srcs, _split(n, srcs)):
        mine = {key: pools[s][key] for key in sorted(trained) if key in pools[s]
                and sum(t not in banned for t in pools[s][key]) >= 2 * MIN_ROWS_PER_LABEL}
        make = REGROUPINGS[s]
        renamed = {r.members[0]: r.name for r in (make(mine, seed=seed) if s == HA else make(mine))
                   if r.kind == "renamed"}
        if len(renamed) < k:
            raise ValueError(f"demo tenant {tenant}: {len(renamed)} trained classes of {s} have another name, "
                             f"need {k}")
        picked = rng.sample(sorted(renamed), k)
        keys += picked
        names.update({key: renamed[key] for key in picked})
    return keys, names


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def _write_bad(out_dir: Path, tenant: DemoTenant, rows: list[list[str]]) -> Path:
    """A file the data contract must refuse: a label with one example and blank texts."""
    first, second, lone = tenant.labels[:3]
    keep = [r for r in rows if r[1] == first][:6] + [r for r in rows if r[1] == second][:6]
    bad = keep + [r for r in rows if r[1] == lone][:1] + [["", first], ["   ", second]]
    path = out_dir / "bad" / f"{tenant.id}-bad.csv"
    _write_csv(path, bad)
    return path


def build_demo_tenants(out_dir: Path, seed: int = 0, examples_per_label: int = 24,
                       wordnet_dir: Path = WORDNET_DIR) -> DemoCatalog:
    """Write every demo tenant's CSV, one bad file and catalog.json under `out_dir`.

    Same seed, same bytes. Meta-training tenants may share classes; eval tenants use only classes
    held out of meta-training, recurring tenants classes of meta-training tenants under another real
    name; neither holds a text that any meta-training file contains.
    """
    if examples_per_label < MIN_ROWS_PER_LABEL:
        raise ValueError(f"examples_per_label must be >= {MIN_ROWS_PER_LABEL}")
    out_dir = Path(out_dir).resolve()
    pools = class_pools(seed=seed, wordnet_dir=wordnet_dir)
    held = _holdout(pools, seed)
    eval_queue = {s: list(held[s]) for s in SOURCES}
    tenants, meta_texts, first_rows, trained = [], set(), None, set()
    for tenant, role, srcs, n, anchors in _PLAN:
        check_tenant_id(tenant)
        named = None
        if role == "eval":
            keys = [eval_queue[s].pop(0) for s, k in zip(srcs, _split(n, srcs)) for _ in range(k)]
        elif role == "recurring":
            keys, named = _recurring(tenant, srcs, n, pools, trained, meta_texts, seed)
        else:
            keys = _pick_classes(tenant, srcs, n, anchors, pools, held, seed)
        banned = meta_texts if role != "meta-train" else set()
        labels, rows = _tenant_rows(tenant, keys, pools, examples_per_label, banned, seed, named)
        if role == "meta-train":
            meta_texts.update(r[0] for r in rows)
            trained.update(keys)
        path = out_dir / f"{tenant}.csv"
        _write_csv(path, rows)
        tenants.append(DemoTenant(tenant, role, list(srcs), labels, keys, path, len(rows)))
        first_rows = first_rows or rows
    bad = _write_bad(out_dir, tenants[0], first_rows)
    catalog = DemoCatalog(out_dir, seed, tenants, bad)
    (out_dir / "catalog.json").write_text(catalog.to_json(), encoding="utf-8")
    return catalog
