"""Progress on a terminal: `lazygit clone` and `git clone --filter=blob:none lazy::URL` draw
bars on stderr, a long lazy fetch redraws one line on git's; `-q` and a stderr that is not a
terminal get none.

The commands run on a real pseudo-terminal (tests/terminal.py), as a user's shell runs them;
a delaying proxy in front of nginx makes a batch long enough to report on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Published, stop_daemon
from faultproxy import FaultProxy, Rule
from terminal import on_terminal

from lazygit import daemonclient

LAZYGIT = "lazygit"
METER = r"lazygit: fetching objects: (\d+)% \(([\d.]+) MiB of ([\d.]+) MiB\)"


def bar_lines(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name)]


def test_lazygit_clone_draws_bars_on_a_terminal(small: Published, nginx, tmp_path: Path):
    code, text = on_terminal([LAZYGIT, "clone", nginx.url(small.name), "c"], tmp_path)
    try:
        assert code == 0, text
        # Pack indexes are counted (2 of 2), the reads are bytes with a rate.
        indexes = bar_lines(text, "pack indexes")
        assert indexes and re.search(r"\b(\d+)/\1\b", indexes[-1]), text
        assert "bytes" not in indexes[-1] and "/s" not in indexes[-1], indexes[-1]
        reads = bar_lines(text, "commits and trees")
        assert reads and re.search(r"\d(\.\d)? ?[kM]?B", reads[-1]), text
        assert bar_lines(text, "objects") and bar_lines(text, "checkout"), text
        assert "Cloned into c" in text
        assert "Traceback" not in text
    finally:
        stop_daemon(tmp_path / "c" / ".git")


def test_quiet_and_not_a_terminal_draw_nothing(small: Published, nginx, tmp_path: Path):
    url = nginx.url(small.name)
    code, text = on_terminal([LAZYGIT, "clone", "-q", url, "q"], tmp_path)
    stop_daemon(tmp_path / "q" / ".git")
    assert code == 0, text
    assert text.strip() == "", text
    proc = subprocess.run(
        [LAZYGIT, "clone", url, "p"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    stop_daemon(tmp_path / "p" / ".git")
    assert "━" not in proc.stderr and "pack indexes" not in proc.stderr, proc.stderr


def test_git_clone_of_a_lazy_url_draws_the_clone_bars(small: Published, nginx, tmp_path: Path):
    """git asks its helper for progress when its stderr is a terminal: the commits and trees
    that git-remote-lazy reads for `git clone --filter=blob:none lazy::URL` get the bars
    `lazygit clone` draws, then the helper's one line."""
    url = f"lazy::{nginx.url(small.name)}"
    args = ["git", "clone", "--no-checkout", "--filter=blob:none", url, "c"]
    code, text = on_terminal(args, tmp_path)
    try:
        assert code == 0, text
        assert bar_lines(text, "pack indexes") and bar_lines(text, "commits and trees"), text
        assert re.search(r"lazygit: fetched the commits and trees: \d+ objects", text), text
        assert "Traceback" not in text
    finally:
        stop_daemon(tmp_path / "c" / ".git")
    code, text = on_terminal([*args[:-1], "-q", "q"], tmp_path)
    stop_daemon(tmp_path / "q" / ".git")
    assert code == 0, text
    assert "pack indexes" not in text and "fetched" not in text, text


@pytest.fixture
def slow(nginx) -> Iterator[FaultProxy]:
    """nginx behind a proxy that holds every pack read for a while (a distant server)."""
    with FaultProxy(nginx.port, seed=3) as proxy:
        yield proxy


def _slow_clone(small: Published, slow: FaultProxy, dest: Path) -> None:
    url = slow.url(small.name)
    subprocess.run([LAZYGIT, "clone", "-q", "--no-checkout", url, str(dest)], check=True)
    slow.add(Rule("delay", path=r"\.pack$", methods=("GET",), stall=0.6))


def test_a_long_lazy_fetch_shows_its_progress_on_git_s_terminal(
    small: Published, slow: FaultProxy, tmp_path: Path
):
    """git asks git-remote-lazy for progress when its stderr is a terminal: a batch that
    takes a while redraws one line (percent, MiB read of MiB planned so far), and the batch's
    summary line takes its place."""
    dest = tmp_path / "c"
    _slow_clone(small, slow, dest)
    try:
        code, text = on_terminal(["git", "checkout", "-q", "main"], dest)
        assert code == 0, text
        meter = re.findall(METER, text)
        assert meter, text
        assert all(0 <= int(pct) <= 100 and float(a) <= float(b) for pct, a, b in meter), meter
        assert re.search(r"^lazygit: fetched \d+ objects \(\d+ KiB\) in [\d.]+ s$", text, re.M)
        assert "Traceback" not in text
        # Off a terminal git asks for no progress: no meter, no summary line.
        blob = subprocess.run(
            ["git", "-C", str(dest), "rev-parse", "HEAD~30:" + _old_path(dest)],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        proc = subprocess.run(
            ["git", "-C", str(dest), "cat-file", "-p", blob], capture_output=True, text=True
        )
        assert proc.returncode == 0 and "lazygit:" not in proc.stderr, proc.stderr
    finally:
        stop_daemon(dest / ".git")


def _old_path(repo: Path) -> str:
    """A file whose version thirty commits back is not local (not HEAD's)."""
    changed = subprocess.run(
        ["git", "-C", str(repo), "diff", "--name-only", "--no-renames", "HEAD~30", "HEAD"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "GIT_NO_LAZY_FETCH": "1"},
    ).stdout.split()  # fmt: skip
    return changed[0]


def test_the_daemon_sends_progress_lines_only_when_asked(
    small: Published, slow: FaultProxy, tmp_path: Path
):
    """docs/protocol.md: a fetch with "progress": true gets {"progress": {"bytes", "total"}}
    lines every half second while its batch runs, then the reply; one without gets the reply
    alone."""
    dest = tmp_path / "c"
    _slow_clone(small, slow, dest)
    git_dir = dest / ".git"
    tree = subprocess.run(
        ["git", "-C", str(dest), "ls-tree", "-r", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    blobs = [ln.split()[2] for ln in tree if " blob " in ln]
    try:
        for asked, oids in ((True, blobs[: len(blobs) // 2]), (False, blobs[len(blobs) // 2 :])):
            lines = _raw_request(git_dir, {"op": "fetch", "oids": oids, "progress": asked})
            replies = [m for m in lines if "ok" in m]
            progress = [m["progress"] for m in lines if "progress" in m]
            assert len(replies) == 1 and replies[0]["ok"] and lines[-1] is replies[0], lines
            if asked:
                assert progress, lines
                done = [p["bytes"] for p in progress]
                assert done == sorted(done) and all(p["total"] > 0 for p in progress), progress
            else:
                assert not progress, lines
    finally:
        stop_daemon(git_dir)


def _raw_request(git_dir: Path, message: dict) -> list[dict]:
    """Every line the daemon sends for ``message``, parsed, up to the connection's end."""
    sock = daemonclient.connect(str(git_dir))
    try:
        sock.settimeout(120)
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while chunk := sock.recv(1 << 16):
            data += chunk
    finally:
        sock.close()
    return [json.loads(line) for line in data.splitlines()]


def test_git_fetch_of_new_commits_shows_its_progress_too(
    small: Published, nginx, server_root: Path, tmp_path: Path
):
    """The same line for `git fetch` of commits pushed since the clone (the daemon's update)."""
    bare = server_root / "progress-update.git"
    shutil.rmtree(bare, ignore_errors=True)
    shutil.copytree(small.info.path, bare, symlinks=True)
    scratch, dest = tmp_path / "scratch", tmp_path / "c"
    run = {"check": True, "capture_output": True}
    subprocess.run(["git", "clone", "-q", "--no-local", str(bare), str(scratch)], **run)
    with FaultProxy(nginx.port, seed=5) as slow:
        subprocess.run([LAZYGIT, "clone", "-q", "--no-checkout", slow.url(bare.name), str(dest)])
        try:
            for i in range(3):
                (scratch / f"pushed_{i}.txt").write_text(f"pushed {i}\n" * 1000)
                subprocess.run(["git", "-C", str(scratch), "add", "-A"], **run)
                subprocess.run(["git", "-C", str(scratch), "commit", "-qm", f"push {i}"], **run)
            subprocess.run(["git", "-C", str(bare), "config", "receive.unpackLimit", "1"], **run)
            subprocess.run(["git", "-C", str(scratch), "push", "-q", "origin", "HEAD"], **run)
            subprocess.run(["git", "-C", str(bare), "update-server-info"], **run)
            slow.add(Rule("delay", path=r"\.(pack|idx)$", methods=("GET",), stall=0.6))
            code, text = on_terminal(["git", "fetch"], dest)
            assert code == 0, text
            # (Here the pack indexes take the time: bytes read, no total yet.)
            assert re.search(r"^lazygit: fetching objects: [\d.]+ MiB", text, re.M), text
            assert re.search(r"^lazygit: fetched \d+ objects", text, re.M), text
            tip = subprocess.run(["git", "-C", str(scratch), "rev-parse", "HEAD"], **run)
            fetched = subprocess.run(["git", "-C", str(dest), "rev-parse", "origin/main"], **run)
            assert fetched.stdout == tip.stdout
        finally:
            stop_daemon(dest / ".git")


def test_summary_lines_count_in_the_singular_too() -> None:
    """A clone of a tiny repository said "in 1 requests", a one-blob batch "fetched 1
    objects", `lazygit sparse` "1 batches"."""
    from lazygit.daemonclient import describe
    from lazygit.progress import counted

    assert [counted(n, "batch") for n in (0, 1, 2)] == ["0 batches", "1 batch", "2 batches"]
    assert counted(1, "request") == "1 request" and counted(7, "blob") == "7 blobs"
    line = describe({"objects": 1, "bytes": 2048, "seconds": 0.05})
    assert line == "lazygit: fetched 1 object (2 KiB) in 0.05 s"
    assert describe({"objects": 3, "bytes": 0, "seconds": 1})[:26] == "lazygit: fetched 3 objects"
