"""Shared fixtures: real HTTP servers on 127.0.0.1 serving a session-wide root of bare repos.

Tests put bare repositories into `server_root` (use a unique name per test module, e.g.
`server_root / "test_x-sample.git"`) and reach them through `nginx.url(name)`,
`nginx_smart.url(name)`, `http_server.url(name)` or `embedded.url(name)`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# git finds remote helpers (git-remote-lazy) on PATH: put the project's virtualenv first so
# tests exercise this checkout's helper rather than some other installed copy.
_VENV_BIN = REPO / ".venv" / "bin"
if _VENV_BIN.is_dir():
    os.environ["PATH"] = f"{_VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
# Clones in tests do not leave a pre-started daemon behind; tests that need one start it
# (through git) and stop it with the `daemons` fixture.  test_daemon covers the pre-start.
os.environ["GIT_CONFIG_COUNT"] = "1"
os.environ["GIT_CONFIG_KEY_0"] = "lazygit.prestartDaemon"
os.environ["GIT_CONFIG_VALUE_0"] = "false"
# A suite started in the background by a shell without job control (`make test &` in a
# script) inherits SIGINT ignored, and so would every clone the tests interrupt with it: they
# get the default back (a handled signal is reset to the default across exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# Resume data of failed clones goes to a private cache, not the user's ~/.cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="lazygit-test-cache-")
# Import this checkout's package even when it is not installed.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import (  # noqa: E402
    EmbeddedServer,
    Nginx,
    PythonHttpServer,
    ensure_nginx,
    stop_daemon,
)

from lazygit.sample import LARGE, SMALL, SampleInfo, SampleSpec, make_server_repo  # noqa: E402

# ---------------------------------------------------------------------------------------
# Skipped tests fail the run: a skip hides a missing dependency or a broken fixture.

_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(f"{report.nodeid}: {_skip_reason(report)}")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _SKIPPED.append(f"{report.nodeid}: {_skip_reason(report)}")


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SKIPPED and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SKIPPED:
        terminalreporter.section("skipped tests are failures in this project", red=True)
        for line in _SKIPPED:
            terminalreporter.line(line, red=True)


# ---------------------------------------------------------------------------------------
# Servers (session-wide; each picks its own free port and private work directory).


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    """Path of the nginx binary (installed via apt-get if missing and running as root)."""
    return ensure_nginx()


@pytest.fixture(scope="session")
def server_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory served by all session servers; tests put bare repositories here."""
    return tmp_path_factory.mktemp("server-root")


@pytest.fixture(scope="session")
def nginx(
    nginx_bin: str, server_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    """Static nginx on server_root (multi-range 206, keep-alive, parseable access log)."""
    with Nginx(server_root, tmp_path_factory.mktemp("nginx")) as server:
        yield server


@pytest.fixture(scope="module")
def module_nginx(
    nginx_bin: str, server_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    """A test module's own static nginx, for modules that count bytes in its access log: a
    daemon another module left running (a clone starts one) may still read from the shared
    one, and its bytes would count (seen once: 390 KB over a clone's bound)."""
    with Nginx(server_root, tmp_path_factory.mktemp("nginx-module")) as server:
        yield server


@pytest.fixture(scope="session")
def nginx_smart(
    nginx_bin: str, server_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    """nginx on server_root serving static files AND git smart HTTP (partial clone works)."""
    with Nginx(server_root, tmp_path_factory.mktemp("nginx-smart"), smart=True) as server:
        yield server


@pytest.fixture(scope="session")
def http_server(
    server_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PythonHttpServer]:
    """`python3 -m http.server` on server_root: ignores Range, HTTP/1.0."""
    with PythonHttpServer(server_root, tmp_path_factory.mktemp("http-server")) as server:
        yield server


@pytest.fixture(scope="session")
def embedded(server_root: Path) -> Iterator[EmbeddedServer]:
    """lazygit's own embedded server (Starlette + uvicorn) on server_root."""
    with EmbeddedServer(server_root) as server:
        yield server


# ---------------------------------------------------------------------------------------
# Sample repositories (session-wide) and their full clones for comparison.


@dataclass
class Published:
    """A sample repository on the servers plus an ordinary full clone of it."""

    info: SampleInfo
    name: str  # path below server_root, e.g. "large.git"
    full: Path  # a full (non-lazy) clone, for comparisons


def _publish(server_root: Path, tmp: Path, name: str, spec: SampleSpec) -> Published:
    info = make_server_repo(server_root / name, spec)
    full = tmp / "full"
    subprocess.run(
        ["git", "clone", "-q", "--no-local", str(info.path), str(full)],
        check=True,
        env={**os.environ, "GIT_NO_LAZY_FETCH": "1"},
    )
    return Published(info, name, full)


@pytest.fixture(scope="session")
def large(server_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Published:
    """LARGE (>= 5,000 commits, >= 50,000 objects): gc'd pack + bitmap, pushed pack, loose."""
    return _publish(server_root, tmp_path_factory.mktemp("large"), "large.git", LARGE)


@pytest.fixture(scope="session")
def small(server_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Published:
    """SMALL (400 commits, 1,200 files), same three layouts."""
    return _publish(server_root, tmp_path_factory.mktemp("small"), "small.git", SMALL)


@pytest.fixture
def daemons() -> Iterator[list[Path]]:
    """Git dirs whose daemons a test started; they are stopped after the test."""
    started: list[Path] = []
    yield started
    for git_dir in started:
        stop_daemon(git_dir)
