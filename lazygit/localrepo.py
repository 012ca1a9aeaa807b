"""The local repository: a git directory that stock git treats as a partial clone.

Objects reach it only through ``git index-pack`` (every hash checked); presence is tested by
reading the object store (pack indexes and loose files), never with ``git cat-file -e``, which
could start a lazy fetch.  Standard library only, except :class:`LocalObjects`, which loads
pack indexes with dulwich when first used.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from lazygit.errors import CorruptDataError, DestinationError, GitCommandError, LazyGitError
from lazygit.gitcmd import first_error_line, git_output, popen_git, run_git

if TYPE_CHECKING:
    from lazygit.packmeta import IdxFile

#: What git says when the local disk, not the data, made index-pack fail.
_LOCAL_WRITE_FAILURES = (
    "No space left on device",
    "Disk quota exceeded",
    "Read-only file system",
    "Permission denied",
    "File too large",
)

#: Where lazygit keeps its own state inside the git directory.
STATE_DIR = "lazygit"


class LocalRepo:
    """A local (lazy) clone, addressed by its common git directory."""

    def __init__(self, git_dir: Path, worktree: Path | None) -> None:
        self.git_dir = git_dir
        self.worktree = worktree

    # -- finding and making ------------------------------------------------------------
    @classmethod
    def init(
        cls, dest: Path, *, bare: bool = False, initial_branch: str | None = None
    ) -> LocalRepo:
        """``git init`` a new repository at ``dest``."""
        args = ["init", "-q"]
        if bare:
            args.append("--bare")
        if initial_branch:
            args.append(f"--initial-branch={initial_branch}")
        run_git([*args, str(dest)])
        if bare:
            return cls(dest.resolve(), None)
        return cls((dest / ".git").resolve(), dest.resolve())

    @classmethod
    def find(cls, path: str | Path = ".") -> LocalRepo:
        """The repository that contains ``path`` (its common git dir, shared by worktrees)."""
        proc = run_git(
            ["rev-parse", "--path-format=absolute", "--git-common-dir", "--show-toplevel"],
            cwd=path,
            check=False,
        )
        if proc.returncode != 0:
            # --show-toplevel fails in a bare repository; ask again without it.
            proc = run_git(
                ["rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=path, check=False
            )
            if proc.returncode != 0:
                raise GitCommandError(f"{path} is not inside a git repository")
        lines = proc.stdout.decode().splitlines()
        worktree = Path(lines[1]) if len(lines) > 1 else None
        return cls(Path(lines[0]), worktree)

    def ensure_lazy_clone(self) -> LocalRepo:
        """This repository if lazygit cloned it, else the one-line error every command gives
        (its pack catalog, written by the clone, is what the daemon and the commands need)."""
        if not (self.state_dir / "catalog.json").exists():
            raise LazyGitError(
                f"{self.cwd} is not a lazygit clone", "run it inside a clone made by lazygit clone"
            )
        return self

    @property
    def state_dir(self) -> Path:
        """lazygit's own directory inside the git dir (caches, daemon files)."""
        return self.git_dir / STATE_DIR

    @property
    def objects_dir(self) -> Path:
        return self.git_dir / "objects"

    @property
    def cwd(self) -> Path:
        return self.worktree or self.git_dir

    def git(self, args: list[str], *, input: bytes | None = None, check: bool = True) -> bytes:
        """Run an internal git command in this repository; return stdout (with ``check``
        False, a failure returns what it printed instead of raising)."""
        env = {"GIT_DIR": str(self.git_dir)}
        return run_git(args, cwd=self.cwd, input=input, env=env, check=check).stdout

    # -- configuration and refs ---------------------------------------------------------
    def configure_partial_clone(
        self, url: str, remote: str = "origin", branch: str | None = None
    ) -> None:
        """Write the config that makes stock git treat this as a partial clone of lazy::URL
        (and ``branch`` track the remote's), in one `git config` run and one append: the
        repository was just made by `git init`, so its config has no such sections yet."""
        self.git(["config", "core.repositoryformatversion", "1"])

        def quote(value: str) -> str:
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

        text = (
            f"[extensions]\n\tpartialClone = {quote(remote)}\n"
            f"[remote {quote(remote)}]\n"
            f"\turl = {quote('lazy::' + url)}\n"
            f"\tfetch = {quote(f'+refs/heads/*:refs/remotes/{remote}/*')}\n"
            "\tpromisor = true\n"
            "\tpartialclonefilter = blob:none\n"
        )
        if branch is not None:
            text += (
                f"[branch {quote(branch)}]\n\tremote = {quote(remote)}\n"
                f"\tmerge = {quote('refs/heads/' + branch)}\n"
            )
        with open(self.git_dir / "config", "a", encoding="utf-8") as f:
            f.write(text)

    def abbreviate_as_full_clone(self, objects: int) -> int | None:
        """At the clone: make git abbreviate object names as a full clone of ``objects``
        objects does, unless the user set core.abbrev (in any scope).  Returns the length
        set, or None.

        git sizes its abbreviations by the objects it holds (``core.abbrev`` auto), and a
        lazy clone holds a fraction of them: `git log -p`, `blame` and `diff` printed
        7-digit names where a full clone printed 8 (12,774 objects against 26,014).
        """
        if self.git(["config", "--get", "core.abbrev"], check=False).strip():
            return None
        want = abbrev_length(objects)
        with open(self.git_dir / "config", "a", encoding="utf-8") as f:  # (no git run)
            f.write(f"[core]\n\tabbrev = {want}\n")
        return want

    def follow_full_clone_abbrev(self, objects: int, ours: int | None) -> int | None:
        """After an update: the core.abbrev lazygit set (``ours``), sized again for the
        server's ``objects``; a value the user changed since is theirs (None returned, as
        when lazygit set none)."""
        if ours is None:
            return None
        local = self.git(["config", "--local", "--get", "core.abbrev"], check=False)
        if local.strip() != str(ours).encode():
            return None
        want = abbrev_length(objects)
        if want != ours:
            self.git(["config", "core.abbrev", str(want)])
        return want

    def write_packed_refs(self, refs: Iterable[tuple[str, bytes, bytes | None]]) -> None:
        """Write the refs of a new repository as its packed-refs file, as `git clone` does.

        (name, oid, peeled) triples; one file instead of a loose file per ref, which matters
        with many tags (200,000 refs: seconds instead of most of a minute).
        """
        lines = ["# pack-refs with: peeled fully-peeled sorted \n"]
        for name, oid, peeled in sorted(refs):
            lines.append(f"{oid.hex()} {name}\n")
            if peeled is not None:
                lines.append(f"^{peeled.hex()}\n")
        path = self.git_dir / "packed-refs"
        tmp = path.with_name("packed-refs.lock")
        tmp.write_text("".join(lines), encoding="utf-8")
        os.replace(tmp, path)

    def update_refs(self, updates: Iterable[tuple[str, bytes]]) -> None:
        """Create refs in one transaction (``git update-ref --stdin``)."""
        lines = "".join(f"update {name} {oid.hex()}\n" for name, oid in updates)
        if lines:
            self.git(["update-ref", "--stdin"], input=lines.encode())

    def set_symref(self, name: str, target: str) -> None:
        self.git(["symbolic-ref", name, target])

    # -- objects ------------------------------------------------------------------------
    def index_pack(
        self,
        write: Callable[[IO[bytes]], None],
        *,
        promisor: str,
        fix_thin: bool = True,
        land_if: Callable[[], bool] | None = None,
    ) -> str:
        """Stream a pack into ``git index-pack --stdin --promisor``; return its name.

        ``write`` gets index-pack's stdin.  index-pack checks every object's hash and writes
        the pack, its .idx and the .promisor file.  It does so in a staging object directory
        (the repository's objects as its alternate, for --fix-thin bases), from which the
        files move into objects/pack, the .idx last: git 2.39's index-pack leaves its
        tmp_pack_* behind when it rejects the data or is stopped, and a failed batch must
        leave nothing.  When ``land_if`` says no at that point, the pack is dropped and the
        name is "".
        """
        tmp = self.state_dir / "tmp"
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            _drop_stale_stages(tmp)
            _drop_orphan_packs(self.objects_dir / "pack")
            stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=tmp))
        except OSError as exc:
            raise DestinationError(f"cannot write to {tmp}: {exc.strerror or exc}") from None
        try:
            (stage / "pack").mkdir()
            name = self._index_pack(write, promisor, fix_thin, stage)
            if name and land_if is not None and not land_if():
                return ""
            if name:
                try:
                    self._land(stage / "pack", name)
                except OSError as exc:
                    why = exc.strerror or exc
                    raise DestinationError(f"cannot write to {self.objects_dir}: {why}") from None
            return name
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _land(self, staged: Path, name: str) -> None:
        """Move pack ``name``'s files into objects/pack; git sees a pack by its .idx."""
        pack_dir = self.objects_dir / "pack"
        files = sorted(staged.glob(f"{name}.*"), key=lambda f: f.suffix == ".idx")
        for f in files:
            try:
                os.replace(f, pack_dir / f.name)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # objects/ on another file system: copy beside the target, then rename.
                near = pack_dir / f"tmp_lazygit_{f.name}"
                try:
                    shutil.copyfile(f, near)
                    os.replace(near, pack_dir / f.name)
                finally:
                    near.unlink(missing_ok=True)

    def _index_pack(
        self, write: Callable[[IO[bytes]], None], promisor: str, fix_thin: bool, stage: Path
    ) -> str:
        args = ["index-pack", "--stdin", f"--promisor={promisor}"]
        if fix_thin:
            args.append("--fix-thin")
        alternates = os.pathsep.join(
            p for p in (str(self.objects_dir), os.environ.get(_ALTERNATES_ENV)) if p
        )
        env = {
            "GIT_DIR": str(self.git_dir),
            "GIT_OBJECT_DIRECTORY": str(stage),
            _ALTERNATES_ENV: alternates,
        }
        proc = popen_git(args, cwd=self.cwd, env=env)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        err_chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
        reader.start()
        try:
            try:
                write(proc.stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
            out = proc.stdout.read()
            proc.wait()
        except BaseException:
            # Interrupted while writing or while index-pack finishes: it must not outlive
            # us, or it writes its files into a repository the caller is removing.
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        reader.join()
        if proc.returncode != 0:
            msg = first_error_line(b"".join(err_chunks))
            if any(cause in msg for cause in _LOCAL_WRITE_FAILURES):
                # Not the server's bytes: reading them again would not help.
                fix = "free some space" if "space" in msg or "quota" in msg else None
                why = msg.removeprefix("fatal: ")
                raise DestinationError(f"cannot write to {self.git_dir}: {why}", fix)
            raise CorruptDataError(f"git index-pack rejected the data: {msg}")
        words = out.decode().split()
        return f"pack-{words[-1]}" if words else ""

    def ls_tree(self, rev: str) -> Iterator[tuple[str, str, bytes, str]]:
        """(mode, type, oid, path) of every entry under ``rev``, recursively."""
        out = self.git(["ls-tree", "-r", "-z", "--full-tree", rev])
        for item in out.split(b"\0"):
            if not item:
                continue
            meta, _, path = item.partition(b"\t")
            mode, typ, hexid = meta.decode().split()
            yield mode, typ, bytes.fromhex(hexid), path.decode("utf-8", "surrogateescape")

    def rev_parse(self, rev: str) -> str:
        return git_output(["rev-parse", "--verify", "--quiet", rev], cwd=self.cwd)

    def local_objects(self) -> LocalObjects:
        return LocalObjects(self.objects_dir)


#: Staging object directories of index-pack runs, under .git/lazygit/tmp.
STAGE_PREFIX = "index-pack-"
#: A staging directory this old was left by a process that was killed (SIGKILL).
STALE_STAGE_SECONDS = 24 * 3600
_ALTERNATES_ENV = "GIT_ALTERNATE_OBJECT_DIRECTORIES"


def _drop_stale_stages(tmp: Path) -> None:
    now = time.time()
    for d in tmp.glob(f"{STAGE_PREFIX}*"):
        try:
            if now - d.stat().st_mtime > STALE_STAGE_SECONDS:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            continue


#: A .pack without its .idx this old was left by a process killed between the two renames
#: (landing a pack) or the two unlinks (merging packs); git never reads it.
ORPHAN_PACK_SECONDS = 600


def _drop_orphan_packs(pack_dir: Path) -> None:
    """Remove ``pack-*.pack`` files (and their .promisor/.rev) that have had no .idx for a
    while: a writer, lazygit's or git's own, renames the .idx within moments of its .pack."""
    now = time.time()
    for pack in pack_dir.glob("pack-*.pack"):
        try:
            if pack.with_suffix(".idx").exists():
                continue
            st = pack.stat()  # ctime: when it was renamed into place (mtime: last written)
            if now - max(st.st_mtime, st.st_ctime) < ORPHAN_PACK_SECONDS:
                continue
            for suffix in (".pack", ".rev", ".promisor"):
                pack.with_suffix(suffix).unlink(missing_ok=True)
        except OSError:
            continue


class LocalObjects:
    """Which objects the local object store holds, read from pack indexes and loose files."""

    def __init__(self, objects_dir: Path) -> None:
        self.objects_dir = objects_dir
        self._indexes: dict[str, IdxFile] = {}
        self.refresh()

    def refresh(self) -> None:
        """Load indexes of packs that appeared since the last look; forget vanished ones."""
        from lazygit.packmeta import IdxFile

        pack_dir = self.objects_dir / "pack"
        names = {p.name for p in pack_dir.glob("pack-*.idx")} if pack_dir.is_dir() else set()
        # Build a new dict and swap it in: lookups in other threads see one or the other.
        # A vanished pack's map is left to the garbage collector: a lookup may still use it.
        indexes = {n: i for n, i in self._indexes.items() if n in names}
        for name in sorted(names - set(indexes)):
            try:
                indexes[name] = IdxFile(str(pack_dir / name))
            except (OSError, ValueError):
                continue  # a pack being written or removed right now
        self._indexes = indexes
        # The loose-object directories that exist: most lookups here are for objects that
        # are not local, and a lazy clone has few loose objects, so most need no stat().
        try:
            self._loose_dirs = frozenset(n for n in os.listdir(self.objects_dir) if len(n) == 2)
        except OSError:
            self._loose_dirs = frozenset()

    def __contains__(self, oid: bytes) -> bool:
        # Newest first: the packs that just landed are what a batch's own check looks in.
        for idx in reversed(self._indexes.values()):
            if oid in idx:
                return True
        h = oid.hex()
        if h[:2] not in self._loose_dirs:
            # A directory made since the last refresh() is missed until the next: the
            # object is then fetched once more, which is harmless.
            return False
        return os.path.exists(os.path.join(self.objects_dir, h[:2], h[2:]))

    def missing(self, oids: Iterable[bytes]) -> list[bytes]:
        """The oids (deduplicated, order kept) that are not in the object store."""
        seen: set[bytes] = set()
        out = []
        for oid in oids:
            if oid not in seen and oid not in self:
                out.append(oid)
            seen.add(oid)
        return out


def abbrev_length(objects: int) -> int:
    """The length of the names git abbreviates with ``core.abbrev`` auto among ``objects``
    packed objects (git's ``find_unique_abbrev``: their bits, halved into hex digits,
    at least 7)."""
    return max(7, (objects.bit_length() + 1) // 2)


def ensure_empty_destination(dest: Path) -> bool:
    """Check that ``dest`` may receive a clone; return True if it already existed."""
    if dest.exists():
        if not dest.is_dir():
            raise DestinationError(f"destination {dest} exists and is not a directory")
        if any(dest.iterdir()):
            raise DestinationError(
                f"destination {dest} already exists and is not empty", "choose another directory"
            )
        return True
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True)
        except OSError as exc:
            raise DestinationError(f"cannot create {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise DestinationError(f"cannot write to {parent}: permission denied")
    return False


__all__ = ["LocalObjects", "LocalRepo", "abbrev_length", "ensure_empty_destination"]
