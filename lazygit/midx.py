"""The server's multi-pack-index and its bitmap: the object types of packs that have no
.bitmap of their own.

``git repack --write-midx -b`` and ``git multi-pack-index write --bitmap`` write a bitmap
for a multi-pack-index (MIDX) instead of one per pack. Its four type bitmaps are read as a
pack's are (packmeta.py); bit ``k`` is the ``k``-th object in the MIDX's *pseudo-pack
order*: the preferred pack's objects first, then every other pack's in pack-int-id order
(the packs' names sorted), each pack's in offset order. So when no object is in two of its
packs, each pack owns one slice of the bits, in its own offset order, as if the pack had a
bitmap of its own. That is all lazygit needs of a MIDX (gitformat-pack(5)):

- the header and chunk table (a ranged GET of its head), the PNAM chunk (which packs it
  covers), OIDF (its object count: equal to the packs' total when no object is in two),
- the checksum in its trailer, which names ``multi-pack-index-<checksum>.bitmap``,
- the first entry of its reverse index (the RIDX chunk, or entry 0 of
  ``multi-pack-index-<checksum>.rev`` from git before 2.35): the MIDX position, in oid order,
  of the first object in pseudo-pack order, which tells the preferred pack.

A MIDX with duplicate objects, a base MIDX (incremental, git 2.47+), SHA-256, or any
mismatch is not used: its packs are then scanned as packs without a bitmap are.

Standard library only (the daemon loads the layout at start).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

from lazygit.errors import CorruptDataError
from lazygit.packmeta import PackTypes, Run, parse_bitmap_types

MIDX_FILE = "multi-pack-index"
#: A first read of the MIDX: header, chunk table, and for up to ~50 packs PNAM and OIDF.
HEAD_GUESS = 8 * 1024

_MAGIC = b"MIDX"
_HEADER_LEN = 12
_HASH_LEN = 20
_REV_HEADER_LEN = 12  # a .rev file: "RIDX", version, hash id; then the entries


class _Pack(Protocol):
    """What the layout needs of a server pack (packmeta.ServerPack)."""

    name: str

    def __len__(self) -> int: ...
    def oid_at_position(self, pos: int) -> bytes: ...
    def rank(self, oid: bytes) -> int: ...


@dataclass(frozen=True)
class MidxHead:
    """A MIDX's header and chunk table: where its chunks are."""

    size: int  # of the whole file
    packs: int
    chunks: dict[bytes, tuple[int, int]]  # id -> [start, end)

    @property
    def pnam(self) -> tuple[int, int]:
        return self.chunks[b"PNAM"]

    @property
    def count_at(self) -> int:
        """Where the object count is: the last OIDF fan-out entry."""
        return self.chunks[b"OIDF"][0] + 255 * 4

    @property
    def ridx_at(self) -> int | None:
        """Where the reverse index's first entry is (None: in a .rev file, older git)."""
        span = self.chunks.get(b"RIDX")
        return None if span is None else span[0]

    @property
    def trailer_at(self) -> int:
        return self.size - _HASH_LEN


def parse_head(head: bytes, size: int) -> MidxHead | None:
    """The header and chunk table from the first bytes of a MIDX of ``size`` bytes; None for
    one lazygit does not use (another hash, a base MIDX, a chunk missing). CorruptDataError
    when it is not a MIDX or its table is inconsistent."""
    if len(head) < _HEADER_LEN or head[:4] != _MAGIC:
        raise CorruptDataError("objects/pack/multi-pack-index is not a multi-pack-index")
    version, hash_version, n_chunks, n_base, n_packs = struct.unpack_from(">BBBBI", head, 4)
    if version != 1 or hash_version != 1 or n_base != 0:
        return None
    table_end = _HEADER_LEN + 12 * (n_chunks + 1)
    if len(head) < table_end:
        raise CorruptDataError("the multi-pack-index's chunk table is truncated")
    entries = [struct.unpack_from(">4sQ", head, _HEADER_LEN + 12 * i) for i in range(n_chunks + 1)]
    chunks: dict[bytes, tuple[int, int]] = {}
    for (cid, start), (_next, end) in pairwise(entries):
        if not table_end <= start <= end <= size - _HASH_LEN:
            raise CorruptDataError("the multi-pack-index's chunk table is inconsistent")
        chunks[cid] = (start, end)
    if b"PNAM" not in chunks or b"OIDF" not in chunks:
        return None
    if chunks[b"OIDF"][1] - chunks[b"OIDF"][0] != 256 * 4:
        raise CorruptDataError("the multi-pack-index's fan-out table has the wrong size")
    return MidxHead(size, n_packs, chunks)


def parse_pack_names(pnam: bytes, n_packs: int) -> list[str]:
    """The packs a MIDX covers (their names without ``.idx``, in pack-int-id order)."""
    names = [n.decode("ascii", "replace") for n in pnam.split(b"\0") if n]
    if len(names) != n_packs or names != sorted(names):
        raise CorruptDataError("the multi-pack-index's pack names do not match its header")
    return [n.removesuffix(".idx").removesuffix(".pack") for n in names]


#: The bytes of a ``multi-pack-index-<checksum>.rev`` file up to its first entry.
REV_HEAD_LEN = _REV_HEADER_LEN + 4

Span = tuple[int, int]


@dataclass(frozen=True)
class MidxFacts:
    """What lazygit reads of a MIDX beyond its head."""

    names: list[str]  # the packs it covers, in pack-int-id order
    count: int  # its objects
    checksum: bytes  # names its bitmap and .rev
    first: int | None  # the first reverse-index entry; None: in the .rev file (git < 2.35)

    @property
    def file_stem(self) -> str:
        """``multi-pack-index-<checksum>``: its .bitmap and .rev are named so."""
        return f"{MIDX_FILE}-{self.checksum.hex()}"


def read_facts(head: MidxHead, read: Callable[[list[Span]], dict[Span, bytes]]) -> MidxFacts:
    """The pack names, object count, checksum and first reverse-index entry, asked of
    ``read`` at once ([start, end) spans of the file -> their bytes): one round trip."""
    names_at, count_at = head.pnam, (head.count_at, head.count_at + 4)
    ridx_at = None if head.ridx_at is None else (head.ridx_at, head.ridx_at + 4)
    trailer_at = (head.trailer_at, head.size)
    wanted = [names_at, count_at, trailer_at]
    if ridx_at is not None and head.packs > 1:
        wanted.append(ridx_at)
    got = read(sorted(wanted))
    (count,) = struct.unpack(">I", got[count_at])
    first: int | None = 0
    if head.packs > 1:
        first = None if ridx_at is None else struct.unpack(">I", got[ridx_at])[0]
    names = parse_pack_names(got[names_at], head.packs)
    return MidxFacts(names, count, got[trailer_at], first)


def first_from_rev(rev_head: bytes | None) -> int | None:
    """The first entry of a ``.rev`` file from its first REV_HEAD_LEN bytes (None: short)."""
    if rev_head is None or len(rev_head) < REV_HEAD_LEN:
        return None
    return struct.unpack_from(">I", rev_head, _REV_HEADER_LEN)[0]


def pseudo_pack_order(
    packs: list[_Pack], object_count: int, first_position: int
) -> list[_Pack] | None:
    """The MIDX's packs (in pack-int-id order) in pseudo-pack order: the preferred pack
    first. ``first_position`` is the MIDX position (oid order) of the first object in
    pseudo-pack order. None when the packs hold duplicates or no pack starts there."""
    if sum(len(p) for p in packs) != object_count:
        return None  # an object in two packs: the slices are not whole packs
    if len(packs) == 1:
        return list(packs)
    preferred = None
    for p in packs:
        if not len(p):
            continue
        first = p.oid_at_position(0)
        if sum(q.rank(first) for q in packs) == first_position:
            preferred = p
            break
    if preferred is None:
        return None
    return [preferred, *(p for p in packs if p is not preferred)]


def _clip(runs: list[Run], start: int, end: int) -> list[Run]:
    out: list[Run] = []
    for a, b in runs:
        lo, hi = max(a, start), min(b, end)
        if lo < hi:
            out.append((lo - start, hi - start))
    return out


def split_types(types: PackTypes, counts: list[int]) -> list[PackTypes]:
    """The MIDX bitmap's types cut into one PackTypes per pack, of ``counts`` objects each,
    in pseudo-pack order."""
    out: list[PackTypes] = []
    start = 0
    for n in counts:
        end = start + n
        out.append(
            PackTypes(
                _clip(types.commits, start, end),
                _clip(types.trees, start, end),
                _clip(types.blobs, start, end),
                _clip(types.tags, start, end),
            )
        )
        start = end
    return out


def pack_types(
    packs: list[_Pack], count: int, first: int, checksum: bytes, bitmap_head: bytes
) -> dict[str, PackTypes] | None:
    """Each covered pack's types from the MIDX bitmap (its header and type bitmaps), by
    pack name; None when the bitmap does not fit these packs (duplicates, a bitmap of
    another MIDX, damage): they are then scanned as packs without a bitmap."""
    order = pseudo_pack_order(packs, count, first)
    if order is None:
        return None
    try:
        types = parse_bitmap_types(bitmap_head, n_objects=count, pack_checksum=checksum)
    except CorruptDataError:
        return None
    cut = split_types(types, [len(p) for p in order])
    return {p.name: t for p, t in zip(order, cut, strict=True)}
