"""The catalog of the server's objects: its object directories, their packs (``.idx`` and
bitmap type index, read over HTTP once and cached in the clone), and where each object lives.

The clone builds it from the network; the daemon reopens it from the cache without touching
the network and rescans ``objects/info/packs`` only when an object is in no known pack.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from lazygit import midx
from lazygit.config import Settings, promisor_remote, remote_config
from lazygit.discovery import ObjectSource, parse_info_packs
from lazygit.errors import CorruptDataError, HTTPStatusError
from lazygit.packmeta import ServerPack, bitmap_head_needed, parse_bitmap_types
from lazygit.progress import QUIET, Progress
from lazygit.ranges import Extent
from lazygit.remote import DumbRemote, FileInfo, RangeMode
from lazygit.workers import Workers

#: First read of a .bitmap: enough for the type bitmaps of most packs (git/git's: 26.7 KB).
BITMAP_HEAD_GUESS = 32 * 1024
CATALOG_FILE = "catalog.json"


@dataclass
class _Asked:
    """A pack's metadata being read: its size and validator, .idx and bitmap head (None:
    not asked, the clone's cache has them)."""

    source: ObjectSource
    name: str
    info: Future[FileInfo]
    idx: Future[bytes | None] | None
    head: Future[bytes | None] | None


@dataclass
class MidxLayout:
    """What a MIDX bitmap tells about the packs it covers (see midx.py)."""

    source: ObjectSource
    checksum: bytes
    names: list[str]  # the packs it covers, in pack-int-id order
    count: int  # its objects
    first: int  # the MIDX position of the first object in pseudo-pack order
    bitmap_head: bytes  # the bitmap's header and type bitmaps

    def apply(self, handles: Iterable[PackHandle]) -> list[PackHandle]:
        """Give the covered packs without a bitmap of their own their types; the packs it
        gave them to (none when it does not fit these packs: then they are scanned)."""
        by_name = {h.name: h for h in handles if h.source is self.source}
        if any(n not in by_name for n in self.names):
            return []  # a covered pack no longer listed: a stale MIDX
        covered = [by_name[n] for n in self.names]
        types = midx.pack_types(
            [h.pack for h in covered], self.count, self.first, self.checksum, self.bitmap_head
        )
        if types is None:
            return []  # objects in two packs, a bitmap of another MIDX: scanned instead
        given = []
        for h in covered:
            if h.pack.types is None:
                h.pack.types = types[h.name]
                given.append(h)
        return given


@dataclass
class PackHandle:
    """A server pack as the fetch engine sees it: where it is, its metadata, its validator."""

    source: ObjectSource
    pack: ServerPack
    info: FileInfo  # of the .pack file, the validator every range read is guarded with
    #: A cruft pack (it has a ``.mtimes``, as git itself tells them): the unreachable
    #: objects ``git gc`` keeps until they expire.  Only told for packs larger than
    #: lazygit.smallPackBytes without a bitmap; small packs are read whole anyway.
    cruft: bool = False

    @property
    def name(self) -> str:
        return self.pack.name

    @property
    def has_bitmap(self) -> bool:
        return self.pack.types is not None


class Catalog:
    """All server packs, searched in order, plus the object directories for loose objects."""

    def __init__(self, sources: list[ObjectSource], cache_dir: Path | None) -> None:
        self.sources = sources
        self.cache_dir = cache_dir
        self.packs: list[PackHandle] = []
        #: Packs whose commits, trees and tags are all local (by the clone or an update).
        self.meta_done: set[str] = set()
        #: The core.abbrev lazygit set in the clone (`LocalRepo.abbreviate_as_full_clone`, then
        #: `follow_full_clone_abbrev`);
        #: None when it set none (the user had one).
        self.abbrev: int | None = None
        #: Which sources catalog.json marks as wanting a credential (see `note_credentials`).
        self._credentials_saved = [False] * len(sources)
        #: MIDX bitmaps that gave packs their types, kept for the daemon (catalog.json).
        self.midx: list[MidxLayout] = []

    # -- building -----------------------------------------------------------------------
    def load_packs(self, settings: Settings, progress: Progress = QUIET) -> None:
        """Read every listed pack's .idx, size and bitmap type index, with a "pack indexes"
        bar that counts them.

        All packs and, for each, its size, .idx and bitmap head are asked for at once: one
        round trip for most packs, where one after another took four.  A pack without a
        bitmap larger than lazygit.smallPackBytes costs one more (is it a cruft pack?).
        """
        todo = [(s, name) for s in self.sources for name in s.packs if not self.has_pack(name)]
        if not todo:
            return
        task = progress.task("pack indexes", total=len(todo), count=True)
        with Workers(min(3 * settings.connections, 3 * len(todo)), "lazygit-catalog") as pool:
            asked = [self._ask(pool, source, name) for source, name in todo]
            got = []
            probed: set[int] = set()

            def probe(a: _Asked, info: FileInfo) -> None:
                # Does the server do multi-range?  Asked now, while the other .idx files and
                # bitmap heads arrive, not at the first read of the packs; of a pack that is
                # read (one with a bitmap), not of a cruft pack nobody reads.
                remote = a.source.remote
                if id(remote) not in probed and info.size >= 3:
                    probed.add(id(remote))
                    remote.submit(remote.range_mode, info)  # not waited for by `pool`

            for a in asked:
                got.append(self._receive(a))
                if got[-1][3] is not None:
                    probe(a, got[-1][0])
            for a, (info, *_rest) in zip(asked, got, strict=True):
                probe(a, info)  # a source without any bitmap
            # Packs without a bitmap that are not read whole: is each a cruft pack, and has
            # the object directory a multi-pack-index bitmap that gives their types?
            unmapped = [
                head is None and info.size > settings.smallPackBytes
                for info, _cached, _idx, head in got
            ]
            cruft = [
                pool.submit(self._is_cruft, a.source, a.name) if big else None
                for a, big in zip(asked, unmapped, strict=True)
            ]
            dirs = {id(a.source): a.source for a, big in zip(asked, unmapped, strict=True) if big}
            midx_asked = [pool.submit(read_midx, s) for s in dirs.values()]
            for a, (info, cached, idx_data, head), mtimes in zip(asked, got, cruft, strict=True):
                is_cruft = mtimes is not None and mtimes.result()
                self.packs.append(self._load_pack(a, info, cached, idx_data, head, is_cruft))
                task.advance()
            for f in midx_asked:
                layout = f.result()
                if layout is not None and layout.apply(self.packs):
                    self.midx = [m for m in self.midx if m.source is not layout.source]
                    self.midx.append(layout)
        task.done()
        self.save()

    def object_count(self) -> int:
        """Objects in the server's packs but its cruft packs: what a full clone holds (about;
        loose ones aside)."""
        return sum(len(h.pack) for h in self.packs if not h.cruft)

    def has_pack(self, name: str) -> bool:
        return any(p.name == name for p in self.packs)

    def _ask(self, pool: Workers, source: ObjectSource, name: str) -> _Asked:
        """Start reading a pack's size, .idx and bitmap head (not those a cache holds)."""
        remote = source.remote
        known = self.cache_dir is not None and (self._packs_dir / f"{name}.json").exists()
        return _Asked(
            source,
            name,
            pool.submit(remote.stat, source.path(f"pack/{name}.pack")),
            None if known else pool.submit(remote.get_bytes, source.path(f"pack/{name}.idx")),
            None if known else pool.submit(self._read_bitmap_head, source, name),
        )

    def _receive(self, a: _Asked) -> tuple[FileInfo, bool, bytes, bytes | None]:
        """(pack file info, whether from the cache, .idx bytes, bitmap head) of a pack asked
        for; what the cache held for another version of the file is read now."""
        info = a.info.result()
        cached = self._cached(a.name, info)
        if cached is not None:  # an interrupted clone read these already
            return info, True, *cached
        remote = a.source.remote
        if a.idx is not None:
            idx_data = a.idx.result()
        else:
            idx_data = remote.get_bytes(a.source.path(f"pack/{a.name}.idx"))
        assert idx_data is not None
        head = (a.head.result() if a.head is not None else
                self._read_bitmap_head(a.source, a.name))  # fmt: skip
        return info, False, idx_data, head

    def _load_pack(
        self,
        a: _Asked,
        info: FileInfo,
        cached: bool,
        idx_data: bytes,
        head: bytes | None,
        cruft: bool,
    ) -> PackHandle:
        name = a.name
        rev = positions = None
        if cached:
            rev = _read_optional(self._packs_dir / f"{name}.rev")
            positions = _read_optional(self._packs_dir / f"{name}.pos")
        pack = ServerPack.from_idx(name, idx_data, info.size, rev, positions)
        if head is not None:
            pack.types = parse_bitmap_types(head, n_objects=len(pack), pack_checksum=pack.checksum)
        if self.cache_dir is not None:
            packs_dir = self.cache_dir / "packs"
            packs_dir.mkdir(parents=True, exist_ok=True)
            rev_bytes = pack.rev_bytes()
            if rev != rev_bytes:
                # The reverse index spares every daemon start sorting the idx's offsets.
                _write_atomic(packs_dir / f"{name}.rev", rev_bytes)
            positions_bytes = pack.positions_bytes()
            if positions != positions_bytes:
                _write_atomic(packs_dir / f"{name}.pos", positions_bytes)
            if not cached:
                _write_atomic(packs_dir / f"{name}.idx", idx_data)
                if head is not None:
                    _write_atomic(packs_dir / f"{name}.bitmap-head", head)
                _write_atomic(packs_dir / f"{name}.json", json.dumps(_validator(info)).encode())
        return PackHandle(a.source, pack, info, cruft)

    def _cached(self, name: str, info: FileInfo) -> tuple[bytes, bytes | None] | None:
        """The cached .idx and bitmap head of ``name`` if they belong to this very pack file."""
        if self.cache_dir is None:
            return None
        packs_dir = self.cache_dir / "packs"
        try:
            if json.loads((packs_dir / f"{name}.json").read_text()) != _validator(info):
                return None
            idx = (packs_dir / f"{name}.idx").read_bytes()
        except (OSError, ValueError):
            return None
        head_path = packs_dir / f"{name}.bitmap-head"
        return idx, head_path.read_bytes() if head_path.exists() else None

    @property
    def _packs_dir(self) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / "packs"

    @staticmethod
    def _read_bitmap_head(source: ObjectSource, name: str) -> bytes | None:
        """The .bitmap's header and type bitmaps, by one Range request (no HEAD first),
        extended if that was short; None without a .bitmap."""
        remote = source.remote
        got = remote.get_head(source.path(f"pack/{name}.bitmap"), BITMAP_HEAD_GUESS)
        if got is None:
            return None
        head, binfo = got
        while True:
            need = bitmap_head_needed(head)
            if need is not None and need <= len(head):
                return head[:need]
            if need is None:
                need = len(head) * 2
            if need > binfo.size or len(head) >= binfo.size:
                raise CorruptDataError(f"the bitmap of {name} is truncated")
            head += b"".join(
                data for _, data in remote.read_extents(binfo, [Extent(len(head), need)])
            )

    @staticmethod
    def _is_cruft(source: ObjectSource, name: str) -> bool:
        """Whether the server has a ``.mtimes`` for this pack: git's own test of a cruft pack."""
        try:
            source.remote.stat(source.path(f"pack/{name}.mtimes"))
        except HTTPStatusError as exc:
            if exc.absent:
                return False
            raise
        return True

    # -- persistence --------------------------------------------------------------------
    def note_credentials(self) -> None:
        """Save once a server took a credential that catalog.json did not know it wants (a
        clone made before lazygit kept the mark, a password added on the server since): the
        next daemon then asks the helpers before its first request, not after a 401 each."""
        if [s.remote.used_credentials for s in self.sources] != self._credentials_saved:
            self.save()

    def save(self) -> None:
        if self.cache_dir is None:
            return
        listed = {(id(h.source), h.name) for h in self.packs}
        self.midx = [m for m in self.midx if all((id(m.source), n) in listed for n in m.names)]
        doc = {
            "sources": [
                {
                    "url": s.remote.url,
                    "prefix": s.prefix,
                    "packs": s.packs,
                    # Multi-range only: a server may learn it later, not unlearn it unnoticed.
                    "multi_range": s.remote.known_range_mode is RangeMode.MULTI,
                    "credentials": s.remote.used_credentials,
                }
                for s in self.sources
            ],
            "packs": [
                {
                    "name": h.name,
                    "source": self.sources.index(h.source),
                    "size": h.info.size,
                    "etag": h.info.etag,
                    "last_modified": h.info.last_modified,
                    "path": h.info.path,
                    "cruft": h.cruft,
                }
                for h in self.packs
            ],
            "meta_done": sorted(self.meta_done),
            "abbrev": self.abbrev,
            "midx": [
                {
                    "source": self.sources.index(m.source),
                    "checksum": m.checksum.hex(),
                    "names": m.names,
                    "count": m.count,
                    "first": m.first,
                }
                for m in self.midx
            ],
        }
        kept = {f"{midx.MIDX_FILE}-{m.checksum.hex()}.bitmap-head": m for m in self.midx}
        packs_dir = self.cache_dir / "packs"
        packs_dir.mkdir(parents=True, exist_ok=True)
        for name, m in kept.items():
            if not (packs_dir / name).exists():
                _write_atomic(packs_dir / name, m.bitmap_head)
        for old in packs_dir.glob(f"{midx.MIDX_FILE}-*.bitmap-head"):
            if old.name not in kept:
                with contextlib.suppress(OSError):
                    old.unlink()
        self._credentials_saved = [s["credentials"] for s in doc["sources"]]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # Private: the server URL in it may carry credentials.
        _write_atomic(self.cache_dir / CATALOG_FILE, json.dumps(doc, indent=1).encode(), 0o600)

    @classmethod
    def open(cls, cache_dir: Path, connect: Callable[[str], DumbRemote]) -> Catalog:
        """Reopen a saved catalog without touching the network."""
        doc = json.loads((cache_dir / CATALOG_FILE).read_text())
        remotes: dict[str, DumbRemote] = {}
        sources = []
        for s in doc["sources"]:
            remote = remotes.get(s["url"]) or remotes.setdefault(s["url"], connect(s["url"]))
            if s.get("multi_range"):  # the clone's probe: a daemon start need not ask again
                remote.assume_range_mode(RangeMode.MULTI)
            if s.get("credentials"):  # the server wants a password: ask before, not after 401
                remote.expect_credentials()
            sources.append(ObjectSource(remote, s["prefix"], list(s["packs"])))
        cat = cls(sources, cache_dir)
        cat._credentials_saved = [bool(s.get("credentials")) for s in doc["sources"]]
        cat.meta_done = set(doc.get("meta_done", []))
        cat.abbrev = doc.get("abbrev")
        for p in doc["packs"]:
            name = p["name"]
            idx = _map_file(cache_dir / "packs" / f"{name}.idx")
            rev = _read_optional(cache_dir / "packs" / f"{name}.rev")
            positions = _read_optional(cache_dir / "packs" / f"{name}.pos")
            pack = ServerPack.from_idx(name, idx, p["size"], rev, positions)
            head_path = cache_dir / "packs" / f"{name}.bitmap-head"
            if head_path.exists():
                pack.types = parse_bitmap_types(
                    head_path.read_bytes(), n_objects=len(pack), pack_checksum=pack.checksum
                )
            info = FileInfo(p["path"], p["size"], p["etag"], p["last_modified"])
            cat.packs.append(PackHandle(sources[p["source"]], pack, info, p.get("cruft", False)))
        for m in doc.get("midx", []):
            head = _read_optional(
                cache_dir / "packs" / f"{midx.MIDX_FILE}-{m['checksum']}.bitmap-head"
            )
            if head is None:
                continue  # its packs are scanned, as without it
            layout = MidxLayout(
                sources[m["source"]],
                bytes.fromhex(m["checksum"]),
                list(m["names"]),
                m["count"],
                m["first"],
                head,
            )
            if layout.apply(cat.packs):
                cat.midx.append(layout)
        return cat

    # -- lookups ------------------------------------------------------------------------
    def locate(self, oid: bytes) -> tuple[PackHandle, int] | None:
        """The first pack holding ``oid`` and its offset there, cruft packs last; or None
        (loose or absent)."""
        for cruft in (False, True):
            for handle in self.packs:
                if handle.cruft is cruft:
                    off = handle.pack.offset_of(oid)
                    if off is not None:
                        return handle, off
        return None

    def rescan(self, settings: Settings) -> list[PackHandle]:
        """Re-read objects/info/packs (the server may have new packs); load new ones."""
        before = {h.name for h in self.packs}
        for source in self.sources:
            data = source.remote.get_bytes(source.path("info/packs"), missing_ok=True)
            names = parse_info_packs(data) if data else []
            source.packs = names
        # Packs that vanished (a server repack) are dropped; their objects are elsewhere now.
        listed = {n for s in self.sources for n in s.packs}
        gone = {h.name for h in self.packs} - listed
        if gone:
            self.packs = [h for h in self.packs if h.name in listed]
            self.save()
            self._forget_files(gone)
        self.load_packs(settings)
        return [h for h in self.packs if h.name not in before]

    def refresh(self, settings: Settings) -> bool:
        """After a pack read failed (404, or the file changed): re-read the pack list and
        re-check every pack's validator; drop the packs that vanished or changed, load the new
        and changed ones.  True if the catalog changed.  A server that ran ``git gc`` or
        ``git repack -a -d`` after the clone is followed this way."""

        def state() -> set[tuple[str, int, str | None, str | None]]:
            return {(h.name, h.info.size, h.info.etag, h.info.last_modified) for h in self.packs}

        before = state()
        self.rescan(settings)
        stale: list[PackHandle] = []
        for h in self.packs:
            try:
                info = h.source.remote.stat(h.source.path(f"pack/{h.name}.pack"))
            except HTTPStatusError as exc:
                if not exc.absent:
                    raise
                stale.append(h)  # listed in a stale objects/info/packs, but gone
                h.source.packs = [n for n in h.source.packs if n != h.name]
                continue
            if _validator(info) != _validator(h.info):
                stale.append(h)
        if stale:
            self.packs = [h for h in self.packs if h not in stale]
            self._forget_files({h.name for h in stale})
            self.load_packs(settings)  # those still listed, with their new validators
        self.save()
        return state() != before

    def _forget_files(self, names: Iterable[str]) -> None:
        """Remove the cached .idx, .rev, .pos, bitmap head and validator of packs no longer
        used."""
        if self.cache_dir is None:
            return
        for name in names:
            for suffix in (".json", ".idx", ".rev", ".pos", ".bitmap-head"):
                with contextlib.suppress(OSError):
                    (self._packs_dir / f"{name}{suffix}").unlink()

    def remotes(self) -> Iterable[DumbRemote]:
        return {id(s.remote): s.remote for s in self.sources}.values()


def read_midx(source: ObjectSource) -> MidxLayout | None:
    """The server's MIDX bitmap, if it has one lazygit can use: its head, then the pack
    names, object count, checksum and first reverse-index entry, then the bitmap's head
    (three round trips, only for servers with a pack that needs them)."""
    remote = source.remote
    got = remote.get_head(source.path(f"pack/{midx.MIDX_FILE}"), midx.HEAD_GUESS)
    if got is None:
        return None
    try:
        return _read_midx(source, *got)
    except CorruptDataError:
        return None  # a damaged MIDX or bitmap: its packs are scanned, as without one


def _read_midx(source: ObjectSource, data: bytes, info: FileInfo) -> MidxLayout | None:
    remote = source.remote
    head = midx.parse_head(data, info.size)
    if head is None:
        return None

    def read(spans: list[midx.Span]) -> dict[midx.Span, bytes]:
        got = {s: data[s[0] : s[1]] for s in spans if s[1] <= len(data)}
        rest = [Extent(a, b) for a, b in spans if (a, b) not in got]
        if rest:
            got.update(((e.start, e.end), part) for e, part in remote.read_extents(info, rest))
        return got

    facts = midx.read_facts(head, read)
    bitmap = Catalog._read_bitmap_head(source, facts.file_stem)
    if bitmap is None:
        return None  # a MIDX without a bitmap
    first = facts.first
    if first is None:  # git before 2.35 wrote the reverse index beside the MIDX
        rev = remote.get_head(source.path(f"pack/{facts.file_stem}.rev"), midx.REV_HEAD_LEN)
        first = midx.first_from_rev(None if rev is None else rev[0])
        if first is None:
            return None
    return MidxLayout(source, facts.checksum, facts.names, facts.count, first, bitmap)


def promisor_url(git_dir: Path) -> str | None:
    """The promisor remote's URL in git config, without ``lazy::`` (None if unset)."""
    values = remote_config(git_dir)
    url = values.get(f"remote.{promisor_remote(values).lower()}.url")
    if not url:
        return None
    return url[len("lazy::") :] if url.startswith("lazy::") else url


def moved_url(catalog: Catalog, git_dir: Path) -> str | None:
    """The promisor remote's URL in git config when it is no longer the one ``catalog``
    reads from (`git remote set-url`: the server moved, or a mirror); else None."""
    from lazygit.discovery import same_url

    url = promisor_url(git_dir)
    if url is None or same_url(url, catalog.sources[0].remote.display_url):
        return None
    return url


def follow_remote_url(
    catalog: Catalog, url: str, settings: Settings, connect: Callable[[str], DumbRemote]
) -> Catalog:
    """A catalog of the server at ``url`` (see `moved_url`) in place of ``catalog``.  Pack
    names are content checksums, so what is known to be local carries over.  Saved in
    ``catalog``'s cache directory, whose files for packs not at ``url`` are removed."""
    from lazygit.discovery import discover

    snapshot = discover(connect(url), connect_alternate=connect)
    new = Catalog(snapshot.sources, catalog.cache_dir)
    new.meta_done = set(catalog.meta_done)
    new.abbrev = catalog.abbrev
    new.load_packs(settings)
    new.save()
    new._forget_files({h.name for h in catalog.packs} - {h.name for h in new.packs})
    return new


def _validator(info: FileInfo) -> dict[str, object]:
    return {"size": info.size, "etag": info.etag, "last_modified": info.last_modified}


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _map_file(path: Path) -> bytes | mmap.mmap:
    """A cached file mapped read-only (a daemon keeps big .idx files in the page cache, not
    in its own memory); an empty one read as bytes (mmap refuses empty files)."""
    with open(path, "rb") as f:
        try:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            return f.read()


def _read_optional(path: Path) -> bytes | None:
    """A cache file's bytes, or None when it is missing or unreadable."""
    try:
        return path.read_bytes()
    except OSError:
        return None
