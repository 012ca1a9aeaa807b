"""git's side of microsoft/git's read-object protocol, for testing the hook without microsoft/git.

Mirrors read_object_process() and sub-process.c of microsoft/git:

* start: the hook runs with GIT_DIR set, in the worktree top; git writes
  ``git-read-object-client``, ``version=1``, flush; expects ``git-read-object-server``, one
  ``version=N`` from its list, flush; writes ``capability=get``, flush; reads the hook's
  ``capability=...`` lines up to a flush, ignoring other lines and dying on a capability it
  did not offer. ``get`` is enabled only if the hook listed it.
* per object: ``command=get``, ``sha1=<hex>``, flush; reads ``key=value`` lines up to a flush,
  the last ``status=`` wins. ``success``: git looks the object up again (here: verified with
  ``GIT_NO_LAZY_FETCH=1 git cat-file -e``). ``error``: the object is missing, the hook stays.
  ``abort``: git never asks this hook again in this process. Anything else (the hook died, a
  broken packet, no status): git stops the hook and starts a new one for the next object.
"""

from __future__ import annotations

import os
import select
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from lazygit.errors import CorruptDataError
from lazygit.pktline import flush, read_text, write_text

#: Not a timing assertion: only keeps a hung hook from hanging the test run.
HANG_GUARD_SECONDS = 120.0

#: get() results besides the hook's own statuses.
FAILED = "failed"  # the hook died or broke the protocol; it is restarted next time
DISABLED = "disabled"  # nothing sent: the hook aborted earlier or did not list get


class DriverError(AssertionError):
    """The hook did something git would not accept (a test failure)."""


class _FdReader:
    """A blocking reader on a pipe that gives up after HANG_GUARD_SECONDS."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, size: int) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], HANG_GUARD_SECONDS)
        if not ready:
            raise DriverError(f"the hook sent nothing for {HANG_GUARD_SECONDS:.0f} s (hung?)")
        return os.read(self.fd, size)


class _HookFailed(Exception):
    """The hook process failed; git stops it (subprocess_stop) and restarts it later."""


class ReadObjectDriver:
    """Run a read-object hook the way microsoft/git does, one git process's worth."""

    def __init__(
        self,
        hook_path: str | Path,
        git_dir: str | Path,
        env: Mapping[str, str] | None = None,
        *,
        cwd: str | Path | None = None,
        versions: tuple[int, ...] = (1,),
        capabilities: tuple[str, ...] = ("get",),
        verify: bool = True,
    ) -> None:
        self.hook_path = str(hook_path)
        self.git_dir = Path(git_dir)
        self.env = dict(os.environ if env is None else env)
        self.env["GIT_DIR"] = str(self.git_dir)
        self.cwd = Path(cwd) if cwd is not None else self._default_cwd()
        self.versions = versions
        self.capabilities = capabilities
        self.verify = verify
        self.proc: subprocess.Popen[bytes] | None = None
        self.reader: _FdReader | None = None
        self.enabled: set[str] = set()
        self.aborted = False
        self.starts = 0  # how many hook processes were started
        self.exit_codes: list[int] = []  # of the hook processes that ended
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)

    def _default_cwd(self) -> Path:
        """githooks(5): hooks run in the worktree top, or in the git dir when bare."""
        return self.git_dir.parent if self.git_dir.name == ".git" else self.git_dir

    # -- process ------------------------------------------------------------------------
    def _start(self) -> None:
        self.starts += 1
        self.proc = subprocess.Popen(
            [self.hook_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=self.env,
            cwd=self.cwd,
        )
        assert self.proc.stdout is not None
        self.reader = _FdReader(self.proc.stdout.fileno())
        self.enabled = set()
        try:
            self._handshake()
        except (_HookFailed, OSError, CorruptDataError, EOFError) as exc:
            self._stop()
            raise _HookFailed(str(exc)) from exc

    def _write(self, *lines: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        for line in lines:
            write_text(self.proc.stdin, line)
        flush(self.proc.stdin)

    def _read_line(self) -> str | None:
        assert self.reader is not None
        return read_text(self.reader)  # type: ignore[arg-type]

    def _handshake(self) -> None:
        self._write("git-read-object-client", *(f"version={v}" for v in self.versions))
        line = self._read_line()
        if line != "git-read-object-server":
            raise _HookFailed(f"Unexpected line {line!r}, expected git-read-object-server")
        line = self._read_line()
        if line is None or not line.startswith("version="):
            raise _HookFailed(f"Unexpected line {line!r}, expected version")
        try:
            chosen = int(line[len("version=") :])
        except ValueError:
            raise _HookFailed(f"bad version line {line!r}") from None
        if chosen not in self.versions:
            raise _HookFailed(f"Version {chosen} not supported")
        line = self._read_line()
        if line is not None:
            raise _HookFailed(f"Unexpected line {line!r}, expected flush")
        self._write(*(f"capability={c}" for c in self.capabilities))
        while (line := self._read_line()) is not None:
            if not line.startswith("capability="):
                continue
            name = line[len("capability=") :]
            if name not in self.capabilities:
                # sub-process.c dies here: a hook asking for more than git offered is a bug.
                raise DriverError(f"hook requested unsupported capability {name!r}")
            self.enabled.add(name)

    def _stop(self, *, kill: bool = True) -> None:
        """subprocess_stop() (close, SIGTERM, wait) or, at exit, close and wait for the hook."""
        proc, self.proc, self.reader = self.proc, None, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if kill and proc.poll() is None:
            proc.terminate()
        self.exit_codes.append(proc.wait(HANG_GUARD_SECONDS))

    # -- git's requests -------------------------------------------------------------------
    def get(self, sha1_hex: str) -> str:
        """Ask for one object like git; the status (or FAILED / DISABLED)."""
        try:
            if self.proc is None:
                self._start()
            if self.aborted or "get" not in self.enabled:
                return DISABLED
            status = self._request(sha1_hex)
        except _HookFailed:
            return FAILED
        if status == "abort":
            self.aborted = True
        elif status not in ("success", "error"):
            # read_object_process(): "external process failed" -> stop, restart next time.
            self._stop()
            return FAILED
        if status == "success" and self.verify and not self.has_object(sha1_hex):
            raise DriverError(f"the hook answered success but {sha1_hex} is not in the store")
        return status

    def _request(self, sha1_hex: str) -> str | None:
        try:
            self._write("command=get", f"sha1={sha1_hex}")
            status: str | None = None
            while (line := self._read_line()) is not None:
                key, sep, value = line.partition("=")
                if sep and key == "status":
                    status = value  # the last status= line wins
            return status
        except (OSError, CorruptDataError, EOFError) as exc:
            self._stop()
            raise _HookFailed(str(exc)) from exc

    def has_object(self, sha1_hex: str) -> bool:
        """Whether the object store has it now, without any lazy fetch."""
        env = dict(self.env, GIT_NO_LAZY_FETCH="1")
        proc = subprocess.run(
            [
                "git",
                "-c",
                "core.virtualizeObjects=false",
                f"--git-dir={self.git_dir}",
                "cat-file",
                "-e",
                sha1_hex,
            ],
            env=env,
            capture_output=True,
            cwd=self.cwd,  # (where a relative GIT_DIR points from, as for the hook)
        )
        return proc.returncode == 0

    def stderr_text(self) -> str:
        """Everything the hook processes wrote to stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def close(self) -> int | None:
        """Close the pipe like git on exit and wait; the last hook's exit code."""
        had = self.proc is not None
        self._stop(kill=False)
        return self.exit_codes[-1] if had else None

    def __enter__(self) -> ReadObjectDriver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        self._stderr.close()
