"""Fortune cookies by category (``fortunes``): the BSD fortune collection as Debian ships it.

Licence: Debian's ``fortunes`` (the fortune-mod collection): BSD-3-Clause, per
/usr/share/doc/fortunes/copyright.
Taxonomies: the collection's category files (``love``, ``politics``, ``science`` ...).
Leak (mean share of a category's fortunes containing a word of its label name, unmasked; regenerated
by ``python -m benchmarks.sources`` into benchmarks/results/sources.md): 9.2%.
"""
from __future__ import annotations

import re
from pathlib import Path

from corpora.regrouping import Pools, Regrouping, renames, tidy
from corpora.text import clean, missing

LICENCE = "fortunes (Debian): BSD-3-Clause (/usr/share/doc/fortunes/copyright)"
TAXONOMIES = {"fortunes": ("fortune categories", "WordNet synonyms")}
LEAK = {"fortunes": 0.092}   # benchmarks/results/sources.md, "mean leak"
FORTUNE_DIR = Path("/usr/share/games/fortunes")

# Categories that are not prose (ascii-art), nearly empty, not English, or boilerplate.
_FORTUNE_SKIP = {"ascii-art", "translate-me", "pratchett", "disclaimer", "magic", "goedel"}
_ATTRIBUTION = re.compile(r"^\s*(--|~~|-)\s*\S.*$")


def fortune_classes(fortune_dir: Path = FORTUNE_DIR, min_words: int = 5, max_chars: int = 400) -> dict[str, list[str]]:
    """Category -> fortunes. Attribution lines ("-- Mark Twain") are dropped: a name would decide
    the class by itself; very long fortunes (stories, poems) are skipped."""
    fortune_dir = Path(fortune_dir)
    if not (fortune_dir / "people").is_file():
        raise missing("fortunes", fortune_dir / "people")
    out: dict[str, list[str]] = {}
    for path in sorted(fortune_dir.iterdir()):
        if path.suffix or path.name in _FORTUNE_SKIP or not path.is_file():
            continue
        raw = path.read_bytes().decode("utf-8", errors="replace")
        texts = []
        for entry in raw.split("\n%\n"):
            lines = [ln for ln in entry.strip("%\n").splitlines() if not _ATTRIBUTION.match(ln)]
            text = clean(" ".join(lines))
            if len(text.split()) >= min_words and len(text) <= max_chars:
                texts.append(text)
        out[f"fortune:{path.name}"] = list(dict.fromkeys(texts))
    return out


# Fortune file names as a person would label them.
_FORTUNE_LABELS = {"men-women": "Men and women", "songs-poems": "Songs and poems", "linuxcookie": "Linux cookies",
                   "knghtbrd": "IRC quotes", "zippy": "Zippy the Pinhead", "startrek": "Star Trek",
                   "paradoxum": "Paradoxes", "tao": "Tao", "kids": "Kids", "cookie": "Fortune cookies",
                   "fortunes": "Fortunes", "miscellaneous": "Miscellaneous", "platitudes": "Platitudes"}


def label_name(key: str) -> str:
    """Human label for a category key, e.g. 'fortune:men-women' -> 'Men and women'."""
    source, _, name = key.partition(":")
    if source != "fortune":
        raise ValueError(f"not a fortune key: {key!r}")
    return _FORTUNE_LABELS.get(name) or name.replace("-", " ").capitalize()


def regroupings(pools: Pools) -> list[Regrouping]:
    """fortunes: WordNet synonyms of the category names (a category file is all a fortune carries)."""
    return tidy(renames(pools, label_name), pools, label_name)
