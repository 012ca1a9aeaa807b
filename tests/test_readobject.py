"""The read-object hook (microsoft/git) driven the way git drives it.

Protocol tests use a fake daemon: a Unix-socket server speaking docs/protocol.md that writes
the asked-for object with ``git hash-object -w`` or fails on purpose. The last test runs the
real pieces: nginx, a lazy clone, the installed hook and the real daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socketserver
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from readobject_driver import DISABLED, FAILED, ReadObjectDriver

from lazygit import daemonclient
from lazygit.errors import LazyGitError
from lazygit.hooks import _EMBEDDED_BODY, REPO_HOOK, hook_source, install_read_object_hook
from lazygit.localrepo import LocalRepo
from lazygit.pktline import flush, read_text_until_flush, write_text

HEAVY = {"httpx", "httpcore", "h2", "anyio", "dulwich", "rich", "typer", "click", "starlette"}
HEAVY |= {"uvicorn", "platformdirs", "trustme"}
HOOK_MODULES = {"lazygit", "lazygit.errors", "lazygit.readobject", "lazygit.pktline"}
HOOK_MODULES |= {"lazygit.daemonclient", "lazygit.gitcmd"}


def git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> str:
    env = dict(os.environ, GIT_NO_LAZY_FETCH="1")
    proc = subprocess.run(
        ["git", "-c", "core.virtualizeObjects=false", *args],
        cwd=cwd,
        input=input,
        env=env,
        capture_output=True,
        check=True,
    )
    return proc.stdout.decode().strip()


class FakeDaemon:
    """docs/protocol.md's daemon, reduced to what the hook uses, with fault injection."""

    def __init__(self, git_dir: Path, blobs: dict[str, bytes]) -> None:
        self.git_dir = git_dir
        self.blobs = blobs  # what "the server" has
        self.requests: list[dict[str, Any]] = []
        self.hang_up_next = False  # close the next connection without a reply (a crash)
        self._dir = Path(tempfile.mkdtemp(prefix="lg-ro-"))  # short: sun_path is 108 bytes
        self.socket_path = self._dir / "d.sock"
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                request = json.loads(self.rfile.readline())
                daemon.requests.append(request)
                if daemon.hang_up_next:
                    daemon.hang_up_next = False
                    return
                reply = daemon.answer(request)
                self.wfile.write(json.dumps(reply).encode() + b"\n")

        self.server = socketserver.UnixStreamServer(str(self.socket_path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") == "ping":
            return {"ok": True, "pid": os.getpid(), "version": "fake"}
        if request.get("op") != "fetch":
            return {"ok": False, "error": f"unsupported op {request.get('op')!r}"}
        size = 0
        for oid in request["oids"]:
            if oid not in self.blobs:
                return {"ok": False, "error": f"object {oid} is not on the server"}
            written = git(
                f"--git-dir={self.git_dir}", "hash-object", "-w", "--stdin", input=self.blobs[oid]
            )
            assert written == oid
            size += len(self.blobs[oid])
        return {"ok": True, "objects": len(request["oids"]), "bytes": size, "requests": 1}

    def fetched(self) -> list[str]:
        return [oid for r in self.requests if r.get("op") == "fetch" for oid in r["oids"]]

    def pings(self) -> int:
        return sum(1 for r in self.requests if r.get("op") == "ping")

    def __enter__(self) -> FakeDaemon:
        self.thread.start()
        state = self.git_dir / "lazygit"
        state.mkdir(exist_ok=True)
        info = {"socket": str(self.socket_path), "pid": os.getpid()}
        (state / "daemon.json").write_text(json.dumps(info))
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        (self.git_dir / "lazygit" / "daemon.json").unlink(missing_ok=True)
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def repo(tmp_path: Path) -> LocalRepo:
    """An empty non-bare repository with the hook installed."""
    work = tmp_path / "clone"
    local = LocalRepo.init(work)
    install_read_object_hook(local)
    return local


@pytest.fixture
def blobs() -> dict[str, bytes]:
    """Contents "on the server", by object id; none is in the local repository."""
    contents = [b"first blob\n", b"second blob\n" * 100, bytes(range(256)) * 3]
    return {git("hash-object", "--stdin", input=c): c for c in contents}


@pytest.fixture
def daemon(repo: LocalRepo, blobs: dict[str, bytes]) -> Iterator[FakeDaemon]:
    with FakeDaemon(repo.git_dir, blobs) as fake:
        yield fake


def hook_of(repo: LocalRepo) -> Path:
    return repo.git_dir / "hooks" / "read-object"


def raw_session(repo: LocalRepo, wire: bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    """Feed the hook a whole dialogue at once (then EOF, as when git exits)."""
    return subprocess.run(
        [str(hook_of(repo))],
        input=wire,
        capture_output=True,
        cwd=repo.worktree,
        env={**os.environ, "GIT_DIR": str(repo.git_dir), **env},
        timeout=120,
    )


def pkts(*lists: list[str]) -> bytes:
    """Text lists, each ended by a flush packet."""
    import io

    out = io.BytesIO()
    for lines in lists:
        for line in lines:
            write_text(out, line)
        flush(out)
    return out.getvalue()


def replies(stdout: bytes) -> list[list[str]]:
    import io

    inp = io.BytesIO(stdout)
    result = []
    while True:
        try:
            result.append(read_text_until_flush(inp))
        except EOFError:
            return result


HELLO = ["git-read-object-client", "version=1"]


# -- installing --------------------------------------------------------------------------
def test_install_writes_hook_for_the_real_interpreter(repo: LocalRepo) -> None:
    hook = hook_of(repo)
    text = hook.read_text()
    assert text.splitlines()[0] == f"#!{sys.executable}"
    assert "shims" not in text.splitlines()[0]
    assert f"LAZYGIT_PATH = {str(REPO_HOOK.parent.parent)!r}" in text
    assert stat.S_IMODE(hook.stat().st_mode) == 0o755
    # Read the file itself: git() passes -c core.virtualizeObjects=false.
    config = str(repo.git_dir / "config")
    assert git("config", "--file", config, "--bool", "core.virtualizeObjects") == "true"


def test_embedded_hook_is_the_repository_copy() -> None:
    assert REPO_HOOK.read_text() == _EMBEDDED_BODY == hook_source()
    assert os.access(REPO_HOOK, os.X_OK)


@pytest.mark.parametrize("relative", [True, False])
def test_install_honours_core_hooks_path(tmp_path: Path, relative: bool) -> None:
    local = LocalRepo.init(tmp_path / "w")
    target = tmp_path / "w" / "my-hooks"
    value = "my-hooks" if relative else str(target)
    git(f"--git-dir={local.git_dir}", "config", "core.hooksPath", value)
    path = install_read_object_hook(local)
    assert path == target / "read-object"
    assert path.is_file()
    assert not (local.git_dir / "hooks" / "read-object").exists()


def test_install_keeps_a_foreign_hook_unless_forced(tmp_path: Path) -> None:
    local = LocalRepo.init(tmp_path / "w")
    hook = local.git_dir / "hooks" / "read-object"
    hook.write_text("#!/bin/sh\nexit 1\n")
    with pytest.raises(LazyGitError, match="not written by lazygit"):
        install_read_object_hook(local)
    assert hook.read_text() == "#!/bin/sh\nexit 1\n"
    install_read_object_hook(local, force=True)
    install_read_object_hook(local)  # reinstalling over our own hook is fine
    assert "lazygit.readobject" in hook.read_text()


def test_hook_imports_only_the_standard_library(repo: LocalRepo) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(hook_of(repo))],
        input=b"",
        capture_output=True,
        cwd=repo.worktree,
        env=dict(os.environ, GIT_DIR=str(repo.git_dir)),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.decode().splitlines()
        if line.startswith("import time:") and "imported package" not in line
    }
    assert not {m.split(".")[0] for m in modules} & HEAVY
    assert {m for m in modules if m.split(".")[0] == "lazygit"} <= HOOK_MODULES


def test_hook_without_lazygit_says_so_in_one_line(tmp_path: Path) -> None:
    hook = tmp_path / "read-object"
    hook.write_text(hook_source())  # LAZYGIT_PATH unset; -I -S: no site-packages either
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(hook)], input=b"", capture_output=True, cwd=tmp_path
    )
    assert proc.returncode != 0
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("lazygit: read-object hook cannot import lazygit")


# -- the dialogue --------------------------------------------------------------------------
def test_objects_are_fetched_through_the_daemon(
    repo: LocalRepo, daemon: FakeDaemon, blobs: dict[str, bytes]
) -> None:
    oids = list(blobs)
    with ReadObjectDriver(hook_of(repo), repo.git_dir) as driver:
        assert [driver.get(oid) for oid in oids] == ["success"] * len(oids)
        assert driver.starts == 1
        assert driver.close() == 0
        assert driver.stderr_text() == ""
    assert daemon.fetched() == oids
    assert daemon.pings() == 1
    for oid in oids:
        shown = subprocess.run(
            ["git", f"--git-dir={repo.git_dir}", "cat-file", "blob", oid],
            env=dict(os.environ, GIT_NO_LAZY_FETCH="1"),
            capture_output=True,
            check=True,
        )
        assert shown.stdout == blobs[oid]


@pytest.mark.parametrize("where", ["relative GIT_DIR", "linked worktree"])
def test_the_hook_finds_the_repository_as_git_names_it(
    repo: LocalRepo, daemon: FakeDaemon, blobs: dict[str, bytes], where: str
) -> None:
    """git runs hooks in the worktree top with GIT_DIR as it found it: ".git" (relative to
    that directory) in the main worktree, .git/worktrees/NAME in a linked one, whose objects
    and daemon are the common directory's (its ``commondir`` file, a relative path)."""
    git_dir: Path = Path(".git")
    cwd = repo.worktree
    if where == "linked worktree":
        git("commit", "-q", "--allow-empty", "-m", "first", cwd=repo.worktree)
        cwd = repo.worktree.parent / "linked"
        git("worktree", "add", "-q", "--detach", str(cwd), cwd=repo.worktree)
        git_dir = repo.git_dir / "worktrees" / "linked"
        assert (git_dir / "commondir").read_text().strip() == "../.."
    oids = list(blobs)
    with ReadObjectDriver(hook_of(repo), git_dir, cwd=cwd) as driver:
        assert [driver.get(oid) for oid in oids] == ["success"] * len(oids)
        assert driver.close() == 0
        assert driver.stderr_text() == ""
    assert daemon.fetched() == oids


def test_daemon_failure_is_status_error_with_one_line(
    repo: LocalRepo, daemon: FakeDaemon, blobs: dict[str, bytes]
) -> None:
    missing = "1" * 40
    present = next(iter(blobs))
    with ReadObjectDriver(hook_of(repo), repo.git_dir) as driver:
        assert driver.get(missing) == "error"
        assert driver.stderr_text() == f"lazygit: object {missing} is not on the server\n"
        assert driver.get(present) == "success"  # the hook stays usable
        assert driver.starts == 1
        assert driver.close() == 0


def test_daemon_crash_mid_request_is_an_error_not_an_abort(
    repo: LocalRepo, daemon: FakeDaemon, blobs: dict[str, bytes]
) -> None:
    first, second = list(blobs)[:2]
    with ReadObjectDriver(hook_of(repo), repo.git_dir) as driver:
        assert driver.get(first) == "success"
        daemon.hang_up_next = True
        assert driver.get(second) == "error"
        assert "closed the connection mid-request" in driver.stderr_text()
        assert driver.get(second) == "success"


def test_malformed_sha1_is_an_error_without_asking_the_daemon(
    repo: LocalRepo, daemon: FakeDaemon
) -> None:
    with ReadObjectDriver(hook_of(repo), repo.git_dir, verify=False) as driver:
        for bad in ["invalid", "a" * 39, "g" * 40, "a" * 41, ""]:
            assert driver.get(bad) == "error"
        assert driver.stderr_text().count("malformed object id") == 5
        assert driver.close() == 0
    assert daemon.fetched() == []


def test_hook_is_restarted_after_it_dies(
    repo: LocalRepo, daemon: FakeDaemon, blobs: dict[str, bytes]
) -> None:
    a, b, c = list(blobs)
    with ReadObjectDriver(hook_of(repo), repo.git_dir) as driver:
        assert driver.get(a) == "success"
        assert driver.proc is not None
        driver.proc.kill()
        driver.proc.wait()
        assert driver.get(b) == FAILED  # git: "external process failed", object missing
        assert driver.get(b) == "success"  # ... and a new hook for the next request
        assert driver.get(c) == "success"
        assert driver.starts == 2


def test_unreachable_daemon_aborts_for_the_rest_of_the_process(repo: LocalRepo) -> None:
    # No daemon.json, and the lock a running daemon would hold is taken: any daemon the
    # client spawns exits at once, so the daemon cannot be reached within the timeout.
    state = repo.git_dir / "lazygit"
    state.mkdir()
    git(f"--git-dir={repo.git_dir}", "config", "lazygit.daemonTimeout", "1")
    with open(state / "daemon.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with ReadObjectDriver(hook_of(repo), repo.git_dir, verify=False) as driver:
            assert driver.get("1" * 40) == "abort"
            assert driver.get("2" * 40) == DISABLED  # git never asks an aborted hook again
            lines = driver.stderr_text().splitlines()
            assert len(lines) == 1
            assert lines[0].startswith("lazygit: the lazygit daemon did not start within")
            assert driver.close() == 0


def test_no_repository_aborts(repo: LocalRepo, tmp_path: Path) -> None:
    hook = hook_of(repo)
    with ReadObjectDriver(hook, tmp_path / "nowhere", cwd=tmp_path, verify=False) as driver:
        assert driver.get("1" * 40) == "abort"
        assert "not inside a git repository" in driver.stderr_text()
        assert driver.close() == 0


def test_hook_answers_abort_to_every_request_after_aborting(repo: LocalRepo) -> None:
    proc = raw_session(
        repo,
        pkts(HELLO, ["capability=get"], ["command=get", "sha1=" + "1" * 40])
        + pkts(["command=get", "sha1=" + "2" * 40]),
        GIT_DIR=str(repo.git_dir / "missing"),
    )
    assert proc.returncode == 0
    assert replies(proc.stdout)[2:] == [["status=abort"], ["status=abort"]]
    assert len(proc.stderr.decode().splitlines()) == 1


# -- handshake and framing, against git's side as documented -------------------------------
def test_handshake_picks_version_1_and_only_the_get_capability(repo: LocalRepo) -> None:
    wire = pkts(
        ["git-read-object-client", "version=1", "version=42"],
        ["capability=get", "capability=have", "capability=put", "capability=not-yet-invented"],
    )
    proc = raw_session(repo, wire)
    assert proc.returncode == 0, proc.stderr
    assert replies(proc.stdout) == [["git-read-object-server", "version=1"], ["capability=get"]]


def test_no_get_offered_means_no_capability_listed(repo: LocalRepo) -> None:
    proc = raw_session(repo, pkts(HELLO, ["capability=have"]))
    assert proc.returncode == 0
    assert replies(proc.stdout)[1] == []
    with ReadObjectDriver(hook_of(repo), repo.git_dir, capabilities=("have",)) as driver:
        assert driver.get("1" * 40) == DISABLED


def test_unknown_command_is_an_error_and_the_hook_continues(
    repo: LocalRepo, daemon: FakeDaemon, blobs: dict[str, bytes]
) -> None:
    oid = next(iter(blobs))
    wire = pkts(HELLO, ["capability=get"], ["command=put", "sha1=" + oid])
    wire += pkts(["command=get", "sha1=" + oid])
    proc = raw_session(repo, wire)
    assert proc.returncode == 0
    assert replies(proc.stdout)[2:] == [["status=error"], ["status=success"]]
    assert proc.stderr.decode() == "lazygit: read-object hook: unsupported command 'put'\n"


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (pkts(["git-filter-client", "version=2"]), "expected 'git-read-object-client'"),
        (pkts(["git-read-object-client", "version=2"]), "lazygit speaks version=1"),
        (b"00zz", "bad pkt-line length prefix"),
        (pkts(HELLO, ["capability=get"]) + b"0010command=get\n", "ended before the flush"),
        (pkts(HELLO) + b"0009cap", "ended inside a packet"),
    ],
)
def test_protocol_violations_exit_1_with_one_line(
    repo: LocalRepo, wire: bytes, message: str
) -> None:
    proc = raw_session(repo, wire)
    assert proc.returncode == 1
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lazygit: ")
    assert message in lines[0]


@pytest.mark.parametrize("wire", [b"", pkts(HELLO), pkts(HELLO, ["capability=get"])])
def test_eof_from_git_exits_0_quietly(repo: LocalRepo, wire: bytes) -> None:
    proc = raw_session(repo, wire)
    assert proc.returncode == 0
    assert proc.stderr == b""


# -- end to end ----------------------------------------------------------------------------
def test_end_to_end_with_nginx_lazy_clone_and_real_daemon(
    nginx: Any, server_root: Path, tmp_path: Path
) -> None:
    from lazygit.clone import CloneOptions, clone
    from lazygit.sample import TINY, make_server_repo

    bare = server_root / "readobject.git"
    if not bare.exists():
        make_server_repo(bare, TINY)
    dest = tmp_path / "lazy"
    clone(CloneOptions(nginx.url("readobject.git"), dest, no_checkout=True))
    local = LocalRepo.find(dest)
    hook = install_read_object_hook(local)
    git(f"--git-dir={local.git_dir}", "config", "lazygit.daemonTimeout", "60")
    listing = git(f"--git-dir={local.git_dir}", "rev-list", "--objects", "--missing=print", "HEAD")
    oids = [line[1:] for line in listing.splitlines() if line.startswith("?")][:4]
    assert len(oids) == 4
    try:
        with ReadObjectDriver(hook, local.git_dir) as driver:
            assert not any(driver.has_object(oid) for oid in oids)  # still lazy
            assert [driver.get(oid) for oid in oids] == ["success"] * len(oids)
            assert driver.starts == 1
            assert driver.close() == 0
            assert "Traceback" not in driver.stderr_text()
        for oid in oids:
            git(f"--git-dir={local.git_dir}", "cat-file", "-e", oid)
    finally:
        with contextlib.suppress(LazyGitError, OSError, ValueError):
            daemonclient.request(local.git_dir, {"op": "stop"}, start=False, timeout=10)
