"""Opening files that come from outside: regular files only, never through a symlink, never
blocking on a pipe, read in chunks with a byte limit enforced while reading; and writing a file
so that it appears whole or not at all."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from workspace.errors import UserError

CHUNK = 1 << 20


@contextmanager
def open_regular(path: Path):
    """An fd of ``path`` if it is a regular file, opened without following a symlink and without
    blocking on a pipe, so nothing outside the named file is ever read."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{path} is a symbolic link: pass the file itself, not a link to it") from None
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UserError(f"{path} is a folder: pass a .csv or .jsonl file")
        if not stat.S_ISREG(mode):
            raise UserError(f"{path} is not a regular file (a pipe, socket or device): pass a saved file")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        yield fd
    finally:
        os.close(fd)


def too_big(path: Path, limit: int) -> UserError:
    return UserError(f"{path} is over the {limit / 2**20:g} MB limit (limits.max_file_mb in params.yaml): "
                     "pass only the tenant's labelled examples")


def read_limited(path: Path, limit: int) -> tuple[bytes, str]:
    """The file's bytes and md5, read in chunks; refused as soon as it passes ``limit`` bytes."""
    with open_regular(path) as fd:
        if os.fstat(fd).st_size > limit:
            raise too_big(path, limit)
        digest, parts, total = hashlib.md5(), [], 0
        try:
            while block := os.read(fd, CHUNK):
                total += len(block)
                if total > limit:  # the file grew, or its size was not what fstat said (/proc)
                    raise too_big(path, limit)
                digest.update(block)
                parts.append(block)
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    return b"".join(parts), digest.hexdigest()


def stream_copy(src: Path, dest_fd: int, limit: int) -> tuple[str, int]:
    """Copy a regular file into ``dest_fd`` in chunks, refusing links and devices and stopping
    past ``limit`` bytes; the md5 and size of what was copied."""
    with open_regular(Path(src)) as fd:
        digest, total = hashlib.md5(), 0
        try:
            while block := os.read(fd, CHUNK):
                total += len(block)
                if total > limit:
                    raise too_big(Path(src), limit)
                digest.update(block)
                os.write(dest_fd, block)
        except OSError as exc:
            raise UserError(f"cannot read {src}: {exc.strerror or exc}") from None
    return digest.hexdigest(), total


@contextmanager
def atomic_file(dst: Path, mode: str = "wb", folder: Path | None = None, prefix: str | None = None,
                suffix: str = "", **open_kw):
    """A file object whose bytes replace ``dst`` only when the block ends without error: written
    to a temporary file in ``folder`` (default: beside ``dst``; it must be on the same
    filesystem), fsynced, then renamed into place. On any error the temporary file is removed and
    ``dst`` keeps its old content."""
    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(dir=folder or dst.parent, prefix=prefix or f".{dst.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, mode, **open_kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (deltas and bases are checked with it, with or
    without torch loaded)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
