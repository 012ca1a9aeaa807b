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
from collections.abc import Callable
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

    def __init__(self, out: BinaryIO, count: int) -> None:
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
        self.thin = False
        self._buf = bytearray()
        self._write(b"PACK" + struct.pack(">II", 2, count))

    @property
    def bytes_written(self) -> int:
        """Bytes written so far."""
        return self._pos

    def _write(self, data: bytes | memoryview) -> None:
        # Entries are small (a tree is ~100 bytes): collect them and hash/write in big chunks.
        self._buf += data
        self._pos += len(data)
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
    ) -> None:
        """Copy a raw server entry (its id is ``oid``, if the caller knows it).

        A delta whose base is already in this pack -- found by (pack, offset) or, for entries
        added with their ``oid``, by object id -- becomes an OFS_DELTA with the distance for
        the new positions.  Otherwise it names its base by id (REF_DELTA, ``thin`` set for an
        OFS_DELTA).  In-pack bases must never be left as REF_DELTA: git 2.39's
        ``index-pack --fix-thin`` then tries to fetch them lazily when the pack is thin.
        """
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
                new_base = self._by_oid.get(base_oid)
        elif h.type == REF_DELTA:
            base_oid = h.base_oid
            new_base = self._by_oid.get(base_oid) if base_oid is not None else None
        here = self._next()
        self._written[(pack, offset)] = here
        if oid is not None:
            self._by_oid[oid] = here
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

    def add_object(self, type_num: int, content: bytes) -> None:
        """Add a whole object (e.g. a loose one) with zlib-compressed content."""
        if type_num not in (OBJ_COMMIT, OBJ_TREE, OBJ_BLOB, OBJ_TAG):
            raise ValueError(f"not a whole-object type: {type_num}")
        self._next()
        self._write(encode_type_size(type_num, len(content)))
        self._write(zlib.compress(content))

    def finish(self) -> bytes:
        """Write the trailer and return the pack checksum; ValueError if count is wrong."""
        if self._added != self._count:
            raise ValueError(f"{self._added} pack entries added, {self._count} announced")
        self._flush()
        digest = self._sha.digest()
        self._out.write(digest)
        self._pos += len(digest)
        return digest
