"""One-line descriptions of Debian packages by archive section (``debian-pkg``), from the apt cache.

"sound" -> Audio; read with `apt-cache dumpavail` (the Makefile runs `apt-get update`).
Licence: Debian archive metadata (the Packages index of Debian main): each description belongs to its
package, under that package's DFSG-free licence (/usr/share/doc/<package>/copyright).
Taxonomies: archive sections (``Section:``); debtags, the archive's faceted tags of the same
packages (``Tag:``: ``use::editing``, ``works-with::audio``, ``game::puzzle`` ...).
Leak: 0.0% by construction: the reader masks the words of a class's label name (``masking``), as
benchmarks/results/sources.md (``python -m benchmarks.sources``) shows.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from typing import Iterator

from corpora.masking import mask_label_words, masked_classes
from corpora.regrouping import COMPUTING, Pools, Regrouping, renames, splits, tidy
from corpora.text import clean

LICENCE = "Debian archive metadata (apt-cache dumpavail, main): each package's own DFSG-free licence"
TAXONOMIES = {"debian-pkg": ("Debian archive sections", "WordNet synonyms", "debtags facets")}
LEAK = {"debian-pkg": 0.0}   # label words masked by the reader; benchmarks/results/sources.md, "mean leak"

# Debian archive sections -> what a person calls them (language-ecosystem sections are left out:
# their descriptions name the language in nearly every line, and "libs"/"oldlibs" are not topics).
DEBIAN_SECTIONS = {
    "admin": "System administration", "database": "Databases", "debug": "Debug symbols",
    "devel": "Software development", "doc": "Documentation", "editors": "Text editors",
    "electronics": "Electronics", "fonts": "Fonts", "games": "Games", "gnome": "GNOME desktop",
    "graphics": "Graphics", "hamradio": "Amateur radio", "httpd": "Web servers", "kde": "KDE desktop",
    "kernel": "Kernel and modules", "localization": "Translations", "mail": "Email", "math": "Mathematics",
    "net": "Networking", "science": "Science", "sound": "Audio", "tex": "TeX typesetting",
    "text": "Text processing", "utils": "Utilities", "vcs": "Version control", "video": "Video",
    "web": "Web software", "x11": "X Window System", "comm": "Communication", "otherosfs": "Emulators",
    "interpreters": "Interpreters", "lisp": "Lisp", "ocaml": "OCaml", "haskell": "Haskell", "perl": "Perl",
    "rust": "Rust crates", "golang": "Go", "javascript": "JavaScript", "java": "Java", "ruby": "Ruby",
    "gnu-r": "R statistics", "php": "PHP", "python": "Python",
}


def debian_package_classes(min_words: int = 4) -> dict[str, list[str]]:
    """Section -> short descriptions of the packages in it (each description once, first section wins)."""
    out: dict[str, list[str]] = {}
    for key, text, _ in _packages(min_words):
        out.setdefault(key, []).append(text)
    seen: set[str] = set()
    classes = {}
    for key in sorted(out):
        classes[key] = [t for t in dict.fromkeys(out[key]) if not (t in seen or seen.add(t))]
    return masked_classes(classes, label_name)


def _packages(min_words: int = 4) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(class key, description, debtags) of each package of the apt cache in a known section."""
    exe = shutil.which("apt-cache")
    if exe is None:
        raise FileNotFoundError("apt-cache not found: Debian package descriptions need apt")
    raw = subprocess.run([exe, "dumpavail"], capture_output=True, text=True, check=True).stdout
    for record in raw.split("\n\n"):
        fields = dict(re.findall(r"^(Section|Description): (.*)$", record, flags=re.M))
        section = fields.get("Section", "").rpartition("/")[2]
        text = clean(fields.get("Description", ""))
        if section in DEBIAN_SECTIONS and len(text.split()) >= min_words:
            tag = _TAG.search(record)
            tags = tuple(t.strip() for t in tag.group(1).split(",") if t.strip()) if tag else ()
            yield f"debian-pkg:{section}", text[:1].upper() + text[1:], tags


def label_name(key: str) -> str:
    """Human label for a section key, e.g. 'debian-pkg:sound' -> 'Audio'."""
    source, _, name = key.partition(":")
    if source != "debian-pkg":
        raise ValueError(f"not a Debian package key: {key!r}")
    return DEBIAN_SECTIONS[name]


_TAG = re.compile(r"^Tag: (.*(?:\n .*)*)", flags=re.M)   # a Tag field continues on indented lines
# debtags facets that say what a package is for; the others say how it is built or packaged
# (implemented-in::c, interface::x11, role::program, uitoolkit::gtk ...).
_TECHNICAL_FACETS = {"implemented-in", "interface", "role", "scope", "special", "suite", "uitoolkit", "made-of"}


def regroupings(pools: Pools) -> list[Regrouping]:
    """debian-pkg: WordNet synonyms of the labels' computing senses (topic domain computer science),
    else the section's own name ("sound" for Audio), and splits of a section by one debtags facet:
    the texts with exactly one tag of it, grouped by that tag; of a section's facets, the one whose
    splits cover most texts."""
    found = renames(pools, label_name, topics=COMPUTING, alternatives={key: [key.partition(":")[2]] for key in pools},
                    alternatives_taxonomy="Debian archive sections")
    tags: dict[str, dict[str, set[str]]] = {}
    for key, text, package_tags in _packages():
        if key in pools:
            for form in (text, *mask_label_words([text], label_name(key))):
                tags.setdefault(key, {}).setdefault(form, set()).update(package_tags)
    for key in sorted(pools):
        best: list[Regrouping] = []
        facets = sorted({t.partition("::")[0] for ts in tags.get(key, {}).values() for t in ts} - _TECHNICAL_FACETS)
        for facet in facets:
            group_of = {}
            for text in pools[key]:
                mine = [t for t in tags[key].get(text, ()) if t.partition("::")[0] == facet]
                if len(mine) == 1:
                    group_of[text] = mine[0]
            candidate = splits(pools, key, group_of, "debtags facets")
            if sum(len(r.texts) for r in candidate) > sum(len(r.texts) for r in best):
                best = candidate
        found += best
    return tidy(found, pools, label_name)
