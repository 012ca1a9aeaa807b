"""blame / log -p / grep side by side: full clone, lazygit (cold daemon), git's partial clone.

For each command: wall time, bytes the server sent (nginx access log), and the bytes the
command *needs*: its blobs as stored in the server pack plus their delta chains (from
``git verify-pack -v``).  Each tool gets a fresh clone per command, so nothing is warm.

    python benchmarks/prefetch_bench.py [--size large|bench|small] [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import servers  # noqa: E402
from servers import Nginx  # noqa: E402

from lazygit import sample  # noqa: E402

#: The benchmark repository: LARGE's history with a 5,000-file tree at HEAD.
BENCH = dataclasses.replace(sample.LARGE, files=5000, dirs=120)
SIZES = {"bench": BENCH, "large": sample.LARGE, "small": sample.SMALL}
HOT = sample.HOT_FILE
ENV = {
    **os.environ,
    "LC_ALL": "C",
    "GIT_TERMINAL_PROMPT": "0",
    "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "lazygit.prestartDaemon",
    "GIT_CONFIG_VALUE_0": "false",
}
COMMANDS = {
    "blame": ["blame", "HEAD", "--", HOT],
    "log -p -300": ["log", "-p", "-300"],
    "grep REV": ["grep", "-c", "fetch", "HEAD"],
}


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> bytes:
    proc = subprocess.run(["git", *args], cwd=repo, env=env or ENV, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed in {repo}: {proc.stderr.decode()[-500:]}")
    return proc.stdout


def pack_entries(bare: Path) -> dict[str, tuple[int, str | None]]:
    """oid -> (size in pack, delta base oid) over every server pack."""
    out: dict[str, tuple[int, str | None]] = {}
    for idx in sorted((bare / "objects" / "pack").glob("*.idx")):
        text = git(bare, "verify-pack", "-v", str(idx)).decode()
        for line in text.splitlines():
            f = line.split()
            if len(f) >= 5 and len(f[0]) == 40 and f[1] in ("blob", "tree", "commit", "tag"):
                out.setdefault(f[0], (int(f[3]), f[6] if len(f) >= 7 else None))
    return out


def needed_bytes(entries: dict[str, tuple[int, str | None]], oids: set[str]) -> int:
    """The blobs' bytes in the pack plus every delta base they need (each counted once)."""
    seen: set[str] = set()
    total = 0
    for oid in oids:
        while oid and oid not in seen and oid in entries:
            seen.add(oid)
            size, base = entries[oid]
            total += size
            oid = base or ""
    return total


def blobs_read(full: Path, name: str) -> set[str]:
    """The blobs a command reads (computed in the full clone)."""
    if name == "blame":
        raw = git(full, "log", "--format=", "--raw", "--no-abbrev", "HEAD", "--", HOT)
        return {ln.split()[3] for ln in raw.decode().splitlines() if ln.startswith(":")} - {
            "0" * 40
        }
    if name.startswith("log"):
        raw = git(full, "log", "--format=", "--raw", "--no-abbrev", "-300")
        out = set()
        for ln in raw.decode().splitlines():
            if ln.startswith(":"):
                out.update(ln.split()[2:4])
        return out - {"0" * 40}
    raw = git(full, "ls-tree", "-r", "HEAD")
    return {ln.split()[2] for ln in raw.decode().splitlines() if ln.split()[1] == "blob"}


def stop_daemon(repo: Path) -> None:
    """Stop a lazy clone's daemon, so the next command starts it cold."""
    servers.stop_daemon(repo / ".git")


def timed(server: Nginx, repo: Path, args: list[str]) -> tuple[float, int, bytes]:
    server.clear_log()
    t0 = time.perf_counter()
    out = git(repo, *args)
    wall = time.perf_counter() - t0
    return wall, sum(e.bytes for e in server.log_entries()), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", choices=sorted(SIZES), default="large")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "prefetch")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    root = out / "server"
    bare = root / "repo.git"
    if not bare.exists():
        print("generating the repository ...", flush=True)
        root.mkdir(parents=True, exist_ok=True)
        sample.make_server_repo(bare, SIZES[args.size])
    scratch = out / "scratch"
    full = scratch / "full"
    if not full.exists():
        scratch.mkdir(parents=True, exist_ok=True)
        git(scratch, "clone", "-q", "--no-local", str(bare), str(full))
    entries = pack_entries(bare)
    rows = []
    with (
        Nginx(root, out / "nginx-static") as static,
        Nginx(root, out / "nginx-smart", smart=True) as smart,
    ):
        for name, cmd in COMMANDS.items():
            need = needed_bytes(entries, blobs_read(full, name))
            t0 = time.perf_counter()
            expected = git(full, *cmd)
            t_full = time.perf_counter() - t0
            lazy = scratch / "lazy"
            stop_daemon(lazy)
            shutil.rmtree(lazy, ignore_errors=True)
            lazygit = str(ROOT / ".venv" / "bin" / "lazygit")
            clone = [lazygit, "clone", "-q", "--no-checkout", static.url("repo.git"), str(lazy)]
            subprocess.run(clone, env=ENV, check=True)
            t_lazy, b_lazy, o_lazy = timed(static, lazy, cmd)
            stop_daemon(lazy)
            partial = scratch / "partial"
            shutil.rmtree(partial, ignore_errors=True)
            git(scratch, "clone", "-q", "--filter=blob:none", "--no-checkout",
                smart.url("repo.git"), str(partial))  # fmt: skip
            t_part, b_part, o_part = timed(smart, partial, cmd)
            same = ("same" if o_lazy == expected else "LAZYGIT DIFFERS") + (
                "" if o_part == expected else ", partial differs"
            )
            rows.append((name, t_full, t_lazy, t_part, need, b_lazy, b_part, same))
            print(f"{name}: done", flush=True)
    print()
    print("| command | full | lazygit | git partial | needed | lazygit read | partial read | out |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, tf, tl, tp, need, bl, bp, same in rows:
        print(
            f"| {name} | {tf:.2f} s | {tl:.2f} s ({tl / tf:.1f}x) | {tp:.2f} s ({tp / tf:.1f}x) "
            f"| {need / 1024:.0f} KiB | {bl / 1024:.0f} KiB ({bl / max(need, 1):.2f}x) "
            f"| {bp / 1024:.0f} KiB ({bp / max(need, 1):.2f}x) | {same} |"
        )


if __name__ == "__main__":
    main()
