"""More real labelled text read offline, for meta-learning over many label sets (issue 22):

* ``gcide``: definitions of the GNU Collaborative International Dictionary of English (Debian's
  `dict-gcide`) by the field tag they carry, "(Zool.)" -> Zoology; the tag itself is removed.
* ``debian-pkg``: one-line descriptions of Debian packages by archive section ("sound" -> Audio and
  sound), from the apt cache (`apt-cache dumpavail`; the Makefile runs `apt-get update`).
* ``pydoc``: first paragraphs of the docstrings of Python's standard library by module ("json" ->
  JSON encoding), from the interpreter itself.

Readers return class key -> distinct texts, keys prefixed with the source ("gcide:Zool.").
``mask_label_words`` blanks the words of a class's own label name in its texts, so a text does
not name its class (the leak share of ``leak_share`` is then zero by construction).
"""
from __future__ import annotations

import gzip
import importlib
import inspect
import re
import shutil
import subprocess
import warnings
from pathlib import Path

GCIDE_DICT = Path("/usr/share/dictd/gcide.dict.dz")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[A-Za-z]+")
MASK = "___"
STOPWORDS = frozenset(
    "a an and the of in on for to with by or as at from is are be this that it its into other others "
    "general misc miscellaneous".split())


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


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
    stems = label_stems(label)
    sub = lambda m: MASK if stem(m.group(0)) in stems else m.group(0)  # noqa: E731
    return list(dict.fromkeys(_WORD.sub(sub, t) for t in texts))


def _masked(classes: dict[str, list[str]]) -> dict[str, list[str]]:
    """Label words masked, and a text found in two classes dropped from both (its label is ambiguous)."""
    masked = {k: mask_label_words(v, more_label_name(k)) for k, v in classes.items()}
    count: dict[str, int] = {}
    for texts in masked.values():
        for t in texts:
            count[t] = count.get(t, 0) + 1
    return {k: [t for t in v if count[t] == 1] for k, v in masked.items()}


def _missing(package: str, path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"{path} not found: run `make setup` (it installs Debian's {package})")


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
        raise _missing("dict-gcide", path)
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    out: dict[str, list[str]] = {}
    para: list[str] = []

    def flush() -> None:
        text = _clean(" ".join(para))
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
    return _masked({k: list(dict.fromkeys(v)) for k, v in sorted(out.items())})


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
        text = _clean(fields.get("Description", ""))
        if section in DEBIAN_SECTIONS and len(text.split()) >= min_words:
            out.setdefault(f"debian-pkg:{section}", []).append(text[:1].upper() + text[1:])
    seen: set[str] = set()
    classes = {}
    for key in sorted(out):
        classes[key] = [t for t in dict.fromkeys(out[key]) if not (t in seen or seen.add(t))]
    return _masked(classes)


# Standard-library modules -> a human name for what they do.
PYDOC_MODULES = {
    "os": "Operating system interface", "pathlib": "Filesystem paths", "re": "Regular expressions",
    "json": "JSON encoding", "datetime": "Dates and times", "collections": "Container datatypes",
    "itertools": "Iterator building blocks", "functools": "Higher-order functions",
    "subprocess": "Running processes", "threading": "Threads", "asyncio": "Asynchronous I/O",
    "socket": "Network sockets", "email": "Email messages", "http.client": "HTTP client",
    "urllib.request": "Opening URLs", "xml.etree.ElementTree": "XML trees", "sqlite3": "SQLite database",
    "csv": "CSV files", "zipfile": "ZIP archives", "tarfile": "Tar archives", "logging": "Logging",
    "unittest": "Unit testing", "argparse": "Command-line parsing", "decimal": "Decimal arithmetic",
    "fractions": "Rational numbers", "statistics": "Statistics", "random": "Random numbers",
    "shutil": "High-level file operations", "tempfile": "Temporary files", "typing": "Type hints",
    "inspect": "Inspecting live objects", "ast": "Syntax trees", "tkinter": "GUI toolkit",
    "turtle": "Turtle graphics", "imaplib": "IMAP mailboxes", "smtplib": "Sending mail",
    "ftplib": "FTP client", "mailbox": "Mailbox formats", "calendar": "Calendars",
    "configparser": "Configuration files", "pickle": "Object serialization", "doctest": "Docstring tests",
    "pdb": "Debugger", "difflib": "Comparing sequences", "textwrap": "Wrapping text",
    "string": "String utilities", "codecs": "Codec registry", "ipaddress": "IP addresses",
    "multiprocessing": "Process-based parallelism", "concurrent.futures": "Futures and executors",
    "enum": "Enumerations", "dataclasses": "Data classes", "contextlib": "Context managers",
    "heapq": "Heap queue", "bisect": "Sorted lists", "array": "Typed arrays", "queue": "Queues",
    "wave": "WAV audio files", "gettext": "Internationalization", "locale": "Locale settings",
    "optparse": "Option parsing (legacy)", "importlib": "Importing modules", "pydoc": "Documentation generator",
}
_MODULE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _first_paragraph(doc: str | None) -> str:
    return _clean(inspect.cleandoc(doc or "").split("\n\n")[0]) if doc else ""


def pydoc_classes(min_words: int = 5, max_words: int = 80) -> dict[str, list[str]]:
    """Module -> first paragraphs of the docstrings of its public classes, functions and methods
    (defined in that module), the module's own name and dotted parts replaced by ``MASK``."""
    out: dict[str, list[str]] = {}
    for name in PYDOC_MODULES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                mod = importlib.import_module(name)
            except ImportError:  # tkinter without Tk, for instance: the class is just absent
                continue
        parts = {p.lower() for p in name.split(".")}
        texts = []
        objects = [getattr(mod, a, None) for a in sorted(vars(mod)) if not a.startswith("_")]
        for obj in list(objects):
            if inspect.isclass(obj):
                objects += [v for a, v in sorted(vars(obj).items()) if not a.startswith("_") and callable(v)]
        for obj in objects:
            if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue
            owner = getattr(obj, "__module__", None) or ""
            if owner != name and not owner.startswith(name + ".") and not owner.startswith("_" + name):
                continue
            text = _first_paragraph(getattr(obj, "__doc__", None))
            text = _MODULE_WORD.sub(lambda m: MASK if m.group(0).lower() in parts else m.group(0), text)
            if min_words <= len(text.split()) <= max_words:
                texts.append(text)
        out[f"pydoc:{name}"] = list(dict.fromkeys(texts))
    return _masked(out)


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
        raise _missing("dict-vera", path)
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    out: dict[str, list[str]] = {}
    body: list[str] = []

    def flush() -> None:
        text = _clean(" ".join(body))
        body.clear()
        m = _VERA_TAG.search(text)
        tag = m.group(1).split(",")[0].strip() if m else ""
        if tag in VERA_LABELS:
            expansion = _clean(_PARENS.sub(" ", text))
            if len(expansion.split()) >= min_words:
                out.setdefault(f"vera:{tag}", []).append(expansion)

    for line in lines:
        if line.startswith(" ") or line.startswith("("):
            if line.strip():
                body.append(line.strip())
        else:
            flush()
    flush()
    return _masked({k: list(dict.fromkeys(v)) for k, v in sorted(out.items())})


def more_label_name(key: str) -> str | None:
    """Human label for a class key of these sources, or None if the key is not theirs."""
    source, _, name = key.partition(":")
    if source == "gcide":
        return GCIDE_LABELS[name]
    if source == "debian-pkg":
        return DEBIAN_SECTIONS[name]
    if source == "pydoc":
        return PYDOC_MODULES[name]
    if source == "vera":
        return VERA_LABELS[name]
    return None


READERS = {"gcide": gcide_classes, "debian-pkg": debian_package_classes, "pydoc": pydoc_classes, "vera": vera_classes}
