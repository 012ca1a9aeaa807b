"""Writing a local pack from raw server pack entries, streamed into ``git index-pack``.

Entries are copied byte for byte (header + zlib stream as read by HTTP range), so nothing
is inflated or recompressed; only the delta base field of OFS_DELTA entries changes,
because offsets in the new pack differ.  A delta whose base is not in this output becomes
REF_DELTA naming the base oid, and the pack is then thin (``index-pack --fix-thin``).

Standard library only: the long-running daemon imports this module.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from lazygit.errors import CorruptDataError

OBJ_COMMIT, OBJ_TREE, OBJ_BLOB, OBJ_TAG, OFS_DELTA, REF_DELTA = 1, 2, 3, 4, 6, 7

_VALID_TYPES = frozenset((OBJ_COMMIT, OBJ_TREE, OBJ_BLOB, OBJ_TAG, OFS_DELTA, REF_DELTA))
# A size varint longer than this would exceed 64 bits: git rejects it, so do we.
_MAX_SIZE_BYTES = 10
# Same bound for the OFS_DELTA offset encoding (git: "delta base offset overflow").
_MAX_OFS_BYTES = 10


@dataclass(frozen=True)
class EntryHeader:
    """A pack entry's header: type, inflated size, and the delta base if any."""

    type: int
    size: int
    header_len: int  # bytes before the zlib stream, including the delta base field
    base_distance: int | None  # OFS_DELTA: entry offset - base offset
    base_oid: bytes | None  # REF_DELTA


def parse_entry_header(data: bytes | memoryview) -> EntryHeader:
    """Parse the type/size varint and delta base of a raw entry.

    CorruptDataError if truncated, of an invalid type, or with an impossible base.
    """
    n = len(data)
    if n < 1:
        raise CorruptDataError("truncated pack entry header")
    c = data[0]
    type_num = (c >> 4) & 7
    if type_num not in _VALID_TYPES:
        raise CorruptDataError(f"invalid pack entry type {type_num}")
    size = c & 15
    shift = 4
    i = 1
    while c & 0x80:
        if i >= n:
            raise CorruptDataError("truncated pack entry header")
        if i >= _MAX_SIZE_BYTES:
            raise CorruptDataError("pack entry size varint too long")
        c = data[i]
        i += 1
        size |= (c & 0x7F) << shift
        shift += 7
    if type_num == OFS_DELTA:
        if i >= n:
            raise CorruptDataError("truncated OFS_DELTA base offset")
        c = data[i]
        i += 1
        distance = c & 0x7F
        start = i
        while c & 0x80:
            if i >= n:
                raise CorruptDataError("truncated OFS_DELTA base offset")
            if i - start >= _MAX_OFS_BYTES - 1:
                raise CorruptDataError("OFS_DELTA base offset too long")
            c = data[i]
            i += 1
            distance = ((distance + 1) << 7) | (c & 0x7F)
        if distance == 0:
            raise CorruptDataError("OFS_DELTA base offset of 0")
        return EntryHeader(type_num, size, i, distance, None)
    if type_num == REF_DELTA:
        if i + 20 > n:
            raise CorruptDataError("truncated REF_DELTA base oid")
        return EntryHeader(type_num, size, i + 20, None, bytes(data[i : i + 20]))
    return EntryHeader(type_num, size, i, None, None)


def encode_type_size(type_num: int, size: int) -> bytes:
    """The type/size varint that starts every pack entry."""
    out = bytearray()
    c = (type_num << 4) | (size & 15)
    size >>= 4
    while size:
        out.append(c | 0x80)
        c = size & 0x7F
        size >>= 7
    out.append(c)
    return bytes(out)


def encode_ofs_distance(distance: int) -> bytes:
    """git's OFS_DELTA offset encoding (big-endian 7-bit groups, +1 per continuation)."""
    if distance <= 0:
        raise ValueError(f"OFS_DELTA distance must be positive, not {distance}")
    out = bytearray([distance & 0x7F])
    distance >>= 7
    while distance:
        distance -= 1
        out.append(0x80 | (distance & 0x7F))
        distance >>= 7
    out.reverse()
    return bytes(out)


#: Output is written and hashed in chunks of about this size.
_FLUSH_BYTES = 1 << 20


class PackWriter:
    """Streams a pack: header with `count`, entries, SHA-1 trailer. Never holds the pack.

    `thin` becomes True when an OFS_DELTA base was not written here and the entry was
    turned into a REF_DELTA.  REF_DELTA entries copied as they are leave `thin` alone: the
    caller knows whether their bases are local and decides on ``--fix-thin``.  Entries of
    one server pack should be added in offset order (bases precede deltas there); a base
    added after its delta still works, but costs a REF_DELTA and marks the pack thin.
    """

    thin: bool

    def __init__(
        self,
        out: BinaryIO,
        count: int,
        locate: Callable[[bytes], Iterable[tuple[str, int]]] | None = None,
    ) -> None:
        if count < 0 or count >= 1 << 32:
            raise ValueError(f"bad pack object count {count}")
        self._out = out
        self._count = count
        self._added = 0
        self._sha = hashlib.sha1()
        self._pos = 0
        # (server pack name, offset there) -> offset in this output
        self._written: dict[tuple[str, int], int] = {}
        # object id -> offset in this output, for entries added with their id
        self._by_oid: dict[bytes, int] = {}
        # object id -> the (server pack, offset) places it may have been copied from
        self._locate = locate
        self.thin = False
        self._buf = bytearray()
        self._write(b"PACK" + struct.pack(">II", 2, count))

    @property
    def bytes_written(self) -> int:
        """Bytes written so far."""
        return self._pos

    def _write(self, data: bytes | memoryview) -> None:
        # Entries are small (a tree is ~100 bytes): collect them and hash/write in big chunks.
        self._pos += len(data)
        if len(data) >= _FLUSH_BYTES:  # a whole run of entries: no copy
            self._flush()
            self._out.write(data)
            self._sha.update(data)
            return
        self._buf += data
        if len(self._buf) >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            self._out.write(self._buf)
            self._sha.update(self._buf)
            self._buf = bytearray()

    def _next(self) -> int:
        if self._added >= self._count:
            raise ValueError(f"more than the announced {self._count} pack entries")
        self._added += 1
        return self._pos

    def add_entry(
        self,
        pack: str,
        offset: int,
        data: bytes | memoryview,
        base_oid_at: Callable[[int], bytes],
        oid: bytes | None = None,
        rest: Iterable[bytes] = (),
    ) -> None:
        """Copy a raw server entry (its id is ``oid``, if the caller knows it).

        ``data`` holds at least the entry's header; ``rest``, if given, the bytes after
        ``data`` in pieces: a big entry is copied without being held in memory.

        A delta whose base is already in this pack -- found by (pack, offset) or, for entries
        added with their ``oid``, by object id -- becomes an OFS_DELTA with the distance for
        the new positions.  Otherwise it names its base by id (REF_DELTA, ``thin`` set for an
        OFS_DELTA).  In-pack bases must never be left as REF_DELTA: git 2.39's
        ``index-pack --fix-thin`` then tries to fetch them lazily when the pack is thin.
        """
        here = self._next()
        self._copy(pack, offset, data, base_oid_at, here)
        for piece in rest:
            self._write(piece)
        self._written[(pack, offset)] = here
        if oid is not None:
            self._by_oid[oid] = here

    def _copy(
        self,
        pack: str,
        offset: int,
        data: bytes | memoryview,
        base_oid_at: Callable[[int], bytes],
        here: int,
    ) -> None:
        """Write one entry at output position ``here``, its delta base named for this pack."""
        h = parse_entry_header(data)
        new_base: int | None = None
        base_oid: bytes | None = None
        if h.type == OFS_DELTA:
            assert h.base_distance is not None
            base_offset = offset - h.base_distance
            if base_offset < 0:
                raise CorruptDataError(
                    f"{pack}: delta at {offset} names a base before the pack start"
                )
            new_base = self._written.get((pack, base_offset))
            if new_base is None:
                base_oid = base_oid_at(base_offset)
                if len(base_oid) != 20:
                    raise ValueError("base_oid_at must return a 20-byte oid")
                new_base = self._written_oid(base_oid)
        elif h.type == REF_DELTA:
            base_oid = h.base_oid
            new_base = self._written_oid(base_oid) if base_oid is not None else None
        if new_base is not None and new_base >= here:
            raise CorruptDataError(f"{pack}: the delta at {offset} names itself as its base")
        if new_base is not None:
            self._write(encode_type_size(OFS_DELTA, h.size) + encode_ofs_distance(here - new_base))
            self._write(memoryview(data)[h.header_len :])
        elif h.type == OFS_DELTA:
            assert base_oid is not None
            self.thin = True
            self._write(encode_type_size(REF_DELTA, h.size) + base_oid)
            self._write(memoryview(data)[h.header_len :])
        else:
            self._write(data)

    def _written_oid(self, oid: bytes) -> int | None:
        """Where object ``oid`` was written in this pack, if it was."""
        here = self._by_oid.get(oid)
        if here is None and self._locate is not None:
            for key in self._locate(oid):
                here = self._written.get(key)
                if here is not None:
                    break
        return here

    def add_run(
        self,
        pack: str,
        data: bytes | memoryview,
        offsets: Sequence[int],
        base_oid_at: Callable[[int], bytes],
    ) -> None:
        """Copy consecutive raw server entries at ``offsets``; ``data`` holds exactly their
        bytes (from ``offsets[0]`` to the end of the last entry).

        The fast path of a clone: a run of commits and trees is written as one slice.  A
        delta whose base sits earlier in the same run keeps its distance (both moved by the
        same amount), so only deltas whose base lies outside the run, or behind an entry
        rewritten here, are re-encoded, as :meth:`add_entry` would.
        """
        if not offsets:
            return
        if self._added + len(offsets) > self._count:
            raise ValueError(f"more than the announced {self._count} pack entries")
        view = memoryview(data)
        start = offsets[0]
        written = self._written
        # new position = old offset + shift; shift changes where a header is rewritten.
        shift = self._pos - start
        # Position in ``view`` where the slice not yet written begins.
        pending = 0
        # A delta at or after ``stable`` whose base is too keeps its distance: no header
        # between them changed size.
        stable = start
        n = len(offsets)
        for k in range(n):
            off = offsets[k]
            rel = off - start
            here = off + shift
            written[(pack, off)] = here
            c = view[rel]
            t = (c >> 4) & 7
            if 0 < t < 5:
                continue  # a whole object: bytes unchanged
            if t == OFS_DELTA:
                try:  # skip the size varint, then decode the base distance
                    i = rel + 1
                    while c & 0x80:
                        c = view[i]
                        i += 1
                    c = view[i]
                    distance = c & 0x7F
                    while c & 0x80:
                        i += 1
                        c = view[i]
                        distance = ((distance + 1) << 7) | (c & 0x7F)
                except IndexError:
                    distance = 0  # truncated: parse_entry_header below says how
                if distance and off - distance >= stable:
                    continue  # base in this run, nothing between rewritten: bytes unchanged
            end = offsets[k + 1] - start if k + 1 < n else len(view)
            raw = view[rel:end]
            h = parse_entry_header(raw)
            if h.type == OFS_DELTA:
                assert h.base_distance is not None
                new_base = written.get((pack, off - h.base_distance))
                if new_base is not None and here - new_base == h.base_distance:
                    continue
            elif h.base_oid is None or self._written_oid(h.base_oid) is None:
                continue  # a REF_DELTA to an object not written here: copied as it is
            # Re-encode this entry: write what precedes it, then the entry itself.
            self._write(view[pending:rel])
            self._copy(pack, off, raw, base_oid_at, here)
            pending = end
            shift = self._pos - (start + end)
            stable = start + end
        self._write(view[pending:])
        self._added += n

    def add_object(self, type_num: int, content: bytes) -> None:
        """Add a whole object (e.g. a loose one) with zlib-compressed content."""
        self.add_deflated(type_num, len(content), [zlib.compress(content)])

    def add_deflated(self, type_num: int, size: int, deflated: Iterable[bytes]) -> None:
        """Add a whole object of ``size`` bytes whose zlib stream comes in pieces."""
        if type_num not in (OBJ_COMMIT, OBJ_TREE, OBJ_BLOB, OBJ_TAG):
            raise ValueError(f"not a whole-object type: {type_num}")
        self._next()
        self._write(encode_type_size(type_num, size))
        for piece in deflated:
            self._write(piece)

    def finish(self) -> bytes:
        """Write the trailer and return the pack checksum; ValueError if count is wrong."""
        if self._added != self._count:
            raise ValueError(f"{self._added} pack entries added, {self._count} announced")
        self._flush()
        digest = self._sha.digest()
        self._out.write(digest)
        self._pos += len(digest)
        return digest
