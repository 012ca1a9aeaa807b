"""Byte-range planning: which bytes to ask the server for, and in which requests.

Pure and standard library only, so it can be fuzzed.  Every HTTP request costs a round trip
and header bytes, so nearby wanted extents are merged and read through small gaps, within a
budget of extra bytes; the result is then cut and grouped into multi-range requests that
servers (nginx: ~8 KiB header buffer) accept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True, slots=True)
class Extent:
    """A half-open byte range ``[start, end)`` of a server file."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """Bytes in the extent."""
        return self.end - self.start

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"bad extent [{self.start}, {self.end})")


def _merge_touching(pairs: list[tuple[int, int]], min_gap: int) -> list[tuple[int, int]]:
    """Merge sorted (start, end) pairs that overlap, touch, or have gaps <= ``min_gap``."""
    merged: list[tuple[int, int]] = []
    cur_start = cur_end = -1
    for start, end in pairs:
        if end <= start:
            continue
        if cur_end >= 0 and start - cur_end <= min_gap:
            if end > cur_end:
                cur_end = end
            continue
        if cur_end >= 0:
            merged.append((cur_start, cur_end))
        cur_start, cur_end = start, end
    if cur_end >= 0:
        merged.append((cur_start, cur_end))
    return merged


def coalesce(extents: Iterable[Extent], *, min_gap: int, overhead: float) -> list[Extent]:
    """Sort; merge overlapping/adjacent; always merge gaps <= min_gap; then merge the
    smallest remaining gaps first while the bytes read through gaps stay <= overhead *
    (wanted bytes). Returns sorted disjoint extents covering every input extent.

    Wanted bytes are the union of the inputs; the budget covers only the gaps merged in the
    second phase (the always-merged small gaps are the price of one range less each).
    O(n log n), on plain tuples (sorting dataclasses is several times slower).
    """
    wanted_parts = _merge_touching(sorted((e.start, e.end) for e in extents), 0)
    wanted = sum(end - start for start, end in wanted_parts)
    merged = _merge_touching(wanted_parts, max(min_gap, 0))
    if len(merged) >= 2 and overhead > 0:
        budget = overhead * wanted
        gaps = sorted((merged[i + 1][0] - merged[i][1], i) for i in range(len(merged) - 1))
        join_after = bytearray(len(merged))  # 1: merge pair i with pair i + 1
        spent = 0
        for size, i in gaps:
            if spent + size > budget:
                break
            spent += size
            join_after[i] = 1
        joined: list[tuple[int, int]] = []
        start = merged[0][0]
        last = len(merged) - 1
        for i, (_s, end) in enumerate(merged):
            if i < last and join_after[i]:
                continue
            joined.append((start, end))
            if i < last:
                start = merged[i + 1][0]
        merged = joined
    return [Extent(start, end) for start, end in merged]


def subtract(extents: Sequence[Extent], held: Sequence[Extent]) -> list[Extent]:
    """The parts of sorted disjoint ``extents`` outside sorted disjoint ``held``: what a
    reader that keeps what it read (blockcache.read_through) still asks the server for."""
    out: list[Extent] = []
    j = 0
    for ext in extents:
        pos = ext.start
        while j < len(held) and held[j].end <= pos:
            j += 1
        k = j
        while k < len(held) and held[k].start < ext.end:
            if held[k].start > pos:
                out.append(Extent(pos, held[k].start))
            pos = max(pos, held[k].end)
            k += 1
        if pos < ext.end:
            out.append(Extent(pos, ext.end))
    return out


def split(extents: Iterable[Extent], max_len: int) -> list[Extent]:
    """Cut extents longer than max_len into pieces of at most max_len.

    Long ranges are split so that several connections can read one big object concurrently
    and a retry repeats less.
    """
    if max_len <= 0:
        raise ValueError("max_len must be positive")
    out: list[Extent] = []
    for e in extents:
        pos = e.start
        while e.end - pos > max_len:
            out.append(Extent(pos, pos + max_len))
            pos += max_len
        if pos < e.end or e.length == 0:
            out.append(Extent(pos, e.end))
    return out


def _spec(e: Extent) -> str:
    return f"{e.start}-{e.end - 1}"


def group_requests(
    extents: Sequence[Extent], *, max_ranges: int, max_bytes: int, max_header: int = 6000
) -> list[list[Extent]]:
    """Consecutive groups for multi-range requests: at most max_ranges ranges, at most
    max_bytes bytes (a single longer extent forms its own group), and a Range header of at
    most max_header characters.

    The header limit keeps requests inside server buffers (nginx rejects big headers with
    400); the byte limit keeps one response's memory and retry cost bounded.
    """
    max_ranges = max(1, max_ranges)
    groups: list[list[Extent]] = []
    cur: list[Extent] = []
    cur_bytes = 0
    cur_header = len("bytes=")
    for e in extents:
        spec_len = len(_spec(e))
        add_header = spec_len + (1 if cur else 0)
        if cur and (
            len(cur) >= max_ranges
            or cur_bytes + e.length > max_bytes
            or cur_header + add_header > max_header
        ):
            groups.append(cur)
            cur, cur_bytes, cur_header = [], 0, len("bytes=")
            add_header = spec_len
        cur.append(e)
        cur_bytes += e.length
        cur_header += add_header
    if cur:
        groups.append(cur)
    return groups


def range_header(extents: Sequence[Extent]) -> str:
    """The Range header value, e.g. ``bytes=0-9,20-29`` (HTTP ends are inclusive)."""
    if not extents:
        raise ValueError("no extents")
    return "bytes=" + ",".join(_spec(e) for e in extents)
