"""One-line descriptions of Debian packages by archive section (``debian-pkg``), from the apt cache.

"sound" -> Audio; read with `apt-cache dumpavail` (the Makefile runs `apt-get update`).
Licence: Debian archive metadata (the Packages index of Debian main): each description belongs to its
package, under that package's DFSG-free licence (/usr/share/doc/<package>/copyright).
Taxonomies: archive sections (``Section:``).
Leak: 0.0% by construction: the reader masks the words of a class's label name (``masking``), as
benchmarks/results/sources.md (``python -m benchmarks.sources``) shows.
"""
from __future__ import annotations

import re
import shutil
import subprocess

from corpora.masking import masked_classes
from corpora.text import clean

LICENCE = "Debian archive metadata (apt-cache dumpavail, main): each package's own DFSG-free licence"
TAXONOMIES = {"debian-pkg": ("Debian archive sections",)}
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
    exe = shutil.which("apt-cache")
    if exe is None:
        raise FileNotFoundError("apt-cache not found: Debian package descriptions need apt")
    raw = subprocess.run([exe, "dumpavail"], capture_output=True, text=True, check=True).stdout
    out: dict[str, list[str]] = {}
    for record in raw.split("\n\n"):
        fields = dict(re.findall(r"^(Section|Description): (.*)$", record, flags=re.M))
        section = fields.get("Section", "").rpartition("/")[2]
        text = clean(fields.get("Description", ""))
        if section in DEBIAN_SECTIONS and len(text.split()) >= min_words:
            out.setdefault(f"debian-pkg:{section}", []).append(text[:1].upper() + text[1:])
    seen: set[str] = set()
    classes = {}
    for key in sorted(out):
        classes[key] = [t for t in dict.fromkeys(out[key]) if not (t in seen or seen.add(t))]
    return masked_classes(classes, label_name)


def label_name(key: str) -> str:
    """Human label for a section key, e.g. 'debian-pkg:sound' -> 'Audio'."""
    source, _, name = key.partition(":")
    if source != "debian-pkg":
        raise ValueError(f"not a Debian package key: {key!r}")
    return DEBIAN_SECTIONS[name]
