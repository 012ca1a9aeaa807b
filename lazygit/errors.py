"""The errors lazygit reports: one clear line naming the cause and, where known, the fix.

Every expected failure is a :class:`LazyGitError`; the CLI, the remote helper and the hook
print ``str(error)`` and exit non-zero, never a traceback.  Standard library only.
"""

from __future__ import annotations


class LazyGitError(Exception):
    """An expected failure, reported to the user as one line."""

    exit_code = 1

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        line = self.message if not self.fix else f"{self.message} ({self.fix})"
        return " ".join(line.split())


class RemoteError(LazyGitError):
    """The server could not be reached, or answered something unusable."""


class NotAGitServerError(RemoteError):
    """The URL does not publish a bare git repository for dumb HTTP."""


#: What a missing file is answered with. 403 too: Amazon S3 and Google Cloud Storage answer
#: 403 for a key that does not exist when the reader may not list the bucket, as public
#: buckets are usually set up. Used where a file may be absent (a pack's .bitmap, the
#: alternates, a loose object), never for info/refs: there a 403 is a refusal.
ABSENT_STATUSES = (403, 404, 410)


class HTTPStatusError(RemoteError):
    """The server answered with an HTTP status we cannot proceed with."""

    def __init__(self, url: str, status: int, fix: str | None = None) -> None:
        super().__init__(f"{url}: HTTP {status}", fix)
        self.url = url
        self.status = status

    @property
    def absent(self) -> bool:
        """The file is not there (see ABSENT_STATUSES)."""
        return self.status in ABSENT_STATUSES


class RangeUnsupportedError(RemoteError):
    """The server refused a Range request form (400/416); the caller downgrades."""


class PackChangedError(RemoteError):
    """A server file changed while it was being read (for example a repack)."""


class CorruptDataError(LazyGitError):
    """Bytes from the server failed a structural or hash check."""


class GitCommandError(LazyGitError):
    """An internal git command failed."""


class DestinationError(LazyGitError):
    """The clone destination, or a lazy clone's object store, cannot be written."""


class DaemonError(LazyGitError):
    """The per-repository helper daemon could not be reached or failed."""
