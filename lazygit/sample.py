"""Deterministic sample repositories, published on disk the way a live dumb-HTTP server holds them.

The demo, the test-suite and the benchmarks need big repositories with realistic history
(small edits that git stores as deltas, renames, deletions, a hot file, binaries, tags, a
merged release branch) and the three object layouts a real server ends up with: one gc'd pack
with a ``.bitmap``, a pack kept from a later push (no bitmap) and loose objects from a small
push.  History is written with ``git fast-import`` from a stream generated on the fly, so even
the LARGE preset takes seconds, and every date is explicit so the same spec and seed always give
the same commit ids.  Standard library only (plus git).
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from lazygit.errors import GitCommandError
from lazygit.gitcmd import first_error_line, git_argv, git_env, run_git

HOT_FILE = "src/core/hot.py"
MAIN = "main"
RELEASE = "release"
# Files only the release branch edits, so merging it back never conflicts.
_RELEASE_FILES = ("VERSION", "CHANGELOG.md")
_EPOCH = 1_700_000_000
_AUTHORS = (
    "Ada Lovelace <ada@example.com>",
    "Grace Hopper <grace@example.com>",
    "Linus Torvalds <linus@example.com>",
    "Margaret Hamilton <margaret@example.com>",
    "Ken Thompson <ken@example.com>",
    "Barbara Liskov <barbara@example.com>",
)
_WORD_TEXT = (
    "parse render fetch store load index merge split buffer cache token stream packet "
    "header range offset delta object commit tree blob tag branch remote config state "
    "value count limit check verify update build write read open close flush reset apply "
    "queue worker client server request response session batch chunk record entry node "
    "graph path name size hash digest error retry timeout event signal handler"
)
_WORDS = tuple(_WORD_TEXT.split())
_PKG_TEXT = (
    "net storage ui cli codec proto engine plugins utils model sched auth crypto events "
    "search render report cache metrics vcs"
)
_PKGS = tuple(_PKG_TEXT.split())
_SUBS = ("impl", "api", "internal", "helpers", "backends", "formats", "io")
_VERBS = ("Fix", "Add", "Refactor", "Tweak", "Improve", "Simplify", "Speed up", "Clean up")


@dataclass(frozen=True)
class SampleSpec:
    """The shape of a sample history; the same spec always yields the same commit ids."""

    commits: int  # total commits on all branches (merges included)
    files: int  # text files in the first commit
    dirs: int = 20  # leaf directories under src/
    depth: int = 2  # directory levels under src/ (src/<pkg>/<sub>/...)
    hot_file_versions: int = 50  # expected edits of HOT_FILE
    binary_files: int = 3
    seed: int = 1
    pushed_fraction: float = 0.05  # share of commits in the later pushed pack
    pushed_commits: int | None = None  # overrides pushed_fraction
    loose_commits: int = 5  # last commits, pushed as loose objects
    release_every: int | None = None  # release cycle length in commits (default: derived)
    tag_every: int | None = None  # commits between tags on main (default: derived)

    def __post_init__(self) -> None:
        if self.commits < 12 or self.files < 4 or self.dirs < 1 or self.depth < 1:
            raise ValueError("sample spec too small: need >= 12 commits, >= 4 files")
        if self.loose_commits < 1 or self.part_sizes()[0] < 8:
            raise ValueError("sample spec: part 1 needs >= 8 commits, loose part >= 1")

    def part_sizes(self) -> tuple[int, int, int]:
        """Commits in (gc'd pack with bitmap, pushed pack, loose objects)."""
        pushed = self.pushed_commits
        if pushed is None:
            pushed = max(1, round(self.commits * self.pushed_fraction))
        return self.commits - pushed - self.loose_commits, pushed, self.loose_commits


TINY = SampleSpec(
    commits=40,
    files=30,
    dirs=4,
    depth=2,
    hot_file_versions=12,
    binary_files=2,
    pushed_commits=6,
    loose_commits=3,
)
SMALL = SampleSpec(commits=400, files=1200, dirs=30, depth=3, hot_file_versions=120)
LARGE = SampleSpec(
    commits=6500, files=2000, dirs=60, depth=3, hot_file_versions=700, binary_files=6
)
PRESETS: dict[str, SampleSpec] = {"tiny": TINY, "small": SMALL, "large": LARGE}


@dataclass
class SampleInfo:
    """What make_server_repo built, for tests, the demo and benchmarks to check against."""

    path: Path
    hot_file: str
    branches: list[str]
    tags: list[str]  # all tag names
    objects: int  # distinct objects in the repository
    commits: int = 0
    files: int = 0  # files in HEAD
    head: str = ""  # hex id of main
    annotated_tags: list[str] = field(default_factory=list)
    lightweight_tags: list[str] = field(default_factory=list)
    binary_files: list[str] = field(default_factory=list)
    bitmap_pack: str = ""  # "pack-<hex>" of the gc'd pack (has a .bitmap)
    pushed_pack: str = ""  # "pack-<hex>" kept from the second push (no .bitmap)
    loose_objects: int = 0
    seconds: float = 0.0  # generation time

    def summary(self) -> str:
        """One line for the CLI and logs."""
        return (
            f"{self.path}: {self.commits:,} commits, {self.objects:,} objects, "
            f"{self.files:,} files in HEAD, {len(self.tags)} tags, "
            f"packs {self.bitmap_pack} (bitmap) + {self.pushed_pack}, "
            f"{self.loose_objects} loose objects, {self.seconds:.1f} s"
        )


@dataclass
class _Part:
    """Refs to publish at the end of one part of the history."""

    heads: dict[str, int] = field(default_factory=dict)  # branch -> commit mark
    tags: list[str] = field(default_factory=list)


class _History:
    """Generates the fast-import stream; every choice comes from one seeded Random."""

    def __init__(self, spec: SampleSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.code_pool = [self._code_line() for _ in range(3000)]
        self.prose_pool = [self._prose_line() for _ in range(1500)]
        self.src_dirs = self._make_dirs()
        self.text: dict[str, list[str]] = {}  # path -> lines, on main
        self.binary: dict[str, bytes] = {}
        self.editable: list[str] = []  # text files main may edit, rename or delete
        self.where: dict[str, int] = {}  # path -> index in editable
        self.release_text: dict[str, list[str]] = {}
        self.counter = 0
        self.mark = 0
        self.time = _EPOCH
        self.main_head = 0
        self.release_head = 0
        self.diverged = False
        self.cycle = 0
        self.tags: dict[str, bool] = {}  # name -> annotated
        n = spec.commits
        self.release_every = spec.release_every or max(8, min(500, n // 12))
        self.tag_every = spec.tag_every or max(5, min(400, n // 15))
        self.hot_p = min(1.0, spec.hot_file_versions / max(1, n))
        self.binary_p = min(0.5, 4 * spec.binary_files / n)

    # ---- content -------------------------------------------------------------------------
    def _code_line(self) -> str:
        r, w = self.rng, self.rng.choice
        k = r.randrange(8)
        if k == 0:
            return f"def {w(_WORDS)}_{w(_WORDS)}({w(_WORDS)}, {w(_WORDS)}=None):"
        if k == 1:
            return f"    # {w(_WORDS)} the {w(_WORDS)} before the {w(_WORDS)} {w(_WORDS)}"
        if k == 2:
            return f"    return {w(_WORDS)}.{w(_WORDS)}({r.randrange(1000)})"
        if k == 3:
            return f"        if {w(_WORDS)}_{w(_WORDS)} > {r.randrange(100)}:"
        if k == 4:
            return f"class {w(_WORDS).title()}{w(_WORDS).title()}:"
        if k == 5:
            return f'    log.debug("{w(_WORDS)} %s {w(_WORDS)}", {w(_WORDS)})'
        return f"    {w(_WORDS)} = {w(_WORDS)}_{w(_WORDS)}({w(_WORDS)}, {r.randrange(64)})"

    def _prose_line(self) -> str:
        n = self.rng.randrange(6, 14)
        return " ".join(self.rng.choice(_WORDS) for _ in range(n)).capitalize() + "."

    def _make_dirs(self) -> list[str]:
        dirs = []
        for k in range(self.spec.dirs):
            pkg = _PKGS[k % len(_PKGS)] + (str(k // len(_PKGS)) if k >= len(_PKGS) else "")
            subs = [self.rng.choice(_SUBS) for _ in range(self.spec.depth - 1)]
            dirs.append("/".join(["src", pkg, *subs]))
        return dirs

    def _new_text(self, path: str) -> list[str]:
        pool = self.prose_pool if path.endswith(".md") else self.code_pool
        lines = [f"# {path}", ""]
        lines += [self.rng.choice(pool) for _ in range(self.rng.randrange(30, 110))]
        return lines

    def _edit(self, path: str, lines: list[str]) -> None:
        """A small realistic edit: change, insert or drop a few lines."""
        r = self.rng
        pool = self.prose_pool if path.endswith(".md") else self.code_pool
        for _ in range(r.randint(1, 3)):
            op = r.random()
            i = r.randrange(2, len(lines) + 1)
            if len(lines) > 300:
                op = 0.9
            new = r.choice(pool) if r.random() < 0.8 else f"    value_{self.mark} = {i}"
            if op < 0.5 and i < len(lines):
                lines[i] = new
            elif op < 0.8 or len(lines) < 20:
                lines.insert(i, new)
            else:
                del lines[i - 1 : i + r.randrange(1, 4)]

    def _new_path(self) -> str:
        r = self.rng
        self.counter += 1
        n = self.counter
        k = r.random()
        if k < 0.72:
            return f"{r.choice(self.src_dirs)}/{r.choice(_WORDS)}_{n}.py"
        if k < 0.87:
            pkg = r.choice(self.src_dirs).split("/")[1]
            return f"tests/{pkg}/test_{r.choice(_WORDS)}_{n}.py"
        if k < 0.97:
            return f"docs/{r.choice(_PKGS)}/{r.choice(_WORDS)}_{n}.md"
        return f"config/{r.choice(_WORDS)}_{n}.toml"

    def _add_editable(self, path: str) -> None:
        self.where[path] = len(self.editable)
        self.editable.append(path)

    def _drop_editable(self, path: str) -> None:
        i = self.where.pop(path)
        last = self.editable.pop()
        if last != path:
            self.editable[i] = last
            self.where[last] = i

    # ---- stream --------------------------------------------------------------------------
    @staticmethod
    def _data(payload: bytes) -> bytes:
        return b"data %d\n%s\n" % (len(payload), payload)

    def _modify(self, path: str, payload: bytes) -> bytes:
        return b"M 100644 inline %s\n%s" % (path.encode(), self._data(payload))

    @staticmethod
    def _text_bytes(lines: list[str]) -> bytes:
        return ("\n".join(lines) + "\n").encode()

    def _commit(
        self, branch: str, message: str, body: list[bytes], frm: int = 0, merge: int = 0
    ) -> bytes:
        self.mark += 1
        self.time += 1800 + self.rng.randrange(3600)
        who = self.rng.choice(_AUTHORS).encode()
        stamp = b"%d +0000" % self.time
        out = [
            b"commit refs/heads/%s\nmark :%d\n" % (branch.encode(), self.mark),
            b"author %s %s\ncommitter %s %s\n" % (who, stamp, who, stamp),
            self._data(message.encode()),
        ]
        if frm:
            out.append(b"from :%d\n" % frm)
        if merge:
            out.append(b"merge :%d\n" % merge)
        out += body
        out.append(b"\n")
        return b"".join(out)

    def _tag(self, name: str, target: int, annotated: bool) -> bytes:
        self.tags[name] = annotated
        if not annotated:
            return b"reset refs/tags/%s\nfrom :%d\n\n" % (name.encode(), target)
        who = _AUTHORS[0].encode()
        return b"tag %s\nfrom :%d\ntagger %s %d +0000\n" % (
            name.encode(),
            target,
            who,
            self.time,
        ) + self._data(f"Release {name}\n".encode())

    def _initial(self) -> bytes:
        body = []
        for path in _RELEASE_FILES:
            lines = ["0.1.0"] if path == "VERSION" else ["# Changelog", ""]
            self.text[path] = lines
            body.append(self._modify(path, self._text_bytes(lines)))
        self.text[HOT_FILE] = self._new_text(HOT_FILE)
        body.append(self._modify(HOT_FILE, self._text_bytes(self.text[HOT_FILE])))
        for _ in range(self.spec.files):
            path = self._new_path()
            self.text[path] = self._new_text(path)
            self._add_editable(path)
            body.append(self._modify(path, self._text_bytes(self.text[path])))
        for k in range(self.spec.binary_files):
            path = f"assets/images/img_{k}.bin"
            self.binary[path] = self.rng.randbytes(self.rng.randrange(2048, 16384))
            body.append(self._modify(path, self.binary[path]))
        self.main_head = self.mark + 1
        return self._commit(MAIN, "Initial import\n", body)

    def _main_commit(self) -> bytes:
        r = self.rng
        body: list[bytes] = []
        touched: list[str] = []
        if r.random() < self.hot_p:
            self._edit(HOT_FILE, self.text[HOT_FILE])
            body.append(self._modify(HOT_FILE, self._text_bytes(self.text[HOT_FILE])))
            touched.append(HOT_FILE)
        k = r.random()
        if k < 0.03:  # add a file
            path = self._new_path()
            self.text[path] = self._new_text(path)
            self._add_editable(path)
            body.append(self._modify(path, self._text_bytes(self.text[path])))
            touched.append(path)
        elif k < 0.045 and len(self.editable) > 8:  # rename or move
            old = r.choice(self.editable)
            if old not in touched:
                new = self._new_path()
                self._drop_editable(old)
                self._add_editable(new)
                self.text[new] = self.text.pop(old)
                body.append(b"R %s %s\n" % (old.encode(), new.encode()))
                touched.append(new)
        elif k < 0.055 and len(self.editable) > 8:  # delete
            old = r.choice(self.editable)
            self._drop_editable(old)
            del self.text[old]
            body.append(b"D %s\n" % old.encode())
        if self.binary and r.random() < self.binary_p:
            path = r.choice(sorted(self.binary))
            data = bytearray(self.binary[path])
            at = r.randrange(len(data))
            data[at : at + 512] = r.randbytes(512)
            self.binary[path] = bytes(data)
            body.append(self._modify(path, self.binary[path]))
            touched.append(path)
        for _ in range(1 + (r.random() < 0.5) + (r.random() < 0.2)):
            path = r.choice(self.editable)
            self._edit(path, self.text[path])
            body.append(self._modify(path, self._text_bytes(self.text[path])))
            touched.append(path)
        name = touched[-1].rsplit("/", 1)[-1] if touched else "tree"
        msg = f"{r.choice(_VERBS)} {r.choice(_WORDS)} in {name} (#{self.mark + 1})\n"
        self.main_head = self.mark + 1
        return self._commit(MAIN, msg, body)

    def _release_commit(self) -> bytes:
        frm = 0
        if not self.diverged:
            self.diverged = True
            self.cycle += 1
            self.release_text = {p: list(self.text[p]) for p in _RELEASE_FILES}
            frm = self.main_head
        n = self.mark + 1
        version = self.release_text["VERSION"]
        version[0] = f"{self.cycle}.0.{n}"
        self.release_text["CHANGELOG.md"].insert(
            2, f"- {version[0]}: fix {self.rng.choice(_WORDS)}"
        )
        body = [self._modify(p, self._text_bytes(self.release_text[p])) for p in _RELEASE_FILES]
        self.release_head = n
        return self._commit(RELEASE, f"Release fix {version[0]}\n", body, frm=frm)

    def _merge_commit(self) -> bytes:
        self.diverged = False
        for p in _RELEASE_FILES:
            self.text[p] = list(self.release_text[p])
        body = [self._modify(p, self._text_bytes(self.text[p])) for p in _RELEASE_FILES]
        msg = f"Merge branch '{RELEASE}' (cycle {self.cycle})\n"
        frm = self.main_head
        self.main_head = self.mark + 1
        return self._commit(MAIN, msg, body, frm=frm, merge=self.release_head)

    def stream(self, parts: list[_Part]) -> Iterator[bytes]:
        """The whole fast-import stream; fills `parts` with each part's refs and tags."""
        n1, n2, _ = self.spec.part_sizes()
        ends = (n1, n1 + n2, self.spec.commits)
        part = _Part()
        for i in range(self.spec.commits):
            annotated_tag = False
            if i == 0:
                yield self._initial()
            elif i == n1 or (i < ends[1] - 1 and not self.diverged and i % self.release_every == 1):
                yield self._release_commit()
            elif self.diverged and i % self.release_every == self.release_every - 2:
                yield self._merge_commit()
                annotated_tag = True
            elif self.diverged and i < ends[1] and self.rng.random() < 0.2:
                yield self._release_commit()
            else:
                yield self._main_commit()
            if annotated_tag:
                name = f"v{self.cycle}.0"
                yield self._tag(name, self.release_head, annotated=True)
                part.tags.append(name)
            elif i % self.tag_every == self.tag_every // 2 and i + 1 not in ends:
                name = f"snapshot-{i}"
                yield self._tag(name, self.main_head, annotated=False)
                part.tags.append(name)
            if i + 1 in ends:
                if i + 1 == ends[1]:
                    name = f"v{self.cycle}.1-rc"
                    yield self._tag(name, self.main_head, annotated=True)
                    part.tags.append(name)
                elif i + 1 == ends[2]:
                    name = "nightly"
                    yield self._tag(name, self.main_head, annotated=False)
                    part.tags.append(name)
                part.heads[MAIN] = self.main_head
                if self.release_head:
                    part.heads[RELEASE] = self.release_head
                for branch, mark in part.heads.items():
                    ref = f"refs/parts/{len(parts)}/{branch}"
                    yield b"reset %s\nfrom :%d\n\n" % (ref.encode(), mark)
                parts.append(part)
                part = _Part()
        yield b"done\n"


def _fast_import(work: Path, history: _History, parts: list[_Part]) -> None:
    """Stream the history into `work` without ever holding the whole stream."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            git_argv(["fast-import", "--quiet", "--done", "--date-format=raw"]),
            cwd=work,
            env=git_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        stdin: BinaryIO = proc.stdin  # type: ignore[assignment]
        try:
            buf: list[bytes] = []
            size = 0
            for chunk in history.stream(parts):
                buf.append(chunk)
                size += len(chunk)
                if size > 1 << 20:
                    stdin.write(b"".join(buf))
                    buf, size = [], 0
            stdin.write(b"".join(buf))
            stdin.close()
        except BrokenPipeError:
            pass
        if proc.wait() != 0:
            err.seek(0)
            raise GitCommandError(f"git fast-import failed: {first_error_line(err.read())}")


def _packs(dest: Path) -> list[Path]:
    return sorted((dest / "objects" / "pack").glob("pack-*.pack"))


def _push(work: Path, dest: Path, part: _Part, index: int) -> None:
    specs = [f"refs/parts/{index}/{b}:refs/heads/{b}" for b in part.heads]
    specs += [f"refs/tags/{t}:refs/tags/{t}" for t in part.tags]
    run_git(["push", "--quiet", "--no-verify", str(dest), *specs], cwd=work)


def _count_loose(dest: Path) -> int:
    return sum(1 for d in (dest / "objects").glob("[0-9a-f][0-9a-f]") for _ in d.iterdir())


def make_server_repo(dest: Path, spec: SampleSpec, *, quiet: bool = True) -> SampleInfo:
    """Bare repo at dest: history gc'd into one pack with a bitmap; later pushes left as a
    pack without bitmap and as loose objects; `git update-server-info` run last."""
    started = time.monotonic()
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty")

    def say(msg: str) -> None:
        if not quiet:
            print(f"[{time.monotonic() - started:6.1f}s] {msg}", file=sys.stderr)

    history = _History(spec)
    parts: list[_Part] = []
    with tempfile.TemporaryDirectory(prefix="lazygit-sample-") as tmp:
        work = Path(tmp) / "work.git"
        run_git(["init", "--quiet", "--bare", str(work)])
        _fast_import(work, history, parts)
        say(f"fast-import: {spec.commits} commits")

        dest.mkdir(parents=True, exist_ok=True)
        run_git(["init", "--quiet", "--bare", str(dest)])
        run_git(["symbolic-ref", "HEAD", f"refs/heads/{MAIN}"], cwd=dest)
        run_git(["config", "gc.auto", "0"], cwd=dest)
        # Part 1: pushed, then gc'd into one pack with a bitmap.
        _push(work, dest, parts[0], 0)
        run_git(["gc", "--quiet"], cwd=dest)
        packs = _packs(dest)
        if len(packs) != 1 or not packs[0].with_suffix(".bitmap").exists():
            run_git(["repack", "-a", "-d", "-b", "--quiet"], cwd=dest)
            packs = _packs(dest)
        if len(packs) != 1 or not packs[0].with_suffix(".bitmap").exists():
            raise GitCommandError(f"git gc left {len(packs)} packs / no .bitmap in {dest}")
        bitmap_pack = packs[0].stem
        say(f"part 1: gc'd into {bitmap_pack}")
        # Part 2: pushed and kept as a pack (no bitmap).
        run_git(["config", "receive.unpackLimit", "1"], cwd=dest)
        _push(work, dest, parts[1], 1)
        packs = _packs(dest)
        pushed = [p for p in packs if p.stem != bitmap_pack]
        if len(packs) != 2 or pushed[0].with_suffix(".bitmap").exists():
            raise GitCommandError(f"second push did not leave one plain pack in {dest}")
        say(f"part 2: pushed pack {pushed[0].stem}")
        # Part 3: pushed and exploded into loose objects.
        run_git(["config", "receive.unpackLimit", "100000"], cwd=dest)
        _push(work, dest, parts[2], 2)
        loose = _count_loose(dest)
        if loose == 0 or len(_packs(dest)) != 2:
            raise GitCommandError(f"third push did not leave loose objects in {dest}")
        run_git(["config", "--unset", "receive.unpackLimit"], cwd=dest)
        run_git(["update-server-info"], cwd=dest)
        say(f"part 3: {loose} loose objects; update-server-info done")

    listing = run_git(
        ["cat-file", "--batch-all-objects", "--batch-check=%(objecttype)"], cwd=dest
    ).stdout.split()
    head = run_git(["rev-parse", f"refs/heads/{MAIN}"], cwd=dest).stdout.decode().strip()
    tags = sorted(history.tags)
    return SampleInfo(
        path=dest,
        hot_file=HOT_FILE,
        branches=[MAIN, RELEASE],
        tags=tags,
        objects=len(listing),
        commits=listing.count(b"commit"),
        files=len(history.text) + len(history.binary),
        head=head,
        annotated_tags=[t for t in tags if history.tags[t]],
        lightweight_tags=[t for t in tags if not history.tags[t]],
        binary_files=sorted(history.binary),
        bitmap_pack=bitmap_pack,
        pushed_pack=pushed[0].stem,
        loose_objects=loose,
        seconds=time.monotonic() - started,
    )


def main(argv: list[str] | None = None) -> int:
    """`python3 -m lazygit.sample DEST [--size ...]`: build a sample server repository."""
    ap = argparse.ArgumentParser(
        prog="python3 -m lazygit.sample",
        description="Build a deterministic sample bare repository laid out like a live server.",
    )
    ap.add_argument("dest", type=Path, help="bare repository to create (e.g. root/sample.git)")
    ap.add_argument("--size", choices=sorted(PRESETS), default="small")
    ap.add_argument("--commits", type=int)
    ap.add_argument("--files", type=int)
    ap.add_argument("--dirs", type=int)
    ap.add_argument("--depth", type=int)
    ap.add_argument("--hot-versions", type=int, dest="hot_file_versions")
    ap.add_argument("--binary-files", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--pushed-commits", type=int)
    ap.add_argument("--loose-commits", type=int)
    ap.add_argument("--force", action="store_true", help="replace dest if it exists")
    ap.add_argument("--verbose", "-v", action="store_true", help="report each step")
    args = ap.parse_args(argv)
    names = (
        "commits",
        "files",
        "dirs",
        "depth",
        "hot_file_versions",
        "binary_files",
        "seed",
        "pushed_commits",
        "loose_commits",
    )
    overrides = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    try:
        spec = replace(PRESETS[args.size], **overrides)
    except ValueError as exc:
        ap.error(str(exc))
    if args.force and args.dest.exists():
        shutil.rmtree(args.dest)
    try:
        info = make_server_repo(args.dest, spec, quiet=not args.verbose)
    except (FileExistsError, GitCommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(info.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
