"""Rich progress bars for the long steps flows report through ``flows.progress`` (tenants done and
left, elapsed and time left), drawn on stderr when it is a terminal, so output piped or parsed
(``--json``) stays clean."""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager


class RichWatcher:
    """A ``flows.progress.Watcher`` drawing one rich task per step."""

    def __init__(self, progress) -> None:
        self.progress, self.tasks, self.lock = progress, {}, threading.Lock()

    def started(self, key: int, label: str, total: int) -> None:
        with self.lock:
            self.tasks[key] = self.progress.add_task(label, total=total)

    def advanced(self, key: int, n: int) -> None:
        with self.lock:
            if key in self.tasks:
                self.progress.advance(self.tasks[key], n)

    def finished(self, key: int) -> None:
        with self.lock:
            if key in self.tasks:
                self.progress.stop_task(self.tasks.pop(key))


@contextmanager
def shown(enabled: bool | None = None):
    """Draw the flows' progress while the block runs; ``enabled`` None: when stderr is a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from flows import progress as flow_progress

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("left"), TimeRemainingColumn(), console=Console(file=sys.stderr), transient=False)
    with bar, flow_progress.watching(RichWatcher(bar)):
        yield
