"""File locks across processes that say whom a command waits for.

A command that finds a lock held waits for it as before, but after ``PATIENCE`` seconds it says
so on stderr, naming the holder as the holder recorded itself on taking the lock (its command,
identity, process id and since when), so nobody sits in front of a silent terminal for 30 s.
"""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

PATIENCE = 1.0  # seconds of silent waiting before the command says whom it waits for


def _holder_file(lock: FileLock) -> Path:
    return Path(lock.lock_file + ".holder")


def _me() -> dict:
    user = os.environ.get("TAILOR_USER", "").strip()
    if not user:
        try:
            import getpass

            user = getpass.getuser()
        except (KeyError, OSError):
            user = "?"
    command = " ".join(["tailor", *(a for a in sys.argv[1:] if not a.startswith("-"))][:3])
    return {"pid": os.getpid(), "user": user[:64], "command": command[:80],
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def holder(lock: FileLock) -> str:
    """Who holds ``lock``, as its holder recorded it: ``tailor ingest acme (bob, pid 4242, since
    10:02:11 UTC)``; "another process" when it left no record."""
    try:
        h = json.loads(_holder_file(lock).read_text(encoding="utf-8"))
        since = str(h.get("since", ""))[11:19]
        return (f"{h.get('command', 'another command')} ({h.get('user', '?')}, pid {int(h.get('pid', 0))}"
                f"{', since ' + since + ' UTC' if since else ''})")
    except (OSError, ValueError, TypeError, AttributeError):
        return "another process"


class Announced:
    """``lock`` (a ``FileLock``), taken in a ``with`` block; a wait longer than ``PATIENCE`` is
    announced with ``what`` the lock guards. ``timeout`` as FileLock's (-1: wait as long as it takes)."""

    def __init__(self, lock: FileLock, what: str, timeout: float | None = None):
        self.lock, self.what = lock, what
        self.timeout = lock.timeout if timeout is None else timeout

    @property
    def is_locked(self) -> bool:
        return self.lock.is_locked

    def __enter__(self) -> "Announced":
        if self.lock.is_locked:  # this process holds it already (reentrant): no wait
            self.lock.acquire()
            return self
        start = time.monotonic()
        first = PATIENCE if self.timeout < 0 else min(PATIENCE, self.timeout)
        try:
            self.lock.acquire(timeout=first)
        except Timeout:
            print(f"waiting for the {self.what} lock: {holder(self.lock)} holds it", file=sys.stderr, flush=True)
            left = -1 if self.timeout < 0 else max(0.0, self.timeout - (time.monotonic() - start))
            self.lock.acquire(timeout=left)
        try:
            tmp = _holder_file(self.lock).with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(_me()), encoding="utf-8")
            os.replace(tmp, _holder_file(self.lock))
        except OSError:
            pass  # the record only names the holder to a waiter
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()
