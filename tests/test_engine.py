"""Fetch-engine regressions found with real git."""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Published, stop_daemon

from lazygit.fetch import FetchStats
from lazygit.packwriter import OBJ_BLOB, OFS_DELTA, REF_DELTA, PackWriter, parse_entry_header

ENV = {**os.environ, "LC_ALL": "C"}


def run(repo: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(repo), "--no-pager", *args], capture_output=True, env=ENV, check=True
    ).stdout


def test_thin_batches_never_name_in_pack_bases_by_id(large: Published, nginx, tmp_path: Path):
    """blame, then log -p on the same clone: the second batch mixes deltas against local
    bases (a thin pack) with deltas whose base comes in the same batch from another server
    pack.  git 2.39's index-pack --fix-thin would try to fetch such bases lazily if they were
    named by id, so the writer must name them by offset."""
    dest = tmp_path / "lazy"
    subprocess.run(
        ["lazygit", "clone", "-q", "--no-checkout", nginx.url(large.name), str(dest)], check=True
    )
    try:
        hot = large.info.hot_file
        assert run(dest, "blame", "HEAD", "--", hot) == run(large.full, "blame", "HEAD", "--", hot)
        assert run(dest, "log", "-p", "-300") == run(large.full, "log", "-p", "-300")
        subprocess.run(
            ["git", "-C", str(dest), "fsck"], check=True, env={**ENV, "GIT_NO_LAZY_FETCH": "1"}
        )
    finally:
        stop_daemon(dest / ".git")


def _entry(type_num: int, size: int, tail: bytes) -> bytes:
    """A pack entry header (type/size varint) followed by ``tail``."""
    c = (type_num << 4) | (size & 15)
    size >>= 4
    out = bytearray()
    while size:
        out.append(c | 0x80)
        c = size & 0x7F
        size >>= 7
    out.append(c)
    return bytes(out) + tail


def test_writer_turns_in_pack_ref_delta_into_ofs_delta():
    base_oid, other = b"\x11" * 20, b"\x22" * 20
    out = io.BytesIO()
    w = PackWriter(out, 3)
    w.add_entry("A", 100, _entry(OBJ_BLOB, 3, b"zz"), lambda off: base_oid, oid=base_oid)
    # A REF_DELTA (from another server pack) naming the blob just written: becomes OFS.
    w.add_entry("B", 50, _entry(REF_DELTA, 3, base_oid + b"dd"), lambda off: other)
    # An OFS_DELTA whose base (by offset in pack C) is not here but whose id is: OFS too.
    w.add_entry("C", 900, _entry(OFS_DELTA, 3, b"\x10" + b"dd"), lambda off: base_oid)
    w.finish()
    data = out.getvalue()
    first = 12
    second = first + len(_entry(OBJ_BLOB, 3, b"zz"))
    h2 = parse_entry_header(data[second:])
    assert h2.type == OFS_DELTA and h2.base_distance == second - first
    third = second + h2.header_len + 2
    h3 = parse_entry_header(data[third:])
    assert h3.type == OFS_DELTA and h3.base_distance == third - first
    assert not w.thin


def test_bases_come_first_also_when_read_from_another_server_pack():
    """The writer's order puts each spooled base before its deltas.  A delta names its base
    by offset in its own pack (OFS) or by id (REF, located in any pack); an object stored in
    two server packs is read once, so the base may sit in the batch at another pack's key."""
    from types import SimpleNamespace

    from lazygit.fetch import FetchEngine

    x, w, d1, d2 = (bytes([i]) * 20 for i in (1, 2, 3, 4))
    oids = {(0, 50): d1, (0, 60): d2, (0, 20): x, (1, 10): w, (1, 30): x}
    pack = [SimpleNamespace(pack=SimpleNamespace(oid_at=lambda o, p=p: oids[(p, o)]))
            for p in (0, 1)]  # fmt: skip
    engine = FetchEngine.__new__(FetchEngine)
    engine.catalog = SimpleNamespace(packs=pack)  # type: ignore[assignment]
    spooled = {(0, 50): (0, 1), (0, 60): (1, 1), (1, 10): (2, 1), (1, 30): (3, 1)}
    engine._queued = {d1, d2, x, w}
    # d1: REF to w, located in pack 1.  d2: OFS to pack 0's copy of x, which was read from
    # pack 1 (x was queued there first).
    engine._base_oids = {(0, 50): w, (0, 60): x}
    engine._base_keys = {(0, 50): (1, 10), (0, 60): (0, 20)}
    assert engine._base_first_order(spooled) == [(1, 10), (0, 50), (1, 30), (0, 60)]
    # A base that is local is no constraint: the writer names it by id.
    engine._queued = {d1, d2, w}
    del spooled[(1, 30)]
    assert engine._base_first_order(spooled) == [(0, 60), (1, 10), (0, 50)]


def test_fetch_of_a_large_push_reads_commits_and_trees_not_its_blobs(
    small: Published, server_root: Path, nginx, tmp_path: Path
):
    """git fetch after a push kept as a pack without bitmap: a header scan finds its commits
    and trees; its blobs stay on the server until git needs them."""
    import random
    import shutil

    bare = server_root / "engine-push.git"
    shutil.copytree(small.info.path, bare)
    dest = tmp_path / "lazy"
    subprocess.run(
        ["lazygit", "clone", "-q", "--no-checkout", nginx.url(bare.name), str(dest)], check=True
    )
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True)
    (work / "big.bin").write_bytes(random.Random(5).randbytes(600_000))
    run(work, "add", "big.bin")
    run(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "big")
    run(bare, "config", "receive.unpackLimit", "1")  # keep the push as a pack
    run(work, "push", "-q", "origin", "HEAD:main")
    run(bare, "update-server-info")
    new_commit = run(work, "rev-parse", "HEAD").decode().strip()
    big_blob = run(work, "rev-parse", "HEAD:big.bin").decode().strip()
    try:
        run(dest, "config", "lazygit.smallPackBytes", "1k")
        nginx.clear_log()
        run(dest, "fetch", "-q", "origin")
        read = sum(e.bytes for e in nginx.log_entries() if e.path.endswith(".pack"))
        assert run(dest, "rev-parse", "origin/main").decode().strip() == new_commit
        have = subprocess.run(
            [
                "git",
                "-C",
                str(dest),
                "cat-file",
                "--batch-all-objects",
                "--batch-check=%(objectname)",
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**ENV, "GIT_NO_LAZY_FETCH": "1"},
        ).stdout.split()
        assert big_blob not in have and new_commit in have
        assert read < 100_000, read  # the 600 kB blob was not read
        assert run(dest, "cat-file", "-p", big_blob) == (work / "big.bin").read_bytes()
    finally:
        stop_daemon(dest / ".git")


def _copy_and_clone(small: Published, bare: Path, nginx, tmp_path: Path) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A copy of SMALL's server repository at ``bare`` and a --no-checkout lazy clone of it."""
    import shutil

    shutil.rmtree(bare, ignore_errors=True)
    shutil.copytree(small.info.path, bare, symlinks=True)
    dest = tmp_path / "lazy"
    subprocess.run(
        ["lazygit", "clone", "-q", "--no-checkout", nginx.url(bare.name), str(dest)], check=True
    )
    return bare, dest


def test_lazy_fetch_follows_a_server_repack(
    small: Published, server_root: Path, nginx, tmp_path: Path
) -> None:
    """The server runs `git repack -a -d` (as `git gc` does) after the clone: the packs the
    clone knew are gone.  A lazy fetch re-reads the pack list and reads from the new pack;
    the cached indexes of the old packs are removed."""
    bare, dest = _copy_and_clone(small, server_root / "engine-repack.git", nginx, tmp_path)
    cache = dest / ".git" / "lazygit" / "packs"
    old = {p.stem for p in cache.glob("pack-*.idx")}
    missing = [
        ln[1:]
        for ln in subprocess.run(
            ["git", "-C", str(dest), "rev-list", "--objects", "--missing=print", "HEAD~5"],
            capture_output=True,
            text=True,
            check=True,
            env={**ENV, "GIT_NO_LAZY_FETCH": "1"},
        ).stdout.splitlines()
        if ln.startswith("?")
    ][:3]
    assert missing
    run(bare, "repack", "-a", "-d", "-q")
    run(bare, "update-server-info")
    new = {p.stem for p in (bare / "objects" / "pack").glob("pack-*.pack")}
    assert not new & old
    try:
        for oid in missing:
            assert run(dest, "cat-file", "-p", oid) == run(bare, "cat-file", "-p", oid)
        log = (dest / ".git" / "lazygit" / "daemon.log").read_text()
        assert log.count("pack list re-read") == 1, log
        assert {p.stem for p in cache.glob("pack-*.idx")} == new
        assert not [p for p in cache.iterdir() if any(p.name.startswith(o) for o in old)]
        doc = json.loads((dest / ".git" / "lazygit" / "catalog.json").read_text())
        assert {p["name"] for p in doc["packs"]} == new
    finally:
        stop_daemon(dest / ".git")


def _fetch_head_tree(
    large: Published, nginx, dest: Path, via: Callable[[str], str] = str
) -> tuple[FetchStats, list[str]]:
    """A --no-checkout lazy clone of LARGE (daemon stopped) and one FetchEngine batch of its
    HEAD tree's blobs, read through the URL ``via`` makes of the server's; (stats, ls-tree)."""
    from lazygit.catalog import Catalog
    from lazygit.config import Settings
    from lazygit.fetch import FetchEngine
    from lazygit.localrepo import LocalRepo
    from lazygit.remote import DumbRemote

    subprocess.run(
        ["lazygit", "clone", "-q", "--no-checkout", nginx.url(large.name), str(dest)], check=True
    )
    git_dir = dest / ".git"
    stop_daemon(git_dir)
    listing = run(dest, "ls-tree", "-r", "HEAD").decode().splitlines()
    blobs = [bytes.fromhex(ln.split()[2]) for ln in listing if ln.split()[1] == "blob"]
    settings = Settings.load(git_dir)
    repo = LocalRepo(git_dir, None)
    catalog = Catalog.open(repo.state_dir, lambda u: DumbRemote(via(u), settings, git_dir=git_dir))
    try:
        return FetchEngine(catalog, repo, settings).fetch(blobs), listing
    finally:
        for remote in catalog.remotes():
            remote.close()


def _checks_out_as_full(large: Published, dest: Path, listing: list[str]) -> None:
    """With lazy fetching off: the tree checks out equal to a full clone's, fsck is clean,
    and git sees no partial pack."""
    pack_dir = dest / ".git" / "objects" / "pack"
    assert all(p.with_suffix(".idx").exists() for p in pack_dir.glob("pack-*.pack"))
    no_fetch = {**ENV, "GIT_NO_LAZY_FETCH": "1"}
    subprocess.run(["git", "-C", str(dest), "checkout", "-q", "HEAD", "--", "."], check=True,
                   env=no_fetch)  # fmt: skip
    for ln in listing[:: max(1, len(listing) // 50)]:
        path = ln.split("\t", 1)[1]
        assert (dest / path).read_bytes() == (large.full / path).read_bytes(), path
    subprocess.run(["git", "-C", str(dest), "fsck"], check=True, env=no_fetch)


def test_a_big_batch_lands_as_two_packs_of_whole_delta_families(
    large: Published, nginx, tmp_path: Path
) -> None:
    """A batch of SPLIT_BATCH_OBJECTS or more is indexed as two packs at once.  Nothing is
    local to base a delta on, so each pack must hold whole delta families: a delta whose
    base went to the other pack would leave index-pack --fix-thin an unresolved delta."""
    from lazygit.fetch import SPLIT_BATCH_OBJECTS

    dest = tmp_path / "lazy"
    stats, listing = _fetch_head_tree(large, nginx, dest)
    assert stats.objects >= SPLIT_BATCH_OBJECTS
    assert len(stats.packs) == 2
    for name in stats.packs:
        pack = dest / ".git" / "objects" / "pack" / name
        assert pack.with_suffix(".idx").exists() and pack.with_suffix(".promisor").exists()
    _checks_out_as_full(large, dest, listing)


def test_a_damaged_half_of_a_big_batch_stops_both_and_is_read_again(
    large: Published, nginx, tmp_path: Path
) -> None:
    """Bytes flipped in one response of a two-pack batch: that pack's index-pack rejects
    them, the other pack's writer stops, and the batch is read once more (intact now).  No
    temporary file is left (git 2.39's index-pack leaves its tmp_pack_* when it rejects data
    or is stopped: it runs in a staging directory), and what landed is what a full clone
    has."""
    from faultproxy import FaultProxy, Rule

    dest = tmp_path / "lazy"
    with FaultProxy(nginx.port) as proxy:
        proxy.rules = [Rule("flip", path=r"\.pack$", nth={3})]
        stats, listing = _fetch_head_tree(
            large, nginx, dest, lambda u: u.replace(nginx.url(""), proxy.url(""))
        )
        assert proxy.fired["flip"] == 1
    assert len(stats.packs) == 2
    pack_dir = dest / ".git" / "objects" / "pack"
    assert not [p.name for p in pack_dir.iterdir() if p.name.startswith("tmp_")]
    assert not list((dest / ".git" / "lazygit" / "tmp").iterdir())
    _checks_out_as_full(large, dest, listing)


def test_a_pack_lands_across_file_systems(tmp_path: Path) -> None:
    """objects/ on another file system than .git/lazygit/tmp (a symlinked object store):
    the staged pack is copied beside its target and renamed, the .idx last."""
    import shutil
    import tempfile

    from lazygit.localrepo import LocalRepo

    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a file system of its own")
    objects = Path(tempfile.mkdtemp(dir=shm, prefix="lazygit-test-objects-"))
    try:
        git_dir = tmp_path / "repo.git"
        subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True)
        shutil.rmtree(git_dir / "objects")
        (objects / "pack").mkdir()
        (git_dir / "objects").symlink_to(objects)
        staged = tmp_path / "stage"
        staged.mkdir()
        for suffix in (".idx", ".pack", ".promisor"):
            (staged / f"pack-1234{suffix}").write_bytes(suffix.encode())
        LocalRepo(git_dir, None)._land(staged, "pack-1234")
        landed = {p.name: p.read_bytes() for p in (objects / "pack").iterdir()}
        assert landed == {f"pack-1234{s}": s.encode() for s in (".idx", ".pack", ".promisor")}
    finally:
        shutil.rmtree(objects, ignore_errors=True)


def test_objects_new_on_the_server_are_found_loose_or_in_new_packs(
    small: Published, server_root: Path, nginx, tmp_path: Path
) -> None:
    """An object in no pack the clone knew is asked for as a loose object first, while the
    known packs are read: that is where small pushes leave them, and objects/info/packs is
    then not read at all (it was read before anything else, a round trip in a row).  Only
    an object not found loose sends the daemon to the pack list, as one in a pushed pack."""
    import random

    bare, dest = _copy_and_clone(small, server_root / "engine-new-objects.git", nginx, tmp_path)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True)
    author = ["-c", "user.name=t", "-c", "user.email=t@t"]
    blobs = {}
    for name, unpack_limit in (("loose.bin", "100"), ("packed.bin", "1")):
        (work / name).write_bytes(random.Random(name).randbytes(5_000))
        run(work, "add", name)
        run(work, *author, "commit", "-qm", name)
        run(bare, "config", "receive.unpackLimit", unpack_limit)
        run(work, "push", "-q", "origin", "HEAD:main")
        blobs[name] = run(work, "rev-parse", f"HEAD:{name}").decode().strip()
    run(bare, "update-server-info")
    try:
        for name in ("loose.bin", "packed.bin"):
            nginx.clear_log()
            assert run(dest, "cat-file", "-p", blobs[name]) == (work / name).read_bytes()
            lists = [e for e in nginx.log_entries() if e.path.endswith("/objects/info/packs")]
            assert len(lists) == (name == "packed.bin"), (name, lists)
        run(dest, "fsck")
    finally:
        stop_daemon(dest / ".git")
