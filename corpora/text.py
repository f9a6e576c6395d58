"""What the readers share: whitespace cleaning, and the error that names a missing Debian package."""
from __future__ import annotations

import re
from pathlib import Path

_SPACES = re.compile(r"\s+")


def clean(text: str) -> str:
    """Runs of whitespace (newlines included) as one space, the ends stripped."""
    return _SPACES.sub(" ", text).strip()


def missing(package: str, path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"{path} not found: run `make setup` (it installs Debian's {package})")
