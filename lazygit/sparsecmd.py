"""``lazygit sparse``, ``lazygit offline`` and ``lazygit prefetch``: hydrate on purpose.

The daemon fetches what git asks for (and guesses what comes next, prefetch.py); these
commands fetch what the user says will be needed, in big batches with progress:

- ``sparse set|add|disable`` fetch the blobs of the new cone in one batch *before* git
  touches the working tree, then run ``git sparse-checkout`` with lazy fetching off, which
  proves nothing was missing;
- ``prefetch`` hydrates revisions' trees or paths' histories, a pack per batch of
  ``lazygit.prefetchBatch`` blobs, so an interrupted run keeps what it finished and a rerun
  skips every blob that is already local;
- ``offline on|off`` flips ``lazygit.offline`` (the daemon then refuses to fetch).

They use the fetch engine directly rather than the daemon: progress shows bytes as they
arrive, a long hydration does not queue in front of git's own requests in the daemon, and
Ctrl-C / kill stops the download itself (finished batches stay, being separate packs).
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from lazygit.config import Settings
from lazygit.errors import LazyGitError
from lazygit.localrepo import LocalObjects, LocalRepo
from lazygit.progress import QUIET, Progress, Task, counted
from lazygit.sparse import BLOB_MODES, validate_cone_dirs

PathMatcher = Callable[[str], bool]


# =========================================================================================
# Shared: the fetch engine of a lazy clone, and batched fetching with one progress bar.


@contextmanager
def open_engine(
    repo: LocalRepo, settings: Settings, local: LocalObjects | None = None
) -> Iterator[Any]:
    """The repository's fetch engine (catalog from the clone's cache, no network yet)."""
    from lazygit.catalog import Catalog, follow_remote_url, moved_url
    from lazygit.fetch import FetchEngine
    from lazygit.remote import DumbRemote

    repo.ensure_lazy_clone()

    def connect(url: str) -> DumbRemote:
        return DumbRemote(url, settings, git_dir=repo.git_dir)

    catalog = Catalog.open(repo.state_dir, connect)
    url = moved_url(catalog, repo.git_dir)  # git remote set-url since the clone
    if url is not None:
        moved = follow_remote_url(catalog, url, settings, connect)
        for remote in catalog.remotes():
            remote.close()
        catalog = moved
    try:
        yield FetchEngine(catalog, repo, settings, local)
    finally:
        for remote in catalog.remotes():
            remote.close()


class _Forward(Task):
    """The engine's per-batch bars all advance one overall bar."""

    def __init__(self, inner: Task) -> None:
        super().__init__()
        self.inner = inner

    def advance(self, n: float = 1) -> None:
        self.inner.advance(n)

    def update(self, *, total: float | None = None, completed: float | None = None) -> None:
        pass

    def done(self) -> None:
        pass


class _OneBar(Progress):
    def __init__(self, outer: Progress, task: Task) -> None:
        super().__init__(quiet=True)
        self.outer = outer
        self.bar = task

    def task(self, description: str, total: float | None = None, *, count: bool = False) -> Task:
        return _Forward(self.bar)

    def log(self, message: str) -> None:
        self.outer.log(message)


@dataclass
class HydrateResult:
    """What a hydration did."""

    wanted: int = 0
    already_local: int = 0
    objects: int = 0
    bytes: int = 0
    requests: int = 0
    batches: int = 0
    seconds: float = 0.0


def hydrate(
    repo: LocalRepo,
    settings: Settings,
    oids: Sequence[bytes],
    progress: Progress = QUIET,
    *,
    batch_size: int | None = None,
    label: str = "blobs",
) -> HydrateResult:
    """Fetch the missing ``oids`` in batches (one pack each), with one progress bar."""
    t0 = time.monotonic()
    result = HydrateResult(wanted=len(set(oids)))
    # Narrowing the cone, or widening it to what is local, needs no engine: not even the
    # HTTP client's import.
    local = repo.ensure_lazy_clone().local_objects()
    missing = local.missing(oids)
    result.already_local = result.wanted - len(missing)
    if not missing:
        result.seconds = time.monotonic() - t0
        return result
    with open_engine(repo, settings, local) as engine:
        catalog = engine.catalog

        def where(oid: bytes) -> tuple[int, int]:
            loc = catalog.locate(oid)
            return (catalog.packs.index(loc[0]), loc[1]) if loc else (1 << 30, 0)

        # Pack order: each batch reads neighbouring entries (delta families together).
        placed = sorted(missing, key=where)
        total = 0
        for oid in placed:
            loc = catalog.locate(oid)
            total += loc[0].pack.extent_at(loc[1]).length if loc else 4096
        bar = progress.task(label, total=total)
        inner = _OneBar(progress, bar)
        size = max(1, batch_size or settings.prefetchBatch)
        for i in range(0, len(placed), size):
            stats = engine.fetch(placed[i : i + size], inner)
            result.objects += stats.objects
            result.bytes += stats.bytes
            result.requests += stats.requests
            result.batches += 1
        bar.done()
    result.seconds = time.monotonic() - t0
    return result


def describe(result: HydrateResult, what: str) -> str:
    """The summary line."""
    mib = result.bytes / 2**20
    return (
        f"{what}: {counted(result.wanted, 'blob')}, {result.already_local} already local, "
        f"{counted(result.objects, 'object')} fetched ({mib:.1f} MiB, "
        f"{counted(result.requests, 'request')}, {counted(result.batches, 'batch')}) "
        f"in {result.seconds:.1f} s"
    )


# =========================================================================================
# Sparse checkout.


def cone_matcher(dirs: Sequence[str]) -> PathMatcher:
    """git's cone mode: top-level files, everything under each directory, and the files
    directly inside each directory's parents."""
    recursive = [d.strip("/") for d in dirs if d.strip("/")]
    parents: set[str] = set()
    for d in recursive:
        parents.update(str(p) for p in PurePosixPath(d).parents if str(p) != ".")

    def match(path: str) -> bool:
        parent = os.path.dirname(path)
        if not parent or parent in parents:
            return True
        return any(path.startswith(d + "/") for d in recursive)

    return match


def cone_dirs(repo: LocalRepo) -> list[str] | None:
    """The cone's directories, or None when sparse checkout is off."""
    on = repo.git(["config", "--bool", "--default", "false", "core.sparseCheckout"]).strip()
    if on != b"true":
        return None
    out = repo.git(["sparse-checkout", "list"]).decode("utf-8", "surrogateescape")
    return [line for line in out.splitlines() if line.strip()]


def index_blobs(repo: LocalRepo, match: PathMatcher | None) -> list[bytes]:
    """Blobs of the index entries (what the working tree holds) inside ``match``."""
    index = repo.git_dir / "index"
    if repo.worktree is None or not index.exists():
        return []
    out = repo.git(["ls-files", "--stage", "-z"])
    blobs: dict[bytes, None] = {}
    for item in out.split(b"\0"):
        if not item:
            continue
        meta, _, path = item.partition(b"\t")
        mode, hexid, _stage = meta.decode().split()
        if mode not in BLOB_MODES:
            continue
        name = path.decode("utf-8", "surrogateescape")
        if match is None or match(name):
            blobs[bytes.fromhex(hexid)] = None
    return list(blobs)


@dataclass
class SparseResult:
    dirs: list[str] | None
    hydrate: HydrateResult


def sparse_set(
    repo: LocalRepo,
    dirs: Sequence[str],
    *,
    add: bool = False,
    progress: Progress = QUIET,
    settings: Settings | None = None,
    cwd: str | os.PathLike[str] = ".",
) -> SparseResult:
    """Widen/narrow the cone: fetch its blobs in one batch, then let git update the files.

    ``dirs`` are relative to ``cwd``, as ``git sparse-checkout set|add`` reads them."""
    settings = settings or Settings.load(repo.git_dir)
    prefix = _prefix(cwd)
    new: list[str] = []
    if prefix:
        for d in dirs:
            top = posixpath.normpath(posixpath.join(prefix, d.strip()))
            if d.strip().startswith("/") or top in (".", "..") or top.startswith("../"):
                raise LazyGitError(
                    f"invalid sparse directory {d!r}",
                    f"give directories relative to the current directory ({prefix.rstrip('/')})",
                )
            new.append(top)
    new = validate_cone_dirs(new if prefix else dirs)
    if add:
        current = cone_dirs(repo)
        if current is None:
            raise LazyGitError(
                "sparse checkout is off, so there is no cone to add to",
                "use lazygit sparse set DIR ...",
            )
        new = list(dict.fromkeys([*current, *new]))
    blobs = index_blobs(repo, cone_matcher(new))
    result = hydrate(repo, settings, blobs, progress, batch_size=len(blobs) or 1, label="cone")
    task = progress.task("working tree", total=None, count=True)
    repo.git(["sparse-checkout", "set", "--cone", "--", *new])  # GIT_NO_LAZY_FETCH=1
    task.done()
    return SparseResult(new, result)


def sparse_disable(
    repo: LocalRepo, *, progress: Progress = QUIET, settings: Settings | None = None
) -> SparseResult:
    """Check out every file again: fetch them all in one batch first."""
    settings = settings or Settings.load(repo.git_dir)
    blobs = index_blobs(repo, None)
    result = hydrate(repo, settings, blobs, progress, batch_size=len(blobs) or 1, label="files")
    repo.git(["sparse-checkout", "disable"])
    return SparseResult(None, result)


# =========================================================================================
# Offline.


def set_offline(repo: LocalRepo, on: bool) -> None:
    """Write ``lazygit.offline``; a running daemon notices the config change."""
    repo.ensure_lazy_clone().git(["config", "lazygit.offline", "true" if on else "false"])


def is_offline(repo: LocalRepo) -> bool:
    return Settings.load(repo.git_dir).offline


# =========================================================================================
# Explicit prefetch.


def split_revs(repo: LocalRepo, words: Sequence[str]) -> tuple[list[str], list[str]]:
    """Leading words that name commits are revisions; the rest is the pathspec (git's rule)."""
    revs: list[str] = []
    for i, w in enumerate(words):
        if w == "--":
            return revs, list(words[i + 1 :])
        if not _rev_ok(repo, w):
            return revs, [x for x in words[i:] if x != "--"]
        revs.append(w)
    return revs, []


def _rev_ok(repo: LocalRepo, word: str) -> bool:
    from lazygit.gitcmd import run_git

    proc = run_git(["rev-parse", "--verify", "-q", f"{word}^{{commit}}"], cwd=repo.cwd, check=False)
    return proc.returncode == 0


def tree_paths(repo: LocalRepo, revs: Sequence[str]) -> list[tuple[bytes, str]]:
    """(blob, path) of every file in the trees of ``revs``."""
    return [
        (oid, path)
        for rev in revs
        for mode, typ, oid, path in repo.ls_tree(rev)
        if typ == "blob" and mode in BLOB_MODES
    ]


def history_blobs(
    repo: LocalRepo,
    revs: Sequence[str],
    pathspec: Sequence[str],
    since: str | None,
    match: PathMatcher | None,
) -> list[bytes]:
    """Every version (both sides of every change) of the paths, in commits newer than since."""
    args = ["log", *(revs or ["--all"]), "--raw", "--no-abbrev", "--no-renames", "-m", "--root"]
    args += ["-z", "--format="]
    if since:
        args.append(f"--since={since}")
    args += ["--", *pathspec]
    data = repo.git(args)
    tokens = data.split(b"\0")
    out: dict[bytes, None] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i].lstrip(b"\n")
        i += 1
        if not tok.startswith(b":") or i >= len(tokens):
            continue
        meta = tok[1:].split()
        path = tokens[i].decode("utf-8", "surrogateescape")
        i += 1
        if match is not None and not match(path):
            continue
        for mode, hexid in ((meta[0], meta[2]), (meta[1], meta[3])):
            if mode.decode() in BLOB_MODES:
                out[bytes.fromhex(hexid.decode())] = None
    return list(out)


def prefetch(
    repo: LocalRepo,
    words: Sequence[str],
    *,
    history: Sequence[str] = (),
    since: str | None = None,
    progress: Progress = QUIET,
    settings: Settings | None = None,
    cwd: str | os.PathLike[str] = ".",
) -> HydrateResult:
    """``lazygit prefetch [REV ...] [PATHSPEC ...] [--history PATHSPEC] [--since DATE]``.

    Pathspecs are git's: relative to ``cwd``, ``:/`` for the top."""
    from lazygit.prefetch import pathspec_matcher
    from lazygit.sparse import matcher

    repo.ensure_lazy_clone()
    settings = settings or Settings.load(repo.git_dir)
    revs, paths = split_revs(repo, words)
    prefix = _prefix(cwd)
    typed, paths = paths, [top_relative(prefix, p) for p in paths]
    history = [top_relative(prefix, p) for p in history]
    cone = matcher(repo)
    if history or since:
        spec = [p for p in (*paths, *history) if p != "."]
        blobs = history_blobs(repo, revs, spec, since, cone)
        if not blobs and spec and not since and not history_blobs(repo, revs, spec, None, None):
            # (not merely outside the sparse cone)
            named = "', '".join(spec)
            raise LazyGitError(f"pathspec '{named}' did not match any file in the history")
    else:
        spec_match = pathspec_matcher(paths)
        listed = tree_paths(repo, revs or ["HEAD"])
        _check_pathspec(typed, paths, listed, revs or ["HEAD"])
        blobs = list(
            dict.fromkeys(
                oid
                for oid, path in listed
                if (spec_match is None or spec_match(path)) and (cone is None or cone(path))
            )
        )
    return hydrate(repo, settings, blobs, progress)


def _prefix(cwd: str | os.PathLike[str]) -> str:
    """Where ``cwd`` is in the working tree ("src/core/"; "" at the top or without one)."""
    from lazygit.gitcmd import run_git

    proc = run_git(["rev-parse", "--show-prefix"], cwd=cwd, check=False)
    return proc.stdout.decode("utf-8", "surrogateescape").strip() if proc.returncode == 0 else ""


def top_relative(prefix: str, spec: str) -> str:
    """A pathspec as git reads it, relative to the current directory (``prefix``), made
    relative to the top of the working tree; ``:/path`` is from the top already."""
    if spec.startswith(":/"):
        spec, prefix = spec[2:].lstrip("/"), ""
    elif spec.startswith(":"):
        return spec  # other magic: left to git (history) or ignored (trees)
    glob = any(ch in spec for ch in "*?[")
    joined = posixpath.normpath(posixpath.join(prefix, spec)) if spec else prefix or "."
    if joined.startswith("../") or joined == "..":
        raise LazyGitError(f"{spec}: outside the repository")
    return joined + ("/" if glob and spec.endswith("/") else "")


def _check_pathspec(
    typed: Sequence[str],
    paths: Sequence[str],
    listed: Sequence[tuple[bytes, str]],
    revs: Sequence[str],
) -> None:
    """git's rule: a pathspec that matches no file is an error, not an empty prefetch."""
    from lazygit.prefetch import pathspec_matcher

    for word, spec in zip(typed, paths, strict=True):
        match = pathspec_matcher([spec])
        if match is None or any(match(path) for _oid, path in listed):
            continue
        seen = "" if spec == word else f" (looked for {spec})"
        raise LazyGitError(
            f"'{word}' is neither a revision nor a path in {', '.join(revs)}{seen}",
            "check the spelling; paths are relative to the current directory",
        )
