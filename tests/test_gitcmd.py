"""Internal git commands and Ctrl-C: an interrupted lazygit never leaves a git child running.

Seen in CI: SIGINT to a clone in its first moments left DIR behind holding a fresh `.git`
(description, hooks).  The KeyboardInterrupt had been raised inside ``subprocess.Popen()``
just after the fork, so nobody stopped or waited for `git init`, which went on writing after
the clone had removed DIR.  SIGINT cannot be aimed at that instant from outside, so the first
test delivers it from inside Popen (right after the child is started); the second uses a real
timer during a running git command; the third checks that an ignored SIGINT stays ignored.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lazygit.gitcmd import run_git


def _children(monkeypatch: pytest.MonkeyPatch, *, interrupt: bool = False) -> list[int]:
    """Pids of the children Popen starts from now on; with ``interrupt``, SIGINT is raised
    the moment each child has started, before Popen returns."""
    pids: list[int] = []
    start = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def execute_child(self: subprocess.Popen[bytes], *args: object) -> None:
        start(self, *args)
        pids.append(self.pid)
        if interrupt:
            signal.raise_signal(signal.SIGINT)  # the signal lands between fork and return

    monkeypatch.setattr(subprocess.Popen, "_execute_child", execute_child)
    return pids


def _reaped(pid: int) -> bool:
    """Whether ``pid`` has ended and been waited for (it is no child of ours any more)."""
    try:
        os.waitpid(pid, os.WNOHANG)  # running (0, 0), or a zombie nobody waited for
    except ChildProcessError:
        return True
    return False


def test_sigint_as_git_starts_stops_and_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = _children(monkeypatch, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        run_git(["init", "-q", str(tmp_path / "repo")])
    monkeypatch.undo()
    (pid,) = pids
    assert _reaped(pid)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigint_while_git_runs_stops_and_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = _children(monkeypatch)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_git(["-c", "alias.nap=!sleep 5", "nap"], cwd=tmp_path)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 3
    (pid,) = pids
    assert _reaped(pid)


def test_sigint_held_back_while_ignored_leaves_git_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _children(monkeypatch, interrupt=True)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run_git(["init", "-q", str(tmp_path / "repo")])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (tmp_path / "repo" / ".git" / "HEAD").is_file()
