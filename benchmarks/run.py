"""Benchmarks: lazygit side by side with git's own smart and dumb HTTP, one run, medians.

Serves one sample repository with nginx on 127.0.0.1 twice -- as static files (dumb HTTP, what
lazygit reads) and through `git http-backend` (smart HTTP, filters allowed) -- and times each
operation several times per tool, alternating tools so machine noise hits all alike.  Bytes
and requests come from nginx's access log.  Writes docs/benchmarks.md.

    python benchmarks/run.py [--size bench|large|small] [--runs 5] [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from servers import Nginx  # noqa: E402

from lazygit import sample  # noqa: E402

#: The benchmark repository: LARGE's history with a 5,000-file tree at HEAD.
BENCH = dataclasses.replace(sample.LARGE, files=5000, dirs=120)
SIZES = {"bench": BENCH, "large": sample.LARGE, "small": sample.SMALL, "tiny": sample.TINY}
GIT_ENV = {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}


@dataclass
class Sample:
    wall: float
    cpu: float
    bytes: int
    requests: int


@dataclass
class Row:
    operation: str
    tool: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env or GIT_ENV, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}\n{proc.stderr.decode()[-2000:]}")


def measure(servers: list[Nginx], step: Callable[[], None]) -> Sample:
    """Wall time, children's CPU time, and what the servers' logs saw during ``step``."""
    for s in servers:
        s.clear_log()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    step()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    entries = [e for s in servers for e in s.log_entries()]
    return Sample(wall, cpu, sum(e.bytes for e in entries), len(entries))


def stop_daemon(repo: Path) -> None:
    """Stop a lazy clone's daemon, so the next command starts it cold."""
    info = repo / ".git" / "lazygit" / "daemon.json"
    if not info.exists():
        return
    pid = json.loads(info.read_text())["pid"]
    try:
        os.kill(pid, 15)
        for _ in range(250):
            os.kill(pid, 0)
            time.sleep(0.02)
    except ProcessLookupError:
        pass


class Bench:
    def __init__(self, out: Path, spec: sample.SampleSpec, runs: int) -> None:
        self.out = out
        self.spec = spec
        self.runs = runs
        self.rows: dict[tuple[str, str], Row] = {}
        self.scratch = out / "scratch"

    def record(self, operation: str, tool: str, s: Sample) -> None:
        self.rows.setdefault((operation, tool), Row(operation, tool)).samples.append(s)

    def fresh(self, name: str) -> Path:
        path = self.scratch / name
        if path.exists():
            stop_daemon(path)
            shutil.rmtree(path)
        self.scratch.mkdir(parents=True, exist_ok=True)
        return path

    def main(self) -> None:
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
            blob = self.pick_blob(repo)
            for i in range(self.runs):
                print(f"run {i + 1}/{self.runs}", flush=True)
                self.clones(both, dumb_url, smart_url, i)
                self.on_demand(both, dumb_url, smart_url, blob)
        self.report(meta)

    @staticmethod
    def pick_blob(repo: Path) -> str:
        """A blob of an old version of a file: what a user asks for with `git show OLD:PATH`."""
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD~3000:src/core/hot.py"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    def clones(self, both: list[Nginx], dumb_url: str, smart_url: str, i: int) -> None:
        lazy = self.fresh("lazy")
        self.record(
            "clone --no-checkout",
            "lazygit",
            measure(
                both, lambda: run(["lazygit", "clone", "-q", "--no-checkout", dumb_url, str(lazy)])
            ),
        )
        part = self.fresh("partial")
        self.record(
            "clone --no-checkout",
            "git partial (smart)",
            measure(
                both,
                lambda: run(
                    [
                        "git",
                        "clone",
                        "-q",
                        "--filter=blob:none",
                        "--no-checkout",
                        smart_url,
                        str(part),
                    ]
                ),
            ),
        )
        if i == 0:  # the full clones are slow and steady: one run is enough
            full = self.fresh("full-smart")
            self.record(
                "clone --no-checkout",
                "git full (smart)",
                measure(
                    both, lambda: run(["git", "clone", "-q", "--no-checkout", smart_url, str(full)])
                ),
            )
            dumb = self.fresh("full-dumb")
            self.record(
                "clone --no-checkout",
                "git full (dumb HTTP)",
                measure(
                    both, lambda: run(["git", "clone", "-q", "--no-checkout", dumb_url, str(dumb)])
                ),
            )

    def on_demand(self, both: list[Nginx], dumb_url: str, smart_url: str, blob: str) -> None:
        lazy = self.fresh("lazy-od")
        run(["lazygit", "clone", "-q", "--no-checkout", dumb_url, str(lazy)])
        part = self.fresh("partial-od")
        run(["git", "clone", "-q", "--filter=blob:none", "--no-checkout", smart_url, str(part)])
        show = ["git", "cat-file", "-p", blob]
        self.record(
            "one missing blob (cold daemon)", "lazygit", measure(both, lambda: run(show, cwd=lazy))
        )
        self.record(
            "one missing blob (cold daemon)",
            "git partial (smart)",
            measure(both, lambda: run(show, cwd=part)),
        )
        # Warm: the daemon is up; ask for another old blob.
        other = subprocess.run(
            ["git", "-C", str(part), "rev-parse", "HEAD~2500:src/core/hot.py"],
            capture_output=True,
            text=True,
            check=True,
            env={**GIT_ENV, "GIT_NO_LAZY_FETCH": "1"},
        ).stdout.strip()
        show2 = ["git", "cat-file", "-p", other]
        self.record(
            "one missing blob (warm daemon)", "lazygit", measure(both, lambda: run(show2, cwd=lazy))
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

    def report(self, meta: dict) -> None:
        lines = [
            "# Benchmarks",
            "",
            f"Generated by `python benchmarks/run.py` on {time.strftime('%Y-%m-%d')} "
            f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.strip()}"
            f", nginx on 127.0.0.1). Medians of {self.runs} runs, tools alternated.",
            "",
            f"Repository: {meta['commits']} commits, {meta['objects']} objects, {meta['files']} "
            "files at HEAD; a gc'd pack with bitmap, a pushed pack without one, loose objects.",
            "Bytes and requests are what nginx sent (both the static and the smart server).",
            "",
            "| operation | tool | wall s | client CPU s | bytes | requests | wall vs lazygit |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        ops = list(dict.fromkeys(op for op, _ in self.rows))
        for op in ops:
            base = self.rows.get((op, "lazygit"))
            for (o, tool), row in self.rows.items():
                if o != op:
                    continue
                ratio = (
                    "1.00"
                    if tool == "lazygit" or base is None
                    else (f"lazygit = {base.median('wall') / row.median('wall'):.2f} x")
                )
                lines.append(
                    f"| {op} | {tool} | {row.median('wall'):.3f} | {row.median('cpu'):.2f} | "
                    f"{row.median('bytes'):,.0f} | {row.median('requests'):.0f} | {ratio} |"
                )
        text = "\n".join(lines) + "\n"
        print(text)
        target = ROOT / "docs" / "benchmarks.md"
        target.write_text(text)
        (self.out / "results.json").write_text(
            json.dumps(
                {
                    f"{op}|{tool}": [dataclasses.asdict(s) for s in row.samples]
                    for (op, tool), row in self.rows.items()
                },
                indent=1,
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="bench")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()
    out = args.out / args.size
    out.mkdir(parents=True, exist_ok=True)
    Bench(out.resolve(), SIZES[args.size], args.runs).main()


if __name__ == "__main__":
    main()
