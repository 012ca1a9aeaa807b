"""The embedded server (lazygit.server) against real clients, compared with nginx."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import EmbeddedServer, Nginx, PythonHttpServer, free_port

from lazygit.server import MAX_RANGES, READ_BYTES, BackgroundServer, cache_control_for

REPO_NAME = "test_server-repo.git"
NESTED_NAME = "test_server-group/nested.git"


def _git(*args: str, cwd: Path | None = None) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="T",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="T",
        GIT_COMMITTER_EMAIL="t@example.com",
        GIT_CONFIG_NOSYSTEM="1",
        HOME=str(cwd or Path.cwd()),
    )
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def make_bare_repo(dest: Path, work: Path) -> str:
    """A small packed bare repo at dest, published for dumb HTTP; returns HEAD's hex id."""
    _git("init", "-q", "-b", "main", str(work))
    for i in range(3):
        (work / f"file{i}.txt").write_bytes(os.urandom(3000) + b"\n")
        _git("add", ".", cwd=work)
        _git("commit", "-q", "-m", f"commit {i}", cwd=work)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _git("clone", "-q", "--bare", str(work), str(dest))
    _git("gc", "-q", cwd=dest)
    _git("update-server-info", cwd=dest)
    return _git("rev-parse", "HEAD", cwd=dest).strip()


@pytest.fixture(scope="module")
def repo(server_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = server_root / REPO_NAME
    make_bare_repo(dest, tmp_path_factory.mktemp("test_server-work"))
    make_bare_repo(server_root / NESTED_NAME, tmp_path_factory.mktemp("test_server-work2"))
    return dest


@pytest.fixture(scope="module")
def pack_path(repo: Path) -> str:
    """Path (relative to the server root) of the repo's only pack file."""
    (pack,) = (repo / "objects" / "pack").glob("pack-*.pack")
    return f"{REPO_NAME}/objects/pack/{pack.name}"


@pytest.fixture(params=["embedded", "nginx"])
def server(request: pytest.FixtureRequest, repo: Path) -> EmbeddedServer | Nginx:
    """Run a test against the embedded server and, for comparison, nginx."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def parse_multipart(body: bytes, content_type: str) -> list[tuple[int, int, bytes]]:
    """(start, end_exclusive, data) per part, reading each part by its Content-Range."""
    m = re.search(r"boundary=([^;\s]+)", content_type)
    assert m, content_type
    delim = b"--" + m.group(1).strip('"').encode()
    parts = []
    pos = body.index(delim)
    while True:
        pos += len(delim)
        if body[pos : pos + 2] == b"--":
            break
        head_end = body.index(b"\r\n\r\n", pos)
        head = body[pos:head_end].decode("latin-1")
        cr = re.search(r"Content-Range: bytes (\d+)-(\d+)/(\d+)", head, re.IGNORECASE)
        assert cr, head
        start, last = int(cr.group(1)), int(cr.group(2))
        data = body[head_end + 4 : head_end + 4 + last - start + 1]
        parts.append((start, last + 1, data))
        pos = body.index(delim, head_end + 4 + len(data))
    return parts


def test_get_and_head(
    server: EmbeddedServer | Nginx, client: httpx.Client, repo: Path, pack_path: str
) -> None:
    data = (repo.parent / pack_path).read_bytes()
    r = client.get(server.url(pack_path))
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["etag"].startswith('"')
    assert "last-modified" in r.headers
    h = client.head(server.url(pack_path))
    assert h.status_code == 200
    assert h.content == b""
    assert int(h.headers["content-length"]) == len(data)
    assert h.headers["etag"] == r.headers["etag"]


def test_single_range(
    server: EmbeddedServer | Nginx, client: httpx.Client, repo: Path, pack_path: str
) -> None:
    data = (repo.parent / pack_path).read_bytes()
    r = client.get(server.url(pack_path), headers={"Range": "bytes=12-99"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 12-99/{len(data)}"
    assert int(r.headers["content-length"]) == 88
    assert r.content == data[12:100]
    # Suffix and open-ended ranges.
    r = client.get(server.url(pack_path), headers={"Range": "bytes=-20"})
    assert r.status_code == 206
    assert r.content == data[-20:]
    r = client.get(server.url(pack_path), headers={"Range": f"bytes={len(data) - 5}-"})
    assert r.content == data[-5:]
    # An end past the file is clamped.
    r = client.get(server.url(pack_path), headers={"Range": f"bytes=0-{len(data) + 100}"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 0-{len(data) - 1}/{len(data)}"


def test_multi_range(
    server: EmbeddedServer | Nginx, client: httpx.Client, repo: Path, pack_path: str
) -> None:
    data = (repo.parent / pack_path).read_bytes()
    wanted = [(0, 12), (100, 150), (2000, 2001), (len(data) - 20, len(data))]
    header = "bytes=" + ",".join(f"{a}-{b - 1}" for a, b in wanted)
    r = client.get(server.url(pack_path), headers={"Range": header})
    assert r.status_code == 206
    ctype = r.headers["content-type"]
    assert ctype.startswith("multipart/byteranges")
    assert int(r.headers["content-length"]) == len(r.content)
    parts = parse_multipart(r.content, ctype)
    assert parts == [(a, b, data[a:b]) for a, b in wanted]


def test_multi_range_longer_than_one_read(
    server: EmbeddedServer | Nginx, client: httpx.Client, repo: Path
) -> None:
    """Parts that span, straddle and share the embedded server's reads of READ_BYTES."""
    big = repo / "objects" / "test_server-big.bin"
    if not big.exists():
        big.write_bytes(os.urandom(3 * READ_BYTES + 1000))
    data = big.read_bytes()
    wanted = [
        (0, 10),
        (100, 100 + READ_BYTES + 7),
        *((READ_BYTES + 200 + 3 * i, READ_BYTES + 201 + 3 * i) for i in range(50)),
        (2 * READ_BYTES - 3, 2 * READ_BYTES + 3),
        (2 * READ_BYTES + 10, 3 * READ_BYTES + 10),
        (len(data) - 1, len(data)),
    ]
    header = "bytes=" + ",".join(f"{a}-{b - 1}" for a, b in wanted)
    r = client.get(
        server.url(f"{REPO_NAME}/objects/test_server-big.bin"), headers={"Range": header}
    )
    assert r.status_code == 206
    assert int(r.headers["content-length"]) == len(r.content)
    parts = parse_multipart(r.content, r.headers["content-type"])
    assert parts == [(a, b, data[a:b]) for a, b in wanted]


def test_embedded_merges_overlapping_ranges(
    embedded: EmbeddedServer, client: httpx.Client, pack_path: str, repo: Path
) -> None:
    """Starlette sorts and merges ranges (nginx would answer in request order, unmerged)."""
    data = (repo.parent / pack_path).read_bytes()
    r = client.get(embedded.url(pack_path), headers={"Range": "bytes=500-599,0-9,550-649"})
    assert r.status_code == 206
    parts = parse_multipart(r.content, r.headers["content-type"])
    assert parts == [(0, 10, data[0:10]), (500, 650, data[500:650])]


def test_embedded_many_ranges_gives_whole_file(
    embedded: EmbeddedServer, client: httpx.Client, pack_path: str, repo: Path
) -> None:
    """Up to MAX_RANGES ranges work; beyond, Starlette ignores Range (clients cope with 200)."""
    data = (repo.parent / pack_path).read_bytes()
    assert len(data) > 3 * (MAX_RANGES + 1)
    header = "bytes=" + ",".join(f"{i * 3}-{i * 3 + 1}" for i in range(MAX_RANGES))
    r = client.get(embedded.url(pack_path), headers={"Range": header})
    assert r.status_code == 206
    parts = parse_multipart(r.content, r.headers["content-type"])
    assert parts == [(i * 3, i * 3 + 2, data[i * 3 : i * 3 + 2]) for i in range(MAX_RANGES)]
    header = "bytes=" + ",".join(f"{i * 3}-{i * 3 + 1}" for i in range(MAX_RANGES + 1))
    r = client.get(embedded.url(pack_path), headers={"Range": header})
    assert r.status_code == 200
    assert r.content == data


def test_if_range(
    server: EmbeddedServer | Nginx, client: httpx.Client, repo: Path, pack_path: str
) -> None:
    data = (repo.parent / pack_path).read_bytes()
    h = client.head(server.url(pack_path))
    for validator in (h.headers["etag"], h.headers["last-modified"]):
        r = client.get(server.url(pack_path), headers={"Range": "bytes=5-9", "If-Range": validator})
        assert r.status_code == 206
        assert r.content == data[5:10]
    for stale in ('"0123456789abcdef"', "Mon, 01 Jan 2001 00:00:00 GMT"):
        r = client.get(server.url(pack_path), headers={"Range": "bytes=5-9", "If-Range": stale})
        assert r.status_code == 200
        assert r.content == data


def test_unsatisfiable_range(
    server: EmbeddedServer | Nginx, client: httpx.Client, repo: Path, pack_path: str
) -> None:
    size = (repo.parent / pack_path).stat().st_size
    r = client.get(server.url(pack_path), headers={"Range": f"bytes={size}-{size + 10}"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"


def test_missing_and_directories(server: EmbeddedServer | Nginx, client: httpx.Client) -> None:
    assert client.get(server.url(f"{REPO_NAME}/no-such-file")).status_code == 404
    assert client.get(server.url("no-such.git/info/refs")).status_code == 404
    # No directory listings.
    r = client.get(server.url(f"{REPO_NAME}/objects/pack/"))
    assert r.status_code in (403, 404)
    assert b"pack-" not in r.content


def _raw_get(base_url: str, target: str) -> tuple[int, bytes]:
    """GET a raw request target, exactly as written (no client-side normalisation)."""
    host, port = base_url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "target",
    [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        f"/{REPO_NAME}/../../../../etc/passwd",
        f"/{REPO_NAME}/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/..%5c..%5c..%5cetc%5cpasswd",
        "//etc/passwd",
    ],
)
def test_path_traversal_blocked(server: EmbeddedServer | Nginx, target: str) -> None:
    status, body = _raw_get(server.base_url, target)
    assert status in (400, 403, 404), (status, body[:200])
    assert b"root:" not in body


def test_symlink_out_of_root_blocked(
    embedded: EmbeddedServer, server_root: Path, client: httpx.Client
) -> None:
    link = server_root / "test_server-escape"
    if not link.is_symlink():
        link.symlink_to("/etc")
    r = client.get(embedded.url("test_server-escape/passwd"))
    assert r.status_code == 404


def test_keep_alive(server: EmbeddedServer | Nginx, pack_path: str) -> None:
    """Two requests share one TCP connection."""
    host, port = server.base_url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/" + pack_path, headers={"Range": "bytes=0-3"})
        r1 = conn.getresponse()
        assert r1.read() == b"PACK"
        assert not r1.will_close
        sock = conn.sock
        assert sock is not None
        conn.request("HEAD", "/" + pack_path)
        r2 = conn.getresponse()
        r2.read()
        assert r2.status == 200
        assert conn.sock is sock
    finally:
        conn.close()


def _server_end(client_end: tuple[str, int]) -> socket.socket | None:
    """This process's socket whose peer is ``client_end`` (the embedded server's end of a
    connection: it runs in a thread here), as a duplicate the caller closes."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            copy = os.dup(int(fd))
        except OSError:
            continue  # closed since the listing (it was the listing's own)
        try:
            sock = socket.socket(fileno=copy)
        except OSError:
            os.close(copy)  # not a socket
            continue
        try:
            if sock.type == socket.SOCK_STREAM and sock.getpeername() == client_end:
                return sock
        except OSError:
            pass
        sock.close()
    return None


def test_embedded_connections_send_without_delay(embedded: EmbeddedServer, pack_path: str) -> None:
    """The server's end of a connection has Nagle off (TCP_NODELAY), as nginx's has.  It had
    it on (asyncio sets TCP_NODELAY only on sockets made with IPPROTO_TCP), so every response
    after a keep-alive connection's first waited for the client's delayed ACK: 44 ms for a
    400-byte range read, against 2-3 ms now and 1-2 ms from nginx."""
    conn = http.client.HTTPConnection("127.0.0.1", embedded.port, timeout=10)
    try:
        conn.request("GET", "/" + pack_path, headers={"Range": "bytes=0-3"})
        assert conn.getresponse().read() == b"PACK"
        assert conn.sock is not None
        server_end = _server_end(conn.sock.getsockname())
        assert server_end is not None
        with server_end:
            assert server_end.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        conn.close()


def test_curl_ranges(
    server: EmbeddedServer | Nginx, repo: Path, pack_path: str, tmp_path: Path
) -> None:
    data = (repo.parent / pack_path).read_bytes()
    out = tmp_path / "out"
    proc = subprocess.run(
        ["curl", "-sS", "-r", "4-11", "-o", str(out), "-w", "%{http_code}", server.url(pack_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout == "206"
    assert out.read_bytes() == data[4:12]


def test_cache_control(embedded: EmbeddedServer, client: httpx.Client, pack_path: str) -> None:
    assert "immutable" in client.head(embedded.url(pack_path)).headers["cache-control"]
    idx = pack_path[: -len(".pack")] + ".idx"
    assert "immutable" in client.head(embedded.url(idx)).headers["cache-control"]
    for name in ("info/refs", "HEAD", "objects/info/packs"):
        assert (
            client.head(embedded.url(f"{REPO_NAME}/{name}")).headers["cache-control"] == "no-cache"
        )


def test_cache_control_rules() -> None:
    pack = "pack-" + "a" * 40
    assert "immutable" in cache_control_for(f"x.git/objects/pack/{pack}.pack")
    assert "immutable" in cache_control_for(f"a/b/x.git/objects/pack/{pack}.idx")
    assert "immutable" in cache_control_for("x.git/objects/ab/" + "c" * 38)
    assert cache_control_for(f"x.git/objects/pack/{pack}.bitmap") == "no-cache"
    assert cache_control_for("x.git/objects/info/packs") == "no-cache"
    assert cache_control_for("x.git/info/refs") == "no-cache"
    assert cache_control_for("x.git/refs/heads/main") == "no-cache"


def test_not_modified(embedded: EmbeddedServer, client: httpx.Client, pack_path: str) -> None:
    etag = client.head(embedded.url(pack_path)).headers["etag"]
    r = client.get(embedded.url(pack_path), headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.headers["etag"] == etag


def test_etag_changes_when_file_replaced(tmp_path: Path, client: httpx.Client) -> None:
    """Same size, same mtime, new file (like a repack): the validator must differ."""
    f = tmp_path / "f.bin"
    f.write_bytes(b"a" * 100)
    st = f.stat()
    with BackgroundServer(tmp_path) as srv:
        e1 = client.head(srv.url + "f.bin").headers["etag"]
        new = tmp_path / "f.new"
        new.write_bytes(b"b" * 100)
        os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
        new.replace(f)
        r = client.get(srv.url + "f.bin", headers={"Range": "bytes=0-9", "If-Range": e1})
        assert r.status_code == 200
        assert r.content == b"b" * 100
        assert r.headers["etag"] != e1


def test_methods(embedded: EmbeddedServer, client: httpx.Client, pack_path: str) -> None:
    assert client.post(embedded.url(pack_path), content=b"x").status_code == 405
    assert client.put(embedded.url(pack_path), content=b"x").status_code == 405


def test_bytes_sent_and_nested_repos(
    tmp_path: Path, server_root: Path, repo: Path, client: httpx.Client
) -> None:
    with BackgroundServer(server_root) as srv:
        assert srv.url == f"http://127.0.0.1:{srv.port}/"
        assert srv.bytes_sent == 0
        r = client.get(srv.url + NESTED_NAME + "/info/refs")
        assert r.status_code == 200
        assert srv.bytes_sent == len(r.content) > 0
        client.get(srv.url + NESTED_NAME + "/HEAD", headers={"Range": "bytes=0-3"})
        assert srv.bytes_sent == len(r.content) + 4
        assert srv.requests == 2
    # Stopped: the port is closed.
    with pytest.raises(httpx.ConnectError):
        client.get(srv.url + NESTED_NAME + "/HEAD")


def test_git_dumb_clone(embedded: EmbeddedServer, repo: Path, tmp_path: Path) -> None:
    """Stock git's dumb HTTP client clones from the embedded server."""
    head = _git("rev-parse", "HEAD", cwd=repo).strip()
    dest = tmp_path / "clone"
    _git("clone", "-q", embedded.url(REPO_NAME), str(dest))
    assert _git("rev-parse", "HEAD", cwd=dest).strip() == head
    _git("fsck", "--full", cwd=dest)
    nested = tmp_path / "nested"
    _git("clone", "-q", embedded.url(NESTED_NAME), str(nested))
    assert (nested / "file2.txt").exists()


def test_nginx_smart_partial_clone(nginx_smart: Nginx, repo: Path, tmp_path: Path) -> None:
    """The smart nginx fixture supports partial clone, and still serves dumb requests."""
    nginx_smart.clear_log()
    dest = tmp_path / "partial"
    _git(
        "clone", "-q", "--filter=blob:none", "--no-checkout", nginx_smart.url(REPO_NAME), str(dest)
    )
    assert _git("config", "remote.origin.promisor", cwd=dest).strip() == "true"
    missing = _git("rev-list", "--objects", "--missing=print", "--all", cwd=dest)
    assert re.search(r"^\?[0-9a-f]{40}$", missing, re.MULTILINE)
    _git("checkout", "-q", "main", cwd=dest)  # fetches blobs on demand
    assert (dest / "file0.txt").exists()
    entries = nginx_smart.log_entries()
    assert any(e.path.endswith("/git-upload-pack") and e.method == "POST" for e in entries)
    assert any(e.query == "service=git-upload-pack" for e in entries)
    # Dumb requests: plain info/refs is the static file.
    r = httpx.get(nginx_smart.url(f"{REPO_NAME}/info/refs"))
    assert r.status_code == 200
    assert r.content == (repo / "info" / "refs").read_bytes()
    r = httpx.get(nginx_smart.url(f"{REPO_NAME}/HEAD"), headers={"Range": "bytes=0-3,5-9"})
    assert r.status_code == 206


def test_nginx_access_log(nginx: Nginx, client: httpx.Client, pack_path: str) -> None:
    nginx.clear_log()
    client.get(nginx.url(pack_path), headers={"Range": "bytes=0-3"})
    client.head(nginx.url(f"{REPO_NAME}/HEAD"))
    client.get(nginx.url(f"{REPO_NAME}/info/refs?x=1"))
    entries = nginx.log_entries()
    assert [(e.method, e.path, e.status, e.range) for e in entries] == [
        ("GET", "/" + pack_path, 206, "bytes=0-3"),
        ("HEAD", f"/{REPO_NAME}/HEAD", 200, None),
        ("GET", f"/{REPO_NAME}/info/refs", 200, None),
    ]
    assert entries[0].bytes == 4
    assert entries[2].query == "x=1"
    nginx.clear_log()
    assert nginx.log_entries() == []


def test_python_http_server_ignores_range(
    http_server: PythonHttpServer, client: httpx.Client, repo: Path, pack_path: str
) -> None:  # type: ignore[no-untyped-def]
    data = (repo.parent / pack_path).read_bytes()
    r = client.get(http_server.url(pack_path), headers={"Range": "bytes=0-3"})
    assert r.status_code == 200
    assert r.content == data


def test_import_lazygit_does_not_import_server_deps() -> None:
    code = "import sys, lazygit; sys.exit(any(m in sys.modules for m in ('starlette', 'uvicorn')))"
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def test_serve_foreground_ctrl_c(repo: Path, tmp_path: Path) -> None:
    """`serve` runs in the foreground and exits cleanly (status 0, no traceback) on Ctrl-C."""
    root = Path(__file__).resolve().parent.parent
    for _attempt in range(5):
        port = free_port()
        code = (
            "from pathlib import Path; from lazygit.server import serve; "
            f"serve(Path({str(repo.parent)!r}), '127.0.0.1', {port}, False)"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            ok = False
            for _ in range(400):
                if proc.poll() is not None:
                    break
                try:
                    r = httpx.get(f"http://127.0.0.1:{port}/{REPO_NAME}/HEAD")
                    ok = r.status_code == 200 and r.headers.get("server") == "uvicorn"
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            if not ok:
                continue
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, err
            assert b"Traceback" not in err, err
            assert f"http://127.0.0.1:{port}/".encode() in out
            return
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    pytest.fail("could not start the foreground server")


def test_serve_port_0_prints_the_port_it_got_and_a_busy_port_is_one_line(repo: Path) -> None:
    """`lazygit serve --port 0` names the port the system chose (not 0); a port in use is
    one line naming it, exit 1."""
    proc = subprocess.Popen(
        ["lazygit", "serve", str(repo.parent), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"at http://127\.0\.0\.1:(\d+)/ ", line)
        assert m and int(m.group(1)) > 0, line
        port = int(m.group(1))
        assert httpx.get(f"http://127.0.0.1:{port}/{REPO_NAME}/HEAD").status_code == 200
        busy = subprocess.run(
            ["lazygit", "serve", str(repo.parent), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert busy.returncode == 1
        assert busy.stderr == (
            f"lazygit: error: cannot listen on 127.0.0.1:{port}: Address already in use "
            "(choose another --port, or 0 for a free one)\n"
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0 and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
