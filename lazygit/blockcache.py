"""A bounded LRU cache of server pack bytes, in the spirit of JGit's DfsBlockCache.

The daemon reads pack byte ranges through it: bytes already read (wanted entries and the gap
bytes read through while coalescing) are served from memory, and only the uncovered parts of
a request go to the server.  Segments are keyed by (pack, start) and evicted least recently
used first once ``capacity`` bytes are held.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

from lazygit.catalog import PackHandle
from lazygit.ranges import Extent

Reader = Callable[
    [PackHandle, Sequence[Extent], Callable[[int], None] | None], Iterator[tuple[Extent, bytes]]
]


def direct_reader(
    handle: PackHandle, extents: Sequence[Extent], on_bytes: Callable[[int], None] | None = None
) -> Iterator[tuple[Extent, bytes]]:
    """Read straight from the server (no cache)."""
    return handle.source.remote.read_extents(handle.info, extents, on_bytes=on_bytes)


class BlockCache:
    """Pack bytes by (pack name, byte offset); thread-safe; at most ``capacity`` bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self.hits = 0  # bytes served from memory
        self.misses = 0  # bytes read from the server
        self._lru: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._starts: dict[str, list[int]] = {}
        self._lock = threading.Lock()

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
        """Yield (extent, bytes) for sorted disjoint ``extents``; read only what is not cached."""
        name = handle.name
        plan: list[tuple[Extent, list[tuple[int, bytes]], list[Extent]]] = []
        fetch: list[Extent] = []
        for ext in extents:
            segments = self._covered(name, ext)
            holes = _holes(ext, segments)
            plan.append((ext, segments, holes))
            fetch += holes
        fresh: dict[int, bytes] = {}
        if fetch:
            for hole, data in direct_reader(handle, fetch, on_bytes):
                fresh[hole.start] = data
                self._put(name, hole.start, data)
                self.misses += len(data)
        for ext, segments, holes in plan:
            pieces = [(s, d) for s, d in segments] + [(h.start, fresh[h.start]) for h in holes]
            pieces.sort()
            buf = bytearray()
            for s, d in pieces:
                lo = max(ext.start, s) - s
                hi = min(ext.end, s + len(d)) - s
                if hi > lo and s + lo == ext.start + len(buf):
                    buf += d[lo:hi]
                elif hi > lo and s + hi > ext.start + len(buf):
                    skip = ext.start + len(buf) - s
                    buf += d[skip:hi]
            self.hits += ext.length - sum(h.length for h in holes)
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
