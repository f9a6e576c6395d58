"""Definitions of GCIDE, the GNU Collaborative International Dictionary of English, by field (``gcide``).

A definition tagged "(Zool.)" is a text of the class Zoology; the tag itself is removed.
Licence: Debian's ``dict-gcide``: GPL-2+ (/usr/share/doc/dict-gcide/copyright).
Taxonomies: the dictionary's field tags ("Zool.", "Bot.", "Law" ...).
Leak: 0.0% by construction: the reader masks the words of a class's label name (``masking``), as
benchmarks/results/sources.md (``python -m benchmarks.sources``) shows.
"""
from __future__ import annotations

import gzip
import re
from pathlib import Path

from corpora.masking import masked_classes
from corpora.regrouping import Pools, Regrouping, renames, tidy
from corpora.text import clean, missing

LICENCE = "dict-gcide (Debian): GPL-2+ (/usr/share/doc/dict-gcide/copyright)"
TAXONOMIES = {"gcide": ("GCIDE field tags", "WordNet synonyms")}
LEAK = {"gcide": 0.0}   # label words masked by the reader; benchmarks/results/sources.md, "mean leak"
GCIDE_DICT = Path("/usr/share/dictd/gcide.dict.dz")

# GCIDE field tags (at least ~40 definitions each) -> what a person calls the field.
GCIDE_LABELS = {
    "Zool.": "Zoology", "Bot.": "Botany", "Med.": "Medicine", "Law": "Law", "Anat.": "Anatomy",
    "Chem.": "Chemistry", "Naut.": "Nautical", "Mus.": "Music", "Biol.": "Biology", "Arch.": "Architecture",
    "Mil.": "Military", "Physiol.": "Physiology", "Math.": "Mathematics", "Astron.": "Astronomy",
    "Min.": "Mineralogy", "Mining": "Mining", "Physics": "Physics", "Her.": "Heraldry", "Gram.": "Grammar",
    "Geom.": "Geometry", "Mach.": "Machinery", "Eccl.": "Church", "Geol.": "Geology", "Mech.": "Mechanics",
    "Print.": "Printing", "Surg.": "Surgery", "Logic": "Logic", "Computers": "Computers",
    "Elec.": "Electricity", "Theol.": "Theology", "Fort.": "Fortification", "Com.": "Commerce",
    "Crystallog.": "Crystallography", "Rhet.": "Rhetoric", "Rom. Antiq.": "Roman antiquity",
    "Paleon.": "Paleontology", "Cookery": "Cooking", "Fine Arts": "Fine arts", "Far.": "Farriery",
    "Metaph.": "Metaphysics", "Metal.": "Metallurgy", "Carp.": "Carpentry", "Photog.": "Photography",
    "Class. Myth.": "Classical mythology", "Shipbuilding": "Shipbuilding", "Astrol.": "Astrology",
}
_GCIDE_DEF = re.compile(r"^(?:\d+\.\s*)?(?:\([a-z]\)\s*)?\(([A-Z][A-Za-z. ]+?)\)\s+(.*)$")
_GCIDE_END = re.compile(r"\s(?:--|\[|Syn\.|Note:)|;\s+as,\s")


def gcide_classes(path: Path = GCIDE_DICT, min_words: int = 5, max_words: int = 60) -> dict[str, list[str]]:
    """Field -> definitions tagged with it, the tag removed and the definition cut at its first
    citation ("--Shak."), note or example ("; as, ...")."""
    path = Path(path)
    if not path.is_file():
        raise missing("dict-gcide", path)
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    out: dict[str, list[str]] = {}
    para: list[str] = []

    def flush() -> None:
        text = clean(" ".join(para))
        para.clear()
        m = _GCIDE_DEF.match(text)
        if not m or m.group(1) not in GCIDE_LABELS:
            return
        body = _GCIDE_END.split(" " + m.group(2), maxsplit=1)[0].strip()
        body = re.sub(r"\([A-Z][A-Za-z. ]+?\)\s*", "", body).strip()  # a second tag
        if min_words <= len(body.split()) <= max_words:
            out.setdefault(f"gcide:{m.group(1)}", []).append(body)

    for line in lines:
        s = line.strip()
        # a definition starts with "1. (Zool.)" / "(Zool.)" / "(a) (Zool.)" on an indented line
        if not s or not line.startswith(" ") or re.match(r"^(?:\d+\.|\([a-z]\))\s", s) or s.startswith("[1913"):
            flush()
            if s and line.startswith(" ") and not s.startswith("["):
                para.append(s)
        elif para:
            para.append(s)
        elif s.startswith("("):
            para.append(s)
    flush()
    return masked_classes({k: list(dict.fromkeys(v)) for k, v in sorted(out.items())}, label_name)


def label_name(key: str) -> str:
    """Human label for a field key, e.g. 'gcide:Zool.' -> 'Zoology'."""
    source, _, name = key.partition(":")
    if source != "gcide":
        raise ValueError(f"not a GCIDE key: {key!r}")
    return GCIDE_LABELS[name]


def regroupings(pools: Pools) -> list[Regrouping]:
    """gcide: WordNet synonyms of the fields' names, their sense as a discipline (noun.cognition:
    botany the science, not the flora) where WordNet has one (a field tag is all a definition carries)."""
    found = renames(pools, label_name, lexnames=lambda key: ("noun.cognition",))
    done = {r.members[0] for r in found}
    found += renames({k: v for k, v in pools.items() if k not in done}, label_name)
    return tidy(found, pools, label_name)
