"""Every file a command writes because a person asked for it (``predict --out``, ``lineage --html``):
never one of the workspace's own files or folders, never anything but a regular file replaced,
and an existing file only with ``--force``.

A new or replaced regular file is written beside its final name and moved into place whole (a
crash leaves the old file, or none). A character device or a FIFO (``/dev/null``, ``/dev/stdout``
on a terminal or a pipe, ``/proc/self/fd/1``) is written in place: renaming over it would replace
the device node with a regular file. Anything else (a folder, a block device, a socket, a
symbolic link to nothing) is refused in one line.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from workspace.errors import UserError
from workspace.paths import Workspace

# what Tailor keeps beside params.yaml (tailor init, DVC, git, the pinned key), besides data/ and .tailor/
_OWNED_NAMES = ("params.yaml", "dvc.yaml", "dvc.lock", "audit-signing.pub", ".dvc", ".dvcignore", ".git",
                ".gitignore", ".gitattributes", "data", ".tailor")


def owned_paths(ws: Workspace, stores=None) -> list[Path]:
    """The workspace's own files and folders, and the local stores its settings name elsewhere
    (``stores``: a ``StoreSettings``): the signing key, a sqlite tracking database, a local
    artifact root or DVC remote."""
    paths = [ws.root / name for name in _OWNED_NAMES]
    if stores is not None:
        if stores.signing_key:
            paths.append(Path(stores.signing_key).expanduser())
        if stores.tracking_uri.startswith("sqlite:///"):
            paths.append(Path(stores.tracking_uri.removeprefix("sqlite:///")))
        for location in (stores.artifact_location, stores.dvc_remote):
            if location.startswith("file://"):
                paths.append(Path(location.removeprefix("file://")))
            elif location and "://" not in location:
                paths.append(Path(location).expanduser())
    return [p if p.is_absolute() else ws.root / p for p in paths]


@dataclass(frozen=True)
class Output:
    """A checked destination: ``how`` is "new", "replace" (a regular file, with --force) or
    "in place" (a character device or FIFO); ``path`` is where the bytes go."""

    path: Path
    how: str
    shown: str

    @contextmanager
    def open(self, newline: str | None = ""):
        """A text file (UTF-8) whose content reaches ``path`` when the block ends without error."""
        if self.how == "in place":
            with _in_place(self.path, self.shown) as f:
                yield f
            return
        old = os.stat(self.path).st_mode if self.how == "replace" else None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part")
        except OSError as exc:
            raise _cannot(self.shown, exc) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, stat.S_IMODE(old) if old is not None else 0o666 & ~_umask())
            if self.how == "replace":
                os.replace(tmp, self.path)
            else:
                _link_new(tmp, self.path, self.shown)
        finally:
            Path(tmp).unlink(missing_ok=True)


def requested(ws: Workspace, path: Path | str, flag: str, force: bool = False, stores=None,
              inputs: tuple = ()) -> Output:
    """``path`` checked as the destination of ``flag``: a one-line ``UserError`` when it is the
    workspace's own (or one of ``inputs``), a folder, a block device or socket, a link to nothing,
    in a folder that does not exist, or an existing file without ``force``."""
    shown = f"{flag} {path}"
    given = Path(os.path.abspath(Path(path).expanduser()))
    real = Path(os.path.realpath(given))
    for source in inputs:
        if real == Path(os.path.realpath(source)) or _same_file(None, given, Path(source)):
            raise UserError(f"{shown} is the input file: write it to another file")
    for owned in owned_paths(ws, stores):
        mine = Path(os.path.realpath(owned))
        for candidate in (given, real):
            if candidate == mine or candidate.is_relative_to(mine):
                what = "folder" if owned.is_dir() else "file"
                raise UserError(f"{shown} is inside the workspace's own {what} {owned.name}: write it elsewhere")
    try:
        st = os.stat(given)
    except FileNotFoundError:
        if os.path.islink(given):
            raise UserError(f"{shown} is a symbolic link to nothing ({os.readlink(given)}): give a file name") from None
        if not real.parent.is_dir():
            raise UserError(f"{shown}: folder {real.parent} does not exist") from None
        return Output(real, "new", shown)
    except OSError as exc:
        raise _cannot(shown, exc) from None
    if any(_same_file(st, given, Path(p)) for p in owned_paths(ws, stores)):  # a hard link to one
        raise UserError(f"{shown} is the same file as one of the workspace's own: write it elsewhere")
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{shown} is a folder: give a file name")
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return Output(given, "in place", shown)
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{shown} is a block device or socket: give a file name")
    if not force:
        raise UserError(f"{shown} exists: pass --force to replace it, or give another name")
    return Output(real, "replace", shown)


def _same_file(st: os.stat_result | None, path: Path, other: Path) -> bool:
    """Whether ``path`` (whose stat is ``st``, if known) and ``other`` are one file."""
    try:
        st = st or os.stat(path)
        o = os.stat(other)
    except OSError:
        return False
    return (o.st_dev, o.st_ino) == (st.st_dev, st.st_ino) and stat.S_ISREG(st.st_mode)


@contextmanager
def _in_place(path: Path, shown: str):
    """A device or FIFO opened for writing as it is: no truncation, no rename, and no wait for a
    reader that is not there."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise UserError(f"{shown} is a FIFO nobody reads: start its reader first") from None
        raise _cannot(shown, exc) from None
    import fcntl

    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        yield f


def _link_new(tmp: str, dst: Path, shown: str) -> None:
    """Put ``tmp`` at ``dst`` only if nothing appeared there meanwhile (a hard link does not replace)."""
    try:
        os.link(tmp, dst)
    except FileExistsError:
        raise UserError(f"{shown} appeared while it was being written: pass --force to replace it") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if os.path.lexists(dst):  # a filesystem without hard links: check, then rename
            raise UserError(f"{shown} appeared while it was being written: pass --force to replace it") from None
        os.replace(tmp, dst)


def _cannot(shown: str, exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return exc  # the CLI says "no space left on device" for every command alike
    return UserError(f"cannot write {shown}: {exc.strerror or exc}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
