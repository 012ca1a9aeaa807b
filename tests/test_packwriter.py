"""packwriter end to end: raw entries of real git packs copied into `git index-pack --stdin
--promisor` in a partial-clone repository; OFS_DELTA rewriting, OFS->REF conversion with
--fix-thin, REF_DELTA pass-through; header parsing against dulwich's header writer."""

from __future__ import annotations

import io
import os
import subprocess
import zlib
from pathlib import Path

import pytest
from dulwich.object_format import SHA1
from dulwich.pack import pack_object_header
from hypothesis import given, settings
from hypothesis import strategies as st
from test_packmeta import Entry, RealPack, git, make_pack, types_of

from lazygit.errors import CorruptDataError
from lazygit.packmeta import ServerPack
from lazygit.packwriter import (
    OFS_DELTA,
    REF_DELTA,
    EntryHeader,
    PackWriter,
    encode_ofs_distance,
    encode_type_size,
    parse_entry_header,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> RealPack:
    p = make_pack(tmp_path_factory.mktemp("pw"), 200, ("gc", "--quiet"))
    assert p.bitmap is not None
    return p


def partial_clone_repo(path: Path) -> Path:
    """A fresh repo configured as a partial clone of an unreachable promisor remote."""
    git("init", "-q", str(path), cwd=path.parent)
    for key, value in (
        ("core.repositoryformatversion", "1"),
        ("extensions.partialClone", "origin"),
        ("remote.origin.url", "http://127.0.0.1:9/unreachable.git"),
        ("remote.origin.promisor", "true"),
        ("remote.origin.partialclonefilter", "blob:none"),
    ):
        git("config", key, value, cwd=path)
    return path


def index_pack(repo: Path, write: object, count: int, *, fix_thin: bool = False) -> PackWriter:
    """Stream a pack through PackWriter into `git index-pack --stdin --promisor=test`."""
    args = ["git", "index-pack", "--stdin", "--promisor=test"]
    if fix_thin:
        args.append("--fix-thin")
    env = dict(os.environ, GIT_NO_LAZY_FETCH="1", GIT_CONFIG_NOSYSTEM="1")
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    proc = subprocess.Popen(
        args, cwd=repo, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    writer = PackWriter(proc.stdin, count)  # type: ignore[arg-type]
    write(writer)  # type: ignore[operator]
    checksum = writer.finish()
    out, err = proc.communicate()
    assert proc.returncode == 0, err.decode()
    kind, name = out.decode().split()
    assert kind in ("pack", "keep")
    if not fix_thin:
        # Without --fix-thin the pack is stored as written: its name is our checksum.
        assert name == checksum.hex()
    return writer


def copy(writer: PackWriter, sp: ServerPack, data: bytes, entries: list[Entry]) -> None:
    for e in sorted(entries, key=lambda e: e.offset):
        ext = sp.extent_at(e.offset)
        writer.add_entry(sp.name, e.offset, data[ext.start : ext.end], sp.oid_at)


def batch_check(repo: Path, oids: list[bytes]) -> list[str]:
    stdin = b"".join(o.hex().encode() + b"\n" for o in oids)
    return git("cat-file", "--batch-check", cwd=repo, input=stdin).decode().splitlines()


def cat(repo: Path, oids: list[bytes]) -> bytes:
    stdin = b"".join(o.hex().encode() + b"\n" for o in oids)
    return git("cat-file", "--batch", cwd=repo, input=stdin)


def test_metadata_clone_end_to_end(server: RealPack, tmp_path: Path) -> None:
    """Commits+trees+tags chosen by the bitmap, copied raw: a self-contained promisor pack."""
    sp = server.server_pack()
    sp.types = types_of(server)
    data = server.pack.read_bytes()
    # Entries chosen through the bitmap's extents, not through verify-pack's types.
    wanted = [
        e for e in server.entries if any(x.start <= e.offset < x.end for x in sp.metadata_extents())
    ]
    meta = [e for e in server.entries if e.type != 3]
    assert wanted == meta
    assert any(e.base for e in meta), "fixture has tree/commit deltas"
    repo = partial_clone_repo(tmp_path / "clone")
    w = index_pack(repo, lambda w: copy(w, sp, data, meta), len(meta))
    assert not w.thin
    assert list((repo / ".git/objects/pack").glob("*.promisor"))
    lines = batch_check(repo, [e.oid for e in meta])
    names = {1: "commit", 2: "tree", 4: "tag"}
    assert lines == [f"{e.oid.hex()} {names[e.type]} " + ln.split()[2] for e, ln in
                     zip(meta, lines, strict=True)]  # fmt: skip
    assert cat(repo, [e.oid for e in meta]) == cat(server.repo, [e.oid for e in meta])
    blobs = [e.oid for e in server.entries if e.type == 3]
    # Exactly the copied objects are present (cat-file on a missing blob would die: no
    # lazy fetch).
    present = git("cat-file", "--batch-all-objects", "--batch-check=%(objectname)", cwd=repo)
    assert set(present.decode().split()) == {e.oid.hex() for e in meta}
    # Refs and connectivity: exactly the blobs are missing (promised).
    for ref in git("for-each-ref", "--format=%(objectname) %(refname)", cwd=server.repo).split(
        b"\n"
    ):
        if ref:
            oid, name = ref.decode().split()
            git("update-ref", name, oid, cwd=repo)
    git("rev-list", "--objects", "--all", "--exclude-promisor-objects", cwd=repo)
    missing = git("rev-list", "--objects", "--all", "--missing=print", cwd=repo).decode()
    assert {ln[1:] for ln in missing.split() if ln.startswith("?")} == {b.hex() for b in blobs}
    git("fsck", "--no-progress", cwd=repo)


def descendants(entries: list[Entry], roots: set[bytes]) -> set[bytes]:
    """Roots plus every entry whose delta chain goes through a root."""
    base_of = {e.oid: e.base for e in entries}
    out = set()
    for e in entries:
        oid: bytes | None = e.oid
        while oid is not None:
            if oid in roots:
                out.add(e.oid)
                break
            oid = base_of.get(oid)
    return out


def test_thin_pack_ofs_to_ref(server: RealPack, tmp_path: Path) -> None:
    """First everything but some blob delta families; then those alone: deltas whose base
    was not written become REF_DELTA (thin, --fix-thin), those whose base was are OFS."""
    sp = server.server_pack()
    data = server.pack.read_bytes()
    entries = server.entries
    by_oid = {e.oid: e for e in entries}
    has_children = {e.base for e in entries if e.base}
    # Blob deltas with a delta base of their own and children: chains cross both packs.
    roots = {
        e.oid for e in entries
        if e.type == 3 and e.base and e.oid in has_children and by_oid[e.base].base
    }  # fmt: skip
    roots = set(sorted(roots)[:10])
    assert roots
    later = descendants(entries, roots)
    assert len(later) > len(roots)
    first = [e for e in entries if e.oid not in later]
    second = [e for e in entries if e.oid in later]
    repo = partial_clone_repo(tmp_path / "thin")
    w1 = index_pack(repo, lambda w: copy(w, sp, data, first), len(first))
    assert not w1.thin

    out = io.BytesIO()
    w = PackWriter(out, len(second))
    copy(w, sp, data, second)
    w.finish()
    assert w.thin
    # Inspect what was written: roots became REF_DELTA, the rest keep OFS_DELTA.
    raw = out.getvalue()
    pos = 12
    kinds: dict[int, int] = {}
    for e in sorted(second, key=lambda e: e.offset):
        h = parse_entry_header(raw[pos:])
        kinds[h.type] = kinds.get(h.type, 0) + 1
        if e.base not in later:
            assert e.oid in roots
            assert h.type == REF_DELTA and h.base_oid == e.base
        else:
            assert h.type == OFS_DELTA
        d = zlib.decompressobj()
        d.decompress(raw[pos + h.header_len :])
        pos = len(raw) - len(d.unused_data)
    assert pos == len(raw) - 20
    n_ref = sum(1 for e in second if e.base not in later)
    assert 0 < n_ref < len(second)
    assert kinds == {REF_DELTA: n_ref, OFS_DELTA: len(second) - n_ref}

    w2 = index_pack(repo, lambda w: copy(w, sp, data, second), len(second), fix_thin=True)
    assert w2.thin
    oids = [e.oid for e in entries]
    assert cat(repo, oids) == cat(server.repo, oids)
    git("fsck", "--no-progress", cwd=repo)


def test_ref_delta_pass_through(server: RealPack, tmp_path: Path) -> None:
    """A pack of REF_DELTAs (as from a push) is copied unchanged; thin stays False."""
    objs = git("rev-list", "--objects", "--all", cwd=server.repo)
    base = tmp_path / "ref"
    h = git("pack-objects", "-q", "--no-delta-base-offset", str(base), cwd=server.repo,
            input=objs).decode().strip()  # fmt: skip
    pack = Path(f"{base}-{h}.pack")
    data = pack.read_bytes()
    sp = ServerPack.from_idx(f"pack-{h}", Path(f"{base}-{h}.idx").read_bytes(), len(data))
    entries = [
        Entry(sp.oid_at(sp.offset_at_position(i)), 0, 0, sp.offset_at_position(i), None)
        for i in range(len(sp))
    ]
    headers = [parse_entry_header(data[e.offset : e.offset + 64]) for e in entries]
    assert any(x.type == REF_DELTA for x in headers)
    assert not any(x.type == OFS_DELTA for x in headers)
    repo = partial_clone_repo(tmp_path / "r")
    out = io.BytesIO()
    w = PackWriter(out, len(entries))
    copy(w, sp, data, entries)
    assert w.finish() == data[-20:]
    assert out.getvalue() == data  # byte-identical copy
    assert not w.thin
    w = index_pack(repo, lambda w: copy(w, sp, data, entries), len(entries))
    assert not w.thin
    oids = [e.oid for e in entries]
    assert cat(repo, oids) == cat(server.repo, oids)


def copy_runs(writer: PackWriter, sp: ServerPack, data: bytes, entries: list[Entry]) -> None:
    """The same entries through add_run: each maximal run of consecutive ones as one slice."""
    offsets = sorted(e.offset for e in entries)
    run: list[int] = []
    for off in offsets:
        if run and sp.extent_at(run[-1]).end != off:
            writer.add_run(sp.name, data[run[0] : sp.extent_at(run[-1]).end], run, sp.oid_at)
            run = []
        run.append(off)
    if run:
        writer.add_run(sp.name, data[run[0] : sp.extent_at(run[-1]).end], run, sp.oid_at)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_add_run_writes_what_add_entry_writes(server: RealPack, data: st.DataObject) -> None:
    """Any subset of entries, copied as runs, gives the bytes entry-by-entry copying gives:
    deltas across runs (or behind a rewritten entry) re-encoded, the rest sliced as is."""
    sp = server.server_pack()
    pack = server.pack.read_bytes()
    keep = data.draw(st.lists(st.booleans(), min_size=len(server.entries),
                              max_size=len(server.entries)))  # fmt: skip
    chosen = [e for e, k in zip(server.entries, keep, strict=True) if k]
    by_entry, by_run = io.BytesIO(), io.BytesIO()
    w1, w2 = PackWriter(by_entry, len(chosen)), PackWriter(by_run, len(chosen))
    copy(w1, sp, pack, chosen)
    copy_runs(w2, sp, pack, chosen)
    assert w1.finish() == w2.finish()
    assert by_entry.getvalue() == by_run.getvalue()
    assert w1.thin == w2.thin


def test_add_run_of_whole_pack_is_the_pack(server: RealPack) -> None:
    """Every entry of a pack as one run: the output is the server pack, byte for byte."""
    sp = server.server_pack()
    pack = server.pack.read_bytes()
    out = io.BytesIO()
    w = PackWriter(out, len(server.entries))
    w.add_run(sp.name, pack[12:-20], [e.offset for e in server.entries], sp.oid_at)
    assert w.finish() == pack[-20:]
    assert out.getvalue() == pack


def test_add_run_rejects_a_damaged_entry(server: RealPack) -> None:
    sp = server.server_pack()
    pack = bytearray(server.pack.read_bytes())
    delta = next(e for e in server.entries if e.base)
    pack[delta.offset] = 0x00  # type 0 does not exist
    w = PackWriter(io.BytesIO(), len(server.entries))
    with pytest.raises(CorruptDataError):
        w.add_run(sp.name, bytes(pack[12:-20]), [e.offset for e in server.entries], sp.oid_at)


def test_add_object_and_count(tmp_path: Path) -> None:
    repo = partial_clone_repo(tmp_path / "o")
    blobs = [b"hello\n", b"", b"x" * 100_000]

    def write(w: PackWriter) -> None:
        for b in blobs:
            w.add_object(3, b)

    index_pack(repo, write, len(blobs))
    expected = [git("hash-object", "--stdin", cwd=repo, input=b).decode().strip() for b in blobs]
    lines = batch_check(repo, [bytes.fromhex(x) for x in expected])
    assert lines == [f"{x} blob {len(b)}" for x, b in zip(expected, blobs, strict=True)]

    w = PackWriter(io.BytesIO(), 1)
    with pytest.raises(ValueError):
        w.finish()
    w.add_object(1, b"tree x\n")
    with pytest.raises(ValueError):
        w.add_object(3, b"one too many")
    w.finish()
    with pytest.raises(ValueError):
        PackWriter(io.BytesIO(), 0).add_object(OFS_DELTA, b"")
    empty = io.BytesIO()
    PackWriter(empty, 0).finish()
    assert len(empty.getvalue()) == 32


# ---------------------------------------------------------------------------------------
# Entry headers


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([1, 2, 3, 4, OFS_DELTA, REF_DELTA]),
    st.integers(0, 2**60),
    st.integers(1, 2**62),
    st.binary(min_size=20, max_size=20),
    st.binary(max_size=8),
)
def test_header_round_trip(
    type_num: int, size: int, distance: int, oid: bytes, tail: bytes
) -> None:
    base = distance if type_num == OFS_DELTA else oid if type_num == REF_DELTA else None
    header = bytes(pack_object_header(type_num, base, size, SHA1))
    got = parse_entry_header(header + tail)
    assert got == EntryHeader(
        type_num,
        size,
        len(header),
        distance if type_num == OFS_DELTA else None,
        oid if type_num == REF_DELTA else None,
    )
    ours = encode_type_size(type_num, size)
    if type_num == OFS_DELTA:
        ours += encode_ofs_distance(distance)
    elif type_num == REF_DELTA:
        ours += oid
    assert ours == header
    for k in range(len(header)):
        with pytest.raises(CorruptDataError):
            parse_entry_header(header[:k])


def test_header_errors() -> None:
    for t in (0, 5):
        with pytest.raises(CorruptDataError, match="type"):
            parse_entry_header(bytes([t << 4 | 3]) + b"rest")
    with pytest.raises(CorruptDataError, match="too long"):
        parse_entry_header(b"\xb0" + b"\xff" * 20)
    with pytest.raises(CorruptDataError, match="too long"):
        parse_entry_header(b"\x60" + b"\xff" * 20)
    with pytest.raises(CorruptDataError, match="0"):
        parse_entry_header(b"\x60\x00xx")
    with pytest.raises(ValueError):
        encode_ofs_distance(0)
    # git's offset encoding: 128 is 0x80 0x00 (the +1 per continuation byte).
    assert encode_ofs_distance(127) == b"\x7f"
    assert encode_ofs_distance(128) == b"\x80\x00"
    assert parse_entry_header(b"\x60\x80\x00").base_distance == 128


def test_delta_before_pack_start() -> None:
    w = PackWriter(io.BytesIO(), 1)
    entry = encode_type_size(OFS_DELTA, 5) + encode_ofs_distance(100) + zlib.compress(b"x")
    with pytest.raises(CorruptDataError, match="before the pack start"):
        w.add_entry("pack-x", 50, entry, lambda off: b"\0" * 20)


def test_packwriter_import_is_light() -> None:
    code = (
        "import sys, lazygit.packwriter; "
        "bad = [m for m in ('httpx', 'rich', 'typer', 'dulwich') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    subprocess.run(["python3", "-c", code], check=True, env=env)
