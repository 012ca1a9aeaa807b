"""``lazygit clone``: discovery, commits and trees by byte range, then the checkout's blobs.

The flow is one way: remote (discovery) -> catalog (.idx, bitmap) -> plan (ranges) -> fetch ->
pack -> ``git index-pack`` -> git (refs, sparse patterns, checkout).  On any failure the
destination is removed again (or emptied, if it existed before): nothing half-made remains.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from lazygit.catalog import Catalog
from lazygit.config import Settings
from lazygit.discovery import RemoteRepo, discover, peeled_oids
from lazygit.errors import (
    CorruptDataError,
    DestinationError,
    GitCommandError,
    HTTPStatusError,
    LazyGitError,
    NotAGitServerError,
    RemoteError,
)
from lazygit.fetch import FetchEngine, FetchStats, LooseMetadataWalk, fetch_metadata
from lazygit.gitcmd import git_processes
from lazygit.localrepo import STATE_DIR, LocalRepo, ensure_empty_destination
from lazygit.progress import QUIET, Progress
from lazygit.rangestore import RangeStore
from lazygit.remote import DumbRemote
from lazygit.sparse import checkout_blobs, matcher, set_cone


@dataclass
class CloneOptions:
    url: str
    dest: Path | None = None
    branch: str | None = None
    no_checkout: bool = False
    sparse: list[str] | None = None  # cone directories; [] = top-level files only
    remote_name: str = "origin"
    read_object_hook: bool = False


@dataclass
class CloneResult:
    dest: Path
    head: str | None
    metadata: FetchStats
    blobs: FetchStats = field(default_factory=FetchStats)
    files: int = 0
    seconds: float = 0.0

    @property
    def bytes_read(self) -> int:
        return self.metadata.bytes + self.blobs.bytes


def normalize_url(url: str) -> str:
    """The HTTP(S) URL of the repository, without ``lazy::``, ending in '/'."""
    if url.startswith("lazy::"):
        url = url[len("lazy::") :]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LazyGitError(
            f"not an http(s) URL: {without_credentials(url)!r}",
            "lazygit clones from http:// or https:// URLs",
        )
    return url if url.endswith("/") else url + "/"


def without_credentials(url: str) -> str:
    """``url`` without ``user:password@``: what may be stored in git config or shown."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def default_dest(url: str) -> Path:
    """Like git: the last path component without ``.git``."""
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    name = name[:-4] if name.endswith(".git") else name
    return Path(name or "repository")


#: Inside the git dir while a clone is being made; a directory holding it is ours to redo.
INCOMPLETE_MARKER = "clone-incomplete"
#: Resume data of clones interrupted longer ago than this is dropped.
RESUME_MAX_AGE = 7 * 24 * 3600


class Interrupted(LazyGitError):
    """Ctrl-C during a clone."""

    exit_code = 130


def resume_dir(url: str, dest: Path) -> Path:
    """Where an interrupted clone of ``url`` into ``dest`` keeps what it already read."""
    import warnings

    import platformdirs

    key = hashlib.sha256(f"{url}\0{dest.resolve()}".encode()).hexdigest()[:24]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = Path(platformdirs.user_cache_dir("lazygit")) / "resume"
    return base / key


def _drop_stale_resume_dirs(base: Path) -> None:
    if not base.is_dir():
        return
    now = time.time()
    for d in base.iterdir():
        with contextlib.suppress(OSError):
            if now - d.stat().st_mtime > RESUME_MAX_AGE:
                shutil.rmtree(d, ignore_errors=True)


def clone(
    opts: CloneOptions, settings: Settings | None = None, progress: Progress = QUIET
) -> CloneResult:
    """Make a lazy clone.  Raises LazyGitError (one line) on expected failures.

    A clone that fails leaves no directory behind (or empties the one that existed), but
    keeps what it read in a resume directory: the same command run again continues from there.
    """
    t0 = time.monotonic()
    url = normalize_url(opts.url)
    settings = settings or Settings.load()
    dest = opts.dest or default_dest(url)
    if _left_by_killed_clone(dest):
        _wait_for_git_in(dest)
        _remove(dest, existed=True)  # redo it
    existed = ensure_empty_destination(dest)
    resume = resume_dir(url, dest)
    _drop_stale_resume_dirs(resume.parent)
    result: CloneResult | None = None
    try:
        resume.mkdir(parents=True, exist_ok=True)
        with DumbRemote(url, settings) as remote:
            result = _clone(opts, url, dest, settings, remote, progress, resume)
    except BaseException as exc:
        if result is None or not isinstance(exc, KeyboardInterrupt):
            raise _failed(exc, dest, existed, resume) from None
        # Interrupted while the connections closed: the clone is complete, nothing to stop.
    assert result is not None
    with contextlib.suppress(KeyboardInterrupt):  # the clone is complete: nothing to stop
        shutil.rmtree(resume, ignore_errors=True)  # (a stale resume dir is dropped later)
    result.seconds = time.monotonic() - t0
    return result


def _clone(
    opts: CloneOptions,
    url: str,
    dest: Path,
    settings: Settings,
    remote: DumbRemote,
    progress: Progress,
    resume: Path,
) -> CloneResult:
    alternates: list[DumbRemote] = []
    store: RangeStore | None = None

    def connect(alt_url: str) -> DumbRemote:
        alternates.append(DumbRemote(alt_url, settings))
        return alternates[-1]

    try:
        snapshot = discover(remote, connect_alternate=connect)
        branch, head_oid = _choose_head(snapshot, opts.branch)
        # Pack indexes and pack bytes go to the resume directory first: kept if we fail.
        catalog = Catalog(snapshot.sources, resume / "catalog")
        roots = peeled_oids(snapshot.refs) | ({head_oid} if head_oid else set())
        # The walk of the server's loose objects, the longest chain of round trips over a
        # distant link, starts now, while the repository is made and the pack indexes load.
        # Before they are in, it asks for HEAD's commit and a few branches' (as many as the
        # range reads ask at once: the connection pool keeps room for the .idx files).
        branches = [r.oid for r in snapshot.refs if r.name.startswith("refs/heads/")]
        eager = list(dict.fromkeys([head_oid, *branches] if head_oid else branches))
        eager = eager[: max(1, int(settings.connections))]
        with LooseMetadataWalk(roots, catalog, settings, eager=eager) as walk:
            # The marker before anything else in DIR (git init fills the .git it sits in): a
            # clone killed at any later moment leaves a DIR the next run knows to redo.
            state = dest / ".git" / STATE_DIR
            state.mkdir(parents=True, exist_ok=True)
            (state / INCOMPLETE_MARKER).touch()
            try:
                repo = LocalRepo.init(dest, initial_branch=branch)
            except GitCommandError as exc:
                raise DestinationError(
                    f"cannot create a repository at {dest}: {exc.message}"
                ) from None
            if branch is None and head_oid is None:
                # No HEAD on the server: git's default branch, unborn, tracks the remote's, as
                # in git's clone.
                head = (repo.git_dir / "HEAD").read_text().strip()
                branch = head.removeprefix("ref: refs/heads/") if head.startswith("ref: ") else None
            given = opts.url[len("lazy::") :] if opts.url.startswith("lazy::") else opts.url
            # git passes the remote URL to git-remote-lazy on its command line (visible in `ps`):
            # keep credentials out of it.  The daemon reads the URL from the catalog (mode 0600).
            repo.configure_partial_clone(without_credentials(given), opts.remote_name, branch)
            catalog.load_packs(settings, progress)
            walk.packs_loaded()
            catalog.abbrev = repo.abbreviate_as_full_clone(catalog.object_count())
            store = RangeStore(resume / "ranges")
            try:
                meta = fetch_metadata(catalog, repo, settings, roots, progress, store.read, walk)
            except CorruptDataError:
                store.clear()  # damaged bytes must not be used again: read once more, then report
                meta = fetch_metadata(catalog, repo, settings, roots, progress, store.read, walk)
        if (resume / "catalog" / "packs").is_dir():
            shutil.copytree(
                resume / "catalog" / "packs", repo.state_dir / "packs", dirs_exist_ok=True
            )
        catalog.cache_dir = repo.state_dir
        catalog.save()
        _write_refs(repo, snapshot, opts.remote_name, branch, head_oid)
        if head_oid is None and snapshot.refs:
            progress.log("warning: remote HEAD refers to nonexistent ref, unable to checkout")
        if opts.read_object_hook:
            from lazygit.hooks import install_read_object_hook

            install_read_object_hook(repo)
        result = CloneResult(dest, head_oid.hex() if head_oid else None, meta)
        if opts.sparse is not None:
            set_cone(repo, opts.sparse)
        if head_oid is not None and not opts.no_checkout:
            _checkout(repo, catalog, settings, progress, result, store)
        (repo.state_dir / INCOMPLETE_MARKER).unlink()
        if settings.prestartDaemon:
            from lazygit.daemonclient import spawn_daemon

            spawn_daemon(repo.git_dir)
        return result
    finally:
        if store is not None:
            store.close()
        for alt in alternates:
            alt.close()


def _choose_head(snapshot: RemoteRepo, branch: str | None) -> tuple[str | None, bytes | None]:
    """The branch to check out and its commit: (None, oid) when the server's HEAD is detached,
    (name, None) when it names a branch the server lacks, (None, None) without a HEAD."""
    heads = {
        r.name[len("refs/heads/") :]: r.oid
        for r in snapshot.refs
        if r.name.startswith("refs/heads/")
    }
    if branch is not None:
        if branch in heads:
            return branch, heads[branch]
        tag = next((r for r in snapshot.refs if r.name == f"refs/tags/{branch}"), None)
        if tag is not None:
            return None, tag.peeled or tag.oid
        known = ", ".join(sorted(heads)[:10]) or "none"
        raise RemoteError(f"remote branch {branch!r} not found (branches: {known})")
    if snapshot.head_target and snapshot.head_target.startswith("refs/heads/"):
        # A branch the server lacks: HEAD stays unborn on it, as git's clone leaves it.
        name = snapshot.head_target[len("refs/heads/") :]
        return name, heads.get(name)
    if snapshot.head_oid is not None:
        return None, snapshot.head_oid
    return None, None  # an empty repository, or no HEAD: git's default branch, unborn


def _write_refs(
    repo: LocalRepo, snapshot: RemoteRepo, remote: str, branch: str | None, head_oid: bytes | None
) -> None:
    updates: list[tuple[str, bytes, bytes | None]] = []
    for ref in snapshot.refs:
        if ref.name.startswith("refs/heads/"):
            name = f"refs/remotes/{remote}/{ref.name[len('refs/heads/') :]}"
            updates.append((name, ref.oid, None))
        elif ref.name.startswith("refs/tags/"):
            updates.append((ref.name, ref.oid, ref.peeled))
    if branch is not None and head_oid is not None:
        updates.append((f"refs/heads/{branch}", head_oid, None))
    repo.write_packed_refs(updates)
    if snapshot.head_target and snapshot.head_target.startswith("refs/heads/"):
        default = snapshot.head_target[len("refs/heads/") :]
        if any(r.name == snapshot.head_target for r in snapshot.refs):
            repo.set_symref(f"refs/remotes/{remote}/HEAD", f"refs/remotes/{remote}/{default}")
    if branch is None and head_oid is not None:
        repo.git(["update-ref", "--no-deref", "HEAD", head_oid.hex()])


def _checkout(
    repo: LocalRepo,
    catalog: Catalog,
    settings: Settings,
    progress: Progress,
    result: CloneResult,
    store: RangeStore,
) -> None:
    """Fetch exactly the blobs the (sparse) checkout writes, in one batch, then let git write
    the working tree with lazy fetching off: that proves nothing is missing."""
    blobs = checkout_blobs(repo.ls_tree("HEAD"), matcher(repo))
    engine = FetchEngine(catalog, repo, settings, reader=store.read)
    result.blobs = engine.fetch(blobs, progress)
    if result.blobs.absent:
        oid = result.blobs.absent[0]
        raise RemoteError(
            f"object {oid.hex()} ({blobs[oid]}) is not on the server",
            "the server's repository is incomplete: run `git fsck` there",
        )
    task = progress.task("checkout", total=None, count=True)
    repo.git(["read-tree", "--reset", "-u", "HEAD"])
    task.done()
    result.files = len(blobs)


def _failed(exc: BaseException, dest: Path, existed: bool, resume: Path) -> BaseException:
    """What a clone that failed with ``exc`` raises, once DIR is removed (or emptied): one
    line, with "run the same command again to resume" where a rerun can help."""
    _remove(dest, existed)
    resumable = any(resume.glob("ranges/*.data")) or any(resume.glob("catalog/packs/*"))
    # Only where a rerun can help: not for damaged or missing data on the server.
    transient = isinstance(exc, (KeyboardInterrupt, DestinationError)) or (
        isinstance(exc, RemoteError)
        and not isinstance(exc, (NotAGitServerError, HTTPStatusError, CorruptDataError))
    )
    hint = "run the same command again to resume" if resumable and transient else None
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted("interrupted", hint)
    if isinstance(exc, OSError) and not isinstance(exc, LazyGitError):
        return _disk_error(exc, dest)
    if isinstance(exc, LazyGitError) and hint:
        exc.fix = f"{exc.fix}, then {hint}" if exc.fix else hint
    return exc


def _left_by_killed_clone(dest: Path) -> bool:
    """Whether DIR holds a clone killed before it finished: its marker, or (killed between
    making the marker's directories and the marker) nothing but those empty directories."""
    git_dir = dest / ".git"
    if (git_dir / STATE_DIR / INCOMPLETE_MARKER).exists():
        return True
    with contextlib.suppress(OSError):
        return (
            [p.name for p in dest.iterdir()] == [".git"]
            and [p.name for p in git_dir.iterdir()] in ([], [STATE_DIR])
            and not any((git_dir / STATE_DIR).glob("*"))
        )
    return False


#: How long a rerun waits for the git processes a killed clone left working in DIR.
ORPHAN_WAIT_SECONDS = 30.0


def _wait_for_git_in(dest: Path, timeout: float = ORPHAN_WAIT_SECONDS) -> None:
    """Wait until no git process works in ``dest`` (Linux /proc; elsewhere, no wait).

    SIGKILL of a clone leaves its children running: the checkout's ``git read-tree`` goes on
    writing into DIR, and would do so into the DIR being redone."""
    target = dest.resolve()
    pids = git_processes()
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        busy = []
        for pid in pids:
            try:
                cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            except OSError:
                continue  # gone, or not ours to look at
            if cwd == target or target in cwd.parents:
                busy.append(pid)
        pids = busy
        if pids:
            time.sleep(0.05)


def _remove(dest: Path, existed: bool) -> None:
    if not dest.exists():
        return
    if existed:
        for child in dest.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    else:
        shutil.rmtree(dest, ignore_errors=True)


def _disk_error(exc: OSError, dest: Path) -> LazyGitError:
    if exc.errno == errno.ENOSPC:
        return DestinationError(f"no space left on the device holding {dest}", "free some space")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DestinationError(f"cannot write to {dest}: {os.strerror(exc.errno)}")
    return DestinationError(f"cannot write {exc.filename or dest}: {exc.strerror or exc}")
