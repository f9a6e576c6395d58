"""A byte search of a whole workspace, for the erasure tests: every file as it lies on disk (sqlite
databases with their free pages and journals, the DVC cache and remote, MLflow's artifacts,
Prefect's database, pages, logs), gzip files unpacked, and every git object decompressed (loose
objects and packs are zlib-compressed, so a plain byte search of .git would miss them)."""
from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path


def _place(root: Path, path: Path) -> str:
    """The store a file belongs to, for messages: ``.tailor/mlflow.db``, ``.dvc/cache``, ..."""
    rel = path.relative_to(root).as_posix()
    for prefix in (".dvc/cache", ".tailor/dvc-remote", ".tailor/mlartifacts", ".tailor/prefect", ".tailor/data_docs",
                   ".tailor/gx", ".tailor/quarantine", ".tailor/logs", ".tailor/cache", ".tailor/runs", "data/tenants"):
        if rel.startswith(prefix):
            return prefix
    return rel


def occurrences(root: Path, needles: list[bytes]) -> dict[str, dict[str, int]]:
    """needle (decoded) -> {file (relative) or "git objects": how many times it occurs}."""
    root = Path(root)
    found: dict[str, dict[str, int]] = {n.decode(): {} for n in needles}

    def count(where: str, blob: bytes) -> None:
        for n in needles:
            k = blob.count(n)
            if k:
                found[n.decode()][where] = found[n.decode()].get(where, 0) + k

    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            blob = path.read_bytes()
            where = path.relative_to(root).as_posix()
            count(where, blob)
            if blob[:2] == b"\x1f\x8b":
                try:
                    count(where + " (gunzipped)", gzip.decompress(blob))
                except (OSError, EOFError):
                    pass
    if (root / ".git").exists():
        objects = subprocess.run(["git", "-C", str(root), "cat-file", "--batch-all-objects", "--batch"],
                                 capture_output=True, check=True).stdout
        count("git objects", objects)
    return found


def stores(root: Path, hits: dict[str, int]) -> set[str]:
    """The stores (``_place``) of the files in ``hits``."""
    return {h if h == "git objects" else _place(Path(root), Path(root) / h.removesuffix(" (gunzipped)")) for h in hits}
