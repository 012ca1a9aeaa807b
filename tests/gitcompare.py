"""Run the same git command in a lazy clone and in an ordinary full clone, and compare.

Every git process gets the same environment: no system or global config, C locale, UTC,
fixed author/committer names and dates (so commits made in both clones get identical ids),
no pager, no colour, no editor. Lazy fetching stays on unless a caller sets
``GIT_NO_LAZY_FETCH=1``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import stat
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: Not a timing assertion: only keeps a hung git from hanging the test run.
HANG_GUARD_SECONDS = 600.0

_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_NO_LAZY_FETCH")
_DROP += ("GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT", "GIT_ALTERNATE_OBJECT_DIRECTORIES")
_DROP += ("GIT_TRACE", "GIT_TRACE_PACKET", "GIT_CEILING_DIRECTORIES")

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_AUTHOR_DATE": "1800000000 +0000",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
    "GIT_COMMITTER_DATE": "1800000000 +0000",
}


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every git process the comparisons run."""
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    env.update(
        LC_ALL="C",
        LANG="C",
        TZ="UTC",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_PAGER="cat",
        PAGER="cat",
        GIT_EDITOR="true",
        GIT_TERMINAL_PROMPT="0",
        GIT_ADVICE="0",
    )
    env.update(IDENTITY)
    if extra:
        env.update(extra)
    return env


NO_LAZY = {"GIT_NO_LAZY_FETCH": "1"}


@dataclass
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


def git(
    repo: Path,
    *args: str,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = HANG_GUARD_SECONDS,
) -> Result:
    """``git -c color.ui=never --no-pager ARGS`` in ``repo``."""
    argv = ["git", "-c", "color.ui=never", "-c", "advice.detachedHead=false", "--no-pager"]
    proc = subprocess.run(
        [*argv, *args],
        cwd=repo,
        input=input,
        env=base_env(env),
        capture_output=True,
        timeout=timeout,
    )
    result = Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} failed in {repo} (exit {proc.returncode}):\n{result.err[-3000:]}"
        )
    return result


def _first_difference(a: bytes, b: bytes) -> str:
    la = a.decode("utf-8", "replace").splitlines()
    lb = b.decode("utf-8", "replace").splitlines()
    diff = list(difflib.unified_diff(lb, la, "full", "lazy", n=2, lineterm=""))
    return "\n".join(diff[:60]) or f"(same lines; bytes differ: {len(a)} vs {len(b)} bytes)"


def compare(
    lazy: Path,
    full: Path,
    *args: str,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    lazy_env: Mapping[str, str] | None = None,
    expect_ok: bool = True,
) -> Result:
    """Run ``git ARGS`` in both clones; assert identical stdout and exit status."""
    f = git(full, *args, input=input, env=env, check=False)
    lz = git(lazy, *args, input=input, env={**(env or {}), **(lazy_env or {})}, check=False)
    cmd = "git " + " ".join(args)
    assert lz.returncode == f.returncode, (
        f"{cmd}: exit {lz.returncode} in the lazy clone, {f.returncode} in the full clone\n"
        f"lazy stderr: {lz.err[-3000:]}\nfull stderr: {f.err[-2000:]}"
    )
    assert lz.stdout == f.stdout, (
        f"{cmd}: stdout differs\n{_first_difference(lz.stdout, f.stdout)}\n"
        f"lazy stderr: {lz.err[-2000:]}"
    )
    if expect_ok:
        assert f.returncode == 0, f"{cmd} failed in the full clone too: {f.err[-2000:]}"
    return lz


# -- the object store --------------------------------------------------------------------
def local_objects(repo: Path) -> set[str]:
    """Every object id in the local object store (reads no object; never fetches).

    One process for all: ``git cat-file -e`` of a missing object in a partial clone walks
    every promisor object first (~0.4 s each on the LARGE sample).
    """
    out = git(
        repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)", env=NO_LAZY
    ).text
    return set(out.split())


def missing_among(repo: Path, oids: Iterable[str]) -> list[str]:
    """The ids among ``oids`` that are not in the local object store."""
    have = local_objects(repo)
    return [o for o in oids if o not in have]


def has_object(repo: Path, oid: str) -> bool:
    """Whether ``oid`` is in the local object store (never fetches)."""
    return not missing_among(repo, [oid])


def missing_objects(repo: Path, *revs: str) -> list[str]:
    """Objects reachable from ``revs`` that are not local (``rev-list --missing=print``)."""
    out = git(repo, "rev-list", "--objects", "--missing=print", *revs, env=NO_LAZY).text
    return [line[1:] for line in out.splitlines() if line.startswith("?")]


def resolve(repo: Path, names: Iterable[str]) -> list[str]:
    """``REV:PATH`` names to object ids without reading any blob."""
    return git(repo, "rev-parse", *names, env=NO_LAZY).text.split()


def tree_blobs(repo: Path, rev: str, *paths: str) -> list[str]:
    """Blob ids of ``rev``'s tree (below ``paths``), without reading any blob."""
    out = git(repo, "ls-tree", "-r", "--full-tree", rev, "--", *paths, env=NO_LAZY).text
    blobs = []
    for line in out.splitlines():
        meta, _, _path = line.partition("\t")
        _mode, kind, oid = meta.split()
        if kind == "blob":
            blobs.append(oid)
    return list(dict.fromkeys(blobs))


def changed_blobs(repo: Path, *diff_args: str) -> list[str]:
    """Every blob on either side of ``git diff --raw --no-renames DIFF_ARGS`` (or log)."""
    cmd, *rest = diff_args
    out = git(repo, cmd, "--raw", "--no-renames", "--no-abbrev", *rest, env=NO_LAZY).text
    blobs: dict[str, None] = {}
    for line in out.splitlines():
        if not line.startswith(":"):
            continue
        fields = line[1:].split("\t", 1)[0].split()
        for oid, mode in ((fields[2], fields[0]), (fields[3], fields[1])):
            if set(oid) != {"0"} and not mode.startswith("16"):
                blobs[oid] = None
    return list(blobs)


# -- working trees ------------------------------------------------------------------------
def tree_snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """Every file below ``root`` except the top-level ``.git``: path -> (kind, sha256)."""
    snap: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            filenames = [f for f in filenames if f != ".git"]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(rel_dir / name)
            if stat.S_ISLNK(st.st_mode):
                snap[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                if not any(path.iterdir()):
                    snap[rel] = ("empty-dir", "")
            else:
                kind = "exec" if st.st_mode & 0o111 else "file"
                snap[rel] = (kind, hashlib.sha256(path.read_bytes()).hexdigest())
    return snap


def assert_same_worktree(lazy: Path, full: Path) -> int:
    """Byte-identical working trees, index and status; the number of files compared."""
    a, b = tree_snapshot(lazy), tree_snapshot(full)
    if a != b:
        only_lazy = sorted(set(a) - set(b))[:10]
        only_full = sorted(set(b) - set(a))[:10]
        differ = sorted(k for k in set(a) & set(b) if a[k] != b[k])[:10]
        raise AssertionError(
            f"working trees differ: only in lazy {only_lazy}, only in full {only_full}, "
            f"different content {differ}"
        )
    compare(lazy, full, "ls-files", "-s")
    compare(lazy, full, "status", "--porcelain=v1", "--untracked-files=all")
    return len(a)


# -- nginx access log ----------------------------------------------------------------------
def parse_ranges(header: str, size: int) -> list[tuple[int, int]]:
    """``bytes=a-b,c-,-n`` -> half-open intervals within a file of ``size`` bytes."""
    unit, _, spec = header.partition("=")
    assert unit.strip() == "bytes", f"unexpected Range header {header!r}"
    out = []
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        if first == "":
            out.append((max(0, size - int(last)), size))
        else:
            end = size if last == "" else min(size, int(last) + 1)
            out.append((int(first), end))
    return out


def bytes_read_twice(
    reads: Iterable[tuple[str, list[tuple[int, int]]]],
) -> dict[str, list[tuple[int, int]]]:
    """Per file, the byte intervals that more than one read (or range) covered."""
    by_file: dict[str, list[tuple[int, int]]] = {}
    for name, intervals in reads:
        by_file.setdefault(name, []).extend(intervals)
    twice: dict[str, list[tuple[int, int]]] = {}
    for name, intervals in by_file.items():
        intervals.sort()
        reach = -1
        for start, end in intervals:
            if start < reach:
                twice.setdefault(name, []).append((start, min(end, reach)))
            reach = max(reach, end)
    return twice
