"""``lazygit demo``: the main job end to end on the embedded server, with what it saved."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from lazygit.errors import LazyGitError


def _repo_bytes(bare: Path) -> int:
    """Bytes a full dumb-HTTP clone would have to download: every pack and loose object."""
    objects = bare / "objects"
    total = sum(p.stat().st_size for p in (objects / "pack").glob("pack-*.pack"))
    total += sum(p.stat().st_size for d in objects.glob("[0-9a-f][0-9a-f]") for p in d.iterdir())
    return total


@contextlib.contextmanager
def _serve(root: Path) -> Iterator[str]:
    """Run `lazygit serve ROOT` as its own process on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lazygit.cli", "serve", str(root), "--port", str(port), "-q"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise LazyGitError(
                        f"`lazygit serve` did not start: {err.strip()[-200:]}"
                    ) from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_demo(workdir: Path | None, size: str, quiet: bool) -> Iterator[str]:
    """Yield report lines while making, serving and lazily cloning a sample repository."""
    from lazygit import sample
    from lazygit.clone import CloneOptions, clone
    from lazygit.config import Settings
    from lazygit.progress import Progress, counted

    # The demo's default: enough history that a lazy clone has something to save.
    demo = dataclasses.replace(sample.SMALL, commits=2000, hot_file_versions=400)
    specs = {"tiny": sample.TINY, "small": demo, "large": sample.LARGE}
    if size not in specs:
        raise LazyGitError(f"unknown demo size {size!r}", "use tiny, small or large")
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="lazygit-demo-")
        workdir = Path(tmp.name)
    workdir = workdir.resolve()
    try:
        root = workdir / "server"
        root.mkdir(parents=True, exist_ok=True)
        info = sample.make_server_repo(root / "sample.git", specs[size])
        yield (
            f"made {info.path.name}: {info.commits} commits, {info.objects} objects, "
            f"{info.files} files at HEAD, {_repo_bytes(info.path) / 2**20:.1f} MiB of packs"
        )
        with _serve(root) as base_url:
            url = base_url + "sample.git"
            yield f"serving it with `lazygit serve {root} --port {url.split(':')[2].split('/')[0]}`"
            with Progress(quiet) as progress:
                # No daemon left behind by a demo whose files are about to go.
                settings = Settings.load(prestartDaemon=tmp is None)
                result = clone(CloneOptions(url, workdir / "clone"), settings, progress)
        full = _repo_bytes(info.path)
        yield (
            f"lazy clone in {result.seconds:.2f} s: {result.metadata.objects} commits/trees/tags "
            f"and {result.blobs.objects} blobs for {result.files} files, "
            f"{result.bytes_read / 2**20:.1f} MiB read in "
            f"{counted(result.metadata.requests + result.blobs.requests, 'request')}"
        )
        yield (
            f"saved {100 * (1 - result.bytes_read / full):.0f}% of the {full / 2**20:.1f} MiB a "
            f"full clone downloads; other blobs arrive when git needs them"
        )
        if tmp is None:
            yield f"clone left in {workdir / 'clone'}"
    finally:
        if tmp is not None:
            tmp.cleanup()
