"""The catalog of text sources: their names, class-key prefixes, label names and class pools.

``SOURCES`` are the six the demo builds tenants from; ``MORE_SOURCES`` the four only the benchmarks
use; a class key is ``<prefix>:<name>`` ("wordnet-lex:noun.animal", "ha-intent:HassTurnOn").
"""
from __future__ import annotations

from pathlib import Path

from corpora import bible, debian_packages, foldoc, fortunes, gcide, ha_intents, pydoc, vera, wordnet
from corpora.regrouping import Pools, Regrouping

SOURCES = ("wordnet-lex", "wordnet-topic", "ha-intents", "fortunes", "bible", "foldoc")
# Sources only the benchmarks use; the demo's plan keeps to SOURCES.
MORE_SOURCES = ("gcide", "vera", "debian-pkg", "pydoc")
ALL_SOURCES = SOURCES + MORE_SOURCES
# class-key prefix -> source
SOURCE_OF = {"wordnet-lex": "wordnet-lex", "wordnet-topic": "wordnet-topic", "ha-intent": "ha-intents",
             "fortune": "fortunes", "bible": "bible", "foldoc": "foldoc",
             "gcide": "gcide", "debian-pkg": "debian-pkg", "pydoc": "pydoc",
             "vera": "vera"}
PREFIX = {source: prefix for prefix, source in SOURCE_OF.items()}
# source -> the module that reads it (wordnet-lex and wordnet-topic share one reader)
MODULES = {"wordnet-lex": wordnet, "wordnet-topic": wordnet, "ha-intents": ha_intents, "fortunes": fortunes,
           "bible": bible, "foldoc": foldoc, "gcide": gcide, "vera": vera, "debian-pkg": debian_packages,
           "pydoc": pydoc}


def source_of(key: str) -> str:
    """The source of a class key ('ha-intent:HassTurnOn' -> 'ha-intents')."""
    return SOURCE_OF[key.partition(":")[0]]


def label_name(key: str) -> str:
    """Human label for a class key, e.g. 'wordnet-lex:noun.animal' -> 'Animals'."""
    prefix = key.partition(":")[0]
    if prefix not in SOURCE_OF:
        raise ValueError(f"unknown class source in {key!r}")
    return MODULES[SOURCE_OF[prefix]].label_name(key)


def class_pools(seed: int = 0, min_texts: int = 20, wordnet_dir: Path = wordnet.WORDNET_DIR,
                sources: tuple[str, ...] = SOURCES) -> dict[str, dict[str, list[str]]]:
    """Source -> class key -> texts, keeping classes with at least `min_texts` texts; only the
    readers of `sources` run (all of ALL_SOURCES take ~20 s; nothing is cached)."""
    unknown = set(sources) - set(ALL_SOURCES)
    if unknown:
        raise ValueError(f"unknown text sources {sorted(unknown)}; known: {', '.join(ALL_SOURCES)}")
    read_wordnet = lambda: wordnet.wordnet_classes(wordnet_dir)  # noqa: E731  (one reader serves both)
    readers = {"wordnet-lex": read_wordnet, "wordnet-topic": read_wordnet,
               "ha-intents": lambda: ha_intents.intent_classes(seed=seed), "fortunes": fortunes.fortune_classes,
               "bible": bible.bible_classes, "foldoc": foldoc.foldoc_classes, "gcide": gcide.gcide_classes,
               "debian-pkg": debian_packages.debian_package_classes, "pydoc": pydoc.pydoc_classes,
               "vera": vera.vera_classes}
    pools: dict[str, dict[str, list[str]]] = {s: {} for s in sources}
    for reader in dict.fromkeys(readers[s] for s in sources):
        for key, texts in reader().items():
            owner = source_of(key)
            if owner in pools and len(texts) >= min_texts:
                pools[owner][key] = texts
    return pools


# source -> its regroupings(pools): categories of other real taxonomies over its texts
REGROUPINGS = {"wordnet-lex": wordnet.lex_regroupings, "wordnet-topic": wordnet.topic_regroupings,
               "ha-intents": ha_intents.regroupings, "fortunes": fortunes.regroupings, "bible": bible.regroupings,
               "foldoc": foldoc.regroupings, "gcide": gcide.regroupings, "vera": vera.regroupings,
               "debian-pkg": debian_packages.regroupings, "pydoc": pydoc.regroupings}


def all_regroupings(pools_by_source: dict[str, Pools], seed: int = 0) -> dict[str, list[Regrouping]]:
    """Source -> the renamed, merged and split categories of its texts (corpora.regrouping), for the
    sources of ``pools_by_source`` (class key -> texts after the benchmark's cleaning). ``seed`` is
    the one ``class_pools`` drew Home Assistant utterances with (their template blocks are redrawn)."""
    unknown = set(pools_by_source) - set(ALL_SOURCES)
    if unknown:
        raise ValueError(f"unknown text sources {sorted(unknown)}; known: {', '.join(ALL_SOURCES)}")
    out = {}
    for source, pools in pools_by_source.items():
        make = REGROUPINGS[source]
        out[source] = make(pools, seed=seed) if source == "ha-intents" else make(pools)
    return out
