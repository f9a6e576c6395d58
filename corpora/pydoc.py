"""First paragraphs of the docstrings of Python's standard library by module (``pydoc``).

"json" -> JSON encoding; read from the running interpreter (CPython 3.11), the module's own name and
dotted parts masked.
Licence: the CPython standard library's docstrings: PSF License Version 2 (the interpreter's
LICENSE.txt, e.g. /usr/lib/python3.11/LICENSE.txt).
Taxonomies: modules; the chapters of the Python 3.11 Library Reference that document them ("Text
Processing Services": re, difflib, textwrap, string ...; docs.python.org/3.11/library/index.html).
Leak: 0.0% by construction: the reader masks the words of a class's label name (``masking``), as
benchmarks/results/sources.md (``python -m benchmarks.sources``) shows.
"""
from __future__ import annotations

import importlib
import inspect
import re
import warnings

from corpora.masking import MASK, masked_classes
from corpora.regrouping import COMPUTING, Pools, Regrouping, merges, renames, tidy
from corpora.text import clean

LICENCE = "CPython 3.11 standard library docstrings: PSF License Version 2 (the interpreter's LICENSE.txt)"
TAXONOMIES = {"pydoc": ("standard-library modules", "WordNet synonyms", "Python Library Reference chapters")}
LEAK = {"pydoc": 0.0}   # label words masked by the reader; benchmarks/results/sources.md, "mean leak"

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
    return clean(inspect.cleandoc(doc or "").split("\n\n")[0]) if doc else ""


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
    return masked_classes(out, label_name)


def label_name(key: str) -> str:
    """Human label for a module key, e.g. 'pydoc:json' -> 'JSON encoding'."""
    source, _, name = key.partition(":")
    if source != "pydoc":
        raise ValueError(f"not a pydoc key: {key!r}")
    return PYDOC_MODULES[name]


# The chapters of "The Python Standard Library" (3.11, docs.python.org/3.11/library/index.html) that
# document the modules above, by their headings.
CHAPTERS = {
    "Text Processing Services": ("string", "re", "difflib", "textwrap"),
    "Binary Data Services": ("codecs",),
    "Data Types": ("datetime", "calendar", "collections", "heapq", "bisect", "array", "enum"),
    "Numeric and Mathematical Modules": ("decimal", "fractions", "random", "statistics"),
    "Functional Programming Modules": ("itertools", "functools"),
    "File and Directory Access": ("pathlib", "tempfile", "shutil"),
    "Data Persistence": ("pickle", "sqlite3"),
    "Data Compression and Archiving": ("zipfile", "tarfile"),
    "File Formats": ("csv", "configparser"),
    "Generic Operating System Services": ("os", "argparse", "logging"),
    "Concurrent Execution": ("threading", "multiprocessing", "concurrent.futures", "subprocess", "queue"),
    "Networking and Interprocess Communication": ("asyncio", "socket"),
    "Internet Data Handling": ("email", "json", "mailbox"),
    "Structured Markup Processing Tools": ("xml.etree.ElementTree",),
    "Internet Protocols and Support": ("urllib.request", "http.client", "ftplib", "imaplib", "smtplib", "ipaddress"),
    "Multimedia Services": ("wave",),
    "Internationalization": ("gettext", "locale"),
    "Program Frameworks": ("turtle",),
    "Graphical User Interfaces with Tk": ("tkinter",),
    "Development Tools": ("typing", "pydoc", "doctest", "unittest"),
    "Debugging and Profiling": ("pdb",),
    "Python Runtime Services": ("dataclasses", "contextlib", "inspect"),
    "Importing Modules": ("importlib",),
    "Python Language Services": ("ast",),
    "Superseded Modules": ("optparse",),
}


def regroupings(pools: Pools) -> list[Regrouping]:
    """pydoc: WordNet synonyms of the labels' computing senses, and merges by the Library
    Reference's chapters."""
    found = renames(pools, label_name, topics=COMPUTING)
    chapters = {title: [f"pydoc:{m}" for m in modules] for title, modules in CHAPTERS.items()}
    found += merges(pools, chapters, "Python Library Reference chapters")
    return tidy(found, pools, label_name)
