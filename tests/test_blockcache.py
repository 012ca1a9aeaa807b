"""The daemon's block cache, against a real server pack behind nginx: bytes read once are
served from memory, only the holes of a partly held read go to the server, the least recently
used segments go first, and a read too big for the cache streams past it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from conftest import Published
from servers import Nginx

from lazygit.blockcache import STREAM_RATIO, BlockCache
from lazygit.catalog import Catalog, PackHandle
from lazygit.config import Settings
from lazygit.localrepo import LocalRepo
from lazygit.ranges import Extent
from lazygit.remote import DumbRemote


@pytest.fixture(scope="module")
def pack(
    small: Published, nginx: Nginx, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PackHandle, bytes]]:
    """The server's biggest pack as a lazy clone's catalog sees it, and its real bytes."""
    dest = tmp_path_factory.mktemp("blockcache") / "clone"
    url = nginx.url(small.name)
    subprocess.run(["lazygit", "clone", "-q", "--no-checkout", url, str(dest)], check=True)
    git_dir = dest / ".git"
    settings = Settings.load(git_dir)
    state = LocalRepo(git_dir, None).state_dir
    catalog = Catalog.open(state, lambda u: DumbRemote(u, settings, git_dir=git_dir))
    handle = max(catalog.packs, key=lambda h: h.info.size)
    data = (small.info.path / "objects" / "pack" / f"{handle.name}.pack").read_bytes()
    assert len(data) > 200_000
    try:
        yield handle, data
    finally:
        for remote in catalog.remotes():
            remote.close()


def read(
    cache: BlockCache, handle: PackHandle, extents: list[Extent], nginx: Nginx
) -> tuple[list[bytes], list[str | None]]:
    """The bytes of ``extents`` through ``cache``, and the Range headers the server saw."""
    nginx.clear_log()
    got = [data for _, data in cache.read(handle, extents)]
    ranges = [e.range for e in nginx.log_entries() if e.path.endswith(".pack")]
    return got, ranges


def spans(pack_bytes: bytes, extents: list[Extent]) -> list[bytes]:
    return [pack_bytes[e.start : e.end] for e in extents]


def test_second_read_comes_from_memory(pack: tuple[PackHandle, bytes], nginx: Nginx) -> None:
    handle, data = pack
    cache = BlockCache(1 << 20)
    extents = [Extent(12, 500), Extent(4_000, 9_000), Extent(100_000, 130_000)]
    got, ranges = read(cache, handle, extents, nginx)
    assert got == spans(data, extents) and ranges
    got, ranges = read(cache, handle, extents, nginx)
    assert got == spans(data, extents)
    assert ranges == []
    assert cache.hits == sum(e.length for e in extents)


def test_only_the_holes_go_to_the_server(pack: tuple[PackHandle, bytes], nginx: Nginx) -> None:
    handle, data = pack
    cache = BlockCache(1 << 20)
    read(cache, handle, [Extent(1_000, 2_000), Extent(3_000, 4_000)], nginx)
    misses = cache.misses
    wide = [Extent(500, 4_500)]
    got, ranges = read(cache, handle, wide, nginx)
    assert got == spans(data, wide)
    assert cache.misses - misses == 500 + 1_000 + 500
    asked = ",".join(r.removeprefix("bytes=") for r in ranges if r)
    assert sorted(asked.split(",")) == ["2000-2999", "4000-4499", "500-999"]


def test_least_recently_used_goes_first(pack: tuple[PackHandle, bytes], nginx: Nginx) -> None:
    handle, data = pack
    cache = BlockCache(10_000)  # reads of up to 3,000 bytes are kept
    a, b, c, d = (Extent(k * 10_000, k * 10_000 + 3_000) for k in (1, 2, 3, 4))
    for ext in (a, b, c):
        read(cache, handle, [ext], nginx)
    read(cache, handle, [a], nginx)  # a is now more recent than b
    read(cache, handle, [d], nginx)  # 12,000 bytes > 10,000: b goes
    assert cache.size == 9_000
    for ext, from_server in ((a, False), (c, False), (d, False), (b, True)):
        got, ranges = read(cache, handle, [ext], nginx)
        assert got == spans(data, [ext])
        assert bool(ranges) is from_server, ext


def test_a_read_too_big_for_the_cache_streams_past_it(
    pack: tuple[PackHandle, bytes], nginx: Nginx
) -> None:
    handle, data = pack
    capacity = 64 * 1024
    cache = BlockCache(capacity)
    small = [Extent(1_000, 3_000), Extent(150_000, 152_000)]
    read(cache, handle, small, nginx)
    held = cache.size
    big = [Extent(40_000, 40_000 + int(capacity * STREAM_RATIO) + 1)]
    got, ranges = read(cache, handle, big, nginx)
    assert got == spans(data, big) and ranges
    assert cache.size == held  # nothing of it kept, nothing pushed out
    got, ranges = read(cache, handle, small, nginx)
    assert got == spans(data, small) and ranges == []
    # A big read still takes what the cache holds: only its holes go to the server.
    wide = [Extent(0, 40_000)]
    misses = cache.misses
    got, ranges = read(cache, handle, wide, nginx)
    assert got == spans(data, wide)
    assert cache.misses - misses == 40_000 - 2_000
    assert cache.size == held
    # Just under the share, a read is kept.
    fits = [Extent(60_000, 60_000 + int(capacity * STREAM_RATIO) - 1)]
    read(cache, handle, fits, nginx)
    assert cache.size == held + fits[0].length
