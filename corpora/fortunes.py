"""More real text from Debian packages, read offline: fortunes by category (`fortunes`), Bible verses
by book (`bible-kjv` + `bible-kjv-text`) and the computing dictionary FOLDOC by subject (`dict-foldoc`).

Each reader returns class key -> distinct texts, keys prefixed with the source ("fortune:love").
The Makefile installs the packages; a missing one is a clear error naming it.
"""
from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path

FORTUNE_DIR = Path("/usr/share/games/fortunes")
FOLDOC_DICT = Path("/usr/share/dictd/foldoc.dict.dz")

# Categories that are not prose (ascii-art), nearly empty, not English, or boilerplate.
_FORTUNE_SKIP = {"ascii-art", "translate-me", "pratchett", "disclaimer", "magic", "goedel"}
_ATTRIBUTION = re.compile(r"^\s*(--|~~|-)\s*\S.*$")
_SPACES = re.compile(r"\s+")


def _missing(package: str, path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"{path} not found: run `make setup` (it installs Debian's {package})")


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def fortune_classes(fortune_dir: Path = FORTUNE_DIR, min_words: int = 5, max_chars: int = 400) -> dict[str, list[str]]:
    """Category -> fortunes. Attribution lines ("-- Mark Twain") are dropped: a name would decide
    the class by itself; very long fortunes (stories, poems) are skipped."""
    fortune_dir = Path(fortune_dir)
    if not (fortune_dir / "people").is_file():
        raise _missing("fortunes", fortune_dir / "people")
    out: dict[str, list[str]] = {}
    for path in sorted(fortune_dir.iterdir()):
        if path.suffix or path.name in _FORTUNE_SKIP or not path.is_file():
            continue
        raw = path.read_bytes().decode("utf-8", errors="replace")
        texts = []
        for entry in raw.split("\n%\n"):
            lines = [ln for ln in entry.strip("%\n").splitlines() if not _ATTRIBUTION.match(ln)]
            text = _clean(" ".join(lines))
            if len(text.split()) >= min_words and len(text) <= max_chars:
                texts.append(text)
        out[f"fortune:{path.name}"] = list(dict.fromkeys(texts))
    return out


# Book abbreviations as the `bible` program prints them, in canonical order.
BIBLE_BOOKS = {
    "Ge": "Genesis", "Exo": "Exodus", "Lev": "Leviticus", "Num": "Numbers", "Deu": "Deuteronomy",
    "Josh": "Joshua", "Jdgs": "Judges", "Ruth": "Ruth", "1Sam": "1 Samuel", "2Sam": "2 Samuel",
    "1Ki": "1 Kings", "2Ki": "2 Kings", "1Chr": "1 Chronicles", "2Chr": "2 Chronicles", "Ezra": "Ezra",
    "Neh": "Nehemiah", "Est": "Esther", "Job": "Job", "Psa": "Psalms", "Prv": "Proverbs",
    "Eccl": "Ecclesiastes", "SSol": "Song of Solomon", "Isa": "Isaiah", "Jer": "Jeremiah",
    "Lam": "Lamentations", "Eze": "Ezekiel", "Dan": "Daniel", "Hos": "Hosea", "Joel": "Joel",
    "Amos": "Amos", "Obad": "Obadiah", "Jonah": "Jonah", "Mic": "Micah", "Nahum": "Nahum", "Hab": "Habakkuk",
    "Zep": "Zephaniah", "Hag": "Haggai", "Zec": "Zechariah", "Mal": "Malachi", "Mat": "Matthew",
    "Mark": "Mark", "Luke": "Luke", "John": "John", "Acts": "Acts", "Rom": "Romans",
    "1Cor": "1 Corinthians", "2Cor": "2 Corinthians", "Gal": "Galatians", "Eph": "Ephesians",
    "Phi": "Philippians", "Col": "Colossians", "1Th": "1 Thessalonians", "2Th": "2 Thessalonians",
    "1Tim": "1 Timothy", "2Tim": "2 Timothy", "Titus": "Titus", "Phmn": "Philemon", "Heb": "Hebrews",
    "Jas": "James", "1Pet": "1 Peter", "2Pet": "2 Peter", "1Jn": "1 John", "2Jn": "2 John", "3Jn": "3 John",
    "Jude": "Jude", "Rev": "Revelation",
}
_VERSE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def bible_classes(min_words: int = 8) -> dict[str, list[str]]:
    """Book -> verses of the King James Version, from Debian's `bible` program and its text."""
    exe = shutil.which("bible")
    if exe is None:
        raise _missing("bible-kjv", Path("/usr/bin/bible"))
    raw = subprocess.run([exe, "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    out: dict[str, list[str]] = {}
    for line in raw.splitlines():
        m = _VERSE.match(line.strip())
        if m and m.group(1) in BIBLE_BOOKS:
            text = _clean(m.group(4))
            if len(text.split()) >= min_words:
                out.setdefault(f"bible:{BIBLE_BOOKS[m.group(1)]}", []).append(text)
    return {k: list(dict.fromkeys(v)) for k, v in out.items()}


_TAG = re.compile(r"^\s*(?:\d+\.\s*)?<([a-z][a-z ]+)>\s*")
_BRACES = re.compile(r"[{}]")
_CITATION = re.compile(r"\[[^\]]*\]|\([^)]*https?://[^)]*\)|https?://\S+")


def foldoc_classes(path: Path = FOLDOC_DICT, min_words: int = 6, max_words: int = 60) -> dict[str, list[str]]:
    """Subject -> first paragraph of each FOLDOC entry tagged with it (the tag itself removed,
    cross-reference braces dropped, citations and URLs removed)."""
    path = Path(path)
    if not path.is_file():
        raise _missing("dict-foldoc", path)
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    out: dict[str, list[str]] = {}
    para: list[str] = []

    def flush() -> None:
        m = _TAG.match(para[0]) if para else None
        if m:
            text = _clean(_CITATION.sub(" ", _BRACES.sub("", " ".join(para)[m.end():])))
            if min_words <= len(text.split()) <= max_words:
                out.setdefault(f"foldoc:{m.group(1)}", []).append(text)
        para.clear()

    for line in lines:
        if not line.strip() or not line.startswith(" "):  # blank line or a new headword
            flush()
        else:
            para.append(line.strip())
    flush()
    return {k: list(dict.fromkeys(v)) for k, v in sorted(out.items())}


# Fortune file names as a person would label them.
_FORTUNE_LABELS = {"men-women": "Men and women", "songs-poems": "Songs and poems", "linuxcookie": "Linux cookies",
                   "knghtbrd": "IRC quotes", "zippy": "Zippy the Pinhead", "startrek": "Star Trek",
                   "paradoxum": "Paradoxes", "tao": "Tao", "kids": "Kids", "cookie": "Fortune cookies",
                   "fortunes": "Fortunes", "miscellaneous": "Miscellaneous", "platitudes": "Platitudes"}


def debian_label_name(key: str) -> str | None:
    """Human label for a class key of these sources, or None if the key is not theirs."""
    source, _, name = key.partition(":")
    if source == "fortune":
        return _FORTUNE_LABELS.get(name) or name.replace("-", " ").capitalize()
    if source == "bible":
        return name
    if source == "foldoc":
        return name[:1].upper() + name[1:]
    return None
