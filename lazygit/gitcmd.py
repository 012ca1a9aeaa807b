"""Running git internally.

Every git command lazygit runs gets ``GIT_NO_LAZY_FETCH=1``: a git command run by the helper
that touches a missing object would otherwise start a nested lazy fetch (git does not guard
against the recursion), and with it set a missing object is a plain error instead.
Standard library only: the helper path uses this module.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from lazygit.errors import GitCommandError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Config that keeps internal git commands from recursing or prompting.
_SAFE_CONFIG = ("-c", "core.virtualizeObjects=false")


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for an internal git command."""
    env = dict(os.environ)
    env["GIT_NO_LAZY_FETCH"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    if extra:
        env.update(extra)
    return env


def git_argv(args: Sequence[str]) -> list[str]:
    """The full argv for ``git ARGS`` with lazygit's safety config."""
    return ["git", *_SAFE_CONFIG, *args]


def run_git(
    args: Sequence[str],
    *,
    cwd: str | Path | None = None,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS`` and capture its output; raise GitCommandError on failure.

    Interrupted (Ctrl-C), it stops git and waits for it before the KeyboardInterrupt goes on:
    ``subprocess.run`` kills the child but does not wait, so a `git init` could still be
    writing into a directory the caller is removing."""
    try:
        proc = _start(
            git_argv(args),
            cwd=cwd,
            env=git_env(env),
            stdin=None if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise _not_found(exc, cwd) from exc
    try:
        out, err = proc.communicate(input)
    except BaseException:
        _stop(proc)
        raise
    if check and proc.returncode != 0:
        raise GitCommandError(f"git {args[0]} failed: {first_error_line(err)}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def git_output(args: Sequence[str], *, cwd: str | Path | None = None) -> str:
    """Run ``git ARGS`` and return its stdout as stripped text."""
    return run_git(args, cwd=cwd).stdout.decode("utf-8", "replace").strip()


def popen_git(
    args: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | None = subprocess.PIPE,
    stdout: int | None = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """Start ``git ARGS`` for streaming; stderr is captured for error messages."""
    try:
        return _start(
            git_argv(args),
            cwd=cwd,
            env=git_env(env),
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise _not_found(exc, cwd) from exc


def _start(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **kwargs)``, with a SIGINT that arrives meanwhile held back
    until the child is known: raised inside Popen() after the fork, the KeyboardInterrupt
    would leave git running where nobody stops or waits for it.  Once the child is known it
    is stopped, and the signal is delivered as it would have been."""
    caught: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    try:
        if previous is None:  # a handler set outside Python: it could not be put back
            raise ValueError
        signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    except ValueError:  # (or not the main thread, where Python handles signals)
        return subprocess.Popen(argv, **kwargs)
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen(argv, **kwargs)
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            _deliver_sigint(previous, proc)
    assert proc is not None
    return proc


def _deliver_sigint(handler: object, proc: subprocess.Popen[bytes] | None) -> None:
    """Deliver a SIGINT held back while ``proc`` started: its child is stopped if the
    signal ends what we are doing (Python's default handler raises KeyboardInterrupt)."""
    if handler == signal.SIG_IGN:
        return
    try:
        if callable(handler):
            handler(signal.SIGINT, None)
            return
    except BaseException:
        if proc is not None:
            _stop(proc)
        raise
    if proc is not None:  # SIG_DFL: the signal ends this process
        _stop(proc)
    signal.raise_signal(signal.SIGINT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a git child and wait for it: it writes nothing more once this returns."""
    proc.kill()
    proc.wait()
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()


def git_processes() -> list[str]:
    """The pids of the running processes named git* other than us, as /proc lists them
    (none where there is no /proc).  Reading more of one may fail: it is gone, or not ours."""
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []
    me = str(os.getpid())
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm", "rb") as f:
                if pid != me and f.read().startswith(b"git"):
                    out.append(pid)
        except OSError:
            continue
    return out


def first_error_line(stderr: bytes) -> str:
    """The most telling line of git's stderr (its 'fatal:'/'error:' line if any)."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("fatal:", "error:")):
            return ln
    return lines[-1] if lines else "no error message"


def _not_found(exc: FileNotFoundError, cwd: str | os.PathLike[str] | None) -> GitCommandError:
    """The one-line error for a git that could not start: no git, or no such directory."""
    if cwd is not None and not os.path.isdir(cwd):
        return GitCommandError(f"{os.fspath(cwd)} does not exist (moved or deleted?)")
    return GitCommandError("git is not installed or not on PATH")
