"""Benchmarks: lazygit side by side with git's own smart and dumb HTTP, one run, medians.

Serves one sample repository with nginx on 127.0.0.1 twice -- as static files (dumb HTTP, what
lazygit reads) and through `git http-backend` (smart HTTP, filters allowed) -- and times each
operation several times per tool, alternating tools so machine noise hits all alike.  Bytes
and requests come from nginx's access log.  Writes docs/benchmarks.md.

    python benchmarks/run.py [--size bench|large|small] [--runs 5] [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from servers import Nginx, status_kb  # noqa: E402

from lazygit import sample  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prefetch_bench import (  # noqa: E402
    BENCH,
    blobs_read,
    needed_bytes,
    pack_entries,
    stop_daemon,
)

SIZES = {"bench": BENCH, "large": sample.LARGE, "small": sample.SMALL, "tiny": sample.TINY}
GIT_ENV = {
    **os.environ,
    "LC_ALL": "C",
    "GIT_TERMINAL_PROMPT": "0",
    # Every measured lazy clone starts with a cold daemon unless an operation says otherwise.
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "lazygit.prestartDaemon",
    "GIT_CONFIG_VALUE_0": "false",
}
#: The one-blob-at-a-time commands of issue 4, as git runs them.
HISTORY_COMMANDS = {
    "blame": ["git", "blame", "HEAD", "--", sample.HOT_FILE],
    "log -p -300": ["git", "log", "-p", "-300"],
    "grep REV": ["git", "grep", "-c", "fetch", "HEAD"],
}
#: Also run once with the history prefetch off (lazygit.prefetchBytes 0), to measure what it
#: saves and what it reads in excess.  grep REV would make 5,103 requests: git's partial
#: clone row shows that cost.
PREFETCH_OFF = ("blame", "log -p -300")
#: Clones started at once in the concurrency benchmark.
CONCURRENT = 8
#: The round trip of the "distant" clones (delayproxy.py between the tools and nginx).
DISTANT_RTT_MS = 50
#: What a lazygit process imports before it does its work: the clone's path, git-remote-lazy's,
#: and a cold daemon's before it answers its first request (the history index included).
CLONE_IMPORTS = "import lazygit.cli, lazygit.clone"
HELPER_IMPORTS = "import lazygit.helper"
DAEMON_IMPORTS = (
    "import lazygit.daemon, lazygit.blockcache, lazygit.catalog, lazygit.fetch, lazygit.prefetch"
)
#: Rows of the floors (operation names start so), shown apart from the measured commands.
FLOOR = "floor: "
INDEX_BLOBS = "git index-pack of the blobs it reads"


@dataclass
class Sample:
    wall: float
    cpu: float
    bytes: int
    requests: int
    rss_mb: float = 0.0
    server_cpu: float = 0.0
    daemon_rss_mb: float = 0.0


@dataclass
class Row:
    operation: str
    tool: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)


_PEAK_RSS_KB = [0]
#: GNU time reports the peak RSS of the command's own process tree.  The kernel's figure for
#: a child of this process (wait4) starts at this process's own RSS, inherited through fork.
_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
_RSS_MARK = "lazygit-bench-peak-rss-kb="


#: A clone as users make it: the daemon is started at its end and writes the history index.
PRESTART_ENV = {**GIT_ENV, "GIT_CONFIG_VALUE_0": "true"}


def start(
    cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    argv = [_TIME, "-f", f"{_RSS_MARK}%M", *cmd] if _TIME else cmd
    return subprocess.Popen(
        argv, cwd=cwd, env=env or GIT_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def finish(proc: subprocess.Popen[bytes], cmd: list[str]) -> None:
    """Wait for ``proc``, keep its peak RSS, fail loudly if it failed.

    Its stderr is read while it runs: git's partial clone, lazily fetching 5,103 blobs one
    at a time, wrote more than a pipe holds (gc --auto's notices) and waited for a reader
    that waited for it to exit."""
    chunks: list[bytes] = []
    reader = threading.Thread(
        target=lambda: chunks.append(proc.stderr.read() if proc.stderr else b""), daemon=True
    )
    reader.start()
    _, status, _usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(60)  # (a detached grandchild may hold stderr open: do not wait for it long)
    lines = b"".join(chunks).decode(errors="replace").splitlines()
    for line in lines:
        if line.startswith(_RSS_MARK):
            _PEAK_RSS_KB[0] = max(_PEAK_RSS_KB[0], int(line[len(_RSS_MARK) :]))
    err = "\n".join(line for line in lines if not line.startswith(_RSS_MARK))
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}\n{err[-2000:]}")


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    finish(start(cmd, cwd, env), cmd)


def wait_for_history_index(repo: Path, limit: float = 60.0) -> None:
    """Wait until the daemon the clone started has written its history index."""
    path = repo / ".git" / "lazygit" / "history.idx"
    deadline = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no history index in {repo} after {limit:.0f} s")
        time.sleep(0.05)


def settle(repo: Path, limit: float = 30.0) -> None:
    """Wait until the family prefetch a daemon starts after answering a lone request has
    ended, so that its reads do not land in the next measurement.  The daemon plans it once
    its history index is loaded (waiting for that at most 3 s)."""
    log = repo / ".git" / "lazygit" / "daemon.log"

    def lines() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    start = time.monotonic()
    while not any(" history index" in ln for ln in lines()) and time.monotonic() < start + 5:
        time.sleep(0.05)
    time.sleep(0.3)  # a family planned just now logs its line first
    while True:
        now = lines()
        last = max((i for i, ln in enumerate(now) if "after the answer" in ln), default=-1)
        if last < 0 or any(" batch: " in ln for ln in now[last + 1 :]):
            return
        if time.monotonic() > start + limit:
            raise SystemExit(f"the daemon of {repo} still fetches after {limit:.0f} s")
        time.sleep(0.05)


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy (user+nice+system+irq+softirq), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = sum(int(fields[i]) for i in (0, 1, 2, 5, 6))
    return ticks / os.sysconf("SC_CLK_TCK")


def daemon_peak_rss_mb(pids: Iterable[int]) -> float:
    """The largest peak RSS (VmHWM: since it started) of these daemons."""
    return max((status_kb(pid, "VmHWM") or 0 for pid in pids), default=0) / 1024


def daemon_cpu_seconds() -> dict[int, float]:
    """CPU time of every running lazygit daemon, by pid.  Daemons are detached, so their
    time is not in RUSAGE_CHILDREN; it belongs to the client all the same."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"lazygit.daemon" not in (proc / "cmdline").read_bytes():
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(proc.name)] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return out


def measure(
    servers: list[Nginx], step: Callable[[], None], then: Callable[[], None] | None = None
) -> Sample:
    """Wall time, client CPU (lazygit's daemons included) and peak RSS, what the servers'
    logs saw, and the server's CPU (the machine's busy time minus the client's: client and
    server share these cores).  ``then`` waits for work the step left running (a family
    prefetch after the answer): counted in CPU and bytes, not in the wall time."""
    for s in servers:
        s.clear_log()
    _PEAK_RSS_KB[0] = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    daemons0 = daemon_cpu_seconds()
    busy0 = busy_cpu_seconds()
    t0 = time.perf_counter()
    step()
    wall = time.perf_counter() - t0
    if then is not None:
        then()
    daemons1 = daemon_cpu_seconds()
    # The daemons that worked during the step (one left from an earlier step may idle).
    daemon_rss = daemon_peak_rss_mb(p for p, t in daemons1.items() if t > daemons0.get(p, -1.0))
    busy = busy_cpu_seconds() - busy0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    daemons = sum(t - daemons0.get(pid, 0.0) for pid, t in daemons1.items())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) + daemons
    entries = [e for s in servers for e in s.log_entries()]
    return Sample(
        wall,
        cpu,
        sum(e.bytes for e in entries),
        len(entries),
        rss_mb=_PEAK_RSS_KB[0] / 1024,
        server_cpu=max(0.0, busy - cpu),
        daemon_rss_mb=daemon_rss,
    )


class Bench:
    def __init__(self, out: Path, spec: sample.SampleSpec, runs: int) -> None:
        self.out = out
        self.spec = spec
        self.runs = runs
        self.rows: dict[tuple[str, str], Row] = {}
        #: Bytes an operation needs (its blobs and their delta chains as stored on the server).
        self.needed: dict[str, int] = {}
        self.scratch = out / "scratch"
        self.trash = out / "trash"

    def record(self, operation: str, tool: str, s: Sample) -> None:
        self.rows.setdefault((operation, tool), Row(operation, tool)).samples.append(s)

    def fresh(self, name: str) -> Path:
        """An empty scratch path.  What was there is set aside, not deleted: ext4 scans
        past recently deleted inodes when it creates files, and a checkout measured right
        after deleting another one took 3-6 s of system time instead of 0.4 s."""
        path = self.scratch / name
        if path.exists():
            stop_daemon(path)
            self.trash.mkdir(parents=True, exist_ok=True)
            path.rename(self.trash / f"{name}-{time.monotonic_ns()}")
        self.scratch.mkdir(parents=True, exist_ok=True)
        return path

    def main(self) -> None:
        # Byte-compile lazygit as `pip install` of a wheel does: an editable install under
        # PYTHONDONTWRITEBYTECODE=1 (as on these machines) compiles every module at every
        # start, which costs the clone ~70 ms and every helper and daemon start some too.
        run([sys.executable, "-m", "compileall", "-q", str(ROOT / "lazygit")])
        server_root = self.out / "server"
        repo = server_root / "bench.git"
        if not repo.exists():
            print("generating the benchmark repository ...", flush=True)
            server_root.mkdir(parents=True, exist_ok=True)
            self.info = sample.make_server_repo(repo, self.spec)
            (self.out / "info.json").write_text(
                json.dumps(
                    {
                        "objects": self.info.objects,
                        "commits": self.info.commits,
                        "files": self.info.files,
                        "hot_file": self.info.hot_file,
                    }
                )
            )
        meta = json.loads((self.out / "info.json").read_text())
        self.meta = meta
        with (
            Nginx(server_root, self.out / "nginx-static") as static,
            Nginx(server_root, self.out / "nginx-smart", smart=True) as smart,
        ):
            both = [static, smart]
            dumb_url, smart_url = static.url("bench.git"), smart.url("bench.git")
            # The warm request is for another file: the cold one brought the hot file's
            # other versions (the family prefetch), so an old version of it is not missing.
            blobs = (self.old_blob(repo, 0.6), self.old_blob(repo, 0.5, self.other_file(repo)))
            entries = pack_entries(repo)
            full = self.fresh("full-history")
            run(["git", "clone", "-q", "--no-local", str(repo), str(full)])
            for i in range(self.runs):
                print(f"run {i + 1}/{self.runs}", flush=True)
                self.clones(both, dumb_url, smart_url, i)
                self.on_demand(both, dumb_url, smart_url, blobs)
                self.browse(both, dumb_url, smart_url, repo)
                self.sparse_add(both, dumb_url, smart_url)
                self.history(both, dumb_url, smart_url, full, entries, i)
        self.report(meta)
        shutil.rmtree(self.trash, ignore_errors=True)  # deleted now that nothing is measured

    def old_revs(self, repo: Path, path: str) -> list[str]:
        """The commits that changed ``path``, newest first."""
        return subprocess.run(
            ["git", "-C", str(repo), "log", "--format=%H", "--", path],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()

    def old_blob(self, repo: Path, share: float, path: str | None = None) -> str:
        """A blob of an old version of ``path`` (the hot file by default), ``share`` of the
        way back in its history: what a user asks for with `git show OLD:PATH`."""
        path = path or self.meta["hot_file"]
        revs = self.old_revs(repo, path)
        rev = revs[int(len(revs) * share)]
        return subprocess.run(
            ["git", "-C", str(repo), "rev-parse", f"{rev}:{path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def other_file(self, repo: Path) -> str:
        """The most often changed source file besides the hot one."""
        names = subprocess.run(
            ["git", "-C", str(repo), "log", "--format=", "--name-only", "--no-renames"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        counts = collections.Counter(n for n in names if n.endswith(".py"))
        counts.pop(self.meta["hot_file"], None)
        return counts.most_common(1)[0][0]

    def clones(self, both: list[Nginx], dumb_url: str, smart_url: str, run_index: int) -> None:
        op = "clone --no-checkout"
        tools: list[tuple[str, str, list[str]]] = [
            ("lazygit", "lazy", ["lazygit", "clone", "-q", "--no-checkout", dumb_url]),
            ("git clone lazy:: (git-remote-lazy)", "lazy-by-git",
             ["git", "clone", "-q", "--filter=blob:none", "--no-checkout", f"lazy::{dumb_url}"]),
            ("git partial (smart)", "partial",
             ["git", "clone", "-q", "--filter=blob:none", "--no-checkout", smart_url]),
            ("git full (smart)", "full-smart", ["git", "clone", "-q", "--no-checkout", smart_url]),
            ("git full (dumb HTTP)", "full-dumb",
             ["git", "clone", "-q", "--no-checkout", dumb_url]),
        ]  # fmt: skip
        # Each run starts with another tool. With lazygit's clone first in every run, it
        # measured 0.711 s against 0.494 s for git's clone of lazy::, which does the same
        # work; by hand, alternated, they took the same (0.47-0.54 s and 0.43-0.53 s).
        k = run_index % len(tools)
        for tool, scratch, argv in tools[k:] + tools[:k]:
            dest = self.fresh(scratch)
            cmd = [*argv, str(dest)]
            self.record(op, tool, measure(both, lambda cmd=cmd: run(cmd)))
            stop_daemon(dest)
        self.floors(both, self.scratch / "partial")
        self.concurrent(both, dumb_url, smart_url)
        self.distant(both)

    def floors(self, both: list[Nginx], partial: Path) -> None:
        """What no lazygit run can go below, in this run: a Python process with its imports,
        and `git index-pack` of the commits and trees that git's partial clone received (the
        same objects lazygit's clone indexes: both tools pay for it)."""
        py = sys.executable
        for what, code in (
            ("clone", CLONE_IMPORTS),
            ("git-remote-lazy", HELPER_IMPORTS),
            ("cold daemon", DAEMON_IMPORTS),
        ):
            step = functools.partial(run, [py, "-c", code])
            self.record(f"{FLOOR}{what}", "Python and its imports", measure(both, step))
        pack = max((partial / ".git" / "objects" / "pack").glob("*.pack"), key=os.path.getsize)
        what = "git index-pack of the commits and trees"
        self.record(f"{FLOOR}clone", what, measure(both, self.index_pack(pack)))

    def index_pack(self, pack: Path) -> Callable[[], None]:
        """A step that has `git index-pack --stdin` index ``pack`` into an empty repository."""
        target = self.fresh("index-pack")
        run(["git", "init", "-q", "--bare", str(target)])

        def index() -> None:
            with pack.open("rb") as f:
                subprocess.run(
                    ["git", "index-pack", "--stdin"], stdin=f, cwd=target, env=GIT_ENV,
                    stdout=subprocess.DEVNULL, check=True,
                )  # fmt: skip
            for p in (target / "objects" / "pack").iterdir():
                p.unlink()  # the next run indexes into an empty repository again

        return index

    def index_floor(self, both: list[Nginx], full: Path, name: str, blobs: set[str]) -> None:
        """`git index-pack` of the blobs a history command reads, packed as git packs them
        (`pack-objects`, deltas among them only): what any client that checks their hashes
        with git pays before the command can read them."""
        pack = self.scratch / f"blobs-{name.split()[0]}.pack"
        if not pack.exists():
            with pack.open("wb") as out:
                subprocess.run(
                    ["git", "pack-objects", "--stdout", "-q"], cwd=full, env=GIT_ENV,
                    input="".join(f"{b}\n" for b in sorted(blobs)).encode(), stdout=out,
                    check=True,
                )  # fmt: skip
        self.record(f"{FLOOR}{name}", INDEX_BLOBS, measure(both, self.index_pack(pack)))

    def distant(self, both: list[Nginx]) -> None:
        """The clone from a server DISTANT_RTT_MS away: what the round trips in a row cost."""
        op = f"clone --no-checkout, {DISTANT_RTT_MS} ms round trip"
        script = str(ROOT / "benchmarks" / "delayproxy.py")
        proxies = []
        for server in both:
            argv = [sys.executable, script, str(server.port), str(DISTANT_RTT_MS)]
            proxies.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
        try:
            dumb_port, smart_port = (int(p.stdout.readline()) for p in proxies if p.stdout)
            for tool, scratch, argv in (
                ("lazygit", "distant-lazy",
                 ["lazygit", "clone", "-q", "--no-checkout",
                  f"http://127.0.0.1:{dumb_port}/bench.git"]),
                ("git partial (smart)", "distant-partial",
                 ["git", "clone", "-q", "--filter=blob:none", "--no-checkout",
                  f"http://127.0.0.1:{smart_port}/bench.git"]),
            ):  # fmt: skip
                dest = self.fresh(scratch)
                cmd = [*argv, str(dest)]
                self.record(op, tool, measure(both, lambda cmd=cmd: run(cmd)))
                stop_daemon(dest)
        finally:
            for p in proxies:
                p.kill()
                p.wait()

    def concurrent(self, both: list[Nginx], dumb_url: str, smart_url: str) -> None:
        """CONCURRENT clones at once: total time and what it costs the server."""
        op = f"{CONCURRENT} concurrent clones --no-checkout"
        for tool, argv in (
            ("lazygit", lambda d: ["lazygit", "clone", "-q", "--no-checkout", dumb_url, d]),
            (
                "git partial (smart)",
                lambda d: [
                    "git",
                    "clone",
                    "-q",
                    "--filter=blob:none",
                    "--no-checkout",
                    smart_url,
                    d,
                ],
            ),
        ):
            dests = [str(self.fresh(f"conc{k}")) for k in range(CONCURRENT)]

            def step(argv=argv, dests=dests) -> None:
                procs = [(start(argv(d)), argv(d)) for d in dests]
                for proc, cmd in procs:
                    finish(proc, cmd)

            self.record(op, tool, measure(both, step))
            for d in dests:
                stop_daemon(Path(d))

    def sparse_add(self, both: list[Nginx], dumb_url: str, smart_url: str) -> None:
        """Widen a top-level-only sparse checkout by one directory."""
        op = "sparse add src/core"
        lazy = self.fresh("lazy-sparse")
        run(["lazygit", "clone", "-q", "--sparse-top", dumb_url, str(lazy)])
        self.record(
            op,
            "lazygit",
            measure(both, lambda: run(["lazygit", "sparse", "add", "-q", "src/core"], cwd=lazy)),
        )
        stop_daemon(lazy)
        part = self.fresh("partial-sparse")
        run(["git", "clone", "-q", "--filter=blob:none", "--sparse", smart_url, str(part)])
        self.record(
            op,
            "git partial (smart)",
            measure(both, lambda: run(["git", "sparse-checkout", "add", "src/core"], cwd=part)),
        )

    def history(
        self,
        both: list[Nginx],
        dumb_url: str,
        smart_url: str,
        full: Path,
        entries: dict[str, tuple[int, str | None]],
        i: int,
    ) -> None:
        """blame, log -p -300 and grep REV in fresh --no-checkout clones.

        "lazygit": a cold daemon -- the clone's daemon wrote its history index and was then
        stopped, so the command starts a daemon (imports, indexes) and every blob comes from
        the server.  "lazygit (daemon running)": the daemon the clone started is still up,
        with nothing fetched yet.
        """
        clone = ["lazygit", "clone", "-q", "--no-checkout", dumb_url]
        for name, cmd in HISTORY_COMMANDS.items():
            op = f"{name} (cold lazy clone)"
            blobs = blobs_read(full, name)
            self.needed[op] = needed_bytes(entries, blobs)
            self.record(op, "git full clone", measure(both, lambda cmd=cmd: run(cmd, cwd=full)))
            self.index_floor(both, full, name, blobs)
            lazy = self.fresh("lazy-history")
            run([*clone, str(lazy)], env=PRESTART_ENV)
            wait_for_history_index(lazy)
            stop_daemon(lazy)
            self.record(op, "lazygit", measure(both, lambda cmd=cmd, d=lazy: run(cmd, cwd=d)))
            stop_daemon(lazy)
            lazy = self.fresh("lazy-history")
            run([*clone, str(lazy)], env=PRESTART_ENV)
            wait_for_history_index(lazy)
            self.record(
                op,
                "lazygit (daemon running)",
                measure(both, lambda cmd=cmd, d=lazy: run(cmd, cwd=d)),
            )
            stop_daemon(lazy)
            if i == 0 and name in PREFETCH_OFF:  # one request per blob or commit: one run
                lazy = self.fresh("lazy-history")
                run([*clone, str(lazy)], env=PRESTART_ENV)
                wait_for_history_index(lazy)
                run(["git", "config", "lazygit.prefetchBytes", "0"], cwd=lazy)
                self.record(
                    op,
                    "lazygit (prefetch off)",
                    measure(both, lambda cmd=cmd, d=lazy: run(cmd, cwd=d)),
                )
                stop_daemon(lazy)
            if i == 0:  # git's partial clone takes minutes here: one run
                part = self.fresh("partial-history")
                run(
                    [
                        "git",
                        "clone",
                        "-q",
                        "--filter=blob:none",
                        "--no-checkout",
                        smart_url,
                        str(part),
                    ]
                )
                self.record(
                    op,
                    "git partial (smart)",
                    measure(both, lambda cmd=cmd, d=part: run(cmd, cwd=d)),
                )

    def on_demand(
        self, both: list[Nginx], dumb_url: str, smart_url: str, blobs: tuple[str, str]
    ) -> None:
        blob, other = blobs
        lazy = self.fresh("lazy-od")
        run(["lazygit", "clone", "-q", "--no-checkout", dumb_url, str(lazy)])
        part = self.fresh("partial-od")
        run(["git", "clone", "-q", "--filter=blob:none", "--no-checkout", smart_url, str(part)])
        show = ["git", "cat-file", "-p", blob]
        self.record(
            "one missing blob (cold daemon)",
            "lazygit",
            measure(both, lambda: run(show, cwd=lazy), then=lambda: settle(lazy)),
        )
        self.record(
            "one missing blob (cold daemon)",
            "git partial (smart)",
            measure(both, lambda: run(show, cwd=part)),
        )
        # Warm: the daemon is up; ask for another old blob.
        show2 = ["git", "cat-file", "-p", other]
        self.record(
            "one missing blob (warm daemon)",
            "lazygit",
            measure(both, lambda: run(show2, cwd=lazy), then=lambda: settle(lazy)),
        )
        self.record(
            "one missing blob (warm daemon)",
            "git partial (smart)",
            measure(both, lambda: run(show2, cwd=part)),
        )
        stop_daemon(lazy)
        files = self.meta["files"]
        op = f"first checkout ({files} files)"
        self.record(
            op, "lazygit", measure(both, lambda: run(["git", "checkout", "-q", "main"], cwd=lazy))
        )
        self.record(
            op,
            "git partial (smart)",
            measure(both, lambda: run(["git", "checkout", "-q", "main"], cwd=part)),
        )
        stop_daemon(lazy)
        # The default clone leaves its daemon running (prestartDaemon): a checkout soon after
        # the clone meets it warm.
        warm = self.fresh("lazy-checkout-warm")
        run(["lazygit", "clone", "-q", "--no-checkout", dumb_url, str(warm)], env=PRESTART_ENV)
        wait_for_history_index(warm)
        self.record(
            op,
            "lazygit (daemon running)",
            measure(both, lambda: run(["git", "checkout", "-q", "main"], cwd=warm)),
        )
        stop_daemon(warm)

    def browse(self, both: list[Nginx], dumb_url: str, smart_url: str, repo: Path) -> None:
        """Ten old versions of the hot file, one `git show` each, as someone reading a file's
        past does, going back in history and forward: what the family prefetch saves (issue
        4, part 1) against the same daemon without it (lazygit.familyBytes 0; a second
        request for the same path still brings the older versions) and without any prefetch."""
        hot = self.meta["hot_file"]
        revs = self.old_revs(repo, hot)
        start = int(len(revs) * 0.3)
        back = revs[start : start + 10]
        for order, shown in (("newest first", back), ("oldest first", back[::-1])):
            script = " && ".join(f"git show {r}:{hot} > /dev/null" for r in shown)
            op = f"git show of 10 old versions of {hot}, one at a time, {order}"
            self.browse_one(both, dumb_url, smart_url, op, ["sh", "-c", script])

    def browse_one(
        self, both: list[Nginx], dumb_url: str, smart_url: str, op: str, cmd: list[str]
    ) -> None:
        for tool, config in (
            ("lazygit (daemon running)", None),
            ("lazygit (family off)", "lazygit.familyBytes"),
            ("lazygit (prefetch off)", "lazygit.prefetchBytes"),
        ):
            lazy = self.fresh("lazy-browse")
            run(["lazygit", "clone", "-q", "--no-checkout", dumb_url, str(lazy)], env=PRESTART_ENV)
            wait_for_history_index(lazy)
            if config is not None:
                run(["git", "config", config, "0"], cwd=lazy)
            step = functools.partial(run, cmd, cwd=lazy)
            self.record(op, tool, measure(both, step, then=functools.partial(settle, lazy)))
            stop_daemon(lazy)
        part = self.fresh("partial-browse")
        run(["git", "clone", "-q", "--filter=blob:none", "--no-checkout", smart_url, str(part)])
        self.record(op, "git partial (smart)", measure(both, lambda: run(cmd, cwd=part)))

    def plots(self) -> list[str]:
        """One PNG bar chart per operation (median wall time per tool); markdown links."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out_dir = ROOT / "docs" / "benchmarks"
        out_dir.mkdir(exist_ok=True)
        for old in out_dir.glob("*.png"):
            old.unlink()
        links = []
        ops = list(dict.fromkeys(op for op, _ in self.rows if not op.startswith(FLOOR)))
        fig, axes = plt.subplots(len(ops), 1, figsize=(8, 1.6 * len(ops) + 0.6))
        for ax, op in zip(axes if len(ops) > 1 else [axes], ops, strict=True):
            rows = [r for (o, _), r in self.rows.items() if o == op]
            names = [r.tool for r in rows]
            walls = [r.median("wall") for r in rows]
            colors = ["#2a7" if n.startswith("lazygit") else "#889" for n in names]
            ax.barh(names, walls, color=colors)
            ax.set_title(op, fontsize=9, loc="left")
            ax.tick_params(labelsize=8)
            ax.invert_yaxis()
            for y, w in enumerate(walls):
                ax.text(w, y, f" {w:.2f} s", va="center", fontsize=7)
        axes_last = axes[-1] if len(ops) > 1 else axes
        axes_last.set_xlabel("wall seconds (median)", fontsize=8)
        fig.tight_layout()
        path = out_dir / "wall.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        links.append("![Median wall time per operation](benchmarks/wall.png)")
        return links

    def report(self, meta: dict) -> None:
        lines = [
            "# Benchmarks",
            "",
            f"Generated by `python benchmarks/run.py` on {time.strftime('%Y-%m-%d')} "
            f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.strip()}"
            f", nginx on 127.0.0.1). Medians of {self.runs} runs, tools alternated (the clones "
            "start with another tool each run); git's "
            "partial clone runs blame, log -p and grep once (they take minutes), and so does "
            "lazygit with its prefetch off. lazygit is byte-compiled first, as installing a "
            "wheel does.",
            "",
            f"Repository: {meta['commits']} commits, {meta['objects']} objects, {meta['files']} "
            "files at HEAD; a gc'd pack with bitmap, a pushed pack without one, loose objects.",
            "Bytes and requests are what nginx sent (both the static and the smart server).",
            "A *cold daemon* is not running: the command starts it (imports, pack indexes, the "
            "history index its first run wrote at clone time) and its block cache is empty. "
            "The bytes, requests and CPU of a one-blob or `git show` row include the family "
            "prefetch the daemon runs after answering (the other versions of that file); its "
            "wall time ends with git's answer. "
            "*daemon running*: the daemon the clone started is still up, nothing fetched yet.",
            f"*{DISTANT_RTT_MS} ms round trip*: the tools reach nginx through "
            "benchmarks/delayproxy.py, which holds every chunk half a round trip each way and "
            "every new connection one round trip, as a distant server would.",
            "*Peak RSS*: the command's process tree (GNU time; git's own processes included), "
            "then, for lazygit, the largest peak of its daemons since they started "
            "(/proc/PID/status VmHWM).",
            "",
            "| operation | tool | wall s | client CPU s | peak RSS MB (command / daemon) "
            "| server CPU s | bytes "
            "| requests | lazygit / tool (wall) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        ops = list(dict.fromkeys(op for op, _ in self.rows if not op.startswith(FLOOR)))
        for op in ops:
            base = self.rows.get((op, "lazygit"))
            for (o, tool), row in self.rows.items():
                if o != op:
                    continue
                ratio = (
                    ""
                    if tool.startswith("lazygit") or base is None
                    else f"{base.median('wall') / row.median('wall'):.2f}"
                )
                rss = f"{row.median('rss_mb'):.0f}" if _TIME else "n/a"
                if tool.startswith("lazygit") and row.median("daemon_rss_mb"):
                    rss += f" / {row.median('daemon_rss_mb'):.0f}"
                lines.append(
                    f"| {op} | {tool} | {row.median('wall'):.3f} | {row.median('cpu'):.2f} | "
                    f"{rss} | {row.median('server_cpu'):.2f} | "
                    f"{row.median('bytes'):,.0f} | {row.median('requests'):.0f} | {ratio} |"
                )
        if self.needed:
            lines += [
                "",
                "Bytes the history commands need (their blobs as stored in the "
                "server pack, with delta chains) and what lazygit read:",
                "",
                "| operation | needed | lazygit read | ratio |",
                "| --- | ---: | ---: | ---: |",
            ]
            for op, need in self.needed.items():
                got = self.rows[(op, "lazygit")].median("bytes")
                lines.append(f"| {op} | {need:,} | {got:,.0f} | {got / need:.2f} |")
        lines += self.prefetch_savings()
        lines += ["", *self.targets(), *self.floor_lines(), "", *self.plots()]
        text = "\n".join(lines) + "\n"
        print(text)
        target = ROOT / "docs" / "benchmarks.md"
        target.write_text(text)
        (self.out / "results.json").write_text(
            json.dumps(
                {
                    "runs": self.runs,
                    "needed": self.needed,
                    "rows": {
                        f"{op}|{tool}": [dataclasses.asdict(s) for s in row.samples]
                        for (op, tool), row in self.rows.items()
                    },
                },
                indent=1,
            )
        )

    def prefetch_savings(self) -> list[str]:
        """What the history prefetch saves (issue 4, part 1): the same command with the
        daemon running, prefetch on (the default) and off."""
        found = []
        for (op, tool), off in self.rows.items():
            on = self.rows.get((op, "lazygit (daemon running)"))
            if tool in ("lazygit (prefetch off)", "lazygit (family off)") and on is not None:
                found.append((op, tool.removeprefix("lazygit (").removesuffix(")"), on, off))
        if not found:
            return []
        lines = [
            "",
            "What the prefetch saves: the same command with the daemon running, prefetch on "
            "(the default) and *prefetch off* (`lazygit.prefetchBytes 0`: one lazy fetch per "
            "blob or commit, as git asks) or *family off* (`lazygit.familyBytes 0`: no "
            "versions brought after a lone request; a second request for the same path still "
            "brings the older ones). *Extra* is what prefetch reads beyond that.",
            "",
            "| operation | against | wall on / off s | requests on / off | bytes on / off | faster "
            "| extra |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for op, against, on, off in found:
            w0, w1 = on.median("wall"), off.median("wall")
            b0, b1 = on.median("bytes"), off.median("bytes")
            lines.append(
                f"| {op} | {against} | {w0:.3f} / {w1:.3f} | {on.median('requests'):.0f} / "
                f"{off.median('requests'):.0f} | {b0:,.0f} / {b1:,.0f} | {w1 / w0:.1f} x | "
                f"{(b0 - b1) / b1:+.0%} |"
            )
        return lines

    def targets(self) -> list[str]:
        """The issues' targets against this run: ratio and met or not."""

        def ratio(op: str, tool: str, ours: str = "lazygit") -> float | None:
            a, b = self.rows.get((op, ours)), self.rows.get((op, tool))
            return a.median("wall") / b.median("wall") if a and b else None

        checks: list[tuple[str, float | None, float]] = [
            (
                "clone --no-checkout: lazygit / git partial clone (smart)",
                ratio("clone --no-checkout", "git partial (smart)"),
                1.0,
            ),
            (
                "one missing blob, warm daemon: lazygit / git partial clone",
                ratio("one missing blob (warm daemon)", "git partial (smart)"),
                1.5,
            ),
        ]
        for op, tool in list(self.rows):
            if op.startswith("first checkout") and tool == "lazygit":
                checks.append(
                    (f"{op}: lazygit / git partial clone", ratio(op, "git partial (smart)"), 1.0)
                )
                running = ratio(op, "git partial (smart)", "lazygit (daemon running)")
                checks.append(
                    (f"{op}, daemon left running by the clone: / git partial clone", running, 1.0)
                )
        for name in HISTORY_COMMANDS:
            op = f"{name} (cold lazy clone)"
            checks.append((f"{op}: lazygit / full clone", ratio(op, "git full clone"), 3.0))
            running = ratio(op, "git full clone", "lazygit (daemon running)")
            checks.append((f"{op}, daemon left running by the clone: / full clone", running, 3.0))
            need = self.needed.get(op)
            got = self.rows.get((op, "lazygit"))
            if need and got:
                checks.append((f"{op}: bytes read / bytes needed", got.median("bytes") / need, 2.0))
        lines = [
            "## Targets from the issues",
            "",
            "| target | measured | limit | met |",
            "| --- | ---: | ---: | --- |",
        ]
        for what, value, limit in checks:
            if value is not None:
                met = "yes" if value <= limit else "**no**"
                lines.append(f"| {what} | {value:.2f} | {limit:.1f} | {met} |")
        return lines

    def floor_lines(self) -> list[str]:
        """The floors against the targets: how far the design itself is from each."""

        def wall(op: str, tool: str) -> float | None:
            row = self.rows.get((op, tool))
            return row.median("wall") if row else None

        start = "Python and its imports"
        clone_py = wall(f"{FLOOR}clone", start)
        index = wall(f"{FLOOR}clone", "git index-pack of the commits and trees")
        smart = wall("clone --no-checkout", "git partial (smart)")
        helper = wall(f"{FLOOR}git-remote-lazy", start)
        daemon = wall(f"{FLOOR}cold daemon", start)
        if None in (clone_py, index, smart, helper, daemon):
            return []
        assert clone_py and index and smart and helper and daemon
        lines = [
            "",
            "## Floors: what no lazygit run goes below",
            "",
            "Measured in the same run: a Python process that only imports what lazygit's "
            "clone, git-remote-lazy and a cold daemon import before they work (`python -c`); "
            "`git index-pack --stdin` of the commits and trees git's partial clone "
            "received, the same objects lazygit's clone indexes, and of the blobs each "
            "history command reads.",
            "",
            "| what | wall s |",
            "| --- | ---: |",
            f"| Python + the clone's imports (`{CLONE_IMPORTS}`) | {clone_py:.3f} |",
            f"| git index-pack of the commits and trees | {index:.3f} |",
            f"| Python + git-remote-lazy's imports (`{HELPER_IMPORTS}`) | {helper:.3f} |",
            f"| Python + a cold daemon's imports (`{DAEMON_IMPORTS}`) | {daemon:.3f} |",
            *(
                f"| {INDEX_BLOBS}: {name} | {blobs:.3f} |"
                for name in HISTORY_COMMANDS
                if (blobs := wall(f"{FLOOR}{name}", INDEX_BLOBS)) is not None
            ),
            "",
            "| target | floor | floor / tool | limit | left for the rest of the work |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        floor = clone_py + index
        lines.append(
            f"| clone --no-checkout / git partial clone ({smart:.3f} s) | start-up + index-pack "
            f"= {floor:.3f} s | {floor / smart:.2f} | 1.0 | {smart - floor:+.3f} s |"
        )
        for name in HISTORY_COMMANDS:
            op = f"{name} (cold lazy clone)"
            full = wall(op, "git full clone")
            blobs = wall(f"{FLOOR}{name}", INDEX_BLOBS)
            if full is None or blobs is None:
                continue
            for running, parts, floor in (
                ("", "daemon start-up + ", full + helper + daemon + blobs),
                (", daemon running", "", full + helper + blobs),
            ):
                lines.append(
                    f"| {op}{running} / full clone ({full:.3f} s) | the command + "
                    f"git-remote-lazy + {parts}index-pack of its blobs ({blobs:.3f} s) = "
                    f"{floor:.3f} s | {floor / full:.2f} | 3.0 | {3 * full - floor:+.3f} s |"
                )
        lines += [
            "",
            "*Index-pack of its blobs*: `git index-pack --stdin` of the blobs the command "
            "reads, packed by `git pack-objects` (deltas among them only), as any client "
            "that has git check their hashes pays before the command reads them.",
            "",
            "*Left for the rest of the work*: what the limit leaves for everything else (the "
            "clone's discovery, .idx reads and its other git commands; a lazy fetch's git "
            "processes, its reads and what its pack indexes beyond the blobs). Negative: the "
            "target is out of reach for a Python client of this design, however fast the "
            "rest.",
        ]
        return lines

    def report_only(self) -> None:
        """Rewrite docs/benchmarks.md from the last run's results.json (no measuring)."""
        doc = json.loads((self.out / "results.json").read_text())
        rows = doc.get("rows", doc)
        for key, samples in rows.items():
            op, tool = key.split("|", 1)
            for sample_dict in samples:
                self.record(op, tool, Sample(**sample_dict))
        self.runs = doc.get("runs", max(len(v) for v in rows.values()))
        self.needed = doc.get("needed") or {}
        if not self.needed:  # results.json from before "needed" was stored: recompute
            repo = self.out / "server" / "bench.git"
            entries = pack_entries(repo)
            full = self.fresh("full-history")
            run(["git", "clone", "-q", "--no-local", str(repo), str(full)])
            for name in HISTORY_COMMANDS:
                need = needed_bytes(entries, blobs_read(full, name))
                self.needed[f"{name} (cold lazy clone)"] = need
        self.report(json.loads((self.out / "info.json").read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite docs/benchmarks.md from the last run"
    )
    args = parser.parse_args()
    out = args.out / args.size
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(out.resolve(), SIZES[args.size], args.runs)
    bench.report_only() if args.report_only else bench.main()


if __name__ == "__main__":
    main()
