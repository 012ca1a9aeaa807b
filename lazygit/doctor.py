"""`lazygit doctor` and `lazygit status`: what is set up, what is wrong, and how to fix it.

doctor checks the pieces a lazy fetch passes through, in the order git meets them: git
itself, ``git-remote-lazy`` and its interpreter, the clone's config, the daemon, the server
(reachable, byte ranges, bitmaps) and the local promisor packs.  Every line is OK, WARN or
FAIL, and every WARN or FAIL names a fix.  status says how much of HEAD is local.  Neither
ever fetches an object: presence is read from the object store, never asked of git.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lazygit.config import Settings, promisor_remote, remote_config
from lazygit.errors import DaemonError, HTTPStatusError, LazyGitError
from lazygit.gitcmd import git_env, run_git
from lazygit.localrepo import LocalRepo
from lazygit.maintenance import promisor_packs
from lazygit.progress import counted
from lazygit.progress import human_size as _size

OK, WARN, FAIL = "OK", "WARN", "FAIL"
#: git versions (per minor release line) that honour GIT_NO_LAZY_FETCH (May 2024 fixes).
NO_LAZY_FETCH_SINCE = {39: 4, 40: 2, 41: 1, 42: 2, 43: 4, 44: 1, 45: 1}
RECOMMENDED_GIT = (2, 39)
#: Below this, git's partial clone lacks what lazygit relies on.
MINIMUM_GIT = (2, 27)
#: At most this many server packs get a .bitmap probe (one HEAD request each).
MAX_BITMAP_PROBES = 20


class DoctorFailedError(LazyGitError):
    """At least one check failed (exit status 1); the checks above name the fixes."""

    def __init__(self, report: DoctorReport) -> None:
        failed = [c.name for c in report.checks if c.status == FAIL]
        super().__init__(f"{len(failed)} check(s) failed: {', '.join(failed)}", "see FAIL above")


@dataclass
class Check:
    """One diagnosis: status OK, WARN or FAIL; a WARN or FAIL carries a concrete fix."""

    name: str
    status: str
    message: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class DoctorReport:
    checks: list[Check]

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": not self.failed,
            "checks": [asdict(c) for c in self.checks],
        }

    def lines(self) -> list[str]:
        out = []
        for c in self.checks:
            out.append(f"{c.status:<4} {c.name}: {c.message}")
            if c.fix and c.status != OK:
                out.append(f"     fix: {c.fix}")
        return out


# ---------------------------------------------------------------------------------------
# git


def _git_version_text() -> str:
    return run_git(["--version"]).stdout.decode().strip()


def parse_git_version(text: str) -> tuple[int, int, int]:
    """'git version 2.39.5' -> (2, 39, 5); (0, 0, 0) when unrecognisable."""
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return (0, 0, 0)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def no_lazy_fetch_by_version(v: tuple[int, int, int]) -> bool:
    """Whether this git version honours GIT_NO_LAZY_FETCH (2.45.1 and the backports)."""
    if v[0] != 2:
        return v[0] > 2
    if v[1] > 45:
        return True
    since = NO_LAZY_FETCH_SINCE.get(v[1])
    return since is not None and v[2] >= since


def _git_binary_mentions(word: bytes) -> bool | None:
    """Whether the git executable contains ``word`` (None if it cannot be read)."""
    path = shutil.which("git")
    if not path:
        return None
    try:
        with open(os.path.realpath(path), "rb") as f:
            tail = b""
            while chunk := f.read(1 << 20):
                if word in tail + chunk:
                    return True
                tail = chunk[-len(word) :]
    except OSError:
        return None
    return False


def check_git() -> list[Check]:
    """git's version, partial-clone support and GIT_NO_LAZY_FETCH support."""
    text = _git_version_text()
    v = parse_git_version(text)
    shown = ".".join(map(str, v))
    if v[:2] < MINIMUM_GIT:
        version = Check(
            "git",
            FAIL,
            f"{text}: too old for partial clones with a remote helper",
            "install git 2.39 or later",
        )
    elif v[:2] < RECOMMENDED_GIT:
        version = Check(
            "git",
            WARN,
            f"{text}: works, but 2.39 or later is recommended",
            "install git 2.39 or later",
        )
    else:
        version = Check("git", OK, f"{text} (partial clone with promisor remotes)")
    version.data = {"version": shown}
    found = _git_binary_mentions(b"GIT_NO_LAZY_FETCH")
    # The binary naming the variable is proof; a wrapper (e.g. a shim) falls back to the version.
    supported = bool(found) or no_lazy_fetch_by_version(v)
    if supported:
        nlf = Check(
            "GIT_NO_LAZY_FETCH",
            OK,
            "supported: lazygit's own git commands never start nested lazy fetches",
        )
    else:
        nlf = Check(
            "GIT_NO_LAZY_FETCH",
            WARN,
            f"git {shown} ignores GIT_NO_LAZY_FETCH: a git command run by lazygit that touches "
            "a missing object could start a nested lazy fetch",
            "install git 2.39.4, 2.40.2, 2.41.1, 2.42.2, 2.43.4, 2.44.1, 2.45.1 or later",
        )
    nlf.data = {"supported": bool(supported)}
    return [version, nlf]


# ---------------------------------------------------------------------------------------
# git-remote-lazy


def read_shebang(path: Path) -> list[str]:
    """The interpreter command of a script's ``#!`` line ([] if none)."""
    try:
        with open(path, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return []
    if not first.startswith(b"#!"):
        return []
    return first[2:].decode("utf-8", "replace").split()


def resolve_interpreter(shebang: list[str]) -> str | None:
    """The interpreter a shebang runs (``/usr/bin/env python3`` looked up on PATH)."""
    if not shebang:
        return None
    if os.path.basename(shebang[0]) == "env":
        args = [a for a in shebang[1:] if not a.startswith("-")]
        return shutil.which(args[0]) if args else None
    return shebang[0]


def is_shim(interpreter: str) -> bool:
    """A pyenv (or similar) shim: a shell script that finds the real python at every start."""
    if "/shims/" in interpreter.replace(os.sep, "/"):
        return True
    try:
        with open(interpreter, "rb") as f:
            head = f.read(2048)
    except OSError:
        return False
    return head.startswith(b"#!") and (b"pyenv" in head or b"asdf" in head)


def check_helper() -> list[Check]:
    """git-remote-lazy on PATH, the interpreter it runs, and that it imports this lazygit."""
    helper = shutil.which("git-remote-lazy")
    if helper is None:
        return [
            Check(
                "git-remote-lazy",
                FAIL,
                "not on PATH: git cannot fetch missing objects of a lazy clone",
                "put the bin directory of lazygit's installation on PATH "
                "(e.g. pipx install lazygit, or activate its virtualenv)",
            )
        ]
    interp = resolve_interpreter(read_shebang(Path(helper)))
    data: dict[str, Any] = {"path": helper, "interpreter": interp}
    if interp is None or not os.access(interp, os.X_OK):
        return [
            Check(
                "git-remote-lazy",
                FAIL,
                f"{helper} names an interpreter that does not run ({interp or 'no #! line'})",
                "reinstall lazygit (pip install --force-reinstall lazygit)",
                data,
            )
        ]
    checks = []
    if is_shim(interp):
        checks.append(
            Check(
                "interpreter",
                WARN,
                f"{helper} runs {interp}, a pyenv shim: about 150 ms of start-up per batch",
                "install lazygit with the real interpreter (e.g. `$(pyenv which python3) -m pip "
                "install lazygit`, or pipx)",
                data,
            )
        )
    else:
        checks.append(Check("interpreter", OK, f"{helper} runs {interp}", data=data))
    import lazygit

    here = str(Path(lazygit.__file__).resolve().parent)
    proc = subprocess.run(
        [interp, "-c", "import lazygit.helper, os; print(os.path.dirname(lazygit.__file__))"],
        capture_output=True,
        text=True,
        env=git_env(),
        timeout=60,
    )
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["no error message"])[-1]
        checks.append(
            Check(
                "git-remote-lazy",
                FAIL,
                f"{interp} cannot import lazygit: {err}",
                "reinstall lazygit for that interpreter",
                data,
            )
        )
        return checks
    theirs = str(Path(proc.stdout.strip()).resolve())
    data["package"] = theirs
    if theirs != here:
        checks.append(
            Check(
                "git-remote-lazy",
                WARN,
                f"the helper on PATH uses the lazygit in {theirs}, this command the one in {here}",
                "put one installation's bin directory first on PATH",
                data,
            )
        )
    else:
        checks.append(Check("git-remote-lazy", OK, f"{helper} imports lazygit", data=data))
    return checks


# ---------------------------------------------------------------------------------------
# The lazy clone


@dataclass
class Clone:
    """A lazy clone found from the working directory."""

    repo: LocalRepo
    remote: str
    url: str  # without "lazy::"


def find_clone(path: str | Path = ".") -> Clone | None:
    """The lazy clone containing ``path``, or None when it is not in a git repository."""
    try:
        repo = LocalRepo.find(path)
    except LazyGitError:
        return None
    values = remote_config(repo.git_dir)
    remote = promisor_remote(values)
    return Clone(repo, remote, values.get(f"remote.{remote.lower()}.url", ""))


def _config(repo: LocalRepo, key: str, kind: str | None = None) -> str | None:
    """``key``'s value (canonical for a ``kind`` such as "bool", as git reads it)."""
    typed = [f"--type={kind}"] if kind else []
    proc = run_git(["config", *typed, "--get", key], cwd=repo.git_dir, check=False)
    return proc.stdout.decode().strip() or None if proc.returncode == 0 else None


def lazy_url(clone: Clone) -> str | None:
    if clone.url.startswith("lazy::"):
        return clone.url[len("lazy::") :]
    if _config(clone.repo, f"remote.{clone.remote}.vcs") == "lazy":
        return clone.url
    return None


def check_clone(clone: Clone) -> list[Check]:
    """The partial-clone config stock git needs and the lazygit.* settings."""
    repo = clone.repo
    checks = []
    url = lazy_url(clone)
    promisor = _config(repo, f"remote.{clone.remote}.promisor", "bool") == "true"
    partial = _config(repo, "extensions.partialClone")
    if url is None:
        checks.append(
            Check(
                "clone",
                FAIL,
                f"{repo.git_dir} is not a lazy clone (remote.{clone.remote}.url is "
                f"{clone.url or 'unset'})",
                "clone with `lazygit clone URL`, or run `lazygit doctor URL` to check a server",
            )
        )
        return checks
    # git takes either as naming a promisor remote (`git clone --filter` in git 2.39 writes
    # only the first, `lazygit clone` both).
    if not promisor and partial != clone.remote:
        checks.append(
            Check(
                "clone",
                FAIL,
                "the partial-clone config is incomplete: git will not fetch missing objects",
                f"git config remote.{clone.remote}.promisor true",
            )
        )
    else:
        checks.append(
            Check(
                "clone",
                OK,
                f"{repo.git_dir}: partial clone of lazy::{url}",
                data={"git_dir": str(repo.git_dir), "url": url},
            )
        )
    try:
        settings = Settings.load(repo.git_dir)
    except LazyGitError as exc:
        checks.append(Check("settings", FAIL, exc.message, exc.fix or ""))
        return checks
    if settings.unknown:
        keys = ", ".join(f"lazygit.{k}" for k in sorted(settings.unknown))
        checks.append(
            Check(
                "settings",
                WARN,
                f"unknown keys (typos?): {keys}",
                "see docs/configuration.md; remove with git config --unset <key>",
            )
        )
    else:
        checks.append(Check("settings", OK, "lazygit.* settings are valid"))
    return checks


def daemon_stats(git_dir: Path) -> dict[str, Any] | None:
    """The running daemon's statistics, or None when none runs (never starts one)."""
    from lazygit import daemonclient

    try:
        reply = daemonclient.request(git_dir, {"op": "stats"}, start=False, timeout=10)
    except DaemonError:
        return None
    reply.pop("ok", None)
    try:
        info = json.loads((git_dir / "lazygit" / "daemon.json").read_text())
        reply.setdefault("socket", info.get("socket"))
    except (OSError, ValueError):
        pass
    return reply


def check_daemon(clone: Clone) -> Check:
    stats = daemon_stats(clone.repo.git_dir)
    if stats is None:
        return Check(
            "daemon",
            OK,
            "not running (it starts with the next lazy fetch)",
            data={"running": False},
        )
    return Check(
        "daemon",
        OK,
        f"running, pid {stats.get('pid')}, socket {stats.get('socket')}: "
        f"{counted(stats.get('batches', 0), 'batch')}, "
        f"{counted(stats.get('objects', 0), 'object')}, "
        f"{_size(stats.get('bytes', 0))} read, {counted(stats.get('errors', 0), 'error')}",
        data={"running": True, **stats},
    )


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def check_cache(clone: Clone) -> Check:
    repo = clone.repo
    cache = _dir_size(repo.state_dir) if repo.state_dir.is_dir() else 0
    packs = promisor_packs(repo, kept=True)
    stored = sum(p.stat().st_size for p in packs)
    try:
        limit = Settings.load(repo.git_dir).maxPromisorPacks
    except LazyGitError:
        limit = Settings().maxPromisorPacks
    data = {"cache_bytes": cache, "promisor_packs": len(packs), "promisor_bytes": stored}
    message = f".git/lazygit {_size(cache)}; {len(packs)} promisor packs, {_size(stored)}"
    # A merge leaves the packs a .keep file holds: they do not make one due.
    if len(promisor_packs(repo)) > 2 * max(limit, 1):
        return Check(
            "cache",
            WARN,
            f"{message} (consolidation is due beyond lazygit.maxPromisorPacks={limit})",
            "the next lazy fetch consolidates them; or run `git repack -d` in the clone",
            data,
        )
    return Check("cache", OK, message, data=data)


def _verify_checksums(pack: Path) -> str | None:
    """None if the pack's SHA-1 trailer matches its content and its .idx; else why not."""
    idx = pack.with_suffix(".idx")
    try:
        idx_data = idx.read_bytes()
        size = pack.stat().st_size
        if len(idx_data) < 40 or hashlib.sha1(idx_data[:-20]).digest() != idx_data[-20:]:
            return f"{idx.name} is damaged (checksum mismatch)"
        h = hashlib.sha1()
        with open(pack, "rb") as f:
            remaining = size - 20
            if remaining < 12:
                return f"{pack.name} is truncated"
            while remaining > 0:
                chunk = f.read(min(1 << 20, remaining))
                if not chunk:
                    return f"{pack.name} is truncated"
                h.update(chunk)
                remaining -= len(chunk)
            trailer = f.read(20)
    except OSError as exc:
        return f"cannot read {pack.name}: {exc.strerror}"
    if h.digest() != trailer:
        return f"{pack.name} is damaged (its content does not match its checksum)"
    if idx_data[-40:-20] != trailer:
        return f"{idx.name} belongs to another pack"
    return None


def _verify_full(pack: Path, cwd: Path) -> str | None:
    """`git verify-pack`: inflates every object and checks its hash (slow, thorough)."""
    proc = run_git(["verify-pack", str(pack.with_suffix(".idx"))], cwd=cwd, check=False)
    if proc.returncode != 0:
        from lazygit.gitcmd import first_error_line

        return f"{pack.name}: {first_error_line(proc.stderr)}"
    return None


def damaged_packs(clone: Clone, *, full: bool) -> list[tuple[Path, str]]:
    """Local promisor packs that fail their checksums (or, with ``full``, git verify-pack)."""
    bad = []
    for pack in promisor_packs(clone.repo, kept=True):
        why = _verify_checksums(pack)
        if why is None and full:
            why = _verify_full(pack, clone.repo.git_dir)
        if why:
            bad.append((pack, why))
    return bad


def repair(clone: Clone, *, full: bool) -> list[str]:
    """Move damaged promisor packs to .git/lazygit/damaged/ and fetch what they held again.

    The objects are listed from the pack's .idx when that is intact (else they come back on
    demand, as every promisor object can).  Returns one line per repaired pack.
    """
    from lazygit.sparsecmd import open_engine

    lines = []
    for pack, why in damaged_packs(clone, full=full):
        oids = _idx_oids(pack.with_suffix(".idx"))
        aside = clone.repo.state_dir / "damaged"
        aside.mkdir(parents=True, exist_ok=True)
        for suffix in (".pack", ".idx", ".rev", ".bitmap", ".promisor", ".keep"):
            f = pack.with_suffix(suffix)
            if f.exists():
                os.replace(f, aside / f.name)
        fetched = 0
        if oids:
            with open_engine(clone.repo, Settings.load(clone.repo.git_dir)) as engine:
                stats = engine.fetch(oids)
                fetched = stats.objects
        lines.append(f"{pack.name}: {why}; moved to {aside}, {fetched} objects fetched again")
    return lines


def _idx_oids(idx: Path) -> list[bytes]:
    """The object ids a pack index lists, or [] when the index itself is damaged."""
    try:
        data = idx.read_bytes()
    except OSError:
        return []
    if len(data) < 1072 or hashlib.sha1(data[:-20]).digest() != data[-20:]:
        return []
    if data[:8] != b"\xfftOc\x00\x00\x00\x02":
        return []
    n = int.from_bytes(data[8 + 255 * 4 : 8 + 256 * 4], "big")
    start = 8 + 256 * 4
    return [data[start + 20 * i : start + 20 * (i + 1)] for i in range(n)]


def check_integrity(clone: Clone, *, full: bool) -> Check:
    """Local promisor packs: SHA-1 trailers (fast), or every object with --full."""
    packs = promisor_packs(clone.repo, kept=True)
    bad = damaged_packs(clone, full=full)
    how = "every object checked (git verify-pack)" if full else "checksums match"
    data = {"packs": len(packs), "damaged": [str(p) for p, _ in bad], "full": full}
    if bad:
        names = " ".join(str(p.with_suffix(".*")) for p, _ in bad)
        return Check(
            "integrity",
            FAIL,
            "; ".join(why for _, why in bad),
            f"run `lazygit doctor --repair` (or move {names} away: lazygit fetches what it "
            "held again on demand)",
            data,
        )
    return Check("integrity", OK, f"{len(packs)} promisor packs: {how}", data=data)


# ---------------------------------------------------------------------------------------
# The server


def check_server(
    url: str,
    settings: Settings,
    known_packs: set[str] | None = None,
    git_dir: Path | None = None,
) -> list[Check]:
    """Reachability, refs, Range / multi-range support and bitmaps of the server's packs."""
    from lazygit.discovery import discover
    from lazygit.remote import DumbRemote, RangeMode

    checks: list[Check] = []
    # The clone's git_dir: its http.* settings and credential helpers apply, as for the daemon.
    with DumbRemote(url, settings, git_dir=git_dir) as remote:
        t0 = time.monotonic()
        try:
            repo = discover(remote, connect_alternate=lambda u: DumbRemote(u, settings))
        except LazyGitError as exc:
            return [Check("server", FAIL, exc.message, exc.fix or "check the URL and the server")]
        ms = (time.monotonic() - t0) * 1000
        packs = [(s, n) for s in repo.sources for n in s.packs]
        checks.append(
            Check(
                "server",
                OK,
                f"{remote.url} answers: {len(repo.refs)} refs, HEAD "
                f"{repo.head_target or 'detached'}, {len(packs)} packs ({ms:.0f} ms)",
                data={"url": remote.url, "refs": len(repo.refs), "packs": len(packs)},
            )
        )
        if not packs:
            checks.append(
                Check(
                    "ranges",
                    WARN,
                    "the server lists no packs: every object is fetched loose, one per request",
                    "run `lazygit prepare DIR` in the bare repository on the server",
                )
            )
            return checks
        infos = []
        for source, name in packs[:MAX_BITMAP_PROBES]:
            infos.append((source, name, remote_stat(source, f"pack/{name}.pack")))
        source0, name0, info0 = max(infos, key=lambda t: t[2].size if t[2] else -1)
        if info0 is None:
            checks.append(
                Check(
                    "ranges",
                    FAIL,
                    f"{name0}.pack is listed in objects/info/packs but missing",
                    "run `git update-server-info` (or `lazygit prepare DIR`) on the server",
                )
            )
        else:
            mode = source0.remote.range_mode(info0)
            data = {"mode": mode.value, "probed": info0.path}
            if mode is RangeMode.MULTI:
                checks.append(
                    Check("ranges", OK, "byte ranges and multi-range requests", data=data)
                )
            elif mode is RangeMode.SINGLE:
                checks.append(
                    Check(
                        "ranges",
                        WARN,
                        "single byte ranges only (no multi-range): one request per range, "
                        "slower on high-latency links (Amazon S3 behaves like this)",
                        "serve through nginx or a CDN that answers multipart/byteranges",
                        data,
                    )
                )
            else:
                checks.append(
                    Check(
                        "ranges",
                        FAIL,
                        "the server ignores Range: every read transfers whole packs",
                        "serve the repository with a server that honours Range (nginx, "
                        "`lazygit serve`, an object store)",
                        data,
                    )
                )
        without = []
        refused = []  # .bitmap answered 403: absent on an object store, or refused
        cruft = []  # git gc's unreachable objects: a clone does not read them (catalog.py)
        for source, name, info in infos:
            if info is None:
                continue
            got = _stat_or_status(source, f"pack/{name}.bitmap")
            if got == 403:
                refused.append(name)
            if isinstance(got, int):
                if (
                    info.size > settings.smallPackBytes
                    and remote_stat(source, f"pack/{name}.mtimes") is not None
                ):
                    cruft.append(name)
                else:
                    without.append((name, info.size))
        # Packs without a .bitmap may have their types in the multi-pack-index's bitmap.
        by_midx: list[str] = []
        if without:
            from lazygit.catalog import read_midx

            sources = {id(src): src for src, name, _ in infos if any(name == w for w, _ in without)}
            for src in sources.values():
                layout = read_midx(src)
                if layout is not None:
                    by_midx += [n for n, _ in without if n in layout.names]
            without = [(n, size) for n, size in without if n not in by_midx]
        refused = [n for n in refused if any(n == w for w, _ in without)]
        probed = len(infos) - len(cruft)
        data = {
            "probed": probed,
            "without_bitmap": [n for n, _ in without],
            "refused_bitmap": refused,
            "cruft": cruft,
            "midx_bitmap": by_midx,
        }
        and_cruft = f", and {counted(len(cruft), 'cruft pack')} (not read)" if cruft else ""
        if by_midx:
            and_cruft = f" ({len(by_midx)} by the multi-pack-index bitmap){and_cruft}"
        if without:
            big = sum(size for _, size in without)
            checks.append(
                Check(
                    "bitmaps",
                    WARN,
                    f"{len(without)} of {probed} packs {'has' if len(without) == 1 else 'have'} "
                    f"no .bitmap ({_size(big)}): clones "
                    f"scan their headers to find commits and trees{and_cruft}"
                    + (
                        f"; for {len(refused)} the server answered 403, not 404 (an object "
                        "store does so for a missing file; a server may refuse the file)"
                        if refused
                        else ""
                    ),
                    (
                        "if the .bitmap files are there, let the server publish them (as the "
                        "nginx block in docs/server-guide.md does); else run `lazygit prepare "
                        "DIR` in the bare repository on the server"
                        if refused
                        else "run `lazygit prepare DIR` in the bare repository on the server"
                    ),
                    data,
                )
            )
        else:
            every = "the pack has" if probed == 1 else f"all {probed} packs have"
            checks.append(Check("bitmaps", OK, f"{every} a bitmap{and_cruft}", data=data))
        if known_packs is not None:
            listed = {n for _, n in packs}
            new = listed - known_packs
            gone = known_packs - listed
            parts = []
            if new:
                parts.append(f"{len(new)} new since the clone (git fetch reads their commits)")
            if gone:
                parts.append(f"{len(gone)} repacked away (lazy fetches find their objects anew)")
            checks.append(
                Check(
                    "server packs",
                    OK,
                    "; ".join(parts) if parts else "unchanged since the clone",
                    data={"new": sorted(new), "gone": sorted(gone)},
                )
            )
    return checks


def remote_stat(source: Any, rel: str) -> Any:
    """FileInfo of a server file, None when it is absent (404/410, or an object store's 403)."""
    got = _stat_or_status(source, rel)
    return None if isinstance(got, int) else got


def _stat_or_status(source: Any, rel: str) -> Any:
    """FileInfo of a server file, or the status that said it is absent (404, 410, or 403: an
    object store's answer for a missing file, or a refusal)."""
    try:
        return source.remote.stat(source.path(rel))
    except HTTPStatusError as exc:
        if exc.absent:
            return exc.status
        raise


def _known_packs(clone: Clone) -> set[str] | None:
    try:
        doc = json.loads((clone.repo.state_dir / "catalog.json").read_text())
        return {p["name"] for p in doc["packs"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def doctor(
    url: str | None = None,
    *,
    path: str | Path = ".",
    full: bool = False,
    on_check: Callable[[Check], None] | None = None,
) -> DoctorReport:
    """Run every check that applies: inside a lazy clone all of them, with a URL the server's."""
    checks: list[Check] = []

    def add(items: list[Check] | Check) -> None:
        for c in items if isinstance(items, list) else [items]:
            checks.append(c)
            if on_check:
                on_check(c)

    add(check_git())
    add(check_helper())
    clone = find_clone(path) if url is None else None
    settings = Settings()
    known: set[str] | None = None
    if url is None:
        if clone is None:
            add(
                Check(
                    "clone",
                    FAIL,
                    "not inside a git repository",
                    "run `lazygit doctor` in a lazy clone, or `lazygit doctor URL`",
                )
            )
            return DoctorReport(checks)
        clone_checks = check_clone(clone)
        add(clone_checks)
        url = lazy_url(clone)
        if url is None:
            return DoctorReport(checks)
        try:
            settings = Settings.load(clone.repo.git_dir)
        except LazyGitError:
            settings = Settings()
        add(check_daemon(clone))
        add(check_cache(clone))
        add(check_integrity(clone, full=full))
        known = _known_packs(clone)
    else:
        settings = Settings.load()
    add(check_server(url, settings, known, clone.repo.git_dir if clone else None))
    return DoctorReport(checks)


# ---------------------------------------------------------------------------------------
# status


@dataclass
class StatusReport:
    """How much of HEAD's checkout is local, what is stored, and the daemon's counters."""

    git_dir: str
    url: str | None
    head: str | None  # branch name or None when detached
    commit: str | None
    sparse: bool
    blobs: int = 0  # distinct blobs the checkout of HEAD needs (within the sparse cone)
    local: int = 0
    missing: int = 0
    missing_server_bytes: int | None = None  # their entries' size in the server's packs
    promisor_packs: int = 0
    stored_bytes: int = 0  # bytes of promisor packs: what came from the server, compressed
    cache_bytes: int = 0  # .git/lazygit (server .idx copies, bitmap heads, catalog)
    daemon: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"repository: {self.git_dir}"]
        if self.url:
            out.append(f"server: {self.url}")
        out.append(
            f"HEAD: {self.head or 'detached'} at {self.commit[:12] if self.commit else 'none'}"
            + (" (sparse checkout)" if self.sparse else "")
        )
        more = ""
        if self.missing and self.missing_server_bytes is not None:
            more = f" (about {_size(self.missing_server_bytes)} on the server)"
        out.append(
            f"blobs of HEAD{' in the cone' if self.sparse else ''}: {self.blobs:,}; "
            f"{self.local:,} local, {self.missing:,} missing{more}"
        )
        out.append(
            f"stored: {self.promisor_packs} promisor packs, {_size(self.stored_bytes)} "
            f"(everything read from the server so far, as stored); "
            f".git/lazygit {_size(self.cache_bytes)}"
        )
        if self.daemon is None:
            out.append("daemon: not running")
        else:
            d = self.daemon
            out.append(
                f"daemon: pid {d.get('pid')}, this session "
                f"{counted(d.get('batches', 0), 'batch')}, "
                f"{counted(d.get('objects', 0), 'object')}, "
                f"{_size(d.get('bytes', 0))} read from the server, "
                f"block cache {_size(d.get('cache_bytes', 0))} "
                f"({d.get('cache_hits', 0)} hits, {d.get('cache_misses', 0)} misses)"
            )
        return out


def _missing_sizes(repo: LocalRepo, oids: list[bytes]) -> int | None:
    """Their entries' size in the server packs, from the clone's cached catalog (no network)."""
    cache = repo.state_dir
    if not (cache / "catalog.json").is_file():
        return None
    from lazygit.catalog import Catalog
    from lazygit.remote import DumbRemote

    settings = Settings()
    remotes: list[DumbRemote] = []

    def connect(u: str) -> DumbRemote:
        remotes.append(DumbRemote(u, settings))
        return remotes[-1]

    try:
        catalog = Catalog.open(cache, connect)
    except (OSError, ValueError, KeyError, LazyGitError):
        return None
    try:
        total = 0
        for oid in oids:
            loc = catalog.locate(oid)
            if loc is not None:
                total += loc[0].pack.extent_at(loc[1]).length
        return total
    finally:
        for r in remotes:
            r.close()


def status(path: str | Path = ".") -> StatusReport:
    """HEAD's blobs local/missing (sparse cone honoured), stored bytes, daemon counters."""
    from lazygit.sparse import checkout_blobs, matcher

    clone = find_clone(path)
    if clone is None:
        raise LazyGitError(f"{path} is not inside a git repository", "run it in a lazy clone")
    repo = clone.repo.ensure_lazy_clone()
    url = lazy_url(clone)
    try:
        commit = repo.rev_parse("HEAD") or None
    except LazyGitError:
        commit = None  # an empty repository
    proc = run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], cwd=repo.cwd, check=False)
    head = proc.stdout.decode().strip() or None
    match = matcher(repo)
    report = StatusReport(str(repo.git_dir), url, head, commit, match is not None)
    if commit:
        blobs = checkout_blobs(repo.ls_tree("HEAD"), match)
        missing = repo.local_objects().missing(blobs)
        report.blobs = len(blobs)
        report.missing = len(missing)
        report.local = report.blobs - report.missing
        if missing:
            report.missing_server_bytes = _missing_sizes(repo, missing)
    packs = promisor_packs(repo, kept=True)
    report.promisor_packs = len(packs)
    report.stored_bytes = sum(p.stat().st_size for p in packs)
    report.cache_bytes = _dir_size(repo.state_dir) if repo.state_dir.is_dir() else 0
    report.daemon = daemon_stats(repo.git_dir)
    return report


def iter_lines(report: DoctorReport | StatusReport) -> Iterator[str]:
    yield from report.lines()
