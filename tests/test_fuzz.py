"""Property tests: every parser of bytes from a server (or from git) fails only with
CorruptDataError (a one-line LazyGitError) - never another exception, never a hang.

Random bytes exercise the outer checks; mutations of real files (an .idx with its checksum
fixed up, a .bitmap, pack entry headers) reach the deep ones.  Example counts are moderate
so the module runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lazygit import discovery, httpranges, pktline
from lazygit.errors import CorruptDataError
from lazygit.loose import decode_loose
from lazygit.packmeta import ServerPack, bitmap_head_needed, decode_ewah_runs, parse_bitmap_types
from lazygit.packwriter import parse_entry_header

FUZZ = settings(
    max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@pytest.fixture(scope="module")
def real_pack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A small real repository's .idx, .pack and .bitmap (git repack -adb)."""
    work = tmp_path_factory.mktemp("fuzz-repo")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(work), *args], check=True, env=env, capture_output=True)

    git("init", "-q")
    for i in range(12):
        (work / f"f{i % 3}.txt").write_text("line\n" * (i + 1) * 20)
        git("add", "-A")
        git("commit", "-q", "-m", f"c{i}")
    git("repack", "-adbq")
    pack_dir = work / ".git" / "objects" / "pack"
    out = {}
    for ext in ("idx", "pack", "bitmap"):
        out[ext] = next(pack_dir.glob(f"pack-*.{ext}")).read_bytes()
    return out


def expect_corrupt(fn, *args, **kw) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args, **kw)
    except CorruptDataError as exc:
        assert "\n" not in str(exc)


mutations = st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), max_size=8)


def mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out)


# -- pkt-line ---------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000))
def test_pktline(data: bytes) -> None:
    inp = io.BytesIO(data)
    for _ in range(200):
        try:
            pkt = pktline.read_pkt(inp)
        except (EOFError, CorruptDataError):
            break
        if pkt is not None:
            expect_corrupt(pktline.decode_text, pkt)
    expect_corrupt(_read_lists, data)


def _read_lists(data: bytes) -> None:
    inp = io.BytesIO(data)
    for _ in range(100):
        try:
            pktline.read_text_until_flush(inp)
        except EOFError:
            return


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=10))
def test_pktline_roundtrip(packets: list[bytes]) -> None:
    out = io.BytesIO()
    for p in packets:
        pktline.write_pkt(out, p)
    inp = io.BytesIO(out.getvalue())
    assert [pktline.read_pkt(inp) for _ in packets] == packets


# -- discovery files ----------------------------------------------------------------------------

ref_lines = st.lists(
    st.one_of(
        st.binary(max_size=120),
        st.builds(
            lambda h, n: h.encode() + b"\t" + n,
            st.text("0123456789abcdef", min_size=40, max_size=40),
            st.binary(max_size=60),
        ),
    ),
    max_size=30,
)


@FUZZ
@given(ref_lines)
def test_info_refs(lines: list[bytes]) -> None:
    try:
        refs = discovery.parse_info_refs(b"\n".join(lines))
    except CorruptDataError:
        return
    for r in refs:  # whatever is accepted is a sane ref name
        assert r.name == "HEAD" or r.name.startswith("refs/")
        assert ".." not in r.name and len(r.oid) == 20


@FUZZ
@given(st.binary(max_size=200))
def test_head(data: bytes) -> None:
    expect_corrupt(discovery.parse_head, data)


@FUZZ
@given(
    st.lists(
        st.one_of(st.binary(max_size=80), st.text(max_size=80).map(lambda t: b"P " + t.encode())),
        max_size=20,
    )
)
def test_info_packs(lines: list[bytes]) -> None:
    try:
        names = discovery.parse_info_packs(b"\n".join(lines))
    except CorruptDataError:
        return
    for n in names:  # never a path: no separators, no dots
        assert "/" not in n and "\\" not in n and ".." not in n and n.startswith("pack-")


@FUZZ
@given(st.binary(max_size=400))
def test_alternates(data: bytes) -> None:
    try:
        urls = discovery.parse_alternates(data, "http://127.0.0.1:1/repo.git/objects/")
    except CorruptDataError:
        return
    for u in urls:
        assert u.startswith(("http://", "https://")) and u.endswith("/")


# -- .idx, .bitmap, EWAH ------------------------------------------------------------------------


def fix_checksum(idx: bytes) -> bytes:
    return idx[:-20] + hashlib.sha1(idx[:-20]).digest()


@FUZZ
@given(st.binary(max_size=3000))
def test_idx_random(data: bytes) -> None:
    expect_corrupt(ServerPack.from_idx, "pack-x", data, 10_000)
    if len(data) > 20:
        expect_corrupt(ServerPack.from_idx, "pack-x", fix_checksum(data), 10_000)


@FUZZ
@given(mutations, st.integers(0, 1 << 20), st.integers(0, 64))
def test_idx_mutated(real_pack, edits, size_delta: int, cut: int) -> None:  # type: ignore[no-untyped-def]
    idx = mutate(real_pack["idx"], edits)
    if cut:
        idx = idx[: max(21, len(idx) - cut)]
    size = len(real_pack["pack"]) - size_delta % len(real_pack["pack"])
    expect_corrupt(ServerPack.from_idx, "pack-x", fix_checksum(idx), size)


@FUZZ
@given(mutations, st.integers(0, 200))
def test_bitmap_mutated(real_pack, edits, cut: int) -> None:  # type: ignore[no-untyped-def]
    pack = ServerPack.from_idx("pack-x", real_pack["idx"], len(real_pack["pack"]))
    head = real_pack["bitmap"]
    need = bitmap_head_needed(head)
    assert need is not None
    head = mutate(head[:need], edits)
    if cut:
        head = head[: max(0, len(head) - cut)]
    assert bitmap_head_needed(head) is None or bitmap_head_needed(head) >= 0
    expect_corrupt(parse_bitmap_types, head, n_objects=len(pack), pack_checksum=pack.checksum)


@FUZZ
@given(st.binary(max_size=600), st.integers(0, 16))
def test_ewah_random(data: bytes, pos: int) -> None:
    expect_corrupt(decode_ewah_runs, data, pos)


# -- pack entry headers, loose objects ------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=40))
def test_entry_header(data: bytes) -> None:
    try:
        h = parse_entry_header(data)
    except CorruptDataError:
        return
    assert 1 <= h.type <= 7 and h.header_len <= len(data)


@FUZZ
@given(st.binary(max_size=300), st.booleans())
def test_loose(data: bytes, deflate: bool) -> None:
    expect_corrupt(decode_loose, b"\x01" * 20, zlib.compress(data) if deflate else data)


# -- multipart/byteranges --------------------------------------------------------------------------


def _part(start: int, data: bytes, total: int, boundary: str) -> bytes:
    return (
        f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Range: bytes {start}-{start + len(data) - 1}/{total}\r\n\r\n"
    ).encode() + data


@FUZZ
@given(st.binary(max_size=1500), st.integers(1, 64))
def test_multipart_random(body: bytes, chunk: int) -> None:
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    with contextlib.suppress(CorruptDataError):
        list(httpranges.iter_multipart(chunks, b"B0UND"))


@FUZZ
@given(
    st.lists(st.binary(min_size=1, max_size=100), min_size=1, max_size=5),
    mutations,
    st.integers(1, 64),
    st.integers(0, 40),
)
def test_multipart_mutated(parts: list[bytes], edits, chunk: int, cut: int) -> None:  # type: ignore[no-untyped-def]
    body = b""
    pos = 0
    for p in parts:
        body += _part(pos, p, 10_000, "B0UND")
        pos += len(p) + 7
    body += b"\r\n--B0UND--\r\n"
    if not edits and not cut:
        got = list(httpranges.iter_multipart([body], b"B0UND"))
        assert [d for _s, _e, d in got] == parts
    body = mutate(body, edits)
    if cut:
        body = body[: max(0, len(body) - cut)]
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    try:
        for start, end, data in httpranges.iter_multipart(chunks, b"B0UND"):
            assert end - start == len(data)
    except CorruptDataError:
        pass


@FUZZ
@given(st.text(max_size=80))
def test_content_range(value: str) -> None:
    try:
        start, end, total = httpranges.parse_content_range(value)
    except CorruptDataError:
        return
    assert 0 <= start < end and (total is None or end <= total)


def test_pack_names_with_separators_are_refused() -> None:
    for bad in ("../pack-" + "a" * 40, "sub/pack-" + "a" * 40, "pack-" + "a" * 39 + "/"):
        with pytest.raises(CorruptDataError):
            discovery.parse_info_packs(f"P {bad}.pack\n".encode())


def test_entry_header_real(real_pack) -> None:  # type: ignore[no-untyped-def]
    pack = ServerPack.from_idx("pack-x", real_pack["idx"], len(real_pack["pack"]))
    for pos in range(len(pack)):
        off = pack.offset_at_position(pos)
        h = parse_entry_header(real_pack["pack"][off : off + 40])
        assert 1 <= h.type <= 7
