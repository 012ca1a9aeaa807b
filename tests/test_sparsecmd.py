"""`lazygit sparse`, the out-of-cone policy, and `lazygit prefetch` (interrupted and rerun).

Real parts: nginx on 127.0.0.1, the SMALL sample, clones made by the lazygit CLI, stock git
with git-remote-lazy on PATH, the real daemon.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, Published
from gitcompare import NO_LAZY, assert_same_worktree, base_env, compare, git, has_object
from servers import Nginx

from lazygit.sparsecmd import cone_matcher

LAZYGIT = REPO / ".venv" / "bin" / "lazygit"


def lazygit(repo: Path, *args: str, env: dict[str, str] | None = None, check: bool = True):
    proc = subprocess.run(
        [str(LAZYGIT), *args], cwd=repo, env=base_env(env), capture_output=True, text=True
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def dirs_of(full: Path) -> list[str]:
    """Leaf directories under src/ with files, most files first."""
    names = git(full, "ls-files", "src").text.splitlines()
    counts: dict[str, int] = {}
    for n in names:
        counts[os.path.dirname(n)] = counts.get(os.path.dirname(n), 0) + 1
    return sorted(counts, key=lambda d: (-counts[d], d))


@pytest.fixture
def sparse_clone(
    small: Published, nginx: Nginx, tmp_path: Path, daemons: list[Path]
) -> tuple[Path, list[str]]:
    dirs = dirs_of(small.full)
    dest = tmp_path / "sparse"
    lazygit(tmp_path, "clone", "-q", "--sparse", dirs[0], nginx.url(small.name), str(dest))
    daemons.append(dest / ".git")
    return dest, dirs


def outside_blob(repo: Path, inside: str) -> tuple[str, str]:
    """A file of HEAD outside the cone (and not in a parent of it) whose blob is missing."""
    match = cone_matcher([inside])
    for line in git(repo, "ls-tree", "-r", "HEAD", "src", env=NO_LAZY).text.splitlines():
        meta, path = line.split("\t")
        oid = meta.split()[2]
        if not match(path) and not has_object(repo, oid):
            return path, oid
    raise AssertionError("no missing blob outside the cone")


def test_cone_matcher_is_gits_cone() -> None:
    m = cone_matcher(["src/net/impl"])
    assert m("README.md") and m("src/a.py") and m("src/net/b.py") and m("src/net/impl/x/y.py")
    assert not m("src/ui/a.py") and not m("docs/a.md") and not m("src/net/api/c.py")


def test_outside_cone_deny_warn_allow(
    sparse_clone: tuple[Path, list[str]], small: Published
) -> None:
    repo, dirs = sparse_clone
    path, oid = outside_blob(repo, dirs[0])
    git(repo, "config", "lazygit.outsideCone", "deny")
    out = git(repo, "cat-file", "-p", oid, check=False)
    assert out.returncode != 0
    assert f"({path}): it is outside the sparse-checkout cone" in out.err
    assert "lazygit sparse add" in out.err and "git config lazygit.outsideCone allow" in out.err
    assert not has_object(repo, oid)
    # Blobs inside the cone are still fetched under deny.
    inside = git(repo, "rev-parse", f"HEAD~5:{git(repo, 'ls-files', dirs[0]).text.split()[0]}",
                 env=NO_LAZY).text.strip()  # fmt: skip
    git(repo, "cat-file", "-p", inside)
    # warn: fetched, and the daemon log says so.
    git(repo, "config", "lazygit.outsideCone", "warn")
    compare(repo, small.full, "cat-file", "-p", oid)
    log = (repo / ".git" / "lazygit" / "daemon.log").read_text()
    assert f"warning: fetching {path}" in log
    # allow (the default): fetched quietly.
    path2, oid2 = outside_blob(repo, dirs[0])
    git(repo, "config", "lazygit.outsideCone", "allow")
    compare(repo, small.full, "cat-file", "-p", oid2)
    assert (
        f"warning: fetching {path2}" not in (repo / ".git" / "lazygit" / "daemon.log").read_text()
    )


def test_sparse_add_hydrates_in_one_batch(
    sparse_clone: tuple[Path, list[str]], small: Published, nginx: Nginx
) -> None:
    repo, dirs = sparse_clone
    new = dirs[1]
    files = git(small.full, "ls-files", new).text.splitlines()
    assert len(files) >= 5 and not (repo / files[0]).exists()
    nginx.clear_log()
    proc = lazygit(repo, "sparse", "add", new)
    assert "1 batch)" in proc.stderr, proc.stderr
    for f in files:
        assert (repo / f).read_bytes() == (small.full / f).read_bytes()
    # Only pack reads, and no per-file requests: one batch of ranged reads.
    entries = nginx.log_entries()
    assert entries and all(e.path.endswith(".pack") for e in entries)
    assert len(entries) < len(files)
    assert lazygit(repo, "sparse", "list").stdout.split() == sorted([dirs[0], new])
    # No lazy fetch happened (git ran with GIT_NO_LAZY_FETCH=1): the daemon fetched nothing.
    log = repo / ".git" / "lazygit" / "daemon.log"
    assert not log.exists() or " batch: " not in log.read_text()
    # Narrowing fetches nothing: no fetch engine, not even the HTTP client's import.
    proc = lazygit(repo, "sparse", "set", dirs[0], env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert "lazygit.sparsecmd" in proc.stderr and "httpx" not in proc.stderr
    assert not (repo / files[0]).exists()
    lazygit(repo, "sparse", "set", dirs[2])
    assert (
        not (repo / files[0]).exists()
        and (repo / git(small.full, "ls-files", dirs[2]).text.split()[0]).exists()
    )
    lazygit(repo, "sparse", "disable")
    assert_same_worktree(repo, small.full)


def test_prefetch_interrupted_then_rerun(
    small: Published, nginx: Nginx, tmp_path: Path, daemons: list[Path]
) -> None:
    dest = tmp_path / "lazy"
    lazygit(tmp_path, "clone", "-q", "--no-checkout", nginx.url(small.name), str(dest))
    daemons.append(dest / ".git")
    wanted = git(dest, "ls-tree", "-r", "v2.0", env=NO_LAZY).text.splitlines()
    oids = [ln.split()[2] for ln in wanted if ln.split()[1] == "blob"]
    packs = dest / ".git" / "objects" / "pack"
    before = set(packs.glob("*.pack"))
    env = {**base_env(), "GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_1": "lazygit.prefetchBatch",
           "GIT_CONFIG_VALUE_1": "40"}  # fmt: skip
    proc = subprocess.Popen(
        [str(LAZYGIT), "prefetch", "-q", "v2.0"], cwd=dest, env=env, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while len(set(packs.glob("*.pack")) - before) < 2 and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [o for o in oids if has_object(dest, o)]
    assert 0 < len(done) < len(oids), "the run should have been cut mid-way"
    nginx.clear_log()
    rerun = subprocess.run(
        [str(LAZYGIT), "prefetch", "v2.0"], cwd=dest, env=env, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} already local" in rerun.stderr
    assert all(has_object(dest, o) for o in oids)
    again = lazygit(dest, "prefetch", "v2.0", env={"GIT_CONFIG_COUNT": "1"})
    assert f"{len(set(oids))} already local" in again.stderr and "0 requests" in again.stderr
    compare(dest, small.full, "archive", "v2.0", lazy_env=NO_LAZY)


def test_prefetch_history_and_since(
    small: Published, nginx: Nginx, tmp_path: Path, daemons: list[Path]
) -> None:
    dest = tmp_path / "lazy"
    lazygit(tmp_path, "clone", "-q", "--no-checkout", nginx.url(small.name), str(dest))
    daemons.append(dest / ".git")
    hot = small.info.hot_file
    out = lazygit(dest, "prefetch", "--history", hot, "--since", "1971-01-01")
    assert "1 batch)" in out.stderr
    compare(dest, small.full, "log", "-p", "--", hot, lazy_env=NO_LAZY)


def test_prefetch_pathspecs_are_relative_to_the_current_directory_as_in_git(
    small: Published, nginx: Nginx, tmp_path: Path, daemons: list[Path]
) -> None:
    """In src/, ``lazygit prefetch -- DIR`` means src/DIR and ``.`` means src (git's rule);
    ``:/`` is the top. A word that is neither a revision nor a path is an error, not an
    empty prefetch that looks like success."""
    dest = tmp_path / "lazy"
    lazygit(tmp_path, "clone", "-q", "--no-checkout", nginx.url(small.name), str(dest))
    daemons.append(dest / ".git")
    inner = dirs_of(small.full)[0]  # e.g. src/core
    sub = dest / "src"
    sub.mkdir()  # a --no-checkout clone's working tree is empty; git finds the prefix all the same

    def blobs(*paths: str) -> set[str]:
        out = git(dest, "ls-tree", "-r", "HEAD", *paths, env=NO_LAZY).text.splitlines()
        return {ln.split()[2] for ln in out if ln.split()[1] == "blob"}

    lazygit(sub, "prefetch", "HEAD", "--", os.path.relpath(inner, "src"))
    assert all(has_object(dest, o) for o in blobs(inner))
    assert not all(has_object(dest, o) for o in blobs("src"))
    lazygit(sub, "prefetch", ".")
    assert all(has_object(dest, o) for o in blobs("src"))
    assert not all(has_object(dest, o) for o in blobs())
    lazygit(sub, "prefetch", ":/docs")
    assert all(has_object(dest, o) for o in blobs("docs"))

    before = sorted((dest / ".git" / "objects" / "pack").glob("*.pack"))
    for args, shown in (
        (("nosuchrev",), "src/nosuchrev"),
        (("HEAD", "--", "nosuchdir"), "src/nosuchdir"),
        (("HEAD", "--", "../nosuch"), "nosuch"),
    ):
        proc = lazygit(sub, "prefetch", *args, check=False)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith(
            f"lazygit: error: '{args[-1]}' is neither a revision nor a path in HEAD "
            f"(looked for {shown})"
        ), proc.stderr
    proc = lazygit(sub, "prefetch", "HEAD", "--", "../..", check=False)
    assert proc.returncode == 1 and "outside the repository" in proc.stderr, proc.stderr
    proc = lazygit(dest, "prefetch", "--history", "nosuch", check=False)
    assert proc.returncode == 1 and "'nosuch' did not match any file" in proc.stderr
    assert sorted((dest / ".git" / "objects" / "pack").glob("*.pack")) == before


def test_sparse_add_in_a_subdirectory_takes_directories_relative_to_it_as_git_does(
    sparse_clone: tuple[Path, list[str]],
) -> None:
    """git 2.39's ``sparse-checkout add core`` in src/ adds src/core; lazygit did add a
    top-level ``core`` (which matched nothing) and hydrated nothing."""
    repo, dirs = sparse_clone
    parent, other = "src", dirs[1]  # src/ holds the cone dirs[0]
    assert dirs[0].startswith("src/") and other.startswith("src/")
    out = lazygit(repo / parent, "sparse", "add", os.path.relpath(other, parent))
    assert "1 batch" in out.stderr
    assert set(lazygit(repo, "sparse", "list").stdout.split()) == {dirs[0], other}
    files = git(repo, "ls-files", other, env=NO_LAZY).text.split()
    assert files and all((repo / f).exists() for f in files)
    # History outside the cone: nothing to fetch, and no "did not match" error.
    path, _oid = outside_blob(repo, other)
    assert "0 blobs" in lazygit(repo, "prefetch", "--history", path).stderr
    bad = lazygit(repo / parent, "sparse", "add", "../..", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith(
        "lazygit: error: invalid sparse directory '../..' (give directories relative to the "
        f"current directory ({parent}))"
    ), bad.stderr
