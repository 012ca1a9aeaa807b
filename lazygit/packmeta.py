"""Server pack metadata: the .idx (offsets, oids) and the .bitmap type index.

A lazy clone must know where every commit and tree lies in a server pack without reading
the pack.  The .idx gives each object's offset; sorting the offsets gives pack order (what
a .rev file would store) and, for each entry, its byte extent up to the next entry.  The
first four EWAH bitmaps of a .bitmap give each position's object type, so the commit and
tree extents can be read by HTTP ranges.

Object lookup by oid (:func:`find_oid`) narrows by the fan-out table and scans the names
sharing the first byte with ``bytes.find``, in C.  dulwich's index does a binary search that
calls back into Python at every probe: 3.5 times slower per lookup, and a 5,000-file
checkout batch makes about 20,000 lookups.  Bulk work (the offset table, the sort, EWAH
decoding) is done here with ``array`` and run lists, because per-entry calls and per-bit EWAH
sets are far too slow for 400k objects.  The tests check every lookup against dulwich's.

Standard library only: the daemon and the local object store use it.
"""

from __future__ import annotations

import hashlib
import mmap
import operator
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol

from lazygit.errors import CorruptDataError
from lazygit.ranges import Extent

OBJ_COMMIT, OBJ_TREE, OBJ_BLOB, OBJ_TAG = 1, 2, 3, 4

_IDX_V2_MAGIC = b"\377tOc"
_FANOUT_LEN = 256 * 4
_BITMAP_HEADER_LEN = 32
_BITMAP_MAGIC = b"BITM"

Run = tuple[int, int]


def _u32_array(data: bytes | memoryview, start: int, count: int) -> array[int]:
    """Big-endian u32 table -> native array (one C-level copy, not a Python loop)."""
    arr = array("I")
    if arr.itemsize != 4:  # pragma: no cover - exotic platforms
        arr = array("L")
        if arr.itemsize != 4:
            return array("Q", struct.unpack_from(f">{count}I", data, start))
    arr.frombytes(bytes(data[start : start + 4 * count]))
    if sys.byteorder == "little":
        arr.byteswap()
    return arr


def _u64_array(data: bytes | memoryview, start: int, count: int) -> array[int]:
    """Big-endian u64 table -> native array."""
    arr = array("Q")
    arr.frombytes(bytes(data[start : start + 8 * count]))
    if sys.byteorder == "little":
        arr.byteswap()
    return arr


def _be_table(values: Sequence[int], width: int) -> bytes:
    """Native ints -> big-endian u32 (``width`` 4) or u64 (8) table: the inverse of
    `_u32_array` / `_u64_array`."""
    arr = array("I" if width == 4 else "Q", values)
    if arr.itemsize != width:  # pragma: no cover - exotic platforms
        return struct.pack(f">{len(arr)}{'I' if width == 4 else 'Q'}", *arr)
    if sys.byteorder == "little":
        arr.byteswap()
    return arr.tobytes()


def merge_runs(runs: Iterable[Run]) -> list[Run]:
    """Sort position runs and merge overlapping or touching ones."""
    out: list[list[int]] = []
    for a, b in sorted(r for r in runs if r[1] > r[0]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1][1] = b
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


@dataclass
class PackTypes:
    """Object types by pack position, as runs ``[a, b)`` in pack-offset order."""

    commits: list[Run] = field(default_factory=list)
    trees: list[Run] = field(default_factory=list)
    blobs: list[Run] = field(default_factory=list)
    tags: list[Run] = field(default_factory=list)

    def by_type(self) -> dict[int, list[Run]]:
        """The runs keyed by git object type number."""
        return {
            OBJ_COMMIT: self.commits,
            OBJ_TREE: self.trees,
            OBJ_BLOB: self.blobs,
            OBJ_TAG: self.tags,
        }

    def count(self, type_num: int) -> int:
        """Objects of one type."""
        return sum(b - a for a, b in self.by_type()[type_num])


# ---------------------------------------------------------------------------------------
# .bitmap type index


def _ewah_end(head: bytes | memoryview, pos: int) -> int | None:
    """End offset of the EWAH bitmap starting at pos, or None if head is too short."""
    if len(head) < pos + 8:
        return None
    (words,) = struct.unpack_from(">I", head, pos + 4)
    return pos + 8 + 8 * words + 4


def bitmap_head_needed(head: bytes | memoryview) -> int | None:
    """Bytes of the .bitmap needed for its header and the four type bitmaps, or None
    if `head` is too short to tell (then read more).

    The type bitmaps directly follow the 32-byte header whatever the flags say (the hash
    cache and lookup table come after all bitmaps), so walking four EWAH lengths suffices.
    """
    pos = _BITMAP_HEADER_LEN
    for _ in range(4):
        end = _ewah_end(head, pos)
        if end is None:
            return None
        pos = end
    return pos


def _literal_runs(word: int, base: int, runs: list[list[int]]) -> None:
    """Append the runs of set bits of one 64-bit literal word at bit `base` (merging)."""
    while word:
        low = (word & -word).bit_length() - 1
        x = word >> low
        ones = (x ^ (x + 1)).bit_length() - 1  # trailing ones of x
        start = base + low
        end = start + ones
        if runs and runs[-1][1] == start:
            runs[-1][1] = end
        else:
            runs.append([start, end])
        if low + ones >= 64:
            break
        word &= ~((1 << (low + ones)) - 1)


def decode_ewah_runs(data: bytes | memoryview, pos: int = 0) -> tuple[list[Run], int]:
    """Decode one serialized EWAH bitmap at `pos` into runs of set bits.

    Returns (runs, end offset).  dulwich's EWAHBitmap builds a set with one element per
    set bit (seconds for a big pack); runs keep a clean fill word O(1) and a literal word
    O(runs in it).  CorruptDataError if truncated or if bits exceed the declared size.
    """
    if len(data) < pos + 8:
        raise CorruptDataError("truncated EWAH bitmap header")
    bit_count, word_count = struct.unpack_from(">II", data, pos)
    words_start = pos + 8
    end = words_start + 8 * word_count + 4
    if len(data) < end:
        raise CorruptDataError("truncated EWAH bitmap")
    words = struct.unpack_from(f">{word_count}Q", data, words_start)
    max_bits = ((bit_count + 63) // 64) * 64
    runs: list[list[int]] = []
    cur = 0
    i = 0
    all_ones = (1 << 64) - 1
    while i < word_count:
        rlw = words[i]
        i += 1
        running_bit = rlw & 1
        running_len = (rlw >> 1) & 0xFFFFFFFF
        literals = rlw >> 33
        if running_len:
            nbits = running_len * 64
            if cur + nbits > max_bits:
                raise CorruptDataError("EWAH run exceeds the bitmap size")
            if running_bit:
                if runs and runs[-1][1] == cur:
                    runs[-1][1] = cur + nbits
                else:
                    runs.append([cur, cur + nbits])
            cur += nbits
        if i + literals > word_count:
            raise CorruptDataError("EWAH literal words exceed the word count")
        if cur + 64 * literals > max_bits:
            raise CorruptDataError("EWAH literal words exceed the bitmap size")
        for word in words[i : i + literals]:
            if word == all_ones:
                if runs and runs[-1][1] == cur:
                    runs[-1][1] = cur + 64
                else:
                    runs.append([cur, cur + 64])
            elif word:
                _literal_runs(word, cur, runs)
            cur += 64
        i += literals
    if runs and runs[-1][1] > bit_count:
        raise CorruptDataError("EWAH bitmap has bits set beyond its size")
    return [(a, b) for a, b in runs], end


def parse_bitmap_types(
    head: bytes | memoryview, *, n_objects: int, pack_checksum: bytes
) -> PackTypes:
    """Decode the four type EWAH bitmaps as runs (not per bit).

    CorruptDataError on a bad signature/version, checksum != pack_checksum (a .bitmap
    left over from another pack), truncation, or types that do not partition the
    n_objects positions exactly once.
    """
    if len(head) < _BITMAP_HEADER_LEN:
        raise CorruptDataError("truncated .bitmap header")
    if bytes(head[:4]) != _BITMAP_MAGIC:
        raise CorruptDataError("not a .bitmap file (bad signature)")
    version, _flags, _entries = struct.unpack_from(">HHI", head, 4)
    if version != 1:
        raise CorruptDataError(f"unsupported .bitmap version {version}")
    stored = bytes(head[12:32])
    if stored != pack_checksum:
        raise CorruptDataError(
            f"bitmap does not belong to pack {pack_checksum.hex()} "
            f"(pack checksum mismatch: bitmap names {stored.hex()})"
        )
    pos = _BITMAP_HEADER_LEN
    decoded: list[list[Run]] = []
    for _ in range(4):
        runs, pos = decode_ewah_runs(head, pos)
        decoded.append(runs)
    types = PackTypes(*decoded)
    total = sum(b - a for runs in decoded for a, b in runs)
    if total != n_objects:
        raise CorruptDataError(
            f".bitmap type bitmaps cover {total} objects, the pack has {n_objects}"
        )
    # Equal counts plus no overlap and no bit >= n means every position has one type.
    prev_end = 0
    for a, b in sorted(r for runs in decoded for r in runs):
        if a < prev_end or b > n_objects:
            raise CorruptDataError(".bitmap type bitmaps overlap or exceed the pack")
        prev_end = b
    return types


# ---------------------------------------------------------------------------------------
# .idx


def _corrupt(name: str, why: str) -> CorruptDataError:
    return CorruptDataError(f"corrupt .idx for {name}: {why}")


_REV_HEADER = b"RIDX" + struct.pack(">II", 1, 1)


def _increasing(values: array[int]) -> bool:
    """Strictly increasing (so no two equal)."""
    return all(map(operator.lt, values, islice(values, 1, None)))


def _rev_order(rev: bytes, n: int, pack_checksum: bytes) -> array[int] | None:
    """The pack order of a cached .rev, or None when it does not fit the idx."""
    if (
        len(rev) != 12 + 4 * n + 40
        or rev[:12] != _REV_HEADER
        or rev[-40:-20] != pack_checksum
        or hashlib.sha1(rev[:-20]).digest() != rev[-20:]
    ):
        return None
    return _u32_array(rev, 12, n)


#: lazygit's cache of a pack's offsets in pack order: magic, version, item width (4 or 8),
#: object count, pack checksum, the offsets (big-endian), SHA-1 of all that.
_POS_MAGIC = b"LZPO"


def _read_positions(blob: bytes, n: int, pack_checksum: bytes) -> array[int] | None:
    """Offsets in pack order from a cached positions file, None when it does not fit."""
    head = 4 + 12 + 20
    if len(blob) < head + 20 or blob[:4] != _POS_MAGIC:
        return None
    version, width, count = struct.unpack_from(">III", blob, 4)
    if (
        version != 1
        or width not in (4, 8)
        or count != n
        or len(blob) != head + width * n + 20
        or blob[16:36] != pack_checksum
        or hashlib.sha1(blob[:-20]).digest() != blob[-20:]
    ):
        return None
    return _u32_array(blob, head, n) if width == 4 else _u64_array(blob, head, n)


def _read_rev(
    rev: bytes,
    n: int,
    pack_checksum: bytes,
    offsets: array[int],
    positions: bytes | None = None,
) -> tuple[array[int], array[int]] | None:
    """(order, sorted offsets) from a cached .rev, or None when it does not fit the idx.

    With the cached ``positions`` too (checked by their own SHA-1, written with the .rev),
    nothing is computed per object: mapping the order through the offsets costs ~0.25 s
    per million objects, at every daemon start.
    """
    order = _rev_order(rev, n, pack_checksum)
    if order is None:
        return None
    cached = _read_positions(positions, n, pack_checksum) if positions is not None else None
    if cached is not None:
        return order, cached
    try:
        sorted_offsets = array("Q", map(offsets.__getitem__, order))
    except IndexError:
        return None
    # Strictly increasing offsets from n positions < n: a permutation, in pack order.
    return (order, sorted_offsets) if _increasing(sorted_offsets) else None


class _Findable(Protocol):
    def find(self, sub: bytes, start: int, end: int, /) -> int: ...
    def __getitem__(self, key: slice, /) -> bytes: ...


#: A fan-out bucket up to this many names is scanned by ``find``; a bigger one (a pack of
#: millions of objects) is first halved by binary search down to this size.
_SCAN_NAMES = 512


def find_oid(
    table: _Findable,
    fanout: Sequence[int],
    oid: bytes,
    start: int = 0,
    stride: int = 20,
    *,
    scan: int = _SCAN_NAMES,
) -> int | None:
    """Index (in oid order) of ``oid`` in an idx name table, None if it is not there.

    ``table`` is the idx (bytes or mmap) whose ``i``-th name starts at ``start + i * stride``
    (v2: stride 20; v1: 24, each name after a 4-byte offset); ``fanout`` is its fan-out table.
    A match that is not at a name boundary (the oid's bytes straddling two names) is skipped.
    """
    if len(oid) != 20:
        return None
    first = oid[0]
    lo = fanout[first - 1] if first else 0
    hi = fanout[first]
    while hi - lo > scan:
        mid = (lo + hi) // 2
        at = start + mid * stride
        name = table[at : at + 20]
        if name < oid:
            lo = mid + 1
        elif name > oid:
            hi = mid
        else:
            return mid
    end = start + hi * stride - (stride - 20)
    i = table.find(oid, start + lo * stride, end)
    while i >= 0:
        k, r = divmod(i - start, stride)
        if not r:
            return k
        i = table.find(oid, i + 1, end)
    return None


class IdxFile:
    """Membership in a local pack's .idx, read through mmap (git wrote it: not re-checked).

    The object store of a big clone holds millions of names: they stay in the page cache,
    not in Python objects.
    """

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        head = self._map[:8]
        if head[:4] == _IDX_V2_MAGIC:
            fan_start, self._stride = 8, 20
            self._start = fan_start + _FANOUT_LEN
        else:  # v1: each name follows its 4-byte offset
            fan_start, self._stride = 0, 24
            self._start = fan_start + _FANOUT_LEN + 4
        if len(self._map) < fan_start + _FANOUT_LEN + 40:
            self._map.close()
            raise ValueError(f"{path}: too short for a pack index")
        self._fanout = _u32_array(self._map[fan_start : fan_start + _FANOUT_LEN], 0, 256)

    def __contains__(self, oid: bytes) -> bool:
        return find_oid(self._map, self._fanout, oid, self._start, self._stride) is not None

    def __len__(self) -> int:
        return self._fanout[255]

    def close(self) -> None:
        self._map.close()


class ServerPack:
    """One server pack seen through its .idx (and, once parsed, its .bitmap types)."""

    name: str
    size: int
    checksum: bytes
    types: PackTypes | None

    def __init__(
        self,
        name: str,
        size: int,
        checksum: bytes,
        fanout: array[int],
        names: bytes | mmap.mmap,
        names_start: int,
        offsets: array[int],
        order: array[int],
        sorted_offsets: array[int],
    ) -> None:
        self.name = name
        self.size = size
        self.checksum = checksum
        self.types = None
        self._fanout = fanout
        self._names = names  # from names_start: the idx name table, n * 20 bytes, oid-sorted
        self._names_start = names_start
        self._offsets = offsets  # idx (oid-sorted) index -> offset
        self._order = order  # pack position -> idx (oid-sorted) index
        self._sorted = sorted_offsets  # pack position -> offset
        self._type_starts: list[int] | None = None
        self._type_runs: list[tuple[int, int, int]] = []
        self._type_runs_of: PackTypes | None = None

    @classmethod
    def from_idx(
        cls,
        name: str,
        idx_data: bytes | memoryview | mmap.mmap,
        size: int,
        rev: bytes | None = None,
        positions: bytes | None = None,
    ) -> ServerPack:
        """Parse and validate an .idx (v2, or v1) for a pack of `size` bytes.

        ``rev`` is the pack's reverse index (git's .rev format, see `rev_bytes`) and
        ``positions`` its offsets in pack order (see `positions_bytes`), as cached at clone
        time: they spare sorting the offsets (1 s per million objects) and mapping them
        through the order (0.25 s per million) at every daemon start.  Ones that do not fit
        this idx are ignored.  CorruptDataError if the idx is malformed or an offset is outside
        the pack.
        """
        data = idx_data if isinstance(idx_data, (bytes, mmap.mmap)) else bytes(idx_data)
        if len(data) < _FANOUT_LEN + 40:
            raise _corrupt(name, "file too short")
        with memoryview(data) as view:
            digest = hashlib.sha1(view[:-20]).digest()
        if digest != data[-20:]:
            raise _corrupt(name, "its SHA-1 checksum does not match")
        v2 = data[:4] == _IDX_V2_MAGIC
        if v2:
            (version,) = struct.unpack_from(">I", data, 4)
            if version != 2:
                raise _corrupt(name, f"unsupported version {version}")
            fan_start = 8
        else:
            fan_start = 0
        fanout = _u32_array(data, fan_start, 256)
        prev = 0
        for v in fanout:
            if v < prev:
                raise _corrupt(name, "fanout table is not monotonic")
            prev = v
        n = fanout[255]
        table = fan_start + _FANOUT_LEN
        if v2:
            names_start = table
            off_start = table + n * 24  # names (20) + crc32 (4)
            large_start = off_start + 4 * n
            rest = len(data) - 40 - large_start
            if rest < 0 or rest % 8:
                raise _corrupt(name, "file size does not match its object count")
            n_large = rest // 8
            offsets = _u32_array(data, off_start, n)
            # An offset with its top bit set names a 64-bit one: look at the first byte of
            # each big-endian entry (a C-level scan; max() over the array costs 40 ns each).
            if n_large or (n and max(data[off_start : off_start + 4 * n : 4]) & 0x80):
                large = _u64_array(data, large_start, n_large)
                big = array("Q", offsets)
                for i, v in enumerate(offsets):
                    if v & 0x80000000:
                        k = v & 0x7FFFFFFF
                        if k >= n_large:
                            raise _corrupt(name, "large offset index out of range")
                        big[i] = large[k]
                offsets = big
            if isinstance(data, mmap.mmap):
                # The names stay in the mapped file (page cache), not in this process's
                # memory: 20 of the ~32 bytes per object a daemon would hold.
                names: bytes | mmap.mmap = data
            else:
                names, names_start = data[names_start : names_start + 20 * n], 0
        else:
            if len(data) != table + 24 * n + 40:
                raise _corrupt(name, "file size does not match its object count")
            recs = data[table : table + 24 * n]
            offsets = array("Q", (v for (v,) in struct.iter_unpack(">I20x", recs)))
            names, names_start = b"".join(recs[i + 4 : i + 24] for i in range(0, 24 * n, 24)), 0
        checksum = data[-40:-20]
        got = _read_rev(rev, n, checksum, offsets, positions) if rev is not None else None
        if got is None:
            order = array("I", sorted(range(n), key=offsets.__getitem__))
            sorted_offsets = array("Q", map(offsets.__getitem__, order))
            if not _increasing(sorted_offsets):
                raise _corrupt(name, "two objects share an offset")
        else:
            order, sorted_offsets = got
        if n:
            if sorted_offsets[0] < 12:
                raise _corrupt(name, "an offset points into the pack header")
            if sorted_offsets[-1] >= size - 20:
                raise _corrupt(name, f"an offset is outside the pack ({size} bytes)")
        return cls(name, size, checksum, fanout, names, names_start, offsets, order, sorted_offsets)

    def __len__(self) -> int:
        return len(self._sorted)

    def rev_bytes(self) -> bytes:
        """The reverse index in git's .rev format (gitformat-pack(5)): "RIDX", version 1,
        SHA-1, then each pack position's idx position, the pack checksum, its own SHA-1."""
        body = _REV_HEADER + _be_table(self._order, 4) + self.checksum
        return body + hashlib.sha1(body).digest()

    def positions_bytes(self) -> bytes:
        """The offsets in pack order, as cached beside the .rev (see `from_idx`)."""
        width = 4 if not self._sorted or self._sorted[-1] < 1 << 32 else 8
        body = _be_table(self._sorted, width)
        blob = _POS_MAGIC + struct.pack(">III", 1, width, len(self._sorted)) + self.checksum + body
        return blob + hashlib.sha1(blob).digest()

    def offset_of(self, oid: bytes) -> int | None:
        """Offset of an object in the pack, None if the pack lacks it."""
        i = find_oid(self._names, self._fanout, oid, self._names_start)
        return None if i is None else self._offsets[i]

    def rank(self, oid: bytes) -> int:
        """How many of this pack's oids sort before ``oid`` (a MIDX position is the sum of
        this over its packs)."""
        first = oid[0]
        lo = self._fanout[first - 1] if first else 0
        hi = self._fanout[first]
        while lo < hi:
            mid = (lo + hi) // 2
            at = self._names_start + mid * 20
            if self._names[at : at + 20] < oid:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def position_of_offset(self, offset: int) -> int:
        """Pack position (index in offset order) of the entry at `offset` (KeyError if none)."""
        pos = bisect_right(self._sorted, offset) - 1
        if pos < 0 or self._sorted[pos] != offset:
            raise KeyError(offset)
        return pos

    def entry_at_or_after(self, offset: int) -> int:
        """Offset of the first entry starting at or after ``offset`` (the pack end if none)."""
        pos = bisect_left(self._sorted, offset)
        return self._sorted[pos] if pos < len(self._sorted) else self.size - 20

    def offset_at_position(self, pos: int) -> int:
        """Offset of the pos-th entry in pack order."""
        return self._sorted[pos]

    def oid_at_position(self, pos: int) -> bytes:
        """Oid of the pos-th entry in pack order."""
        i = self._names_start + self._order[pos] * 20
        return self._names[i : i + 20]

    def oid_at(self, offset: int) -> bytes:
        """Oid of the entry starting at `offset` (KeyError if no entry starts there)."""
        return self.oid_at_position(self.position_of_offset(offset))

    def end_of_position(self, pos: int) -> int:
        """Where the entry at ``pos`` begins, or the trailer for ``pos == len(self)``."""
        return self._sorted[pos] if pos < len(self._sorted) else self.size - 20

    def extent_at(self, offset: int) -> Extent:
        """[offset, next entry offset or size-20): the raw entry's bytes."""
        pos = self.position_of_offset(offset)
        return Extent(offset, self.end_of_position(pos + 1))

    def extents_of_positions(self, runs: Iterable[Run]) -> list[Extent]:
        """Byte extents of position runs [a, b); consecutive entries give one extent."""
        n = len(self._sorted)
        out: list[Extent] = []
        for a, b in merge_runs(runs):
            if a < 0 or b > n:
                raise IndexError(f"positions [{a}, {b}) outside a pack of {n} objects")
            out.append(Extent(self._sorted[a], self.end_of_position(b)))
        return out

    def offsets_of_positions(self, a: int, b: int) -> list[int]:
        """Offsets of the entries at positions [a, b), in pack order."""
        return self._sorted[a:b]

    def metadata_runs(self) -> list[Run]:
        """Position runs [a, b) of all commits, trees and tags (needs ``types``)."""
        if self.types is None:
            raise ValueError(f"{self.name}: object types unknown (no bitmap parsed)")
        t = self.types
        return merge_runs([*t.commits, *t.trees, *t.tags])

    def metadata_extents(self) -> list[Extent]:
        """Extents of all commits, trees and tags (needs `types` from the bitmap)."""
        return self.extents_of_positions(self.metadata_runs())

    def metadata_entries(self) -> list[tuple[int, Extent]]:
        """(position, extent) of every commit, tree and tag entry, in pack order."""
        offs = self._sorted
        last = len(offs) - 1
        end_of_pack = self.size - 20
        out = []
        for a, b in self.metadata_runs():
            for p in range(a, b):
                out.append((p, Extent(offs[p], offs[p + 1] if p < last else end_of_pack)))
        return out

    def type_at_position(self, pos: int) -> int:
        """Object type (1-4) at a pack position, from the bitmap runs."""
        if self.types is None:
            raise ValueError(f"{self.name}: object types unknown (no bitmap parsed)")
        if self._type_starts is None or self._type_runs_of is not self.types:
            flat = sorted((a, b, t) for t, runs in self.types.by_type().items() for a, b in runs)
            self._type_runs = flat
            self._type_starts = [a for a, _b, _t in flat]
            self._type_runs_of = self.types
        assert self._type_starts is not None
        k = bisect_right(self._type_starts, pos) - 1
        if k >= 0:
            a, b, t = self._type_runs[k]
            if a <= pos < b:
                return t
        raise KeyError(pos)
