"""The per-repository daemon: warm connections, indexes and pack bytes; merged batches.

Started detached by the first client that needs it (docs/protocol.md); at most one per
repository (an flock on ``daemon.lock``).  It serves one JSON request per connection on a Unix
socket that only its own user may use, merges concurrent fetch requests into batches, writes
each batch as one promisor pack through ``git index-pack`` before answering, consolidates
promisor packs when there are too many (once no git process has them open), and exits when
idle.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import gc
import hashlib
import json
import os
import signal
import socket
import socketserver
import struct
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from lazygit import __version__
from lazygit.daemonclient import same_dir
from lazygit.errors import DaemonError, LazyGitError
from lazygit.localrepo import LocalRepo
from lazygit.progress import QUIET, Progress, Tally

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from lazygit.catalog import Catalog
    from lazygit.config import Settings
    from lazygit.fetch import FetchEngine
    from lazygit.prefetch import HistoryIndex, Intent, Plan, Predictor
    from lazygit.remote import DumbRemote

MAX_REQUEST = 64 << 20
#: A Unix socket path must fit in sockaddr_un (108 bytes on Linux) with room to spare.
MAX_SOCKET_PATH = 100
#: Seconds a request of blame / log -p / grep waits for the history index on a cold daemon
#: (the index lets its first batch carry what the command reads next).
HISTORY_WAIT = 3.0
#: A request for this many objects is a batch already: it does not wait for prediction.
BIG_REQUEST = 64
#: Seconds a request waits for the history index to decide the sparse-cone policy.
POLICY_WAIT = 10.0
#: Seconds at most that building the history index waits for running batches to finish.
HISTORY_DEFER = 120.0
#: Seconds a history index build waits after a big batch (git then writes a working tree),
#: and after the daemon's start (the request that started it is on its way).
HISTORY_SETTLE = 2.0
START_SETTLE = 0.2
#: Seconds between checks whether the refs moved (the history index is then rebuilt).
HISTORY_RECHECK = 5.0
#: Lone requests for other files less than this many seconds apart are a tool walking
#: files (a diff through the read-object hook), not someone reading one file's history:
#: they bring no family (prefetch.Predictor.family).
LONE_RUN_SECONDS = 1.0
#: Settings read where they are used; a change to any other renews the HTTP clients, the
#: engine and the block cache (Daemon._renew).
READ_AT_USE = frozenset(
    {
        "offline",
        "outsideCone",
        "prefetchBytes",
        "familyBytes",
        "historyChanges",
        "prefetchBatch",
        "maxPromisorPacks",
        "daemonIdleSeconds",
        "prestartDaemon",
        "unknown",
    }
)
#: Settings that `git -c lazygit.NAME=VALUE CMD` sets for that command's lazy fetches (the
#: others belong to the daemon, which serves every command of the clone).
PER_REQUEST = ("offline", "outsideCone", "prefetchBytes", "familyBytes")
#: Seconds between looks whether a due merge of promisor packs can run (maintenance.py),
#: doubling up to the second while a git process has them open.
MERGE_POLL = 0.25
MERGE_POLL_MAX = 4.0
#: Beyond this many times lazygit.maxPromisorPacks, the merge runs at once, open or not.  It
#: runs inside a batch, whose git has every pack open: that git then counts the merged objects
#: twice.  At twice the limit it did so in every run of test_ondemand.py (33 packs after 12 s
#: of back-to-back commands), and a `git log -p` printed 9-digit hashes where a full clone
#: printed 8.
FORCED_MERGE_FACTOR = 4
#: A request that asked for progress ("progress": true) gets a progress line this often
#: while its batches run (none for a batch that ends sooner).
PROGRESS_SECONDS = 0.5


class OfflineError(DaemonError):
    """``lazygit.offline`` is on and git asked for an object that is not local."""


class OutsideConeError(DaemonError):
    """``lazygit.outsideCone=deny`` and git asked for a blob outside the sparse cone."""


def socket_path(git_dir: Path) -> Path:
    """The socket for ``git_dir`` in the user's private runtime directory."""
    import warnings

    import platformdirs

    # The directory's inode too: a clone made again where a deleted one was must not share
    # the old clone's socket path with its daemon, which lives on until it idles out.
    st = os.stat(git_dir)
    named = f"{git_dir}\0{st.st_dev}:{st.st_ino}"
    key = hashlib.sha256(named.encode(errors="surrogateescape")).hexdigest()[:20] + ".sock"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runtime = Path(platformdirs.user_runtime_dir("lazygit"))
    path = runtime / key
    if len(str(path)) > MAX_SOCKET_PATH:
        runtime = Path(tempfile.gettempdir()) / f"lazygit-{os.getuid()}"
        path = runtime / key
    _private_dir(runtime)
    return path


def _private_dir(path: Path) -> None:
    """Create ``path`` mode 0700 and make sure it is ours and private."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if st.st_uid != os.getuid() or not path.is_dir() or path.is_symlink():
        raise DaemonError(f"{path} is not a private directory of this user")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def config_mtimes(git_dir: Path) -> tuple[int, ...]:
    """When (and to what size) the git config files settings come from last changed: a
    reload is due when this differs.  Taken *before* loading, so that a change made while
    the settings load is not missed."""
    paths = [git_dir / "config", Path.home() / ".gitconfig"]
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    paths.append(Path(xdg) / "git" / "config")
    out: list[int] = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            out += (0, -1)
            continue
        out += (st.st_mtime_ns, st.st_size)
    return tuple(out)


class Batch:
    """A set of oids fetched together; requests that need any of them wait on it."""

    def __init__(self) -> None:
        self.oids: dict[bytes, None] = {}
        self.done = threading.Event()
        self.error: str | None = None
        self.stats: dict[str, Any] = {}
        self.tally = Tally()  # bytes read so far, and planned so far (rounds add reads)


class Batcher:
    """Merges concurrent requests: an oid is read from the server by one batch only."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.cond = threading.Condition()
        self.pending = Batch()
        self.inflight: dict[bytes, Batch] = {}
        self.last_end = time.monotonic()  # when the last batch ended (or the daemon started)
        self.last_big = False  # whether it was a big one (a checkout's)
        self.batches = 0
        threading.Thread(target=self._worker, name="batcher", daemon=True).start()

    def submit(self, oids: list[bytes]) -> list[Batch]:
        """The batches the caller must wait for to have ``oids`` (found missing a moment
        ago) local.  One that landed meanwhile costs its batch a lookup, not a read: the
        engine looks again, so they are not looked up here a second time (5,103 oids of a
        checkout: ~15 ms)."""
        deps: dict[int, Batch] = {}
        with self.cond:
            for oid in oids:
                batch = self.inflight.get(oid)
                if batch is None:
                    self.pending.oids[oid] = None
                    batch = self.pending
                deps[id(batch)] = batch
            if self.pending.oids:
                self.cond.notify_all()  # the worker, and wait_idle callers
        return list(deps.values())

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no batch is queued or running; False if ``timeout`` passed first."""
        with self.cond:
            return self.cond.wait_for(lambda: not self.inflight and not self.pending.oids, timeout)

    def _worker(self) -> None:
        while True:
            with self.cond:
                while not self.pending.oids:
                    self.cond.wait()
                batch, self.pending = self.pending, Batch()
                for oid in batch.oids:
                    self.inflight[oid] = batch
            try:
                batch.stats = self.daemon.run_batch(list(batch.oids), batch.tally)
            except LazyGitError as exc:
                batch.error = str(exc)
            except Exception as exc:  # keep serving; the log has the details
                self.daemon.log_exception()
                batch.error = f"internal error in the lazygit daemon: {exc!r} (see daemon.log)"
            with self.cond:
                for oid in batch.oids:
                    self.inflight.pop(oid, None)
                self.last_end = time.monotonic()
                self.last_big = len(batch.oids) >= BIG_REQUEST
                self.batches += 1
                self.cond.notify_all()
            batch.done.set()


class Daemon:
    """State shared by all connections of one repository's daemon."""

    def __init__(
        self,
        git_dir: Path,
        settings: Settings | None = None,
        config_stamp: tuple[int, ...] | None = None,
    ) -> None:
        from lazygit.blockcache import BlockCache
        from lazygit.catalog import Catalog
        from lazygit.config import Settings

        self.git_dir = git_dir
        #: Which directory we serve: one made again at its path (a new clone) is not it.
        self.dir_id = _file_id(git_dir)
        self.repo = LocalRepo(git_dir, None)
        if settings is None or config_stamp is None:
            config_stamp = config_mtimes(git_dir)
            settings = Settings.load(git_dir)
        self.settings = settings
        self._config_stamp = config_stamp
        self._url_checked = False  # the remote URL may have changed while no daemon ran
        state = self.repo.state_dir
        if not (state / "catalog.json").exists():
            raise DaemonError(f"{git_dir} is not a lazygit clone (no {state / 'catalog.json'})")
        self.local = self.repo.local_objects()
        self.cache = BlockCache(self.settings.blockCacheBytes)
        self.catalog = Catalog.open(state, self._connect)
        self.engine = self._engine(self.catalog)
        self.write_lock = threading.Lock()  # one index-pack producer at a time
        # Catalogs replaced (settings renewed, remote moved) whose HTTP clients a request
        # outside the write lock (`list`) may still use: closed once it is done.
        self._catalog_lock = threading.Lock()
        self._catalog_users: collections.Counter[int] = collections.Counter()
        self._retired: list[Catalog] = []
        self.batcher = Batcher(self)
        self.last_active = time.monotonic()
        #: Connections accepted and not yet answered; ``closing`` once the daemon has decided
        #: to exit idle, from which moment it answers nothing more (both under _active_lock).
        self.active = 0
        self.closing = False
        self._active_lock = threading.Lock()
        self.counters = {"requests": 0, "batches": 0, "objects": 0, "bytes": 0, "errors": 0}
        self.counters.update(prefetched=0, prefetch_triggers=0, denied=0)
        self.counter_lock = threading.Lock()
        #: (time, oid) of the latest requests for a single missing object.
        self._lone: collections.deque[tuple[float, bytes]] = collections.deque(maxlen=16)
        self._family_busy = threading.Lock()  # one family thread at a time, however many ask
        self._cone: tuple[object, Any] = (None, None)
        self.history: HistoryIndex | None = None
        self.predictor: Predictor | None = None
        self.history_ready = threading.Event()
        self._history_wanted = threading.Event()  # a request waits for the index
        self._history_checked = 0.0
        self._history_lock = threading.Lock()
        # Loaded at once; when it must be built, that waits for running batches (see
        # _load_history) and runs at low priority (a clone pre-starts the daemon, so this is
        # usually idle time).
        threading.Thread(target=self._load_history, name="history", daemon=True).start()
        self.merge_due = threading.Event()  # more promisor packs than lazygit.maxPromisorPacks
        threading.Thread(target=self._merge_when_unused, name="merge", daemon=True).start()

    # -- settings, history, cone --------------------------------------------------------
    def refresh_settings(self) -> None:
        """Re-read git config when a config file changed (offline, outsideCone, budgets)."""
        from dataclasses import fields

        from lazygit.config import Settings

        stamp = config_mtimes(self.git_dir)
        changed = stamp != self._config_stamp
        if changed:
            self._config_stamp = stamp
            old, new = self.settings, Settings.load(self.git_dir)
            self.settings = new
            renew = [
                f.name
                for f in fields(Settings)
                if f.name not in READ_AT_USE and getattr(old, f.name) != getattr(new, f.name)
            ]
            if renew:
                self._renew(renew)
        if (changed or not self._url_checked) and not self.settings.offline:
            try:
                self._follow_remote_url()
            except BaseException:
                self._config_stamp = ()  # look again at the next request
                raise
            self._url_checked = True

    def request_settings(self, config: object) -> Settings:
        """The settings for one request: the config files' (re-read when they changed), with
        the PER_REQUEST ones the asking git command was given by `git -c` (``config``:
        ``{lowercase name: text}``, forwarded by the helper or hook)."""
        self.refresh_settings()
        if not config or not isinstance(config, dict):
            return self.settings
        from dataclasses import replace

        from lazygit.config import Settings

        names = {name.lower(): name for name in PER_REQUEST}
        values = {k.lower(): str(v) for k, v in config.items() if str(k).lower() in names}
        if not values:
            return self.settings
        given = Settings.from_values(values)  # a malformed value: one line naming the key
        return replace(self.settings, **{names[k]: getattr(given, names[k]) for k in values})

    def _connect(self, url: str) -> DumbRemote:
        """An HTTP client for ``url``, with the current settings and the clone's http.*."""
        from lazygit.remote import DumbRemote

        return DumbRemote(url, self.settings, git_dir=self.git_dir)

    def _engine(self, catalog: Catalog) -> FetchEngine:
        """A fetch engine over ``catalog``, with the current settings and block cache."""
        from lazygit.fetch import FetchEngine

        return FetchEngine(catalog, self.repo, self.settings, self.local, reader=self.cache.read)

    def _renew(self, changed: list[str]) -> None:
        """The HTTP clients, the engine and the block cache took the settings when we
        started: make them anew for ``changed`` ones, as a restart would."""
        from lazygit.blockcache import BlockCache
        from lazygit.catalog import Catalog

        with self.write_lock:  # no batch runs on the old ones meanwhile
            catalog = Catalog.open(self.repo.state_dir, self._connect)
            if self.cache.capacity != self.settings.blockCacheBytes:
                self.cache = BlockCache(self.settings.blockCacheBytes)
            old, self.catalog = self.catalog, catalog
            self.engine = self._engine(catalog)
        self._retire(old)
        if "daemonTimeout" in changed:
            publish(self.git_dir, self.settings)
        self.log(f"settings changed ({', '.join(changed)}): HTTP clients and engine renewed")

    def _follow_remote_url(self) -> None:
        """After `git remote set-url`: read the server at its new URL (a move, a mirror)."""
        from lazygit.catalog import follow_remote_url, moved_url

        url = moved_url(self.catalog, self.git_dir)
        if url is None:
            return  # (the usual case: no need to wait for a batch in flight)
        was = self.catalog.sources[0].remote.display_url
        with self.write_lock:  # no batch runs on the old catalog meanwhile
            catalog = follow_remote_url(self.catalog, url, self.settings, self._connect)
            old, self.catalog = self.catalog, catalog
            self.engine.catalog = catalog
        self._retire(old)
        self.log(
            f"the remote URL is now {catalog.sources[0].remote.display_url} (was {was}): "
            f"{len(catalog.packs)} packs there"
        )

    @contextlib.contextmanager
    def _using_catalog(self) -> Iterator[Catalog]:
        """The current catalog, for a request that runs outside the write lock: a renewal
        meanwhile leaves its HTTP clients open until the block ends."""
        with self._catalog_lock:
            catalog = self.catalog
            self._catalog_users[id(catalog)] += 1
        try:
            yield catalog
        finally:
            with self._catalog_lock:
                self._catalog_users[id(catalog)] -= 1
            self._retire(None)

    def _retire(self, old: Catalog | None) -> None:
        """Close the HTTP clients of ``old`` (and of those retired before) that no request
        uses any more."""
        with self._catalog_lock:
            if old is not None:
                self._retired.append(old)
            done = [c for c in self._retired if not self._catalog_users[id(c)]]
            self._retired = [c for c in self._retired if self._catalog_users[id(c)]]
        for catalog in done:
            for r in catalog.remotes():
                r.close(wait=False)

    def _load_history(self) -> None:
        from lazygit.prefetch import Predictor, load_or_build

        with contextlib.suppress(OSError, AttributeError):
            # Linux niceness is per thread; the `git log` it starts inherits it.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)

        def _after_batches() -> None:
            # Building reads all history (git log, then parsing): on a machine with few
            # cores it would slow a checkout's batch by half, and that batch needs no index.
            # So it waits while a batch runs, for the first request after the daemon's start,
            # and for git to write the working tree after a big batch, unless a request
            # waits for the index.
            deadline = time.monotonic() + HISTORY_DEFER
            while not self._history_wanted.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or not self.batcher.wait_idle(left):
                    self.log("history index: building while batches keep coming")
                    return
                b = self.batcher  # after a big batch git is likely writing a working tree
                settle = HISTORY_SETTLE if b.last_big else START_SETTLE if not b.batches else 0.0
                rest = b.last_end + settle - time.monotonic()
                if rest <= 0:
                    return
                self._history_wanted.wait(rest)

        started = [time.monotonic()]

        def _before_build() -> None:
            _after_batches()
            started[0] = time.monotonic()  # the log line's time leaves the wait out

        try:
            index = load_or_build(
                self.git_dir,
                self.repo.state_dir / "history.idx",
                before_build=_before_build,
                max_changes=self.settings.historyChanges,
            )
        except Exception:  # prefetch is an optimisation: never take the daemon down
            self.log_exception()
            self._history_wanted.clear()
            self.history_ready.set()
            return
        self._history_wanted.clear()
        self.history = index
        # The index is the daemon's largest long-lived data (with the imported modules):
        # out of the collector's sight, a full collection no longer walks it again, which
        # cost 25-40 ms in the middle of a batch.  An index replaced later is freed by its
        # reference count (it holds no cycles); what else is frozen here and later becomes
        # cyclic garbage (a batch's objects in flight) stays: a few objects per index load.
        gc.freeze()
        self.predictor = Predictor(
            self.git_dir, index, is_local=self.local.__contains__, size_of=self._pack_size
        )
        self._history_checked = time.monotonic()
        older = " (lazygit.historyChanges reached: older history is not predicted)"
        self.log(
            f"history index: {len(index.commits)} commits, {len(index.paths)} paths "
            f"({time.monotonic() - started[0]:.3f} s)" + (older if index.truncated else "")
        )
        self.history_ready.set()

    def _await_history(self, timeout: float) -> None:
        """Wait (bounded) for the history index; a build deferred for batches starts now."""
        self._history_wanted.set()
        self.history_ready.wait(timeout)

    def _recheck_history(self) -> None:
        """Look (in a thread) whether the refs moved; then rebuild the history index.

        The look is two git processes (~4 ms here): on the request's path it delayed the first
        lazy fetch of every command that came HISTORY_RECHECK after the last.  That request
        plans with the index it finds; the next ones wait for the new one as usual."""
        now = time.monotonic()
        if not self.history_ready.is_set() or now - self._history_checked < HISTORY_RECHECK:
            return
        if not self._history_lock.acquire(blocking=False):
            return
        self._history_checked = now
        try:
            threading.Thread(target=self._compare_history_key, name="recheck", daemon=True).start()
        except RuntimeError:  # (the interpreter is exiting)
            self._history_lock.release()

    def _compare_history_key(self) -> None:
        """(``_history_lock`` is held for us.)"""
        from lazygit.prefetch import index_key

        try:
            key = index_key(self.git_dir, self.settings.historyChanges)
            if self.history is not None and key != self.history.key:
                self.history_ready.clear()
                threading.Thread(target=self._load_history, name="history", daemon=True).start()
        except Exception:  # prefetch is an optimisation: never take the daemon down
            self.log_exception()
        finally:
            self._history_lock.release()

    def _pack_size(self, oid: bytes) -> int | None:
        loc = self.catalog.locate(oid)
        if loc is None:
            return None
        return loc[0].pack.extent_at(loc[1]).length

    def cone(self) -> Any:
        """The sparse-checkout matcher (re-read when the patterns or config change)."""
        from lazygit.sparse import matcher

        path = self.git_dir / "info" / "sparse-checkout"
        try:
            stamp: object = (path.stat().st_mtime_ns, self._config_stamp)
        except OSError:
            stamp = (0, self._config_stamp)
        if self._cone[0] != stamp:
            self._cone = (stamp, matcher(self.repo))
        return self._cone[1]

    def _check_cone(self, missing: list[bytes], settings: Settings) -> list[str]:
        """Apply lazygit.outsideCone to the requested blobs; return warning lines."""
        policy = settings.outsideCone.strip().lower()
        if policy not in ("warn", "deny"):
            return []
        match = self.cone()
        if match is None:
            return []
        self._await_history(POLICY_WAIT)
        index = self.history
        if index is None:
            return []
        warnings = []
        for oid in missing:
            paths = index.paths_of(oid)
            if not paths or any(match(p) for p in paths):
                continue  # unknown paths are allowed
            path = min(paths)
            if policy == "deny":
                with self.counter_lock:
                    self.counters["denied"] += 1
                self.log(f"denied {oid.hex()} ({path}): outside the sparse cone")
                raise OutsideConeError(
                    f"lazygit refused blob {oid.hex()[:12]} ({path}): it is outside the "
                    "sparse-checkout cone",
                    f"widen the cone: lazygit sparse add {os.path.dirname(path) or path}, or "
                    "allow such fetches: git config lazygit.outsideCone allow",
                )
            line = f"warning: fetching {path} ({oid.hex()[:12]}), outside the sparse cone"
            self.log(line)
            warnings.append(line)
        return warnings

    def plan_prefetch(
        self, missing: list[bytes], pid: int | None, settings: Settings
    ) -> tuple[list[bytes], Intent]:
        """Blobs git will ask for next (prefetch.py), to fetch with this request; and who
        asks (read now: the requester is gone once answered)."""
        from lazygit.prefetch import Intent, requester_intent

        budget = settings.prefetchBytes
        if budget <= 0 or not missing:
            return [], Intent()
        if len(missing) >= BIG_REQUEST and not self.history_ready.is_set():
            return [], Intent()  # already a batch (a checkout): nothing to wait for
        intent = requester_intent(pid)
        if not self.history_ready.is_set() and _heavy(intent):
            self._await_history(HISTORY_WAIT)
        self._recheck_history()
        predictor = self.predictor
        if predictor is None or not self.history_ready.is_set():
            return [], intent
        cone = self.cone()
        strict = settings.outsideCone.strip().lower() == "deny"
        plan = predictor.plan(
            missing, intent, budget, allowed_tree=cone, allowed_history=cone if strict else None
        )
        self._note_prefetch(plan, intent)
        return plan.oids, intent

    def _note_prefetch(self, plan: Plan, intent: Intent, when: str = "") -> None:
        if not plan.oids:
            return
        with self.counter_lock:
            self.counters["prefetched"] += len(plan.oids)
            self.counters["prefetch_triggers"] += 1
        who = f"git {intent.command}" if intent.command else "unknown requester"
        self.log(
            f"prefetch: {len(plan.oids)} blobs (~{plan.bytes} bytes) for {plan.reason} ({who})"
            + when
        )

    def prefetch_family_later(
        self, oid: bytes, asked: float, intent: Intent, settings: Settings
    ) -> None:
        """After answering a lone request (made at ``asked``) for an old version of a file,
        fetch its other versions in a batch of their own (prefetch.Predictor.family): the
        answer does not wait for them, and git's next request for one waits only for that
        batch."""
        from lazygit.prefetch import TREE_COMMANDS

        budget = min(settings.familyBytes, settings.prefetchBytes)
        if budget <= 0 or _heavy(intent) or intent.command in TREE_COMMANDS:
            return  # those commands' patterns are planned with their requests
        with self.counter_lock:
            just_before = [
                o for t, o in self._lone if asked - LONE_RUN_SECONDS <= t < asked and o != oid
            ]
        # A burst of lone requests on a cold daemon would otherwise leave a thread each
        # waiting for the history index.
        if not self._family_busy.acquire(blocking=False):
            return

        def run() -> None:
            try:
                # A cold daemon loads (or builds) the index after its first batch: wait a
                # little for it, without hurrying it as a waiting request does.
                self.history_ready.wait(HISTORY_WAIT)
                predictor = self.predictor
                if predictor is None or not self.history_ready.is_set():
                    return
                strict = settings.outsideCone.strip().lower() == "deny"
                allowed = self.cone() if strict else None
                plan = predictor.family(oid, budget, allowed, just_before=just_before)
                self._note_prefetch(plan, intent, ", after the answer")
                if plan.oids:
                    self.batcher.submit(plan.oids)
            except Exception:  # an optimisation only
                self.log_exception()
            finally:
                self._family_busy.release()

        try:
            threading.Thread(target=run, name="family", daemon=True).start()
        except BaseException:
            self._family_busy.release()
            raise

    # -- the pack count --------------------------------------------------------------------
    def bound_packs(self) -> None:
        """After a pack landed (write_lock held): beyond lazygit.maxPromisorPacks, merge once
        no git process has the small packs open (see maintenance.py); beyond
        FORCED_MERGE_FACTOR times that, now."""
        from lazygit.maintenance import consolidate_if_needed, promisor_packs

        limit = max(self.settings.maxPromisorPacks, 1)
        count = len(promisor_packs(self.repo))
        if count > FORCED_MERGE_FACTOR * limit:
            name = consolidate_if_needed(self.repo, limit)
            if name:
                self.log(
                    f"{count} promisor packs, over {FORCED_MERGE_FACTOR} times the limit: "
                    f"merged into {name}"
                )
            count = len(promisor_packs(self.repo))
        if count > limit:
            self.merge_due.set()

    def _bound_packs_safely(self) -> None:
        """`bound_packs` after a batch whose pack has landed: a merge that fails (git's own
        gc repacking at the same time removed a pack under it) is logged, and the batch,
        whose objects are local, still succeeds."""
        try:
            self.bound_packs()
        except Exception:
            self.log_exception()

    def merge_unused(self) -> None:
        """Merge the small promisor packs unless a git process has them open (write_lock held)."""
        from lazygit.maintenance import consolidate_if_needed, mapped_by_git, promisor_packs

        limit = max(self.settings.maxPromisorPacks, 1)
        name = consolidate_if_needed(self.repo, limit, in_use=mapped_by_git)
        if name:
            self.local.refresh()
            self.log(f"promisor packs merged into {name} (no git process had them open)")
        if len(promisor_packs(self.repo)) <= limit:
            self.merge_due.clear()

    def _merge_when_unused(self) -> None:
        # Packs beyond the limit at the start (a daemon that exited before its merge, packs
        # git's own fetch left) are counted as after a batch, not only after the first one.
        with self.write_lock:
            self._bound_packs_safely()
        wait = MERGE_POLL
        while True:
            if not self.merge_due.is_set():
                self.merge_due.wait()
                wait = MERGE_POLL
            time.sleep(wait)
            # A git process may hold the packs for long (cat-file --batch under an editor):
            # look less often the longer it does.
            wait = min(2 * wait, MERGE_POLL_MAX)
            if self.active:  # a request is served: its git is running
                continue
            try:
                with self.write_lock:
                    self.merge_unused()
            except Exception:  # the pack count only: try again later
                self.log_exception()

    def accept(self) -> bool:
        """Count a connection just accepted as active; False once the daemon is closing."""
        with self._active_lock:
            if self.closing:
                return False
            self.active += 1
            return True

    def done(self) -> None:
        with self._active_lock:
            self.active -= 1
            self.last_active = time.monotonic()

    def close_if_idle(self) -> float | None:
        """Start closing if no connection is active and none came for daemonIdleSeconds: the
        idle time then; else None.  A connection accepted after this is closed unread, and
        its client asks the next daemon (daemonclient.request)."""
        with self._active_lock:
            idle = time.monotonic() - self.last_active
            if self.active or idle <= self.settings.daemonIdleSeconds:
                return None
            self.closing = True
            return idle

    # -- work ---------------------------------------------------------------------------
    def run_batch(self, oids: list[bytes], tally: Progress = QUIET) -> dict[str, Any]:
        with self.write_lock:
            stats = self.engine.fetch(oids, tally)
            self._bound_packs_safely()
            self.local.refresh()
            self.catalog.note_credentials()
        if stats.refreshed:
            self.log("the server's packs changed since the clone (a repack): pack list re-read")
        with self.counter_lock:
            self.counters["batches"] += 1
            self.counters["objects"] += stats.objects
            self.counters["bytes"] += stats.bytes
        self.log(
            f"batch: {len(oids)} wanted, {stats.objects} objects, {stats.bytes} bytes, "
            f"{stats.requests} requests, {stats.rounds} rounds, {stats.seconds:.3f} s"
        )
        return {
            "objects": stats.objects,
            "bytes": stats.bytes,
            "requests": stats.requests,
            "seconds": round(stats.seconds, 4),
        }

    def fetch(
        self,
        hex_oids: list[str],
        pid: int | None = None,
        config: object = None,
        report: Callable[[dict[str, int]], None] | None = None,
    ) -> dict[str, Any]:
        """Make ``hex_oids`` local (with what the prefetch adds); ``report`` gets the bytes
        read so far every PROGRESS_SECONDS while the batches run."""
        oids = _parse_oids(hex_oids)
        t0 = time.monotonic()
        settings = self.request_settings(config)
        missing = missing_before = self.local.missing(oids)
        if len(missing) == 1:
            with self.counter_lock:
                self._lone.append((t0, missing[0]))
        warnings: list[str] = []
        extra: list[bytes] = []
        intent: Intent | None = None
        if missing:
            if settings.offline:
                raise OfflineError(
                    f"lazygit is offline: object {missing[0].hex()} is not local",
                    "lazygit offline off to fetch",
                )
            warnings = self._check_cone(missing, settings)
            try:
                extra, intent = self.plan_prefetch(missing, pid, settings)
            except Exception:  # an optimisation only: the request itself must go on
                self.log_exception()
        deps = self.batcher.submit(missing + extra)
        deadline = t0 + self.settings.daemonTimeout
        with _reporting(report, [b.tally for b in deps]):
            for batch in deps:
                if not batch.done.wait(max(0.0, deadline - time.monotonic())):
                    raise DaemonError("timed out waiting for the server", "check the server")
        errors = [b.error for b in deps if b.error]
        if errors:
            raise DaemonError(errors[0])
        missing = self.local.missing(missing_before)
        if missing:
            raise DaemonError(f"object {missing[0].hex()} is not on the server")
        reply: dict[str, Any] = {"objects": 0, "bytes": 0, "requests": 0}
        for batch in deps:
            for key in reply:
                reply[key] += batch.stats.get(key, 0)
        reply["seconds"] = round(time.monotonic() - t0, 4)
        if extra:
            reply["prefetched"] = len(extra)
        elif intent is not None and len(oids) == 1 == len(missing_before):
            self.prefetch_family_later(oids[0], t0, intent, settings)
        if warnings:
            reply["warnings"] = warnings
        return reply

    def update(
        self,
        hex_oids: list[str],
        config: object = None,
        report: Callable[[dict[str, int]], None] | None = None,
    ) -> dict[str, Any]:
        """Bring the commits, trees and tags behind ``hex_oids`` (`git fetch`); ``report``
        as for :meth:`fetch`."""
        tips = _parse_oids(hex_oids)
        settings = self.request_settings(config)
        if settings.offline and self.local.missing(tips):
            raise OfflineError(
                "lazygit is offline: cannot fetch from the server", "lazygit offline off to fetch"
            )
        tally = Tally()
        with self.write_lock, _reporting(report, [tally]):
            stats = self.engine.update(tips, tally)
            self._bound_packs_safely()
            self.local.refresh()
            self._follow_abbrev()
        missing = self.local.missing(tips)
        if missing:
            raise DaemonError(f"object {missing[0].hex()} is not on the server")
        return {
            "objects": stats.objects,
            "bytes": stats.bytes,
            "requests": stats.requests,
            "seconds": round(stats.seconds, 4),
        }

    def _follow_abbrev(self) -> None:
        """core.abbrev as a full clone of the server now sizes it (the update brought its
        new packs).  Cosmetic: a failure (git config locked by another git) is logged, and
        the fetch it follows still succeeds."""
        catalog = self.engine.catalog
        try:
            abbrev = self.repo.follow_full_clone_abbrev(catalog.object_count(), catalog.abbrev)
        except LazyGitError as exc:
            self.log(f"core.abbrev not updated: {exc}")
            return
        if abbrev != catalog.abbrev:
            catalog.abbrev = abbrev
            catalog.save()

    def list_refs(self) -> dict[str, Any]:
        from lazygit.discovery import discover, refs_reply

        with self._using_catalog() as catalog:
            remote = catalog.sources[0].remote
            return refs_reply(discover(remote, connect_alternate=lambda url: remote))

    def stats(self) -> dict[str, Any]:
        with self.counter_lock:
            out: dict[str, Any] = dict(self.counters)
        out.update(
            cache_bytes=self.cache.size,
            cache_hits=self.cache.hits,
            cache_misses=self.cache.misses,
            packs=len(self.catalog.packs),
            merge_due=self.merge_due.is_set(),
            pid=os.getpid(),
        )
        return out

    def handle(
        self,
        message: dict[str, Any],
        pid: int | None = None,
        report: Callable[[dict[str, int]], None] | None = None,
    ) -> dict[str, Any]:
        """The reply to one request; ``report`` sends a progress line before it (a fetch or
        update that asked for progress)."""
        op = message.get("op")
        with self.counter_lock:
            self.counters["requests"] += 1
        if op == "ping":
            return {"pid": os.getpid(), "version": __version__}
        if message.get("progress") is not True:
            report = None
        if op == "fetch":
            return self.fetch(message.get("oids") or [], pid, message.get("config"), report)
        if op == "update":
            return self.update(message.get("oids") or [], message.get("config"), report)
        if op == "list":
            if self.request_settings(message.get("config")).offline:
                raise OfflineError(
                    "lazygit is offline: cannot list the server's refs",
                    "lazygit offline off to fetch",
                )
            return self.list_refs()
        if op == "stats":
            return self.stats()
        raise DaemonError(f"unknown request {str(op)[:40]!r}")

    # -- logging ------------------------------------------------------------------------
    def log(self, line: str) -> None:
        _log(line)

    def log_exception(self) -> None:
        self.log("unexpected error:\n" + traceback.format_exc())


_GIT_REPO_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
    "GIT_CONFIG_PARAMETERS",  # `git -c k=v CMD` of the one command that started us
)


@contextlib.contextmanager
def _reporting(
    report: Callable[[dict[str, int]], None] | None, tallies: list[Tally]
) -> Iterator[None]:
    """Send the sum of ``tallies`` to ``report`` every PROGRESS_SECONDS while the block runs
    (nothing if it ends sooner)."""
    if report is None:
        yield
        return
    stop = threading.Event()

    def _loop() -> None:
        while not stop.wait(PROGRESS_SECONDS):
            done, total = sum(t.done for t in tallies), sum(t.total for t in tallies)
            report({"bytes": done, "total": total})

    thread = threading.Thread(target=_loop, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()  # no progress line after the reply


def _heavy(intent: Intent) -> bool:
    """Commands that read many blobs one at a time: worth waiting for the history index."""
    return (
        intent.is_blame
        or intent.command in ("grep", "checkout", "restore", "archive")
        or intent.walks
    )


def _parse_oids(hex_oids: Any) -> list[bytes]:
    if not isinstance(hex_oids, list):
        raise DaemonError("malformed request: oids must be a list")
    out = []
    for h in hex_oids:
        if not isinstance(h, str) or len(h) != 40:
            raise DaemonError(f"malformed object id {str(h)[:50]!r}")
        try:
            out.append(bytes.fromhex(h))
        except ValueError:
            raise DaemonError(f"malformed object id {h[:50]!r}") from None
    return out


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        daemon = self.server.daemon
        creds = self.request.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
        )
        peer_pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            daemon.log(f"refused a connection from uid {uid}")
            return
        line = self.rfile.readline(MAX_REQUEST + 1)
        if len(line) > MAX_REQUEST:
            reply: dict[str, Any] = {"ok": False, "error": "request too large"}
        else:
            try:
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except ValueError:
                reply = {"ok": False, "error": "malformed request (not one line of JSON)"}
            else:
                if message.get("op") == "stop":
                    self._reply({"ok": True})
                    self.server.stopping = True
                    threading.Thread(target=self.server.shutdown, daemon=True).start()
                    return
                try:
                    reply = {"ok": True, **daemon.handle(message, peer_pid, self._progress)}
                except LazyGitError as exc:
                    reply = {"ok": False, "error": str(exc)}
                    daemon.counters["errors"] += 1
                except Exception as exc:
                    daemon.log_exception()
                    reply = {
                        "ok": False,
                        "error": f"internal error in the lazygit daemon: {exc!r} (see daemon.log)",
                    }
        self._reply(reply)

    def _reply(self, reply: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps(reply).encode() + b"\n")

    def _progress(self, counts: dict[str, int]) -> None:
        """A progress line (docs/protocol.md): no "ok" key, so no client takes it for the
        reply.  A client that went away costs nothing here: its reply fails the same way."""
        self._reply({"progress": counts})
        with contextlib.suppress(OSError):
            self.wfile.flush()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    daemon: Daemon
    stopping = False

    def process_request(self, request: Any, client_address: Any) -> None:
        # Counted from the accept, not from when its thread runs: the idle watch never
        # exits under a request it has not seen yet.
        if not self.daemon.accept():
            request.close()  # closing: reset unread, its client asks the next daemon
            return
        super().process_request(request, client_address)

    def close_request(self, request: Any) -> None:
        try:
            super().close_request(request)
        finally:
            self.daemon.done()


def _log(line: str) -> None:
    """One line in daemon.log (our stderr), with the time to the millisecond and our pid."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    ms = int(now * 1000) % 1000
    print(f"{stamp}.{ms:03d} [{os.getpid()}] {line}", file=sys.stderr, flush=True)


def _idle_watch(server: _Server, daemon: Daemon) -> None:
    while not server.stopping:
        time.sleep(min(1.0, daemon.settings.daemonIdleSeconds / 4))
        if not (daemon.git_dir / "objects").is_dir() or _file_id(daemon.git_dir) != daemon.dir_id:
            daemon.log(f"{daemon.git_dir} is gone (the repository moved or was deleted), exiting")
            server.stopping = True
            server.shutdown()
            return
        idle = daemon.close_if_idle()
        if idle is not None:
            daemon.log(f"idle for {idle:.0f} s, exiting")
            server.stopping = True
            server.shutdown()
            return


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file or directory, None if it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _refuse_waiting(server: _Server, error: str) -> None:
    """Answer the clients that connected while the daemon was loading: it failed to start."""
    server.socket.setblocking(False)
    reply = json.dumps({"ok": False, "error": f"the lazygit daemon failed to start: {error}"})
    while True:
        try:
            conn, _ = server.socket.accept()
        except OSError:
            return
        with contextlib.suppress(OSError), conn:
            conn.settimeout(1.0)
            conn.recv(1 << 16)
            conn.sendall(reply.encode() + b"\n")


def _take_over(state: Path, git_dir: Path, lock: IO[str]) -> bool:
    """The lock is held: by a daemon that serves this repository (False: we are not needed),
    or by one that is exiting or starting (we wait for the lock), or by a daemon serving
    this repository under the path it had before it was moved (the lock file moved with
    it: we stop that daemon and take its place).  True once the lock is ours."""
    info_path = state / "daemon.json"
    try:
        info = json.loads(info_path.read_text())
        old, sock_path = info["git_dir"], info["socket"]
    except FileNotFoundError:
        # Exiting (it unpublishes first, then lets a batch in flight land) or starting (it
        # publishes within milliseconds): ours once it exits, unless one publishes.
        return _await_lock(lock, info_path.exists)
    except (OSError, ValueError, KeyError, TypeError):
        return False  # an older daemon's daemon.json: it serves
    if not isinstance(old, str) or same_dir(old, git_dir):
        return False
    _log(f"the daemon for {old} serves this repository, now at {git_dir}: stopping it")
    with contextlib.suppress(OSError, TypeError), socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5.0)
        s.connect(sock_path)
        s.sendall(b'{"op": "stop"}\n')
        s.recv(4096)

    def taken_over() -> bool:  # another new daemon took over first: it serves us
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return same_dir(json.loads(info_path.read_text())["git_dir"], git_dir)
        return False

    return _await_lock(lock, taken_over)


def _await_lock(lock: IO[str], served: Callable[[], bool]) -> bool:
    """Wait for the lock, held by a daemon on its way out: True once ours; False as soon as
    ``served`` says another daemon serves this repository, or after 40 s."""
    deadline = time.monotonic() + 40.0  # an exiting daemon lets its batch finish (<= 30 s)
    while time.monotonic() < deadline:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            pass
        if served():
            return False
        time.sleep(0.02)
    return False


def publish(git_dir: Path, settings: Settings) -> Path:
    """Write daemon.json, where clients find our socket, pid and how long to wait for us."""
    state = git_dir / "lazygit"
    info = state / "daemon.json"
    tmp = state / f"daemon.json.{os.getpid()}"
    doc = {
        "socket": str(socket_path(git_dir)),
        "pid": os.getpid(),
        "timeout": settings.daemonTimeout,
        "git_dir": str(git_dir),
    }
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, info)
    return info


def serve(git_dir: Path) -> int:
    """Run the daemon for ``git_dir`` until idle; return 0 at once if one is running."""
    # git runs the helper that spawns us with GIT_DIR (often relative: ".git") and friends
    # set; every git command the daemon runs names its repository itself, and a relative
    # GIT_DIR would point it elsewhere (settings silently read from nowhere).
    for name in _GIT_REPO_ENV:
        os.environ.pop(name, None)
    state = git_dir / "lazygit"
    state.mkdir(exist_ok=True)
    lock = open(state / "daemon.lock", "a+")  # noqa: SIM115 - held for the daemon's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        if not _take_over(state, git_dir, lock):
            return 0  # another daemon serves this repository
    # Listen and publish first, load after: a client that connects meanwhile waits in the
    # backlog instead of polling for the socket while the imports and indexes load.
    from lazygit.config import Settings

    stamp = config_mtimes(git_dir)
    settings = Settings.load(git_dir)
    path = socket_path(git_dir)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old_umask = os.umask(0o177)  # the socket is created mode 0600
    try:
        server = _Server(str(path), _Handler)
    finally:
        os.umask(old_umask)
    ours = _file_id(path)
    info = publish(git_dir, settings)
    # The start-up (httpx's imports, the pack indexes) makes ~10^5 objects that live as long
    # as we do: collecting while they are made, and walking them at every full collection
    # after, only costs time (~30 ms here, on the path of the request that started us).
    gc.disable()
    try:
        daemon = Daemon(git_dir, settings, stamp)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            info.unlink()
        _unlink_socket(path, ours)
        _refuse_waiting(server, str(exc) if isinstance(exc, LazyGitError) else repr(exc))
        server.server_close()
        raise
    gc.freeze()
    gc.enable()
    server.daemon = daemon
    daemon.log(f"lazygit {__version__} daemon serving {git_dir} on {path}")
    daemon.last_active = time.monotonic()  # idle from now: loading is not idling
    threading.Thread(target=_idle_watch, args=(server, daemon), daemon=True).start()

    def _terminate(signum: int, frame: object) -> None:
        server.stopping = True
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _terminate)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        # Unpublished first: a client that comes from now on starts the next daemon, which
        # waits for the lock (_await_lock) instead of connecting to a socket nobody serves.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if json.loads(info.read_text()).get("pid") == os.getpid():
                info.unlink()
        _unlink_socket(path, ours)
        # A batch in flight finishes before we are gone: its pack lands before the next
        # daemon starts, not after (index-pack would outlive us).  The lock stays held.
        locked = daemon.write_lock.acquire(timeout=min(30.0, daemon.settings.daemonTimeout))
        if locked and daemon.merge_due.is_set():
            try:
                daemon.merge_unused()
            except Exception:
                daemon.log_exception()
        server.server_close()
    return 0


def _unlink_socket(path: Path, ours: tuple[int, int] | None) -> None:
    """Remove our socket file, unless another daemon's has taken its place."""
    if ours is not None and _file_id(path) == ours:
        with contextlib.suppress(OSError):
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lazygit.daemon GIT_COMMON_DIR", file=sys.stderr)
        return 2
    git_dir = Path(args[0]).resolve()
    os.chdir("/")  # pin no directory (the helper spawns us where git runs it)
    try:
        return serve(git_dir)
    except LazyGitError as exc:
        print(f"lazygit daemon: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
