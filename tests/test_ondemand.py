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
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import REPO, Published, stop_daemon
from faultproxy import FaultProxy, Rule
from gitcompare import (
    NO_LAZY,
    assert_same_worktree,
    base_env,
    bytes_read_twice,
    changed_blobs,
    compare,
    git,
    missing_among,
    missing_objects,
    parse_ranges,
    resolve,
    tree_blobs,
)
from readobject_driver import ReadObjectDriver
from servers import Nginx

from lazygit import daemonclient
from lazygit.clone import CloneOptions, clone
from lazygit.daemon import FORCED_MERGE_FACTOR
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
def pair(
    large: Published, nginx: Nginx, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
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
    missing = missing_among(pair.lazy, oids)
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
    assert not missing_among(pair.lazy, blobs)


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
    assert len({line.split()[0].lstrip("^") for line in out.text.splitlines()}) >= 5
    compare(pair.lazy, pair.full, "blame", "-L", "1,20", "--porcelain", "v3.0", "--", HOT)


def test_blame_ordinary_file(pair: Pair) -> None:
    path = ordinary_file(pair.full)
    compare(pair.lazy, pair.full, "blame", "HEAD", "--", path)
    compare(pair.lazy, pair.full, "blame", "-w", "-M", "v6.0", "--", path)


def test_grep_in_old_revision(pair: Pair) -> None:
    blobs = tree_blobs(pair.lazy, "v6.0", "src/net", "docs/net")
    assert_missing(pair, blobs, at_least=len(blobs) // 2)
    out = compare(
        pair.lazy, pair.full, "grep", "-n", "-e", "fetch", "v6.0", "--", "src/net", "docs/net"
    )
    assert out.text.count("\n") > 5
    compare(
        pair.lazy, pair.full, "grep", "-c", "-i", "-e", "TOKEN", "snapshot-3000", "--", "src/net"
    )
    # No match: exit 1 in both.
    compare(
        pair.lazy,
        pair.full,
        "grep",
        "-e",
        "no such text anywhere",
        "v6.0",
        "--",
        "src/net",
        expect_ok=False,
    )


def test_cat_file_batch(pair: Pair) -> None:
    blobs = tree_blobs(pair.lazy, "v7.0", "src/storage", "tests/storage")
    missing = missing_among(pair.lazy, blobs)
    assert len(missing) >= 10
    ids = ["HEAD", "HEAD^{tree}", "v7.0", *missing[:40], "v7.0:" + HOT, *missing[:3]]
    data = "".join(f"{i}\n" for i in ids).encode()
    out = compare(pair.lazy, pair.full, "cat-file", "--batch", input=data)
    headers = re.findall(rb"^[0-9a-f]{40} blob [0-9]+$", out.stdout, re.MULTILINE)
    assert len(headers) == len(missing[:40]) + 1 + len(missing[:3])
    compare(pair.lazy, pair.full, "cat-file", "--batch-check", input=data)


def test_cat_file_batch_unknown_object(pair: Pair) -> None:
    """An id the server does not have: 'missing' in both, and the batch goes on."""
    blob = missing_among(pair.lazy, tree_blobs(pair.lazy, "v8.0", "src/auth"))[0]
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
    dirs = git(p.lazy, "ls-tree", "-d", "--name-only", "snapshot-2200", "src/").text.split()
    # A directory whose old blobs are still missing (earlier tests fetched some).
    d = next(
        d for d in dirs if len(missing_among(p.lazy, tree_blobs(p.lazy, "snapshot-2200", d))) >= 5
    )
    compare(p.lazy, p.full, "checkout", "snapshot-2200", "--", d)
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
    with tarfile.open(fileobj=BytesIO(out.stdout)) as tar:
        names = tar.getnames()
    assert len(names) > 2000
    listing = [
        subprocess.run(
            ["tar", "-t"],
            input=git(repo, "archive", "HEAD").stdout,
            capture_output=True,
            check=True,
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
    for name in ("lazy", "full"):
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
    assert not missing_among(pair.lazy, fetched)  # from test_diff_between_revisions
    still_missing = tree_blobs(pair.lazy, "snapshot-5000", "src/cli")
    still_missing = missing_among(pair.lazy, still_missing)
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
    assert not missing_among(pair.lazy, still_missing)
    out = git(pair.lazy, "fsck", check=False)
    assert out.returncode == 0, out.err[-3000:]


# =========================================================================================
# The same reads through microsoft/git's read-object hook (driven by readobject_driver).


def hook_cases(repo: Path, full: Path) -> list[tuple[tuple[str, ...], bytes | None, list[str]]]:
    """(git command, stdin, every blob it reads) for the object-reading commands."""
    other = ordinary_file(full)
    a, b = "snapshot-5000~20", "snapshot-5000"
    storage = tree_blobs(repo, "v9.0", "src/storage")
    return [
        (("show", f"v2.0:{HOT}"), None, resolve(repo, [f"v2.0:{HOT}"])),
        (
            ("show", "snapshot-3800"),
            None,
            changed_blobs(repo, "diff", "snapshot-3800^", "snapshot-3800"),
        ),
        (("diff", a, b), None, changed_blobs(repo, "diff", a, b)),
        (("diff", "--stat", "v10.0", "v11.0"), None, changed_blobs(repo, "diff", "v10.0", "v11.0")),
        (
            ("log", "-p", "-20", "snapshot-5400"),
            None,
            changed_blobs(repo, "log", "--format=", "-20", "snapshot-5400"),
        ),
        (
            ("log", "--stat", "-20", "v12.0"),
            None,
            changed_blobs(repo, "log", "--format=", "-20", "v12.0"),
        ),
        (
            ("blame", "snapshot-4600", "--", other),
            None,
            changed_blobs(repo, "log", "--format=", "-m", "snapshot-4600", "--", other),
        ),
        (
            ("blame", "v1.0", "--", HOT),
            None,
            changed_blobs(repo, "log", "--format=", "-m", "v1.0", "--", HOT),
        ),
        (
            ("grep", "-n", "-e", "fetch", "v8.0", "--", "src/net"),
            None,
            tree_blobs(repo, "v8.0", "src/net"),
        ),
        (("cat-file", "--batch"), "".join(f"{o}\n" for o in storage).encode(), storage),
        # (`git archive REV -- PATH` reads blobs outside PATH in a partial clone: the tree-ish
        # is the subtree instead, so that the blobs it reads are known.)
        (("archive", "v7.0:src/cli"), None, tree_blobs(repo, "v7.0", "src/cli")),
    ]


@pytest.fixture(scope="module")
def hooked(pair: Pair, large: Published) -> Iterator[tuple[Pair, Path]]:
    """A fresh lazy clone of LARGE with the read-object hook; compared with large.full.

    Its prefetch is off: every blob the matrix reads goes through the hook.  With it on, how
    many did depended on whether the cold daemon's history index was ready by the third
    command (then tree runs brought most of the fourth's blobs ahead): 262 to 697 blobs in
    runs of the same code, and a CI run failed `asked > 300` (2026-11-22)."""
    lazy = pair.lazy.parent / "hooked"
    clone(CloneOptions(pair.url, lazy, no_checkout=True))
    git(lazy, "config", "lazygit.prefetchBytes", "0")
    hook = install_read_object_hook(LocalRepo.find(lazy))
    yield Pair(lazy, large.full, large, pair.url), hook
    stop_daemon(lazy / ".git")


def test_read_object_hook_matrix(hooked: tuple[Pair, Path]) -> None:
    p, hook = hooked
    asked = 0
    for args, stdin, blobs in hook_cases(p.lazy, p.full):
        assert blobs, args
        needed = missing_among(p.lazy, blobs)
        with ReadObjectDriver(hook, p.git_dir, base_env(), cwd=p.lazy) as driver:
            statuses = {oid: driver.get(oid) for oid in needed}
            assert driver.close() == (0 if needed else None)
            assert "Traceback" not in driver.stderr_text()
        assert {o: s for o, s in statuses.items() if s != "success"} == {}, args
        asked += len(needed)
        # Only what the hook fetched may be used: lazy fetching is off for the command.
        if args[0] == "archive":
            assert _tar_members(p.lazy, args, NO_LAZY) == _tar_members(p.full, args), args
        else:
            compare(p.lazy, p.full, *args, input=stdin, lazy_env=NO_LAZY)
    assert asked > 300


def _tar_members(repo: Path, args: tuple[str, ...], env: dict[str, str] | None = None) -> list:
    """The members of `git ARGS`'s tar: name, mode and contents.  Not their times: the
    archive of a tree (not a commit) is stamped with the time it is made, and git 2.39 has no
    --mtime, so two runs a second apart differed (a CI run on 2026-11-22)."""
    out = git(repo, *args, env=env).stdout
    with tarfile.open(fileobj=BytesIO(out)) as tar:
        return [
            (m.name, m.mode, m.type, tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
            for m in tar.getmembers()
        ]


# =========================================================================================
# 16 git processes at once against a cold daemon: every pack byte is read once.


def test_sixteen_concurrent_git_processes(
    large: Published, nginx: Nginx, server_root: Path, tmp_path: Path, daemons: list[Path]
) -> None:
    name = "ondemand-concurrent.git"  # the LARGE repository under its own name in the log
    link = server_root / name
    if not link.exists():
        link.symlink_to(large.info.path, target_is_directory=True)
    lazy = tmp_path / "lazy"
    clone(CloneOptions(nginx.url(name), lazy, no_checkout=True))
    daemons.append(lazy / ".git")
    pool = missing_among(lazy, tree_blobs(lazy, "v9.0"))
    assert len(pool) > 1000
    commands: list[tuple[tuple[str, ...], bytes | None]] = []
    for i in range(8):  # overlapping slices of one list of missing blobs
        ids = pool[i * 40 : i * 40 + 120]
        commands.append((("cat-file", "--batch"), "".join(f"{o}\n" for o in ids).encode()))
    for i in range(8):  # overlapping commit ranges
        commands.append((("diff", f"main~{600 + 15 * i}", f"main~{560 + 15 * i}"), None))
    expected = [git(large.full, *args, input=stdin) for args, stdin in commands]
    assert all(r.stdout for r in expected)
    nginx.clear_log()
    procs = []
    for args, _stdin in commands:
        out = (tmp_path / f"out-{len(procs)}").open("w+b")
        err = (tmp_path / f"err-{len(procs)}").open("w+b")
        argv = ["git", "-c", "color.ui=never", "--no-pager", *args]
        proc = subprocess.Popen(
            argv, cwd=lazy, env=base_env(), stdin=subprocess.PIPE, stdout=out, stderr=err
        )
        procs.append((proc, out, err))
    for (proc, _out, _err), (_args, stdin) in zip(procs, commands, strict=True):
        assert proc.stdin is not None
        proc.stdin.write(stdin or b"")
        proc.stdin.close()
    for (proc, out, err), want, (args, _stdin) in zip(procs, expected, commands, strict=True):
        assert proc.wait(timeout=600) == 0, (args, err.seek(0), err.read().decode())
        out.seek(0)
        assert out.read() == want.stdout, args
        out.close()
        err.close()
    reads = []
    for entry in nginx.log_entries():
        if entry.method != "GET" or not entry.path.startswith(f"/{name}/"):
            continue
        if not entry.path.endswith(".pack") or entry.status not in (200, 206):
            continue
        rel = entry.path[len(f"/{name}/") :]
        size = (large.info.path / rel).stat().st_size
        if entry.status == 200:
            reads.append((rel, [(0, size)]))
        else:
            assert entry.range, entry
            reads.append((rel, parse_ranges(entry.range, size)))
    assert reads, "the daemon read no pack bytes"
    assert bytes_read_twice(reads) == {}


# =========================================================================================
# Robustness: a daemon killed mid-batch, progress, offline, pack count.


def test_sigkill_of_the_daemon_mid_batch(
    large: Published, nginx: Nginx, tmp_path: Path, daemons: list[Path]
) -> None:
    lazy = tmp_path / "lazy"
    git_dir = lazy / ".git"
    clone(CloneOptions(nginx.url(large.name), lazy, no_checkout=True))
    daemons.append(git_dir)
    err = (tmp_path / "stderr").open("w+b")
    proc = subprocess.Popen(
        ["git", "checkout", "main"], cwd=lazy, env=base_env(), stdout=subprocess.DEVNULL, stderr=err
    )
    killed = None
    deadline = time.monotonic() + 120  # only a guard against a hang
    while proc.poll() is None and time.monotonic() < deadline:
        pid = daemon_pid(git_dir)
        busy = list((git_dir / "lazygit" / "tmp").glob("spool-*"))
        busy += list((git_dir / "objects" / "pack").glob("tmp_*"))
        if pid is not None and busy:
            os.kill(pid, signal.SIGKILL)
            killed = pid
            break
        time.sleep(0.005)
    rc = proc.wait(timeout=300)
    err.seek(0)
    stderr = err.read().decode(errors="replace")
    err.close()
    if rc != 0:
        lines = lazygit_lines(stderr)
        assert len(lines) == 1, stderr
        assert lines[0].startswith("lazygit: error: "), stderr
    # The next command starts a new daemon and succeeds.
    git(lazy, "reset", "-q", "--hard", "main")
    assert killed is None or daemon_pid(git_dir) != killed
    assert_same_worktree(lazy, large.full)
    fsck = git(lazy, "fsck", check=False)
    assert fsck.returncode == 0, fsck.err[-3000:]


@pytest.fixture
def small_lazy(small: Published, nginx: Nginx, tmp_path: Path, daemons: list[Path]) -> Path:
    lazy = tmp_path / "small-lazy"
    clone(CloneOptions(nginx.url(small.name), lazy, no_checkout=True))
    daemons.append(lazy / ".git")
    return lazy


def run_helper(lazy: Path, url: str, dialogue: str) -> subprocess.CompletedProcess[bytes]:
    """git-remote-lazy spoken to the way git 2.39 does for a lazy fetch."""
    env = base_env(
        {"GIT_DIR": ".git", "GIT_CONFIG_PARAMETERS": "'fetch.negotiationalgorithm'='noop'"}
    )
    return subprocess.run(
        [str(HELPER), "origin", url],
        cwd=lazy,
        input=dialogue.encode(),
        env=env,
        capture_output=True,
        timeout=300,
    )


def test_progress_true_prints_one_line_per_batch(small_lazy: Path) -> None:
    url = git(small_lazy, "config", "remote.origin.url").text.strip()
    blobs = missing_among(small_lazy, tree_blobs(small_lazy, "HEAD", "src"))[:5]
    head = "capabilities\noption progress {}\noption verbosity 1\noption filter blob:none\n"
    head += "option from-promisor 1\nlist\n"
    for progress, batch in (("true", blobs[:3]), ("false", blobs[3:])):
        dialogue = head.format(progress) + "".join(f"fetch {o} {o}\n" for o in batch) + "\n"
        proc = run_helper(small_lazy, url, dialogue)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == b"fetch\noption\n\nok\nok\nok\nok\n\n\n"
        stderr = proc.stderr.decode()
        if progress == "true":
            assert re.fullmatch(
                r"lazygit: fetched [0-9]+ objects \([0-9]+ KiB\) in [0-9]+\.[0-9]+ s\n", stderr
            ), stderr
        else:
            assert stderr == ""
        assert not missing_among(small_lazy, batch)


def test_offline_fails_fast_with_a_clear_message(
    small: Published, server_root: Path, tmp_path: Path, daemons: list[Path]
) -> None:
    server = Nginx(server_root, tmp_path / "nginx").start()
    try:
        lazy = tmp_path / "lazy"
        clone(CloneOptions(server.url(small.name), lazy, no_checkout=True))
        daemons.append(lazy / ".git")
        git(lazy, "config", "lazygit.connectTimeout", "2")
        git(lazy, "config", "lazygit.readTimeout", "2")
        git(lazy, "config", "lazygit.daemonTimeout", "20")
        git(lazy, "config", "lazygit.prefetchBytes", "0")
        # Retries of a server that answered before, quick ones: the default six back off ~10 s.
        git(lazy, "config", "lazygit.retryBackoff", "0.05")
        blobs = missing_among(lazy, tree_blobs(lazy, "HEAD", "src"))
        git(lazy, "cat-file", "-p", blobs[0])  # the daemon is warm and connected
        port = server.port
    finally:
        server.stop()

    def lazy_fetch_fails(oid: str) -> str:
        out = git(lazy, "cat-file", "-p", oid, check=False, timeout=120)
        assert out.returncode != 0
        lines = lazygit_lines(out.err)
        assert len(lines) == 1 and lines[0].startswith("lazygit: error: "), out.err
        return lines[0]

    # Connection refused, warm daemon and then a freshly started one.
    assert "cannot reach" in lazy_fetch_fails(blobs[1])
    stop_daemon(lazy / ".git")
    assert "cannot reach" in lazy_fetch_fails(blobs[2])
    # A server that accepts connections but never answers (fewer retries: a shorter test).
    git(lazy, "config", "lazygit.retries", "1")
    git(lazy, "config", "lazygit.readTimeout", "0.5")
    stop_daemon(lazy / ".git")  # a daemon reads its settings once, at start
    with socket.socket() as black_hole:
        black_hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        black_hole.bind(("127.0.0.1", port))
        black_hole.listen(64)
        line = lazy_fetch_fails(blobs[3])
    assert "cannot reach" in line or "timed out" in line, line
    assert missing_among(lazy, blobs[1:4]) == blobs[1:4]
    fsck = git(lazy, "fsck", check=False)
    assert fsck.returncode == 0, fsck.err[-3000:]


def promisor_count(lazy: Path) -> int:
    return len(list((lazy / ".git" / "objects" / "pack").glob("pack-*.promisor")))


def daemon_stats(lazy: Path) -> dict[str, object]:
    return daemonclient.request(lazy / ".git", {"op": "stats"}, start=False, timeout=30)


def wait_for_merge(lazy: Path, limit: int) -> None:
    """Until the daemon has no merge of promisor packs due, and at most ``limit`` remain."""
    deadline = time.monotonic() + 30
    while daemon_stats(lazy)["merge_due"] or promisor_count(lazy) > limit:
        assert time.monotonic() < deadline, f"{promisor_count(lazy)} promisor packs, not merged"
        time.sleep(0.05)


def test_pack_count_stays_bounded(small_lazy: Path) -> None:
    lazy = small_lazy
    git(lazy, "config", "lazygit.prefetchBytes", "0")  # one batch per git process
    blobs = missing_among(lazy, tree_blobs(lazy, "HEAD"))[:40]
    assert len(blobs) == 40
    for oid in blobs:
        git(lazy, "cat-file", "-p", oid)
        assert promisor_count(lazy) <= FORCED_MERGE_FACTOR * 16
    assert daemon_stats(lazy)["batches"] > 16 + 1  # (a wanted blob may be another's base)
    wait_for_merge(lazy, 16)
    assert not missing_among(lazy, blobs)
    fsck = git(lazy, "fsck", check=False)
    assert fsck.returncode == 0, fsck.err[-3000:]


def _push_each(work: Path, first: int, count: int) -> None:
    """``count`` commits, each pushed alone (the server keeps a pack for each)."""
    for i in range(first, first + count):
        (work / f"f{i % 5}.txt").write_text(f"push {i}\n")
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", f"push {i}")
        git(work, "push", "-q", "origin", "HEAD:main")


def test_many_small_server_packs_make_one_local_pack(
    nginx: Nginx, server_root: Path, tmp_path: Path, daemons: list[Path]
) -> None:
    """A server with many pushes since its last gc has as many small packs, each read whole:
    the clone made a promisor pack of each (20 pushes: 20 local packs, by 20 index-pack
    runs), and `git fetch` one per new pack.  They now go into one pack, each object once
    (pushed packs repeat the bases `--fix-thin` appended; git refuses a pack that holds an
    object twice).  And they are read several at once, not in 20 round trips in a row."""
    bare = server_root / "ondemand-pushes.git"
    shutil.rmtree(bare, ignore_errors=True)
    git(server_root, "init", "-q", "--bare", "-b", "main", str(bare))
    git(bare, "config", "receive.unpackLimit", "1")  # every push leaves a pack
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    _push_each(work, 0, 20)
    git(bare, "update-server-info")
    server_packs = list((bare / "objects" / "pack").glob("*.idx"))
    assert len(server_packs) == 20
    held = sum(
        len(git(bare, "show-index", input=p.read_bytes()).text.splitlines()) for p in server_packs
    )
    unique = len(git(bare, "rev-list", "--objects", "--all").text.splitlines())
    assert held > unique  # objects repeated across the pushed packs
    lazy = tmp_path / "lazy"
    with FaultProxy(nginx.port) as proxy:
        proxy.add(Rule("delay", path=r"\.pack$", methods=("GET",), stall=0.2))
        lazy_clone_cli(proxy.url(bare.name), lazy)
        whole = [
            e for e in proxy.log if e.method == "GET" and e.path.endswith(".pack") and not e.range
        ]
    assert len(whole) == 20 and all(e.answered is not None for e in whole)
    assert max(e.started for e in whole[:4]) < min(e.answered for e in whole[:4])  # type: ignore[type-var]
    git(lazy, "remote", "set-url", "origin", f"lazy::{nginx.url(bare.name)}")
    daemons.append(lazy / ".git")
    assert promisor_count(lazy) == 1
    (pack,) = (lazy / ".git" / "objects" / "pack").glob("pack-*.idx")
    git(lazy, "verify-pack", str(pack))
    compare(lazy, work, "log", "-p")

    _push_each(work, 20, 5)
    git(bare, "update-server-info")
    git(lazy, "fetch", "-q")
    assert promisor_count(lazy) == 2
    compare(lazy, work, "log", "-p", "origin/main")
    fsck = git(lazy, "fsck", check=False)
    assert fsck.returncode == 0, fsck.err[-3000:]


def test_a_whole_pack_is_copied_in_bounded_pieces(
    nginx: Nginx, server_root: Path, tmp_path: Path, daemons: list[Path]
) -> None:
    """With lazygit.smallPackBytes raised, a pack read whole may hold an entry bigger than
    the pieces it is copied in (HOLD_BYTES): it goes through in pieces, hash-checked."""
    bare = server_root / "ondemand-bigwhole.git"
    shutil.rmtree(bare, ignore_errors=True)
    git(server_root, "init", "-q", "--bare", "-b", "main", str(bare))
    git(bare, "config", "receive.unpackLimit", "1")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    _push_each(work, 0, 2)
    (work / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # (incompressible)
    git(work, "add", "big.bin")
    git(work, "commit", "-q", "-m", "big")
    git(work, "push", "-q", "origin", "HEAD:main")
    git(bare, "update-server-info")
    lazy = tmp_path / "lazy"
    proc = subprocess.run(
        [str(LAZYGIT), "clone", "--no-checkout", "-q", nginx.url(bare.name), str(lazy)],
        env=base_env(
            {  # entry 0 keeps conftest's lazygit.prestartDaemon=false
                "GIT_CONFIG_COUNT": "2",
                "GIT_CONFIG_KEY_1": "lazygit.smallPackBytes",
                "GIT_CONFIG_VALUE_1": "16m",
            }
        ),
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    daemons.append(lazy / ".git")
    assert promisor_count(lazy) == 1
    out = git(lazy, "cat-file", "blob", "HEAD:big.bin", env=NO_LAZY)
    assert out.stdout == (work / "big.bin").read_bytes()


def test_a_daemon_merges_the_packs_it_starts_with(small_lazy: Path) -> None:
    """Promisor packs beyond lazygit.maxPromisorPacks are merged from the daemon's start,
    not only after its first batch has landed."""
    lazy = small_lazy
    stop_daemon(lazy / ".git")
    pack_dir = lazy / ".git" / "objects" / "pack"
    for oid in git(lazy, "rev-list", "-3", "HEAD").text.split():  # 3 more promisor packs
        name = git(lazy, "pack-objects", "-q", str(pack_dir / "pack"), input=oid.encode() + b"\n")
        (pack_dir / f"pack-{name.text.strip()}.promisor").write_text("")
    git(lazy, "config", "lazygit.maxPromisorPacks", "2")
    assert promisor_count(lazy) > 2
    daemonclient.request(lazy / ".git", {"op": "ping"}, timeout=30)
    wait_for_merge(lazy, 2)
    assert daemon_stats(lazy)["batches"] == 0
    fsck = git(lazy, "fsck", check=False)
    assert fsck.returncode == 0, fsck.err[-3000:]


def test_packs_merge_when_no_git_has_them_open(small_lazy: Path) -> None:
    """A git process that has looked in the small packs would count a merged pack's objects
    twice after its next lazy fetch, and abbreviate hashes longer than a full clone does: the
    merge waits for it to exit, unless the pack count passes FORCED_MERGE_FACTOR times the
    limit."""
    lazy = small_lazy
    git(lazy, "config", "lazygit.prefetchBytes", "0")
    git(lazy, "config", "lazygit.maxPromisorPacks", "4")
    blobs = iter(missing_among(lazy, tree_blobs(lazy, "HEAD")))
    batch = subprocess.Popen(
        ["git", "cat-file", "--batch"],
        cwd=lazy,
        env=base_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert batch.stdin is not None and batch.stdout is not None

    def read_one() -> int:
        """One missing blob through the running cat-file; the promisor packs after it."""
        oid = next(blobs)
        batch.stdin.write(f"{oid}\n".encode())
        batch.stdin.flush()
        header = batch.stdout.readline().split()
        assert header[:2] == [oid.encode(), b"blob"], header
        batch.stdout.read(int(header[2]) + 1)
        return promisor_count(lazy)

    try:
        counts = [read_one()]
        while counts[-1] <= 4 + 1 and len(counts) < 12:  # beyond the limit, and one more
            counts.append(read_one())
        time.sleep(1.0)  # two looks of the daemon's merge thread at least (0.25 s, 0.5 s)
        assert daemon_stats(lazy)["merge_due"]
        assert promisor_count(lazy) == 4 + 2, f"merged under a running git: {counts}"
        counts = [read_one() for _ in range(FORCED_MERGE_FACTOR * 4)]
        assert max(counts) <= FORCED_MERGE_FACTOR * 4, counts
        assert any(b < a for a, b in pairwise([4 + 2, *counts])), counts  # merged at once
    finally:
        batch.stdin.close()
        batch.wait(timeout=60)
    wait_for_merge(lazy, 4)
    fsck = git(lazy, "fsck", check=False)
    assert fsck.returncode == 0, fsck.err[-3000:]


def test_git_c_sets_a_setting_for_one_command(small_lazy: Path) -> None:
    """`git -c lazygit.offline=true CMD` reaches the daemon with that command's lazy fetch
    (the helper forwards it): the command fetches nothing; the next one, without it, does."""
    lazy = small_lazy
    blob, other = missing_among(lazy, tree_blobs(lazy, "HEAD"))[:2]
    out = git(lazy, "-c", "lazygit.offline=true", "cat-file", "-p", blob, check=False)
    assert out.returncode != 0
    assert "lazygit is offline" in out.err, out.err
    assert missing_among(lazy, [blob])
    git(lazy, "cat-file", "-p", blob)
    assert not missing_among(lazy, [blob])
    bad = git(lazy, "-c", "lazygit.prefetchBytes=lots", "cat-file", "-p", other, check=False)
    assert bad.returncode != 0
    assert "bad value 'lots' for git config lazygit.prefetchBytes" in bad.err, bad.err


def test_a_changed_setting_reaches_the_running_daemon(small_lazy: Path, nginx: Nginx) -> None:
    """The HTTP clients and the engine take their settings when the daemon starts; a change
    to the git config renews them for the next lazy fetch (docs/configuration.md)."""
    lazy = small_lazy
    git(lazy, "config", "lazygit.prefetchBytes", "0")
    pack_reads = lambda: [e for e in nginx.log_entries() if e.path.endswith(".pack")]  # noqa: E731
    nginx.clear_log()
    git(lazy, "archive", "-o", "/dev/null", "HEAD", "src/net")  # one batch
    before = daemon_stats(lazy)["pid"]
    assert any("," in (e.range or "") for e in pack_reads())  # several ranges per request
    git(lazy, "config", "lazygit.rangesPerRequest", "1")
    nginx.clear_log()
    git(lazy, "archive", "-o", "/dev/null", "HEAD~100", "src")  # older: not in the cache
    reads = [e for e in pack_reads() if e.range != "bytes=0-0,2-2"]  # (the new multi-range probe)
    assert reads and all("," not in (e.range or "") for e in reads), reads
    assert daemon_stats(lazy)["pid"] == before  # renewed in place, not restarted
    # How long clients wait for the daemon is in daemon.json: published again.
    git(lazy, "config", "lazygit.daemonTimeout", "77")
    head = git(lazy, "rev-parse", "HEAD").text.strip()
    daemonclient.request(lazy / ".git", {"op": "fetch", "oids": [head]}, start=False, timeout=30)
    info = json.loads((lazy / ".git" / "lazygit" / "daemon.json").read_text())
    assert info["timeout"] == 77 and info["pid"] == before


# =========================================================================================
# New commits on the server: git fetch and git pull in the lazy clone, then their blobs.


def commit_changes(scratch: Path, step: int, info_binary: str) -> str:
    """One commit editing, adding, renaming, deleting and changing a binary file."""
    env = {"GIT_AUTHOR_DATE": f"{1800000000 + step} +0000"}
    env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"]
    with (scratch / HOT).open("a") as f:
        f.write(f"# pushed change {step}\n")
    new = scratch / "pushed" / f"new_{step}.py"
    new.parent.mkdir(exist_ok=True)
    new.write_text("".join(f"line {i} of step {step}\n" for i in range(200)))
    binary = scratch / info_binary
    binary.write_bytes(os.urandom(4096) + binary.read_bytes()[4096:])
    files = git(scratch, "ls-files", "src/net").text.split()
    git(scratch, "mv", files[step], f"src/net/renamed_{step}.py")
    git(scratch, "rm", "-q", files[step + 10])
    git(scratch, "add", "-A")
    git(scratch, "commit", "-q", "-m", f"Pushed change {step}", env=env)
    return git(scratch, "rev-parse", "HEAD").text.strip()


def server_log(bare: Path) -> list[str]:
    return sorted(git(bare, "log", "--all", "--format=%H %T").text.splitlines())


def test_fetch_and_pull_bring_new_commits_and_their_blobs(
    large: Published, nginx: Nginx, server_root: Path, tmp_path: Path, daemons: list[Path]
) -> None:
    name = "ondemand-fetch.git"
    bare = server_root / name
    shutil.rmtree(bare, ignore_errors=True)
    shutil.copytree(large.info.path, bare, symlinks=True)
    lazy, full, scratch = tmp_path / "lazy", tmp_path / "full", tmp_path / "scratch"
    lazy_clone_cli(nginx.url(name), lazy)
    daemons.append(lazy / ".git")
    full_clone(bare, full)
    full_clone(bare, scratch)
    compare(lazy, full, "checkout", "main")
    binary = large.info.binary_files[0]

    # Push 1: loose objects on the server (and two new tags).
    first = commit_changes(scratch, 1, binary)
    git(scratch, "tag", "-a", "-m", "pushed tag", "v99.0", env={})
    git(scratch, "tag", "pushed-light", "HEAD~1")
    git(bare, "config", "receive.unpackLimit", "100000")
    packs_before = sorted((bare / "objects" / "pack").glob("*.pack"))
    git(scratch, "push", "-q", "origin", "main", "v99.0", "pushed-light")
    assert sorted((bare / "objects" / "pack").glob("*.pack")) == packs_before
    git(bare, "update-server-info")
    compare(lazy, full, "fetch")
    compare(lazy, full, "log", "--all", "--format=%H %T")
    assert sorted(git(lazy, "log", "--all", "--format=%H %T").text.splitlines()) == server_log(bare)
    compare(lazy, full, "tag", "-l")
    compare(lazy, full, "show", first)
    compare(lazy, full, "show", "v99.0")
    compare(lazy, full, "diff", "main", "origin/main")

    # Push 2: a new pack on the server; git pull (fast-forward) in both.
    commit_changes(scratch, 2, binary)
    second = commit_changes(scratch, 3, binary)
    git(bare, "config", "receive.unpackLimit", "1")
    git(scratch, "push", "-q", "origin", "main")
    assert len(sorted((bare / "objects" / "pack").glob("*.pack"))) == len(packs_before) + 1
    git(bare, "update-server-info")
    compare(lazy, full, "pull")
    assert git(lazy, "rev-parse", "HEAD").text.strip() == second
    compare(lazy, full, "log", "--all", "--format=%H %T")
    assert sorted(git(lazy, "log", "--all", "--format=%H %T").text.splitlines()) == server_log(bare)
    assert_same_worktree(lazy, full)
    compare(lazy, full, "show", second)
    compare(lazy, full, "diff", "HEAD~1", "HEAD")
    compare(lazy, full, "diff", "--stat", "HEAD~3", "HEAD")
    compare(lazy, full, "log", "-p", "-4")
    fsck = git(lazy, "fsck", check=False)
    assert fsck.returncode == 0, fsck.err[-3000:]


def _many_files(bare: Path, first: int, count: int, parent: str | None) -> str:
    """Commit ``count`` new small files (numbered from ``first``) and a change to one old
    file onto ``main`` of ``bare`` by `git fast-import` (one new pack); return the commit."""
    message = f"files from {first}"
    lines = [
        "commit refs/heads/main",
        f"committer T <t@t> {1_700_000_000 + first} +0000",
        f"data {len(message)}",
        message,
    ]
    if parent:
        lines.append(f"from {parent}")
    for i in range(first, first + count):
        data = f"file {i}\n"
        lines += [f"M 100644 inline d{i // 1000:02d}/f{i}.txt", f"data {len(data)}", data]
    data = f"changed at {first}\n"
    lines += ["M 100644 inline d00/f0.txt", f"data {len(data)}", data, ""]
    git(bare, "fast-import", "--quiet", input="\n".join(lines).encode())
    git(bare, "update-server-info")
    return git(bare, "rev-parse", "main").text.strip()


def test_names_are_abbreviated_as_in_a_full_clone(
    nginx: Nginx, server_root: Path, tmp_path: Path, daemons: list[Path]
) -> None:
    """git abbreviates names by the objects it holds (core.abbrev auto: 7 hex digits below
    2^14 packed objects, 8 below 2^16...).  A lazy clone holds commits and trees only, so
    `log -p`, `blame` and `diff` printed 7 digits where a full clone printed 8.  The clone
    now sets core.abbrev from the server's object count, and `git fetch` raises it as the
    server grows; a core.abbrev the user set is left alone."""
    bare = server_root / "ondemand-abbrev.git"
    shutil.rmtree(bare, ignore_errors=True)
    git(server_root, "init", "-q", "--bare", "-b", "main", str(bare))
    _many_files(bare, 0, 15_000, None)
    tip = _many_files(bare, 15_000, 100, "main")
    lazy, full = tmp_path / "lazy", tmp_path / "full"
    lazy_clone_cli(nginx.url(bare.name), lazy)
    daemons.append(lazy / ".git")
    full_clone(bare, full)
    assert git(lazy, "config", "core.abbrev").text.strip() == "7"  # 15,1xx objects: 7

    # The server grows past 2^14 objects: a full clone now prints 8 digits.
    _many_files(bare, 15_100, 2_000, tip)
    compare(lazy, full, "fetch", "-q")
    assert int(git(full, "count-objects", "-v").text.split("in-pack: ")[1].split()[0]) > 1 << 14
    assert git(lazy, "config", "core.abbrev").text.strip() == "8"
    for args in (["log", "-p", "-2", "origin/main"], ["diff", "main", "origin/main", "--", "d00"]):
        out = compare(lazy, full, *args)
        assert re.search(rb"index [0-9a-f]{8}\.\.[0-9a-f]{8} ", out.stdout), out.stdout[:300]

    # A new lazy clone of the bigger server sets 8 at once; one of the user's is kept.
    again = tmp_path / "again"
    lazy_clone_cli(nginx.url(bare.name), again)
    daemons.append(again / ".git")
    assert git(again, "config", "--local", "core.abbrev").text.strip() == "8"
    compare(again, full, "blame", "origin/main", "--", "d00/f0.txt")
    user = tmp_path / "gitconfig"
    user.write_text("[core]\n\tabbrev = 12\n")
    mine = tmp_path / "mine"
    proc = subprocess.run(
        [str(LAZYGIT), "clone", "--no-checkout", "-q", nginx.url(bare.name), str(mine)],
        env=base_env({"GIT_CONFIG_GLOBAL": str(user)}),
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    daemons.append(mine / ".git")
    assert git(mine, "config", "--local", "core.abbrev", check=False).stdout == b""
