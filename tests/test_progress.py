"""Progress bars on a terminal: `lazygit clone` and `git clone --filter=blob:none lazy::URL`
draw them on stderr; `-q` and a stderr that is not a terminal get none.

The commands run on a real pseudo-terminal (the pty module), as a user's shell runs them.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

from conftest import Published, stop_daemon

LAZYGIT = "lazygit"

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def on_terminal(args: list[str], cwd: Path, timeout: float = 120.0) -> tuple[int, str]:
    """Run ``args`` with stdin, stdout and stderr on a new pseudo-terminal; (exit code,
    what it wrote, without colours and cursor moves, one line per redraw)."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "LINES": "40", "TERM": "xterm"}
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = ANSI.sub("", out.decode(errors="replace")).replace("\r\n", "\n").replace("\r", "\n")
    return code, text


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
