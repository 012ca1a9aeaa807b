"""Blobs on demand: stock git in a lazy clone behaves exactly like git in a full clone.

Acceptance tests of the "Blobs on demand" issue, with real parts only: nginx on 127.0.0.1,
the LARGE sample (a gc'd pack with a bitmap, a later pack without one, loose objects), a lazy
clone made by ``lazygit clone --no-checkout``, stock git finding ``git-remote-lazy`` on PATH,
and the real per-repository daemon.  Every command runs in the lazy clone and in an ordinary
full clone with the same environment (tests/gitcompare.py) and must print the same bytes and
exit the same way.  Commands are run on old revisions where possible so that the blobs they
read are really missing in the lazy clone beforehand (checked, where it is cheap).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Published, stop_daemon
from gitcompare import (
    NO_LAZY,
    assert_same_worktree,
    base_env,
    bytes_read_twice,
    changed_blobs,
    compare,
    git,
    has_object,
    missing_objects,
    parse_ranges,
    resolve,
    tree_blobs,
)
from readobject_driver import ReadObjectDriver
from servers import Nginx

from lazygit.clone import CloneOptions, clone
from lazygit.hooks import install_read_object_hook
from lazygit.localrepo import LocalRepo

LAZYGIT = REPO / ".venv" / "bin" / "lazygit"
HELPER = REPO / ".venv" / "bin" / "git-remote-lazy"
HOT = "src/core/hot.py"


@dataclass
class Pair:
    """A lazy clone and a full clone of the same server repository."""

    lazy: Path
    full: Path
    published: Published
    url: str

    @property
    def git_dir(self) -> Path:
        return self.lazy / ".git"


def lazy_clone_cli(url: str, dest: Path) -> None:
    """``lazygit clone --no-checkout URL DEST`` through the installed CLI."""
    proc = subprocess.run(
        [str(LAZYGIT), "clone", "--no-checkout", "--quiet", url, str(dest)],
        env=base_env(),
        capture_output=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


def full_clone(source: Path, dest: Path) -> None:
    git(source.parent, "clone", "-q", "--no-local", str(source), str(dest))


def daemon_pid(git_dir: Path) -> int | None:
    try:
        return int(json.loads((git_dir / "lazygit" / "daemon.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def lazygit_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "lazygit" in line]


def reset_to_main(*repos: Path) -> None:
    """Both clones back on a clean ``main`` at ``origin/main``."""
    for repo in repos:
        git(repo, "checkout", "-q", "-f", "main")
        git(repo, "reset", "-q", "--hard", "origin/main")
        git(repo, "clean", "-q", "-f", "-d", "-x")


# =========================================================================================
# The LARGE matrix: one lazy clone (no checkout) against one full clone.


@pytest.fixture(scope="module")
def pair(large: Published, nginx: Nginx, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp("ondemand")
    full = work / "full"
    full_clone(large.info.path, full)  # our own copy: these tests commit, stash and switch
    lazy = work / "lazy"
    url = nginx.url(large.name)
    lazy_clone_cli(url, lazy)
    yield Pair(lazy, full, large, url)
    stop_daemon(lazy / ".git")


@pytest.fixture
def on_main(pair: Pair) -> Pair:
    """Mutating tests start from a clean main in both clones (checked out lazily if needed)."""
    reset_to_main(pair.lazy, pair.full)
    return pair


def ordinary_file(repo: Path) -> str:
    """The most edited file that is in both the first commit and HEAD (never renamed)."""
    root = git(repo, "rev-list", "--max-parents=0", "HEAD").text.split()[0]
    first = set(git(repo, "ls-tree", "-r", "--name-only", root).text.splitlines())
    head = set(git(repo, "ls-tree", "-r", "--name-only", "HEAD").text.splitlines())
    names = git(repo, "log", "--no-renames", "--name-only", "--format=", "HEAD", env=NO_LAZY)
    counts: dict[str, int] = {}
    for name in names.text.splitlines():
        if name and name in first and name in head and name.startswith("src/"):
            counts[name] = counts.get(name, 0) + 1
    counts.pop(HOT, None)
    return max(sorted(counts), key=lambda n: counts[n])


def assert_missing(pair: Pair, oids: list[str], *, at_least: int = 1) -> None:
    """Precondition: the command under test really needs blobs the lazy clone lacks."""
    missing = [o for o in oids if not has_object(pair.lazy, o)]
    assert len(missing) >= at_least, f"expected missing blobs before the command, {missing}"


def test_lazy_clone_has_no_blobs_of_old_revisions(pair: Pair) -> None:
    missing = missing_objects(pair.lazy, "v3.0")
    assert len(missing) > 1000
    assert git(pair.lazy, "config", "remote.origin.url").text.strip() == "lazy::" + pair.url
    assert git(pair.lazy, "config", "remote.origin.promisor").text.strip() == "true"


def test_show_rev_path(pair: Pair) -> None:
    info = pair.published.info
    other = ordinary_file(pair.full)
    cases = [("v2.0", HOT), ("snapshot-1000", other), ("v5.0", info.binary_files[0])]
    assert_missing(pair, resolve(pair.lazy, [f"{r}:{p}" for r, p in cases]), at_least=3)
    for rev, path in cases:
        out = compare(pair.lazy, pair.full, "show", f"{rev}:{path}")
        assert out.stdout
    compare(pair.lazy, pair.full, "show", "v3.0")  # annotated tag + commit + patch
    compare(pair.lazy, pair.full, "show", "--stat", "snapshot-1400")


def test_diff_between_revisions(pair: Pair) -> None:
    blobs = changed_blobs(pair.lazy, "diff", "v3.0", "v4.0")
    assert len(blobs) > 100
    assert_missing(pair, blobs, at_least=len(blobs) // 2)
    out = compare(pair.lazy, pair.full, "diff", "v3.0", "v4.0")
    assert out.text.count("\ndiff --git ") > 100
    assert all(has_object(pair.lazy, o) for o in blobs)


def test_diff_stat_between_revisions(pair: Pair) -> None:
    blobs = changed_blobs(pair.lazy, "diff", "snapshot-2200", "snapshot-2600")
    assert_missing(pair, blobs, at_least=len(blobs) // 2)
    out = compare(pair.lazy, pair.full, "diff", "--stat", "snapshot-2200", "snapshot-2600")
    assert "files changed" in out.text
    compare(pair.lazy, pair.full, "diff", "--stat", "-M", "snapshot-2200", "snapshot-2600")


def test_log_patch_50(pair: Pair) -> None:
    assert_missing(pair, changed_blobs(pair.lazy, "log", "--format=", "-50"), at_least=20)
    out = compare(pair.lazy, pair.full, "log", "-p", "-50")
    assert out.text.count("\ncommit ") + 1 >= 50


def test_log_stat_50(pair: Pair) -> None:
    assert_missing(pair, changed_blobs(pair.lazy, "log", "--format=", "-50", "v9.0"), at_least=20)
    compare(pair.lazy, pair.full, "log", "--stat", "-50", "v9.0")
    compare(pair.lazy, pair.full, "log", "--stat", "-50")


def test_blame_hot_file(pair: Pair) -> None:
    # The whole history of the hot file (~700 versions, one helper run each) takes about a
    # minute; v2.0 has ~50 versions of it, which exercises the same path.
    out = compare(pair.lazy, pair.full, "blame", "v2.0", "--", HOT)
    assert len(out.text.splitlines()) > 30
    compare(pair.lazy, pair.full, "blame", "-L", "1,20", "--porcelain", "v3.0", "--", HOT)


def test_blame_ordinary_file(pair: Pair) -> None:
    path = ordinary_file(pair.full)
    compare(pair.lazy, pair.full, "blame", path)
    compare(pair.lazy, pair.full, "blame", "-w", "-M", "v6.0", "--", path)


def test_grep_in_old_revision(pair: Pair) -> None:
    blobs = tree_blobs(pair.lazy, "v6.0", "src/net", "docs/net")
    assert_missing(pair, blobs, at_least=len(blobs) // 2)
    out = compare(pair.lazy, pair.full, "grep", "-n", "-e", "fetch", "v6.0", "--", "src/net", "docs/net")
    assert out.text.count("\n") > 5
    compare(pair.lazy, pair.full, "grep", "-c", "-i", "-e", "TOKEN", "snapshot-3000", "--", "src/net")
    # No match: exit 1 in both.
    compare(pair.lazy, pair.full, "grep", "-e", "no such text anywhere", "v6.0", "--", "src/net", expect_ok=False)


def test_cat_file_batch(pair: Pair) -> None:
    blobs = tree_blobs(pair.lazy, "v7.0", "src/storage", "tests/storage")
    missing = [o for o in blobs if not has_object(pair.lazy, o)]
    assert len(missing) >= 10
    ids = ["HEAD", "HEAD^{tree}", "v7.0", *missing[:40], "v7.0:" + HOT, *missing[:3]]
    data = "".join(f"{i}\n" for i in ids).encode()
    out = compare(pair.lazy, pair.full, "cat-file", "--batch", input=data)
    assert out.stdout.count(b" blob ") >= 40
    compare(pair.lazy, pair.full, "cat-file", "--batch-check", input=data)


def test_cat_file_batch_unknown_object(pair: Pair) -> None:
    """An id the server does not have: 'missing' in both, and the batch goes on."""
    blob = next(o for o in tree_blobs(pair.lazy, "v8.0", "src/auth") if not has_object(pair.lazy, o))
    data = f"{'0123456789' * 4}\n{blob}\n".encode()
    out = compare(pair.lazy, pair.full, "cat-file", "--batch", input=data)
    assert out.stdout.startswith(b"0123456789" * 4 + b" missing\n")


def test_checkout_branch(pair: Pair) -> None:
    """The no-checkout clone: `git checkout main`, then another branch, then back."""
    assert not (pair.lazy / HOT).exists()
    compare(pair.lazy, pair.full, "checkout", "main")
    n = assert_same_worktree(pair.lazy, pair.full)
    assert n > 2000
    compare(pair.lazy, pair.full, "checkout", "release")
    assert_same_worktree(pair.lazy, pair.full)
    compare(pair.lazy, pair.full, "checkout", "-b", "old-tag", "snapshot-1400")
    assert_same_worktree(pair.lazy, pair.full)
    compare(pair.lazy, pair.full, "checkout", "main")
    assert_same_worktree(pair.lazy, pair.full)


def test_switch_create_from_tag(on_main: Pair) -> None:
    p = on_main
    assert_missing(p, tree_blobs(p.lazy, "v5.0"), at_least=100)
    compare(p.lazy, p.full, "switch", "-c", "from-v5", "v5.0")
    assert_same_worktree(p.lazy, p.full)
    compare(p.lazy, p.full, "switch", "-c", "from-snapshot", "snapshot-600")
    assert_same_worktree(p.lazy, p.full)


def test_checkout_rev_dir(on_main: Pair) -> None:
    p = on_main
    assert_missing(p, tree_blobs(p.lazy, "snapshot-2200", "src/storage"), at_least=5)
    compare(p.lazy, p.full, "checkout", "snapshot-2200", "--", "src/storage")
    assert_same_worktree(p.lazy, p.full)
    compare(p.lazy, p.full, "diff", "--cached", "--stat")


def test_restore_source(on_main: Pair) -> None:
    p = on_main
    path = ordinary_file(p.full)
    compare(p.lazy, p.full, "restore", "--source=snapshot-200", "--", HOT, path)
    assert_same_worktree(p.lazy, p.full)
    compare(p.lazy, p.full, "diff")
    compare(p.lazy, p.full, "restore", "--source=v4.0", "--staged", "--worktree", "--", "src/net")
    assert_same_worktree(p.lazy, p.full)


def test_archive(on_main: Pair) -> None:
    p = on_main
    out = compare(p.lazy, p.full, "archive", "HEAD")
    names = tarfile.open(fileobj=BytesIO(out.stdout)).getnames()
    assert len(names) > 2000
    listing = [
        subprocess.run(
            ["tar", "-t"], input=git(repo, "archive", "HEAD").stdout, capture_output=True, check=True
        ).stdout
        for repo in (p.lazy, p.full)
    ]
    assert listing[0] == listing[1]
    assert_missing(p, tree_blobs(p.lazy, "v10.0"), at_least=100)
    compare(p.lazy, p.full, "archive", "--format=tar", "v10.0")
    compare(p.lazy, p.full, "archive", "--format=zip", "snapshot-4600", "src")


def test_worktree_add(on_main: Pair, tmp_path: Path) -> None:
    p = on_main
    assert_missing(p, tree_blobs(p.lazy, "v7.0"), at_least=100)
    trees = {}
    for name, repo in (("lazy", p.lazy), ("full", p.full)):
        trees[name] = tmp_path / name / "wt"
        trees[name].parent.mkdir()
    f = git(p.full, "worktree", "add", "--detach", str(trees["full"]), "v7.0")
    lz = git(p.lazy, "worktree", "add", "--detach", str(trees["lazy"]), "v7.0")
    assert lz.stdout == f.stdout
    assert_same_worktree(trees["lazy"], trees["full"])
    # Lazy fetches from inside the linked worktree (GIT_DIR is .git/worktrees/wt).
    compare(trees["lazy"], trees["full"], "switch", "-c", "wt-branch", "snapshot-1800")
    assert_same_worktree(trees["lazy"], trees["full"])
    compare(trees["lazy"], trees["full"], "log", "-p", "-3")
    for repo, wt in ((p.lazy, trees["lazy"]), (p.full, trees["full"])):
        git(repo, "worktree", "remove", "--force", str(wt))


def test_cherry_pick(on_main: Pair) -> None:
    p = on_main
    # The first release commit of cycle 7 (its parent is snapshot-3000 on main).
    first_fix = git(p.full, "rev-list", "--first-parent", "snapshot-3000..v7.0").text.split()[-1]
    compare(p.lazy, p.full, "switch", "-q", "-c", "pick-release", "snapshot-3400")
    compare(p.lazy, p.full, "cherry-pick", first_fix)
    compare(p.lazy, p.full, "rev-parse", "HEAD", "HEAD^{tree}")
    compare(p.lazy, p.full, "switch", "-q", "-c", "pick-newer", "snapshot-3000")
    compare(p.lazy, p.full, "cherry-pick", "snapshot-3400", "snapshot-3400~2")
    compare(p.lazy, p.full, "rev-parse", "HEAD", "HEAD^{tree}")
    assert_same_worktree(p.lazy, p.full)
    # A conflicting cherry-pick fails the same way and leaves the same conflict.
    compare(p.lazy, p.full, "cherry-pick", "snapshot-3400~1", expect_ok=False)
    compare(p.lazy, p.full, "diff")
    assert_same_worktree(p.lazy, p.full)
    compare(p.lazy, p.full, "cherry-pick", "--abort")


def test_merge(on_main: Pair) -> None:
    p = on_main
    compare(p.lazy, p.full, "switch", "-q", "-c", "merge-release", "snapshot-2600")
    compare(p.lazy, p.full, "merge", "--no-edit", "v6.0")
    compare(p.lazy, p.full, "rev-parse", "HEAD", "HEAD^{tree}")
    compare(p.lazy, p.full, "switch", "-q", "-c", "merge-main", "v6.0")
    out = compare(p.lazy, p.full, "merge", "--no-edit", "snapshot-3400")
    assert "rename" in out.text  # rename detection read blobs
    compare(p.lazy, p.full, "rev-parse", "HEAD", "HEAD^{tree}")
    assert_same_worktree(p.lazy, p.full)


def test_stash(on_main: Pair) -> None:
    p = on_main
    compare(p.lazy, p.full, "switch", "-q", "-c", "stash-test", "snapshot-1800")
    path = ordinary_file(p.full)
    for repo in (p.lazy, p.full):
        with (repo / HOT).open("a") as f:
            f.write("# local change\n")
        (repo / path).write_text("replaced\n")
        (repo / "untracked.txt").write_text("new\n")
        git(repo, "add", "untracked.txt")
    compare(p.lazy, p.full, "stash")
    assert_same_worktree(p.lazy, p.full)
    compare(p.lazy, p.full, "stash", "show", "-p")
    compare(p.lazy, p.full, "stash", "list")
    compare(p.lazy, p.full, "stash", "pop")
    assert_same_worktree(p.lazy, p.full)


def test_status_after_rename(on_main: Pair) -> None:
    p = on_main
    compare(p.lazy, p.full, "switch", "-q", "-c", "rename-test", "snapshot-4200")
    files = git(p.full, "ls-tree", "-r", "--name-only", "HEAD", "--", "src/net").text.split()
    assert len(files) >= 3
    compare(p.lazy, p.full, "mv", files[0], "moved-by-git-mv.py")
    for repo in (p.lazy, p.full):
        (repo / files[1]).rename(repo / "renamed-on-disk.py")
        text = (repo / "renamed-on-disk.py").read_text()
        (repo / "renamed-on-disk.py").write_text(text + "# a small edit\n")
        (repo / files[2]).rename(repo / "src" / "moved.py")
    compare(p.lazy, p.full, "status", "--porcelain")
    compare(p.lazy, p.full, "add", "-A")
    out = compare(p.lazy, p.full, "status", "--porcelain")
    assert out.text.count("R  ") >= 3
    compare(p.lazy, p.full, "diff", "--cached", "-M", "--stat")
    compare(p.lazy, p.full, "status")


def test_fsck(pair: Pair) -> None:
    out = git(pair.lazy, "fsck", check=False)
    assert out.returncode == 0, out.err[-3000:]


def test_gc_then_fsck_and_reads(pair: Pair) -> None:
    fetched = changed_blobs(pair.lazy, "diff", "v3.0", "v4.0")
    assert all(has_object(pair.lazy, o) for o in fetched)  # from test_diff_between_revisions
    still_missing = tree_blobs(pair.lazy, "snapshot-5000", "src/cli")
    still_missing = [o for o in still_missing if not has_object(pair.lazy, o)]
    assert still_missing
    out = git(pair.lazy, "gc", "--quiet", check=False)
    assert out.returncode == 0, out.err[-3000:]
    out = git(pair.lazy, "fsck", check=False)
    assert out.returncode == 0, out.err[-3000:]
    # Blobs fetched before gc are still there (no lazy fetch allowed) ...
    data = "".join(f"{o}\n" for o in fetched).encode()
    compare(pair.lazy, pair.full, "cat-file", "--batch", input=data, lazy_env=NO_LAZY)
    compare(pair.lazy, pair.full, "diff", "v3.0", "v4.0", lazy_env=NO_LAZY)
    # ... and blobs still missing are fetched through the (still running) daemon.
    compare(pair.lazy, pair.full, "grep", "-c", "-e", "def ", "snapshot-5000", "--", "src/cli")
    assert all(has_object(pair.lazy, o) for o in still_missing)
    out = git(pair.lazy, "fsck", check=False)
    assert out.returncode == 0, out.err[-3000:]
