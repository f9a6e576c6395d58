"""Alternative taxonomies over a source's texts: categories of another real labelling of the same texts.

The benchmark's "recurring categories" protocol gives an evaluation tenant categories that training
tenants have under other real names or at another granularity. A ``Regrouping`` is one such category:

* ``renamed``: one class under another real name (a WordNet synonym of its label, else a name the
  source itself gives it), never a made-up one;
* ``merged``: two or more classes under the name of a coarser category that covers them (Bible genres,
  WordNet hypernyms, Python's library chapters ...);
* ``split``: the part of one class that a finer category covers (a WordNet hyponym, a debtags tag,
  a Home Assistant domain), its texts listed, disjoint from its siblings'.

Each source module has ``regroupings(pools)``, ``pools`` being its class key -> texts after the
benchmark's cleaning; a regrouping only names keys and texts found there.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from corpora.masking import STOPWORDS, label_stems, stem
from corpora.wordnet_db import WORDNET_DIR, Synset, database

KINDS = ("renamed", "merged", "split")
MIN_TEXTS = 10                 # a split covers at least this many texts
MAX_SHARE = 0.75               # ... and at most this share of its class (more is nearly a rename)
SYNONYMS = "WordNet synonyms"
COMPUTING = ("computer_science", "computer")   # WordNet topic domains of a computing source's senses
_WORD = re.compile(r"[A-Za-z]+")
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.I)

Pools = Mapping[str, list[str]]


@dataclass(frozen=True)
class Regrouping:
    """A category of another real taxonomy over a source's texts."""

    name: str                  # its real name there (never made up)
    kind: str                  # "renamed" | "merged" | "split"
    members: tuple[str, ...]   # class keys of the source whose texts it covers (merged: 2+; else 1)
    texts: tuple[str, ...] | None = None   # split: exactly which texts of the member it covers;
                                           # None: all texts of the members
    taxonomy: str = ""         # e.g. "WordNet synonyms", "Bible genres", "debtags facets"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"regrouping kind {self.kind!r}: one of {', '.join(KINDS)}")
        if not self.name.strip():
            raise ValueError("a regrouping needs its real name")
        if (len(self.members) >= 2) != (self.kind == "merged") or not self.members:
            raise ValueError(f"{self.kind} {self.name!r}: merged covers 2+ classes, the others one")
        if (self.texts is not None) != (self.kind == "split"):
            raise ValueError(f"{self.kind} {self.name!r}: only a split lists its texts")


def _content(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text) if len(w) > 2 and w.lower() not in STOPWORDS]


def distinct(name: str, label: str) -> bool:
    """Whether ``name`` is another name than ``label``: not the same words, no word of it sharing a
    stem with the label's (the words its texts were masked for) or four first letters ("medicament"
    for "Medicine"), no spelling variant ("artefact" for "Artifact"), no abbreviation or acronym of
    the label ("Zool." for "Zoology", "WWW" for "World Wide Web")."""
    words, theirs = _content(name), _content(label)
    if not words or name.strip().lower() == label.strip().lower():
        return False
    stems = label_stems(label)
    initials = "".join(w[0] for w in _WORD.findall(label)).lower()
    for w in words:
        if len(initials) >= 2 and (w.startswith(initials) or initials.startswith(w)) or stem(w) in stems:
            return False
        for t in theirs:
            if (w[:4] == t[:4] and min(len(w), len(t)) >= 4 or t.startswith(w) or w.startswith(t)
                    or difflib.SequenceMatcher(None, w, t).ratio() >= 0.8):
                return False
    return True


def renames(pools: Pools, label_of: Callable[[str], str], taxonomy: str = SYNONYMS, pos: tuple[str, ...] = ("n",),
            lexnames: Callable[[str], Iterable[str]] | None = None,
            alternatives: Mapping[str, Iterable[str]] | None = None, alternatives_taxonomy: str = "",
            synsets: Mapping[str, Synset] | None = None, topics: Iterable[str] = (),
            wordnet_dir: Path = WORDNET_DIR) -> list[Regrouping]:
    """One rename per class that has another real name: the first other lemma of its label's WordNet
    synset (``synsets[key]`` where the source knows it, else ``Database.sense`` of the label: among
    ``lexnames(key)``, or only in the ``topics`` domains if given) that is ``distinct`` from its
    label and is no class's label; where WordNet has none, the first such name of
    ``alternatives[key]``, the source's own other names (taxonomy ``alternatives_taxonomy``)."""
    db = database(wordnet_dir)
    labels = {key: label_of(key) for key in pools}
    taken = {label.lower() for label in labels.values()}
    out = []
    for key in sorted(pools):
        label = labels[key]
        synset = (synsets or {}).get(key)
        for p in pos:
            synset = synset or db.sense(_ARTICLE.sub("", label), p, pools[key], lexnames(key) if lexnames else None,
                                        topics)
        tries = [(n, taxonomy) for n in (synset.names() if synset else [])]
        tries += [(n, alternatives_taxonomy) for n in (alternatives or {}).get(key, ())]
        for name, origin in tries:
            if distinct(name, label) and name.lower() not in taken:
                out.append(Regrouping(name[:1].upper() + name[1:], "renamed", (key,), None, origin))
                taken.add(name.lower())
                break
    return out


def splits(pools: Pools, member: str, group_of: Mapping[str, str], taxonomy: str,
           min_texts: int = MIN_TEXTS, max_share: float = MAX_SHARE) -> list[Regrouping]:
    """The finer categories of one class: ``group_of`` maps each of its texts to at most one finer
    category name; a category with ``min_texts`` texts and at most ``max_share`` of the class is kept."""
    groups: dict[str, list[str]] = {}
    for text in pools[member]:
        if text in group_of:
            groups.setdefault(group_of[text], []).append(text)
    limit = max_share * len(pools[member])
    return [Regrouping(name, "split", (member,), tuple(texts), taxonomy)
            for name, texts in sorted(groups.items()) if min_texts <= len(texts) <= limit]


def merges(pools: Pools, groups: Mapping[str, Iterable[str]], taxonomy: str) -> list[Regrouping]:
    """Coarser categories: name -> the class keys it covers; those with 2+ classes in ``pools`` are kept."""
    out = []
    for name, keys in groups.items():
        members = tuple(dict.fromkeys(k for k in keys if k in pools))
        if len(members) >= 2:
            out.append(Regrouping(name, "merged", members, None, taxonomy))
    return out


def tidy(regroupings: Iterable[Regrouping], pools: Pools, label_of: Callable[[str], str]) -> list[Regrouping]:
    """A source's regroupings without a name that is a class label of the source or an earlier
    regrouping's name (case-insensitive), nor a category that covers what an earlier one covers."""
    taken = {label_of(key).lower() for key in pools}
    seen, out = set(), []
    for r in regroupings:
        covers = (r.members, r.texts)
        if r.name.lower() in taken or covers in seen:
            continue
        taken.add(r.name.lower())
        seen.add(covers)
        out.append(r)
    return out


def problems(regroupings: Iterable[Regrouping], pools: Pools, label_of: Callable[[str], str],
             min_texts: int = MIN_TEXTS) -> list[str]:
    """What breaks the contract (empty when none): unknown keys or texts, a short split, splits of
    one class that share texts, a rename that is not another name, a name used twice."""
    found, names, by_member = [], {}, {}
    for r in regroupings:
        where = f"{r.kind} {r.name!r}"
        if any(k not in pools for k in r.members):
            found.append(f"{where}: a member is not in the pools")
            continue
        if r.kind == "split":
            if len(r.texts) < min_texts or not set(r.texts) <= set(pools[r.members[0]]):
                found.append(f"{where}: needs {min_texts}+ texts, all of its member's")
            for other in by_member.setdefault(r.members[0], []):
                if set(other.texts) & set(r.texts):
                    found.append(f"{where}: shares texts with its sibling {other.name!r}")
            by_member[r.members[0]].append(r)
        if r.kind == "renamed" and not distinct(r.name, label_of(r.members[0])):
            found.append(f"{where}: not another name for {label_of(r.members[0])!r}")
        if names.setdefault(r.name.lower(), r) is not r:
            found.append(f"{where}: the name is used twice")
    return found
