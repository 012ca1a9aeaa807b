"""Loose objects on the server (``objects/xx/yyyy``): recent pushes that are not packed yet.

Each is zlib("<type> <size>\\0<content>"); its hash is checked here before anything else
looks at it, and it reaches the local store only inside a pack through ``git index-pack``.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
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
    """Objects a commit, tree or tag names: (oid, is_metadata) — blobs are not metadata.
    A commit's tree comes first, then its parents."""
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


def fetch_loose_spooled(
    sources: Sequence[ObjectSource],
    oids: Iterable[bytes],
    tmp_dir: Path,
    *,
    workers: int,
    absent: list[bytes] | None = None,
) -> list[SpooledObject]:
    """Fetch loose objects concurrently, streamed (blobs of any size), ready to be packed;
    the caller closes them.

    An object the server lacks raises RemoteError naming it -- or, when the caller passes an
    ``absent`` list, is added to it, so one unknown id does not fail a whole batch.
    """
    one = partial(
        _fetch_one,
        sources,
        reader=lambda oid: partial(spool_loose, oid, tmp_dir=tmp_dir),
        absent=absent,
    )
    todo = list(dict.fromkeys(oids))
    if len(todo) <= 1:
        found = [one(o) for o in todo]
    else:
        with Workers(min(workers, len(todo)), "lazygit-loose") as pool:
            found = pool.map(one, todo)
    return [o for o in found if o is not None]


@dataclass
class LooseWalk:
    """What `walk_loose_metadata` found, and the longest chain of objects it had to follow:
    requests in a row, each waiting for the one before (a round trip each)."""

    objects: list[LooseObject]
    round_trips: int


def walk_loose_metadata(
    roots: Iterable[bytes],
    is_packed: Callable[[bytes], bool | None],
    sources: Sequence[ObjectSource],
    *,
    workers: int,
    absent: list[bytes] | None = None,
) -> LooseWalk:
    """Commits, trees and tags reachable from ``roots`` that sit loose on the server.

    The walk stops at packed objects: a pushed pack is complete together with what the server
    held before it, so everything behind a packed object is packed too.  A root that is a
    blob (a ref may name one) is kept too.  ``is_packed`` is asked about each object just
    before it would be requested; None means not known yet (the pack indexes are loading):
    the object waits, and is asked about again as the walk goes on.  An object the server
    does not hold loose raises RemoteError, or is added to ``absent`` when the caller passes
    that list (the caller then looks for it in the packs).

    Up to ``workers`` objects are asked for at once, each as soon as an object naming it has
    arrived (no level waits for the slowest of the one before), commits and tags before
    trees: a chain of loose commits costs a round trip per commit whatever else there is, so
    it goes first, and the trees fill the other requests.
    """
    found: dict[bytes, LooseObject] = {}
    named = dict.fromkeys(roots)
    depth: dict[bytes, int] = {}  # requests in a row up to this object's
    asked: list[int] = [0]  # the depths of the objects requested
    first: deque[bytes] = deque()  # commits and tags (and the roots), in the order named
    then: deque[bytes] = deque()  # trees
    waiting: list[tuple[bytes, deque[bytes]]] = []  # is_packed did not know yet

    def want(oid: bytes, queue: deque[bytes], level: int) -> None:
        if oid not in depth:
            depth[oid] = level
            queue.append(oid)

    for oid in named:
        want(oid, first, 1)
    get = partial(_fetch_one, sources, reader=lambda oid: partial(decode_loose, oid), absent=absent)
    workers = max(1, workers)  # lazygit.looseRequests 0 asks one at a time
    with Workers(workers, "lazygit-loose") as pool:
        running: set[Future[LooseObject | None]] = set()
        while first or then or running or waiting:
            if waiting and is_packed(waiting[0][0]) is not None:  # known now: ask again
                for oid, queue in reversed(waiting):
                    queue.appendleft(oid)
                waiting.clear()
            while (first or then) and len(running) < workers:
                queue = first if first else then
                oid = queue.popleft()
                packed = is_packed(oid)
                if packed is None:
                    waiting.append((oid, queue))
                elif not packed:
                    asked.append(depth[oid])
                    running.add(pool.submit(get, oid))
            if not running:
                if waiting:
                    time.sleep(WAIT_POLL_SECONDS)
                continue
            timeout = WAIT_POLL_SECONDS if waiting else None
            done, running = wait(running, timeout, return_when=FIRST_COMPLETED)
            for fut in done:
                obj = fut.result()
                if obj is None:
                    continue  # not loose: in ``absent``
                found[obj.oid] = obj
                for i, (oid, is_meta) in enumerate(links(obj)):
                    if is_meta:
                        tree = obj.type_num == OBJ_TREE or (obj.type_num == OBJ_COMMIT and i == 0)
                        want(oid, then if tree else first, depth[obj.oid] + 1)
    objects = [o for o in found.values() if o.type_num != OBJ_BLOB or o.oid in named]
    return LooseWalk(objects, max(asked))


#: How often a walk with objects waiting for ``is_packed`` to know asks it again.
WAIT_POLL_SECONDS = 0.005


def _fetch_one(
    sources: Sequence[ObjectSource],
    oid: bytes,
    reader: Callable[[bytes], Callable[[Iterator[bytes]], _T]],
    absent: list[bytes] | None = None,
) -> _T | None:
    """One loose object from the first source that has it; a missing one raises RemoteError,
    or is added to ``absent`` when the caller passes that list."""
    for source in sources:
        got = source.remote.get_with(source.loose_path(oid), reader(oid), missing_ok=True)
        if got is not None:
            return got
    if absent is None:
        raise not_on_server(oid)
    absent.append(oid)
    return None


def not_on_server(oid: bytes) -> RemoteError:
    """The error for an object that the server holds neither packed nor loose."""
    return RemoteError(f"object {oid.hex()} is not on the server (neither packed nor loose)")
