"""Label leakage: how often a class's texts contain a word of its own label name, and masking those words.

A text that names its class lets one token decide it; ``mask_label_words`` blanks such words with
``MASK`` (crudely stemmed, stopwords ignored), and ``leak_share`` measures what is left.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable

_WORD = re.compile(r"[A-Za-z]+")
MASK = "___"
STOPWORDS = frozenset(
    "a an and the of in on for to with by or as at from is are be this that it its into other others "
    "general misc miscellaneous".split())


@lru_cache(maxsize=1 << 18)   # words repeat across texts; a stem is a pure function of its word
def stem(word: str) -> str:
    """A crude stem, enough to match 'animals' with 'Animal' and 'musical' with 'Music'."""
    w, before = word.lower(), ""
    while w != before:  # "animals" -> "animal" -> "anim", as "Animal" -> "anim"
        before = w
        for suffix in ("ations", "ation", "ings", "ing", "ical", "ics", "ies", "ial", "al", "es", "s", "y", "e"):
            if len(w) - len(suffix) >= 4 and w.endswith(suffix):
                w = w[: -len(suffix)]
                break
    return w


def label_stems(label: str) -> set[str]:
    return {stem(w) for w in _WORD.findall(label) if w.lower() not in STOPWORDS and len(w) > 2}


def leaks(text: str, stems: set[str]) -> bool:
    return any(stem(w) in stems for w in _WORD.findall(text))


def leak_share(texts: list[str], label: str) -> float:
    """Share of ``texts`` containing a word of ``label`` (crudely stemmed, stopwords ignored)."""
    stems = label_stems(label)
    return sum(leaks(t, stems) for t in texts) / len(texts) if texts else 0.0


def mask_label_words(texts: list[str], label: str) -> list[str]:
    """``texts`` with every word whose stem is a stem of ``label`` replaced by ``MASK``, duplicates
    dropped. A stem is a prefix of its lowercased word, so a text without any stem in it is kept as is."""
    stems = label_stems(label)
    sub = lambda m: MASK if stem(m.group(0)) in stems else m.group(0)  # noqa: E731
    masked = (_WORD.sub(sub, t) if any(s in t.lower() for s in stems) else t for t in texts)
    return list(dict.fromkeys(masked))


def masked_classes(classes: dict[str, list[str]], label_of: Callable[[str], str]) -> dict[str, list[str]]:
    """Label words masked, and a text found in two classes dropped from both (its label is ambiguous)."""
    masked = {k: mask_label_words(v, label_of(k)) for k, v in classes.items()}
    count: dict[str, int] = {}
    for texts in masked.values():
        for t in texts:
            count[t] = count.get(t, 0) + 1
    return {k: [t for t in v if count[t] == 1] for k, v in masked.items()}
