"""Embedded static HTTP server for bare repositories (Starlette + uvicorn).

It exists so that `lazygit serve` and the tests can publish repositories without nginx,
while still behaving like a good static host: GET/HEAD, single and multi-range 206,
keep-alive, strong ETags, Last-Modified and If-Range. Only this module (imported by the
`serve` command and the tests) pulls in Starlette and uvicorn; `import lazygit` does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import re
import socket
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from secrets import token_hex
from types import TracebackType

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import FileResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lazygit.errors import LazyGitError

__all__ = ["MAX_RANGES", "BackgroundServer", "cache_control_for", "make_app", "serve"]

IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"

# Content-addressed files never change under their name: packs (named by their checksum),
# their indexes, and loose objects. Everything else (refs, info/*, HEAD, bitmaps that can
# be regenerated for the same pack) must be revalidated on every use.
_IMMUTABLE_RE = re.compile(
    r"(?:^|/)objects/(?:pack/pack-[0-9a-f]{40,64}\.(?:pack|idx|rev)|[0-9a-f]{2}/[0-9a-f]{38,62})$"
)


#: Ranges accepted in one request; beyond this the whole file is sent (200). Starlette's
#: default is 100; nginx manages about 400 before its 8 KiB header buffer overflows.
MAX_RANGES = 1000


#: Bytes read per hop to a worker thread, and sent per ASGI message.
READ_BYTES = 512 * 1024
#: A piece of a multipart response: (range start, range end, piece start, piece end).
_Piece = tuple[int, int, int, int]


class _RepoFileResponse(FileResponse):
    """FileResponse accepting more ranges per request than Starlette's default 100, and
    reading them in fewer hops to a worker thread.

    Starlette reads 64 KiB per hop and spends two hops (seek, read) and three messages on
    every range of a multipart response; a lazy clone asks for hundreds of small ranges at
    once, and those hops made the embedded server a third slower than nginx.  This replaces
    Starlette's private ``_handle_multiple_ranges`` (the same signature from 0.40 to 1.10);
    tests/test_server.py checks multipart answers part by part.
    """

    max_ranges = MAX_RANGES
    chunk_size = READ_BYTES

    async def _handle_multiple_ranges(
        self,
        send: Send,
        ranges: list[tuple[int, int]],
        file_size: int,
        send_header_only: bool,
    ) -> None:
        # Starlette's own, but the parts are read (and framed) a group at a time with pread.
        boundary = token_hex(13)
        content_length, part_header = self.generate_multipart(
            ranges, boundary, file_size, self.headers["content-type"]
        )
        headers = MutableHeaders(raw=list(self.raw_headers))
        headers["content-type"] = f"multipart/byteranges; boundary={boundary}"
        headers["content-length"] = str(content_length)
        await send({"type": "http.response.start", "status": 206, "headers": headers.raw})
        if send_header_only:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            for group in _read_groups(ranges, self.chunk_size):
                body = await anyio.to_thread.run_sync(_read_parts, fd, group, part_header)
                await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            os.close(fd)
        end = f"--{boundary}--".encode("latin-1")
        await send({"type": "http.response.body", "body": end, "more_body": False})


def _read_groups(ranges: list[tuple[int, int]], limit: int) -> Iterator[list[_Piece]]:
    """Pieces of ``ranges`` of about ``limit`` bytes in all per group: a range longer than
    ``limit`` is cut into several pieces."""
    group: list[_Piece] = []
    size = 0
    for start, end in ranges:
        pos = start
        while True:
            stop = min(end, pos + limit - size)
            group.append((start, end, pos, stop))
            size += stop - pos
            pos = stop
            if size >= limit:
                yield group
                group, size = [], 0
            if pos >= end:
                break
    if group:
        yield group


def _read_parts(fd: int, group: list[_Piece], part_header: Callable[[int, int], bytes]) -> bytes:
    """The multipart body of ``group``: each part's header before its first piece, the
    bytes, and the CRLF after its last piece."""
    out = []
    for start, end, pos, stop in group:
        if pos == start:
            out.append(part_header(start, end))
        while pos < stop:
            chunk = os.pread(fd, stop - pos, pos)
            if not chunk:
                raise RuntimeError("the file is shorter than when the response began")
            out.append(chunk)
            pos += len(chunk)
        if stop == end:
            out.append(b"\r\n")
    return b"".join(out)


def cache_control_for(path: str) -> str:
    """Cache-Control for a served path (relative to the root, '/' separated)."""
    return IMMUTABLE if _IMMUTABLE_RE.search(path) else NO_CACHE


def _etag(st: os.stat_result) -> str:
    """Strong ETag that changes when a file is replaced, even with the same size and mtime."""
    base = f"{st.st_dev}-{st.st_ino}-{st.st_mtime_ns}-{st.st_size}"
    return '"' + hashlib.sha1(base.encode(), usedforsecurity=False).hexdigest()[:24] + '"'


class _RepoFiles(StaticFiles):
    """StaticFiles without listings, with per-path Cache-Control and inode-aware ETags.

    Starlette's FileResponse already does Range (single, and up to MAX_RANGES ranges as
    sorted, merged multipart/byteranges; more gives 200), 416 with `Content-Range: bytes */N`,
    If-Range (exact strong ETag or Last-Modified, else 200 with the whole file) and HEAD.
    StaticFiles rejects paths that resolve outside the directory (also via symlinks).
    """

    def file_response(
        self,
        full_path: os.PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        rel = os.path.relpath(os.fspath(full_path), os.path.realpath(str(self.directory)))
        # The validators must describe the very bytes sent.  StaticFiles stat()ed the path
        # before this call and FileResponse opens it after; a file replaced in between (a
        # server repack renaming a new pack into place) would go out under the old ETag.
        # So: open it now, take the validators from that open file, and serve that file.
        fd = os.open(full_path, os.O_RDONLY | os.O_CLOEXEC)
        stat_result = os.fstat(fd)
        headers = {
            # FileResponse only sets these if absent, so ours win.
            "etag": _etag(stat_result),
            "cache-control": cache_control_for(rel.replace(os.sep, "/")),
        }
        response = _RepoFileResponse(
            f"/proc/self/fd/{fd}",
            status_code=status_code,
            stat_result=stat_result,
            headers=headers,
            media_type=mimetypes.guess_type(os.fspath(full_path))[0] or "application/octet-stream",
        )
        # Closed when the response is done with (sent, refused, or dropped by a client).
        weakref.finalize(response, os.close, fd)
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response


class _Counter:
    """ASGI middleware counting requests and response body bytes (for tests and stats)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.bytes_sent = 0
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.requests += 1

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                self.bytes_sent += len(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, counting_send)


def make_app(root: Path) -> Starlette:
    """A Starlette app serving every file under `root` (all bare repositories in it)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"not a directory: {root}")
    return Starlette(routes=[Mount("/", app=_RepoFiles(directory=root, html=False))])


class BackgroundServer:
    """uvicorn serving `root` on 127.0.0.1 in a background thread (tests, benchmarks)."""

    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = Path(root)
        self._counter = _Counter(make_app(self.root))
        self._sock = _listen("127.0.0.1", port, backlog=128)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        config = uvicorn.Config(
            self._counter,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=60,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def bytes_sent(self) -> int:
        """Response body bytes sent so far (all requests)."""
        return self._counter.bytes_sent

    @property
    def requests(self) -> int:
        """HTTP requests received so far."""
        return self._counter.requests

    def reset_counters(self) -> None:
        """Zero bytes_sent and requests (between measurements)."""
        self._counter.bytes_sent = 0
        self._counter.requests = 0

    def start(self) -> BackgroundServer:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("embedded HTTP server failed to start")
            self._thread.join(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to finish."""
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._thread = None
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); OSError if it cannot.

    Made with ``IPPROTO_TCP`` named: asyncio turns Nagle off (TCP_NODELAY) only on sockets
    whose ``proto`` says TCP, and the connections it accepts take this socket's.  With
    proto 0, every response after a connection's first waited for the client's delayed ACK:
    44 ms for a 400-byte range read over keep-alive, against 1 ms from nginx.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def serve(root: Path, host: str, port: int, quiet: bool) -> None:
    """Serve `root` in the foreground until Ctrl-C (the `lazygit serve` command).

    The socket is bound here, not by uvicorn: ``--port 0`` prints the port it got, and a
    port in use is one line naming it.
    """
    app = make_app(Path(root))
    try:
        sock = _listen(host, port, backlog=2048)
    except OSError as exc:
        raise LazyGitError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            "choose another --port, or 0 for a free one",
        ) from None
    port = sock.getsockname()[1]
    if not quiet:
        shown = f"[{host}]" if ":" in host else host
        print(f"Serving {Path(root).resolve()} at http://{shown}:{port}/ (Ctrl-C to stop)")
    config = uvicorn.Config(
        app,
        log_level="warning" if quiet else "info",
        access_log=not quiet,
        lifespan="off",
        timeout_keep_alive=60,
    )
    # uvicorn re-raises the captured SIGINT after a graceful shutdown; that is a clean exit.
    with contextlib.suppress(KeyboardInterrupt), sock:
        uvicorn.Server(config).run(sockets=[sock])
