"""What a long command shows while it works, on stderr when it is a terminal (so output piped or
parsed, ``--json`` included, stays clean): a spinner naming the step with its elapsed time, the
rich progress bars of the flows' long steps (``flows.progress``: items done and left, time left),
and, when the command succeeded, a last line saying how long it took (``tailor.cli.main``)."""
from __future__ import annotations

import sys
import threading
import time
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


def _bar(console):
    from rich.progress import (BarColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.text import Text

    class Counts(ProgressColumn):
        """``12/40 left 0:00:31`` for a step with a total; nothing for a spinner."""

        def __init__(self) -> None:
            super().__init__()
            self.left = TimeRemainingColumn()

        def render(self, task):
            if task.total is None:
                return Text("")
            return Text(f"{int(task.completed)}/{int(task.total)} left ") + self.left.render(task)

    # what the work prints to stdout goes above the display when both share the terminal; piped
    # stdout (`> out.txt`, `| jq`) is left alone: it must receive every line the command prints
    return Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),  # names are data
                    TimeElapsedColumn(), Counts(), console=console, transient=True,
                    redirect_stdout=sys.stdout.isatty())


_shown = threading.Event()  # this command showed progress: it ends with its elapsed time


@contextmanager
def working(label: str | None, enabled: bool | None = None):
    """While the block runs: a spinner with ``label`` (None: none, only the flows' bars) and the
    flows' progress bars. Yields ``note(text)``, which renames the spinner as the work moves on.
    ``enabled`` None: when stderr is a terminal. The command then ends with ``elapsed``'s line."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda text: None
        return
    from rich.console import Console

    from flows import progress as flow_progress

    _shown.set()
    with _bar(Console(file=sys.stderr)) as bar, flow_progress.watching(RichWatcher(bar)):
        spinner = bar.add_task(label, total=None) if label else None
        yield lambda text: spinner is not None and bar.update(spinner, description=text)


def started() -> float:
    """A command starts: the clock of its elapsed time."""
    _shown.clear()
    return time.perf_counter()


def elapsed(since: float) -> None:
    """The last line of a command that showed progress and succeeded: how long it took (stderr;
    a failed command's last line is its error)."""
    if _shown.is_set():
        print(f"done in {time.perf_counter() - since:.1f} s", file=sys.stderr, flush=True)


def shown(enabled: bool | None = None):
    """The flows' progress bars while the block runs (no spinner of its own)."""
    return working(None, enabled)
