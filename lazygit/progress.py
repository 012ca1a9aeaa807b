"""Progress reporting: rich bars on a terminal, nothing otherwise.

The engine only calls :class:`Progress` methods; whether anything is drawn is decided here
(quiet with ``-q`` or when stderr is not a terminal).  rich is imported only when drawing.
The daemon counts a batch's progress in a :class:`Tally` instead, and sends it to the
git-remote-lazy that waits (docs/protocol.md), which draws one line on git's terminal.
"""

from __future__ import annotations

import sys
import threading
from typing import Any


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless one: "1 request", "3 batches"."""
    if n == 1:
        return f"1 {noun}"
    return f"{n} {noun}es" if noun.endswith(("s", "sh", "ch", "x")) else f"{n} {noun}s"


class Task:
    """One bar; ``advance`` is thread-safe (rich's is)."""

    def __init__(self, progress: Any = None, task_id: Any = None) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._id, n)

    def update(self, *, total: float | None = None, completed: float | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._id, total=total, completed=completed)

    def done(self) -> None:
        if self._progress is not None:
            task = self._progress._tasks[self._id]
            total = task.total if task.total is not None else task.completed
            self._progress.update(self._id, total=total, completed=total)


class Progress:
    """A set of bars; a no-op when quiet."""

    def __init__(self, quiet: bool = False) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self._rich: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            amount, rate = _columns()
            self._rich = RichProgress(
                TextColumn("{task.description:<18}"),
                BarColumn(),
                amount,
                rate,
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._rich.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
            self._rich = None

    def task(self, description: str, total: float | None = None, *, count: bool = False) -> Task:
        """A bar; ``count=True`` shows items instead of bytes."""
        if self._rich is None:
            return Task()
        return Task(self._rich, self._rich.add_task(description, total=total, count=count))

    def log(self, message: str) -> None:
        """A line above the bars (or on stderr when there are none), e.g. a warning."""
        if self._rich is not None:
            self._rich.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr)


QUIET = Progress(quiet=True)


class Tally(Progress):
    """Progress counted, not drawn: the daemon sends it to the helper of the git command
    that waits (git-remote-lazy draws it).  ``done`` and ``total`` are bytes, summed over
    every bar; reading them from another thread is safe."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.done = 0
        self.total = 0
        self.lock = threading.Lock()  # the engine's reader threads advance it at once

    def task(self, description: str, total: float | None = None, *, count: bool = False) -> Task:
        return _TallyTask(self)


class _TallyTask(Task):
    def __init__(self, tally: Tally) -> None:
        super().__init__()
        self._tally = tally
        self._total = 0

    def advance(self, n: float = 1) -> None:
        with self._tally.lock:
            self._tally.done += int(n)

    def update(self, *, total: float | None = None, completed: float | None = None) -> None:
        if total is not None:
            with self._tally.lock:
                self._tally.total += int(total) - self._total
            self._total = int(total)

    def done(self) -> None:
        pass


def _columns() -> tuple[Any, Any]:
    """The amount and rate columns: bytes and bytes/s, or for a ``count`` bar (pack
    indexes) "done/total" and nothing."""
    from rich.progress import DownloadColumn, ProgressColumn, TransferSpeedColumn
    from rich.text import Text

    class Amount(ProgressColumn):
        def __init__(self) -> None:
            super().__init__()
            self._bytes = DownloadColumn()

        def render(self, task: Any) -> Any:
            if not task.fields.get("count"):
                return self._bytes.render(task)
            if not task.total:
                return Text("")
            return Text(f"{task.completed:,.0f}/{task.total:,.0f}", style="progress.download")

    class Rate(ProgressColumn):
        def __init__(self) -> None:
            super().__init__()
            self._speed = TransferSpeedColumn()

        def render(self, task: Any) -> Any:
            return Text("") if task.fields.get("count") else self._speed.render(task)

    return Amount(), Rate()


def human_size(n: float) -> str:
    """Bytes as a short human-readable size ("512 B", "3.4 MiB")."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
