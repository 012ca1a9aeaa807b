"""lazygit.workers: daemon threads that finish their work, and never hold an exception."""

from __future__ import annotations

import threading
import time

import pytest

from lazygit.workers import Workers


def test_a_block_that_ends_normally_waits_for_all_work_submitted() -> None:
    done: list[int] = []
    with Workers(2) as pool:
        for i in range(20):
            pool.submit(lambda i: (time.sleep(0.005), done.append(i)), i)
    assert sorted(done) == list(range(20))


def test_map_keeps_the_order_and_raises_the_first_error() -> None:
    with Workers(4) as pool:
        assert pool.map(lambda x: x * x, range(10)) == [x * x for x in range(10)]
        with pytest.raises(ZeroDivisionError):
            pool.map(lambda x: 1 / x, [3, 0, 1])


def test_keyword_arguments_reach_the_function() -> None:
    with Workers(1) as pool:
        assert pool.submit(int, "ff", base=16).result() == 255


def test_an_exception_leaves_the_block_without_waiting_for_a_stalled_worker() -> None:
    release = threading.Event()
    started = threading.Event()

    def stall() -> None:
        started.set()
        release.wait(30)

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt), Workers(1, "test-stall") as pool:
        stalled = pool.submit(stall)
        queued = pool.submit(lambda: None)
        started.wait(5)
        raise KeyboardInterrupt
    assert time.monotonic() - t0 < 5
    assert queued.cancelled() and not stalled.done()
    worker = next(t for t in threading.enumerate() if t.name == "test-stall-0")
    assert worker.daemon  # the interpreter does not wait for it at exit either
    release.set()
    worker.join(5)
