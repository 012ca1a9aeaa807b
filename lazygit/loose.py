"""Loose objects on the server (``objects/xx/yyyy``): recent pushes that are not packed yet.

Each is zlib("<type> <size>\\0<content>"); its hash is checked here before anything else
looks at it, and it reaches the local store only inside a pack through ``git index-pack``.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lazygit.discovery import ObjectSource
from lazygit.errors import CorruptDataError, RemoteError
from lazygit.packwriter import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG, OBJ_TREE

TYPE_NUMS = {b"commit": OBJ_COMMIT, b"tree": OBJ_TREE, b"blob": OBJ_BLOB, b"tag": OBJ_TAG}


@dataclass(frozen=True)
class LooseObject:
    oid: bytes
    type_num: int
    content: bytes


def decode_loose(oid: bytes, data: bytes) -> LooseObject:
    """Inflate and hash-check a loose object file."""
    try:
        raw = zlib.decompress(data)
    except zlib.error:
        raise CorruptDataError(
            f"loose object {oid.hex()} from the server is not zlib data"
        ) from None
    header, nul, content = raw.partition(b"\0")
    kind, _, size = header.partition(b" ")
    sized = size.isdigit() and len(size) <= 20  # int() refuses over 4,300 digits
    if not nul or kind not in TYPE_NUMS or not sized or int(size) != len(content):
        raise CorruptDataError(f"loose object {oid.hex()} from the server is malformed")
    if hashlib.sha1(raw).digest() != oid:
        raise CorruptDataError(f"loose object {oid.hex()} from the server has the wrong content")
    return LooseObject(oid, TYPE_NUMS[kind], content)


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
    """Fetch loose objects concurrently.

    An object the server lacks raises RemoteError naming it -- or, when the caller passes an
    ``absent`` list, is added to it, so one unknown id does not fail a whole batch.
    """

    def one(oid: bytes) -> LooseObject | None:
        for source in sources:
            data = source.remote.get_bytes(source.loose_path(oid), missing_ok=True)
            if data is not None:
                return decode_loose(oid, data)
        if absent is None:
            raise RemoteError(f"object {oid.hex()} is not on the server (neither packed nor loose)")
        absent.append(oid)
        return None

    todo = list(dict.fromkeys(oids))
    if len(todo) <= 1:
        found = [one(o) for o in todo]
    else:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            found = list(pool.map(one, todo))
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
    held before it, so everything behind a packed object is packed too.
    """
    found: dict[bytes, LooseObject] = {}
    frontier = [o for o in dict.fromkeys(roots) if not is_packed(o)]
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
    return [o for o in found.values() if o.type_num != OBJ_BLOB]
