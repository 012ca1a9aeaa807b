"""A bounded LRU cache of server pack bytes, in the spirit of JGit's DfsBlockCache.

The daemon reads pack byte ranges through it: bytes already read (wanted entries and the gap
bytes read through while coalescing) are served from memory, and only the uncovered parts of
a request go to the server.  Segments are keyed by (pack, start) and evicted least recently
used first once ``capacity`` bytes are held.  A read bigger than STREAM_RATIO of the cache (a
big blob, a huge batch) streams past it, as JGit streams objects past its block cache: it
would push out everything else and could not stay itself.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from lazygit.catalog import PackHandle
from lazygit.ranges import Extent, split

Reader = Callable[
    [PackHandle, Sequence[Extent], Callable[[int], None] | None], Iterator[tuple[Extent, bytes]]
]


def direct_reader(
    handle: PackHandle, extents: Sequence[Extent], on_bytes: Callable[[int], None] | None = None
) -> Iterator[tuple[Extent, bytes]]:
    """Read straight from the server (no cache)."""
    return handle.source.remote.read_extents(handle.info, extents, on_bytes=on_bytes)


#: A reader call wanting more than this share of the cache is not kept in it (JGit's
#: DfsBlockCache ``streamRatio``, whose default is also 0.30).
STREAM_RATIO = 0.30


class BlockCache:
    """Pack bytes by (pack name, byte offset); thread-safe; at most ``capacity`` bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self.hits = 0  # bytes served from memory
        self.misses = 0  # bytes that had to come from the server
        self._lru: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._starts: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget everything (bytes that failed a hash check may be among them)."""
        with self._lock:
            self._lru.clear()
            self._starts.clear()
            self.size = 0

    # -- segment store ------------------------------------------------------------------
    def _put(self, pack: str, start: int, data: bytes) -> None:
        if not data or len(data) > self.capacity:
            return
        key = (pack, start)
        with self._lock:
            old = self._lru.pop(key, None)
            if old is not None:
                self.size -= len(old)
            else:
                bisect.insort(self._starts.setdefault(pack, []), start)
            self._lru[key] = data
            self.size += len(data)
            while self.size > self.capacity:
                (p, s), d = self._lru.popitem(last=False)
                self.size -= len(d)
                starts = self._starts[p]
                del starts[bisect.bisect_left(starts, s)]

    def _covered(self, pack: str, ext: Extent) -> list[tuple[int, bytes]]:
        """Cached segments overlapping ``ext`` as (start, data), sorted, marked recently used."""
        out = []
        with self._lock:
            starts = self._starts.get(pack, [])
            i = max(bisect.bisect_right(starts, ext.start) - 1, 0)
            while i < len(starts) and starts[i] < ext.end:
                s = starts[i]
                data = self._lru[(pack, s)]
                if s + len(data) > ext.start:
                    out.append((s, data))
                    self._lru.move_to_end((pack, s))
                i += 1
        return out

    # -- reading ------------------------------------------------------------------------
    def read(
        self,
        handle: PackHandle,
        extents: Sequence[Extent],
        on_bytes: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[Extent, bytes]]:
        """The Reader protocol: memory first, the server for the rest (kept, unless the
        call wants more than STREAM_RATIO of the cache)."""
        wanted = sum(e.length for e in extents)
        store: SegmentStore = self if wanted <= self.capacity * STREAM_RATIO else _Past(self)
        return read_through(store, handle, extents, on_bytes)

    # The names read_through() uses.
    def covered(self, pack: str, ext: Extent) -> list[tuple[int, bytes]]:
        out = self._covered(pack, ext)
        self.hits += sum(min(ext.end, s + len(d)) - max(ext.start, s) for s, d in out)
        return out

    def put(self, pack: str, start: int, data: bytes) -> None:
        self.misses += len(data)
        self._put(pack, start, data)


class SegmentStore(Protocol):
    """Somewhere pack bytes can be kept: memory (BlockCache) or disk (RangeStore)."""

    def covered(self, pack: str, ext: Extent) -> list[tuple[int, bytes]]: ...
    def put(self, pack: str, start: int, data: bytes) -> None: ...


class _Past:
    """A BlockCache seen by a read that streams past it: what it holds is used, nothing new
    is kept."""

    def __init__(self, cache: BlockCache) -> None:
        self.cache = cache

    def covered(self, pack: str, ext: Extent) -> list[tuple[int, bytes]]:
        return self.cache.covered(pack, ext)

    def put(self, pack: str, start: int, data: bytes) -> None:
        self.cache.misses += len(data)


def read_through(
    store: SegmentStore,
    handle: PackHandle,
    extents: Sequence[Extent],
    on_bytes: Callable[[int], None] | None = None,
    piece: int | None = None,
) -> Iterator[tuple[Extent, bytes]]:
    """Yield (extent, bytes) for sorted disjoint ``extents``: what ``store`` holds comes from
    it, only the holes are read from the server (and put into the store, in pieces of at most
    ``piece`` bytes so that an interruption keeps most of what arrived).

    Streams: each extent is yielded as soon as its holes have arrived, so the caller works
    (and index-pack runs) while later extents are still on the wire, and the bytes held at
    once stay bounded by the reader's look-ahead, not by the size of the request.
    """
    name = handle.name
    plan: list[tuple[Extent, list[tuple[int, bytes]], int]] = []
    fetch: list[Extent] = []
    for ext in extents:
        segments = store.covered(name, ext)
        holes = _holes(ext, segments)
        plan.append((ext, segments, sum(h.length for h in holes)))
        fetch += holes
    if piece is not None:
        fetch = split(fetch, piece)
    stream = direct_reader(handle, fetch, on_bytes) if fetch else iter(())
    for ext, segments, missing in plan:
        fresh: list[tuple[int, bytes]] = []
        while missing > 0:
            hole, data = next(stream)
            store.put(name, hole.start, data)
            fresh.append((hole.start, data))
            missing -= len(data)
        if not fresh and len(segments) == 1 and segments[0][0] <= ext.start:
            s, d = segments[0]
            if s + len(d) >= ext.end:
                yield ext, d[ext.start - s : ext.end - s]
                continue
        if len(fresh) == 1 and not segments:
            yield ext, fresh[0][1]
            continue
        buf = bytearray()
        for s, d in sorted([*segments, *fresh]):
            have = ext.start + len(buf)  # next byte wanted
            hi = min(ext.end, s + len(d)) - s
            lo = have - s
            if lo >= 0 and hi > lo:
                buf += d[lo:hi]
        if len(buf) != ext.length:
            raise AssertionError(f"read_through assembled {len(buf)} of {ext.length} bytes")
        yield ext, bytes(buf)


def _holes(ext: Extent, segments: list[tuple[int, bytes]]) -> list[Extent]:
    """Parts of ``ext`` not covered by the sorted segments."""
    holes = []
    pos = ext.start
    for s, d in segments:
        if s > pos:
            holes.append(Extent(pos, min(s, ext.end)))
        pos = max(pos, s + len(d))
        if pos >= ext.end:
            break
    if pos < ext.end:
        holes.append(Extent(pos, ext.end))
    return holes
