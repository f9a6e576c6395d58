"""Progress of a flow's long steps, for whoever watches.

Flows report ``step(label, total)`` and ``advance``; the face (``tailor/progress.py``) registers a
watcher that draws a rich progress bar. A deployment run on a worker has no watcher: the same
calls cost nothing there, and its progress shows in the Prefect UI through the run's logs and
task runs. Watchers are plain objects, so this floor never imports the face.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Protocol


class Watcher(Protocol):
    def started(self, key: int, label: str, total: int) -> None: ...
    def advanced(self, key: int, n: int) -> None: ...
    def finished(self, key: int) -> None: ...


_watchers: list[Watcher] = []
_lock = threading.Lock()
_next = [0]


class Step:
    """One long step: ``advance()`` once per item done (from any thread)."""

    def __init__(self, key: int) -> None:
        self.key = key

    def advance(self, n: int = 1) -> None:
        for watcher in list(_watchers):
            watcher.advanced(self.key, n)


@contextmanager
def step(label: str, total: int):
    """A step of ``total`` items named ``label`` (e.g. "adapting tenants")."""
    with _lock:
        _next[0] += 1
        key = _next[0]
    for watcher in list(_watchers):
        watcher.started(key, label, total)
    try:
        yield Step(key)
    finally:
        for watcher in list(_watchers):
            watcher.finished(key)


@contextmanager
def watching(watcher: Watcher):
    """Show this process's flow progress through ``watcher`` while the block runs."""
    _watchers.append(watcher)
    try:
        yield watcher
    finally:
        _watchers.remove(watcher)
