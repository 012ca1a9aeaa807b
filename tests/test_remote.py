"""DumbRemote against real servers on 127.0.0.1: nginx (multi-range), python -m http.server
(ignores Range), the embedded Starlette server (sorts/merges ranges) and a small in-test
server that refuses multi-range requests in the ways real servers do."""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import os
import random
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import Nginx, free_port

from lazygit.config import Settings
from lazygit.errors import (
    CorruptDataError,
    HTTPStatusError,
    PackChangedError,
    RemoteError,
)
from lazygit.ranges import Extent, coalesce
from lazygit.remote import DumbRemote, FileInfo, RangeMode

DATA_DIR = "test_remote-data"
REPO_DIR = "test_remote-repo.git"
SIZE = 3 * 1024 * 1024 + 17


# -- a configurable range server -----------------------------------------------------------


class QuietServer(http.server.ThreadingHTTPServer):
    """Clients that hang up early (by design: a dropped 200 body) are not errors here."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class RangeServer:
    """A threaded HTTP/1.1 static server with exactly the Range behaviour a test needs.

    ``max_ranges``: more ranges than this are answered with ``refuse`` (416, 400, or 200 with
    the whole file).  Multipart parts go out in *reverse* order so the client must map them
    back by Content-Range.  Special paths: ``/forbidden/...`` (403), ``/loop/...`` (a
    redirect loop), ``/redir/X`` (302 to ``/X``), ``/slow/...`` (sleeps before answering).
    """

    def __init__(self, root: Path, *, max_ranges: int, refuse: int) -> None:
        self.root = root
        self.max_ranges = max_ranges
        self.refuse = refuse
        self.range_requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.answer(head=True)

            def do_GET(self) -> None:
                self.answer(head=False)

            def simple(self, status: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def answer(self, head: bool) -> None:
                path = self.path.split("?")[0]
                if path.startswith("/forbidden/"):
                    return self.simple(403)
                if path.startswith("/loop/"):
                    return self.simple(302, {"Location": path})
                if path.startswith("/redir/"):
                    return self.simple(302, {"Location": path[len("/redir") :]})
                if path.startswith("/slow/"):
                    time.sleep(3)
                    path = path[len("/slow") :]
                file = outer.root / path.lstrip("/")
                if ".." in path or not file.is_file():
                    return self.simple(404)
                data = file.read_bytes()
                st = file.stat()
                etag = f'"{st.st_mtime_ns:x}-{len(data):x}"'
                modified = email.utils.formatdate(st.st_mtime, usegmt=True)
                common = {"ETag": etag, "Last-Modified": modified, "Accept-Ranges": "bytes"}
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if rng and if_range is not None and if_range not in (etag, modified):
                    rng = None
                ranges: list[tuple[int, int]] = []
                if rng:
                    outer.range_requests.append(rng)
                    if not data:  # no byte of an empty file can be asked for
                        return self.simple(416, {"Content-Range": "bytes */0"})
                    for spec in rng.removeprefix("bytes=").split(","):
                        a, _, b = spec.partition("-")
                        ranges.append((int(a), min(int(b), len(data) - 1) + 1))
                    if len(ranges) > outer.max_ranges:
                        if outer.refuse != 200:
                            return self.simple(outer.refuse)
                        ranges = []
                if not ranges:
                    return self.body(200, {**common}, data, head)
                if len(ranges) == 1:
                    a, b = ranges[0]
                    crange = f"bytes {a}-{b - 1}/{len(data)}"
                    return self.body(206, {**common, "Content-Range": crange}, data[a:b], head)
                boundary = "3d6b6a416f9b5"
                out = bytearray()
                for a, b in reversed(ranges):
                    out += (
                        f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n".encode()
                    )
                    out += f"Content-Range: bytes {a}-{b - 1}/{len(data)}\r\n\r\n".encode()
                    out += data[a:b]
                out += f"\r\n--{boundary}--\r\n".encode()
                ctype = f"multipart/byteranges; boundary={boundary}"
                return self.body(206, {**common, "Content-Type": ctype}, bytes(out), head)

            def body(self, status: int, headers: dict[str, str], data: bytes, head: bool) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return self.base_url + name.lstrip("/")

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _range_server(root: Path, max_ranges: int, refuse: int) -> Iterator[RangeServer]:
    with RangeServer(root, max_ranges=max_ranges, refuse=refuse) as server:
        yield server


@pytest.fixture(scope="module")
def single416(server_root: Path) -> Iterator[RangeServer]:
    """Refuses any multi-range request with 416 (like aiohttp)."""
    yield from _range_server(server_root, 1, 416)


@pytest.fixture(scope="module")
def single400(server_root: Path) -> Iterator[RangeServer]:
    """Refuses any multi-range request with 400 (like RangeHTTPServer)."""
    yield from _range_server(server_root, 1, 400)


@pytest.fixture(scope="module")
def multi3_416(server_root: Path) -> Iterator[RangeServer]:
    """Multipart (reversed parts) for up to 3 ranges; 416 for more: passes the probe."""
    yield from _range_server(server_root, 3, 416)


@pytest.fixture(scope="module")
def multi3_200(server_root: Path) -> Iterator[RangeServer]:
    """Multipart for up to 3 ranges; the whole file (200) for more, like Starlette > 100."""
    yield from _range_server(server_root, 3, 200)


@pytest.fixture(scope="module")
def nginx_max1(server_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """nginx with ``max_ranges 1``: 200 with the whole file for multi-range requests."""
    with Nginx(server_root, tmp_path_factory.mktemp("nginx-max1"), extra="max_ranges 1;") as s:
        yield s


# -- data ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_file(server_root: Path) -> bytes:
    """A random binary file of a bit over 3 MB, published as DATA_DIR/blob.bin."""
    d = server_root / DATA_DIR
    d.mkdir(exist_ok=True)
    data = random.Random(7).randbytes(SIZE)
    (d / "blob.bin").write_bytes(data)
    (d / "tiny.bin").write_bytes(b"ab")
    (d / "empty.bin").write_bytes(b"")
    return data


@pytest.fixture(scope="module")
def git_repo(server_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bare repository with one gc'd pack, published after update-server-info."""
    work = tmp_path_factory.mktemp("test_remote-work")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }

    def git(*args: str, cwd: Path = work) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q", "-b", "main")
    rng = random.Random(3)
    for i in range(30):
        for j in range(5):
            (work / f"f{j}.txt").write_text(
                "".join(f"line {rng.random()}\n" for _ in range(50 + i))
            )
        git("add", "-A")
        git("commit", "-q", "-m", f"commit {i}")
    bare = server_root / REPO_DIR
    git("clone", "-q", "--bare", str(work), str(bare))
    git("gc", "-q", cwd=bare)
    git("update-server-info", cwd=bare)
    return bare


def settings(**kw: object) -> Settings:
    return Settings(connectTimeout=5, readTimeout=10, **kw)  # type: ignore[arg-type]


def random_extents(rng: random.Random, size: int, n: int) -> list[Extent]:
    points = sorted(rng.sample(range(size), 2 * n))
    return [Extent(points[2 * i], points[2 * i + 1]) for i in range(n)]


ALL_SERVERS = ["nginx", "http_server", "embedded", "single416", "single400", "multi3_416"]
EXPECTED_MODE = {
    "nginx": RangeMode.MULTI,
    "http_server": RangeMode.NONE,
    "embedded": RangeMode.MULTI,
    "single416": RangeMode.SINGLE,
    "single400": RangeMode.SINGLE,
    "multi3_416": RangeMode.MULTI,
    "multi3_200": RangeMode.MULTI,
    "nginx_max1": RangeMode.SINGLE,
}


@pytest.fixture(autouse=True)
def _data_dir(server_root: Path) -> None:
    """Every test may put files into DATA_DIR, also when it runs alone."""
    (server_root / DATA_DIR).mkdir(exist_ok=True)


def remote_for(request: pytest.FixtureRequest, name: str, **kw: object) -> DumbRemote:
    server = request.getfixturevalue(name)
    remote = DumbRemote(server.url(DATA_DIR), settings(**kw))
    request.addfinalizer(remote.close)
    return remote


# -- URL handling and errors ---------------------------------------------------------------


def test_url_normalised() -> None:
    with DumbRemote("http://127.0.0.1:1/a/b.git", settings()) as r:
        assert r.url == "http://127.0.0.1:1/a/b.git/"
    with DumbRemote("lazy::https://example.invalid/x/", settings()) as r:
        assert r.url == "https://example.invalid/x/"
    with pytest.raises(RemoteError, match="not an http"):
        DumbRemote("ftp://example.com/x", settings())


def test_connection_refused_is_one_line() -> None:
    port = free_port()
    r = DumbRemote(f"http://127.0.0.1:{port}/repo.git", settings())
    with r, pytest.raises(RemoteError) as info:
        r.get_bytes("info/refs")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"cannot reach 127.0.0.1:{port}: connection refused")


def test_404_and_missing_ok(nginx: Nginx, data_file: bytes) -> None:
    with DumbRemote(nginx.url(DATA_DIR), settings()) as r:
        with pytest.raises(HTTPStatusError) as info:
            r.get_bytes("nope.bin")
        assert info.value.status == 404 and "\n" not in str(info.value)
        assert r.get_bytes("nope.bin", missing_ok=True) is None
        with pytest.raises(HTTPStatusError):
            r.stat("nope.bin")


def test_403_names_credentials(single416: RangeServer, data_file: bytes) -> None:
    r = DumbRemote(single416.url("forbidden/repo.git"), settings())
    with r, pytest.raises(HTTPStatusError) as info:
        r.get_bytes("info/refs")
    assert info.value.status == 403
    assert "credentials" in str(info.value) and "\n" not in str(info.value)


def test_redirects(single416: RangeServer, data_file: bytes) -> None:
    with DumbRemote(single416.url(f"redir/{DATA_DIR}"), settings()) as r:
        assert r.get_bytes("tiny.bin") == b"ab"
        assert r.requests == 2  # the redirect counts
    r = DumbRemote(single416.url("loop/x"), settings())
    with r, pytest.raises(RemoteError, match="redirects") as info:
        r.get_bytes("info/refs")
    assert "\n" not in str(info.value)


def test_read_timeout_is_one_line(single416: RangeServer, data_file: bytes) -> None:
    # (Two quick retries: the default six would spend ~10 s backing off.)
    s = Settings(connectTimeout=5, readTimeout=0.3, retries=2, retryBackoff=0.05)
    r = DumbRemote(single416.url(f"slow/{DATA_DIR}"), s)
    with r, pytest.raises(RemoteError, match=r"cannot reach 127\.0\.0\.1:\d+: no data") as info:
        r.get_bytes("tiny.bin")
    assert "\n" not in str(info.value)
    assert str(info.value).count("3 attempts") == 1, info.value


# -- stat, get_bytes, iter_file --------------------------------------------------------------


@pytest.mark.parametrize("server", ALL_SERVERS)
def test_stat_get_iter(request: pytest.FixtureRequest, server: str, data_file: bytes) -> None:
    r = remote_for(request, server)
    info = r.stat("blob.bin")
    assert info.size == SIZE and info.path == "blob.bin"
    assert info.validator is not None
    assert r.get_bytes("tiny.bin") == b"ab"
    assert r.stat("empty.bin").size == 0
    chunks = list(r.iter_file(info, chunk_size=100_000))
    assert b"".join(chunks) == data_file
    assert r.bytes_read >= SIZE + 2 and r.requests >= 4


@pytest.mark.parametrize("server", ALL_SERVERS)
def test_get_head(request: pytest.FixtureRequest, server: str, data_file: bytes) -> None:
    """A file's head and size by one GET (a bitmap's type index): by Range, or the head of
    the whole file from a server that ignores Range; None when the file is missing."""
    r = remote_for(request, server)
    head, info = r.get_head("blob.bin", 1000)  # type: ignore[misc]
    assert head == data_file[:1000] and info.size == SIZE and info.validator is not None
    assert r.requests == 1
    assert r.get_head("tiny.bin", 1000)[0] == b"ab"  # type: ignore[index]
    got = r.get_head("empty.bin", 1000)
    assert got is not None and got[0] == b"" and got[1].size == 0
    assert r.get_head("nope.bin", 1000) is None
    # The head read leaves the connection usable (nginx: the same one throughout).
    assert b"".join(d for _, d in r.read_extents(info, [Extent(5, 9)])) == data_file[5:9]


@pytest.mark.parametrize("server", [*ALL_SERVERS, "multi3_200", "nginx_max1"])
def test_range_mode(request: pytest.FixtureRequest, server: str, data_file: bytes) -> None:
    r = remote_for(request, server)
    info = r.stat("blob.bin")
    assert r.range_mode(info) is EXPECTED_MODE[server]
    before = r.requests
    assert r.range_mode(info) is EXPECTED_MODE[server]  # cached
    assert r.requests == before


def test_range_mode_tiny_file(nginx: Nginx, data_file: bytes) -> None:
    with DumbRemote(nginx.url(DATA_DIR), settings()) as r:
        assert r.range_mode(r.stat("empty.bin")) is RangeMode.NONE  # nothing to probe
        assert r.range_mode(r.stat("tiny.bin")) is RangeMode.SINGLE  # too small for 2 ranges


# -- read_extents ----------------------------------------------------------------------------


@pytest.mark.parametrize("server", [*ALL_SERVERS, "multi3_200", "nginx_max1"])
def test_read_extents_byte_exact(
    request: pytest.FixtureRequest, server: str, data_file: bytes
) -> None:
    rng = random.Random(server)
    n = 3000 if server in ("nginx", "embedded", "http_server") else 300  # slow test servers
    r = remote_for(request, server, maxRangeBytes=256 * 1024, rangesPerRequest=50)
    info = r.stat("blob.bin")
    wanted = random_extents(rng, SIZE, n)
    wanted[0] = Extent(wanted[0].start, wanted[0].start)  # a zero-length extent too
    seen = 0
    progress = 0

    def on_bytes(k: int) -> None:
        nonlocal progress
        progress += k

    r.range_mode(info)  # the probe's bytes are not progress of this read
    before = r.bytes_read
    results = r.read_extents(info, wanted, on_bytes=on_bytes)
    for (e, data), want in zip(results, wanted, strict=True):
        assert e == want
        assert data == data_file[e.start : e.end]
        seen += 1
    assert seen == n
    assert progress == r.bytes_read - before
    if EXPECTED_MODE[server] is RangeMode.NONE:
        assert progress <= SIZE
    # A read-through plan (coalesced, big extents split) gives the same bytes.
    plan = coalesce(wanted, min_gap=4096, overhead=0.5)
    got = dict(r.read_extents(info, plan))
    assert all(got[e] == data_file[e.start : e.end] for e in plan)


def test_read_extents_big_extents_split(nginx: Nginx, data_file: bytes) -> None:
    with DumbRemote(nginx.url(DATA_DIR), settings(maxRangeBytes=100_000)) as r:
        info = r.stat("blob.bin")
        nginx.clear_log()
        out = list(r.read_extents(info, [Extent(0, SIZE)]))
        assert out == [(Extent(0, SIZE), data_file)]
        gets = [e for e in nginx.log_entries() if e.path.endswith("/blob.bin") and e.range]
        # Probe + ceil(SIZE / 100_000) concurrent single-range requests of at most 100 kB.
        assert len(gets) == 1 + (SIZE + 99_999) // 100_000
        assert all(e.if_range for e in gets[1:])


def test_nginx_request_count_multi(nginx: Nginx, data_file: bytes) -> None:
    rng = random.Random(11)
    with DumbRemote(nginx.url(DATA_DIR), settings(rangesPerRequest=100)) as r:
        info = r.stat("blob.bin")
        r.range_mode(info)
        nginx.clear_log()
        before = r.requests
        wanted = random_extents(rng, SIZE, 1000)
        assert all(d == data_file[e.start : e.end] for e, d in r.read_extents(info, wanted))
        entries = [e for e in nginx.log_entries() if e.path.endswith("/blob.bin")]
        assert len(entries) == 10 == r.requests - before
        assert all(e.status == 206 and e.range and e.range.count(",") == 99 for e in entries)
        assert {e.if_range for e in entries} == {info.validator}


def test_downgrade_on_416_is_remembered(multi3_416: RangeServer, data_file: bytes) -> None:
    rng = random.Random(5)
    with DumbRemote(multi3_416.url(DATA_DIR), settings(rangesPerRequest=20)) as r:
        info = r.stat("blob.bin")
        assert r.range_mode(info) is RangeMode.MULTI
        wanted = random_extents(rng, SIZE, 200)
        assert all(d == data_file[e.start : e.end] for e, d in r.read_extents(info, wanted))
        assert r.range_mode(info) is RangeMode.SINGLE
        multi3_416.range_requests.clear()
        wanted = random_extents(rng, SIZE, 50)
        assert all(d == data_file[e.start : e.end] for e, d in r.read_extents(info, wanted))
        assert len(multi3_416.range_requests) == 50
        assert not any("," in h for h in multi3_416.range_requests)


def test_reversed_and_merged_parts(request: pytest.FixtureRequest, data_file: bytes) -> None:
    """Up to 3 ranges per request, parts reversed (RangeServer) or merged (Starlette)."""
    for name in ("multi3_416", "embedded"):
        r = remote_for(request, name, rangesPerRequest=3)
        info = r.stat("blob.bin")
        # Adjacent and nearly adjacent extents: Starlette merges them into one part.
        wanted = [Extent(10, 20), Extent(20, 30), Extent(31, 40), Extent(5000, 5001)]
        wanted += [Extent(6000 + 7 * i, 6003 + 7 * i) for i in range(100)]
        got = list(r.read_extents(info, wanted))
        assert [e for e, _ in got] == wanted
        assert all(d == data_file[e.start : e.end] for e, d in got)


def test_read_extents_early_close(nginx: Nginx, data_file: bytes) -> None:
    with DumbRemote(nginx.url(DATA_DIR), settings(rangesPerRequest=2, connections=2)) as r:
        info = r.stat("blob.bin")
        wanted = random_extents(random.Random(1), SIZE, 500)
        it = r.read_extents(info, wanted)
        assert next(it)[1] == data_file[wanted[0].start : wanted[0].end]
        it.close()  # type: ignore[attr-defined]
        e = Extent(100, 200)
        assert list(r.read_extents(info, [e])) == [(e, data_file[100:200])]


def test_read_extents_rejects_bad_input(nginx: Nginx, data_file: bytes) -> None:
    with DumbRemote(nginx.url(DATA_DIR), settings()) as r:
        info = r.stat("blob.bin")
        assert list(r.read_extents(info, [])) == []
        with pytest.raises(ValueError):
            list(r.read_extents(info, [Extent(10, 20), Extent(15, 30)]))
        with pytest.raises(ValueError):
            list(r.read_extents(info, [Extent(SIZE - 1, SIZE + 1)]))


def test_size_mismatch_is_detected(nginx: Nginx, data_file: bytes) -> None:
    """A FileInfo whose size disagrees with the server's Content-Range total."""
    with DumbRemote(nginx.url(DATA_DIR), settings()) as r:
        real = r.stat("blob.bin")
        info = FileInfo(real.path, SIZE - 1, None, None)
        r.range_mode(real)
        with pytest.raises(PackChangedError):
            list(r.read_extents(info, [Extent(0, 10)]))


# -- a file replaced on the server -------------------------------------------------------------


def replace_file(path: Path, data: bytes) -> None:
    """Replace atomically, with an mtime surely different from the old one."""
    old = path.stat().st_mtime
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.utime(tmp, (old + 100, old + 100))
    os.replace(tmp, path)


@pytest.mark.parametrize("server", ["nginx", "http_server", "embedded", "single416"])
@pytest.mark.parametrize("same_size", [True, False])
def test_replaced_between_reads(
    request: pytest.FixtureRequest, server_root: Path, server: str, same_size: bool
) -> None:
    name = f"changing-{server}-{same_size}.bin"
    path = server_root / DATA_DIR / name
    old = random.Random(1).randbytes(300_000)
    path.write_bytes(old)
    r = remote_for(request, server)
    info = r.stat(name)
    wanted = [Extent(10, 20), Extent(1000, 2000), Extent(100_000, 100_100)]
    assert [d for _, d in r.read_extents(info, wanted)] == [old[e.start : e.end] for e in wanted]
    new = random.Random(2).randbytes(300_000 if same_size else 310_000)
    replace_file(path, new)
    with pytest.raises(PackChangedError) as exc:
        list(r.read_extents(info, wanted))
    assert re.fullmatch(rf"{re.escape(name)} changed on the server .*again", str(exc.value))
    with pytest.raises(PackChangedError):
        b"".join(r.iter_file(info))


@pytest.mark.parametrize("server", ["nginx", "embedded", "single416", "http_server"])
def test_replaced_during_read(
    request: pytest.FixtureRequest, server_root: Path, server: str
) -> None:
    """The file changes while a read_extents call is in progress (between its requests).

    http.server (mode NONE) sends the whole file in one response from the file it opened,
    so that read stays consistent and succeeds; the next one fails.
    """
    name = f"changing-during-{server}.bin"
    path = server_root / DATA_DIR / name
    old = random.Random(3).randbytes(1_000_000)
    path.write_bytes(old)
    r = remote_for(request, server, connections=1, rangesPerRequest=5, maxRangeBytes=10_000)
    info = r.stat(name)
    wanted = [Extent(i * 5000, i * 5000 + 100) for i in range(150)]
    new = random.Random(4).randbytes(1_000_000)

    def read() -> None:
        for i, (e, d) in enumerate(r.read_extents(info, wanted)):
            assert d == old[e.start : e.end]
            if i == 0 and path.read_bytes() == old:
                replace_file(path, new)

    if server == "http_server":
        read()
    with pytest.raises(PackChangedError):
        read()


# -- a real git pack ---------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["nginx", "embedded", "http_server"])
def test_real_pack(request: pytest.FixtureRequest, server: str, git_repo: Path) -> None:
    srv = request.getfixturevalue(server)
    with DumbRemote(srv.url(REPO_DIR), settings()) as r:
        refs = r.get_bytes("info/refs")
        assert refs is not None and b"refs/heads/main" in refs
        packs = r.get_bytes("objects/info/packs")
        assert packs is not None
        (pack_name,) = re.findall(rb"P (pack-[0-9a-f]{40}\.pack)", packs)
        pack_path = f"objects/pack/{pack_name.decode()}"
        local = (git_repo / pack_path).read_bytes()
        info = r.stat(pack_path)
        assert info.size == len(local)
        # Entry extents of commits and trees, from git's own view of the pack.
        out = subprocess.run(
            ["git", "verify-pack", "-v", str(git_repo / (pack_path[: -len(".pack")] + ".idx"))],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        wanted = []
        for line in out.splitlines():
            m = re.match(r"([0-9a-f]{40}) (commit|tree|blob|tag)\s+\d+ (\d+) (\d+)", line)
            if m and m.group(2) in ("commit", "tree"):
                size, offset = int(m.group(3)), int(m.group(4))
                wanted.append(Extent(offset, offset + size))
        wanted.sort()
        assert len(wanted) >= 60
        got = list(r.read_extents(info, wanted))
        assert [e for e, _ in got] == wanted
        for e, d in got:
            assert d == local[e.start : e.end]
        sha = hashlib.sha1(b"".join(r.iter_file(info))[:-20]).digest()
        assert sha == local[-20:]


def test_pack_read_over_shared_client_counts(nginx: Nginx, data_file: bytes) -> None:
    """Counters are exact under concurrency: requests == nginx log lines, bytes == bodies."""
    with DumbRemote(nginx.url(DATA_DIR), settings(connections=8, rangesPerRequest=7)) as r:
        info = r.stat("blob.bin")
        nginx.clear_log()
        before_req, before_bytes = r.requests, r.bytes_read
        wanted = random_extents(random.Random(9), SIZE, 2000)
        for e, d in r.read_extents(info, wanted):
            assert d == data_file[e.start : e.end]
        entries = [e for e in nginx.log_entries() if e.path.endswith("/blob.bin")]
        assert r.requests - before_req == len(entries)
        assert r.bytes_read - before_bytes == sum(e.bytes for e in entries)


def test_corrupt_multipart_is_corrupt_data() -> None:
    """A server that sends a broken multipart body."""

    class Bad(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.send_header("ETag", '"x"')
            self.end_headers()

        def do_GET(self) -> None:
            body = b"--B\r\nContent-Range: bytes 0-0/1000\r\n\r\nxGARBAGE"
            self.send_response(206)
            self.send_header("Content-Type", "multipart/byteranges; boundary=B")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = QuietServer(("127.0.0.1", 0), Bad)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        quick = settings(retries=2, retryBackoff=0.05)  # (the default six: ~10 s of backoff)
        with DumbRemote(f"http://127.0.0.1:{httpd.server_address[1]}/", quick) as r:
            info = r.stat("f")
            r._mode = RangeMode.MULTI  # the probe would (rightly) settle for SINGLE here
            with pytest.raises(CorruptDataError):
                list(r.read_extents(info, [Extent(0, 1), Extent(5, 6)]))
    finally:
        httpd.shutdown()
        httpd.server_close()
