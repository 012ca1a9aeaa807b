"""Worker threads that never hold an interrupted process.

``concurrent.futures.ThreadPoolExecutor`` joins its workers when its ``with`` block ends,
also when an exception (Ctrl-C's KeyboardInterrupt) leaves it, and again at interpreter
exit. A worker stuck in a stalled read then holds the interrupted clone for up to
``lazygit.readTimeout``. These workers are daemon threads, and a pool left by an exception
does not wait for them: the process exits at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from types import TracebackType
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")

_Item = tuple[Future, Callable[[], object]] | None


class Workers:
    """A small pool of daemon threads with ThreadPoolExecutor's ``submit`` and ``map``.

    Used as a context manager, it waits for the work submitted when its block ends normally
    and gives it up (cancelling what has not started) when an exception ends it.
    """

    def __init__(self, count: int, name: str = "lazygit-worker") -> None:
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, count))
        ]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fut, fn = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the waiting caller
                fut.set_exception(exc)

    def submit(self, fn: Callable[..., _T], /, *args: object, **kwargs: object) -> Future[_T]:
        fut: Future[_T] = Future()
        self._queue.put((fut, lambda: fn(*args, **kwargs)))
        return fut

    def map(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        """``fn`` of each item, run at once, in the items' order; the first error raised."""
        futures = [self.submit(fn, item) for item in items]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()

    def shutdown(self, wait: bool = True, cancel: bool = True) -> None:
        """Stop the threads once their work is done; ``cancel`` what has not started yet;
        with ``wait``, let the work running finish first."""
        if cancel:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for t in self._threads:
                t.join()

    def __enter__(self) -> Workers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ok = exc_type is None
        self.shutdown(wait=ok, cancel=not ok)
