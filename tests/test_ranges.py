"""Range planning and the multipart/byteranges wire format (pure; property-tested)."""

from __future__ import annotations

import itertools
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lazygit.errors import CorruptDataError
from lazygit.httpranges import (
    iter_multipart,
    multipart_boundary,
    parse_content_range,
)
from lazygit.ranges import Extent, coalesce, group_requests, range_header, split, subtract

# -- strategies ----------------------------------------------------------------------------

extent_st = st.builds(lambda a, n: Extent(a, a + n), st.integers(0, 10_000), st.integers(0, 2_000))
extents_st = st.lists(extent_st, max_size=60)


def covered(extents: list[Extent]) -> set[int]:
    return {b for e in extents for b in range(e.start, e.end)}


def sorted_disjoint(extents: list[Extent]) -> bool:
    return all(a.end < b.start for a, b in itertools.pairwise(extents)) and all(
        e.length > 0 for e in extents
    )


# -- subtract ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(extents_st, extents_st)
def test_subtract_leaves_exactly_the_bytes_not_held(wanted: list, held: list) -> None:
    want = coalesce(wanted, min_gap=0, overhead=0.0)
    have = coalesce(held, min_gap=0, overhead=0.0)
    rest = subtract(want, have)
    assert covered(rest) == covered(want) - covered(have)
    assert all(a.end <= b.start for a, b in itertools.pairwise(rest))
    assert all(e.length > 0 for e in rest)


# -- Extent --------------------------------------------------------------------------------


def test_extent_basics() -> None:
    e = Extent(10, 25)
    assert e.length == 15
    assert Extent(1, 2) < Extent(1, 3) < Extent(2, 2)
    with pytest.raises(ValueError):
        Extent(5, 4)
    with pytest.raises(ValueError):
        Extent(-1, 4)


# -- coalesce ------------------------------------------------------------------------------


def test_coalesce_examples() -> None:
    es = [Extent(100, 110), Extent(0, 10), Extent(5, 20), Extent(20, 30), Extent(1000, 1001)]
    assert coalesce(es, min_gap=0, overhead=0) == [
        Extent(0, 30),
        Extent(100, 110),
        Extent(1000, 1001),
    ]
    # Gap 70 always merged with min_gap 70; the 890 gap exceeds a 0.5 budget (41 * 0.5).
    assert coalesce(es, min_gap=70, overhead=0.5) == [Extent(0, 110), Extent(1000, 1001)]
    # A large budget merges everything.
    assert coalesce(es, min_gap=0, overhead=100) == [Extent(0, 1001)]
    assert coalesce([], min_gap=10, overhead=1) == []
    assert coalesce([Extent(5, 5)], min_gap=10, overhead=1) == []


def test_coalesce_smallest_gaps_first() -> None:
    # wanted 40 bytes, budget 0.5 * 40 = 20.
    es = [Extent(0, 10), Extent(15, 25), Extent(35, 45), Extent(53, 63)]
    # gaps: 5, 10, 8 -> sorted 5, 8 (13), then 10 -> 23 > 20 stop.
    assert coalesce(es, min_gap=0, overhead=0.5) == [Extent(0, 25), Extent(35, 63)]


@given(extents_st, st.integers(0, 3000), st.floats(0, 2))
@settings(max_examples=300, deadline=None)
def test_coalesce_properties(extents: list[Extent], min_gap: int, overhead: float) -> None:
    out = coalesce(extents, min_gap=min_gap, overhead=overhead)
    want = covered(extents)
    got = covered(out)
    assert want <= got
    assert sorted_disjoint(out)
    # Every output extent starts and ends with wanted bytes (no pointless read-through).
    for e in out:
        assert e.start in want and e.end - 1 in want
    # Read-through bytes: small gaps (<= min_gap) always, others within the budget.
    base = coalesce(extents, min_gap=0, overhead=0)
    assert covered(base) == want
    small = sum(b.start - a.end for a, b in itertools.pairwise(base) if b.start - a.end <= min_gap)
    assert len(got) - len(want) - small <= overhead * len(want) + 1e-9


def test_coalesce_many_extents_fast() -> None:
    rng = random.Random(1)
    pos = 0
    extents = []
    for _ in range(100_000):
        pos += rng.randrange(1, 5000)
        n = rng.randrange(1, 3000)
        extents.append(Extent(pos, pos + n))
        pos += n
    rng.shuffle(extents)
    out = coalesce(extents, min_gap=512, overhead=0.06)
    wanted = sum(e.length for e in extents)
    read = sum(e.length for e in out)
    assert sorted_disjoint(out) and read >= wanted and len(out) < len(extents)


# -- split and group_requests ----------------------------------------------------------------


@given(extents_st, st.integers(1, 3000))
def test_split_properties(extents: list[Extent], max_len: int) -> None:
    base = coalesce(extents, min_gap=0, overhead=0)
    out = split(base, max_len)
    assert all(0 < e.length <= max_len for e in out)
    assert covered(out) == covered(base)
    assert sum(e.length for e in out) == sum(e.length for e in base)
    assert out == sorted(out)


def test_split_example() -> None:
    assert split([Extent(0, 10), Extent(20, 21)], 4) == [
        Extent(0, 4),
        Extent(4, 8),
        Extent(8, 10),
        Extent(20, 21),
    ]
    with pytest.raises(ValueError):
        split([Extent(0, 1)], 0)


@given(
    st.lists(
        st.builds(lambda a, n: (a, n), st.integers(1, 10**12), st.integers(1, 5000)), max_size=200
    ),
    st.integers(1, 50),
    st.integers(1, 20_000),
    st.integers(20, 400),
)
@settings(max_examples=200, deadline=None)
def test_group_requests_properties(
    raw: list[tuple[int, int]], max_ranges: int, max_bytes: int, max_header: int
) -> None:
    extents = coalesce((Extent(a, a + n) for a, n in raw), min_gap=0, overhead=0)
    groups = group_requests(
        extents, max_ranges=max_ranges, max_bytes=max_bytes, max_header=max_header
    )
    assert [e for g in groups for e in g] == extents
    for g in groups:
        assert g
        assert len(g) <= max_ranges
        total = sum(e.length for e in g)
        assert total <= max_bytes or len(g) == 1
        assert len(range_header(g)) <= max_header or len(g) == 1


def test_range_header() -> None:
    assert range_header([Extent(0, 10), Extent(20, 30)]) == "bytes=0-9,20-29"
    assert range_header([Extent(5, 6)]) == "bytes=5-5"
    with pytest.raises(ValueError):
        range_header([])


def test_group_requests_header_limit_for_nginx() -> None:
    extents = [Extent(i * 10**11, i * 10**11 + 1) for i in range(1, 1000)]
    groups = group_requests(extents, max_ranges=1000, max_bytes=10**9)
    assert all(len(range_header(g)) <= 6000 for g in groups)
    assert len(groups) > 1


# -- Content-Range and boundary --------------------------------------------------------------


def test_parse_content_range() -> None:
    assert parse_content_range("bytes 0-9/100") == (0, 10, 100)
    assert parse_content_range("bytes 5-5/*") == (5, 6, None)
    assert parse_content_range(" bytes  7-8/9 ") == (7, 9, 9)
    digits = "1" * 5000  # int() raises ValueError beyond 4,300 digits
    for bad in ["", "bytes 9-0/100", "bytes 0-100/100", "bytes */100", "items 0-1/2", "0-1/2",
                f"bytes {digits}-2/3", f"bytes 0-1/{digits}", "bytes 0-1/" + "9" * 21]:  # fmt: skip
        with pytest.raises(CorruptDataError):
            parse_content_range(bad)


@given(st.text(max_size=40))
def test_parse_content_range_fuzz(value: str) -> None:
    try:
        start, end, total = parse_content_range(value)
    except CorruptDataError:
        return
    assert 0 <= start < end and (total is None or end <= total)


def test_multipart_boundary() -> None:
    assert multipart_boundary("multipart/byteranges; boundary=00000000001") == b"00000000001"
    assert multipart_boundary('Multipart/ByteRanges; boundary="a b"') == b"a b"
    assert multipart_boundary("multipart/byteranges; charset=x; boundary=zz") == b"zz"
    assert multipart_boundary("application/octet-stream") is None
    assert multipart_boundary("multipart/byteranges") is None


# -- multipart bodies --------------------------------------------------------------------------


def nginx_body(data: bytes, ranges: list[tuple[int, int]], boundary: bytes) -> bytes:
    """A multipart/byteranges body shaped exactly like nginx's."""
    out = bytearray()
    for start, end in ranges:
        out += b"\r\n--" + boundary + b"\r\nContent-Type: application/octet-stream\r\n"
        out += b"Content-Range: bytes %d-%d/%d\r\n\r\n" % (start, end - 1, len(data))
        out += data[start:end]
    out += b"\r\n--" + boundary + b"--\r\n"
    return bytes(out)


def starlette_body(data: bytes, ranges: list[tuple[int, int]], boundary: bytes) -> bytes:
    """Starlette's shape: no leading CRLF, lower-case headers, LF-only variations allowed."""
    out = bytearray()
    for start, end in ranges:
        out += b"--" + boundary + b"\ncontent-type: x\ncontent-range: bytes "
        out += b"%d-%d/%d\n\n" % (start, end - 1, len(data))
        out += data[start:end] + b"\n"
    out += b"--" + boundary + b"--"
    return bytes(out)


def chop(body: bytes, rng: random.Random) -> list[bytes]:
    chunks = []
    pos = 0
    while pos < len(body):
        n = rng.choice([1, 2, 3, 7, 64, 1000, 70_000])
        chunks.append(body[pos : pos + n])
        pos += n
    return chunks


@given(
    st.binary(min_size=1, max_size=3000),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 400)), min_size=1, max_size=20),
    st.randoms(use_true_random=False),
    st.sampled_from([nginx_body, starlette_body]),
    st.binary(min_size=1, max_size=30).filter(lambda b: b"\n" not in b and b"\r" not in b),
)
@settings(max_examples=300, deadline=None)
def test_iter_multipart_roundtrip(data, raw_ranges, rng, shape, boundary) -> None:
    ranges = []
    for a, n in raw_ranges:
        start = a % len(data)
        ranges.append((start, min(len(data), start + n)))
    rng.shuffle(ranges)
    # Put the boundary itself into the data: the parser must not search for it.
    data = (data + b"\r\n--" + boundary + b"\r\n") * 2
    body = shape(data, ranges, boundary)
    parts = list(iter_multipart(chop(body, rng), boundary))
    assert [(s, e) for s, e, _ in parts] == ranges
    for s, e, d in parts:
        assert d == data[s:e]


@pytest.mark.parametrize("shape", [nginx_body, starlette_body])
def test_iter_multipart_large_parts_small_chunks(shape) -> None:
    """Parts far larger than the reader's compaction threshold, in odd-sized chunks."""
    rng = random.Random(5)
    data = rng.randbytes(2_000_000)
    ranges = []
    for _ in range(40):
        start = rng.randrange(len(data) - 200_000)
        ranges.append((start, start + rng.randrange(1, 200_000)))
    body = shape(data, ranges, b"0000000000000042")
    chunks = []
    pos = 0
    while pos < len(body):
        n = rng.randrange(1, 2_000)
        chunks.append(body[pos : pos + n])
        pos += n
    parts = list(iter_multipart(chunks, b"0000000000000042"))
    assert [(s, e) for s, e, _ in parts] == ranges
    assert all(d == data[s:e] for s, e, d in parts)


def test_iter_multipart_preamble_and_padding() -> None:
    data = bytes(range(256)) * 4
    body = (
        b"this is a preamble\r\n\r\n--XY  \r\nContent-Range: bytes 3-5/1024\r\n\r\n"
        + data[3:6]
        + b"\r\n--XY\r\ncontent-range:bytes 1000-1023/1024\r\n\r\n"
        + data[1000:1024]
        + b"\r\n--XY--\r\nepilogue"
    )
    assert list(iter_multipart([body], b"XY")) == [(3, 6, data[3:6]), (1000, 1024, data[1000:])]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage without boundary",
        b"--XY\r\nContent-Type: x\r\n\r\nabc\r\n--XY--",  # no Content-Range
        b"--XY\r\nContent-Range: bytes 0-9/10\r\n\r\nabc",  # truncated body
        b"--XY\r\nContent-Range: bytes 0-2/10\r\n\r\nabcdef\r\n--XY--",  # longer than stated
        b"--XY\r\nContent-Range: bytes 0-2/10\r\n\r\nabc\r\n--XY",  # no closing boundary
        b"--XY\r\nContent-Range: bytes 0-2/10\r\n\r\nabc",  # no closing boundary
        b"--XY\r\nContent-Range: bytes zero/10\r\n\r\nabc\r\n--XY--",
        b"--XY\r\nContent-Range bytes 0-2/10\r\n\r\nabc\r\n--XY--",  # header without colon
        b"--XYjunk\r\nContent-Range: bytes 0-2/10\r\n\r\nabc\r\n--XY--",
        b"--XY\r\n" + b"x" * 200_000,
        b"x" * 200_000,
        # nginx's shape (the parser's fast path): impossible range, part longer than stated
        b"\r\n--XY\r\nContent-Type: x\r\nContent-Range: bytes 5-2/10\r\n\r\nabc\r\n--XY--",
        b"\r\n--XY\r\nContent-Type: x\r\nContent-Range: bytes 0-2/10\r\n\r\nabcdef\r\n--XY--",
        b"\r\n--XY\r\nContent-Type: x\r\nContent-Range: bytes 0-2/10\r\n\r\nabc\r\n--XYZ\r\n",
        b"\r\n--XY\r\nContent-Type: x\r\nContent-Range: bytes 0-2/" + b"9" * 5000 + b"\r\n\r\n",
    ],
)
def test_iter_multipart_garbage(body: bytes) -> None:
    with pytest.raises(CorruptDataError):
        list(iter_multipart([body], b"XY"))


@given(st.binary(max_size=400), st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_iter_multipart_fuzz(body: bytes, rng: random.Random) -> None:
    """Arbitrary bytes never raise anything but CorruptDataError."""
    if rng.random() < 0.5:
        body = b"--B\r\n" + body
    try:
        for s, e, d in iter_multipart(chop(body, rng), b"B"):
            assert len(d) == e - s
    except CorruptDataError as exc:
        assert re.fullmatch(r"[^\n]+", str(exc))
