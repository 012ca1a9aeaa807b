"""The per-repository daemon: start-up, hardening, batching of good and bad requests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import Published, stop_daemon
from servers import running

from lazygit import daemonclient
from lazygit.errors import DaemonError

NO_LAZY = {**os.environ, "GIT_NO_LAZY_FETCH": "1"}


@pytest.fixture(scope="module")
def lazy(small: Published, nginx, tmp_path_factory: pytest.TempPathFactory):
    dest = tmp_path_factory.mktemp("daemon") / "lazy"
    subprocess.run(
        ["lazygit", "clone", "-q", "--no-checkout", nginx.url(small.name), str(dest)], check=True
    )
    yield dest
    stop_daemon(dest / ".git")


def missing_blobs(repo: Path, n: int) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--objects", "--missing=print", "--all"],
        capture_output=True,
        text=True,
        env=NO_LAZY,
        check=True,
    ).stdout
    return [ln[1:] for ln in out.splitlines() if ln.startswith("?")][:n]


def raw(git_dir: Path, payload: bytes) -> dict:
    """Send raw bytes to the running daemon and read its reply line."""
    sock = daemonclient.connect(git_dir)
    with contextlib.closing(sock):
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except BrokenPipeError:
            pass  # the daemon stopped reading an oversized request: its reply is waiting
        buf = b""
        while chunk := sock.recv(65536):
            buf += chunk
    return json.loads(buf)


def test_one_bad_request_never_fails_the_others(lazy: Path):
    git_dir = lazy / ".git"
    good = missing_blobs(lazy, 30)
    bad = "0123456789abcdef0123456789abcdef01234567"

    def ask(oids: list[str]) -> str:
        try:
            daemonclient.fetch(git_dir, oids)
            return "ok"
        except DaemonError as exc:
            return str(exc)

    requests = [good[i::5] for i in range(5)] + [[bad, good[0]]]
    with ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(ask, requests))
    assert results[:5] == ["ok"] * 5
    assert f"object {bad} is not on the server" in results[5]
    assert missing_blobs(lazy, 1000) == [o for o in missing_blobs(lazy, 1000) if o not in good]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"this is not json\n", "malformed request"),
        (b"[1, 2, 3]\n", "malformed request"),
        (b'{"op": "fetch", "oids": ["xyz"]}\n', "malformed object id"),
        (b'{"op": "fetch", "oids": "abc"}\n', "oids must be a list"),
        (b'{"op": "launch-missiles"}\n', "unknown request"),
    ],
)
def test_malformed_requests_are_refused_and_the_daemon_lives_on(lazy: Path, payload, needle):
    git_dir = lazy / ".git"
    reply = raw(git_dir, payload)
    assert reply["ok"] is False and needle in reply["error"]
    assert daemonclient.request(git_dir, {"op": "ping"})["ok"]


def test_oversized_request_is_refused(lazy: Path):
    git_dir = lazy / ".git"
    reply = raw(git_dir, b'{"op": "fetch", "oids": ["' + b"a" * (65 << 20) + b'"]}\n')
    assert reply == {"ok": False, "error": "request too large"}
    assert daemonclient.request(git_dir, {"op": "ping"})["ok"]


def test_only_the_owner_can_connect(lazy: Path):
    git_dir = lazy / ".git"
    daemonclient.request(git_dir, {"op": "ping"})
    path = Path(json.loads((git_dir / "lazygit" / "daemon.json").read_text())["socket"])
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.parent.stat().st_uid == os.getuid()
    # Another user (nobody) cannot even reach the socket.
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"try:\n    s.connect({str(path)!r})\nexcept OSError as e:\n    sys.exit(3)\n"
        "s.sendall(b'{\"op\": \"ping\"}\\n'); sys.exit(0 if s.recv(10) == b'' else 4)\n"
    )
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "python3", "-c", code],
        capture_output=True,
    )
    assert proc.returncode in (0, 3), proc.stderr


def test_concurrent_starts_make_exactly_one_daemon(small: Published, nginx, tmp_path: Path):
    dest = tmp_path / "c"
    subprocess.run(
        ["lazygit", "clone", "-q", "--no-checkout", nginx.url(small.name), str(dest)], check=True
    )
    git_dir = dest / ".git"
    try:
        procs = [daemonclient.spawn_daemon(git_dir) for _ in range(8)]
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(timeout=2))
            except subprocess.TimeoutExpired:
                codes.append(None)  # the one that runs
        assert codes.count(None) == 1 and codes.count(0) == 7
        pid = daemonclient.request(git_dir, {"op": "ping"})["pid"]
        assert pid == procs[codes.index(None)].pid
    finally:
        stop_daemon(git_dir)


def test_clone_prestarts_and_idle_daemon_exits(small: Published, nginx, tmp_path: Path):
    dest = tmp_path / "c"
    env = {
        **os.environ,
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "lazygit.prestartDaemon",
        "GIT_CONFIG_VALUE_0": "true",
        "GIT_CONFIG_KEY_1": "lazygit.daemonIdleSeconds",
        "GIT_CONFIG_VALUE_1": "2",
    }
    subprocess.run(
        ["lazygit", "clone", "-q", "--no-checkout", nginx.url(small.name), str(dest)],
        check=True,
        env=env,
    )
    git_dir = dest / ".git"
    info = git_dir / "lazygit" / "daemon.json"
    try:
        deadline = time.monotonic() + 20
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        pid = daemonclient.request(git_dir, {"op": "ping"}, start=False)["pid"]
        # It read daemonIdleSeconds=2 from the environment it was started in; it goes away.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not running(pid):
                break
            time.sleep(0.1)
        else:
            pytest.fail("idle daemon did not exit")
        assert not info.exists()
    finally:
        stop_daemon(git_dir)


def test_a_daemon_that_fails_while_loading_answers_its_waiting_clients(tmp_path: Path):
    """The daemon listens before it loads; when loading fails (here: not a lazygit clone),
    a client that connected meanwhile gets one line naming the cause, and nothing is left
    behind that points at a dead socket."""
    repo = tmp_path / "plain"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git_dir = repo / ".git"
    with pytest.raises(DaemonError) as info:
        daemonclient.fetch(git_dir, ["1" * 40])
    assert "the lazygit daemon failed to start" in str(info.value)
    assert "is not a lazygit clone" in str(info.value)
    assert "\n" not in str(info.value)
    for _ in range(100):  # the daemon process is on its way out
        if not (git_dir / "lazygit" / "daemon.json").exists():
            break
        time.sleep(0.05)
    assert not (git_dir / "lazygit" / "daemon.json").exists()
    assert daemonclient._connect(str(git_dir)) is None


def test_the_per_batch_client_path_stays_light():
    """git starts git-remote-lazy (and the read-object hook) for every batch: its imports
    are measured start-up time.  `socket`, `json`, `re`, `enum` and `typing` cost ~20 ms
    together; the client reaches the daemon through `_socket` and `_json` instead."""
    for module in ("lazygit.helper", "lazygit.readobject"):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
        )
        imported = {
            line.rsplit("|", 1)[1].strip()
            for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "imported package" not in line
        }
        assert not imported & {"socket", "json", "re", "enum", "typing", "subprocess"}, module


def test_a_config_change_while_the_daemon_loads_is_seen(lazy: Path):
    """The config stamp is taken before the settings are read: `lazygit offline on` run
    while a daemon starts up takes effect at its first request (it used to be missed)."""
    from lazygit.config import Settings
    from lazygit.daemon import Daemon, config_mtimes

    git_dir = lazy / ".git"
    stamp = config_mtimes(git_dir)
    settings = Settings.load(git_dir)
    subprocess.run(["git", "-C", str(lazy), "config", "lazygit.offline", "true"], check=True)
    try:
        daemon = Daemon(git_dir, settings, stamp)
        assert not daemon.settings.offline
        daemon.refresh_settings()
        assert daemon.settings.offline
        # Its history thread logs to stderr: while this test's output is still captured.
        assert daemon.history_ready.wait(60)
    finally:
        subprocess.run(["git", "-C", str(lazy), "config", "--unset", "lazygit.offline"])


def test_the_idle_exit_never_drops_an_accepted_request(lazy: Path, tmp_path: Path):
    """The idle watch counted a request only once its thread ran: a request accepted as the
    daemon idled out was read, then dropped at the exit ("the lazygit daemon closed the
    connection mid-request"), and git failed.  A connection now counts from its accept, and
    one accepted after the daemon decided to close is reset unread, which its client asks
    the next daemon again for (daemonclient.request)."""
    import socket

    from lazygit.config import Settings
    from lazygit.daemon import Daemon, _Handler, _Server, config_mtimes

    git_dir = lazy / ".git"
    daemon = Daemon(git_dir, Settings.load(git_dir), config_mtimes(git_dir))
    assert daemon.history_ready.wait(60)  # its thread logs to stderr: while captured
    path = tmp_path / "d.sock"
    server = _Server(str(path), _Handler)
    server.daemon = daemon
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    def ping(sock: socket.socket) -> bytes:
        sock.sendall(b'{"op": "ping"}\n')
        return sock.recv(4096)

    try:
        daemon.last_active -= 3600
        with socket.socket(socket.AF_UNIX) as held:
            held.connect(str(path))
            for _ in range(200):  # accepted (counted) before its thread reads a byte
                if daemon.active:
                    break
                time.sleep(0.01)
            assert daemon.active == 1
            assert daemon.close_if_idle() is None  # an accepted request keeps it open
            assert b'"ok": true' in ping(held)
        for _ in range(200):
            if not daemon.active:
                break
            time.sleep(0.01)
        daemon.last_active -= 3600
        assert daemon.close_if_idle() is not None  # idle: it closes ...
        with socket.socket(socket.AF_UNIX) as late:
            late.connect(str(path))  # ... and a client that comes now is reset unread
            with pytest.raises(ConnectionResetError):
                ping(late)
        assert daemon.active == 0
    finally:
        server.shutdown()
        server.server_close()


def test_a_daemon_started_while_the_last_one_exits_serves(lazy: Path):
    """A daemon on its way out (idle, stopped) holds the lock until its process ends, while
    it lets a batch in flight land.  A client that comes then starts a new daemon; that one
    found the lock held and exited, and the client waited for a socket until
    lazygit.daemonTimeout.  It now waits for the lock when no daemon has published."""
    import fcntl

    git_dir = lazy / ".git"
    stop_daemon(git_dir)
    exiting = open(git_dir / "lazygit" / "daemon.lock", "a+")  # noqa: SIM115 - closed below
    fcntl.flock(exiting, fcntl.LOCK_EX | fcntl.LOCK_NB)  # it unpublished, the lock still held
    threading.Timer(1.0, exiting.close).start()  # ... and exits a second later
    start = time.monotonic()
    try:
        reply = daemonclient.request(git_dir, {"op": "ping"}, timeout=15)
    finally:
        exiting.close()
    assert reply["ok"] and reply["pid"] in _daemon_pids(git_dir)
    assert time.monotonic() - start < 8


def _daemon_pids(git_dir: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"lazygit.daemon {git_dir}$"], capture_output=True)
    return [int(p) for p in out.stdout.split()]


def _the_daemon_pid(git_dir: Path) -> int:
    """The one daemon serving ``git_dir``.  A daemon that lost the race to start (the clone's
    pre-started one and a helper's can start together) lives on for its imports before it
    finds the lock taken and exits: wait for it to go."""
    for _ in range(250):
        pids = _daemon_pids(git_dir)
        if len(pids) == 1:
            return pids[0]
        time.sleep(0.02)
    raise AssertionError(f"daemons serving {git_dir}: {_daemon_pids(git_dir)}")


def test_a_copied_or_moved_clone_gets_its_own_daemon(small: Published, nginx, tmp_path: Path):
    """`cp -a` copies daemon.json too: the copy must not send its fetches to the original's
    daemon (they would land in the original's object store).  `mv` moves the daemon's lock
    with the repository: the daemon serving the old path is stopped and a new one serves the
    new path."""
    orig = tmp_path / "orig"
    subprocess.run(
        ["lazygit", "clone", "-q", "--no-checkout", nginx.url(small.name), str(orig)], check=True
    )
    blobs = missing_blobs(orig, 3)
    copy, moved = tmp_path / "copy", tmp_path / "moved"
    try:
        subprocess.run(["git", "-C", str(orig), "cat-file", "-p", blobs[0]], check=True,
                       capture_output=True)  # fmt: skip
        old_pid = _the_daemon_pid(orig / ".git")
        subprocess.run(["cp", "-a", str(orig), str(copy)], check=True)
        subprocess.run(["git", "-C", str(copy), "cat-file", "-p", blobs[1]], check=True,
                       capture_output=True)  # fmt: skip
        got = subprocess.run(["git", "-C", str(orig), "cat-file", "-e", blobs[1]], env=NO_LAZY)
        assert got.returncode != 0, "the copy's blob went into the original's object store"
        _the_daemon_pid(copy / ".git")

        orig.rename(moved)
        proc = subprocess.run(
            ["git", "-C", str(moved), "cat-file", "-p", blobs[2]], capture_output=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        new_pid = _the_daemon_pid(moved / ".git")
        assert new_pid != old_pid
        for _ in range(250):  # the old daemon was told to stop
            if not _daemon_pids(orig / ".git"):
                break
            time.sleep(0.02)
        assert not _daemon_pids(orig / ".git")
        log = (moved / ".git" / "lazygit" / "daemon.log").read_text()
        assert "serves this repository, now at" in log, log
    finally:
        for repo in (orig, copy, moved):
            stop_daemon(repo / ".git")


def test_a_clone_made_again_where_one_was_deleted(small: Published, nginx, tmp_path: Path):
    """`rm -rf` of a clone and a clone again at the same path: the old daemon exits (it took
    the new clone for its own, and lived on until it idled out), and the new clone's daemon
    stays reachable.  Both used to have the same socket path, and the old one removed it as
    it exited: git then waited for a daemon that could not start (the lock was held) until
    lazygit.daemonTimeout."""
    dest = tmp_path / "c"
    clone = ["lazygit", "clone", "-q", "--no-checkout", nginx.url(small.name), str(dest)]
    subprocess.run(clone, check=True)

    def show(blob: str) -> None:
        proc = subprocess.run(
            ["git", "-C", str(dest), "cat-file", "-p", blob], capture_output=True, timeout=20
        )
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")

    show(missing_blobs(dest, 1)[0])
    old_pid = _the_daemon_pid(dest / ".git")
    shutil.rmtree(dest)
    subprocess.run(clone, check=True)
    try:
        blobs = missing_blobs(dest, 2)
        show(blobs[0])  # the new clone's daemon starts
        assert set(_daemon_pids(dest / ".git")) - {old_pid}
        for _ in range(250):  # it sees that its repository is gone, though DIR is back
            if not running(old_pid):
                break
            time.sleep(0.02)
        assert not running(old_pid)
        show(blobs[1])
        assert len(_daemon_pids(dest / ".git")) == 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(old_pid, signal.SIGKILL)
        stop_daemon(dest / ".git")


@pytest.mark.parametrize("quick", [True, False], ids=["posix_spawn", "subprocess"])
def test_a_daemon_that_cannot_be_started_is_one_line(
    quick: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Python that is gone (a removed virtualenv, say): one line, not a traceback."""
    git_dir = tmp_path / ".git"
    (git_dir / "lazygit").mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    if not quick:
        monkeypatch.setattr(daemonclient, "_spawn_quickly", lambda git_dir: None)
    with pytest.raises(DaemonError) as info:
        daemonclient.request(git_dir, {"op": "ping"})
    assert str(info.value).startswith(
        f"cannot start the lazygit daemon ({tmp_path / 'no-such-python'}): No such file"
    )


def test_a_missing_working_directory_is_named(tmp_path: Path) -> None:
    from lazygit.errors import GitCommandError
    from lazygit.gitcmd import run_git

    gone = tmp_path / "gone"
    with pytest.raises(GitCommandError, match="does not exist"):
        run_git(["status"], cwd=gone)


def test_git_remote_set_url_is_followed(small: Published, nginx, server_root: Path, tmp_path):
    """The server moves (or a mirror takes over): after `git remote set-url`, lazy fetches,
    `git fetch` and `lazygit prefetch` read from the new URL, whether the daemon was running
    when the URL changed or not.  Each old copy is deleted, so the old URL cannot serve."""
    names = [f"moving-{i}.git" for i in range(4)]
    for name in names:
        shutil.rmtree(server_root / name, ignore_errors=True)
        shutil.copytree(small.info.path, server_root / name, symlinks=True)
    dest = tmp_path / "lazy"
    subprocess.run(
        ["lazygit", "clone", "-q", "--no-checkout", nginx.url(names[0]), str(dest)], check=True
    )
    blobs = missing_blobs(dest, 3)

    def git(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", "-C", str(dest), *args], capture_output=True, timeout=120)

    def move_to(i: int) -> None:
        assert git("remote", "set-url", "origin", "lazy::" + nginx.url(names[i])).returncode == 0
        shutil.rmtree(server_root / names[i - 1])

    try:
        assert git("cat-file", "-p", blobs[0]).returncode == 0  # the daemon runs
        move_to(1)  # while it runs
        proc = git("cat-file", "-p", blobs[1])
        assert proc.returncode == 0, proc.stderr
        assert git("fetch", "-q", "origin").returncode == 0
        stop_daemon(dest / ".git")
        move_to(2)  # while none runs
        proc = git("cat-file", "-p", blobs[2])
        assert proc.returncode == 0, proc.stderr
        log = (dest / ".git" / "lazygit" / "daemon.log").read_text()
        assert log.count("the remote URL is now") == 2, log
        stop_daemon(dest / ".git")
        move_to(3)  # then lazygit prefetch, which reads without the daemon
        nginx.clear_log()
        proc = subprocess.run(
            ["lazygit", "prefetch", "HEAD", "--", "docs"], cwd=dest, capture_output=True
        )
        assert proc.returncode == 0, proc.stderr
        assert any(names[3] in e.path for e in nginx.log_entries())
        assert (
            json.loads((dest / ".git" / "lazygit" / "catalog.json").read_text())["sources"][0][
                "url"
            ]
            == nginx.url(names[3]) + "/"
        )
    finally:
        stop_daemon(dest / ".git")
        for name in names:
            shutil.rmtree(server_root / name, ignore_errors=True)


def test_git_c_values_are_read_as_git_passes_them_down(tmp_path: Path):
    """What `git -c` hands the helper, straight from git: GIT_CONFIG_PARAMETERS (and the
    GIT_CONFIG_COUNT list, which git reads first), quoting and value-less keys included."""
    script = (
        "import os, json; from lazygit import daemonclient as c; "
        "print(json.dumps(c.command_config(os.environ)))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG")}
    env.update(GIT_CONFIG_COUNT="2", GIT_CONFIG_KEY_0="lazygit.familyBytes")
    env.update(GIT_CONFIG_VALUE_0="5", GIT_CONFIG_KEY_1="core.abbrev", GIT_CONFIG_VALUE_1="9")
    out = subprocess.run(
        [
            "git",
            "-c", f"alias.lazy-env=!{sys.executable} -c '{script}'",
            "-c", "lazygit.prefetchBytes=0",
            "-c", "lazygit.offline",
            "-c", "lazygit.outsideCone=it's deny",
            "-c", "lazygit.familyBytes=7",
            "-c", "core.pager=less",
            "lazy-env",
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout) == {
        "familybytes": "7",  # -c comes after the GIT_CONFIG_COUNT list, as in git
        "prefetchbytes": "0",
        "offline": "true",  # `git -c k`: true
        "outsidecone": "it's deny",
    }


def test_boolean_settings_read_as_git_reads_them(tmp_path: Path):
    """A key with no "=" is true and `key =` (the empty string) is false, in config files
    as in `git -c`: the same answers `git config --bool` gives."""
    from lazygit.config import Settings

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    config = tmp_path / ".git" / "config"
    for line, expected in (("offline", True), ("offline =", False), ("offline = yes", True)):
        text = config.read_text().split("[lazygit]")[0]
        config.write_text(f"{text}[lazygit]\n\t{line}\n")
        by_git = subprocess.run(
            ["git", "config", "--bool", "lazygit.offline"], cwd=tmp_path, capture_output=True,
            text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert by_git == str(expected).lower()
        assert Settings.load(tmp_path).offline is expected, line
    assert Settings.from_values({"offline": ""}).offline is False  # `git -c lazygit.offline=`


@pytest.mark.parametrize(
    ("key", "text", "bound"),
    [
        ("readTimeout", "0", "more than 0"),
        ("connectTimeout", "-1", "more than 0"),
        ("daemonTimeout", "0", "more than 0"),
        ("maxRangeBytes", "1", "at least 64k"),
        ("daemonIdleSeconds", "0", "at least 1"),
    ],
)
def test_settings_that_only_work_above_a_bound(key: str, text: str, bound: str):
    """A timeout of 0 failed every request with a misleading reason (or a traceback, below
    0); lazygit.maxRangeBytes 0 or 1 made a clone that never ended; a daemon idle for 0 s
    exited before the request that started it.  Each is a bad value."""
    from lazygit.config import Settings
    from lazygit.errors import LazyGitError

    with pytest.raises(LazyGitError) as caught:
        Settings.from_values({key.lower(): text})
    assert caught.value.message == (
        f"bad value {text!r} for git config lazygit.{key}: it must be {bound}"
    )
    assert caught.value.fix and f"git config lazygit.{key}" in caught.value.fix
    low = {"maxRangeBytes": "64k", "daemonIdleSeconds": "1"}.get(key, "0.1")
    assert Settings.from_values({key.lower(): low})  # the bound itself (or just above) works


def test_a_settings_renewal_leaves_a_listing_in_flight_alone(
    small: Published, nginx, tmp_path: Path
):
    """`list` runs outside the write lock: a renewal of the HTTP clients (a changed
    setting) while it waits for the server must not close the client it reads with."""
    from faultproxy import FaultProxy, Rule

    dest = tmp_path / "c"
    with FaultProxy(nginx.port) as proxy:
        subprocess.run(
            ["lazygit", "clone", "-q", "--no-checkout", proxy.url(small.name), str(dest)],
            check=True,
        )
        git_dir = dest / ".git"
        try:
            head = subprocess.run(
                ["git", "-C", str(dest), "rev-parse", "HEAD"], capture_output=True, text=True,
                env=NO_LAZY, check=True,
            ).stdout.strip()  # fmt: skip
            daemonclient.request(git_dir, {"op": "fetch", "oids": [head]}, timeout=30)
            proxy.add(Rule("delay", path=r"info/refs", stall=3.0))  # time for the renewal
            with ThreadPoolExecutor(1) as pool:
                listing = pool.submit(
                    daemonclient.request, git_dir, {"op": "list"}, start=False, timeout=30
                )
                time.sleep(0.5)  # the listing waits for the server
                subprocess.run(
                    ["git", "-C", str(dest), "config", "lazygit.rangesPerRequest", "3"],
                    check=True,
                )
                # Any request re-reads the config: the HTTP clients are renewed now.
                daemonclient.request(git_dir, {"op": "fetch", "oids": [head]}, timeout=30)
                assert not listing.done()
                refs = listing.result(timeout=30)["refs"]
            assert [oid for oid, name in refs if name == "HEAD" or name.endswith("/main")]
            log = (git_dir / "lazygit" / "daemon.log").read_text()
            assert "HTTP clients and engine renewed" in log
        finally:
            stop_daemon(git_dir)


@contextlib.contextmanager
def _resetting_daemon(git_dir: Path, resets: int) -> Iterator[list[int]]:
    """A Unix socket where daemon.json points that closes its first ``resets`` connections
    unread, with the request in their queue (the kernel then resets them, as it does to a
    client that connects while the daemon exits), and answers a ping on the others."""
    where = Path(tempfile.mkdtemp(prefix="lg-rst-")) / "d.sock"  # short: sun_path limit
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(where))
    listener.listen(4)
    (git_dir / "lazygit").mkdir(parents=True, exist_ok=True)
    doc = {"socket": str(where), "pid": os.getpid(), "git_dir": str(git_dir)}
    (git_dir / "lazygit" / "daemon.json").write_text(json.dumps(doc))
    served: list[int] = []

    def serve() -> None:
        for n in range(resets + 1):
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            with conn:
                if n < resets:
                    while not conn.recv(1, socket.MSG_PEEK):
                        pass  # (blocks until the request is there: then it is left unread)
                    served.append(0)
                    continue
                conn.makefile("rb").readline()
                served.append(1)
                conn.sendall(b'{"ok": true, "pid": 1, "version": "x"}\n')

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield served
    finally:
        listener.close()
        shutil.rmtree(where.parent, ignore_errors=True)


def test_a_connection_reset_unread_is_asked_again(tmp_path: Path) -> None:
    """A client that connects as the daemon exits (idle, or stopped) is reset with its
    request unread: the request is sent once more (a CI run failed a checkout on it)."""
    git_dir = tmp_path / ".git"
    with _resetting_daemon(git_dir, resets=1) as served:
        reply = daemonclient.request(git_dir, {"op": "ping"}, start=False, timeout=10)
    assert reply["ok"] and served == [0, 1]


def test_a_second_reset_is_one_line(tmp_path: Path) -> None:
    git_dir = tmp_path / ".git"
    with _resetting_daemon(git_dir, resets=2) as served, pytest.raises(DaemonError) as err:
        daemonclient.request(git_dir, {"op": "ping"}, start=False, timeout=10)
    assert str(err.value).startswith("lost the connection to the lazygit daemon"), err.value
    assert served == [0, 0]
