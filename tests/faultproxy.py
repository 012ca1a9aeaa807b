"""A fault-injecting HTTP/1.1 reverse proxy for the tests: lazygit -> proxy -> nginx.

It is a real network part (threads, sockets on 127.0.0.1), not a mock: lazygit sees resets,
stalls, truncated bodies, error bursts, 429s, flipped bytes, ignored ranges, a pack replaced
mid-session, redirect loops and authentication challenges exactly as a bad network, a busy
CDN or a server being repacked would present them.  Faults are chosen per request by rules
(path pattern, which matching requests, probability with a fixed seed, how many times).
Keep-alive: each client connection has its own upstream connection, reused across requests.

Parsing is minimal on purpose: requests without bodies (GET/HEAD), responses framed by
Content-Length, chunked encoding, or the connection's end.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import socketserver
import struct
import threading
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

FAULTS = (
    "reset",  # RST before any response byte
    "stall",  # say nothing for `stall` seconds, then close
    "delay",  # wait `stall` seconds, then forward (a long round trip: a distant server)
    "truncate",  # headers and half the body, then close
    "status",  # answer `status` (e.g. 500/502/503) without asking the server
    "retry_after",  # 429 (or `status`) with Retry-After: `retry_after`
    "flip",  # forward, but flip bytes inside the body data (inside a 206 part)
    "ignore_range",  # forward without Range/If-Range: 200 with the whole file
    "replace",  # as after a repack: the file has a new ETag from now on (If-Range fails)
    "redirect_loop",  # 302 to the same path
    "html",  # 200 with an HTML page (a captive portal, a misconfigured server)
    "body",  # 200 (or `status`) with the given `body` bytes instead of the file
)


@dataclass
class Rule:
    """Which requests get which fault."""

    fault: str
    path: str = ".*"  # regex searched in the request path
    methods: Collection[str] | None = None  # e.g. ("GET",); None = any
    nth: Collection[int] | None = None  # 1-based numbers of matching requests; None = all
    probability: float = 1.0
    times: int | None = None  # fire at most this often
    status: int = 503
    retry_after: str = "1"
    stall: float = 30.0
    flip_status: Collection[int] = (206,)  # responses whose bytes "flip" changes
    body: bytes = b""
    matched: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault}")
        self._re = re.compile(self.path)


@dataclass
class Entry:
    """One request as the proxy saw it."""

    method: str
    path: str
    status: int | None  # what the client was sent (None: nothing)
    fault: str | None
    authorization: str | None
    range: str | None
    connection: int = 0  # which client connection (numbered from 1 as they arrive)
    started: float = 0.0  # time.monotonic() when the request arrived ...
    answered: float | None = None  # ... and when its response went out


@dataclass
class _Response:
    status_line: bytes
    headers: list[tuple[str, str]]
    body: bytes
    close: bool
    is_head: bool = False  # an answer to HEAD: its Content-Length describes no body here

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def encode(self, body: bytes | None = None) -> bytes:
        body = self.body if body is None else body
        out = [self.status_line]
        for k, v in self.headers:
            keep = k.lower() not in ("content-length", "transfer-encoding", "connection")
            if keep or (self.is_head and k.lower() == "content-length"):
                out.append(f"{k}: {v}".encode("latin-1"))
        if not self.is_head:
            out.append(f"Content-Length: {len(body)}".encode())
        out.append(b"Connection: close" if self.close else b"Connection: keep-alive")
        return b"\r\n".join(out) + b"\r\n\r\n" + body


def _simple(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    reason = {401: "Unauthorized", 429: "Too Many Requests", 302: "Found"}.get(status, "Error")
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines += [f"Content-Length: {len(body)}", "Connection: keep-alive"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class FaultProxy:
    """The proxy; ``with FaultProxy(upstream_port) as p: ... p.url("repo.git")``."""

    def __init__(self, upstream_port: int, *, seed: int = 1) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.rules: list[Rule] = []
        self.log: list[Entry] = []
        self.fired: Counter[str] = Counter()
        #: Authorization header values accepted; None = no authentication required.
        self.require_auth: set[str] | None = None
        #: Answer this status where the server answers 404 (403: Amazon S3 and GCS for a
        #: missing key when the reader may not list the bucket).
        self.missing_status: int | None = None
        self.auth_scheme = "Basic"
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._connections = 0
        self._etag_suffix: dict[str, str] = {}  # path -> suffix of a "replaced" file's ETag
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # clients that hang up are normal here

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- control ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, name: str) -> str:
        return self.base_url + name.lstrip("/")

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def reset(self) -> None:
        """No rules, no log, no authentication, files as the server has them."""
        with self._lock:
            self.rules.clear()
            self.log.clear()
            self.fired.clear()
            self._etag_suffix.clear()
            self.require_auth = None
            self.missing_status = None

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for s in list(self._conns):
                with contextlib.suppress(OSError):
                    s.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving ------------------------------------------------------------------------------

    def _choose(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if not rule._re.search(path):
                    continue
                if rule.methods is not None and method not in rule.methods:
                    continue
                rule.matched += 1
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                if rule.nth is not None and rule.matched not in rule.nth:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                self.fired[rule.fault] += 1
                return rule
        return None

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._conns.add(client)
        upstream: socket.socket | None = None
        reader = client.makefile("rb")
        with self._lock:
            self._connections += 1
            connection = self._connections
        try:
            while not self._stop.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                method, target, headers = request
                path = target.split("?")[0]
                entry = Entry(
                    method,
                    path,
                    None,
                    None,
                    _get(headers, "authorization"),
                    _get(headers, "range"),
                    connection,
                    time.monotonic(),
                )
                with self._lock:
                    self.log.append(entry)
                if self.require_auth is not None and entry.authorization not in self.require_auth:
                    entry.status = 401
                    challenge = f'{self.auth_scheme} realm="lazygit-test"'
                    client.sendall(_simple(401, {"WWW-Authenticate": challenge}))
                    continue
                rule = self._choose(method, path)
                entry.fault = rule.fault if rule else None
                if rule is not None and not self._before_upstream(rule, client, path, entry):
                    return
                if rule is not None and rule.fault in ("status", "retry_after", "redirect_loop"):
                    continue
                if rule is not None and rule.fault in ("html", "body"):
                    continue
                if rule is not None and rule.fault in ("ignore_range", "replace"):
                    headers = [(k, v) for k, v in headers if k.lower() not in ("range", "if-range")]
                suffix = self._etag_suffix.get(path)
                if suffix is not None:
                    # A replaced file: a conditional range for the old version gets the new
                    # file whole, as a real server answers a failed If-Range.
                    if_range = _get(headers, "if-range")
                    drop = {"if-range"}
                    if if_range is not None and suffix not in if_range:
                        drop.add("range")
                    headers = [(k, v) for k, v in headers if k.lower() not in drop]
                upstream, resp = self._forward(upstream, method, target, headers)
                if resp is None:
                    return
                suffix = self._etag_suffix.get(path)
                if suffix is not None:
                    resp.headers = [(k, _changed_validator(k, v, suffix)) for k, v in resp.headers]
                body = resp.body
                if self.missing_status is not None and resp.status == 404:
                    resp.status_line = f"HTTP/1.1 {self.missing_status} Forbidden".encode()
                if rule is not None and rule.fault == "flip" and resp.status in rule.flip_status:
                    body = _flip(resp, random.Random(rule.fired))
                if rule is not None and rule.fault == "truncate" and len(body) > 1:
                    data = resp.encode(body)
                    client.sendall(data[: len(data) - len(body) // 2])
                    entry.status = resp.status
                    return
                entry.status = resp.status
                entry.answered = time.monotonic()
                client.sendall(resp.encode(body))
                if resp.close:
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                reader.close()
            if upstream is not None:
                with contextlib.suppress(OSError):
                    upstream.close()
            with self._lock:
                self._conns.discard(client)
            with contextlib.suppress(OSError):
                client.close()

    def _before_upstream(self, rule: Rule, client: socket.socket, path: str, entry: Entry) -> bool:
        """Faults that act before the server is asked; False ends the connection."""
        if rule.fault == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return False
        if rule.fault == "stall":
            self._stop.wait(rule.stall)
            return False
        if rule.fault == "delay":
            self._stop.wait(rule.stall)
            return True
        if rule.fault == "status":
            entry.status = rule.status
            client.sendall(_simple(rule.status, body=b"injected failure\n"))
        elif rule.fault == "retry_after":
            status = rule.status if rule.status in (429, 503) else 429
            entry.status = status
            client.sendall(_simple(status, {"Retry-After": rule.retry_after}))
        elif rule.fault == "redirect_loop":
            entry.status = 302
            client.sendall(_simple(302, {"Location": path}))
        elif rule.fault == "html":
            entry.status = 200
            page = b"<!DOCTYPE html><html><body>Welcome</body></html>\n"
            client.sendall(_simple(200, {"Content-Type": "text/html"}, page))
        elif rule.fault == "body":
            entry.status = rule.status if rule.status != 503 else 200
            client.sendall(_simple(entry.status, {"Content-Type": "text/plain"}, rule.body))
        elif rule.fault == "replace":
            with self._lock:
                self._etag_suffix[path] = f"-r{rule.fired}"
        return True

    def _forward(
        self,
        upstream: socket.socket | None,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
    ) -> tuple[socket.socket | None, _Response | None]:
        """Send the request upstream (reconnecting once if a kept-alive socket went stale)."""
        lines = [f"{method} {target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() != "connection"]
        lines.append("Connection: keep-alive")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        for attempt in range(2):
            if upstream is None:
                upstream = socket.create_connection(self.upstream, timeout=60)
            try:
                upstream.sendall(raw)
                resp = _read_response(upstream.makefile("rb"), head=method == "HEAD")
            except OSError:
                resp = None
            if resp is not None:
                if resp.close:
                    upstream.close()
                    upstream = None
                    resp.close = False  # the proxy keeps the client connection
                return upstream, resp
            with contextlib.suppress(OSError):
                upstream.close()
            upstream = None
            if attempt:
                break
        return None, None


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


def _changed_validator(name: str, value: str, suffix: str) -> str:
    if name.lower() == "etag":
        return value[:-1] + suffix + '"' if value.endswith('"') else value + suffix
    if name.lower() == "last-modified":
        return "Wed, 01 Jan 2031 00:00:00 GMT"
    return value


def _read_request(reader) -> tuple[str, str, list[tuple[str, str]]] | None:  # type: ignore[no-untyped-def]
    line = reader.readline(65536)
    while line in (b"\r\n", b"\n"):
        line = reader.readline(65536)
    if not line:
        return None
    method, target, _version = line.decode("latin-1").split(" ", 2)
    headers = _read_headers(reader)
    return method, target, headers


def _read_headers(reader) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    headers = []
    while True:
        line = reader.readline(65536)
        if line in (b"\r\n", b"\n", b""):
            return headers
        k, _, v = line.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))


def _read_response(reader, *, head: bool) -> _Response | None:  # type: ignore[no-untyped-def]
    status_line = reader.readline(65536)
    if not status_line:
        return None
    headers = _read_headers(reader)
    resp = _Response(status_line.rstrip(b"\r\n"), headers, b"", False, head)
    conn = (resp.header("connection") or "").lower()
    resp.close = conn == "close"
    status = resp.status
    if head or status in (204, 304) or 100 <= status < 200:
        return resp
    length = resp.header("content-length")
    if (resp.header("transfer-encoding") or "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int(reader.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                _read_headers(reader)
                break
            body += reader.read(size)
            reader.readline(16)
        resp.body = bytes(body)
    elif length is not None:
        resp.body = reader.read(int(length))
    else:
        resp.body = reader.read()
        resp.close = True
    return resp


def _flip(resp: _Response, rng: random.Random) -> bytes:
    """The body with a few bytes changed inside the file data (not in multipart headers)."""
    body = bytearray(resp.body)
    if not body:
        return bytes(body)
    ctype = resp.header("content-type") or ""
    lo, hi = 0, len(body)
    m = re.search(r"boundary=([^;\s]+)", ctype)
    if m and ctype.startswith("multipart/"):
        # Inside the first part's data: after its header block, within its Content-Range.
        start = body.find(b"\r\n\r\n") + 4
        cr = re.search(rb"Content-Range: bytes (\d+)-(\d+)/", bytes(body[:start]))
        if cr is None:
            return bytes(body)
        lo, hi = start, start + int(cr.group(2)) - int(cr.group(1)) + 1
    for _ in range(3):
        i = rng.randrange(lo, hi)
        body[i] ^= 0xFF
    return bytes(body)
