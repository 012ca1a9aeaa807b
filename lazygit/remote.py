"""The HTTP view of a dumb remote: small files, file sizes and validators, and byte ranges.

One ``httpx.Client`` (HTTP/2 where the server offers it) is shared by a small thread pool:
measured, threads over a sync client cost less per request than an ``AsyncClient``.  The
request count, not the byte count, dominates on fast links, so ranges go out as multi-range
requests where the server supports them (probed once per remote), and every ranged request
carries ``If-Range`` so that a pack replaced on the server (a repack) is never stitched
together from two versions.
"""

from __future__ import annotations

import bisect
import email.utils
import enum
import os
import random
import ssl
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from lazygit import credentials
from lazygit.config import Settings, config_items, parse_bool
from lazygit.errors import (
    ABSENT_STATUSES,
    CorruptDataError,
    HTTPStatusError,
    LazyGitError,
    PackChangedError,
    RemoteError,
)
from lazygit.gitcmd import run_git
from lazygit.httpranges import iter_multipart, multipart_boundary, parse_content_range
from lazygit.ranges import Extent, group_requests, range_header, split
from lazygit.workers import Workers


def _import_httpx():  # type: ignore[no-untyped-def]
    """Import httpx without its command-line client.

    httpx imports its CLI (rich, click, pygments) at import time whenever they are installed,
    which costs ~70 ms at every clone and daemon start; a placeholder module makes that
    optional import fail the way httpx already handles.
    """
    import sys
    import types

    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", types.ModuleType("httpx._main"))
    import httpx

    return httpx


httpx = _import_httpx()
_H2 = [True]  # False once httpcore was imported without h2


def _http2_available(wanted: bool) -> bool:
    """Whether this process can speak HTTP/2; import httpcore (once) accordingly.

    httpcore imports h2 (~25 ms) at import time whenever it is installed.  HTTP/2 only ever
    comes by ALPN over TLS, so a process whose first remote is plain http (the usual daemon)
    imports httpcore with h2 hidden; a later https remote in that process uses HTTP/1.1.
    It also imports anyio and trio (~5-10 ms) for its async locks, which a sync client
    never takes: they are hidden in every case.
    """
    import sys

    if "httpcore" not in sys.modules:
        hidden = [m for m in ("anyio", "trio") if m not in sys.modules]
        if not wanted and "h2" not in sys.modules:
            hidden.append("h2")
            _H2[0] = False
        for name in hidden:
            sys.modules[name] = None  # type: ignore[assignment]
        try:
            import httpcore  # noqa: F401
        finally:
            for name in hidden:
                del sys.modules[name]
    return wanted and _H2[0]


MAX_REDIRECTS = 5
#: HTTP statuses worth another attempt: the server or a proxy is busy or failing for now.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524})

_T = TypeVar("_T")


def _retryable(exc: LazyGitError, retry_after: float | None = None) -> LazyGitError:
    """Mark an error as transient: the operation that raised it may be attempted again."""
    exc.retryable = True  # type: ignore[attr-defined]
    exc.retry_after = retry_after  # type: ignore[attr-defined]
    return exc


def _decimal(text: str | None) -> int | None:
    """A header's non-negative integer (ASCII digits, at most 20), else None: str.isdigit()
    also takes digits like '²' that int() refuses, and int() refuses 4,301 digits or more."""
    if text is None or not 0 < len(text) <= 20 or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = _decimal(value)
        return None if seconds is None else float(seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class HttpConfig:
    """git's ``http.*`` settings that apply to one URL (``http.<url>.*`` included)."""

    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    ssl_verify: bool = True
    ssl_ca_info: str | None = None
    proxy: str | None = None


def _url_matches(prefix: str, url: str) -> bool:
    """git's URL match, simplified: same scheme and host, path prefix on a segment boundary."""
    p, u = urllib.parse.urlsplit(prefix), urllib.parse.urlsplit(url)
    if p.scheme.lower() != u.scheme.lower():
        return False
    if p.netloc.rpartition("@")[2].lower() != u.netloc.rpartition("@")[2].lower():
        return False
    path = p.path.rstrip("/")
    return not path or u.path == path or u.path.startswith(path + "/")


def load_http_config(url: str, git_dir: Path | None = None) -> HttpConfig:
    """Read ``http.extraHeader``, ``http.sslVerify``, ``http.sslCAInfo`` and ``http.proxy``
    (and their ``http.<url>.`` forms) with one ``git config`` run; the repository's config
    when ``git_dir`` is given.  ``GIT_SSL_NO_VERIFY`` / ``GIT_SSL_CAINFO`` override, as in git.
    """
    proc = run_git(["config", "--null", "--get-regexp", r"^http\."], cwd=git_dir, check=False)
    cfg = HttpConfig()
    best: dict[str, tuple[int, str]] = {}
    if proc.returncode == 0:
        for key, given in config_items(proc.stdout):
            rest = key[len("http.") :]
            sub, _, name = rest.rpartition(".")
            name = name.lower()
            # A key with no "=" is true; "key =" is "" (false), as in git.
            value = given if given is not None else "true" if name == "sslverify" else ""
            if sub and not _url_matches(sub, url):
                continue
            if name == "extraheader":
                if not value:
                    cfg.extra_headers = []
                else:
                    hname, sep, hvalue = value.partition(":")
                    if sep and hname.strip():
                        cfg.extra_headers.append((hname.strip(), hvalue.strip()))
            elif (
                name in ("sslverify", "sslcainfo", "proxy")
                and len(sub) >= best.get(name, (-1, ""))[0]
            ):
                best[name] = (len(sub), value)
    if "sslverify" in best:
        with suppress(ValueError):  # a value git does not read as a boolean: verify
            cfg.ssl_verify = parse_bool(best["sslverify"][1])
    if best.get("sslcainfo", (0, ""))[1]:
        cfg.ssl_ca_info = os.path.expanduser(best["sslcainfo"][1])
    if best.get("proxy", (0, ""))[1]:
        cfg.proxy = best["proxy"][1]
    if os.environ.get("GIT_SSL_NO_VERIFY"):
        cfg.ssl_verify = False
    if os.environ.get("GIT_SSL_CAINFO"):
        cfg.ssl_ca_info = os.environ["GIT_SSL_CAINFO"]
    return cfg


@dataclass(frozen=True)
class FileInfo:
    """A server file's size and validators, as seen when it was first looked at."""

    path: str
    size: int
    etag: str | None
    last_modified: str | None

    @property
    def validator(self) -> str | None:
        """Strong ETag if any, else Last-Modified (for If-Range; weak ETags are not allowed)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


class RangeMode(enum.Enum):
    """How the server answers Range requests."""

    MULTI = "multi"  # 206 multipart/byteranges for several ranges
    SINGLE = "single"  # one range per request only
    NONE = "none"  # Range ignored (200 with the whole file)


class _Downgrade(Exception):
    """A multi-range request was refused or half-answered; retry the ranges one by one."""


def _redact(url: str) -> str:
    """The URL without credentials, for messages."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _reason(exc: Exception) -> str:
    """A short lower-case reason from an OS-level error text ('[Errno 111] Connection refused')."""
    text = str(exc) or type(exc).__name__
    text = " ".join(text.split())
    if text.startswith("[Errno") and "]" in text:
        text = text.split("]", 1)[1].strip()
    return text[:1].lower() + text[1:]


def _unused_tls_context() -> ssl.SSLContext:
    """A TLS context that is never used (plain http), made without loading any certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _refuse_https(request: httpx.Request) -> None:
    """Request hook of plain-http remotes, whose client does not verify certificates."""
    if request.url.scheme == "https":
        raise RemoteError(
            f"the server redirects to {_redact(str(request.url))}",
            "clone the https:// URL instead",
        )


#: An unread body up to this size is read after use, so that its connection is kept.
RELEASE_BYTES = 64 * 1024


def _release(resp: httpx.Response) -> None:
    """Read what is left of a small body nobody read (a HEAD's, a 404 page, a probe's).

    A response closed unread closes its connection, and the next request pays a new
    handshake: one round trip each, which a clone over a distant link felt.  A large body
    (a whole file where a range was asked for) is dropped with its connection instead.
    """
    if resp.is_stream_consumed:
        return
    length = _decimal(resp.headers.get("content-length"))
    if resp.request.method == "HEAD" or (length is not None and length <= RELEASE_BYTES):
        with suppress(httpx.HTTPError):
            resp.read()


class DumbRemote:
    """A repository published by a static HTTP server."""

    def __init__(self, url: str, settings: Settings, *, git_dir: Path | None = None) -> None:
        """``git_dir``: read ``http.*`` settings and credential helpers from this repository's
        config (the daemon); None reads the user's and system's config (a clone)."""
        if url.startswith("lazy::"):
            url = url[len("lazy::") :]
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(
                f"not an http(s) URL: {_redact(url)}", fix="use http://host/path or https://..."
            )
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        self.url: str = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise RemoteError(
                f"bad port in URL: {_redact(url)}", fix="use http://host:PORT/path"
            ) from None
        self._hostport = f"{parts.hostname}:{port}"
        self.settings = settings
        # Requests go to the URL without userinfo: credentials travel only in the
        # Authorization header (never in an error text httpx builds from a URL).
        host_part = parts.netloc.rpartition("@")[2]
        self._plain_url = urllib.parse.urlunsplit((parts.scheme, host_part, path, "", ""))
        self._git_dir = git_dir
        self.http_config = load_http_config(self._plain_url, git_dir)
        self._header_auth = any(
            k.lower() == "authorization" for k, _ in self.http_config.extra_headers
        )
        self._auth_lock = threading.Lock()
        self._cred: credentials.Credential | None = None
        self._asked = False
        self._approved = False
        self._fill_first = False  # ask the credential helpers before the first request
        self._refused = False
        if parts.password is not None:
            self._cred = credentials.Credential(
                urllib.parse.unquote(parts.username or ""),
                urllib.parse.unquote(parts.password),
                bearer=settings.authType.lower() == "bearer",
                from_helper=False,
            )
        #: Attempts made again after a transient failure (for tests and statistics).
        self.retries: int = 0
        #: Set once the server has answered anything: connection failures before that are
        #: taken as a wrong URL or a server that is down, not retried.
        self._answered = False
        self._rng = random.Random()
        self.bytes_read: int = 0
        self.requests: int = 0
        self._lock = threading.Lock()
        self._progress_lock = threading.Lock()
        self._mode: RangeMode | None = None
        self._mode_lock = threading.Lock()
        self._workers = max(1, int(settings.connections))
        # The range reads, or the loose objects asked for at once, and two more (a probe,
        # a small file) beside them.
        self._max_connections = max(self._workers, int(settings.looseRequests)) + 2
        self._pool: Workers | None = None
        timeout = httpx.Timeout(
            connect=settings.connectTimeout,
            read=settings.readTimeout,
            write=settings.readTimeout,
            pool=None,
        )
        plain = parts.scheme == "http"
        hc = self.http_config
        verify: ssl.SSLContext | bool
        if plain:
            # A plain-http remote needs no TLS context (loading the CA bundle costs ~50 ms);
            # a redirect to https is refused below rather than followed unverified.
            verify = _unused_tls_context()
        elif not hc.ssl_verify:
            verify = False
        elif hc.ssl_ca_info:
            try:
                verify = ssl.create_default_context(cafile=hc.ssl_ca_info)
            except (OSError, ssl.SSLError) as exc:
                raise RemoteError(
                    f"cannot load http.sslCAInfo {hc.ssl_ca_info}: {_reason(exc)}",
                    fix="point http.sslCAInfo at a PEM file of CA certificates",
                ) from None
        else:
            verify = True
        headers = {"Accept-Encoding": "identity", "User-Agent": "lazygit"}
        self._client = httpx.Client(
            # HTTP/2 comes by ALPN over TLS; over plain http httpx would only speak HTTP/1.1.
            http2=_http2_available(not plain),
            verify=verify,
            proxy=hc.proxy,
            event_hooks={"request": [_refuse_https]} if plain else None,
            timeout=timeout,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            limits=httpx.Limits(
                max_connections=self._max_connections,
                max_keepalive_connections=self._max_connections,
            ),
            # Compressed bodies would break byte ranges and the byte accounting.
            headers=headers,
        )
        for name, value in hc.extra_headers:
            self._client.headers[name] = value

    @property
    def display_url(self) -> str:
        """The URL for messages and logs: without any credentials."""
        return self._plain_url

    # -- lifecycle -------------------------------------------------------------------------

    def close(self, *, wait: bool = True) -> None:
        """Stop the worker threads and close the connections.  ``wait=False`` (on an error or
        Ctrl-C) does not wait for requests in flight: a stalled read must not hold the exit."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait)
            self._pool = None
        self._client.close()

    def __enter__(self) -> DumbRemote:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(wait=exc_type is None)

    # -- plumbing --------------------------------------------------------------------------

    def _file_url(self, path: str) -> str:
        return self._plain_url + urllib.parse.quote(path.lstrip("/"), safe="/~@+=,:")

    def _count(self, requests: int = 0, nbytes: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.bytes_read += nbytes

    @contextmanager
    def _request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """A streamed response, with transport failures turned into one-line RemoteErrors."""
        url = self._file_url(path)
        stream = None
        try:
            while True:
                if self._fill_first:
                    self._fill_now()
                cred = self._cred
                sent = dict(headers or {})
                if cred is not None and not self._header_auth:
                    sent["Authorization"] = cred.header()
                self._count(requests=1)
                stream = self._client.stream(method, url, headers=sent)
                resp = stream.__enter__()
                self._answered = True
                self._count(requests=len(resp.history))
                if resp.status_code == 401 and self._unauthorized(cred):
                    stream.__exit__(None, None, None)
                    stream = None
                    continue
                if cred is not None and resp.status_code < 400 and not self._approved:
                    self._approve(cred)
                break
            yield resp
            _release(resp)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url) from None
        finally:
            if stream is not None:
                stream.__exit__(None, None, None)

    # -- authentication ----------------------------------------------------------------------

    def _unauthorized(self, sent: credentials.Credential | None) -> bool:
        """A 401 to a request sent with ``sent``: True to send it again with a credential.

        git's credential helpers are asked at most once per remote (a clone, or the daemon's
        lifetime); a credential the server refuses is rejected once and not asked again.
        """
        with self._auth_lock:
            if self._cred is not None and self._cred is not sent:
                return True  # another request got a credential meanwhile
            if sent is not None:
                if not self._refused:
                    self._refused = True
                    credentials.reject(sent, cwd=self._git_dir)
                return False
            if self._asked or self._header_auth:
                return False
            self._asked = True
            self._cred = credentials.fill(
                self._plain_url,
                cwd=self._git_dir,
                bearer=self.settings.authType.lower() == "bearer",
            )
            return self._cred is not None

    @property
    def used_credentials(self) -> bool:
        """Whether the server accepted a credential: it wants one."""
        return self._approved

    def expect_credentials(self) -> None:
        """The server wanted a credential before (at the clone): ask git's credential helpers
        before the first request, not after a 401, so that the requests a daemon's first
        batch sends at once are not each answered 401."""
        self._fill_first = True

    def _fill_now(self) -> None:
        with self._auth_lock:  # the other first requests wait here for the credential
            if not self._fill_first:
                return
            if self._cred is None and not self._asked and not self._header_auth:
                self._asked = True
                self._cred = credentials.fill(
                    self._plain_url,
                    cwd=self._git_dir,
                    bearer=self.settings.authType.lower() == "bearer",
                )
            self._fill_first = False

    def _approve(self, cred: credentials.Credential) -> None:
        with self._auth_lock:
            if self._approved or cred is not self._cred:
                return
            self._approved = True
        credentials.approve(cred, cwd=self._git_dir)

    # -- retries -----------------------------------------------------------------------------

    def _retrying(self, op: Callable[[], _T]) -> _T:
        """Run ``op``; transient failures (marked retryable) are attempted again after an
        exponential backoff with jitter, up to ``lazygit.retries`` times; Retry-After is
        honoured up to ``lazygit.retryMaxDelay``."""
        attempt = 0
        while True:
            try:
                return op()
            except LazyGitError as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    if attempt and getattr(exc, "retryable", False):
                        exc.message = f"{exc.message}, {attempt + 1} attempts"
                    raise
            attempt += 1
            with self._lock:
                self.retries += 1
            time.sleep(delay)

    def _retry_delay(self, exc: LazyGitError, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; None: do not try again."""
        if not getattr(exc, "retryable", False) or attempt >= int(self.settings.retries):
            return None
        cap = max(0.0, float(self.settings.retryMaxDelay))
        delay = min(cap, float(self.settings.retryBackoff) * (2**attempt))
        delay *= self._rng.uniform(0.5, 1.0)  # jitter: concurrent requests spread out
        after = getattr(exc, "retry_after", None)
        if after is not None:
            delay = max(delay, min(float(after), cap))
        return delay

    def _transport_error(self, exc: Exception, url: str) -> RemoteError:
        fix = "check the URL and that the server is running"
        if isinstance(exc, httpx.TooManyRedirects):
            return RemoteError(
                f"{_redact(url)}: more than {MAX_REDIRECTS} redirects",
                fix="check the URL and the server's redirect rules",
            )
        text = str(exc)
        if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in text:
            why = text.split("certificate verify failed:", 1)[-1].split("(_ssl")[0].strip()
            return RemoteError(
                f"cannot reach {self._hostport}: TLS certificate not trusted ({why})",
                fix="set git config http.sslCAInfo to the server's CA certificate file, "
                "or http.sslVerify false for a test server",
            )
        if isinstance(exc, httpx.ConnectError) and "SSL" in text:
            return RemoteError(
                f"cannot reach {self._hostport}: TLS handshake failed: {_reason(exc)}",
                fix="check that the server speaks https on this port",
            )
        transient = True
        if isinstance(exc, httpx.ConnectTimeout):
            reason = f"no connection within {self.settings.connectTimeout:g} s"
            transient = self._answered
        elif isinstance(exc, httpx.ReadTimeout):
            reason = f"no data for {self.settings.readTimeout:g} s"
            fix = "the server or network is slow; raise lazygit.readTimeout"
        elif isinstance(exc, httpx.TimeoutException):
            reason = "timed out"
        elif isinstance(exc, httpx.UnsupportedProtocol):
            return RemoteError(f"{_redact(url)}: {_reason(exc)}", fix="use an http(s) URL")
        elif isinstance(exc, httpx.ProxyError):
            reason = f"proxy failed: {_reason(exc)}"
            fix = "check http.proxy and the proxy"
        elif isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
            err = RemoteError(
                f"connection to {self._hostport} lost: {_reason(exc)}", fix="run the command again"
            )
            return _retryable(err)  # type: ignore[return-value]
        elif isinstance(exc, httpx.ConnectError):
            # Refused or unresolvable before the server ever answered: a wrong URL or a server
            # that is down, not worth minutes of retries.  Later it is a restart: retry.
            reason = _reason(exc)
            transient = self._answered
        elif isinstance(exc, httpx.TransportError):
            reason = _reason(exc)
        else:
            reason = _reason(exc)
            transient = False
        err = RemoteError(f"cannot reach {self._hostport}: {reason}", fix=fix)
        return _retryable(err) if transient else err  # type: ignore[return-value]

    def _status_error(self, resp: httpx.Response) -> HTTPStatusError:
        url = _redact(str(resp.url))
        status = resp.status_code
        if status == 401:
            if self._cred is not None or self._header_auth:
                fix = (
                    "the server refused the credential; update it in your git credential "
                    "helper (or http.extraHeader, or the URL)"
                )
            else:
                fix = (
                    "the server wants credentials; set up a git credential helper "
                    "(git config --global credential.helper store) or put them in the URL"
                )
        elif status == 403:
            fix = (
                "the server refused access; put credentials in the URL "
                "(https://user:token@host/path) or check the server's permissions"
            )
        elif status in (404, 410):
            fix = "check the URL; the file is not published (or was removed by a repack)"
        elif status >= 500:
            fix = "the server failed; try again later"
        else:
            fix = None
        err = HTTPStatusError(url, status, fix)
        if status in RETRY_STATUSES:
            _retryable(err, _parse_retry_after(resp.headers.get("retry-after")))
        return err

    def _chunks(
        self,
        resp: httpx.Response,
        on_bytes: Callable[[int], None] | None = None,
        chunk_size: int | None = None,
    ) -> Iterator[bytes]:
        """The raw body, counted."""
        for chunk in resp.iter_raw(chunk_size):
            self._count(nbytes=len(chunk))
            if on_bytes is not None and chunk:
                with self._progress_lock:
                    on_bytes(len(chunk))
            yield chunk

    def _check_same(self, info: FileInfo, resp: httpx.Response, *, whole: bool) -> None:
        """PackChangedError if the response's validators show another version of the file."""
        etag = resp.headers.get("etag")
        modified = resp.headers.get("last-modified")
        changed = (etag is not None and info.etag is not None and etag != info.etag) or (
            modified is not None
            and info.last_modified is not None
            and modified != info.last_modified
        )
        if whole and not changed:
            length = _decimal(resp.headers.get("content-length"))
            changed = length is not None and length != info.size
        if changed:
            raise self._changed(info)

    @staticmethod
    def _changed(info: FileInfo) -> PackChangedError:
        return PackChangedError(
            f"{info.path} changed on the server during the transfer (repacked?); "
            "run the command again"
        )

    # -- small files and metadata ----------------------------------------------------------

    def get_bytes(self, path: str, *, missing_ok: bool = False) -> bytes | None:
        """GET a small file. 404/410/403 -> None if missing_ok else HTTPStatusError.
        Connection problems -> RemoteError('cannot reach <host>: <reason>')."""
        return self.get_with(path, b"".join, missing_ok=missing_ok)

    def get_with(
        self, path: str, consume: Callable[[Iterator[bytes]], _T], *, missing_ok: bool = False
    ) -> _T | None:
        """GET a file and hand its body to ``consume`` as it arrives (a big file is never
        held whole); after a transient failure ``consume`` is called again, from the start.
        404/410/403 -> None if missing_ok, as get_bytes."""
        return self._retrying(lambda: self._get_with(path, consume, missing_ok))

    def _get_with(
        self, path: str, consume: Callable[[Iterator[bytes]], _T], missing_ok: bool
    ) -> _T | None:
        with self._request("GET", path) as resp:
            if resp.status_code in ABSENT_STATUSES and missing_ok:
                return None
            if resp.status_code != 200:
                raise self._status_error(resp)
            return consume(self._chunks(resp))

    def get_head(self, path: str, length: int) -> tuple[bytes, FileInfo] | None:
        """The first ``length`` bytes of a file (fewer if it is shorter) and its size and
        validators, by one Range request, with no HEAD first; None if it does not exist."""
        return self._retrying(lambda: self._get_head(path, length))

    def _get_head(self, path: str, length: int) -> tuple[bytes, FileInfo] | None:
        with self._request("GET", path, {"Range": f"bytes=0-{max(0, length - 1)}"}) as resp:
            status = resp.status_code
            etag, modified = resp.headers.get("etag"), resp.headers.get("last-modified")
            if status in ABSENT_STATUSES:
                return None
            crange = resp.headers.get("content-range", "")
            if status == 416 and crange.startswith("bytes */"):
                return b"", FileInfo(path, _decimal(crange[8:]) or 0, etag, modified)
            if status == 206:
                start, _end, total = parse_content_range(crange)
                if start != 0 or total is None:
                    raise RemoteError(f"{_redact(str(resp.url))}: unexpected Content-Range")
            elif status == 200:  # the server ignores Range: the head of the whole file
                total = _decimal(resp.headers.get("content-length"))
                if total is None:
                    raise RemoteError(f"{_redact(str(resp.url))}: the server hides the size")
            else:
                raise self._status_error(resp)
            data = bytearray()
            for chunk in self._chunks(resp):
                data += chunk
                if status == 200 and len(data) >= length:
                    break  # the rest of a whole file is not wanted (its connection goes)
            return bytes(data[:length]), FileInfo(path, total, etag, modified)

    def stat(self, path: str) -> FileInfo:
        """HEAD (falls back to GET Range 0-0); size and validators."""
        return self._retrying(lambda: self._stat(path))

    def _stat(self, path: str) -> FileInfo:
        with self._request("HEAD", path) as resp:
            status = resp.status_code
            length = _decimal(resp.headers.get("content-length"))
            if status == 200 and length is not None:
                return FileInfo(
                    path, length, resp.headers.get("etag"), resp.headers.get("last-modified")
                )
            if status not in (200, 405, 501):
                raise self._status_error(resp)
        with self._request("GET", path, {"Range": "bytes=0-0"}) as resp:
            status = resp.status_code
            etag, modified = resp.headers.get("etag"), resp.headers.get("last-modified")
            crange = resp.headers.get("content-range", "")
            if status == 206:
                total = parse_content_range(crange)[2]
                if total is None:
                    raise RemoteError(f"{_redact(str(resp.url))}: the server hides the size")
                for _ in self._chunks(resp):
                    pass
                return FileInfo(path, total, etag, modified)
            size = _decimal(crange[8:]) if crange.startswith("bytes */") else None
            if status == 416 and size is not None:
                return FileInfo(path, size, etag, modified)
            if status == 200:
                length = _decimal(resp.headers.get("content-length"))
                if length is not None:
                    return FileInfo(path, length, etag, modified)
                raise RemoteError(f"{_redact(str(resp.url))}: the server hides the size")
            raise self._status_error(resp)

    # -- range mode ------------------------------------------------------------------------

    def submit(self, fn: Callable[..., _T], *args: object) -> Future[_T]:
        """Run ``fn(*args)`` on this remote's worker threads: daemon threads, so that Ctrl-C
        never waits for a request stalled in one of them (a ThreadPoolExecutor does)."""
        return self._executor().submit(fn, *args)

    @property
    def known_range_mode(self) -> RangeMode | None:
        """The range mode learned so far (None: not probed yet)."""
        return self._mode

    def assume_range_mode(self, mode: RangeMode) -> None:
        """Take a range mode learned earlier (the clone's probe) instead of probing again.
        A server that stopped doing multi-range is still found out: its 200 or 416 to a
        multi-range request downgrades, as after a probe."""
        with self._mode_lock:
            if self._mode is None:
                self._mode = mode

    def range_mode(self, info: FileInfo) -> RangeMode:
        """Probe once per remote (cached): a 2-range request on this file."""
        with self._mode_lock:
            if self._mode is not None:
                return self._mode
            if info.size == 0:
                return RangeMode.NONE  # nothing to learn from an empty file; not cached
            self._mode = self._retrying(lambda: self._probe(info))
            return self._mode

    def _probe(self, info: FileInfo) -> RangeMode:
        if info.size >= 3:
            with self._request("GET", info.path, {"Range": "bytes=0-0,2-2"}) as resp:
                status = resp.status_code
                if status == 206:
                    boundary = multipart_boundary(resp.headers.get("content-type", ""))
                    if boundary is None:
                        return RangeMode.SINGLE
                    chunks = self._chunks(resp)
                    try:
                        got = {s: d for s, _e, d in iter_multipart(chunks, boundary)}
                    except CorruptDataError:
                        return RangeMode.SINGLE
                    for _ in chunks:  # the epilogue: read to the end, the connection is kept
                        pass
                    # A server that merged 0-0,2-2 into 0-2 still answered multipart: fine.
                    return RangeMode.MULTI if 0 in got else RangeMode.SINGLE
                # 200: the server ignores Range, or only multi-range (nginx max_ranges 1,
                # some CDNs); leaving the block drops the unread body.  Try one range.
                if status not in (200, 400, 416):
                    raise self._status_error(resp)
        with self._request("GET", info.path, {"Range": "bytes=0-0"}) as resp:
            if resp.status_code == 206:
                for _ in self._chunks(resp):
                    pass
                return RangeMode.SINGLE
            if resp.status_code in (200, 400, 416):
                return RangeMode.NONE
            raise self._status_error(resp)

    def _downgrade(self) -> None:
        with self._mode_lock:
            if self._mode is RangeMode.MULTI:
                self._mode = RangeMode.SINGLE

    # -- reading ---------------------------------------------------------------------------

    def iter_file(self, info: FileInfo, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream a whole file (validated against info)."""
        yield from self._iter_file(info, chunk_size, None)

    def _iter_file(
        self, info: FileInfo, chunk_size: int, on_bytes: Callable[[int], None] | None
    ) -> Iterator[bytes]:
        """The whole file; after a transient failure it is requested again and the bytes
        already passed on are skipped (the validators prove it is the same file)."""
        done = 0
        attempt = 0
        while True:
            try:
                seen = 0
                for chunk in self._iter_file_once(info, chunk_size, on_bytes):
                    end = seen + len(chunk)
                    if end > done:
                        out = chunk[max(0, done - seen) :]
                        done = end
                        yield out
                    seen = end
                return
            except LazyGitError as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise
            attempt += 1
            with self._lock:
                self.retries += 1
            time.sleep(delay)

    def _iter_file_once(
        self, info: FileInfo, chunk_size: int, on_bytes: Callable[[int], None] | None
    ) -> Iterator[bytes]:
        with self._request("GET", info.path) as resp:
            if resp.status_code != 200:
                raise self._status_error(resp)
            self._check_same(info, resp, whole=True)
            got = 0
            for chunk in self._chunks(resp, on_bytes, chunk_size):
                got += len(chunk)
                if got > info.size:
                    raise self._changed(info)
                yield chunk
            if got != info.size:
                raise _retryable(
                    CorruptDataError(
                        f"{info.path}: the server sent {got} of {info.size} bytes",
                        fix="run the command again",
                    )
                )

    def read_extents(
        self,
        info: FileInfo,
        extents: Sequence[Extent],
        *,
        on_bytes: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[Extent, bytes]]:
        """Yield (extent, bytes) for every given extent (sorted, disjoint) in ascending order.
        Groups them into requests by range mode and settings, runs up to settings.connections
        requests concurrently with bounded look-ahead (memory bounded), sends If-Range with the
        validator, checks every 206 (Content-Range within the file, total == info.size, ETag
        unchanged). 200 to a ranged request: Range ignored (slice the streamed body) unless the
        validator changed -> PackChangedError. 416/400 to a multi-range: downgrade to SINGLE and
        retry. on_bytes is called with each received byte count (progress; from worker threads,
        one call at a time)."""
        wanted = list(extents)
        prev_end = 0
        for e in wanted:
            if e.start < prev_end or e.end > info.size:
                raise ValueError(f"extents must be sorted, disjoint and inside {info.path}")
            prev_end = e.end
        if not wanted:
            return
        if self.range_mode(info) is RangeMode.NONE:
            yield from self._slice_stream(info, wanted, self._iter_file(info, 1 << 16, on_bytes))
            return
        yield from self._read_ranged(info, wanted, on_bytes)

    @staticmethod
    def _slice_stream(
        info: FileInfo, wanted: Sequence[Extent], chunks: Iterator[bytes]
    ) -> Iterator[tuple[Extent, bytes]]:
        """Cut sorted extents out of a whole-file stream, holding one extent at a time."""
        pos = 0  # file offset of chunks[0]
        pending = bytearray()  # bytes of the current extent collected so far
        it = iter(wanted)
        cur = next(it, None)
        while cur is not None and cur.length == 0:
            yield cur, b""
            cur = next(it, None)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                cpos = pos
                pos += len(chunk)
                while cur is not None:
                    lo = max(cur.start + len(pending), cpos)
                    hi = min(cur.end, pos)
                    if lo >= pos:
                        break
                    if hi > lo:
                        pending += view[lo - cpos : hi - cpos]
                    if cur.start + len(pending) < cur.end:
                        break
                    yield cur, bytes(pending)
                    pending = bytearray()
                    cur = next(it, None)
                if cur is None:
                    return
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if cur is not None:
            raise _retryable(
                CorruptDataError(f"{info.path}: the server sent fewer bytes than needed")
            )

    def _executor(self) -> Workers:
        with self._lock:
            if self._pool is None:
                self._pool = Workers(self._workers, "lazygit-http")
            return self._pool

    def _read_ranged(
        self, info: FileInfo, wanted: list[Extent], on_bytes: Callable[[int], None] | None
    ) -> Iterator[tuple[Extent, bytes]]:
        pieces = split([e for e in wanted if e.length], max(1, int(self.settings.maxRangeBytes)))
        pool = self._executor()
        window = 2 * self._workers
        inflight: deque[Future[dict[Extent, bytes]]] = deque()
        next_piece = 0

        def submit_next() -> bool:
            nonlocal next_piece
            if next_piece >= len(pieces):
                return False
            multi = self._mode is RangeMode.MULTI
            max_ranges = int(self.settings.rangesPerRequest) if multi else 1
            head = pieces[next_piece : next_piece + max(1, max_ranges)]
            group = group_requests(
                head, max_ranges=max_ranges, max_bytes=int(self.settings.maxRangeBytes)
            )[0]
            next_piece += len(group)
            inflight.append(pool.submit(self._fetch_group, info, group, on_bytes))
            return True

        got: dict[Extent, bytes] = {}
        try:
            while len(inflight) < window and submit_next():
                pass
            piece_i = 0
            for e in wanted:
                if e.length == 0:
                    yield e, b""
                    continue
                parts: list[bytes] = []
                covered = e.start
                while covered < e.end:
                    piece = pieces[piece_i]
                    while piece not in got:
                        got.update(inflight.popleft().result())
                        submit_next()
                    parts.append(got.pop(piece))
                    covered = piece.end
                    piece_i += 1
                yield e, parts[0] if len(parts) == 1 else b"".join(parts)
        finally:
            for fut in inflight:
                fut.cancel()

    def _fetch_group(
        self, info: FileInfo, group: list[Extent], on_bytes: Callable[[int], None] | None
    ) -> dict[Extent, bytes]:
        """Bytes of every extent of one request group; retries one by one on a downgrade."""
        if len(group) > 1:
            try:
                return self._fetch_retrying(info, group, on_bytes)
            except _Downgrade:
                self._downgrade()
        out: dict[Extent, bytes] = {}
        for e in group:
            try:
                out.update(self._fetch_retrying(info, [e], on_bytes))
            except _Downgrade:
                raise RemoteError(
                    f"{_redact(self._file_url(info.path))}: the server refused a single range",
                    fix="the server must support HTTP Range requests",
                ) from None
        return out

    def _fetch_retrying(
        self, info: FileInfo, group: list[Extent], on_bytes: Callable[[int], None] | None
    ) -> dict[Extent, bytes]:
        """``_fetch``, repeated after transient failures (ranged GETs are idempotent)."""
        return self._retrying(lambda: self._fetch(info, group, on_bytes))

    def _fetch(
        self, info: FileInfo, group: list[Extent], on_bytes: Callable[[int], None] | None
    ) -> dict[Extent, bytes]:
        """One ranged request for the group (sorted, disjoint)."""
        headers = {"Range": range_header(group)}
        if info.validator:
            headers["If-Range"] = info.validator
        with self._request("GET", info.path, headers) as resp:
            status = resp.status_code
            if status == 200:
                self._check_same(info, resp, whole=True)
                if len(group) > 1:
                    # Too many ranges for this server (Starlette > 100): do not read the file.
                    raise _Downgrade
                with self._mode_lock:
                    self._mode = RangeMode.NONE  # for later calls; this one slices the body
                chunks = self._chunks(resp, on_bytes)
                return dict(self._slice_stream(info, group, chunks))
            if status in (400, 416):
                if status == 416 and len(group) == 1:
                    crange = resp.headers.get("content-range", "")
                    if crange.startswith("bytes */") and crange[8:] != str(info.size):
                        raise self._changed(info)
                raise _Downgrade
            if status != 206:
                raise self._status_error(resp)
            etag = resp.headers.get("etag")
            if etag is not None and info.etag is not None and etag != info.etag:
                raise self._changed(info)
            boundary = multipart_boundary(resp.headers.get("content-type", ""))
            chunks = self._chunks(resp, on_bytes)
            if boundary is not None:
                try:
                    received = list(iter_multipart(chunks, boundary))
                except CorruptDataError as exc:
                    raise _retryable(exc) from None  # most often a body cut short
                for _ in chunks:  # the epilogue: read to the end, the connection is kept
                    pass
            else:
                start, end, total = parse_content_range(resp.headers.get("content-range", ""))
                if total is not None and total != info.size:
                    raise self._changed(info)
                received = [(start, end, b"".join(chunks))]
        return self._assemble(info, group, received)

    def _assemble(
        self, info: FileInfo, group: list[Extent], received: list[tuple[int, int, bytes]]
    ) -> dict[Extent, bytes]:
        """Map the parts (any order, possibly merged by the server) back to the extents."""
        received.sort(key=lambda p: p[0])
        starts = [p[0] for p in received]
        for start, end, data in received:
            if len(data) != end - start or end > info.size:
                raise _retryable(
                    CorruptDataError(f"{info.path}: a range from the server has a bad length")
                )
        out: dict[Extent, bytes] = {}
        missing = False
        for e in group:
            pos = e.start
            pieces: list[bytes] = []
            while pos < e.end:
                j = bisect.bisect_right(starts, pos) - 1
                if j < 0 or received[j][1] <= pos:
                    missing = True
                    break
                start, end, data = received[j]
                take_end = min(end, e.end)
                pieces.append(data[pos - start : take_end - start])
                pos = take_end
            if pos >= e.end:
                out[e] = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if missing:
            if len(group) > 1:
                raise _Downgrade  # answered only some ranges: ask one by one
            raise _retryable(
                CorruptDataError(f"{info.path}: the server sent a different range than asked")
            )
        return out
