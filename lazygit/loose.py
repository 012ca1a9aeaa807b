"""Loose objects on the server (``objects/xx/yyyy``): recent pushes that are not packed yet.

Each is zlib("<type> <size>\\0<content>"); its hash is checked here before anything else
looks at it, and it reaches the local store only inside a pack through ``git index-pack``.
"""

from __future__ import annotations

import hashlib
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, TypeVar

from lazygit.discovery import ObjectSource
from lazygit.errors import CorruptDataError, RemoteError
from lazygit.packwriter import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG, OBJ_TREE
from lazygit.workers import Workers

TYPE_NUMS = {b"commit": OBJ_COMMIT, b"tree": OBJ_TREE, b"blob": OBJ_BLOB, b"tag": OBJ_TAG}


#: Bytes inflated or deflated at once: a loose object of any size is checked in pieces, and
#: one whose deflated form grows past this goes to disk until it is packed.
PIECE_BYTES = 1 << 20
_T = TypeVar("_T")


@dataclass(frozen=True)
class LooseObject:
    oid: bytes
    type_num: int
    content: bytes


@dataclass(frozen=True)
class SpooledObject:
    """A hash-checked loose object, deflated again as a pack entry's data: in memory while
    small, on disk once big (a pushed file of any size is never held whole)."""

    oid: bytes
    type_num: int
    size: int
    deflated: IO[bytes]

    def pieces(self) -> Iterator[bytes]:
        """The deflated data, from the start, in pieces."""
        self.deflated.seek(0)
        while piece := self.deflated.read(PIECE_BYTES):
            yield piece

    def close(self) -> None:
        self.deflated.close()


def inflate_loose(oid: bytes, chunks: Iterable[bytes], sink: Callable[[bytes], None]) -> int:
    """Inflate a loose object file as it arrives and check its header, size and hash; the
    content goes to ``sink`` in pieces of at most PIECE_BYTES.  Returns the type number."""
    inflater = zlib.decompressobj()
    sha = hashlib.sha1()
    head = bytearray()  # the "<type> <size>" header, until its NUL
    type_num = size = -1
    got = 0

    def malformed(what: str = "malformed") -> CorruptDataError:
        return CorruptDataError(f"loose object {oid.hex()} from the server is {what}")

    def take(raw: bytes) -> None:
        nonlocal type_num, size, got
        sha.update(raw)
        if type_num < 0:
            head.extend(raw)
            nul = head.find(b"\0")
            if nul < 0:
                if len(head) > 64:
                    raise malformed()
                return
            kind, _, digits = bytes(head[:nul]).partition(b" ")
            # int() refuses over 4,300 digits
            if kind not in TYPE_NUMS or not digits.isdigit() or len(digits) > 20:
                raise malformed()
            type_num, size = TYPE_NUMS[kind], int(digits)
            raw = bytes(head[nul + 1 :])
        got += len(raw)
        if got > size:
            raise malformed()
        if raw:
            sink(raw)

    try:
        for chunk in chunks:
            data = chunk
            while data and not inflater.eof:  # bounded output: a small file may inflate a lot
                take(inflater.decompress(data, PIECE_BYTES))
                data = inflater.unconsumed_tail
        take(inflater.flush())
    except zlib.error:
        raise malformed("not zlib data") from None
    if not inflater.eof:
        raise malformed("not zlib data")
    if type_num < 0 or got != size:
        raise malformed()
    if sha.digest() != oid:
        raise CorruptDataError(f"loose object {oid.hex()} from the server has the wrong content")
    return type_num


def decode_loose(oid: bytes, data: bytes | Iterable[bytes]) -> LooseObject:
    """Inflate and hash-check a loose object file (given whole or in pieces)."""
    parts: list[bytes] = []
    type_num = inflate_loose(oid, [data] if isinstance(data, bytes) else data, parts.append)
    return LooseObject(oid, type_num, b"".join(parts))


def spool_loose(oid: bytes, chunks: Iterable[bytes], tmp_dir: Path) -> SpooledObject:
    """Hash-check a loose object file as it arrives and deflate its content again for a
    pack, in memory or, past PIECE_BYTES, in a temporary file under ``tmp_dir``."""
    out = tempfile.SpooledTemporaryFile(max_size=PIECE_BYTES, dir=tmp_dir)  # noqa: SIM115
    try:
        deflater = zlib.compressobj()
        size = 0

        def sink(raw: bytes) -> None:
            nonlocal size
            size += len(raw)
            out.write(deflater.compress(raw))

        type_num = inflate_loose(oid, chunks, sink)
        out.write(deflater.flush())
    except BaseException:
        out.close()
        raise
    return SpooledObject(oid, type_num, size, out)


def links(obj: LooseObject) -> list[tuple[bytes, bool]]:
    """Objects a commit, tree or tag names: (oid, is_metadata) — blobs are not metadata."""
    from dulwich.objects import Commit, Tag, Tree

    out: list[tuple[bytes, bool]] = []
    if obj.type_num == OBJ_COMMIT:
        c = Commit.from_raw_string(OBJ_COMMIT, obj.content)
        out.append((bytes.fromhex(c.tree.decode()), True))
        out += [(bytes.fromhex(p.decode()), True) for p in c.parents]
    elif obj.type_num == OBJ_TAG:
        t = Tag.from_raw_string(OBJ_TAG, obj.content)
        kind, target = t.object
        out.append((bytes.fromhex(target.decode()), kind.type_num != OBJ_BLOB))
    elif obj.type_num == OBJ_TREE:
        tree = Tree.from_raw_string(OBJ_TREE, obj.content)
        for entry in tree.iteritems():
            if entry.mode == 0o160000:
                continue  # a submodule commit lives in another repository
            out.append((bytes.fromhex(entry.sha.decode()), entry.mode == 0o040000))
    return out


def fetch_loose(
    sources: Sequence[ObjectSource],
    oids: Iterable[bytes],
    *,
    workers: int,
    absent: list[bytes] | None = None,
) -> list[LooseObject]:
    """Fetch loose objects concurrently, their content in memory (commits, trees, tags).

    An object the server lacks raises RemoteError naming it -- or, when the caller passes an
    ``absent`` list, is added to it, so one unknown id does not fail a whole batch.
    """
    return _fetch_each(sources, oids, workers, absent, lambda oid: partial(decode_loose, oid))


def fetch_loose_spooled(
    sources: Sequence[ObjectSource],
    oids: Iterable[bytes],
    tmp_dir: Path,
    *,
    workers: int,
    absent: list[bytes] | None = None,
) -> list[SpooledObject]:
    """Fetch loose objects concurrently, streamed (blobs of any size), ready to be packed;
    the caller closes them.  A missing object as in fetch_loose."""
    return _fetch_each(
        sources, oids, workers, absent, lambda oid: partial(spool_loose, oid, tmp_dir=tmp_dir)
    )


def _fetch_each(
    sources: Sequence[ObjectSource],
    oids: Iterable[bytes],
    workers: int,
    absent: list[bytes] | None,
    reader: Callable[[bytes], Callable[[Iterator[bytes]], _T]],
) -> list[_T]:
    def one(oid: bytes) -> _T | None:
        for source in sources:
            got = source.remote.get_with(source.loose_path(oid), reader(oid), missing_ok=True)
            if got is not None:
                return got
        if absent is None:
            raise RemoteError(f"object {oid.hex()} is not on the server (neither packed nor loose)")
        absent.append(oid)
        return None

    todo = list(dict.fromkeys(oids))
    if len(todo) <= 1:
        found = [one(o) for o in todo]
    else:
        with Workers(min(workers, len(todo)), "lazygit-loose") as pool:
            found = pool.map(one, todo)
    return [o for o in found if o is not None]


def walk_loose_metadata(
    roots: Iterable[bytes],
    is_packed: Callable[[bytes], bool],
    sources: Sequence[ObjectSource],
    *,
    workers: int,
) -> list[LooseObject]:
    """Commits, trees and tags reachable from ``roots`` that sit loose on the server.

    The walk stops at packed objects: a pushed pack is complete together with what the server
    held before it, so everything behind a packed object is packed too.  A root that is a
    blob (a ref may name one) is kept too.
    """
    found: dict[bytes, LooseObject] = {}
    named = dict.fromkeys(roots)
    frontier = [o for o in named if not is_packed(o)]
    while frontier:
        level: list[LooseObject] = fetch_loose(sources, frontier, workers=workers)
        nxt: list[bytes] = []
        for obj in level:
            found[obj.oid] = obj
        for obj in level:
            for oid, is_meta in links(obj):
                if is_meta and oid not in found and not is_packed(oid):
                    nxt.append(oid)
        frontier = list(dict.fromkeys(nxt))
    return [o for o in found.values() if o.type_num != OBJ_BLOB or o.oid in named]
