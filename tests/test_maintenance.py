"""Promisor pack consolidation: which packs are merged (geometric, as `git repack
--geometric=2`), and the object counts read from real .idx files."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from lazygit.localrepo import LocalRepo
from lazygit.maintenance import consolidate, geometric_prefix, object_count, promisor_packs


def test_geometric_prefix_examples() -> None:
    # A checkout's blob pack and the clone's commits and trees stay; the small batches merge.
    assert geometric_prefix([5, 5, 5, 5, 100, 7000, 52000]) == 4
    assert geometric_prefix([1, 1, 1, 1, 50000]) == 4
    assert geometric_prefix([10, 20, 40, 80]) == 4  # 80 < 2 x 70: all of them
    assert geometric_prefix([1, 2, 10, 100]) == 2  # already geometric: the two smallest
    assert geometric_prefix([3, 3]) == 2


@given(st.lists(st.integers(min_value=1, max_value=10**6), min_size=2, max_size=40))
def test_geometric_prefix_property(counts: list[int]) -> None:
    counts.sort()
    k = geometric_prefix(counts)
    assert 2 <= k <= len(counts)
    # Every pack kept holds at least twice the objects of all smaller packs together ...
    for j in range(k, len(counts)):
        assert counts[j] >= 2 * sum(counts[:j])
    # ... and k is the smallest such (at least 2).
    if k > 2:
        assert counts[k - 1] < 2 * sum(counts[: k - 1])


def test_object_count_reads_v1_and_v2_idx(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for i in range(7):
        (repo / f"f{i}").write_text(f"{i}\n" * (i + 1))
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
        check=True,
    )
    subprocess.run(["git", "-C", str(repo), "repack", "-adq"], check=True)
    (pack,) = (repo / ".git" / "objects" / "pack").glob("pack-*.pack")
    assert object_count(pack) == 9  # 7 blobs, a tree, a commit
    v1 = tmp_path / "v1.pack"
    v1.write_bytes(pack.read_bytes())
    subprocess.run(["git", "index-pack", "--index-version=1", str(v1)], check=True, cwd=tmp_path)
    assert object_count(v1) == 9


def test_a_pack_that_git_gc_removed_meanwhile_is_left_out(tmp_path: Path) -> None:
    """git's own `gc --auto` (after a fetch, beyond gc.autoPackLimit packs) may repack the
    promisor packs while lazygit merges them: a pack listed but gone by the time it is read
    is left out, and the rest merge.  Before, the merge raised FileNotFoundError after a
    batch had landed, and the git command that waited on it failed (a CI run, 2026-11-22)."""
    repo_dir = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo_dir)], check=True)
    git = ["git", "-C", str(repo_dir), "-c", "user.name=t", "-c", "user.email=t@t"]
    pack_dir = repo_dir / ".git" / "objects" / "pack"
    for i in range(4):  # four small promisor packs, one commit each
        (repo_dir / f"f{i}").write_text(f"{i}\n" * (i + 1))
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", f"c{i}"], check=True)
        subprocess.run([*git, "repack", "-dq"], check=True)
    packs = sorted(pack_dir.glob("pack-*.pack"))
    assert len(packs) == 4
    for pack in packs:
        pack.with_suffix(".promisor").write_text("")
    listed = promisor_packs(LocalRepo(repo_dir / ".git", repo_dir))
    gone = listed[0]
    for suffix in (".pack", ".idx", ".promisor"):  # what git gc does to it, in effect
        gone.with_suffix(suffix).rename(tmp_path / f"saved{suffix}")
    # (its objects stay in the repository, as git gc's new pack would hold them)
    subprocess.run(
        ["git", "-C", str(repo_dir), "unpack-objects", "-q"],
        stdin=(tmp_path / "saved.pack").open("rb"), check=True,
    )  # fmt: skip
    name = consolidate(LocalRepo(repo_dir / ".git", repo_dir), listed)
    assert name is not None
    left = sorted(p.name for p in pack_dir.glob("pack-*.pack"))
    assert f"{name}.pack" in left and len(left) < 3, left
    fsck = subprocess.run(["git", "-C", str(repo_dir), "fsck"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr


def _promisor_repo(tmp_path: Path, packs: int) -> Path:
    repo_dir = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo_dir)], check=True)
    git = ["git", "-C", str(repo_dir), "-c", "user.name=t", "-c", "user.email=t@t"]
    pack_dir = repo_dir / ".git" / "objects" / "pack"
    for i in range(packs):  # small promisor packs, one commit each
        (repo_dir / f"f{i}").write_text(f"{i}\n" * (i + 1))
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", f"c{i}"], check=True)
        subprocess.run([*git, "repack", "-dq"], check=True)
    for pack in pack_dir.glob("pack-*.pack"):
        pack.with_suffix(".promisor").write_text("")
    return repo_dir


def test_merged_packs_lose_their_idx_first(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """git sees a pack by its .idx: a merge that is killed between two unlinks must leave a
    .pack nobody reads, never an .idx whose .pack is gone (git then fails to open it). The
    order is recorded; no kill can be aimed at the microseconds between them."""
    import os

    from lazygit import maintenance

    repo_dir = _promisor_repo(tmp_path, 4)
    removed: list[str] = []
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        removed.append(Path(path).suffix)
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(maintenance.os, "unlink", unlink)
    repo = LocalRepo(repo_dir / ".git", repo_dir)
    assert consolidate(repo, promisor_packs(repo)) is not None
    per_pack = len(maintenance.PACK_SUFFIXES)
    assert removed and len(removed) % per_pack == 0, removed
    assert removed[::per_pack] == [".idx"] * (len(removed) // per_pack), removed


def test_an_orphaned_pack_is_removed_once_it_is_old(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A .pack left without its .idx (a kill between the two renames of a landing pack) is
    removed by a later batch, once it is older than any writer takes between the renames."""
    from lazygit import localrepo

    repo_dir = _promisor_repo(tmp_path, 2)
    pack_dir = repo_dir / ".git" / "objects" / "pack"
    orphan, kept = sorted(pack_dir.glob("pack-*.pack"))
    orphan.with_suffix(".idx").unlink()
    localrepo._drop_orphan_packs(pack_dir)
    assert orphan.exists()  # fresh: a writer may be between its renames
    monkeypatch.setattr(localrepo, "ORPHAN_PACK_SECONDS", -1)
    localrepo._drop_orphan_packs(pack_dir)
    assert not orphan.exists() and not orphan.with_suffix(".promisor").exists()
    assert kept.exists() and kept.with_suffix(".idx").exists()
