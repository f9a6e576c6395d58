"""git plumbing for the data plane: quiet subprocess calls, batched blob reads, .gitignore lines."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from workspace.paths import Workspace


class VersioningError(RuntimeError):
    """git or DVC failed in a way the user's input does not explain."""


def ensure_line(path: Path, line: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    if line not in lines:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([*lines, line]) + "\n", encoding="utf-8")


def remove_line(path: Path, line: str) -> None:
    if path.exists():
        lines = path.read_text(encoding="utf-8").splitlines()
        if line in lines:
            path.write_text("".join(f"{x}\n" for x in lines if x != line), encoding="utf-8")


def git(ws: Workspace, *args: str, check: bool = True, rc: bool = False):
    """Run git in the workspace; output is returned, never shown. ``rc=True`` returns the code."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    done = subprocess.run(["git", "-C", str(ws.root), *args], capture_output=True, text=True, env=env)
    if rc:
        return done.returncode
    if check and done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise VersioningError(f"git {args[0]} failed: {detail}")
    return done.stdout.strip() if done.returncode == 0 else ""


def author(person: str) -> str:
    """A git ``--author`` for the person who acted (``--user``/``TAILOR_USER``): their name, no
    address (git records who committed, this records who asked). Angle brackets and newlines,
    which git's author line cannot hold, are dropped."""
    name = "".join(ch for ch in str(person) if ch not in "<>\n\r").strip() or "unknown"
    return f"{name} <>"


def git_blobs(ws: Workspace, specs: list[str]) -> list[str | None]:
    """Contents of ``<rev>:<path>`` specs in one ``git cat-file --batch`` call (None if absent)."""
    if not specs:
        return []
    done = subprocess.run(["git", "-C", str(ws.root), "cat-file", "--batch"], capture_output=True,
                          input="".join(f"{s}\n" for s in specs).encode(), check=True)
    out, pos, texts = done.stdout, 0, []
    for _ in specs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            texts.append(out[end + 1:end + 1 + size].decode("utf-8"))
            pos = end + 1 + size + 1
        else:  # "<spec> missing" (or not a blob)
            texts.append(None)
            pos = end + 1
    return texts
