"""The client side of the daemon protocol (docs/protocol.md): find, start and ask the daemon.

Used by git-remote-lazy and the read-object hook on every batch, so standard library only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lazygit.errors import DaemonError
from lazygit.gitcmd import run_git

STATE_DIR = "lazygit"
MAX_MESSAGE = 64 << 20


def common_git_dir(start: str | Path | None = None) -> Path:
    """The common git directory of the repository git runs us in (worktrees share it)."""
    env_dir = os.environ.get("GIT_DIR")
    if env_dir and start is None:
        # git sets GIT_DIR for helpers and hooks: avoid a `git rev-parse` on every batch.
        git_dir = Path(env_dir).resolve()
        common = git_dir / "commondir"
        if common.is_file():
            return (git_dir / common.read_text().strip()).resolve()
        if (git_dir / "objects").is_dir():
            return git_dir
    proc = run_git(
        ["rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=start, check=False
    )
    if proc.returncode != 0:
        raise DaemonError("not inside a git repository")
    return Path(proc.stdout.decode().strip())


_TIMEOUTS: dict[Path, float] = {}


def _timeout(git_dir: Path) -> float:
    """lazygit.daemonTimeout from the repository config (seconds), default 120."""
    if git_dir not in _TIMEOUTS:
        _TIMEOUTS[git_dir] = _read_timeout(git_dir)
    return _TIMEOUTS[git_dir]


def _read_timeout(git_dir: Path) -> float:
    proc = run_git(["config", "--get", "lazygit.daemonTimeout"], cwd=git_dir, check=False)
    try:
        return float(proc.stdout.decode().strip()) if proc.returncode == 0 else 120.0
    except ValueError:
        return 120.0


def _connect(state: Path) -> socket.socket | None:
    try:
        info = json.loads((state / "daemon.json").read_text())
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except (OSError, ValueError):
        return None
    try:
        sock.connect(info["socket"])
        if isinstance(info.get("timeout"), (int, float)):
            # The daemon publishes lazygit.daemonTimeout: no `git config` run per batch.
            _TIMEOUTS[state.parent] = float(info["timeout"])
        return sock
    except (OSError, KeyError, TypeError):
        sock.close()
        return None


def spawn_daemon(git_dir: Path) -> subprocess.Popen[bytes]:
    """Start a detached daemon for ``git_dir`` (it exits at once if one is running)."""
    state = git_dir / STATE_DIR
    state.mkdir(exist_ok=True)
    # The daemon imports this very copy of lazygit, installed or not; its working directory
    # is "/" so that nothing there (such as .git/lazygit/) can shadow the package.
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    with open(state / "daemon.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "lazygit.daemon", str(git_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env=env,
        )


def _last_log_line(state: Path) -> str:
    try:
        lines = (state / "daemon.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def connect(git_dir: Path, *, start: bool = True, timeout: float | None = None) -> socket.socket:
    """A connection to the repository's daemon, starting it when needed."""
    state = git_dir / STATE_DIR
    sock = _connect(state)
    if sock is not None or not start:
        if sock is None:
            raise DaemonError("no lazygit daemon is running for this repository")
        return sock
    limit = timeout if timeout is not None else _timeout(git_dir)
    proc = spawn_daemon(git_dir)
    deadline = time.monotonic() + limit
    delay = 0.005
    while time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)
        sock = _connect(state)
        if sock is not None:
            return sock
        if proc.poll() not in (None, 0):
            raise DaemonError(
                f"the lazygit daemon failed to start: {_last_log_line(state)}",
                f"see {state / 'daemon.log'}",
            )
    raise DaemonError(
        f"the lazygit daemon did not start within {limit:.0f} s",
        f"see {state / 'daemon.log'}",
    )


def request(
    git_dir: Path, message: dict[str, Any], *, start: bool = True, timeout: float | None = None
) -> dict[str, Any]:
    """Send one request and return the reply; a failure reply raises DaemonError."""
    sock = connect(git_dir, start=start, timeout=timeout)
    limit = timeout if timeout is not None else _timeout(git_dir)
    try:
        sock.settimeout(limit)
        sock.sendall(json.dumps(message).encode() + b"\n")
        buf = bytearray()
        while not buf.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
            if len(buf) > MAX_MESSAGE:
                raise DaemonError("the lazygit daemon sent an oversized reply")
    except TimeoutError:
        raise DaemonError(
            f"the lazygit daemon did not answer within {limit:.0f} s",
            "check the server, or raise lazygit.daemonTimeout",
        ) from None
    except OSError as exc:
        raise DaemonError(f"lost the connection to the lazygit daemon: {exc.strerror}") from None
    finally:
        sock.close()
    if not buf.endswith(b"\n"):
        raise DaemonError(
            "the lazygit daemon closed the connection mid-request (it was stopped or crashed)",
            "run the git command again",
        )
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise DaemonError(str(reply.get("error") or "the lazygit daemon reported a failure"))
    return reply


def fetch(git_dir: Path, oids: list[str]) -> dict[str, Any]:
    """Make the objects (hex ids) local; returns the daemon's batch statistics."""
    return request(git_dir, {"op": "fetch", "oids": oids})


def describe(reply: dict[str, Any]) -> str:
    """One progress line for a finished batch."""
    kib = reply.get("bytes", 0) / 1024
    return (
        f"lazygit: fetched {reply.get('objects', 0)} objects ({kib:.0f} KiB) "
        f"in {reply.get('seconds', 0.0):.2f} s"
    )


__all__ = ["common_git_dir", "connect", "describe", "fetch", "request", "spawn_daemon"]
