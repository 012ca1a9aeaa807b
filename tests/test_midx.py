"""A server whose packs have their types in a multi-pack-index bitmap, not their own .bitmap.

Real parts: repositories laid out by git itself (`git repack --write-midx -b`, `git
multi-pack-index write --bitmap --preferred-pack`), nginx on 127.0.0.1, the lazygit CLI, the
daemon. Every type lazygit takes from a MIDX bitmap is checked against `git cat-file`.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import Published, stop_daemon
from servers import Nginx

from lazygit import midx
from lazygit.catalog import Catalog
from lazygit.config import Settings
from lazygit.errors import CorruptDataError
from lazygit.packmeta import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG, OBJ_TREE, PackTypes, ServerPack
from lazygit.prepare import analyze
from lazygit.remote import DumbRemote

ENV = {**os.environ, "GIT_NO_LAZY_FETCH": "1", "LC_ALL": "C"}
AUTHOR = ["-c", "user.name=t", "-c", "user.email=t@t"]
TYPES = {"commit": OBJ_COMMIT, "tree": OBJ_TREE, "blob": OBJ_BLOB, "tag": OBJ_TAG}


@pytest.fixture(scope="module")
def nginx(module_nginx: Nginx) -> Nginx:
    """This module's own nginx: the request counts below see only this module's requests."""
    return module_nginx


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, env=ENV, check=True, input=input
    )
    return out.stdout.decode()


def pack_dir(bare: Path) -> Path:
    return bare / "objects" / "pack"


def types_by_git(bare: Path, name: str) -> list[int]:
    """Each object's type in pack order, as git tells it."""
    rows = git(bare, "show-index", input=(pack_dir(bare) / f"{name}.idx").read_bytes())
    oids = [
        oid for _off, oid in sorted((int(r.split()[0]), r.split()[1]) for r in rows.splitlines())
    ]
    kinds = git(
        bare, "cat-file", "--batch-check=%(objecttype)", input="\n".join(oids).encode() + b"\n"
    )
    return [TYPES[k] for k in kinds.split()]


def meta_bytes(bare: Path, name: str) -> int:
    """The bytes of a pack's commits, trees and tags, as stored."""
    rows = git(bare, "show-index", input=(pack_dir(bare) / f"{name}.idx").read_bytes())
    offsets = sorted(int(r.split()[0]) for r in rows.splitlines())
    ends = [*offsets[1:], (pack_dir(bare) / f"{name}.pack").stat().st_size - 20]
    kinds = types_by_git(bare, name)
    return sum(b - a for a, b, k in zip(offsets, ends, kinds, strict=True) if k != OBJ_BLOB)


def expand(types: PackTypes, n: int) -> list[int]:
    out = [0] * n
    for num, runs in types.by_type().items():
        for a, b in runs:
            out[a:b] = [num] * (b - a)
    return out


def push_commits(bare: Path, tmp_path: Path, label: str, count: int) -> None:
    """``count`` commits pushed to ``bare``, then packed by themselves (as a server that
    repacks incrementally, e.g. `git maintenance`, leaves them)."""
    work = tmp_path / f"work-{label}"
    if not work.exists():
        git(tmp_path, "clone", "-q", str(bare), str(work))
    for i in range(count):
        (work / f"{label}-{i}.txt").write_text(f"{label} {i}\n")
        git(work, "add", ".")
        git(work, *AUTHOR, "commit", "-q", "-m", f"{label} {i}")
    git(work, "push", "-q", "origin", "HEAD")
    git(bare, "repack", "-q", "-d")


def midx_server(small: Published, server_root: Path, tmp_path: Path, name: str) -> Path:
    """SMALL as one gc'd pack without a bitmap, plus two pushed packs, under a MIDX with a
    bitmap whose preferred pack is not the first by name."""
    bare = server_root / name
    git(tmp_path, "clone", "-q", "--bare", "--no-local", str(small.full), str(bare))
    git(bare, "-c", "repack.writeBitmaps=false", "repack", "-q", "-a", "-d")
    push_commits(bare, tmp_path, "one", 3)
    push_commits(bare, tmp_path, "two", 2)
    packs = sorted(p.name for p in pack_dir(bare).glob("pack-*.pack"))
    assert len(packs) == 3 and not list(pack_dir(bare).glob("pack-*.bitmap"))
    git(bare, "multi-pack-index", "write", "--bitmap", f"--preferred-pack={packs[-1]}")
    git(bare, "update-server-info")
    assert list(pack_dir(bare).glob("multi-pack-index-*.bitmap"))
    return bare


def lazy_clone(nginx: Nginx, bare: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["lazygit", "clone", "--no-checkout", nginx.url(bare.name), str(dest)],
        capture_output=True,
        text=True,
    )


def test_a_clone_takes_the_types_of_packs_from_the_midx_bitmap(
    small: Published, server_root: Path, nginx: Nginx, tmp_path: Path
) -> None:
    """No header scan: the packs' commits and trees are read by range, as with pack bitmaps,
    and every type lazygit took from the MIDX bitmap is git's."""
    bare = midx_server(small, server_root, tmp_path, "midx-multi.git")
    # `lazygit prepare --check` and `lazygit doctor` say what the clone does.
    assert {p.method for p in analyze(bare).packs} == {"ranges"}
    doctor = subprocess.run(
        ["lazygit", "doctor", nginx.url(bare.name)], capture_output=True, text=True
    ).stdout
    assert "OK   bitmaps: all 3 packs have a bitmap (3 by the multi-pack-index bitmap)" in doctor
    dest = tmp_path / "lazy"
    nginx.clear_log()
    out = lazy_clone(nginx, bare, dest)
    try:
        assert out.returncode == 0, out.stderr
        entries = nginx.log_entries()
        big = max(pack_dir(bare).glob("pack-*.pack"), key=lambda p: p.stat().st_size)
        big_reads = [e for e in entries if e.path.endswith(big.name) and e.method == "GET"]
        # Its commits and trees by range, as with a pack bitmap (the bound), where a
        # header scan read every entry's head.
        read = sum(e.bytes for e in big_reads)
        assert read <= 1.15 * meta_bytes(bare, big.stem) + 64 * 1024, read
        assert [e.path.rsplit("/", 1)[1] for e in entries if "multi-pack-index" in e.path][:1] == [
            "multi-pack-index"
        ]
        git(dest, "fsck")
        full = tmp_path / "full"
        git(tmp_path, "clone", "-q", "--bare", "--no-local", str(bare), str(full))
        fmt = "--format=%H %T"
        assert git(dest, "log", "--all", fmt) == git(full, "log", "--all", fmt)
        # What the daemon loads at its start: every pack has git's types.
        stop_daemon(dest / ".git")
        assert_types_are_gits(dest, bare)
        # And blobs come on demand from those packs.
        shown = subprocess.run(
            ["git", "-C", str(dest), "log", "-p", "-3"], capture_output=True, check=True
        ).stdout
        assert (
            shown
            == subprocess.run(
                ["git", "-C", str(full), "log", "-p", "-3"], capture_output=True, check=True
            ).stdout
        )
    finally:
        stop_daemon(dest / ".git")


def assert_types_are_gits(dest: Path, bare: Path) -> None:
    """The clone's cached catalog, as a daemon opens it: every pack has git's types."""
    settings = Settings.load(dest / ".git")
    catalog = Catalog.open(dest / ".git" / "lazygit", lambda u: DumbRemote(u, settings))
    try:
        assert len(catalog.packs) == 3 and len(catalog.midx) == 1
        for h in catalog.packs:
            assert h.pack.types is not None, h.name
            assert expand(h.pack.types, len(h.pack)) == types_by_git(bare, h.name), h.name
    finally:
        for r in catalog.remotes():
            r.close()


def test_a_midx_of_git_before_2_35_has_its_reverse_index_in_a_rev_file(
    small: Published, server_root: Path, nginx: Nginx, tmp_path: Path
) -> None:
    bare = midx_server(small, server_root, tmp_path, "midx-rev.git")
    without_ridx_chunk(bare)
    assert {p.method for p in analyze(bare).packs} == {"ranges"}
    dest = tmp_path / "lazy"
    nginx.clear_log()
    subprocess.run(
        ["lazygit", "clone", "-q", "--no-checkout", nginx.url(bare.name), str(dest)], check=True
    )
    try:
        stop_daemon(dest / ".git")
        assert [e.path for e in nginx.log_entries() if e.path.endswith(".rev")]
        git(dest, "fsck")
        assert_types_are_gits(dest, bare)
    finally:
        stop_daemon(dest / ".git")


def test_a_midx_with_an_object_in_two_packs_is_not_used(
    small: Published, server_root: Path, nginx: Nginx, tmp_path: Path
) -> None:
    """Duplicates shift the bits of every later pack: the packs are scanned instead (with
    the warning), and the clone is as right as ever."""
    bare = midx_server(small, server_root, tmp_path, "midx-dup.git")
    head = git(bare, "rev-parse", "HEAD").strip()
    git(bare, "pack-objects", "-q", str(pack_dir(bare) / "pack"), input=f"{head}\n".encode())
    for stale in pack_dir(bare).glob("multi-pack-index*"):
        stale.unlink()
    git(bare, "multi-pack-index", "write", "--bitmap")
    git(bare, "update-server-info")
    data = (pack_dir(bare) / "multi-pack-index").read_bytes()
    head_info = midx.parse_head(data[: midx.HEAD_GUESS], len(data))
    assert head_info is not None
    (count,) = struct.unpack_from(">I", data, head_info.count_at)
    total = sum(
        len(ServerPack.from_idx(p.stem, p.read_bytes(), p.with_suffix(".pack").stat().st_size))
        for p in pack_dir(bare).glob("pack-*.idx")
    )
    assert total == count + 1  # the commit is in two packs
    big = max(pack_dir(bare).glob("pack-*.pack"), key=lambda p: p.stat().st_size)
    assert {p.name: p.method for p in analyze(bare).packs}[big.stem] == "header scan"
    dest = tmp_path / "lazy"
    nginx.clear_log()
    out = lazy_clone(nginx, bare, dest)
    try:
        assert out.returncode == 0, out.stderr
        read = sum(e.bytes for e in nginx.log_entries() if e.path.endswith(big.name))
        assert read > 1.15 * meta_bytes(bare, big.stem) + 64 * 1024  # scanned
        git(dest, "fsck")
        assert json.loads((dest / ".git" / "lazygit" / "catalog.json").read_text())["midx"] == []
    finally:
        stop_daemon(dest / ".git")


def without_ridx_chunk(bare: Path) -> None:
    """Rewrite the MIDX as git before 2.35 wrote it: no RIDX chunk, the reverse index in
    ``multi-pack-index-<checksum>.rev`` (git 2.39 cannot write this any more)."""
    pdir = pack_dir(bare)
    data = (pdir / "multi-pack-index").read_bytes()
    head = midx.parse_head(data, len(data))
    assert head is not None and head.ridx_at is not None
    old_sum = data[-20:]
    n_chunks = len(head.chunks)
    ridx_start, ridx_end = head.chunks[b"RIDX"]
    ridx = data[ridx_start:ridx_end]
    kept = [(cid, span) for cid, span in head.chunks.items() if cid != b"RIDX"]
    table_len = 12 * n_chunks  # one entry fewer, the terminator kept
    shift = -12
    body = b"".join(data[a:b] for _cid, (a, b) in kept)
    table = b"".join(
        struct.pack(">4sQ", cid, a + shift - (ridx_end - ridx_start if a > ridx_start else 0))
        for cid, (a, _b) in kept
    )
    end = 12 + table_len + len(body)
    table += struct.pack(">4sQ", b"\0\0\0\0", end)
    new = data[:6] + bytes([n_chunks - 1]) + data[7:12] + table + body
    new_sum = hashlib.sha1(new).digest()
    (pdir / "multi-pack-index").write_bytes(new + new_sum)
    bitmap = pdir / f"multi-pack-index-{old_sum.hex()}.bitmap"
    content = bytearray(bitmap.read_bytes())
    content[12:32] = new_sum
    bitmap.unlink()
    (pdir / f"multi-pack-index-{new_sum.hex()}.bitmap").write_bytes(bytes(content))
    rev = b"RIDX" + struct.pack(">II", 1, 1) + ridx + new_sum
    (pdir / f"multi-pack-index-{new_sum.hex()}.rev").write_bytes(rev + hashlib.sha1(rev).digest())


def test_midx_head_parsing() -> None:
    """What lazygit does not use is None; what is not a MIDX is an error."""
    with pytest.raises(CorruptDataError):
        midx.parse_head(b"PACK" + bytes(20), 100)
    sha256 = b"MIDX" + struct.pack(">BBBBI", 1, 2, 0, 0, 1) + bytes(12)
    assert midx.parse_head(sha256, 200) is None
    incremental = b"MIDX" + struct.pack(">BBBBI", 1, 1, 0, 1, 1) + bytes(12)
    assert midx.parse_head(incremental, 200) is None
    # A chunk that ends past the trailer.
    table = struct.pack(">4sQ", b"PNAM", 24) + struct.pack(">4sQ", b"\0\0\0\0", 500)
    with pytest.raises(CorruptDataError):
        midx.parse_head(b"MIDX" + struct.pack(">BBBBI", 1, 1, 1, 0, 1) + table, 100)
    with pytest.raises(CorruptDataError):
        midx.parse_pack_names(b"pack-b.idx\0pack-a.idx\0", 2)  # not sorted
    assert midx.parse_pack_names(b"pack-a.idx\0pack-b.idx\0\0\0", 2) == ["pack-a", "pack-b"]


def test_split_types_cuts_runs_at_pack_boundaries() -> None:
    types = PackTypes(commits=[(0, 3), (7, 9)], trees=[(3, 7)], blobs=[(9, 12)], tags=[])
    one, two = midx.split_types(types, [5, 7])
    assert (one.commits, one.trees, one.blobs) == ([(0, 3)], [(3, 5)], [])
    assert (two.commits, two.trees, two.blobs) == ([(2, 4)], [(0, 2)], [(4, 7)])
