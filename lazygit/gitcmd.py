"""Running git internally.

Every git command lazygit runs gets ``GIT_NO_LAZY_FETCH=1``: a git command run by the helper
that touches a missing object would otherwise start a nested lazy fetch (git does not guard
against the recursion), and with it set a missing object is a plain error instead.
Standard library only: the helper path uses this module.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from lazygit.errors import GitCommandError

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
    """Run ``git ARGS`` and capture its output; raise GitCommandError on failure."""
    try:
        proc = subprocess.run(
            git_argv(args),
            cwd=cwd,
            input=input,
            env=git_env(env),
            capture_output=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise _not_found(exc, cwd) from exc
    if check and proc.returncode != 0:
        raise GitCommandError(f"git {args[0]} failed: {first_error_line(proc.stderr)}")
    return proc


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
        return subprocess.Popen(
            git_argv(args),
            cwd=cwd,
            env=git_env(env),
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise _not_found(exc, cwd) from exc


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
