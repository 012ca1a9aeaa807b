"""packmeta against real git packs: .idx parsing vs `git show-index` / `git verify-pack -v`,
.bitmap type runs vs the real object types and dulwich's per-bit EWAH decoder."""

from __future__ import annotations

import hashlib
import itertools
import mmap
import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from dulwich.bitmap import EWAHBitmap
from hypothesis import given, settings
from hypothesis import strategies as st

from lazygit.errors import CorruptDataError
from lazygit.packmeta import (
    IdxFile,
    PackTypes,
    ServerPack,
    bitmap_head_needed,
    decode_ewah_runs,
    find_oid,
    merge_runs,
    parse_bitmap_types,
)
from lazygit.ranges import Extent

TYPE_NUMS = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}


def git(*args: str, cwd: Path, input: bytes | None = None) -> bytes:
    """Run git isolated from user config; fail loudly."""
    env = dict(os.environ, GIT_NO_LAZY_FETCH="1", GIT_CONFIG_NOSYSTEM="1")
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    proc = subprocess.run(
        ["git", *args], cwd=cwd, input=input, env=env, capture_output=True, check=False
    )
    assert proc.returncode == 0, f"git {args}: {proc.stderr.decode()}"
    return proc.stdout


def fast_import_stream(commits: int) -> bytes:
    """A history with slowly changing files (deltas), subdirectories and annotated tags."""
    out: list[bytes] = []
    for i in range(commits):
        msg = f"commit {i}\n".encode()
        out.append(b"commit refs/heads/main\n")
        out.append(f"mark :{i + 1}\n".encode())
        out.append(f"committer A U Thor <a@example.com> {1_600_000_000 + i} +0000\n".encode())
        out.append(b"data %d\n%s" % (len(msg), msg))
        for k in range(3):
            path = f"dir{(i + k) % 5}/sub{k}/file{(i * 3 + k) % 11}.txt"
            body = "".join(f"line {j} of {path}\n" for j in range(60))
            body += f"change {i} {k}\n"
            data = body.encode()
            out.append(f"M 644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
        out.append(b"\n")
        if i % 100 == 50:
            tag_msg = f"tag at {i}\n".encode()
            out.append(f"tag v{i}\nfrom :{i + 1}\n".encode())
            out.append(f"tagger A U Thor <a@example.com> {1_600_000_000 + i} +0000\n".encode())
            out.append(b"data %d\n%s\n" % (len(tag_msg), tag_msg))
    return b"".join(out)


@dataclass
class Entry:
    oid: bytes
    type: int  # resolved type 1-4
    size_in_pack: int
    offset: int
    base: bytes | None  # delta base oid


@dataclass
class RealPack:
    repo: Path
    pack: Path
    idx: Path
    bitmap: Path | None
    entries: list[Entry]  # in offset order

    @property
    def name(self) -> str:
        return self.pack.stem

    def server_pack(self) -> ServerPack:
        return ServerPack.from_idx(self.name, self.idx.read_bytes(), self.pack.stat().st_size)


def verify_pack(repo: Path, idx: Path) -> list[Entry]:
    """`git verify-pack -v`, parsed, in offset order."""
    entries = []
    for line in git("verify-pack", "-v", str(idx), cwd=repo).decode().splitlines():
        f = line.split()
        if len(f) in (5, 7) and len(f[0]) == 40 and f[1] in TYPE_NUMS:
            base = bytes.fromhex(f[6]) if len(f) == 7 else None
            entries.append(Entry(bytes.fromhex(f[0]), TYPE_NUMS[f[1]], int(f[3]), int(f[4]), base))
    entries.sort(key=lambda e: e.offset)
    return entries


def make_pack(root: Path, commits: int, repack: tuple[str, ...]) -> RealPack:
    repo = root / "server.git"
    git("init", "-q", "--bare", str(repo), cwd=root)
    git("fast-import", "--quiet", cwd=repo, input=fast_import_stream(commits))
    git(*repack, cwd=repo)
    packs = sorted((repo / "objects" / "pack").glob("pack-*.pack"))
    assert len(packs) == 1
    pack = packs[0]
    bitmap = pack.with_suffix(".bitmap")
    return RealPack(
        repo,
        pack,
        pack.with_suffix(".idx"),
        bitmap if bitmap.exists() else None,
        verify_pack(repo, pack.with_suffix(".idx")),
    )


@pytest.fixture(scope="module")
def gc_pack(tmp_path_factory: pytest.TempPathFactory) -> RealPack:
    """A bare repo after `git gc` (bitmap written by default in bare repos)."""
    p = make_pack(tmp_path_factory.mktemp("gc"), 300, ("gc", "--quiet"))
    assert p.bitmap is not None
    return p


@pytest.fixture(scope="module")
def f_pack(tmp_path_factory: pytest.TempPathFactory) -> RealPack:
    """An aggressive repack with a bitmap (commits and trees contiguous)."""
    p = make_pack(tmp_path_factory.mktemp("f"), 120, ("repack", "-adfb", "-q"))
    assert p.bitmap is not None
    return p


def show_index(repo: Path, idx: Path) -> dict[bytes, int]:
    out = git("show-index", cwd=repo, input=idx.read_bytes()).decode()
    return {bytes.fromhex(f[1]): int(f[0]) for f in (ln.split() for ln in out.splitlines())}


# ---------------------------------------------------------------------------------------
# .idx


def check_against_git(sp: ServerPack, real: RealPack, idx: Path) -> None:
    entries = real.entries
    assert len(sp) == len(entries)
    assert sp.checksum == bytes.fromhex(real.name[len("pack-") :])
    size = real.pack.stat().st_size
    shown = show_index(real.repo, idx)
    assert len(shown) == len(entries)
    for oid, off in shown.items():
        assert sp.offset_of(oid) == off
    for pos, e in enumerate(entries):
        assert sp.oid_at(e.offset) == e.oid
        assert sp.position_of_offset(e.offset) == pos
        assert sp.offset_at_position(pos) == e.offset
        ext = sp.extent_at(e.offset)
        assert ext == Extent(e.offset, e.offset + e.size_in_pack)
    assert entries[-1].offset + entries[-1].size_in_pack == size - 20


def test_from_idx_matches_git(gc_pack: RealPack) -> None:
    sp = gc_pack.server_pack()
    check_against_git(sp, gc_pack, gc_pack.idx)
    assert sp.offset_of(b"\x00" * 20) is None
    assert sp.offset_of(b"\xff" * 20) is None
    with pytest.raises(KeyError):
        sp.oid_at(gc_pack.entries[0].offset + 1)
    with pytest.raises(KeyError):
        sp.extent_at(5)


def test_idx_v1_and_large_offsets(gc_pack: RealPack, tmp_path: Path) -> None:
    """v1 idx and a v2 idx with every offset above 256 in the 64-bit table parse alike."""
    for n, version in enumerate(("1", "2,0x100")):
        idx = tmp_path / f"v{n}.idx"
        git("index-pack", f"--index-version={version}", "-o", str(idx), str(gc_pack.pack),
            cwd=tmp_path)  # fmt: skip
        data = idx.read_bytes()
        if version == "1":
            assert data[:4] != b"\377tOc"
        else:
            n_large = (len(data) - 8 - 1024 - 28 * len(gc_pack.entries) - 40) // 8
            assert n_large == sum(1 for e in gc_pack.entries if e.offset > 0x100)
        sp = ServerPack.from_idx(gc_pack.name, data, gc_pack.pack.stat().st_size)
        check_against_git(sp, gc_pack, idx)
        # The daemon maps the cached idx instead of reading it: the same pack view.
        with open(idx, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            mapped = ServerPack.from_idx(gc_pack.name, m, gc_pack.pack.stat().st_size)
            check_against_git(mapped, gc_pack, idx)
            assert mapped.rev_bytes() == sp.rev_bytes()
            del mapped  # its names live in the map, which closes here


def test_oid_lookup_agrees_with_dulwich(gc_pack: RealPack, tmp_path: Path) -> None:
    """ServerPack and IdxFile (v1 and v2) find every object dulwich's index finds, at the
    same offset, and none of a thousand random ids or the ids' neighbours."""
    from dulwich.object_format import SHA1
    from dulwich.pack import load_pack_index

    oracle = load_pack_index(str(gc_pack.idx), SHA1)
    sp = gc_pack.server_pack()
    files = [IdxFile(str(gc_pack.idx))]
    v1 = tmp_path / "v1.idx"
    git("index-pack", "--index-version=1", "-o", str(v1), str(gc_pack.pack), cwd=tmp_path)
    files.append(IdxFile(str(v1)))
    oids = [oid for oid, *_ in oracle.iterentries()]
    names = b"".join(oids)
    fanout = [sum(1 for o in oids if o[0] <= b) for b in range(256)]
    for oid in oids:
        assert sp.offset_of(oid) == oracle.object_offset(oid)
        assert all(oid in f for f in files)
        # A huge pack's buckets are halved by binary search first: the same answers.
        assert find_oid(names, fanout, oid, scan=1) == oids.index(oid)
    strangers = [os.urandom(20) for _ in range(1000)]
    strangers += [oid[:19] + bytes([oid[19] ^ 1]) for oid in oids[:200]]
    strangers += [b"\x00" * 20, b"\xff" * 20]
    for oid in strangers:
        if oid in set(oids):
            continue
        assert sp.offset_of(oid) is None
        assert not any(oid in f for f in files)
        assert find_oid(names, fanout, oid, scan=1) is None
    assert len(files[0]) == len(files[1]) == len(oids)
    for f in files:
        f.close()


def test_find_oid_skips_a_match_across_two_names() -> None:
    """The bytes of an oid can appear straddling two sorted names: that is no match."""
    a = b"\x07" + b"\x05" * 9 + b"\x07" * 10
    b = b"\x07" * 10 + b"\x09" * 10
    table = a + b
    fanout = [0] * 7 + [2] * 249
    ghost = b"\x07" * 20  # a's second half and b's first
    assert table.find(ghost) == 10
    assert find_oid(table, fanout, ghost) is None
    assert find_oid(table, fanout, a) == 0
    assert find_oid(table, fanout, b) == 1
    assert find_oid(table, fanout, a[:19]) is None
    assert find_oid(table, fanout, b"\x06" + a[1:]) is None


def test_reverse_index_is_gits_and_checked(gc_pack: RealPack, tmp_path: Path) -> None:
    """rev_bytes() equals the .rev git writes for the pack; from_idx with it gives the same
    pack view; a .rev that does not fit (other pack, wrong order, bad checksum) is ignored."""
    idx = tmp_path / "p.idx"
    git("index-pack", "--rev-index", "-o", str(idx), str(gc_pack.pack), cwd=tmp_path)
    rev = idx.with_suffix(".rev").read_bytes()
    data = gc_pack.idx.read_bytes()
    size = gc_pack.pack.stat().st_size
    plain = ServerPack.from_idx(gc_pack.name, data, size)
    assert plain.rev_bytes() == rev
    fast = ServerPack.from_idx(gc_pack.name, data, size, rev)
    check_against_git(fast, gc_pack, gc_pack.idx)
    n = len(gc_pack.entries)
    swapped = bytearray(rev)
    swapped[12:16], swapped[16:20] = rev[16:20], rev[12:16]
    bad_index = bytearray(rev)
    bad_index[12:16] = struct.pack(">I", n + 7)
    other_pack = bytearray(rev)
    other_pack[-40] ^= 1
    for broken in (
        reseal(swapped),
        reseal(bad_index),
        reseal(other_pack),
        rev[:-1] + bytes([rev[-1] ^ 1]),
        rev[:-4],
        b"",
    ):
        sp = ServerPack.from_idx(gc_pack.name, data, size, broken)
        check_against_git(sp, gc_pack, gc_pack.idx)


def test_cached_positions_are_used_only_when_they_fit(gc_pack: RealPack) -> None:
    """positions_bytes() with the .rev gives the same pack view with nothing sorted or
    mapped; positions of another pack, count, width or with a bad checksum are ignored (the
    offsets are then mapped through the .rev again)."""
    data = gc_pack.idx.read_bytes()
    size = gc_pack.pack.stat().st_size
    plain = ServerPack.from_idx(gc_pack.name, data, size)
    rev, pos = plain.rev_bytes(), plain.positions_bytes()
    assert pos[:4] == b"LZPO" and struct.unpack_from(">III", pos, 4)[1:] == (4, len(plain))
    fast = ServerPack.from_idx(gc_pack.name, data, size, rev, pos)
    check_against_git(fast, gc_pack, gc_pack.idx)
    assert fast.positions_bytes() == pos
    other_pack, wrong_count, wrong_width = (bytearray(pos) for _ in range(3))
    other_pack[16] ^= 1
    wrong_count[12:16] = struct.pack(">I", len(plain) + 1)
    wrong_width[8:12] = struct.pack(">I", 8)
    for broken in (
        reseal(other_pack),
        reseal(wrong_count),
        reseal(wrong_width),
        pos[:-1] + bytes([pos[-1] ^ 1]),
        pos[:30],
        b"",
    ):
        sp = ServerPack.from_idx(gc_pack.name, data, size, rev, broken)
        check_against_git(sp, gc_pack, gc_pack.idx)


def reseal(data: bytearray) -> bytes:
    """Recompute an idx's own trailing checksum after tampering with it."""
    data[-20:] = hashlib.sha1(bytes(data[:-20])).digest()
    return bytes(data)


def test_corrupt_idx(gc_pack: RealPack) -> None:
    good = gc_pack.idx.read_bytes()
    size = gc_pack.pack.stat().st_size
    name = gc_pack.name
    n = len(gc_pack.entries)

    def bad(data: bytes, why: str, size: int = size) -> None:
        with pytest.raises(CorruptDataError, match=f"corrupt .idx for {name}: .*{why}"):
            ServerPack.from_idx(name, data, size)

    flipped = bytearray(good)
    flipped[2000] ^= 1
    bad(bytes(flipped), "checksum")
    bad(good[:500], "short")
    bad(good[:-1], "checksum")
    # Fanout not monotonic.
    fan = bytearray(good)
    fan[8 + 4 * 10 : 8 + 4 * 11] = struct.pack(">I", n)
    bad(reseal(fan), "monotonic")
    # An offset beyond the pack: pack size too small for the real offsets.
    bad(good, "outside the pack", size=gc_pack.entries[-1].offset + 20)
    # Offset into the pack header.
    hdr = bytearray(good)
    off_table = 8 + 1024 + 24 * n
    hdr[off_table : off_table + 4] = struct.pack(">I", 3)
    bad(reseal(hdr), "header")
    # Two objects at one offset.
    dup = bytearray(good)
    dup[off_table : off_table + 4] = dup[off_table + 4 : off_table + 8]
    bad(reseal(dup), "share an offset")
    # Large-offset index beyond the large table.
    large = bytearray(good)
    large[off_table : off_table + 4] = struct.pack(">I", 0x80000005)
    bad(reseal(large), "large offset")
    # Unknown version.
    ver = bytearray(good)
    ver[4:8] = struct.pack(">I", 3)
    bad(reseal(ver), "version")
    # Object count that does not match the file size.
    cnt = bytearray(good)
    for i in range(255, 250, -1):
        cnt[8 + 4 * i : 12 + 4 * i] = struct.pack(">I", n + 1)
    bad(reseal(cnt), "size does not match")


def test_empty_idx(tmp_path: Path) -> None:
    """An empty pack (0 objects) has a valid idx."""
    git("init", "-q", "--bare", "e.git", cwd=tmp_path)
    base = tmp_path / "e.git" / "p"
    out = git("pack-objects", "-q", str(base), cwd=tmp_path / "e.git", input=b"")
    h = out.decode().strip()
    idx = Path(f"{base}-{h}.idx")
    sp = ServerPack.from_idx(f"pack-{h}", idx.read_bytes(), Path(f"{base}-{h}.pack").stat().st_size)
    assert len(sp) == 0
    assert sp.extents_of_positions([]) == []


# ---------------------------------------------------------------------------------------
# .bitmap


def types_of(real: RealPack) -> PackTypes:
    assert real.bitmap is not None
    data = real.bitmap.read_bytes()
    need = bitmap_head_needed(data[:65536])
    assert need is not None
    return parse_bitmap_types(
        data[:need], n_objects=len(real.entries), pack_checksum=real.server_pack().checksum
    )


@pytest.mark.parametrize("which", ["gc_pack", "f_pack"])
def test_bitmap_types_match_verify_pack(which: str, request: pytest.FixtureRequest) -> None:
    real: RealPack = request.getfixturevalue(which)
    types = types_of(real)
    sp = real.server_pack()
    sp.types = types
    for t in (1, 2, 3, 4):
        assert types.count(t) == sum(1 for e in real.entries if e.type == t)
    assert types.tags, "fixture has annotated tags"
    for pos, e in enumerate(real.entries):
        assert sp.type_at_position(pos) == e.type
    # Runs are maximal and sorted.
    for runs in types.by_type().values():
        assert runs == merge_runs(runs)
        assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(runs))


@pytest.mark.parametrize("which", ["gc_pack", "f_pack"])
def test_metadata_extents_cover_exactly_commits_trees_tags(
    which: str, request: pytest.FixtureRequest
) -> None:
    real: RealPack = request.getfixturevalue(which)
    sp = real.server_pack()
    with pytest.raises(ValueError):
        sp.metadata_extents()
    sp.types = types_of(real)
    extents = sp.metadata_extents()
    wanted = [e for e in real.entries if e.type != 3]
    covered = {e.offset for e in real.entries if any(x.start <= e.offset < x.end for x in extents)}
    assert covered == {e.offset for e in wanted}
    assert sum(x.length for x in extents) == sum(e.size_in_pack for e in wanted)
    assert extents == sorted(extents)
    assert all(a.end < b.start for a, b in itertools.pairwise(extents))


def test_extents_of_positions(gc_pack: RealPack) -> None:
    sp = gc_pack.server_pack()
    e = gc_pack.entries
    n = len(e)
    size = gc_pack.pack.stat().st_size
    assert sp.extents_of_positions([(0, n)]) == [Extent(12, size - 20)]
    assert sp.extents_of_positions([(2, 5)]) == [Extent(e[2].offset, e[5].offset)]
    # Touching and unsorted runs merge into one contiguous extent.
    assert sp.extents_of_positions([(5, 7), (2, 5), (9, 9)]) == [Extent(e[2].offset, e[7].offset)]
    assert sp.extents_of_positions([(n - 1, n), (0, 1)]) == [
        Extent(12, e[1].offset),
        Extent(e[-1].offset, size - 20),
    ]
    with pytest.raises(IndexError):
        sp.extents_of_positions([(0, n + 1)])


def test_ewah_runs_match_dulwich(gc_pack: RealPack) -> None:
    """The run decoder agrees bit for bit with dulwich's per-bit EWAH decoder."""
    assert gc_pack.bitmap is not None
    data = gc_pack.bitmap.read_bytes()
    pos = 32
    for _ in range(4):
        runs, end = decode_ewah_runs(data, pos)
        bits = EWAHBitmap(data[pos:end]).bits
        assert {i for a, b in runs for i in range(a, b)} == bits
        pos = end


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 3000)), st.integers(0, 200))
def test_ewah_runs_property(bits: set[int], extra: int) -> None:
    bm = EWAHBitmap()
    for b in bits:
        bm.add(b)
    bm.bit_count = max(bits, default=-1) + 1 + extra
    enc = bm.encode()
    runs, end = decode_ewah_runs(b"xx" + enc, 2)
    assert end == 2 + len(enc)
    assert {i for a, b in runs for i in range(a, b)} == bits
    assert runs == merge_runs(runs)


def test_ewah_long_runs() -> None:
    """Clean fill words of ones (compressed runs) decode without expanding bits."""
    bm = EWAHBitmap()
    for b in [*range(0, 64 * 40), *range(64 * 50 + 3, 64 * 90), 64 * 95]:
        bm.add(b)
    bm.bit_count = 64 * 96
    runs, _ = decode_ewah_runs(bm.encode())
    assert runs == [(0, 64 * 40), (64 * 50 + 3, 64 * 90), (64 * 95, 64 * 95 + 1)]


def test_bitmap_head_needed(gc_pack: RealPack) -> None:
    assert gc_pack.bitmap is not None
    data = gc_pack.bitmap.read_bytes()
    need = bitmap_head_needed(data)
    assert need is not None and 32 < need <= len(data)
    assert bitmap_head_needed(data[:need]) == need
    # Too short to know: None; once all four lengths are visible, the answer is final.
    assert bitmap_head_needed(data[:10]) is None
    assert bitmap_head_needed(data[:39]) is None
    answers = {bitmap_head_needed(data[:k]) for k in range(need - 4, need + 1)}
    assert answers == {need}
    for k in range(0, need, max(1, need // 50)):
        got = bitmap_head_needed(data[:k])
        assert got is None or got == need
    with pytest.raises(CorruptDataError):
        parse_bitmap_types(data[: need - 1], n_objects=len(gc_pack.entries),
                           pack_checksum=data[12:32])  # fmt: skip


def test_corrupt_bitmap(gc_pack: RealPack) -> None:
    assert gc_pack.bitmap is not None
    data = gc_pack.bitmap.read_bytes()
    need = bitmap_head_needed(data)
    assert need is not None
    head = data[:need]
    n = len(gc_pack.entries)
    checksum = gc_pack.server_pack().checksum
    assert head[12:32] == checksum

    def bad(h: bytes, match: str, n_objects: int = n, pack_checksum: bytes = checksum) -> None:
        with pytest.raises(CorruptDataError, match=match):
            parse_bitmap_types(h, n_objects=n_objects, pack_checksum=pack_checksum)

    bad(b"XITM" + head[4:], "signature")
    bad(head[:4] + b"\x00\x02" + head[6:], "version")
    bad(head, f"bitmap does not belong to pack {'ab' * 20}", pack_checksum=b"\xab" * 20)
    bad(head[:20], "truncated")
    bad(head[:40], "truncated")
    bad(head, "cover", n_objects=n + 1)
    # Commits bitmap repeated as the trees bitmap: counts or overlap fail.
    c_end = 32 + 8 + 8 * struct.unpack_from(">I", head, 36)[0] + 4
    t_end = c_end + 8 + 8 * struct.unpack_from(">I", head, c_end + 4)[0] + 4
    twice = head[:c_end] + head[32:c_end] + head[t_end:]
    with pytest.raises(CorruptDataError):
        parse_bitmap_types(twice, n_objects=n, pack_checksum=checksum)
    # A run longer than the declared bit count.
    bm = bytearray(struct.pack(">II", 64, 1) + struct.pack(">Q", (5 << 1) | 1) + b"\0\0\0\0")
    with pytest.raises(CorruptDataError, match="exceeds"):
        decode_ewah_runs(bytes(bm))
    # Literal words claimed beyond the word count.
    bm = bytearray(struct.pack(">II", 640, 1) + struct.pack(">Q", 3 << 33) + b"\0\0\0\0")
    with pytest.raises(CorruptDataError, match="word count"):
        decode_ewah_runs(bytes(bm))
    # Bits set beyond the declared size inside the last word.
    bm = bytearray(struct.pack(">II", 3, 2) + struct.pack(">QQ", 1 << 33, 0xFF) + b"\0\0\0\0")
    with pytest.raises(CorruptDataError, match="beyond"):
        decode_ewah_runs(bytes(bm))


def test_merge_runs() -> None:
    assert merge_runs([(5, 6), (0, 2), (2, 3), (1, 2), (7, 7), (4, 5)]) == [(0, 3), (4, 6)]
    assert merge_runs([]) == []
