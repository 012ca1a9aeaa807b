"""The client side of the daemon protocol (docs/protocol.md): find, start and ask the daemon.

Used by git-remote-lazy and the read-object hook on every batch, so it imports only small
standard-library modules (no pathlib, no subprocess until a daemon must be spawned): start-up
time is paid once per batch git asks for.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from lazygit.errors import DaemonError

# `typing` costs ~15 ms to import: on this per-batch path its names are for checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Any

STATE_DIR = "lazygit"
MAX_MESSAGE = 64 << 20
DEFAULT_TIMEOUT = 120.0


def common_git_dir(start: str | os.PathLike[str] | None = None) -> str:
    """The common git directory of the repository git runs us in (worktrees share it)."""
    env_dir = os.environ.get("GIT_DIR")
    if env_dir and start is None:
        # git sets GIT_DIR for helpers and hooks: avoid a `git rev-parse` on every batch.
        git_dir = os.path.abspath(env_dir)
        common = os.path.join(git_dir, "commondir")
        if os.path.isfile(common):
            with open(common) as f:
                return os.path.normpath(os.path.join(git_dir, f.read().strip()))
        if os.path.isdir(os.path.join(git_dir, "objects")):
            return git_dir
    from lazygit.gitcmd import run_git

    proc = run_git(
        ["rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=start, check=False
    )
    if proc.returncode != 0:
        raise DaemonError("not inside a git repository")
    return proc.stdout.decode().strip()


_TIMEOUTS: dict[str, float] = {}


def _timeout(git_dir: str) -> float:
    """lazygit.daemonTimeout (seconds): published by a running daemon, else from git config."""
    if git_dir not in _TIMEOUTS:
        from lazygit.gitcmd import run_git

        proc = run_git(["config", "--get", "lazygit.daemonTimeout"], cwd=git_dir, check=False)
        try:
            value = proc.stdout.decode().strip()
            _TIMEOUTS[git_dir] = float(value) if proc.returncode == 0 else DEFAULT_TIMEOUT
        except ValueError:
            _TIMEOUTS[git_dir] = DEFAULT_TIMEOUT
    return _TIMEOUTS[git_dir]


def _connect(git_dir: str) -> socket.socket | None:
    try:
        with open(os.path.join(git_dir, STATE_DIR, "daemon.json")) as f:
            info = json.load(f)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except (OSError, ValueError):
        return None
    try:
        sock.connect(info["socket"])
        if isinstance(info.get("timeout"), (int, float)):
            _TIMEOUTS[git_dir] = float(info["timeout"])
        return sock
    except (OSError, KeyError, TypeError):
        sock.close()
        return None


def spawn_daemon(git_dir: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
    """Start a detached daemon for ``git_dir`` (it exits at once if one is running)."""
    import subprocess

    git_dir = os.fspath(git_dir)
    state = os.path.join(git_dir, STATE_DIR)
    os.makedirs(state, exist_ok=True)
    # The daemon imports this very copy of lazygit, installed or not; its working directory
    # is "/" so that nothing there (such as .git/lazygit/) can shadow the package.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    with open(os.path.join(state, "daemon.log"), "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "lazygit.daemon", git_dir],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env=env,
        )


def _last_log_line(git_dir: str) -> str:
    try:
        with open(os.path.join(git_dir, STATE_DIR, "daemon.log"), errors="replace") as f:
            lines = f.read().strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def connect(
    git_dir: str | os.PathLike[str], *, start: bool = True, timeout: float | None = None
) -> socket.socket:
    """A connection to the repository's daemon, starting it when needed."""
    git_dir = os.fspath(git_dir)
    sock = _connect(git_dir)
    if sock is not None:
        return sock
    if not start:
        raise DaemonError("no lazygit daemon is running for this repository")
    proc = spawn_daemon(git_dir)  # first: its start-up overlaps the config lookup
    limit = timeout if timeout is not None else _timeout(git_dir)
    log = os.path.join(git_dir, STATE_DIR, "daemon.log")
    deadline = time.monotonic() + limit
    # The daemon listens before it loads anything (docs/protocol.md): once connected, the
    # request waits in the socket's backlog, so polling stops as soon as it is bound.
    delay = 0.005
    while time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 1.5, 0.02)
        sock = _connect(git_dir)
        if sock is not None:
            return sock
        if proc.poll() not in (None, 0):
            raise DaemonError(
                f"the lazygit daemon failed to start: {_last_log_line(git_dir)}", f"see {log}"
            )
    raise DaemonError(f"the lazygit daemon did not start within {limit:.0f} s", f"see {log}")


def request(
    git_dir: str | os.PathLike[str],
    message: dict[str, Any],
    *,
    start: bool = True,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Send one request and return the reply; a failure reply raises DaemonError."""
    git_dir = os.fspath(git_dir)
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


def fetch(git_dir: str | os.PathLike[str], oids: list[str]) -> dict[str, Any]:
    """Make the objects (hex ids) local; returns the daemon's batch statistics."""
    return request(git_dir, {"op": "fetch", "oids": oids})


def describe(reply: dict[str, Any]) -> str:
    """One progress line for a finished batch."""
    kib = reply.get("bytes", 0) / 1024
    return (
        f"lazygit: fetched {reply.get('objects', 0)} objects ({kib:.0f} KiB) "
        f"in {reply.get('seconds', 0.0):.2f} s"
    )
