"""Acronym expansions of V.E.R.A. (Virtual Entity of Relevant Acronyms) by context tag (``vera``).

"Advanced Vector eXtensions (CPU, Intel)" is a text of the class Processors (its first tag).
Licence: Debian's ``dict-vera``: GFDL-1.1+ with no invariant sections (Oliver Heidelbach;
/usr/share/doc/dict-vera/copyright).
Taxonomies: the first context tag of an expansion ("MS", "CPU", "org." ...).
Leak: 0.0% by construction: the reader masks the words of a class's label name (``masking``), as
benchmarks/results/sources.md (``python -m benchmarks.sources``) shows.
"""
from __future__ import annotations

import gzip
import re
from pathlib import Path

from corpora.masking import masked_classes
from corpora.regrouping import COMPUTING, Pools, Regrouping, renames, tidy
from corpora.text import clean, missing

LICENCE = "dict-vera (Debian): GFDL-1.1+, no invariant sections (/usr/share/doc/dict-vera/copyright)"
TAXONOMIES = {"vera": ("V.E.R.A. context tags", "WordNet synonyms")}
LEAK = {"vera": 0.0}   # label words masked by the reader; benchmarks/results/sources.md, "mean leak"
VERA_DICT = Path("/usr/share/dictd/vera.dict.dz")
# V.E.R.A. context tags (the first one of an expansion's "(MS, Windows)") -> a human name.
VERA_LABELS = {
    "org.": "Organizations", "MS": "Microsoft", "IBM": "IBM", "slang": "Slang", "Intel": "Intel",
    "OS": "Operating systems", "IC": "Integrated circuits", "Linux": "Linux", "Internet": "Internet",
    "manufacturer": "Manufacturers", "Unix": "Unix", "CPU": "Processors", "ATM": "ATM networks",
    "Java": "Java", "Apple": "Apple", "WWW": "World Wide Web", "Novell": "Novell", "DB": "Databases",
    "cryptography": "Cryptography", "USA": "United States", "OSI": "OSI model", "mil.": "Military",
    "TZ": "Time zones", "DEC": "Digital Equipment", "network": "Networking", "mobile-systems": "Mobile phones",
    "Sun": "Sun Microsystems", "UNI": "Universities", "GNU": "GNU", "XML": "XML", "HP": "Hewlett-Packard",
    "MODEM": "Modems", "telecommunication": "Telecommunication", "ISO": "ISO standards",
    "WLAN": "Wireless LAN", "RAM": "Memory chips", "ISDN": "ISDN", "HDD": "Hard disks", "Android": "Android",
    "Adobe": "Adobe", "Bluetooth": "Bluetooth", "DVD": "DVD", "Cisco": "Cisco", "SAP": "SAP",
}
_VERA_TAG = re.compile(r"\(([^()]+)\)\s*$")
_PARENS = re.compile(r"\([^()]*\)|\[[^\]]*\]")


def vera_classes(path: Path = VERA_DICT, min_words: int = 2) -> dict[str, list[str]]:
    """Context tag -> acronym expansions of V.E.R.A. (Debian's `dict-vera`) carrying it first,
    parentheses and brackets removed ("Advanced Vector eXtensions (CPU, Intel)" -> CPU)."""
    path = Path(path)
    if not path.is_file():
        raise missing("dict-vera", path)
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    out: dict[str, list[str]] = {}
    body: list[str] = []

    def flush() -> None:
        text = clean(" ".join(body))
        body.clear()
        m = _VERA_TAG.search(text)
        tag = m.group(1).split(",")[0].strip() if m else ""
        if tag in VERA_LABELS:
            expansion = clean(_PARENS.sub(" ", text))
            if len(expansion.split()) >= min_words:
                out.setdefault(f"vera:{tag}", []).append(expansion)

    for line in lines:
        if line.startswith(" ") or line.startswith("("):
            if line.strip():
                body.append(line.strip())
        else:
            flush()
    flush()
    return masked_classes({k: list(dict.fromkeys(v)) for k, v in sorted(out.items())}, label_name)


def label_name(key: str) -> str:
    """Human label for a context-tag key, e.g. 'vera:CPU' -> 'Processors'."""
    source, _, name = key.partition(":")
    if source != "vera":
        raise ValueError(f"not a V.E.R.A. key: {key!r}")
    return VERA_LABELS[name]


def regroupings(pools: Pools) -> list[Regrouping]:
    """vera: WordNet synonyms of the labels' computing senses, else the context tag itself ("CPU"
    for Processors); an expansion's other tags are no second taxonomy (most carry one or two)."""
    tags = {key: [key.partition(":")[2].rstrip(".")] for key in pools}
    found = renames(pools, label_name, topics=COMPUTING, alternatives=tags,
                    alternatives_taxonomy="V.E.R.A. context tags")
    return tidy(found, pools, label_name)
