"""Keeping the local object store tidy: lazy fetches must not leave thousands of tiny packs.

Each batch adds one promisor pack.  Once there are more than ``lazygit.maxPromisorPacks``,
the small ones are rewritten as one promisor pack (``git pack-objects`` piped into
``git index-pack --promisor``, so hashes are checked again) and the originals removed, the way
``git repack`` replaces packs.  Which ones: as ``git repack --geometric=2`` chooses, the
smallest packs up to the point above which every pack holds at least twice the objects of all
smaller ones together.  The big packs (the clone's commits and trees, a checkout's blobs) are
left alone, so a consolidation costs in proportion to what the small batches brought.

When: not while a git process has one of the small packs open.  git maps a pack's .idx the
first time it looks in that pack and keeps the pack in its list until it exits; after its next
re-scan of objects/pack (each lazy fetch ends with one) such a process counts the merged
pack's objects on top of the old packs'.  That count sizes abbreviated hashes, so a
cherry-pick could print 9 hex digits where a full clone prints 8 (seen in
test_ondemand.py::test_cherry_pick: 16 promisor packs before its batch).  The daemon
therefore merges when `mapped_by_git` finds no such process, and at once only beyond four
times the limit (daemon.py FORCED_MERGE_FACTOR), where the bound on the pack count matters
more than an abbreviation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from lazygit.errors import GitCommandError
from lazygit.gitcmd import first_error_line, git_processes, popen_git
from lazygit.localrepo import LocalRepo

PACK_SUFFIXES = (".pack", ".idx", ".rev", ".bitmap", ".promisor")


def promisor_packs(repo: LocalRepo, *, kept: bool = False) -> list[Path]:
    """The .pack files of this repository that carry a .promisor marker: those a merge may
    rewrite, or with ``kept`` also those a .keep file holds (which no merge touches)."""
    pack_dir = repo.objects_dir / "pack"
    return sorted(
        p.with_suffix(".pack")
        for p in pack_dir.glob("pack-*.promisor")
        if p.with_suffix(".pack").exists() and (kept or not p.with_suffix(".keep").exists())
    )


def consolidate_if_needed(
    repo: LocalRepo, max_packs: int, *, in_use: Callable[[list[Path]], bool] | None = None
) -> str | None:
    """Merge the promisor packs when there are more than ``max_packs``; return the new name
    (None: nothing merged, also when ``in_use`` says the packs to merge are open)."""
    packs = promisor_packs(repo)
    if len(packs) <= max(max_packs, 1):
        return None
    return consolidate(repo, packs, in_use=in_use)


def mapped_by_git(packs: Iterable[Path]) -> bool:
    """Whether a git process other than us has one of ``packs``' .idx files mapped.

    Read from /proc/PID/maps of the processes named git* that we may read (our own user's);
    False where there is no /proc.  A process that maps one after this look is not seen: the
    caller looks again just before the merged pack lands, which leaves a window of a rename.
    """
    wanted = [os.fsencode(os.path.realpath(p.with_suffix(".idx"))) for p in packs]
    for pid in git_processes():
        try:
            with open(f"/proc/{pid}/maps", "rb") as f:
                maps = f.read()
        except OSError:  # gone, or not ours
            continue
        if any(path in maps for path in wanted):
            return True
    return False


def geometric_prefix(counts: list[int], factor: int = 2) -> int:
    """How many of the packs (object ``counts``, ascending) to merge: the smallest k >= 2
    such that every pack from k on holds ``factor`` times the objects of all before it."""
    k = 0
    total = 0
    for j, count in enumerate(counts):
        if count < factor * total:
            k = j + 1  # this pack is not big enough against the smaller ones: merge it too
        total += count
    return max(k, 2)


def object_count(pack: Path) -> int:
    """Objects in a pack, from its .idx's fanout table (v2, or v1)."""
    from lazygit.packmeta import IdxFile

    idx = IdxFile(str(pack.with_suffix(".idx")))
    try:
        return len(idx)
    finally:
        idx.close()


def consolidate(
    repo: LocalRepo, packs: list[Path], *, in_use: Callable[[list[Path]], bool] | None = None
) -> str | None:
    """Rewrite the small ones of ``packs`` (see `geometric_prefix`) into one promisor pack.

    With ``in_use``, nothing happens (None) while it says the small ones are open, asked
    before the work and again just before the merged pack lands.
    """
    from dulwich.object_format import SHA1
    from dulwich.pack import load_pack_index

    # git's own gc (`git gc --auto` after a fetch, beyond gc.autoPackLimit packs) may be
    # repacking them as we look: a pack gone since the listing is no longer ours to merge.
    counted: list[tuple[int, Path]] = []
    for pack in packs:
        with contextlib.suppress(FileNotFoundError):
            counted.append((object_count(pack), pack))
    counted.sort()
    victims = [p for _, p in counted[: geometric_prefix([n for n, _ in counted])]]
    if len(victims) < 2 or (in_use is not None and in_use(victims)):
        return None
    oids: dict[bytes, None] = {}
    for pack in victims:
        try:
            idx = load_pack_index(str(pack.with_suffix(".idx")), SHA1)
        except FileNotFoundError:
            return None  # (git gc took it meanwhile: its objects are in git's new pack)
        try:
            for oid in idx:
                oids[oid] = None
        finally:
            idx.close()
    listing = b"".join(o + b"\n" if len(o) == 40 else o.hex().encode() + b"\n" for o in oids)

    def write(out: IO[bytes]) -> None:
        proc = popen_git(
            ["pack-objects", "--stdout", "--delta-base-offset", "-q"],
            cwd=repo.cwd,
            env={"GIT_DIR": str(repo.git_dir)},
            stdout=_fileno_or_pipe(out),
        )
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(listing)
        proc.stdin.close()
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise GitCommandError(f"git pack-objects failed: {first_error_line(err)}")

    land_if = None if in_use is None else (lambda: not in_use(victims))
    name = repo.index_pack(write, promisor="lazygit", land_if=land_if)
    if not name:
        return None
    for pack in victims:
        if pack.stem == name:
            continue
        # The .idx first: git sees a pack by its .idx, so a kill in between leaves a .pack
        # nobody reads (removed later, localrepo.py), never an .idx whose .pack is gone.
        for suffix in (".idx", *(s for s in PACK_SUFFIXES if s != ".idx")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pack.with_suffix(suffix))
    return name


def _fileno_or_pipe(out: IO[bytes]) -> int:
    """index-pack's stdin as a file descriptor, so pack-objects writes straight into it."""
    out.flush()
    return out.fileno()
