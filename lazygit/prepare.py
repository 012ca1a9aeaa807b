"""`lazygit prepare DIR`: make a bare repository on the server cheap to clone lazily.

A lazy clone reads the commits, trees and tags of every server pack by HTTP byte ranges,
guided by each pack's ``.idx`` and the type index at the head of its ``.bitmap``.  What it
costs depends on the server's layout: one pack with a bitmap is ideal; a pack without one
needs a header scan (or is read whole); loose objects cost one request each; and a pack
written with reused deltas scatters its trees among the blobs (many ranges), which an
aggressive repack (``-f``) fixes.  This module runs the git commands that give the good
layout and reports, from the files on disk, exactly what the client would read: the same
planning code (``lazygit.ranges.coalesce`` with the default settings) counts the ranges.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lazygit import midx
from lazygit.config import Settings
from lazygit.errors import CorruptDataError, LazyGitError
from lazygit.gitcmd import run_git
from lazygit.packmeta import (
    OBJ_BLOB,
    OBJ_COMMIT,
    OBJ_TAG,
    OBJ_TREE,
    PackTypes,
    ServerPack,
    bitmap_head_needed,
    parse_bitmap_types,
)
from lazygit.ranges import Extent, coalesce, group_requests, split, subtract

#: A header scan reads this much of each entry (mirrors lazygit.fetch.HEADER_BYTES) ...
HEADER_BYTES = 32
#: ... and entries up to this size whole (mirrors lazygit.fetch.WHOLE_ENTRY_BYTES).
WHOLE_ENTRY_BYTES = 256
#: More metadata ranges than this in one pack earns the hint to repack with --aggressive.
SCATTERED_RANGES = 64
#: git version that writes reverse indexes (.rev) on request.
REV_INDEX_GIT = (2, 31)

_TYPE_NAMES = {"commit": OBJ_COMMIT, "tree": OBJ_TREE, "blob": OBJ_BLOB, "tag": OBJ_TAG}


class NotReadyError(LazyGitError):
    """`prepare --check` found warnings (exit status 1, so scripts can repair on demand)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} is not ready for lazy clones", f"run: lazygit prepare {path}")


@dataclass
class Finding:
    """One thing an operator should know: ``warn`` makes the repository not ready."""

    level: str  # "warn" or "hint"
    message: str
    fix: str


@dataclass
class PackReport:
    """What a lazy clone reads of one server pack."""

    name: str
    objects: int
    size: int
    bitmap: bool
    commits: int
    trees: int
    blobs: int
    tags: int
    meta_bytes: int  # bytes of the commit, tree and tag entries
    method: str  # "ranges" (bitmap), "whole" (small, no bitmap), "header scan" or "cruft"
    ranges: int  # byte ranges the client asks for, after coalescing
    read_bytes: int  # bytes those ranges cover (gaps read through included)
    requests_multi: int  # HTTP requests on a server with multi-range support
    requests_single: int  # HTTP requests on a server with single ranges only

    @property
    def meta_share(self) -> float:
        return self.meta_bytes / self.size if self.size else 0.0


@dataclass
class RepoReport:
    """The server-side view of a bare repository, and what a lazy clone costs."""

    path: str
    packs: list[PackReport] = field(default_factory=list)
    loose_objects: int = 0
    loose_bytes: int = 0
    idx_bytes: int = 0
    bitmap_head_bytes: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """No warnings: the layout a lazy clone reads cheaply."""
        return not any(f.level == "warn" for f in self.findings)

    @property
    def clone_bytes(self) -> int:
        """Bytes a `lazygit clone --no-checkout` reads (ranges, .idx files, bitmap heads);
        loose objects and the small ref files come on top."""
        return sum(p.read_bytes for p in self.packs) + self.idx_bytes + self.bitmap_head_bytes

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ready"] = self.ready
        doc["clone_bytes"] = self.clone_bytes
        for pack, rep in zip(doc["packs"], self.packs, strict=True):
            pack["meta_share"] = round(rep.meta_share, 4)
        return doc


@dataclass
class PrepareResult:
    """The report before and after ``prepare`` and the git commands it ran."""

    before: RepoReport
    after: RepoReport
    commands: list[str]


# ---------------------------------------------------------------------------------------
# Looking at a repository


def bare_git_dir(path: Path) -> Path:
    """The bare repository at ``path``; a one-line error for anything else."""
    if not path.is_dir():
        raise LazyGitError(f"{path} is not a directory", "give the bare repository's directory")
    proc = run_git(
        ["rev-parse", "--is-bare-repository", "--absolute-git-dir"], cwd=path, check=False
    )
    lines = proc.stdout.decode().split()
    if proc.returncode != 0 or len(lines) != 2:
        raise LazyGitError(f"{path} is not a git repository", "give a bare repository's directory")
    if lines[0] != "true" or Path(lines[1]).resolve() != path.resolve():
        raise LazyGitError(
            f"{path} is not a bare repository",
            f"publish a bare copy: git clone --bare {path} {path.name}.git",
        )
    return path.resolve()


def git_version() -> tuple[int, ...]:
    """The installed git's version as numbers, e.g. (2, 39, 5)."""
    out = run_git(["--version"]).stdout.decode()
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    if not m:
        return (0,)
    return tuple(int(x) for x in m.groups(default="0"))


def _listed_packs(git_dir: Path) -> list[str] | None:
    """Pack names in objects/info/packs (the order clients read them), None if missing."""
    path = git_dir / "objects" / "info" / "packs"
    if not path.is_file():
        return None
    names = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("P ") and line.endswith(".pack"):
            names.append(line[2:-5].strip())
    return names


def _expected_info_refs(git_dir: Path) -> set[str]:
    """The lines `git update-server-info` would write to info/refs (peeled tags included)."""
    fmt = (
        "%(objectname)%09%(refname)"
        "%(if)%(*objectname)%(then)%0a%(*objectname)%09%(refname)^{}%(end)"
    )
    out = run_git(["for-each-ref", f"--format={fmt}"], cwd=git_dir).stdout.decode()
    return {ln for ln in out.splitlines() if ln.strip()}


def _loose_counts(git_dir: Path) -> tuple[int, int]:
    """(loose objects, their bytes on disk) from `git count-objects -v`."""
    out = run_git(["count-objects", "-v"], cwd=git_dir).stdout.decode()
    vals = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return int(vals.get("count", 0)), int(vals.get("size", 0)) * 1024


def _object_types(git_dir: Path) -> dict[bytes, int]:
    """The type of every object in the repository (for packs without a bitmap)."""
    out = run_git(
        ["cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype)"],
        cwd=git_dir,
    ).stdout
    types = {}
    for line in out.splitlines():
        hexid, _, kind = line.decode().partition(" ")
        types[bytes.fromhex(hexid)] = _TYPE_NAMES.get(kind, OBJ_BLOB)
    return types


def _types_from_objects(pack: ServerPack, types: dict[bytes, int]) -> PackTypes:
    """Position runs per type, from a per-oid type table."""
    runs: dict[int, list[tuple[int, int]]] = {t: [] for t in _TYPE_NAMES.values()}
    for pos in range(len(pack)):
        r = runs[types.get(pack.oid_at_position(pos), OBJ_BLOB)]
        if r and r[-1][1] == pos:
            r[-1] = (r[-1][0], pos + 1)
        else:
            r.append((pos, pos + 1))
    return PackTypes(runs[OBJ_COMMIT], runs[OBJ_TREE], runs[OBJ_BLOB], runs[OBJ_TAG])


def _requests(extents: list[Extent], settings: Settings) -> tuple[int, int]:
    """HTTP requests for these ranges: (multi-range server, single-range server)."""
    pieces = split(extents, max(1, settings.maxRangeBytes))
    multi = group_requests(
        pieces, max_ranges=settings.rangesPerRequest, max_bytes=settings.maxRangeBytes
    )
    return len(multi), len(pieces)


def _pack_report(
    pack: ServerPack,
    has_bitmap: bool,
    settings: Settings,
    skip: Callable[[bytes], bool],
) -> PackReport:
    """Plan the reads of one pack the way the client's fetch_metadata does."""
    assert pack.types is not None
    t = pack.types
    entries = [
        e for p, e in pack.metadata_entries() if not skip(pack.oid_at_position(p))
    ]  # objects an earlier pack of the same local pack gave are copied once
    meta_bytes = sum(e.length for e in entries)
    if not has_bitmap and pack.size <= settings.smallPackBytes:
        method, read = "whole", [Extent(0, pack.size)]
        merged = read
    else:
        method = "ranges"
        kept: set[int] = set()
        read = []
        if not has_bitmap:
            method = "header scan"
            wants = []
            for pos in range(len(pack)):
                e = pack.extent_at(pack.offset_at_position(pos))
                if e.length <= WHOLE_ENTRY_BYTES:
                    kept.add(e.start)
                    wants.append(e)
                else:
                    wants.append(Extent(e.start, e.start + HEADER_BYTES))
            read = coalesce(wants, min_gap=settings.rangeGap, overhead=settings.rangeOverhead)
        todo = [e for e in entries if e.start not in kept]
        merged = coalesce(todo, min_gap=settings.rangeGap, overhead=settings.rangeOverhead)
        # The client keeps what the scan read (its resume store): only the rest is read.
        read = sorted(read + subtract(merged, read))
    multi, single = _requests(read, settings)
    return PackReport(
        name=pack.name,
        objects=len(pack),
        size=pack.size,
        bitmap=has_bitmap,
        commits=t.count(OBJ_COMMIT),
        trees=t.count(OBJ_TREE),
        blobs=t.count(OBJ_BLOB),
        tags=t.count(OBJ_TAG),
        meta_bytes=meta_bytes,
        method=method,
        ranges=len(read),
        read_bytes=sum(e.length for e in read),
        requests_multi=multi,
        requests_single=single,
    )


def analyze(path: Path, settings: Settings | None = None) -> RepoReport:
    """Report a bare repository's layout and what a lazy clone of it reads.  No changes."""
    git_dir = bare_git_dir(path)
    settings = settings or Settings()
    report = RepoReport(str(git_dir))
    pack_dir = git_dir / "objects" / "pack"
    on_disk = sorted(p.stem for p in pack_dir.glob("pack-*.pack")) if pack_dir.is_dir() else []
    listed = _listed_packs(git_dir)
    order = [n for n in (listed or []) if n in on_disk] + [
        n for n in on_disk if n not in (listed or [])
    ]
    # As a client does: packs without a bitmap of their own get their types from the
    # multi-pack-index bitmap once one of them is too large to be read whole.
    by_midx: dict[str, PackTypes] = {}
    if any(
        not (pack_dir / f"{n}.bitmap").is_file()
        and (pack_dir / f"{n}.pack").stat().st_size > settings.smallPackBytes
        for n in order
    ):
        by_midx = _midx_types(pack_dir)
    types_by_oid: dict[bytes, int] | None = None
    earlier: list[ServerPack] = []
    live: list[ServerPack] = []
    cruft: list[tuple[ServerPack, PackReport]] = []
    head_seen = False
    for name in order:
        pack_file = pack_dir / f"{name}.pack"
        idx_file = pack_dir / f"{name}.idx"
        if not idx_file.is_file():
            report.findings.append(
                Finding("warn", f"{name}.pack has no .idx", f"git index-pack {pack_file}")
            )
            continue
        idx_data = idx_file.read_bytes()
        pack = ServerPack.from_idx(name, idx_data, pack_file.stat().st_size)
        report.idx_bytes += len(idx_data)
        has_bitmap = False
        bitmap_file = pack_dir / f"{name}.bitmap"
        if bitmap_file.is_file():
            data = bitmap_file.read_bytes()
            need = bitmap_head_needed(data)
            try:
                pack.types = parse_bitmap_types(
                    data[:need] if need else data, n_objects=len(pack), pack_checksum=pack.checksum
                )
                has_bitmap = True
                report.bitmap_head_bytes += need or len(data)
            except CorruptDataError as exc:
                report.findings.append(
                    Finding(
                        "warn",
                        f"{name}.bitmap is unusable ({exc}); clients scan the pack instead",
                        f"lazygit prepare {path}",
                    )
                )
        if not has_bitmap and name in by_midx:
            pack.types, has_bitmap = by_midx[name], True
        if pack.types is None:
            if types_by_oid is None:
                types_by_oid = _object_types(git_dir)
            pack.types = _types_from_objects(pack, types_by_oid)
        # The client copies the commits, trees and tags of the first pack with a bitmap into
        # a pack of its own, and those of the other ranged packs into one more, where an
        # object they repeat is copied once.
        head = has_bitmap and not head_seen
        head_seen = head_seen or has_bitmap
        prior = [] if head else list(earlier)
        rep = _pack_report(
            pack,
            has_bitmap,
            settings,
            lambda oid, prior=prior: any(q.offset_of(oid) is not None for q in prior),
        )
        report.packs.append(rep)
        if (
            not has_bitmap
            and pack.size > settings.smallPackBytes
            and (pack_dir / f"{name}.mtimes").is_file()
        ):
            cruft.append((pack, rep))  # settled below, once every pack is known
            continue
        live.append(pack)
        if not head and rep.method != "whole":
            earlier.append(pack)
        if not has_bitmap and rep.method != "whole":
            _no_bitmap_finding(report, rep, path)
        elif rep.method == "ranges" and rep.ranges > SCATTERED_RANGES:
            report.findings.append(
                Finding(
                    "hint",
                    f"{name}: commits and trees are scattered over {rep.ranges:,} ranges "
                    "(an aggressive repack keeps them contiguous)",
                    f"lazygit prepare --aggressive {path}",
                )
            )
    # A cruft pack (unreachable objects git gc keeps until they expire) is read only when
    # a ref reaches into it: a deleted branch pushed again keeps its objects there.
    tips = {bytes.fromhex(ln.split("\t")[0]) for ln in _expected_info_refs(git_dir)}
    for pack, rep in cruft:
        if any(
            pack.offset_of(t) is not None and all(q.offset_of(t) is None for q in live)
            for t in tips
        ):
            _no_bitmap_finding(report, rep, path)
        else:
            rep.method, rep.ranges, rep.read_bytes = "cruft", 0, 0
            rep.requests_multi = rep.requests_single = 0
    report.loose_objects, report.loose_bytes = _loose_counts(git_dir)
    _layout_findings(report, git_dir, path, on_disk, listed, len(on_disk) - len(cruft))
    return report


def _midx_types(pack_dir: Path) -> dict[str, PackTypes]:
    """The types the multi-pack-index's bitmap gives its packs (see midx.py), by pack name;
    empty without one a client can use."""
    data = _read_or_none(pack_dir / midx.MIDX_FILE)
    if data is None:
        return {}
    try:
        head = midx.parse_head(data, len(data))
        if head is None:
            return {}
        facts = midx.read_facts(head, lambda spans: {s: data[s[0] : s[1]] for s in spans})
    except CorruptDataError:
        return {}
    bitmap = _read_or_none(pack_dir / f"{facts.file_stem}.bitmap")
    first = facts.first
    if first is None:  # git before 2.35 wrote the reverse index beside the MIDX
        first = midx.first_from_rev(_read_or_none(pack_dir / f"{facts.file_stem}.rev"))
        if first is None:
            return {}
    idx = [_read_or_none(pack_dir / f"{n}.idx") for n in facts.names]
    if bitmap is None or any(i is None for i in idx):
        return {}
    try:
        packs = [
            ServerPack.from_idx(n, i, (pack_dir / f"{n}.pack").stat().st_size)
            for n, i in zip(facts.names, idx, strict=True)
            if i is not None
        ]
    except (OSError, CorruptDataError):
        return {}  # a pack it names is gone or damaged: a client would not use it either
    need = bitmap_head_needed(bitmap)
    head_bytes = bitmap[:need] if need else bitmap
    return midx.pack_types(packs, facts.count, first, facts.checksum, head_bytes) or {}


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _no_bitmap_finding(report: RepoReport, rep: PackReport, path: Path) -> None:
    report.findings.append(
        Finding(
            "warn",
            f"{rep.name} has no bitmap: a lazy clone scans its headers in {rep.ranges:,} "
            f"ranges ({_mib(rep.read_bytes)}) to find its commits and trees",
            f"lazygit prepare {path}",
        )
    )


def _layout_findings(
    report: RepoReport,
    git_dir: Path,
    path: Path,
    on_disk: list[str],
    listed: list[str] | None,
    live: int,
) -> None:
    """Warnings about the repository as a whole (packs, loose objects, server info files);
    ``live``: the packs that are not cruft packs."""
    if live > 1:
        report.findings.append(
            Finding(
                "warn",
                f"{live} packs: a lazy clone reads every .idx and plans each pack "
                "separately, and a pushed pack carries no bitmap",
                f"lazygit prepare {path}",
            )
        )
    if report.loose_objects:
        report.findings.append(
            Finding(
                "warn",
                f"{report.loose_objects:,} loose objects: a lazy clone fetches loose commits "
                "and trees one request each",
                f"lazygit prepare {path}",
            )
        )
    info_refs = git_dir / "info" / "refs"
    fix_info = f"git -C {path} update-server-info (or lazygit prepare {path})"
    if not info_refs.is_file():
        report.findings.append(
            Finding("warn", "info/refs is missing: clients cannot list the refs", fix_info)
        )
    else:
        have = {ln for ln in info_refs.read_text(errors="replace").splitlines() if ln.strip()}
        if have != _expected_info_refs(git_dir):
            report.findings.append(
                Finding("warn", "info/refs is stale: clients see old refs", fix_info)
            )
    if listed is None:
        report.findings.append(
            Finding(
                "warn", "objects/info/packs is missing: clients cannot find the packs", fix_info
            )
        )
    elif sorted(listed) != on_disk:
        report.findings.append(
            Finding(
                "warn",
                "objects/info/packs is stale: it does not list exactly the packs on disk",
                fix_info,
            )
        )
    if not (git_dir / "HEAD").is_file():
        report.findings.append(
            Finding("warn", "HEAD is missing", f"git -C {path} symbolic-ref HEAD refs/heads/main")
        )


# ---------------------------------------------------------------------------------------
# Changing a repository


def prepare(
    path: Path,
    *,
    aggressive: bool = False,
    settings: Settings | None = None,
    on_command: Callable[[str], None] | None = None,
) -> PrepareResult:
    """Repack into one pack with a bitmap (and reverse index), then update the server info."""
    git_dir = bare_git_dir(path)
    before = analyze(git_dir, settings)
    config: list[str] = []
    if git_version() >= REV_INDEX_GIT:
        config = ["-c", "pack.writeReverseIndex=true"]
    repack = [*config, "repack", "-a", "-d", "-b", "-q"]
    if aggressive:
        repack.append("-f")
    commands = []
    for args in (repack, ["update-server-info"]):
        line = "git " + " ".join(args)
        commands.append(line)
        if on_command:
            on_command(line)
        run_git(args, cwd=git_dir)
    return PrepareResult(before, analyze(git_dir, settings), commands)


# ---------------------------------------------------------------------------------------
# Text output


def _mib(n: int) -> str:
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 2**20:.1f} MiB"


def pack_line(p: PackReport) -> str:
    """One line per pack, e.g. 'pack-X: 60,000 objects, 18.2 MiB; commits+trees+tags 3.1 MiB
    (17%) in 1,234 ranges; bitmap: yes'."""
    if p.method == "cruft":
        return (
            f"{p.name}: {p.objects:,} objects, {_mib(p.size)}; not read (a cruft pack: the "
            "unreachable objects git gc keeps until they expire)"
        )
    if p.method == "whole":
        how = "read whole (small, no bitmap)"
    elif p.method == "header scan":
        how = f"{p.ranges:,} ranges with the header scan ({_mib(p.read_bytes)} read)"
    else:
        how = f"{p.ranges:,} ranges ({_mib(p.read_bytes)} read)"
    return (
        f"{p.name}: {p.objects:,} objects, {_mib(p.size)}; commits+trees+tags "
        f"{_mib(p.meta_bytes)} ({p.meta_share:.0%}) in {how}; "
        f"bitmap: {'yes' if p.bitmap else 'no'}"
    )


def summary_lines(report: RepoReport) -> list[str]:
    """The report as text: packs, totals, then warnings and hints with their fixes."""
    lines = [pack_line(p) for p in report.packs]
    if not report.packs:
        lines.append("no packs")
    multi = sum(p.requests_multi for p in report.packs)
    single = sum(p.requests_single for p in report.packs)
    loose = f" + {report.loose_objects:,} loose objects" if report.loose_objects else ""
    lines.append(
        f"a lazy clone (--no-checkout) reads {_mib(report.clone_bytes)}: ranges of "
        f"{len(report.packs)} pack(s) in {multi:,} requests ({single:,} without multi-range), "
        f"{_mib(report.idx_bytes)} of .idx, {_mib(report.bitmap_head_bytes)} of bitmap "
        f"heads{loose}"
    )
    for f in report.findings:
        lines.append(f"{f.level}: {f.message} (fix: {f.fix})")
    lines.append("ready for lazy clones" if report.ready else "not ready for lazy clones")
    return lines
