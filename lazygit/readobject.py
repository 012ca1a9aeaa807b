"""The read-object hook's side of microsoft/git's read-object protocol, served by the daemon.

microsoft/git (``core.virtualizeObjects=true``) starts ``hooks/read-object`` once per git
process at the first missing object and then asks for one object at a time
(``Documentation/technical/read-object-protocol.txt``)::

    git  > git-read-object-client, version=1, flush
    hook < git-read-object-server, version=1, flush
    git  > capability=get, flush
    hook < capability=get, flush
    git  > command=get, sha1=<40 hex>, flush      (repeated)
    hook < status=success | status=error | status=abort, flush

Status semantics chosen from the protocol text and git's read_object_process():

* ``success``: the daemon answered that the object is now in the local object store; git
  re-reads the store.
* ``error``: this object could not be made local (the daemon answered ``ok: false``, timed
  out or lost the connection; a malformed request). Git reports the object missing and keeps
  asking for later objects: the cause may be transient or specific to that object.
* ``abort``: "cannot ... process ... any future content for the lifetime of the Git process".
  Used when the repository cannot be found (no git directory) or the daemon cannot be
  reached or started at all (its first ``ping`` fails). Git then stops sending requests to
  this hook, so one git command does not wait ``lazygit.daemonTimeout`` once per object.

A protocol violation that breaks the framing (bad pkt-line, wrong welcome, no common
version) prints one line and exits 1; git then stops the hook and restarts it for the next
object. End of input between requests is git exiting: exit 0. Standard library only: this
runs at the start of every git process that misses an object.
"""

from __future__ import annotations

import os
import sys

from lazygit import daemonclient
from lazygit.errors import CorruptDataError, LazyGitError
from lazygit.pktline import flush, read_text_until_flush, write_text

# `typing`, `re` and `pathlib` cost ~30 ms to import; the hook starts with every git process.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, TextIO

WELCOME_CLIENT = "git-read-object-client"
WELCOME_SERVER = "git-read-object-server"
VERSION = "version=1"
CAPABILITY = "capability=get"

_HEX = frozenset("0123456789abcdefABCDEF")


class ProtocolError(LazyGitError):
    """git's side did not follow the read-object protocol; the hook exits and git restarts it."""


def _pairs(lines: list[str]) -> dict[str, str]:
    """``key=value`` lines as a dict (the first occurrence of a key wins)."""
    pairs: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key not in pairs:
            pairs[key] = value
    return pairs


class ReadObjectServer:
    """One hook process: the handshake, then one request at a time until git closes stdin."""

    def __init__(self, inp: BinaryIO, out: BinaryIO, err: TextIO) -> None:
        self.inp = inp
        self.out = out
        self.err = err
        self.git_dir: str | None = None
        self.abort_reason: str | None = None  # set: answer every request with status=abort
        self.daemon_checked = False

    def say(self, message: str) -> None:
        """One line on stderr, which git passes through to the user."""
        self.err.write(f"lazygit: {' '.join(message.split())}\n")
        self.err.flush()

    # -- handshake -----------------------------------------------------------------------
    def handshake(self) -> None:
        """Welcome and version, then capabilities (git detects ours from our reply list)."""
        hello = read_text_until_flush(self.inp)
        if not hello or hello[0] != WELCOME_CLIENT:
            got = hello[0] if hello else "<flush>"
            raise ProtocolError(
                f"read-object hook: expected {WELCOME_CLIENT!r}, got {got!r}",
                "is the hook run by microsoft/git with core.virtualizeObjects=true?",
            )
        if VERSION not in hello[1:]:
            offered = ", ".join(hello[1:]) or "none"
            raise ProtocolError(
                f"read-object hook: git offers protocol {offered}; lazygit speaks {VERSION}"
            )
        write_text(self.out, WELCOME_SERVER)
        write_text(self.out, VERSION)
        flush(self.out)
        offered_caps = read_text_until_flush(self.inp)
        # Reply with the subset we support; git enables exactly what we list.
        if CAPABILITY in offered_caps:
            write_text(self.out, CAPABILITY)
        flush(self.out)

    # -- requests ------------------------------------------------------------------------
    def serve(self) -> int:
        """Answer requests until git closes the pipe; the process exit status."""
        self.handshake()
        self._find_repository()
        while True:
            try:
                request = read_text_until_flush(self.inp)
            except EOFError:
                return 0
            write_text(self.out, f"status={self.handle(request)}")
            flush(self.out)

    def _find_repository(self) -> None:
        """The common git dir, once per process (git runs the hook with GIT_DIR set)."""
        try:
            self.git_dir = daemonclient.common_git_dir()
        except LazyGitError as exc:
            self.abort(f"read-object hook: {exc}")

    def abort(self, reason: str) -> None:
        """Give up for the rest of this git process; say why once."""
        self.abort_reason = reason
        self.say(reason)

    def handle(self, request: list[str]) -> str:
        """The status for one request (``success``, ``error`` or ``abort``)."""
        pairs = _pairs(request)
        command = pairs.get("command")
        if command != "get":
            self.say(f"read-object hook: unsupported command {command!r}")
            return "error"
        oid = pairs.get("sha1", "")
        if len(oid) != 40 or not set(oid) <= _HEX:
            self.say(f"read-object hook: malformed object id {oid!r} (expected 40 hex digits)")
            return "error"
        if self.abort_reason is not None or self.git_dir is None:
            return "abort"
        if not self.daemon_checked:
            # One ping per git process: an unreachable daemon aborts instead of making git
            # wait daemonTimeout for every object.
            try:
                daemonclient.request(self.git_dir, {"op": "ping"})
            except LazyGitError as exc:
                self.abort(str(exc))
                return "abort"
            except (OSError, ValueError) as exc:
                self.abort(f"the lazygit daemon answered a ping with garbage: {exc}")
                return "abort"
            self.daemon_checked = True
        try:
            daemonclient.fetch(self.git_dir, [oid.lower()])
        except LazyGitError as exc:
            self.say(str(exc))
            return "error"
        except (OSError, ValueError) as exc:
            self.say(f"bad reply from the lazygit daemon for {oid}: {exc}")
            return "error"
        return "success"


def _quiet_stdout() -> None:
    """After git closed our stdout, stop Python's exit-time flush from complaining."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main() -> int:
    """Entry point of hooks/read-object: serve git on stdin/stdout; the exit status."""
    server = ReadObjectServer(sys.stdin.buffer, sys.stdout.buffer, sys.stderr)
    try:
        return server.serve()
    except EOFError:
        return 0  # git exited during the handshake
    except (ProtocolError, CorruptDataError) as exc:
        server.say(str(exc))
        return 1
    except BrokenPipeError:
        _quiet_stdout()
        return 0  # git went away while we answered
    except KeyboardInterrupt:
        return 130


__all__ = ["ProtocolError", "ReadObjectServer", "main"]
