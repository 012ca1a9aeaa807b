"""The fetch engine: object ids -> where they live -> byte ranges -> one promisor pack.

Two jobs share it.  :func:`fetch_metadata` copies every commit, tree and tag of the server
(the lazy clone).  :class:`FetchEngine` fetches any set of objects, usually blobs: it reads the
wanted entries' ranges, then the missing delta bases breadth-first (every base of one depth in
one round, coalesced), spools the raw entries to disk, and writes them as one pack through
``git index-pack`` (a big batch as two, indexed at once).  Nothing reaches the object store
unchecked and no pack is held in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import tempfile
import threading
import time
from bisect import bisect_left
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from lazygit.blockcache import Reader, direct_reader
from lazygit.catalog import Catalog, PackHandle
from lazygit.config import Settings
from lazygit.errors import CorruptDataError, HTTPStatusError, PackChangedError, RemoteError
from lazygit.localrepo import LocalObjects, LocalRepo
from lazygit.loose import (
    LooseObject,
    LooseWalk,
    SpooledObject,
    fetch_loose_spooled,
    not_on_server,
    walk_loose_metadata,
)
from lazygit.packmeta import PackTypes, Run
from lazygit.packwriter import (
    OBJ_BLOB,
    OBJ_COMMIT,
    OBJ_TAG,
    OBJ_TREE,
    OFS_DELTA,
    REF_DELTA,
    PackWriter,
    parse_entry_header,
)
from lazygit.progress import QUIET, Progress, Task
from lazygit.ranges import Extent, coalesce, split
from lazygit.workers import Workers

PROMISOR_MESSAGE = "lazygit"
#: A batch of at least this many objects is written as two packs, indexed at once by two
#: `git index-pack` processes: index-pack spends ~55 us per object, most of it in one
#: thread, and a 7,403-object batch took 0.63-0.69 s to index as one pack, 0.44-0.49 s
#: as two in 3 of 4 runs (0.73 s in one; 2 cores).
SPLIT_BATCH_OBJECTS = 2000
#: Loose objects a clone's walk asks for before the pack indexes are loaded, not knowing
#: whether the server holds them packed (see LooseMetadataWalk).
EARLY_LOOSE_REQUESTS = 16


@dataclass
class FetchStats:
    """What one fetch did."""

    objects: int = 0
    bytes: int = 0
    requests: int = 0
    rounds: int = 0
    seconds: float = 0.0
    packs: list[str] = field(default_factory=list)
    #: Wanted objects the server does not have (the caller decides whether that is an error).
    absent: list[bytes] = field(default_factory=list)
    #: The server's packs changed since the clone (a repack): the pack list was read again.
    refreshed: bool = False

    def add(self, other: FetchStats) -> None:
        self.objects += other.objects
        self.bytes += other.bytes
        self.requests += other.requests
        self.rounds += other.rounds
        self.seconds += other.seconds
        self.packs += other.packs


class _Meter:
    """Bytes and requests the catalog's remotes served during one operation."""

    def __init__(self, catalog: Catalog) -> None:
        self.remotes = list(catalog.remotes())
        self.t0 = time.monotonic()
        self.b0 = sum(r.bytes_read for r in self.remotes)
        self.r0 = sum(r.requests for r in self.remotes)

    def stats(self, objects: int, rounds: int, packs: list[str]) -> FetchStats:
        return FetchStats(
            objects=objects,
            bytes=sum(r.bytes_read for r in self.remotes) - self.b0,
            requests=sum(r.requests for r in self.remotes) - self.r0,
            rounds=rounds,
            seconds=time.monotonic() - self.t0,
            packs=packs,
        )


def _slice(ext: Extent, data: bytes, entry: Extent) -> bytes:
    return data[entry.start - ext.start : entry.end - ext.start]


def _each_entry(
    stream: Iterable[tuple[Extent, bytes]], wants: Sequence[Extent]
) -> Iterator[tuple[Extent, bytes]]:
    """Each of ``wants`` (in pack order, each inside one of the extents read) with its bytes,
    sliced from ``stream``'s reads as they arrive."""
    i = 0
    for ext, data in stream:
        while i < len(wants) and wants[i].start < ext.end:
            yield wants[i], _slice(ext, data, wants[i])
            i += 1


def read_whole_packs(
    handles: Sequence[PackHandle], repo: LocalRepo, progress: Progress = QUIET, workers: int = 4
) -> FetchStats:
    """Small server packs without a bitmap, read whole into one promisor pack.

    Their types are unknown until every entry header is read, which costs as much as reading
    them all.  One pack for all of them, not one each: a server with many pushes since its
    last gc has as many small packs (30 pushes made 30 local packs, by 30 index-pack runs).
    An object several of them hold (the bases a push's ``--fix-thin`` appended) is written
    once: git refuses a pack that holds an object twice.  Each pack is spooled to a file and
    copied from there in pieces of at most HOLD_BYTES: however large lazygit.smallPackBytes
    is set, none is held whole.  Up to ``workers`` packs are read at once, ahead of the one
    being copied (one after another, 30 pushes cost 30 round trips in a row).
    """
    if not handles:
        return FetchStats()
    seen: set[bytes] = set()
    keep: list[list[Run]] = []  # per pack, the position runs of objects not written before
    for h in handles:
        runs: list[Run] = []
        for p in range(len(h.pack)):
            oid = h.pack.oid_at_position(p)
            if oid in seen:
                continue
            seen.add(oid)
            if runs and runs[-1][1] == p:
                runs[-1] = (runs[-1][0], p + 1)
            else:
                runs.append((p, p + 1))
        keep.append(runs)
    task = progress.task("whole packs", total=sum(h.info.size for h in handles))
    tmp_dir = repo.state_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)

    def spooled(h: PackHandle) -> IO[bytes]:
        spool = tempfile.TemporaryFile(dir=tmp_dir, prefix="whole-")  # noqa: SIM115 (returned open)
        try:
            _spool_whole_pack(h, spool, task)
        except BaseException:
            spool.close()
            raise
        return spool

    def write(out: IO[bytes]) -> None:
        writer = PackWriter(out, len(seen), _locator(handles) if len(handles) > 1 else None)
        ahead: deque[Future[IO[bytes]]] = deque()
        todo = iter(handles)

        def read_ahead(n: int) -> None:
            # On the remote's daemon threads: Ctrl-C does not wait for a stalled read.
            ahead.extend(h.source.remote.submit(spooled, h) for h in itertools.islice(todo, n))

        try:
            read_ahead(max(1, workers))
            for h, runs in zip(handles, keep, strict=True):
                with ahead.popleft().result() as spool:
                    read_ahead(1)
                    for a, b in runs:
                        _copy_positions(writer, h, spool.fileno(), a, b)
        except BaseException:
            for f in ahead:  # read ahead, not copied
                f.cancel()
                f.add_done_callback(lambda f: f.cancelled() or f.exception() or f.result().close())
            raise
        writer.finish()

    name = repo.index_pack(write, promisor=PROMISOR_MESSAGE)
    task.done()
    return FetchStats(
        objects=len(seen),
        bytes=sum(h.info.size for h in handles),
        requests=len(handles),
        packs=[name],
    )


def _locator(handles: Sequence[PackHandle]) -> Callable[[bytes], Iterator[tuple[str, int]]]:
    """Where an object sits in ``handles``, for a `PackWriter` copying entries of several
    server packs into one: a delta may name a base copied from another of them, by id."""

    def locate(oid: bytes) -> Iterator[tuple[str, int]]:
        for h in handles:
            off = h.pack.offset_of(oid)
            if off is not None:
                yield h.name, off

    return locate


def _spool_whole_pack(h: PackHandle, spool: IO[bytes], task: Task) -> None:
    """All of a small server pack into ``spool``, checked against its .idx (object count,
    checksum) so that its entries sit where the .idx says."""
    sha = hashlib.sha1()
    head = bytearray()
    tail = b""  # the last 20 bytes so far: the trailer once the file has ended
    size = 0
    for chunk in h.source.remote.iter_file(h.info):
        spool.write(chunk)
        task.advance(len(chunk))
        size += len(chunk)
        if len(head) < 12:
            head += chunk[: 12 - len(head)]
        joined = tail + chunk
        sha.update(joined[:-20])
        tail = joined[-20:]
    spool.flush()
    if (
        size != h.info.size
        or head[:4] != b"PACK"
        or int.from_bytes(head[8:12], "big") != len(h.pack)
        or tail != h.pack.checksum
        or sha.digest() != h.pack.checksum
    ):
        raise CorruptDataError(f"{h.name}: the pack the server sent does not match its .idx")


def _copy_positions(writer: PackWriter, h: PackHandle, fd: int, a: int, b: int) -> None:
    """The entries at pack positions [a, b) of ``h``, spooled whole in ``fd``: runs of up to
    HOLD_BYTES as slices, a bigger entry alone in pieces."""
    pack = h.pack
    while a < b:
        start = pack.offset_at_position(a)
        stop = a + 1
        while stop < b and pack.end_of_position(stop + 1) - start <= HOLD_BYTES:
            stop += 1
        end = pack.end_of_position(stop)
        if end - start <= HOLD_BYTES or stop - a > 1:
            data = os.pread(fd, end - start, start)
            if len(data) != end - start:
                raise CorruptDataError(f"{h.name}: the spooled pack is shorter than its .idx")
            writer.add_run(h.name, data, pack.offsets_of_positions(a, stop), pack.oid_at)
        else:  # one entry bigger than HOLD_BYTES
            head = os.pread(fd, HOLD_BYTES, start)
            rest = _pread_pieces(fd, start + len(head), end - start - len(head))
            writer.add_entry(h.name, start, head, pack.oid_at, pack.oid_at(start), rest)
        a = stop


#: A pack without a bitmap larger than this gets a warning naming the server-side fix.
WARN_NO_BITMAP_BYTES = 16 * 1024 * 1024
#: A walk of the server's loose objects this many requests deep gets a warning naming the
#: server-side fix (the benchmark repository's five loose commits take 9).
WARN_LOOSE_ROUND_TRIPS = 16
#: A header scan reads this much of each entry: type, size and delta base always fit.
HEADER_BYTES = 32
#: Entries up to this size are read whole by a header scan (most trees and commits are).
WHOLE_ENTRY_BYTES = 256

_Spooled = dict[tuple[str, int], tuple[int, int]]
#: (server pack number, entry offset) -> (spool position, length)
_Places = dict[tuple[int, int], tuple[int, int]]
#: A spooled entry is copied into the pack in pieces of at most this many bytes: a big blob
#: is never held whole.
HOLD_BYTES = 1 << 20


def _pread_pieces(fd: int, pos: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of file ``fd`` from ``pos``, in pieces of at most HOLD_BYTES."""
    end = pos + length
    while pos < end:
        data = os.pread(fd, min(HOLD_BYTES, end - pos), pos)
        if not data:
            raise CorruptDataError("the batch's spool file is shorter than what was written")
        yield data
        pos += len(data)


def _coalesce(extents: list[Extent], settings: Settings) -> list[Extent]:
    return coalesce(extents, min_gap=settings.rangeGap, overhead=settings.rangeOverhead)


def scan_types(
    h: PackHandle,
    catalog: Catalog,
    settings: Settings,
    spool: IO[bytes],
    kept: _Spooled,
    progress: Progress = QUIET,
    reader: Reader = direct_reader,
) -> PackTypes:
    """Learn the object types of a pack without a bitmap by reading its entry headers.

    Each entry's first bytes give its type or its delta base; small entries are read whole
    (and kept in ``spool``) since most commits and trees are small.  This reads a fraction of
    a pack that is mostly blobs, where reading it whole would read every blob.
    """
    pack = h.pack
    n = len(pack)
    wants = []
    for pos in range(n):
        e = pack.extent_at(pack.offset_at_position(pos))
        wants.append(
            e if e.length <= WHOLE_ENTRY_BYTES else Extent(e.start, e.start + HEADER_BYTES)
        )
    merged = _coalesce(wants, settings)
    task = progress.task("pack headers", total=sum(e.length for e in merged))
    kinds: list[int | tuple[str, object]] = [0] * n
    for pos, (want, raw) in enumerate(_each_entry(reader(h, merged, task.advance), wants)):
        header = parse_entry_header(raw)
        if header.type == OFS_DELTA:
            assert header.base_distance is not None
            kinds[pos] = ("pos", pack.position_of_offset(want.start - header.base_distance))
        elif header.type == REF_DELTA:
            kinds[pos] = ("oid", header.base_oid)
        else:
            kinds[pos] = header.type
        if want.length <= WHOLE_ENTRY_BYTES and want == pack.extent_at(want.start):
            kept[(h.name, want.start)] = (spool.tell(), len(raw))
            spool.write(raw)
    task.done()
    types = _resolve_types(h, catalog, kinds)
    runs: dict[int, list[tuple[int, int]]] = {
        t: [] for t in (OBJ_COMMIT, OBJ_TREE, OBJ_BLOB, OBJ_TAG)
    }
    for p, t in enumerate(types):
        r = runs[t]
        if r and r[-1][1] == p:
            r[-1] = (r[-1][0], p + 1)
        else:
            r.append((p, p + 1))
    return PackTypes(runs[OBJ_COMMIT], runs[OBJ_TREE], runs[OBJ_BLOB], runs[OBJ_TAG])


def _resolve_types(
    h: PackHandle, catalog: Catalog, kinds: list[int | tuple[str, object]]
) -> list[int]:
    """Follow delta bases to a whole object's type (deltas never cross types)."""
    types = [k if isinstance(k, int) else 0 for k in kinds]
    for start in range(len(kinds)):
        chain = []
        p: int | None = start
        t = 0
        while p is not None and not types[p]:
            if p in chain:
                raise CorruptDataError(f"{h.name}: delta cycle at position {p}")
            chain.append(p)
            kind = kinds[p]
            assert isinstance(kind, tuple)
            if kind[0] == "pos":
                p = kind[1]  # type: ignore[assignment]
                continue
            oid = kind[1]
            assert isinstance(oid, bytes)
            off = h.pack.offset_of(oid)
            if off is not None:
                p = h.pack.position_of_offset(off)
                continue
            loc = catalog.locate(oid)
            if loc is None or loc[0].pack.types is None:
                raise CorruptDataError(
                    f"{h.name}: cannot tell the type of delta base {oid.hex()}",
                    "run `git repack -a -d -b && git update-server-info` on the server",
                )
            other = loc[0].pack
            t = other.type_at_position(other.position_of_offset(loc[1]))
            p = None
        if p is not None:
            t = types[p]
        for q in chain:
            types[q] = t
    return types


def _keep_metadata(
    h: PackHandle,
    settings: Settings,
    spool: IO[bytes],
    kept: _Spooled,
    reader: Reader,
    task: Task,
    total: int,
) -> int:
    """Read into ``spool`` the commit, tree and tag entries of ``h`` not kept there yet (a
    header scan keeps only small ones); returns the bytes read.

    Done while the loose objects are walked, so that writing the clone's second pack, which
    waits for the walk, needs no further round trip.
    """
    wants = [e for _p, e in h.pack.metadata_entries() if (h.name, e.start) not in kept]
    merged = _coalesce(wants, settings)
    size = sum(e.length for e in merged)
    task.update(total=total + size)
    for want, raw in _each_entry(reader(h, merged, task.advance), wants):
        kept[(h.name, want.start)] = (spool.tell(), len(raw))
        spool.write(raw)
    return size


@dataclass
class _MetaPlan:
    """What a clone copies from one server pack: whole position ``runs`` (a pack with a
    bitmap, copied slice by slice) or single ``entries``; read as the ``merged`` extents."""

    handle: PackHandle
    runs: list[tuple[int, int]] | None
    entries: list[Extent] | None
    merged: list[Extent]


def _cut_at_entries(extents: list[Extent], h: PackHandle, max_bytes: int) -> list[Extent]:
    """Cut long extents at entry boundaries into reads of about ``max_bytes``, so that the
    bytes held at once stay bounded however long a run of commits and trees is."""
    step = max(1, max_bytes * 3 // 4)
    out = []
    for ext in extents:
        start = ext.start
        while ext.end - start > max_bytes:
            cut = h.pack.entry_at_or_after(start + step)
            if cut >= ext.end:
                break
            out.append(Extent(start, cut))
            start = cut
        out.append(Extent(start, ext.end))
    return out


def _write_runs(
    writer: PackWriter, plan: _MetaPlan, stream: Iterator[tuple[Extent, bytes]]
) -> None:
    """Copy runs of consecutive entries as slices of the extents read (no per-entry copy)."""
    pack = plan.handle.pack
    assert plan.runs is not None
    ext, data = Extent(0, 0), b""
    for a, b in plan.runs:
        offsets = pack.offsets_of_positions(a, b)
        end = pack.end_of_position(b)
        i = 0
        while i < len(offsets):
            while offsets[i] >= ext.end:
                ext, data = next(stream)
            # Extents begin and end at entry boundaries: a run longer than one read spans
            # several of them.
            j = bisect_left(offsets, ext.end, lo=i)
            stop = offsets[j] if j < len(offsets) else end
            if offsets[i] < ext.start or stop > ext.end:
                raise CorruptDataError(f"{plan.handle.name}: entries at {offsets[i]} were not read")
            view = memoryview(data)[offsets[i] - ext.start : stop - ext.start]
            writer.add_run(plan.handle.name, view, offsets[i:j], pack.oid_at)
            i = j


def _write_entries(
    writer: PackWriter,
    plan: _MetaPlan,
    stream: Iterator[tuple[Extent, bytes]],
    kept: _Spooled,
    spool: IO[bytes],
) -> None:
    """Copy single entries: those a header scan kept in ``spool``, the rest as read."""
    h = plan.handle
    assert plan.entries is not None
    ext, data = Extent(0, 0), b""
    for entry in plan.entries:
        spooled = kept.get((h.name, entry.start))
        if spooled is not None:
            spool.seek(spooled[0])
            raw = spool.read(spooled[1])
        else:
            while entry.start >= ext.end:
                ext, data = next(stream)
            raw = _slice(ext, data, entry)
        writer.add_entry(h.name, entry.start, raw, h.pack.oid_at)


def fetch_metadata(
    catalog: Catalog,
    repo: LocalRepo,
    settings: Settings,
    roots: Iterable[bytes],
    progress: Progress = QUIET,
    reader: Reader = direct_reader,
    walk: LooseMetadataWalk | None = None,
) -> FetchStats:
    """Copy every commit, tree and tag the server has (reachable from ``roots`` when loose or
    in a cruft pack), and mark the packs that gave them in ``catalog.meta_done``.

    ``walk``, the walk of the server's loose objects from ``roots``, may have started before
    the pack indexes were loaded (the clone starts it with the refs); else it starts here.

    Packs with a bitmap give their commit/tree/tag entries by byte range.  A small pack
    without one is read whole; a larger one gets a header scan first (with a warning naming
    the server-side fix).  A cruft pack is skipped unless the walk from ``roots`` meets an
    object only it holds (`_walk_metadata`).  The first pack with a bitmap is copied by whole
    runs of entries into its own promisor pack, streamed to index-pack in the background from
    the start: git hashes it while the loose objects are walked and the other packs scanned.
    Those go into a second pack that names no base in the first, so the two are indexed at
    once.
    """
    roots = list(roots)
    if walk is None:
        # The walk of the loose objects (a round trip per commit in a chain of them) starts
        # first and runs alongside every read below until its result is needed.
        with LooseMetadataWalk(roots, catalog, settings, packs_loaded=True) as own:
            stats = _copy_metadata(catalog, repo, settings, own, progress, reader)
    else:
        stats = _copy_metadata(catalog, repo, settings, walk, progress, reader)
    blobs = packed_blobs(roots, catalog)
    if blobs:
        more = FetchEngine(catalog, repo, settings, reader=reader).fetch(blobs, progress)
        if more.absent:
            raise RemoteError(
                f"blob {more.absent[0].hex()}, named by a ref, is not on the server",
                "the server's repository is incomplete: run `git fsck` there",
            )
        stats.add(more)
    return stats


def _copy_metadata(
    catalog: Catalog,
    repo: LocalRepo,
    settings: Settings,
    walked: LooseMetadataWalk,
    progress: Progress,
    reader: Reader,
) -> FetchStats:
    """fetch_metadata's copy of the packs' commits, trees and tags and of the loose ones
    ``walked`` finds."""
    meter = _Meter(catalog)
    packs: list[str] = []
    whole = [
        h for h in catalog.packs if h.pack.types is None and h.info.size <= settings.smallPackBytes
    ]
    packs += read_whole_packs(whole, repo, progress, settings.connections).packs
    rest = [h for h in catalog.packs if h not in whole]
    first = next((h for h in rest if h.pack.types is not None), None)
    if first is not None:
        rest.remove(first)
    task = progress.task("commits and trees", total=None)
    tmp_dir = repo.state_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    background: _Background | None = None
    with tempfile.TemporaryFile(dir=tmp_dir, prefix="spool-") as spool:
        kept: _Spooled = {}
        total = 0
        try:
            if first is not None:
                runs = first.pack.metadata_runs()
                merged = _coalesce(first.pack.extents_of_positions(runs), settings)
                merged = _cut_at_entries(merged, first, int(settings.maxRangeBytes))
                head = _MetaPlan(first, runs, None, merged)
                head_count = sum(b - a for a, b in runs)
                count += head_count
                total = sum(e.length for e in merged)
                task.update(total=total)
                if head_count:
                    background = _Background(
                        lambda read: _write_meta(repo, [head], [], head_count, read, task),
                        reader,
                    )

            def scan(h: PackHandle) -> None:
                if h.info.size > WARN_NO_BITMAP_BYTES:
                    progress.log(
                        f"warning: {h.name} on the server has no bitmap; scanning the "
                        f"headers of its {len(h.pack)} objects (fix on the server: `git "
                        "repack -a -d -b && git update-server-info`, or `lazygit prepare`)"
                    )
                h.pack.types = scan_types(h, catalog, settings, spool, kept, progress, reader)

            # While the loose objects are walked: the header scans, and the reads of the
            # commits and trees the scans did not keep whole.  A cruft pack is scanned after,
            # if the walk met it.
            for h in rest:
                if h.pack.types is None and not h.cruft:
                    scan(h)
            for h in rest:
                if not h.cruft:
                    total += _keep_metadata(h, settings, spool, kept, reader, task, total)
            walk, reached = walked.result()
            loose = walk.objects
            if walk.round_trips >= WARN_LOOSE_ROUND_TRIPS:
                progress.log(
                    f"warning: the server holds {len(loose)} loose objects (recent pushes); "
                    f"finding them took {walk.round_trips} round trips one after another "
                    "(fix on the server: `git repack -a -d -b && git update-server-info`, "
                    "or `lazygit prepare`)"
                )
            rest = [h for h in rest if not h.cruft or h.name in reached]
            for h in rest:
                if h.pack.types is None:
                    scan(h)
            # A pushed pack can repeat objects (the bases index-pack --fix-thin appended on
            # the server): the tail copies each once, but it keeps the copies of objects the
            # head pack holds too.  A server pack's commit, tree and tag deltas name bases of
            # their own type in the same pack, so the tail then names no base in the head
            # and is indexed alongside it instead of after it.
            earlier: list[PackHandle] = []
            plans: list[_MetaPlan] = []
            for h in rest:
                entries = [
                    e
                    for p, e in h.pack.metadata_entries()
                    if not any(
                        q.pack.offset_of(h.pack.oid_at_position(p)) is not None for q in earlier
                    )
                ]
                earlier.append(h)
                to_read = [e for e in entries if (h.name, e.start) not in kept]
                plans.append(_MetaPlan(h, None, entries, _coalesce(to_read, settings)))
            tail_count = len(loose) + sum(len(p.entries or ()) for p in plans)
            count += tail_count
            task.update(total=total + sum(e.length for p in plans for e in p.merged))
            if tail_count:
                tail = _write_meta(repo, plans, loose, tail_count, reader, task, kept, spool)
            if background is not None:
                packs.append(background.result())
            if tail_count:
                packs.append(tail)
        except BaseException:
            if background is not None:
                background.cancel()
            raise
    task.done()
    catalog.meta_done.update(h.name for h in [*whole, *rest] + ([first] if first else []))
    return meter.stats(count + sum(len(h.pack) for h in whole), 1, packs)


def packed_blobs(oids: Iterable[bytes], catalog: Catalog) -> list[bytes]:
    """The objects among ``oids`` that a server pack of known types holds as blobs.

    A ref can name a blob (git.git's junio-gpg-pub tag does, through a tag object), and
    git's partial clone brings such blobs with the refs: `git fsck` fails without them.
    """
    out = []
    for oid in oids:
        loc = catalog.locate(oid)
        if loc is not None and loc[0].pack.types is not None:
            pack = loc[0].pack
            if pack.type_at_position(pack.position_of_offset(loc[1])) == OBJ_BLOB:
                out.append(oid)
    return out


def _walk_metadata(
    roots: Iterable[bytes],
    catalog: Catalog,
    settings: Settings,
    is_local: Callable[[bytes], bool] = lambda oid: False,
    early: LooseMetadataWalk | None = None,
) -> tuple[LooseWalk, set[str]]:
    """The loose commits, trees and tags behind ``roots``, and the cruft packs the walk met.

    The walk stops at local objects and at objects in a server pack.  An object that only a
    cruft pack holds is reachable all the same: git leaves an object it already has where it
    is, so a deleted branch pushed again keeps its commits in the cruft pack.  Such a pack's
    commits and trees are then copied like a pushed pack's; the others are never read.

    With ``early``, the first objects are asked for before the pack indexes are loaded (see
    `LooseMetadataWalk`); those the server does not hold loose are looked for in the packs
    once they are.
    """
    reached: set[str] = set()

    def stop(oid: bytes) -> bool:
        loc = catalog.locate(oid)  # cruft packs last
        if loc is not None and not loc[0].cruft:
            return True
        if is_local(oid):
            return True
        if loc is not None:
            reached.add(loc[0].name)
            return True
        return False

    def is_packed(oid: bytes) -> bool | None:
        if early is not None and not early.packs_known():
            return False if early.ask_unknown(oid) else None  # None: asked again later
        return stop(oid)

    absent: list[bytes] | None = None if early is None else []
    walk = walk_loose_metadata(
        roots, is_packed, catalog.sources, workers=settings.looseRequests, absent=absent
    )
    if absent:
        assert early is not None
        early.wait_for_packs()
        for oid in absent:
            if not stop(oid):
                raise not_on_server(oid)
    return walk, reached


class LooseMetadataWalk:
    """The walk of the server's loose commits, trees and tags (`_walk_metadata`), in a thread
    of its own, started before the pack indexes are loaded.

    Over a distant link the walk is the clone's longest chain of round trips (one per loose
    commit in a row), and loading the pack indexes takes two or three (the pack list and
    .idx files, then the probes of a pack without a bitmap).  Until `packs_loaded`, the walk
    asks for up to ``EARLY_LOOSE_REQUESTS`` objects not knowing whether they are packed: the
    ``eager`` roots (the clone's are HEAD's commit and a few branches': pushes land there),
    and what the loose objects found name (a pushed chain of commits); the other roots
    (tags, mostly on packed history) wait.  An object the server does not hold loose answers
    404, and is looked for in the packs once they are loaded.
    """

    def __init__(
        self,
        roots: Iterable[bytes],
        catalog: Catalog,
        settings: Settings,
        *,
        eager: Iterable[bytes] = (),
        packs_loaded: bool = False,
    ) -> None:
        """``eager``: the roots worth asking for before the pack indexes are in."""
        roots = list(roots)
        self._known = threading.Event()
        if packs_loaded:
            self._known.set()
        self._gave_up = False
        self._budget = min(EARLY_LOOSE_REQUESTS, max(0, int(settings.looseRequests)))
        self._later = set(roots).difference(eager)
        self._workers = Workers(1, "lazygit-walk")
        self._future = self._workers.submit(_walk_metadata, roots, catalog, settings, early=self)

    def packs_loaded(self) -> None:
        """The catalog knows every pack's objects now: the walk stops at packed ones."""
        self._known.set()

    def result(self) -> tuple[LooseWalk, set[str]]:
        """The loose objects and the cruft packs the walk met (waits for the walk)."""
        return self._future.result()

    def packs_known(self) -> bool:
        if self._gave_up:
            raise _Cancelled
        return self._known.is_set()

    def ask_unknown(self, oid: bytes) -> bool:
        """Whether to ask for ``oid`` before the pack indexes tell whether it is packed."""
        if oid in self._later or self._budget <= 0:
            return False
        self._budget -= 1
        return True

    def wait_for_packs(self) -> None:
        self._known.wait()
        if self._gave_up:
            raise _Cancelled

    def __enter__(self) -> LooseMetadataWalk:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None:  # the clone failed: the walk stops at its next step
            self._gave_up = True
            self._known.set()
        self._workers.__exit__(exc_type, *rest)  # type: ignore[arg-type]


class _Cancelled(Exception):
    """The other half of a clone's metadata fetch failed: this half stops."""


class _Background:
    """Runs ``job(reader)`` in a thread; ``cancel`` makes its reads stop, then waits for it.

    Cancelling waits for the job to end, so that no index-pack is left writing into a
    repository its caller is about to remove.
    """

    def __init__(
        self, job: Callable[[Reader], str], reader: Reader, stop: threading.Event | None = None
    ) -> None:
        self._stop = stop or threading.Event()  # the job may also watch it itself
        self._result: str = ""
        self._error: BaseException | None = None

        def read(
            h: PackHandle,
            extents: Sequence[Extent],
            on_bytes: Callable[[int], None] | None,
        ) -> Iterator[tuple[Extent, bytes]]:
            for item in reader(h, extents, on_bytes):
                if self._stop.is_set():
                    raise _Cancelled
                yield item

        def run() -> None:
            try:
                self._result = job(read)
            except BaseException as exc:  # handed to the caller by result()
                self._error = exc
            finally:
                self._done.set()

        # An Event, not Thread.join(): a join interrupted by Ctrl-C (Python 3.11) can leave
        # the thread marked as stopped while it still runs, and the next join returns at once.
        self._done = threading.Event()
        threading.Thread(target=run, name="lazygit-meta", daemon=True).start()

    def result(self) -> str:
        """The job's return value, once it has ended; its exception if it raised one."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self) -> None:
        self._stop.set()
        self._done.wait()


def _write_meta(
    repo: LocalRepo,
    plans: list[_MetaPlan],
    loose: list[LooseObject],
    count: int,
    reader: Reader,
    task: Task,
    kept: _Spooled | None = None,
    spool: IO[bytes] | None = None,
) -> str:
    """One promisor pack of the planned entries and ``loose`` objects, through index-pack.

    Without ``--fix-thin``: every delta here names a base in the same pack (a server pack's
    commit, tree and tag deltas have bases of their own type in that pack), so git itself
    checks that the clone's packs need each other for nothing and may be indexed at once.
    """

    def write(out: IO[bytes]) -> None:
        handles = [plan.handle for plan in plans]
        writer = PackWriter(out, count, _locator(handles) if len(plans) > 1 else None)
        for plan in plans:
            stream = reader(plan.handle, plan.merged, task.advance)
            if plan.runs is not None:
                _write_runs(writer, plan, stream)
            else:
                assert kept is not None and spool is not None
                _write_entries(writer, plan, stream, kept, spool)
        for obj in loose:
            _add_loose(writer, obj)
        writer.finish()

    return repo.index_pack(write, promisor=PROMISOR_MESSAGE, fix_thin=False)


def _add_loose(writer: PackWriter, obj: LooseObject | SpooledObject) -> None:
    if isinstance(obj, SpooledObject):
        writer.add_deflated(obj.type_num, obj.size, obj.pieces())
    else:
        writer.add_object(obj.type_num, obj.content)


class FetchEngine:
    """Fetches sets of objects from the server into the local repository, one pack a batch
    (two for a big one)."""

    def __init__(
        self,
        catalog: Catalog,
        repo: LocalRepo,
        settings: Settings,
        local: LocalObjects | None = None,
        reader: Reader = direct_reader,
    ) -> None:
        self.catalog = catalog
        self.repo = repo
        self.settings = settings
        self.local = local or repo.local_objects()
        self.reader = reader

    def fetch(
        self,
        oids: Iterable[bytes],
        progress: Progress = QUIET,
        *,
        loose: Sequence[LooseObject] = (),
    ) -> FetchStats:
        """Fetch the objects among ``oids`` that are not local, as one promisor pack.

        ``loose`` are objects the caller already read (and hash-checked) from the server's
        loose files; they go into the same pack.  Bytes that fail git's hash check are never
        stored: the batch is read again once, past every cache, and then reported.
        """
        oids = list(oids)
        try:
            return self._fetch_checked(oids, progress, loose)
        except (HTTPStatusError, PackChangedError) as exc:
            # A pack we knew is gone or replaced: the server was repacked (git gc) since the
            # clone.  Its objects are in the new packs: look again and read from there.
            if isinstance(exc, HTTPStatusError) and not exc.absent:
                raise
            if not self.catalog.refresh(self.settings):
                raise
            self._forget_cached_bytes()
            stats = self._fetch_checked(oids, progress, loose)
            stats.refreshed = True
            return stats

    def _forget_cached_bytes(self) -> None:
        forget = getattr(self.reader, "__self__", None)
        if forget is not None and hasattr(forget, "clear"):
            forget.clear()

    def _fetch_checked(
        self, oids: list[bytes], progress: Progress, loose: Sequence[LooseObject]
    ) -> FetchStats:
        """`_fetch`, and once more past every cache if git's hash check rejected the bytes."""
        try:
            return self._fetch(oids, progress, loose)
        except CorruptDataError as first:
            self._forget_cached_bytes()
            try:
                return self._fetch(oids, progress, loose)
            except CorruptDataError as second:
                raise CorruptDataError(
                    "the server sent damaged data twice; nothing damaged was stored "
                    f"({second.message})",
                    "check the server's files (git fsck there) or a proxy in between",
                ) from first

    def _fetch(
        self, oids: list[bytes], progress: Progress, loose: Sequence[LooseObject]
    ) -> FetchStats:
        meter = _Meter(self.catalog)
        self.local.refresh()
        missing = self.local.missing(oids)
        if not missing and not loose:
            return meter.stats(0, 0, [])
        located, loose_oids = self._locate(missing)
        absent: list[bytes] = []
        fetched: list[SpooledObject] = []
        with tempfile.TemporaryFile(dir=self._tmp_dir(), prefix="spool-") as spool:
            try:
                # The oids in no known pack are asked for as loose objects while the packs
                # are read: most are (small pushes leave them so).  No thread for none.
                if not loose_oids:
                    spooled, rounds = self._read_rounds(located, spool, progress)
                else:
                    spooled, rounds, fetched = self._read_with_loose(
                        located, loose_oids, spool, progress, absent
                    )
                objs = [*loose, *fetched]
                packs = self._write_packs(spool, spooled, objs) if spooled or objs else []
            finally:
                for obj in fetched:
                    obj.close()
        self.local.refresh()
        stats = meter.stats(len(spooled) + len(objs), rounds, packs)
        stats.absent = absent
        if absent and self.catalog.rescan(self.settings):
            # Neither packed where we knew nor loose: in packs new on the server (a push, a
            # repack since).  Looked for there only now, so that the common case, a loose
            # object, costs no round trip for objects/info/packs first.
            more = self._fetch(absent, progress, ())
            stats.add(more)
            stats.absent = more.absent
        return stats

    def _read_with_loose(
        self,
        located: dict[int, set[int]],
        loose_oids: list[bytes],
        spool: IO[bytes],
        progress: Progress,
        absent: list[bytes],
    ) -> tuple[_Places, int, list[SpooledObject]]:
        """`_read_rounds`, with the loose objects fetched meanwhile in another thread."""
        with Workers(1, "lazygit-loose-fetch") as side:
            asked = side.submit(
                fetch_loose_spooled,
                self.catalog.sources,
                loose_oids,
                self._tmp_dir(),
                workers=self.settings.looseRequests,
                absent=absent,
            )
            try:
                spooled, rounds = self._read_rounds(located, spool, progress)
            except BaseException as exc:
                # Ctrl-C does not wait for a loose read that may be stalled.
                if isinstance(exc, Exception) or asked.done():
                    with contextlib.suppress(Exception):
                        for obj in asked.result():
                            obj.close()
                raise
            return spooled, rounds, asked.result()

    def update(self, tips: Iterable[bytes], progress: Progress = QUIET) -> FetchStats:
        """Bring the commits, trees and tags behind ``tips`` that are not local (``git fetch``).

        Only packs new since the clone (or the last update) are looked at: their commit, tree
        and tag entries that are not local are fetched like any object, so deltas against
        local bases stay small.  A new pack without a bitmap is read whole.
        """
        meter = _Meter(self.catalog)
        tips = list(tips)
        self.catalog.rescan(self.settings)
        self.local.refresh()
        small: list[PackHandle] = []
        large: list[PackHandle] = []
        for h in self.catalog.packs:
            if h.name in self.catalog.meta_done:
                continue
            if h.cruft:  # read only if the walk from the tips meets it
                large.append(h)
                continue
            if all(h.pack.oid_at_position(i) in self.local for i in range(len(h.pack))):
                continue
            if h.pack.types is None and h.info.size <= self.settings.smallPackBytes:
                small.append(h)
            else:
                large.append(h)
        whole = read_whole_packs(small, self.repo, progress, self.settings.connections)
        self.local.refresh()
        walk, reached = _walk_metadata(tips, self.catalog, self.settings, lambda o: o in self.local)
        loose = walk.objects
        large = [h for h in large if not h.cruft or h.name in reached]
        wanted: list[bytes] = []
        for h in large:
            if h.pack.types is None:  # a large push: its headers tell commits from blobs
                with tempfile.TemporaryFile(dir=self._tmp_dir(), prefix="scan-") as scratch:
                    h.pack.types = scan_types(
                        h, self.catalog, self.settings, scratch, {}, progress, self.reader
                    )
            t = h.pack.types
            for a, b in (*t.commits, *t.trees, *t.tags):
                wanted += (h.pack.oid_at_position(i) for i in range(a, b))
        wanted += packed_blobs(tips, self.catalog)  # refs naming blobs: git fetch brings them
        batch = self.fetch(wanted, progress, loose=loose)
        # A cruft pack left unread stays out: a later push may reach into it.
        self.catalog.meta_done.update(h.name for h in self.catalog.packs if not h.cruft)
        self.catalog.meta_done.update(h.name for h in large)
        self.catalog.save()
        return meter.stats(whole.objects + batch.objects, batch.rounds, whole.packs + batch.packs)

    def _tmp_dir(self) -> Path:
        tmp_dir = self.repo.state_dir / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        return tmp_dir

    def _locate(self, oids: list[bytes]) -> tuple[dict[int, set[int]], list[bytes]]:
        """{pack number: offsets} for packed oids; the rest are loose (or new on the server:
        `_fetch` rescans the pack list for those not found loose)."""
        located: dict[int, set[int]] = defaultdict(set)
        loose: list[bytes] = []
        for oid in oids:
            loc = self.catalog.locate(oid)
            if loc is None:
                loose.append(oid)
            else:
                located[self.catalog.packs.index(loc[0])].add(loc[1])
        return located, loose

    def _read_rounds(
        self, want: dict[int, set[int]], spool: IO[bytes], progress: Progress
    ) -> tuple[_Places, int]:
        """Read wanted entries, then their missing delta bases, breadth-first, into ``spool``.

        Rounds after the first read a few entries before each base as well (see
        :meth:`_with_read_behind`): a delta family sits together in a server pack, so the
        deeper bases of a chain are usually there, and a chain of depth 12 costs three or
        four rounds instead of twelve.  Every
        entry that arrives (read-behind, or in a gap read through) is spooled as it arrives,
        noted aside for the rest of the batch, and used when it turns out to be a base.
        """
        spooled: _Places = {}
        # Every whole entry that arrived and is not taken yet, by where it sits in the spool.
        aside: _Places = {}
        # Every oid read or queued: an object stored in two server packs is read once.
        self._queued = {
            self.catalog.packs[pno].pack.oid_at(off) for pno, offs in want.items() for off in offs
        }
        # Bases that sit before the delta that named them: their chain continues behind.
        self._behind: set[tuple[int, int]] = set()
        # Each spooled delta's base oid, noted when its header is parsed on arrival: the
        # writer's ordering needs it and need not read the entries again.
        self._base_oids: dict[tuple[int, int], bytes] = {}
        # ... and where that base was to be read from (the writer's ordering looks it up).
        self._base_keys: dict[tuple[int, int], tuple[int, int]] = {}
        rounds = 0
        task = progress.task("objects", total=None)
        planned = 0  # the bytes of the rounds so far: each round adds its reads
        while want:
            rounds += 1
            nxt: dict[int, set[int]] = defaultdict(set)
            for pno, offsets in sorted(want.items()):
                h = self.catalog.packs[pno]
                entries = [h.pack.extent_at(o) for o in sorted(offsets)]
                reads = entries
                if rounds > 1:
                    reads = [
                        self._with_read_behind(pno, e, rounds, spooled, aside) for e in entries
                    ]
                merged = _coalesce(reads, self.settings)
                planned += sum(e.length for e in merged)
                task.update(total=planned)
                self._spool_reads(pno, merged, spool, aside, spooled, task)
                spool.flush()  # _take reads the headers back by pread
                for off in sorted(offsets):
                    self._take((pno, off), aside, spooled, spool, nxt)
            want = nxt
        task.done()
        return spooled, rounds

    def _spool_reads(
        self,
        pno: int,
        merged: list[Extent],
        spool: IO[bytes],
        aside: _Places,
        spooled: _Places,
        task: Task,
    ) -> None:
        """Read ``merged`` (each starts where an entry does) straight into ``spool``, and
        note every whole entry that arrived in ``aside``.

        A read is asked for in the pieces the remote requests anyway (``maxRangeBytes``), so
        it is never held whole: a big blob costs one piece of memory, not its size."""
        h = self.catalog.packs[pno]
        pack = h.pack
        it = iter(merged)
        ext = Extent(0, 0)
        at = 0  # spool position of ext.start
        pieces = split(merged, max(1, int(self.settings.maxRangeBytes)))
        for piece, data in self.reader(h, pieces, task.advance):
            while piece.start >= ext.end:  # the first piece of the next read
                ext = next(it)
                at = spool.tell()
            spool.write(data)
            if piece.end < ext.end:
                continue
            # The read is complete: every entry it holds whole, walked by pack position.
            pos, p = ext.start, pack.position_of_offset(ext.start)
            while pos < ext.end:
                end = pack.end_of_position(p + 1)
                if end > ext.end:
                    break
                key = (pno, pos)
                if key not in spooled and key not in aside:
                    aside[key] = (at + pos - ext.start, end - pos)
                pos, p = end, p + 1

    def _with_read_behind(
        self,
        pno: int,
        base: Extent,
        rounds: int,
        spooled: _Places,
        aside: _Places,
    ) -> Extent:
        """The read for a delta base: with ``readBehindEntries`` entries before it (four
        times as many after the second round) and ``readBehind`` bytes, where the deeper
        bases of its chain usually are.  Entries at hand or local are not read again."""
        pack = self.catalog.packs[pno].pack
        start = base.start
        behind = max(0, int(self.settings.readBehind))
        if behind:
            start = pack.entry_at_or_after(max(0, base.start - behind))
        k = max(0, int(self.settings.readBehindEntries)) * (1 if rounds == 2 else 4)
        if k and (pno, base.start) in self._behind:
            p = pack.position_of_offset(base.start)
            q = max(0, p - k)
            while q < p:
                off = pack.offset_at_position(q)
                key = (pno, off)
                if (
                    key not in spooled
                    and key not in aside
                    and pack.oid_at_position(q) not in self.local
                ):
                    break
                q += 1
            start = min(start, pack.offset_at_position(q))
        return Extent(start, base.end)

    def _take(
        self,
        key: tuple[int, int],
        aside: _Places,
        spooled: _Places,
        spool: IO[bytes],
        nxt: dict[int, set[int]],
    ) -> None:
        """Take the entry at ``key`` into the batch and follow its delta chain as far as
        ``aside`` reaches; the first base not at hand is queued for the next round."""
        while key is not None and key not in spooled:
            place = aside.pop(key, None)
            if place is None:
                raise CorruptDataError(
                    f"{self.catalog.packs[key[0]].name}: entry at {key[1]} "
                    "was not in the server's answer"
                )
            spooled[key] = place
            head = os.pread(spool.fileno(), min(place[1], HEADER_BYTES), place[0])
            base = self._base_to_fetch(key[0], key[1], head)
            if base is None:
                return
            if base in aside:
                key = base  # arrived already (read behind, or in a gap): no round needed
            else:
                nxt[base[0]].add(base[1])
                return

    def _base_to_fetch(self, pno: int, offset: int, raw: bytes) -> tuple[int, int] | None:
        """Where the delta base of an entry must come from, or None if it is local or coming."""
        header = parse_entry_header(raw)
        if header.type == OFS_DELTA:
            assert header.base_distance is not None
            base_pno, base_off = pno, offset - header.base_distance
            h = self.catalog.packs[pno]
            try:
                base_oid = h.pack.oid_at(base_off)
            except KeyError:
                raise CorruptDataError(
                    f"{h.name}: delta at {offset} names a base at {base_off} where no object starts"
                ) from None
            self._base_oids[(pno, offset)] = base_oid
        elif header.type == REF_DELTA:
            assert header.base_oid is not None
            base_oid = header.base_oid
            self._base_oids[(pno, offset)] = base_oid
            loc = self.catalog.locate(base_oid)
            if loc is None:
                if base_oid in self.local:
                    return None
                raise RemoteError(f"delta base {base_oid.hex()} is not on the server")
            base_pno, base_off = self.catalog.packs.index(loc[0]), loc[1]
        else:
            return None
        self._base_keys[(pno, offset)] = (base_pno, base_off)
        if base_oid in self._queued:
            return None  # read or coming; the writer names it by offset or id
        if base_oid in self.local:
            return None  # written as a REF_DELTA against the local object (index-pack --fix-thin)
        self._queued.add(base_oid)
        if base_pno == pno and base_off < offset:
            self._behind.add((base_pno, base_off))
        return (base_pno, base_off)

    def _write_packs(
        self,
        spool: IO[bytes],
        spooled: _Places,
        loose: Sequence[LooseObject | SpooledObject],
    ) -> list[str]:
        """The batch as one pack, or as two indexed at once when it is big (each holds whole
        delta families: a pack's deltas may name only its own or local objects)."""
        spool.flush()  # the groups read it by pread, each in its own thread
        big = len(spooled) >= SPLIT_BATCH_OBJECTS and (os.cpu_count() or 1) >= 2
        groups = self._split(spooled) if big else [spooled]
        if len(groups) == 1:
            return [self._write_group(spool, spooled, loose)]
        stop, failed = threading.Event(), threading.Event()

        def second(_read: Reader) -> str:
            try:
                return self._write_group(spool, groups[1], [], stop)
            except BaseException:
                failed.set()  # the first group stops too
                raise

        other = _Background(second, self.reader, stop)
        try:
            try:
                first = self._write_group(spool, groups[0], loose, failed)
            except _Cancelled:
                other.result()  # raises what stopped the second group
                raise
            return [first, other.result()]
        except BaseException:
            other.cancel()  # no index-pack may outlive the batch
            raise

    def _write_group(
        self,
        spool: IO[bytes],
        group: _Places,
        loose: Sequence[LooseObject | SpooledObject],
        stop: threading.Event | None = None,
    ) -> str:
        fd = spool.fileno()

        def write(out: IO[bytes]) -> None:
            writer = PackWriter(out, len(group) + len(loose))
            for pno, offset in self._base_first_order(group):
                if stop is not None and stop.is_set():
                    raise _Cancelled
                pos, length = group[(pno, offset)]
                h = self.catalog.packs[pno]
                head = os.pread(fd, min(length, HOLD_BYTES), pos)
                rest = _pread_pieces(fd, pos + len(head), length - len(head))
                writer.add_entry(h.name, offset, head, h.pack.oid_at, h.pack.oid_at(offset), rest)
            for obj in loose:
                _add_loose(writer, obj)
            writer.finish()

        return self.repo.index_pack(write, promisor=PROMISOR_MESSAGE)

    def _split(self, spooled: _Places) -> list[_Places]:
        """Two groups of whole delta families, of about equal bytes (one if it is one family)."""
        parent: dict[tuple[int, int], tuple[int, int]] = {}

        def root(k: tuple[int, int]) -> tuple[int, int]:
            while (p := parent.get(k, k)) != k:
                parent[k] = parent.get(p, p)  # path halving
                k = p
            return k

        for key, base in self._in_batch_bases(spooled):
            a, b = root(key), root(base)
            if a != b:
                parent[a] = b
        families: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        for key in spooled:
            families[root(key)].append(key)
        sized = sorted(
            ((sum(spooled[k][1] for k in keys), keys) for keys in families.values()),
            key=lambda item: -item[0],
        )
        groups: list[_Places] = [{}, {}]
        held = [0, 0]
        for size, keys in sized:  # largest first, each into the lighter group
            i = 0 if held[0] <= held[1] else 1
            groups[i].update((k, spooled[k]) for k in keys)
            held[i] += size
        return [g for g in groups if g]

    def _in_batch_bases(
        self, spooled: _Places
    ) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
        """(delta, base) for every spooled delta whose base is spooled too.  An oid is read
        once per batch (``_queued``), so its base is usually where the delta named it, else
        (an object stored in two server packs) where it was read from, found by oid."""
        key_of: dict[bytes, tuple[int, int]] | None = None
        for key, base_oid in sorted(self._base_oids.items()):
            if key not in spooled or base_oid not in self._queued:
                continue  # a local base: the writer names it by id
            base = self._base_keys.get(key)
            if base not in spooled:
                if key_of is None:
                    key_of = {self.catalog.packs[p].pack.oid_at(o): (p, o) for p, o in spooled}
                base = key_of.get(base_oid)
            if base is not None:
                yield key, base

    def _base_first_order(self, spooled: _Places) -> list[tuple[int, int]]:
        """Pack order, except that a delta whose base is in this batch (possibly read from
        another server pack) comes after that base, so the writer can name it by offset."""
        waiting: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        for key, base in self._in_batch_bases(spooled):
            if base > key:
                waiting[base].append(key)  # its base comes later in pack order
        order: list[tuple[int, int]] = []
        deferred = {k for ks in waiting.values() for k in ks}

        def emit(key: tuple[int, int]) -> None:
            stack = [key]
            while stack:
                k = stack.pop()
                order.append(k)
                stack.extend(reversed(waiting.pop(k, [])))

        for key in sorted(spooled):
            if key not in deferred:
                emit(key)
        if len(order) != len(spooled):
            raise CorruptDataError("delta bases in a batch form a cycle")
        return order
