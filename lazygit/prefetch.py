"""History-aware prefetch: fetch what git will ask for next, before it asks.

git in a partial clone asks for missing blobs one at a time in its commonest history
commands: ``git blame`` one version of the file per request, ``git log -p`` one commit's diff
per request, ``git grep PATTERN REV`` and ``git checkout REV -- PATH`` one file per request.
Every request costs a ``git fetch`` process, a helper process and a batch (~0.15 s), so these
commands crawl.  The daemon uses this module to recognise the patterns and to add the blobs
the command will need next to the batch being fetched:

- the *history index* (built from local commits and trees only, with ``GIT_NO_LAZY_FETCH``)
  maps blob -> (commit, path), path -> versions, commit -> changed blobs;
- the *requester's command line* (Linux ``/proc``: the helper's ancestors are ``git fetch``
  and the git command that needs the blob) tells blame, log, grep and checkout apart at the
  first request; without it, the sequence of requests tells them apart after two;
- blame -> the older versions of the path; log -p -> the diffs of the next commits in walk
  order (window growing 1.5x per trigger, or ``-N`` when given; in bytes for a log limited
  to paths or searching diffs); grep/checkout/cat-file ->
  the rest of the tree (restricted by the command's pathspec, or the requests' directory).

Everything a trigger adds is bounded by ``lazygit.prefetchBytes`` (sizes as stored in the
server pack) and by the sparse cone where that applies.

A single request that fits none of these patterns, for an old version of a file, brings the
file's other versions (its delta family) after the answer, within ``lazygit.familyBytes``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import hashlib
import heapq
import itertools
import marshal
import os
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from lazygit.gitcmd import popen_git, run_git

#: Cached index format; bump when the layout changes.
INDEX_VERSION = 5
#: Requests further apart than this do not form one pattern.
PATTERN_SECONDS = 10.0
#: Ref trees examined when guessing the tree a run of single-blob requests comes from.
MAX_CANDIDATE_TREES = 64
#: First log window without a ``-N`` hint, and its growth per trigger (bounds overfetch).
LOG_FIRST_WINDOW = 16
LOG_GROWTH = 1.5
LOG_MAX_WINDOW = 4096
#: A log's walk is seeded from its tips down to the first commit git asks about, at most
#: this many commits (a path-limited log may start far down; ~0.5 us a commit here).
LOG_SEED_COMMITS = 50_000
#: A log limited to paths (``git log -p -- FILE``) shows a few blobs a commit, and one
#: searching diffs (``-S``, ``-G``) walks an unknown number of commits: their windows are
#: counted in bytes (as stored in the server pack), from this, doubling per trigger.  A
#: commit window took 7 batches for the 545 versions (212 KB) of one file: 0.54 s, not 0.24.
LOG_PATH_FIRST_BYTES = 1 << 20
#: Merges of a log window whose diffs are worked out at once (one ``git diff-tree --stdin``
#: for their first parents).
MERGES_AT_ONCE = 32
#: A run of requests that walks its tree in order (``cat-file --batch`` of an ls-tree, an
#: indexer) brings the rest of the directory it stays in at once.  One out of order (an
#: editor opening files) brings the next blobs in windows: this many, and growing.
TREE_FIRST_WINDOW = 64
TREE_GROWTH = 2.0
#: Requests of two git commands form one tree run only when the second follows the first
#: this closely: a tool (a script running `git show REV:PATH` file by file), not someone
#: typing two unrelated commands, whose second command would bring the rest of the tree.
TOOL_GAP_SECONDS = 1.0
#: Size assumed for a blob in no server pack (a loose object of a recent push).
LOOSE_GUESS = 4096

_FETCHING_COMMANDS = frozenset({"fetch", "remote-lazy", "fetch-pack", "index-pack"})
_LOG_COMMANDS = frozenset({"log", "whatchanged"})
_DIFF_OPTIONS = frozenset(
    {"-p", "-u", "--patch", "--stat", "--numstat", "--shortstat", "--dirstat", "--summary",
     "--patch-with-stat", "--patch-with-raw", "--compact-summary", "--word-diff", "--check",
     "--cc", "-c", "-m", "--full-diff"}
)  # fmt: skip
#: Commands that show many commits' diffs, as log does, without log's options: a second
#: request along the walk confirms it (``git show COMMIT`` alone gets nothing more).
_WALK_COMMANDS = frozenset({"show", "format-patch", "diff-tree"})
TREE_COMMANDS = frozenset({"grep", "checkout", "restore", "archive", "switch", "reset"})
#: git's global options that take a separate value.
_GIT_VALUE_OPTIONS = frozenset({"-c", "-C", "--git-dir", "--work-tree", "--namespace"})
#: Options of the tree commands that take a value (as ``-X VALUE``, ``-XVALUE``,
#: ``--name VALUE`` or ``--name=VALUE``), from git 2.39's documentation of each command.
_VALUE_OPTIONS: dict[str, frozenset[str]] = {
    "log": frozenset(
        {"-n", "--max-count", "--skip", "--since", "--after", "--until", "--before",
         "--since-as-filter", "--author", "--committer", "--grep", "--grep-reflog", "-S",
         "-G", "-O", "-L", "--min-parents", "--max-parents", "--date", "--encoding",
         "--diff-filter", "--find-object", "--decorate-refs", "--decorate-refs-exclude"}
    ),
    "grep": frozenset(
        {"-e", "-f", "-A", "-B", "-C", "-m", "--max-count", "--max-depth", "--threads",
         "--after-context", "--before-context", "--context"}
    ),
    "checkout": frozenset({"-b", "-B", "--orphan", "--conflict", "--pathspec-from-file"}),
    "switch": frozenset({"-c", "-C", "--create", "--force-create", "--orphan", "--conflict"}),
    "restore": frozenset({"-s", "--source", "--conflict", "--pathspec-from-file"}),
    "reset": frozenset({"--pathspec-from-file"}),
    "archive": frozenset({"-o", "--output", "--format", "--prefix", "--remote", "--exec",
                          "--add-file", "--add-virtual-file", "--mtime"}),
}  # fmt: skip
#: grep's options that give the pattern, so that no argument is the pattern.
_PATTERN_OPTIONS = frozenset({"-e", "-f"})
#: Options whose value is a revision (``git restore -s REV``).
_REVISION_OPTIONS = frozenset({"-s", "--source"})
for _cmd in ("whatchanged", "show", "format-patch"):
    _VALUE_OPTIONS[_cmd] = _VALUE_OPTIONS["log"]


# =========================================================================================
# The history index.


def _tokens(stream: IO[bytes], chunk: int = 1 << 16) -> Iterator[bytes]:
    """The NUL-separated fields of git's ``-z`` output, read a chunk at a time."""
    rest = b""
    while data := stream.read(chunk):
        parts = (rest + data).split(b"\0")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


#: One file change of a commit: path id, old blob, new blob (``_NULL`` for none).
_CHANGE = struct.Struct(">I20s20s")
#: One place a blob appears: commit, path id.
_SITE = struct.Struct(">II")
#: One version of a path: commit, blob.
_VERSION = struct.Struct(">I20s")
_NULL = bytes(20)  # no object has this name


class HistoryIndex:
    """Blob -> (commit, path), path -> versions, commit -> changes, from local history.

    The per-blob, per-path and per-commit lists are kept packed (one bytes object each,
    decoded when asked): a cold daemon loads the index on the path of the command that
    started it, and ~10^5 small tuples took 42-62 ms to unmarshal where ~3*10^4 bytes
    objects take a few.
    """

    def __init__(self) -> None:
        self.commits: list[str] = []  # hex, in `git log --all` order (newest first)
        self.pos: dict[str, int] = {}
        self.dates: list[int] = []
        self.parents: list[list[int]] = []
        self.merge: list[bool] = []
        self.paths: list[str] = []
        self.path_id: dict[str, int] = {}
        self._changes: list[bytes] = []  # commit -> _CHANGE records
        self._sites: dict[bytes, bytes] = {}  # oid -> _SITE records
        self._versions: dict[int, bytes] = {}  # path id -> _VERSION records, newest first
        self.key = ""
        #: True when ``max_changes`` stopped the build: older history is not in the index.
        self.truncated = False

    # -- building -----------------------------------------------------------------------
    @classmethod
    def build(cls, git_dir: Path, key: str = "", max_changes: int | None = None) -> HistoryIndex:
        """Read the commits' changes (``git log --all --raw -m --root``), newest first, as
        they stream in, up to ``max_changes`` file changes (then git is stopped: a huge
        history would take minutes and gigabytes); never fetches."""
        index = cls()
        index.key = key
        proc = popen_git(
            ["log", "--all", "--raw", "--no-abbrev", "--no-renames", "-m", "--root", "-z",
             "--format=%x01%H %P %ct"],
            env={"GIT_DIR": str(git_dir)},
            stdin=None,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            with _gc_paused():
                index._parse(_tokens(proc.stdout), max_changes)
        finally:
            if index.truncated:
                proc.kill()
            proc.stdout.close()
            proc.wait()
        if proc.returncode != 0 and not index.truncated:
            empty = cls()  # an empty repository: nothing to predict
            empty.key = key
            return empty
        return index

    def _parse(self, tokens: Iterator[bytes], max_changes: int | None = None) -> None:
        parents_hex: list[list[str]] = []
        changes: list[list[bytes]] = []
        sites: dict[bytes, list[tuple[int, int]]] = {}
        versions: dict[int, list[tuple[int, bytes]]] = {}
        cur = -1
        n = 0
        for tok in tokens:
            if tok.startswith(b"\n"):
                tok = tok[1:]
            if not tok:
                continue
            if tok[:1] == b"\x01":
                words = tok[1:].decode().split()
                h = words[0]
                if h in self.pos:
                    cur = self.pos[h]  # -m: the same merge against its next parent
                    continue
                if max_changes is not None and n >= max_changes:
                    self.truncated = True
                    break
                cur = len(self.commits)
                self.pos[h] = cur
                self.commits.append(h)
                self.dates.append(int(words[-1]) if len(words) > 1 else 0)
                parents_hex.append(words[1:-1])
                self.merge.append(len(words) > 3)
                changes.append([])
                continue
            if tok[:1] == b":" and cur >= 0:
                raw_path = next(tokens, None)
                if raw_path is None:
                    break
                meta = tok[1:].split()
                path = raw_path.decode("utf-8", "surrogateescape")
                if len(meta) < 5 or meta[0][:3] == b"160" or meta[1][:3] == b"160":
                    continue  # submodules are commits, not blobs
                if meta[0][:2] == b"04" or meta[1][:2] == b"04":
                    continue
                old = bytes.fromhex(meta[2].decode()) if meta[0] != b"000000" else None
                new = bytes.fromhex(meta[3].decode()) if meta[1] != b"000000" else None
                pid = self.path_id.get(path)
                if pid is None:
                    pid = self.path_id[path] = len(self.paths)
                    self.paths.append(path)
                changes[cur].append(_CHANGE.pack(pid, old or _NULL, new or _NULL))
                for oid in (old, new):
                    if oid is not None:
                        at = sites.setdefault(oid, [])
                        if (cur, pid) not in at[-2:]:
                            at.append((cur, pid))
                if new is not None:
                    vers = versions.setdefault(pid, [])
                    if not vers or vers[-1][1] != new or vers[-1][0] != cur:
                        vers.append((cur, new))
                n += 1
        self.parents = [[self.pos[p] for p in ps if p in self.pos] for ps in parents_hex]
        self._changes = [b"".join(c) for c in changes]
        self._sites = {o: b"".join(_SITE.pack(*s) for s in at) for o, at in sites.items()}
        self._versions = {p: b"".join(_VERSION.pack(*v) for v in vs) for p, vs in versions.items()}

    # -- disk cache ---------------------------------------------------------------------
    def save(self, path: Path) -> None:
        blob = marshal.dumps(
            (INDEX_VERSION, self.key, self.commits, self.dates, self.parents, self.merge,
             self._changes, self.paths, self._sites, self._versions, self.truncated)
        )  # fmt: skip
        tmp = path.with_name(f"{path.name}.{os.getpid()}")
        tmp.write_bytes(blob)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, key: str) -> HistoryIndex | None:
        try:
            with _gc_paused():
                data = marshal.loads(path.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            return None
        if not isinstance(data, tuple) or data[0] != INDEX_VERSION or data[1] != key:
            return None
        index = cls()
        index.key = key
        (_, _, index.commits, index.dates, index.parents, index.merge, index._changes,
         index.paths, index._sites, index._versions, index.truncated) = data  # fmt: skip
        index.pos = {h: i for i, h in enumerate(index.commits)}
        index.path_id = {p: i for i, p in enumerate(index.paths)}
        return index

    # -- queries ------------------------------------------------------------------------
    def changes(self, c: int) -> list[tuple[int, bytes | None, bytes | None]]:
        """Commit ``c``'s file changes: (path id, old blob, new blob), None for no blob."""
        return [
            (pid, None if old == _NULL else old, None if new == _NULL else new)
            for pid, old, new in _CHANGE.iter_unpack(self._changes[c])
        ]

    def change_count(self) -> int:
        return sum(len(c) for c in self._changes) // _CHANGE.size

    def sites(self, oid: bytes) -> list[tuple[int, int]]:
        """Where ``oid`` appears: (commit, path id), newest first."""
        return list(_SITE.iter_unpack(self._sites.get(oid, b"")))

    def versions(self, pid: int) -> list[tuple[int, bytes]]:
        """The versions of path ``pid``: (commit, blob), newest first."""
        return list(_VERSION.iter_unpack(self._versions.get(pid, b"")))

    def version_count(self, pid: int) -> int:
        return len(self._versions.get(pid, b"")) // _VERSION.size

    def paths_of(self, oid: bytes) -> set[str]:
        return {self.paths[pid] for _, pid in self.sites(oid)}

    def changed(self, c: int, paths: Callable[[str], bool] | None = None) -> set[bytes]:
        """Blobs (both sides) a diff of commit ``c`` against its parent reads (limited to
        the paths ``paths`` accepts, as ``git log -p -- PATH`` limits it)."""
        out: set[bytes] = set()
        for pid, old, new in _CHANGE.iter_unpack(self._changes[c]):
            if paths is None or paths(self.paths[pid]):
                out.add(old)
                out.add(new)
        out.discard(_NULL)
        return out

    def commit_of_diff(
        self,
        oids: set[bytes],
        is_local: Callable[[bytes], bool],
        paths: Callable[[str], bool] | None = None,
    ) -> int | None:
        """The non-merge commit whose diff (under ``paths``) reads exactly these (missing)
        blobs, if any."""
        first = next(iter(oids))
        best: int | None = None
        for c, _ in self.sites(first):
            if self.merge[c] or c == best:
                continue
            changed = self.changed(c, paths)
            exact = oids <= changed and all(o in oids or is_local(o) for o in changed)
            if exact and (best is None or c < best):
                best = c
        return best

    def renamed_from(self, c: int, pid: int) -> tuple[int, bytes] | None:
        """If commit ``c`` added path ``pid`` by a rename: the path it came from and the
        blob it had there.  git pairs renames by content: the deleted file with the same
        blob, else the one deleted with the same file name, else the only one deleted, if
        of the same kind (extension): a wrong guess costs the versions of another file."""
        if self.merge[c]:
            return None
        changes = self.changes(c)
        added = next((new for q, old, new in changes if q == pid and old is None), None)
        if added is None:
            return None
        gone = [(q, old) for q, old, new in changes if new is None and old is not None]
        for q, old in gone:
            if old == added:
                return q, old
        name = os.path.basename(self.paths[pid])
        same = [(q, old) for q, old in gone if os.path.basename(self.paths[q]) == name]
        if len(same) == 1:
            return same[0]
        if len(gone) == 1:
            q, _ = gone[0]
            if os.path.splitext(self.paths[q])[1] == os.path.splitext(self.paths[pid])[1]:
                return gone[0]
        return None

    def rename_candidates(self, c: int) -> list[tuple[int, bytes | None, bytes | None]]:
        """The changes of non-merge commit ``c`` whose blobs git's rename detection reads
        (``_rename_reads``)."""
        return [] if self.merge[c] else _rename_reads(self.changes(c))

    def added_in(self, pid: int) -> list[int]:
        """The commits whose diffs (a merge's against any parent) add path ``pid``."""
        commits = {c for c, _ in self.versions(pid)}
        return sorted(
            c for c in commits if any(q == pid and o is None for q, o, _ in self.changes(c))
        )

    def lineage(
        self, pid: int, oid: bytes | None = None, hops: int = 16
    ) -> list[tuple[int, bytes]]:
        """(path id, blob) of the versions of path ``pid`` from ``oid`` (or its newest) back,
        newest first, and on through the paths it was renamed from, as ``git blame``,
        ``git log --follow`` and ``git log -L`` go."""
        out: list[tuple[int, bytes]] = []
        seen: set[int] = set()
        before: int | None = None  # (the commit that renamed the path: older versions only)
        while pid not in seen and len(seen) <= hops:
            seen.add(pid)
            versions = self.versions(pid)
            if before is not None:
                versions = [(c, v) for c, v in versions if c > before]
            elif oid is not None:
                start = next((i for i, (_, v) in enumerate(versions) if v == oid), 0)
                versions = versions[start:]
            if not versions:
                break
            out += [(pid, v) for _, v in versions]
            before = versions[-1][0]
            source = self.renamed_from(before, pid)
            if source is None:
                break
            pid = source[0]
        return out

    def version_path(self, oid: bytes) -> int | None:
        """The path of which ``oid`` is a version (its newest site)."""
        for _c, pid in self.sites(oid):
            if any(v == oid for _, v in self.versions(pid)):
                return pid
        return None


def index_key(git_dir: Path, max_changes: int | None = None) -> str:
    """A digest of every ref, HEAD and the size limit: the index is rebuilt when history
    (or the limit) changes."""
    proc = run_git(
        ["for-each-ref", "--format=%(objectname) %(refname)"],
        env={"GIT_DIR": str(git_dir)},
        check=False,
    )
    head = run_git(
        ["rev-parse", "--verify", "-q", "HEAD"], env={"GIT_DIR": str(git_dir)}, check=False
    )
    return hashlib.sha1(proc.stdout + b"\n" + head.stdout + f"\n{max_changes}".encode()).hexdigest()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cycle collection while the index is made: its ~10^5-10^6 small objects hold no
    cycles, and collecting as they are allocated only walks them again and again (a third of
    the load time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_or_build(
    git_dir: Path,
    cache: Path | None,
    before_build: Callable[[], None] | None = None,
    max_changes: int | None = None,
) -> HistoryIndex:
    """The cached index when the refs (and ``max_changes``) are unchanged, else a fresh one
    (then cached).

    ``before_build`` runs first when the index must be built (the daemon waits there until
    no batch is running: a build competes with it for both cores).
    """
    key = index_key(git_dir, max_changes)
    if cache is not None:
        index = HistoryIndex.load(cache, key)
        if index is not None:
            return index
    if before_build is not None:
        before_build()
    index = HistoryIndex.build(git_dir, key, max_changes)
    if cache is not None:
        with contextlib.suppress(OSError):
            index.save(cache)
    return index


# =========================================================================================
# Who is asking: the git command behind the helper (Linux /proc).


@dataclass
class Intent:
    """The git command that needs the blobs, as far as its command line tells."""

    command: str = ""
    args: list[str] = field(default_factory=list)
    pid: int = 0
    #: The command's directory in its work tree ("src/" in ``cd src; git grep x HEAD``),
    #: to which its paths are relative; "" at the top or when unknown (``GIT_PREFIX``).
    prefix: str = ""

    @property
    def is_blame(self) -> bool:
        """``git blame`` or its other name, ``git annotate``: one version at a time."""
        return self.command in ("blame", "annotate")

    @property
    def is_log(self) -> bool:
        if self.command not in _LOG_COMMANDS:
            return False
        return self.command == "whatchanged" or any(
            a in _DIFF_OPTIONS or a.startswith(("-S", "-G", "--stat=", "-U", "--unified", "-L"))
            for a in self.args
        )

    @property
    def walks(self) -> bool:
        """Shows the diffs of many commits: a log, format-patch, ``show A..B`` or
        ``show -N``, ``diff-tree --stdin``."""
        if self.is_log or self.command == "format-patch":
            return True
        if self.command not in _WALK_COMMANDS:
            return False
        return (
            "--stdin" in self.args
            or (self.max_count() or 0) > 1
            or any(".." in w for w in self.words())
        )

    @property
    def searches_diffs(self) -> bool:
        """``-S``/``-G`` (pickaxe): git reads the diff of every commit it walks, and ``-N``
        counts only the commits that match."""
        return any(a.startswith(("-S", "-G")) for a in self.options())

    def line_log_paths(self) -> list[str]:
        """The files of ``git log -L RANGE:FILE`` (``-L:FUNCNAME:FILE``), each given once."""
        if self.command != "log":
            return []
        args = self.args[: self.args.index("--")] if "--" in self.args else self.args
        out: list[str] = []
        for i, a in enumerate(args):
            value = args[i + 1] if a == "-L" and i + 1 < len(args) else a[2:]
            if not a.startswith("-L") or not value:
                continue
            parts = value.split(":", 2) if value.startswith(":") else ["", *value.split(":", 1)]
            if len(parts) == 3 and parts[2] and parts[2] not in out:
                out.append(parts[2])
        return out

    def max_count(self) -> int | None:
        """``-N``, ``-n N``, ``--max-count=N`` of a log command."""
        args = self.args
        for i, a in enumerate(args):
            if a == "--":
                break
            if a.startswith("--max-count="):
                return _int(a[12:])
            if a in ("-n", "--max-count") and i + 1 < len(args):
                return _int(args[i + 1])
            if a.startswith("-n") and a[2:].isdigit():
                return _int(a[2:])
            if a[:1] == "-" and a[1:].isdigit():
                return _int(a[1:])
        return None

    def options(self) -> list[str]:
        """Arguments before ``--`` that start with ``-``."""
        args = self.args[: self.args.index("--")] if "--" in self.args else self.args
        return [a for a in args if a.startswith("-")]

    def repo_path(self, path: str) -> str:
        """A path the command was given, from the top of the work tree."""
        return os.path.normpath(self.prefix + path)

    def matcher(self, specs: Sequence[str]) -> Callable[[str], bool] | None:
        """:func:`pathspec_matcher` of the command's pathspecs, taken from its directory."""
        if self.prefix:
            specs = [s if s.startswith(":") else self.repo_path(s) for s in specs]
        return pathspec_matcher(specs)

    def pathspec(self) -> list[str]:
        """Arguments after ``--`` (the unambiguous pathspec), if any."""
        if "--" in self.args:
            return [a for a in self.args[self.args.index("--") + 1 :] if a]
        return []

    def words(self) -> list[str]:
        """Revisions and paths before ``--``: not options, nor their values, nor grep's pattern.

        Options that take a separate value (``-e PATTERN``, ``-C 3``, ``-b NAME``) would
        otherwise pass for revisions or paths, and a path that matches nothing turns the
        prefetch of a whole tree into one lazy fetch per file.
        """
        takes_value = _VALUE_OPTIONS.get(self.command, frozenset())
        args = self.args
        out: list[str] = []
        pattern_given = False
        i = 0
        while i < len(args):
            a = args[i]
            i += 1
            if a == "--":
                break
            if a.startswith("--"):
                name, eq, value = a.partition("=")
                if name in takes_value and not eq:
                    value = args[i] if i < len(args) else ""
                    i += 1
            elif a.startswith("-") and len(a) > 1:
                name = value = ""
                for j in range(1, len(a)):  # a cluster of short options: -ie PATTERN
                    if "-" + a[j] in takes_value:
                        name, value = "-" + a[j], a[j + 1 :]
                        if not value:
                            value = args[i] if i < len(args) else ""
                            i += 1
                        break
            else:
                if not (self.command == "grep" and a in ("(", ")")):
                    out.append(a)
                continue
            if name in _PATTERN_OPTIONS and self.command == "grep":
                pattern_given = True
            elif name in _REVISION_OPTIONS and value:
                out.append(value)
        if self.command == "grep" and not pattern_given:
            out = out[1:]
        return out


def _merge_diffs(command: str, options: Sequence[str]) -> str:
    """Which diffs of merges a walk shows (git 2.39): "first" (against the first parent:
    ``--first-parent``), "each" (against each parent: ``-m``), "combined" (``-c``, ``--cc``,
    and ``show``'s default; "combined+first" with a diffstat too, which is against the
    first parent; "combined-stat" for a diffstat alone: git still works out the combined
    diff's paths, and reads what its rename detection compares), or "" (log's default)."""
    mode = "combined" if command == "show" else ""
    for a in options:
        value = a[14:] if a.startswith("--diff-merges=") else None
        if a == "--no-diff-merges" or value in ("off", "none"):
            return ""
        if a == "--first-parent" or value in ("first-parent", "1"):
            mode = "first"
        elif a == "-m" or value in ("on", "m", "separate"):
            mode = "each"
        elif a in ("-c", "--cc", "--combined-all-paths") or value in (
            "c", "combined", "cc", "dense-combined"
        ):  # fmt: skip
            mode = "combined"
    if mode == "combined" and any(a.startswith(_STAT_OPTIONS) for a in options):
        # A merge's diffstat is against its first parent; the patch, if any, is combined.
        patch = any(a in ("-p", "-u", "--patch", "-c", "--cc") for a in options)
        mode = "combined+first" if patch else "combined-stat"
    return mode


#: Diff options that print a diffstat.
_STAT_OPTIONS = ("--stat", "--numstat", "--shortstat", "--dirstat", "--patch-with-stat")


def _finds_renames(options: Sequence[str], default: bool = True) -> bool:
    """Whether a log's diffs look for renames: ``default`` (diff.renames, true unless set
    false), unless ``--no-renames`` or ``-M`` (the last one) says otherwise."""
    found = default
    for o in options:
        if o == "--no-renames":
            found = False
        elif o.startswith(("-M", "--find-renames", "-C", "--find-copies")):
            found = True
    return found


def _topo_order(options: Sequence[str]) -> bool:
    """Whether a log shows its commits in ``--topo-order`` (``--graph`` implies it, unless
    a date order is given too; the last order option wins)."""
    order = ""
    for o in options:
        if o in ("--topo-order", "--date-order", "--author-date-order"):
            order = o
        elif o == "--graph" and not order:
            order = "--topo-order"
    return order == "--topo-order"


def _rename_reads(
    changes: Iterable[tuple[int, bytes | None, bytes | None]],
) -> list[tuple[int, bytes | None, bytes | None]]:
    """The changes of one diff whose blobs git's rename detection reads: the files added and
    deleted that no exact rename (the same blob) pairs, when there are both."""
    changes = list(changes)
    added = {new for _, old, new in changes if old is None and new is not None}
    deleted = {old for _, old, new in changes if new is None and old is not None}
    exact = added & deleted
    if not (added - exact and deleted - exact):
        return []
    return [
        (q, old, new)
        for q, old, new in changes
        if (old is None) != (new is None) and (old or new) not in exact
    ]


def _split_diffs(
    out: bytes, path_id: dict[str, int]
) -> list[dict[int, tuple[bytes | None, bytes | None]]]:
    """``git diff-tree --stdin --always -r -z`` output -> one {path id: (old, new blob)} per
    input line (each diff starts with its commit's id; paths unknown to the index and
    submodules are left out)."""
    diffs: list[dict[int, tuple[bytes | None, bytes | None]]] = []
    fields = iter(out.split(b"\0"))
    for meta in fields:
        if not meta.startswith(b":"):
            if meta:
                diffs.append({})  # the next diff's header: its commit id
            continue
        path = next(fields, b"")
        parts = meta.split()
        pid = path_id.get(path.decode("utf-8", "surrogateescape"))
        if not diffs or len(parts) < 5 or pid is None:
            continue
        if any(m.endswith(b"160000") for m in parts[:2]):
            continue
        old, new = (None if set(h) == {48} else bytes.fromhex(h.decode()) for h in parts[2:4])
        diffs[-1][pid] = (old, new)
    return diffs


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _proc_argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0") if a]


def _proc_parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    try:
        return int(stat[stat.rindex(b")") + 2 :].split()[1])
    except (ValueError, IndexError):
        return 0


def git_subcommand(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """(subcommand, its arguments) of a git command line, or None if not git."""
    if not argv:
        return None
    prog = os.path.basename(argv[0])
    if prog.startswith("git-"):
        return prog[4:], list(argv[1:])
    if prog != "git":
        return None
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in _GIT_VALUE_OPTIONS:
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        return a, list(argv[i + 1 :])
    return None


def requester_intent(pid: int | None, depth: int = 6) -> Intent:
    """The first git command above ``pid`` that is not the lazy fetch machinery itself."""
    if not pid:
        return Intent()
    p = child = pid
    for _ in range(depth):
        if p <= 1:
            break
        sub = git_subcommand(_proc_argv(p))
        if sub is not None and sub[0] not in _FETCHING_COMMANDS:
            return Intent(sub[0], sub[1], p, _git_prefix(child) if child != p else "")
        p, child = _proc_parent(p), p
    return Intent()


def _git_prefix(pid: int) -> str:
    """``GIT_PREFIX`` as process ``pid`` started with.

    git moves to the top of the work tree as it starts and sets ``GIT_PREFIX`` to the
    directory it was started in ("src/" in ``cd src; git grep x HEAD``), which its paths
    are relative to.  Its own /proc environ predates that; its child's (the lazy ``git
    fetch``) holds it."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return ""
    for var in env.split(b"\0"):
        if var.startswith(b"GIT_PREFIX="):
            return var[11:].decode("utf-8", "surrogateescape")
    return ""


# =========================================================================================
# Pathspecs.


def pathspec_matcher(specs: Sequence[str]) -> Callable[[str], bool] | None:
    """A matcher for git pathspecs (plain prefixes and globs; magic is ignored)."""
    pats = [s for s in specs if s and not s.startswith(":")]
    if not pats or any(p in (".", "./", "*") for p in pats):
        return None
    pats = [p[2:] if p.startswith("./") else p for p in pats]

    def match(path: str) -> bool:
        for p in pats:
            if any(ch in p for ch in "*?["):
                if fnmatch.fnmatchcase(path, p):
                    return True
            elif path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/"):
                return True
        return False

    return match


# =========================================================================================
# Trees.


@dataclass
class TreeListing:
    """A tree's blobs in git's recursive order."""

    paths: list[str]
    oids: list[bytes]
    by_path: dict[str, bytes]
    members: set[bytes]
    position: dict[str, int]  # path -> its index in ``paths``


def ls_tree(git_dir: Path, treeish: str) -> TreeListing | None:
    proc = run_git(
        ["ls-tree", "-r", "-z", "--full-tree", treeish], env={"GIT_DIR": str(git_dir)}, check=False
    )
    if proc.returncode != 0:
        return None
    paths: list[str] = []
    oids: list[bytes] = []
    for item in proc.stdout.split(b"\0"):
        if not item:
            continue
        meta, _, path = item.partition(b"\t")
        _mode, typ, hexid = meta.split()
        if typ != b"blob":
            continue
        paths.append(path.decode("utf-8", "surrogateescape"))
        oids.append(bytes.fromhex(hexid.decode()))
    by_path = dict(zip(paths, oids, strict=True))
    return TreeListing(paths, oids, by_path, set(oids), {p: i for i, p in enumerate(paths)})


# =========================================================================================
# The predictor.


@dataclass
class _LogSession:
    seen: set[int] = field(default_factory=set)
    heap: list[tuple[int, int]] = field(default_factory=list)
    window: int = 0
    last: float = 0.0
    intent_pid: int = 0
    #: Commits whose diffs git asked for.
    requested: set[int] = field(default_factory=set)
    #: git walks toward newer commits (``--reverse``, format-patch).
    reverse: bool = False
    #: Then the newest commit taken so far (git walks toward position 0).
    newest: int = -1
    #: The last byte window of a log limited to paths (LOG_PATH_FIRST_BYTES).
    byte_window: int = 0
    #: ``--first-parent``: git walks first parents only.
    first_parent: bool = False
    #: Which diffs of merges git shows (``_merge_diffs``); "" for none.
    merge_diffs: str = ""
    #: Whether git finds renames in the diffs it shows (diff.renames, ``--no-renames``).
    renames: bool = True
    #: ``--topo-order`` (``--graph``): git's whole order, worked out at the first window,
    #: and the position in it of the next commit a window takes.
    topo: bool = False
    topo_order: list[int] | None = None
    topo_next: int = 0


@dataclass
class _TreeRun:
    requests: list[tuple[bytes, str]] = field(default_factory=list)
    last: float = 0.0
    pid: int = 0  # the git command of its latest request (0: unknown)
    window: int = 0
    candidates: list[str] | None = None  # tree oids


@dataclass
class Plan:
    """What one request adds, and why (for the log)."""

    oids: list[bytes] = field(default_factory=list)
    reason: str = ""
    bytes: int = 0


class Predictor:
    """Recognises blame / log / tree request patterns and names the blobs to add."""

    def __init__(
        self,
        git_dir: Path,
        index: HistoryIndex,
        *,
        is_local: Callable[[bytes], bool],
        size_of: Callable[[bytes], int | None],
    ) -> None:
        self.git_dir = git_dir
        self.index = index
        self.is_local = is_local
        self.size_of = size_of
        self.lock = threading.Lock()
        self.log = _LogSession()
        self.tree_run = _TreeRun()
        self.last_single: tuple[float, int | None, bytes] | None = None
        self.trees: dict[str, TreeListing | None] = {}
        self.differ: dict[tuple[str, str], frozenset[str]] = {}  # see _compare
        self._diff_renames: bool | None = None  # (read once: see _renames_by_default)
        self.rev_trees: dict[str, str | None] = {}
        self._ref_trees: list[str] | None = None
        self._exclude: set[bytes] = set()

    # -- entry point ----------------------------------------------------------------------
    def plan(
        self,
        oids: Sequence[bytes],
        intent: Intent,
        budget: int,
        *,
        allowed_tree: Callable[[str], bool] | None = None,
        allowed_history: Callable[[str], bool] | None = None,
    ) -> Plan:
        """Blobs to fetch along with ``oids`` (the request's missing blobs).

        ``allowed_tree`` limits tree prefetch (the sparse cone), ``allowed_history`` the
        blame and log prefetch (the cone when out-of-cone fetches are denied anyway).
        """
        if not oids or budget <= 0:
            return Plan()
        with self.lock:
            now = time.monotonic()
            want = set(oids)
            self._exclude = want
            plan = self._plan(want, intent, budget, allowed_tree, allowed_history, now)
            if len(want) == 1:
                oid = next(iter(want))
                self.last_single = (now, self.index.version_path(oid), oid)
            else:
                self.last_single = None
            plan.oids = [o for o in dict.fromkeys(plan.oids) if o not in want]
            return plan

    def _plan(
        self,
        want: set[bytes],
        intent: Intent,
        budget: int,
        allowed_tree: Callable[[str], bool] | None,
        allowed: Callable[[str], bool] | None,
        now: float,
    ) -> Plan:
        ix = self.index
        cmd = intent.command
        # log -L: the versions of its files, from the newest, past renames (as blame).
        files = intent.line_log_paths()
        if files:
            cands = []
            for path in files:
                pid = ix.path_id.get(intent.repo_path(path))
                if pid is not None:
                    cands += self._lineage(pid, None, allowed)
            return self._take(cands, budget, f"log -L {' '.join(files)}")
        # blame: one version of a path at a time.
        if len(want) == 1 and cmd not in TREE_COMMANDS and not intent.is_log:
            oid = next(iter(want))
            pid = ix.version_path(oid)
            if pid is not None and ix.version_count(pid) > 1:
                prev = self.last_single
                repeat = (
                    prev is not None
                    and now - prev[0] < PATTERN_SECONDS
                    and prev[1] == pid
                    and prev[2] != oid
                )
                if intent.is_blame or (repeat and cmd not in ("cat-file",)):
                    return self._blame(oid, pid, budget, allowed)
        # log -p / --stat: exactly one commit's diff (under the log's paths, if any).
        if not intent.is_blame and cmd not in TREE_COMMANDS:
            spec = self._log_paths(intent)
            c = ix.commit_of_diff(want, self.is_local, spec)
            if c is None and spec is not None:
                spec = None  # (the paths were misread, or git followed a rename)
                c = ix.commit_of_diff(want, self.is_local)
            if c is not None and (cmd == "" or intent.is_log or cmd in _WALK_COMMANDS):
                plan = self._log(c, intent, budget, allowed, now, spec)
                if plan is not None:
                    return plan
        # grep / checkout / cat-file --batch: files of one tree.
        if len(want) <= 4 and not intent.is_blame and not intent.is_log:
            return self._tree(want, intent, budget, allowed_tree, now)
        return Plan()

    # -- blame ----------------------------------------------------------------------------
    def _blame(
        self, oid: bytes, pid: int, budget: int, allowed: Callable[[str], bool] | None
    ) -> Plan:
        ix = self.index
        path = ix.paths[pid]
        if allowed is not None and not allowed(path):
            return Plan()
        # The versions older than the one asked for, newest first, and on past renames:
        # what blame reads next.
        cands = self._lineage(pid, oid, allowed)
        return self._take(cands, budget, f"blame {path}")

    def _lineage(
        self, pid: int, oid: bytes | None, allowed: Callable[[str], bool] | None
    ) -> list[bytes]:
        """A file's versions back past its renames (``HistoryIndex.lineage``), and what git's
        rename detection reads where each of its paths first appears: blame, log --follow and
        log -L look there for the file it came from (in a merge: in its diffs against the
        parents that lack the path)."""
        ix = self.index

        def ok(q: int) -> bool:
            return allowed is None or allowed(ix.paths[q])

        versions = ix.lineage(pid, oid)
        out = [v for q, v in versions if ok(q)]
        merges: set[int] = set()
        changes: list[tuple[int, bytes | None, bytes | None]] = []  # (rename candidates)
        for q in dict.fromkeys(q for q, _ in versions):
            for c in ix.added_in(q):
                if ix.merge[c]:
                    merges.add(c)
                else:
                    changes += ix.rename_candidates(c)
        if merges:
            changes += self._rename_candidates(sorted(merges))
        for r, old, new in changes:
            blob = old or new
            if blob is not None and ok(r):
                out.append(blob)
        return out

    # -- log ------------------------------------------------------------------------------
    def _log(
        self,
        c: int,
        intent: Intent,
        budget: int,
        allowed: Callable[[str], bool] | None,
        now: float,
        spec: Callable[[str], bool] | None,
    ) -> Plan | None:
        ix = self.index
        s = self.log
        fresh = now - s.last > PATTERN_SECONDS or (intent.pid and intent.pid != s.intent_pid)
        if fresh:
            options = intent.options()
            s = self.log = _LogSession(
                intent_pid=intent.pid,
                first_parent="--first-parent" in options,
                merge_diffs=_merge_diffs(intent.command, options),
                renames=_finds_renames(options, self._renames_by_default()),
                topo=_topo_order(options),
            )
        s.last = now
        if not s.reverse and (
            "--reverse" in intent.options()
            or intent.command == "format-patch"  # (it writes the oldest patch first)
            # A child after its parent, before a forward walk is confirmed (once it is,
            # clock skew may show a parent first: that does not turn the walk round).
            or (s.window <= 0 and any(p in s.requested for p in ix.parents[c]))
        ):
            s.reverse = True
        # git walks for log, show -N and format-patch; diff-tree --stdin takes the commits
        # in the order it is given them: a second request along the walk confirms that.
        walks_itself = intent.walks and intent.command != "diff-tree"
        # (The newest commit of all is where a walk from one tip starts: no git run then.)
        if (
            fresh
            and walks_itself
            and not s.reverse
            and not s.topo
            and (c or self._several_tips(intent))
        ):
            self._walk_to(s, self._log_tips(intent, c), c)
        confirmed = walks_itself or s.window > 0 or c in s.seen or s.reverse
        s.requested.add(c)
        if c not in s.seen:
            s.seen.add(c)
            self._push_parents(s, c)
        if not confirmed:
            s.window = -1  # seen one; the next matching request confirms
            return Plan(reason="log (unconfirmed)")
        searching = intent.searches_diffs
        hint = intent.max_count() if intent.walks and not searching else None
        if hint is not None and s.window <= 0:
            window = hint
        elif s.window <= 0:
            window = LOG_FIRST_WINDOW
        else:
            window = min(int(s.window * LOG_GROWTH) + 1, LOG_MAX_WINDOW)
        s.window = window
        byte_window = 0
        if (spec is not None or searching) and hint is None:
            byte_window = s.byte_window = min(
                2 * s.byte_window or LOG_PATH_FIRST_BYTES, max(budget, 1)
            )
            window = LOG_MAX_WINDOW
        cands: list[bytes] = []
        taken = 0
        wanted = 0  # bytes of the candidates not local yet
        counted: set[bytes] = set(self._exclude)  # (what git asked for is coming)
        merges: list[int] = []  # shown with diffs: worked out at the end, in one git run

        def add(changes: Iterable[tuple[int, bytes | None, bytes | None]]) -> None:
            nonlocal wanted
            for pid, old, new in changes:
                if allowed is not None and not allowed(ix.paths[pid]):
                    continue
                for oid in (old, new):
                    if oid is None:
                        continue
                    cands.append(oid)
                    if oid not in counted and not self.is_local(oid):
                        counted.add(oid)  # (a version is the new side, then the old)
                        wanted += self.size_of(oid) or LOOSE_GUESS

        def add_merges() -> None:
            changes = self._merge_changes(merges, s.merge_diffs, s.renames)
            add(ch for ch in changes if spec is None or spec(ix.paths[ch[0]]))
            merges.clear()

        # The budget bounds the candidates too: a merge's diff against a far parent may
        # name most of the tree.
        enough = min(byte_window or budget, budget)
        if s.topo and not s.reverse and s.topo_order is None:
            tips = self._log_tips(intent, c)
            # (several tips: git's topological order among them is not worked out here)
            s.topo_order = self._topo_walk(tips if len(tips) == 1 else [c], s.first_parent)
        for nxt in self._log_order(s, c, s.reverse):
            if taken >= window or wanted >= enough:
                break
            if ix.merge[nxt]:
                if s.merge_diffs:
                    merges.append(nxt)
                    taken += 1
                    if len(merges) >= MERGES_AT_ONCE:
                        add_merges()
                continue
            changes = ix.changes(nxt)
            if spec is not None:
                changes = [ch for ch in changes if spec(ix.paths[ch[0]])]
                if not changes:
                    continue  # `git log -- PATH` skips this commit
            taken += 1
            add(changes)
        if merges:
            add_merges()
        return self._take(cands, budget, f"log {taken} commits after {ix.commits[c][:12]}")

    def _log_order(self, s: _LogSession, c: int, reverse: bool) -> Iterator[int]:
        """The commits a log shows after ``c``: older ones by date along parents, or with
        ``--reverse`` the newer ones (history index order, newest first, approximates it);
        with ``--topo-order``, the rest of git's order (``_topo_walk``)."""
        if s.topo_order is not None and not reverse:
            order, at = s.topo_order, s.topo_next
            with contextlib.suppress(ValueError):
                at = order.index(c, at) + 1  # git is there: the window starts after it
            while at < len(order):
                s.topo_next = at  # (the commit a full window stops at comes next time)
                yield order[at]
                at += 1
            s.topo_next = at
            return
        if not reverse:
            while s.heap:
                _, nxt = heapq.heappop(s.heap)
                self._push_parents(s, nxt)
                yield nxt
            return
        if s.newest < 0:
            s.newest = c
        while s.newest > 0:
            s.newest -= 1
            yield s.newest

    def _walk_to(self, s: _LogSession, tips: list[int], c: int) -> None:
        """Start the date-order walk where git's is: from the log's tips, past the commits
        it showed before ``c`` (their diffs needed nothing, or none: merges).

        Seeded from ``c`` alone, the walk followed ``c``'s ancestry only.  Under a merge at
        the tip (git.git's usual shape) the first diff git asks for is on the merged side
        branch, so the main line's commits of the same dates were left out, and took a
        batch of their own that then overshot: on a 596-commit history of that shape,
        `git log -p -100` read 540 blobs in two batches (0.16 s); now 241 in one (0.11 s)."""
        if tips == [c]:
            return
        ix = self.index
        for t in tips:
            if t not in s.seen:
                s.seen.add(t)
                heapq.heappush(s.heap, (-ix.dates[t], t))
        for _ in range(LOG_SEED_COMMITS):
            if not s.heap:
                break
            _, nxt = heapq.heappop(s.heap)
            self._push_parents(s, nxt)
            if nxt == c:
                return
        # ``c`` is not on the tips' walk (or too far down it): from ``c`` alone, as before.
        s.seen.clear()
        s.heap.clear()

    def _renames_by_default(self) -> bool:
        """git config diff.renames: true (its default since git 2.9) unless set false; its
        last value wins, and "copies" finds renames too."""
        if self._diff_renames is None:
            from lazygit.config import config_items, parse_bool

            proc = run_git(
                ["config", "--null", "--get-regexp", r"^diff\.renames$"],
                env={"GIT_DIR": str(self.git_dir)},
                check=False,
            )
            found = True
            for _key, value in config_items(proc.stdout):
                try:
                    found = value is None or parse_bool(value)  # (None: no "=", true)
                except ValueError:
                    found = True  # "copies"
            self._diff_renames = found
        return self._diff_renames

    def _log_tips(self, intent: Intent, c: int) -> list[int]:
        """The commits a log starts from: its revisions (HEAD when it names none, the refs'
        for ``--all``, ``--branches``...), or ``[c]`` (where git is) for a range, or when
        the index lacks one of them."""
        if any(".." in w or w.startswith("^") for w in intent.words()):
            return [c]
        # rev-list --no-walk: the commits they name, annotated tags peeled, refs expanded.
        proc = run_git(
            ["rev-list", "--no-walk=unsorted", *(self._tip_names(intent) or ["HEAD"]), "--"],
            env={"GIT_DIR": str(self.git_dir)},
            check=False,
        )
        tips = [self.index.pos.get(h) for h in proc.stdout.decode().split()]
        if proc.returncode != 0 or not tips or None in tips:
            return [c]
        return list(dict.fromkeys(t for t in tips if t is not None))

    def _several_tips(self, intent: Intent) -> bool:
        """Whether a log may start from several commits (revisions, or a ref option)."""
        names = self._tip_names(intent)
        return len(names) > 1 or any(n.startswith("--") for n in names)

    def _tip_names(self, intent: Intent) -> list[str]:
        """The revisions a log names and its ref options (``--all``, ``--branches=X``...)."""
        words = [w for w in intent.words() if self._rev_tree(w) is not None]
        return words + [
            o
            for o in intent.options()
            if o in ("--all", "--branches", "--tags", "--remotes")
            or o.startswith(("--branches=", "--tags=", "--remotes=", "--glob="))
        ]

    def _topo_walk(self, tips: list[int], first_parent: bool) -> list[int]:
        """git's ``--topo-order`` from ``tips``: no parent before all its children, one line
        of history at a time (a LIFO of the commits whose children are all out, as git's
        sort_in_topological_order; the same order as ``git rev-list --topo-order`` on
        bench.git, 13 merges in 6,500 commits)."""
        parents = self.index.parents

        def up(c: int) -> list[int]:
            return parents[c][:1] if first_parent else parents[c]

        children: Counter[int] = Counter()
        seen, stack = set(tips), list(tips)
        while stack:
            for p in up(stack.pop()):
                children[p] += 1
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        order: list[int] = []
        stack = [t for t in reversed(tips) if not children[t]]
        while stack:
            c = stack.pop()
            order.append(c)
            for p in up(c):
                children[p] -= 1
                if not children[p]:
                    stack.append(p)
        return order

    def _log_paths(self, intent: Intent) -> Callable[[str], bool] | None:
        """The paths a log command limits its diffs to: after ``--``, or else its words
        that are not revisions (``git log -p src``)."""
        if not intent.walks:
            return None
        if "--" in intent.args:
            paths = intent.pathspec()
        else:
            paths = [
                w
                for w in intent.words()
                if ".." not in w and not w.startswith("^") and self._rev_tree(w) is None
            ]
        if "--follow" in intent.options() and len(paths) == 1:
            # One file, followed past its renames: the paths it had before.
            path = intent.repo_path(paths[0])
            pid = self.index.path_id.get(path)
            if pid is not None:
                names = {self.index.paths[q] for q, _ in self.index.lineage(pid)}
                return names.__contains__
        return intent.matcher(paths)

    def _push_parents(self, s: _LogSession, c: int) -> None:
        ix = self.index
        stack = [c]
        while stack:
            parents = ix.parents[stack.pop()]
            for p in parents[:1] if s.first_parent else parents:
                if p not in s.seen:
                    s.seen.add(p)
                    heapq.heappush(s.heap, (-ix.dates[p], p))
                    if ix.merge[p] and not s.merge_diffs:
                        stack.append(p)  # a merge shows no diff: its parents come next

    def _merge_changes(
        self, merges: list[int], mode: str, renames: bool = True
    ) -> list[tuple[int, bytes | None, bytes | None]]:
        """The changes the diffs of ``merges`` read (``_merge_diffs``).

        The index holds each merge's diffs against every parent (``git log -m``), though not
        which parent each is against: ``-m`` shows them all, and a combined diff the paths
        that differ from every parent, which those diffs list once per parent.  A diff
        against the first parent comes from the local trees (`_first_parent_changes`), and
        so do the files a combined diff's rename detection reads (``_rename_candidates``)."""
        ix = self.index
        out: list[tuple[int, bytes | None, bytes | None]] = []
        if mode in ("each", "combined", "combined+first"):
            for m in merges:
                changes = ix.changes(m)
                if mode != "each":
                    listed = Counter(pid for pid, _, _ in changes)
                    changes = [ch for ch in changes if listed[ch[0]] == len(ix.parents[m])]
                out += changes
        if mode.startswith("combined") and renames:
            out += self._rename_candidates(merges)
        if mode in ("first", "combined+first", "combined-stat"):
            out += self._first_parent_changes(merges)
        return out

    def _diffs(
        self, pairs: list[tuple[int, int]], *options: str
    ) -> list[dict[int, tuple[bytes | None, bytes | None]]] | None:
        """The diffs of (commit, parent) pairs, by one ``git diff-tree --stdin`` (None when a
        tree is not local: git then fetches what it shows)."""
        ix = self.index
        lines = "".join(f"{ix.commits[m]} {ix.commits[p]}\n" for m, p in pairs)
        proc = run_git(
            ["diff-tree", "--stdin", "--always", "-r", "-z", "--no-renames", *options],
            input=lines.encode(),
            env={"GIT_DIR": str(self.git_dir)},
            check=False,
        )
        diffs = _split_diffs(proc.stdout if proc.returncode == 0 else b"", ix.path_id)
        return diffs if len(diffs) == len(pairs) else None

    def _first_parent_changes(
        self, merges: list[int]
    ) -> list[tuple[int, bytes | None, bytes | None]]:
        """The merges' diffs against their first parents (the index cannot tell which of a
        merge's diffs that is: git leaves out an empty one)."""
        ix = self.index
        diffs = self._diffs([(m, ix.parents[m][0]) for m in merges if ix.parents[m]])
        return [(pid, old, new) for d in diffs or () for pid, (old, new) in d.items()]

    def _rename_candidates(self, merges: list[int]) -> list[tuple[int, bytes | None, bytes | None]]:
        """The files a combined diff's rename detection reads: git diffs a merge against
        each parent with renames found (diff.renames), and compares the files added with the
        files deleted that no added one has the same blob as.  It showed them in a batch of
        its own (`git show -30` over bench.git's merges: 2 batches)."""
        ix = self.index
        pairs = [(m, p) for m in merges for p in ix.parents[m]]
        out: list[tuple[int, bytes | None, bytes | None]] = []
        for d in self._diffs(pairs, "--diff-filter=AD") or ():
            out += _rename_reads((pid, old, new) for pid, (old, new) in d.items())
        return out

    # -- trees ----------------------------------------------------------------------------
    def _tree(
        self,
        want: set[bytes],
        intent: Intent,
        budget: int,
        allowed: Callable[[str], bool] | None,
        now: float,
    ) -> Plan:
        if intent.command in TREE_COMMANDS:
            plan = self._tree_from_intent(want, intent, budget, allowed)
            if plan is not None:
                return plan
        if len(want) > 1:
            # git asked for several blobs at once (`diff A B`, a merge): it knows what it
            # needs and is not walking a tree.  Taken as a run, this cost a `git diff` 0.25 s
            # of tree listings and brought 35 blobs it did not read.
            return Plan()
        run = self.tree_run
        gap = now - run.last
        another = bool(intent.pid and run.pid and intent.pid != run.pid)
        if gap > PATTERN_SECONDS or (another and gap > TOOL_GAP_SECONDS):
            run = self.tree_run = _TreeRun()
        run.last, run.pid = now, intent.pid
        ix = self.index
        for oid in want:
            paths = sorted(ix.paths_of(oid))
            run.requests.append((oid, paths[0] if paths else ""))
        if len(run.requests) < 2:
            return Plan(reason="tree (unconfirmed)")
        cands = self._candidate_trees(run)
        if cands:
            listing = self.trees[cands[0]]
            assert listing is not None
            # Paths where another candidate holds something else: git has not said which.
            differ: set[str] = set().union(*(self.differ[(cands[0], t)] for t in cands[1:]))
        else:
            guess = self._commit_tree(run)
            if guess is None:
                return Plan()
            listing, differ = guess, set()
        # Where git is in the tree, and the directory the run stays in.
        positions = [listing.position[p] for _, p in run.requests if p in listing.by_path]
        if not positions:
            return Plan()
        prefix = os.path.commonpath([p for _, p in run.requests if p in listing.by_path])
        req_paths = {p for _, p in run.requests}
        if prefix in req_paths:
            prefix = os.path.dirname(prefix)
        if all(a < b for a, b in itertools.pairwise(positions)):
            window = len(listing.paths)  # a walk in tree order: the rest of the directory
        else:
            window = TREE_FIRST_WINDOW if run.window <= 0 else int(run.window * TREE_GROWTH)
            run.window = window
        out: list[bytes] = []
        for i in range(max(positions) + 1, len(listing.paths)):
            if len(out) >= window:
                break
            path = listing.paths[i]
            if prefix and not path.startswith(prefix + "/"):
                continue
            oid = listing.oids[i]
            if path in differ:
                continue  # the candidate trees disagree: wait for git to say which
            if allowed is not None and not allowed(path):
                continue
            if not self.is_local(oid):
                out.append(oid)
        return self._take(out, budget, f"tree run under {prefix or '/'}")

    def _tree_from_intent(
        self,
        want: set[bytes],
        intent: Intent,
        budget: int,
        allowed: Callable[[str], bool] | None,
    ) -> Plan | None:
        """grep REV / checkout REV -- PATH: the rest of REV's tree under the pathspec (and,
        for ``grep PAT REV1 REV2``, the trees git greps next)."""
        words = intent.words()
        listing: TreeListing | None = None
        others: list[TreeListing] = []
        for word in words[:8]:
            tree = self._rev_tree(word)
            cand = self._listing(tree) if tree is not None else None
            if cand is None:
                continue
            if listing is None and want & cand.members:
                listing = cand
            elif intent.command == "grep" and cand is not listing:
                others.append(cand)
        if listing is None:
            return None
        specs = intent.pathspec() or [w for w in words if self._rev_tree(w) is None]
        if not specs and intent.command == "grep":
            specs = ["."]  # grep searches the directory it runs in
        # Words that are not revisions are paths (`git checkout REV PATH`).
        spec = intent.matcher(specs)
        out = []
        for each in (listing, *others):
            for path, oid in zip(each.paths, each.oids, strict=True):
                if spec is not None and not spec(path):
                    continue
                if allowed is not None and not allowed(path):
                    continue
                out.append(oid)
        if want.isdisjoint(out):
            # The command line was read wrongly (an option unknown here took a value):
            # the requests themselves will show the tree.
            return None
        return self._take(out, budget, f"{intent.command} tree")  # (it skips local blobs)

    def _rev_tree(self, rev: str) -> str | None:
        if rev not in self.rev_trees:
            proc = run_git(
                ["rev-parse", "--verify", "-q", f"{rev}^{{tree}}"],
                env={"GIT_DIR": str(self.git_dir)},
                check=False,
            )
            self.rev_trees[rev] = proc.stdout.decode().strip() if proc.returncode == 0 else None
        return self.rev_trees[rev]

    def _listing(self, tree: str) -> TreeListing | None:
        if tree not in self.trees:
            self.trees[tree] = ls_tree(self.git_dir, tree)
        return self.trees[tree]

    def _commit_tree(self, run: _TreeRun) -> TreeListing | None:
        """For a run no ref tree fits (``cat-file --batch`` of an old commit's tree): the
        tree of the newest commit that gave one of its paths the blob asked for, if it holds
        every (blob, path) of the run.  The commit git walks is that one or a later one: its
        blobs may differ where later commits changed them, and git's requests for those
        show the way to a later commit."""
        ix = self.index
        sites = set()
        for oid, path in run.requests[-16:]:  # (the latest tell the most)
            pid = ix.path_id.get(path)
            for c, q in ix.sites(oid):
                if q == pid and any(o != oid and n == oid for r, o, n in ix.changes(c) if r == pid):
                    sites.add(c)
        for c in sorted(sites)[:4]:  # newest first
            listing = self._listing(ix.commits[c])
            if listing is not None and all(
                not p or listing.by_path.get(p) == oid for oid, p in run.requests
            ):
                return listing
        return None

    def _candidate_trees(self, run: _TreeRun) -> list[str]:
        """Ref trees holding every (blob, path) of the run, newest first.

        The first is listed whole; the others are compared with it, all in one
        ``git diff-tree --stdin`` (listing each of 31 ref trees took 0.5 s; so did one
        diff-tree process per tree)."""
        if run.candidates is None:
            run.candidates = self.ref_trees()
        asked = [(oid, p) for oid, p in run.requests if p]
        cands = run.candidates
        while cands:
            listing = self._listing(cands[0])
            if listing is not None and all(listing.by_path.get(p) == oid for oid, p in asked):
                break
            cands = cands[1:]
        else:
            run.candidates = []
            return []
        base = cands[0]
        self._compare(base, cands[1:])
        keep = [base]
        for tree in cands[1:]:
            differ = self.differ.get((base, tree))
            if differ is not None and not any(p in differ for _, p in asked):
                keep.append(tree)
        run.candidates = keep
        return keep

    def _compare(self, base: str, trees: Sequence[str]) -> None:
        """Fill ``self.differ`` for (base, tree) of each tree: the paths of the blobs that
        differ between them (absent: unreadable)."""
        todo = [t for t in trees if (base, t) not in self.differ]
        if not todo:
            return
        proc = run_git(
            ["diff-tree", "-r", "-z", "--no-renames", "--name-only", "--stdin"],
            env={"GIT_DIR": str(self.git_dir)},
            input="".join(f"{base} {t}\n" for t in todo).encode(),
            check=False,
        )
        if proc.returncode != 0:
            return
        # Each pair that differs: a line "BASE TREE\n", then its paths, each ending in NUL.
        found: dict[str, set[str]] = {t: set() for t in todo}
        head, current = len(base) * 2 + 2, None
        for item in proc.stdout.decode("utf-8", "surrogateescape").split("\0"):
            pair = item[:head]
            if (
                pair.startswith(base + " ")
                and pair.endswith("\n")
                and pair[len(base) + 1 : -1] in found
            ):
                current, item = found[pair[len(base) + 1 : -1]], item[head:]
            if item and current is not None:
                current.add(item)
        for t, paths in found.items():
            self.differ[(base, t)] = frozenset(paths)

    def ref_trees(self) -> list[str]:
        """The trees of HEAD and every ref tip, newest commit first (at most a few dozen)."""
        if self._ref_trees is None:
            proc = run_git(
                ["log", "--no-walk=sorted", "--format=%T", "HEAD", "--all"],
                env={"GIT_DIR": str(self.git_dir)},
                check=False,
            )
            trees = proc.stdout.decode().split() if proc.returncode == 0 else []
            self._ref_trees = list(dict.fromkeys(trees))[:MAX_CANDIDATE_TREES]
        return self._ref_trees

    # -- family ---------------------------------------------------------------------------
    def family(
        self,
        oid: bytes,
        budget: int,
        allowed: Callable[[str], bool] | None,
        *,
        just_before: Sequence[bytes] = (),
    ) -> Plan:
        """The other versions of the file that ``oid`` is an old version of, nearest first.

        Someone who asked for one old version (``git show OLD:PATH``, a diff tool) often
        asks for its neighbours next, and the versions of a file sit together in the server
        pack (one delta family), so they cost a few coalesced ranges.  A file's current
        version brings none: editors and indexers ask for those, and the file's history
        would be waste to them.  Nor does a request that follows, ``just_before``, lone
        requests for other files: a tool walking files, whose every request would otherwise
        bring a family.
        """
        if budget <= 0:
            return Plan()
        with self.lock:
            ix = self.index
            pid = ix.version_path(oid)
            if pid is None or any(ix.version_path(o) != pid for o in just_before):
                return Plan()
            path = ix.paths[pid]
            if allowed is not None and not allowed(path):
                return Plan()
            versions = [v for _, v in ix.versions(pid)]
            i = versions.index(oid)  # version_path found it there
            if i == 0:
                return Plan()
            order: list[bytes] = []
            for d in range(1, len(versions)):
                if i + d < len(versions):
                    order.append(versions[i + d])  # older first: history is read backwards
                if i - d >= 0:
                    order.append(versions[i - d])
            self._exclude = {oid}
            return self._take(order, budget, f"family of {path}")

    # -- budget ---------------------------------------------------------------------------
    def _take(self, cands: Iterable[bytes], budget: int, reason: str) -> Plan:
        out: list[bytes] = []
        total = 0
        seen: set[bytes] = set(self._exclude)
        for oid in cands:
            if oid in seen or self.is_local(oid):
                continue
            seen.add(oid)
            size = self.size_of(oid)
            if size is None:
                size = LOOSE_GUESS  # loose on the server (a recent push): fetched one by one
            if total + size > budget and out:
                break
            out.append(oid)
            total += size
        return Plan(out, reason, total)
