"""The client side of the daemon protocol (docs/protocol.md): find, start and ask the daemon.

Used by git-remote-lazy and the read-object hook on every batch, so it imports only small
standard-library modules (no pathlib, no subprocess until a daemon must be spawned): start-up
time is paid once per batch git asks for.
"""

from __future__ import annotations

# `socket` and `json` cost ~15 ms at every start (both pull in `enum`, json also `re`): the
# client speaks through their C halves, which CPython has built in.
import _socket
import os
import sys
import time

try:
    from _json import encode_basestring_ascii as _encode_str
    from _json import make_scanner as _make_scanner
except ImportError:  # not CPython: the json module, slower to import
    from json.encoder import encode_basestring_ascii as _encode_str

    _make_scanner = None

from lazygit.errors import DaemonError

# `typing` costs ~15 ms to import: on this per-batch path its names are for checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Mapping
    from typing import Any, ClassVar

STATE_DIR = "lazygit"
#: How the daemon's progress lines start (its replies start with {"ok").
_PROGRESS = b'{"progress"'
MAX_MESSAGE = 64 << 20
DEFAULT_TIMEOUT = 120.0
#: Seconds a client waits for a daemon it started before it reads lazygit.daemonTimeout.
CONFIG_LOOKUP_AFTER = 1.0


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


class _ScanContext:
    """What CPython's C JSON scanner reads from ``json.JSONDecoder``: plain JSON, no hooks."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None
    memo: ClassVar[dict[str, str]] = {}


_scan = _make_scanner(_ScanContext()) if _make_scanner is not None else None
_SPACE = " \t\n\r"


def loads(data: bytes | str) -> Any:
    """One JSON document, as ``json.loads`` would decode it (errors: ValueError)."""
    text = data.decode() if isinstance(data, bytes) else data
    if _scan is None:
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_SPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration:
        raise ValueError(f"no JSON value at {start}") from None
    if text[end:].strip(_SPACE):
        raise ValueError(f"extra data after the JSON value at {end}")
    return value


def dumps(value: Any) -> str:
    """JSON for the protocol's values (dicts with str keys, lists, str, int, float, bool,
    None), as ``json.dumps`` would write it."""
    if isinstance(value, str):
        return _encode_str(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, int) else float.__repr__(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{dumps(str(k))}: {dumps(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


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


def same_dir(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name the same directory (device and inode); False if either is gone."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _connect(git_dir: str) -> _socket.socket | None:
    try:
        with open(os.path.join(git_dir, STATE_DIR, "daemon.json")) as f:
            info = loads(f.read())
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    except (OSError, ValueError):
        return None
    try:
        served = info.get("git_dir")
        if isinstance(served, str) and served != git_dir and not same_dir(served, git_dir):
            # The daemon serves this directory under another path (it was moved: a new
            # daemon takes over), or another repository (it was copied, daemon.json too).
            sock.close()
            return None
        sock.connect(info["socket"])
        if isinstance(info.get("timeout"), (int, float)):
            _TIMEOUTS[git_dir] = float(info["timeout"])
        return sock
    except (OSError, KeyError, TypeError, AttributeError):
        sock.close()
        return None


def _daemon_command(git_dir: str) -> tuple[list[str], dict[str, str], str]:
    """The daemon's argv and environment, and its log (created if need be)."""
    state = os.path.join(git_dir, STATE_DIR)
    os.makedirs(state, exist_ok=True)
    # The daemon imports this very copy of lazygit, installed or not.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return [sys.executable, "-m", "lazygit.daemon", git_dir], env, os.path.join(state, "daemon.log")


def spawn_daemon(git_dir: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
    """Start a detached daemon for ``git_dir`` (it exits at once if one is running)."""
    import subprocess

    argv, env, log_path = _daemon_command(os.fspath(git_dir))
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            # "/": nothing in the working directory (a checkout of lazygit itself, say) can
            # shadow the package `-m` imports, and the daemon pins no directory.
            cwd="/",
            env=env,
        )


def _spawn_quickly(git_dir: str) -> int | None:
    """`spawn_daemon` without importing subprocess (~20 ms on the path of the git command
    that starts the daemon): posix_spawn, with ``-P`` (Python 3.11+) in place of the
    working directory "/" that posix_spawn cannot set.  Returns the pid, or None where this
    is not available (the caller then uses spawn_daemon)."""
    if sys.version_info < (3, 11) or not hasattr(os, "posix_spawn"):
        return None
    argv, env, log_path = _daemon_command(git_dir)
    argv.insert(1, "-P")
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
    ]
    try:  # as close_fds=True: descriptors git let us inherit stay out of the daemon
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        return None
    for fd in fds:
        try:
            if fd > 2 and os.get_inheritable(fd):
                actions.append((os.POSIX_SPAWN_CLOSE, fd))
        except OSError:
            pass  # the directory listing's own descriptor, closed by now
    return os.posix_spawn(sys.executable, argv, env, file_actions=actions, setsid=True)


def _last_log_line(git_dir: str) -> str:
    try:
        with open(os.path.join(git_dir, STATE_DIR, "daemon.log"), errors="replace") as f:
            lines = f.read().strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def connect(
    git_dir: str | os.PathLike[str], *, start: bool = True, timeout: float | None = None
) -> _socket.socket:
    """A connection to the repository's daemon, starting it when needed."""
    git_dir = os.fspath(git_dir)
    sock = _connect(git_dir)
    if sock is not None:
        return sock
    if not start:
        raise DaemonError("no lazygit daemon is running for this repository")
    try:
        pid = _spawn_quickly(git_dir)
        proc = spawn_daemon(git_dir) if pid is None else None
    except OSError as exc:
        raise DaemonError(
            f"cannot start the lazygit daemon ({sys.executable}): {exc.strerror or exc}",
            "check the installation with `lazygit doctor`",
        ) from None
    log = os.path.join(git_dir, STATE_DIR, "daemon.log")
    start = time.monotonic()
    # lazygit.daemonTimeout comes from the daemon.json of a daemon that starts: `git config`
    # runs only when it is slow to (it would compete with the daemon's start for a core).
    limit = timeout if timeout is not None else CONFIG_LOOKUP_AFTER
    looked_up = timeout is not None
    # The daemon listens before it loads anything (docs/protocol.md): once connected, the
    # request waits in the socket's backlog, so polling stops as soon as it is bound.
    delay = 0.005
    while True:
        time.sleep(delay)
        delay = min(delay * 1.5, 0.02)
        sock = _connect(git_dir)
        if sock is not None:
            return sock
        status = proc.poll() if proc is not None else _exit_status(pid)
        if status not in (None, 0):
            raise DaemonError(
                f"the lazygit daemon failed to start: {_last_log_line(git_dir)}", f"see {log}"
            )
        if time.monotonic() - start >= limit:
            if looked_up:
                break
            limit, looked_up = _timeout(git_dir), True
    raise DaemonError(f"the lazygit daemon did not start within {limit:.0f} s", f"see {log}")


def _exit_status(pid: int | None) -> int | None:
    """A spawned daemon's exit code once it has ended (reaped), else None."""
    if pid is None:
        return None
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done else None


#: Before the one retry of a request whose connection the daemon reset unread.
RECONNECT_DELAY = 0.05


def _exchange(
    git_dir: str,
    data: bytes,
    start: bool,
    timeout: float | None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> bytearray:
    """Send ``data`` on a new connection and read the reply line (what arrived of it); the
    progress lines before it go to ``on_progress``.  ConnectionResetError only when nothing
    arrived: the daemon never read the request."""
    sock = connect(git_dir, start=start, timeout=timeout)
    limit = timeout if timeout is not None else _timeout(git_dir)
    buf = bytearray()
    heard = False  # a progress line came: the daemon read the request
    try:
        sock.settimeout(limit)
        sock.sendall(data)
        while True:
            end = buf.find(b"\n")
            while end >= 0 and buf.startswith(_PROGRESS):
                heard = True
                line = bytes(buf[:end])
                del buf[: end + 1]
                if on_progress is not None:
                    _progress_line(line, on_progress)
                end = buf.find(b"\n")
            if end >= 0:
                break  # the reply
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
        if isinstance(exc, ConnectionResetError) and not buf and not heard:
            raise
        raise DaemonError(f"lost the connection to the lazygit daemon: {exc.strerror}") from None
    finally:
        sock.close()
    return buf


def request(
    git_dir: str | os.PathLike[str],
    message: dict[str, Any],
    *,
    start: bool = True,
    timeout: float | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Send one request and return the reply; a failure reply raises DaemonError.

    With ``on_progress``, a fetch or update asks for progress: it gets the daemon's lines
    (``{"bytes": read so far, "total": of the reads planned so far}``) as they come."""
    git_dir = os.fspath(git_dir)
    if on_progress is not None:
        message = {**message, "progress": True}
    data = dumps(message).encode() + b"\n"
    try:
        buf = _exchange(git_dir, data, start, timeout, on_progress)
    except ConnectionResetError:
        # The daemon closed our connection unread: it was exiting (idle, or stopped) as we
        # connected.  Asking again finds, or starts, the next one.
        time.sleep(RECONNECT_DELAY)
        try:
            buf = _exchange(git_dir, data, start, timeout, on_progress)
        except ConnectionResetError as exc:
            raise DaemonError(
                f"lost the connection to the lazygit daemon: {exc.strerror}"
            ) from None
    if not buf.endswith(b"\n"):
        raise DaemonError(
            "the lazygit daemon closed the connection mid-request (it was stopped or crashed)",
            "run the git command again",
        )
    try:
        reply = loads(bytes(buf))
    except ValueError:
        raise DaemonError("the lazygit daemon sent a malformed reply", "see daemon.log") from None
    if not isinstance(reply, dict):
        raise DaemonError("the lazygit daemon sent a malformed reply", "see daemon.log")
    if not reply.get("ok"):
        raise DaemonError(str(reply.get("error") or "the lazygit daemon reported a failure"))
    return reply


def _progress_line(line: bytes, on_progress: Callable[[dict[str, Any]], None]) -> None:
    """A progress line; one that does not parse is dropped (progress is only ever shown)."""
    try:
        message = loads(line)
    except ValueError:
        return
    if isinstance(message, dict) and isinstance(message.get("progress"), dict):
        on_progress(message["progress"])


def fetch(git_dir: str | os.PathLike[str], oids: list[str]) -> dict[str, Any]:
    """Make the objects (hex ids) local; returns the daemon's batch statistics."""
    return request(git_dir, with_command_config({"op": "fetch", "oids": oids}))


def with_command_config(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` with the `lazygit.*` values of the git command that runs us, if any."""
    config = command_config(os.environ)
    if config:
        message["config"] = config
    return message


def command_config(environ: Mapping[str, str]) -> dict[str, str]:
    """The `lazygit.*` values (``{lowercase name: text}``) the git command running us was
    given by `git -c` or GIT_CONFIG_COUNT/KEY_n/VALUE_n: git passes both down to the
    processes it runs, the latter read first.  The daemon applies the ones it takes per
    request (daemon.PER_REQUEST)."""
    out: dict[str, str] = {}
    try:
        count = int(environ.get("GIT_CONFIG_COUNT") or 0)
    except ValueError:
        count = 0
    for i in range(max(0, count)):
        key = environ.get(f"GIT_CONFIG_KEY_{i}", "")
        if key[:8].lower() == "lazygit.":
            out[key[8:].lower()] = environ.get(f"GIT_CONFIG_VALUE_{i}", "")
    params = environ.get("GIT_CONFIG_PARAMETERS", "")
    if "lazygit." in params.lower():
        for word, no_value in _sq_words(params):
            key, sep, value = word.partition("=")
            if key[:8].lower() == "lazygit.":
                out[key[8:].lower()] = "true" if no_value or not sep else value
    return out


def _sq_words(text: str) -> list[tuple[str, bool]]:
    """The words of git's shell quoting (``'a'\\''b'`` is ``a'b``), as GIT_CONFIG_PARAMETERS
    holds them; each with whether it ends in an unquoted ``=`` (``'k'=``: `git -c k`, no
    value, which is true; ``'k'=''`` is the empty string)."""
    words: list[tuple[str, bool]] = []
    word: list[str] = []
    in_word = bare_eq = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                end = n  # unterminated: take the rest
            word.append(text[i + 1 : end])
            i, in_word, bare_eq = end + 1, True, False
        elif c == "\\" and i + 1 < n:
            word.append(text[i + 1])
            i, in_word, bare_eq = i + 2, True, False
        elif c.isspace():
            if in_word:
                words.append(("".join(word), bare_eq))
                word, in_word, bare_eq = [], False, False
            i += 1
        else:
            word.append(c)
            i, in_word, bare_eq = i + 1, True, c == "="
    if in_word:
        words.append(("".join(word), bare_eq))
    return words


def describe(reply: dict[str, Any]) -> str:
    """One progress line for a finished batch."""
    kib = reply.get("bytes", 0) / 1024
    objects = reply.get("objects", 0)
    noun = "object" if objects == 1 else "objects"  # (progress.counted: not on this path)
    return f"lazygit: fetched {objects} {noun} ({kib:.0f} KiB) in {reply.get('seconds', 0.0):.2f} s"
