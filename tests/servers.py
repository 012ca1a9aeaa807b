"""Real HTTP servers for the tests: nginx (static, optionally git smart HTTP), Python's
http.server (ignores Range, HTTP/1.0) and lazygit's embedded server.

Every server listens on 127.0.0.1 only, on a free port, and keeps its files (config, logs,
pid, sockets, temp dirs) in a private work directory so that parallel test runs do not clash.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from lazygit.server import BackgroundServer

_S = TypeVar("_S", bound="_ServerBase")

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
FCGIWRAP_CANDIDATES = ("/usr/sbin/fcgiwrap", "/usr/local/sbin/fcgiwrap")


def _find(name: str, candidates: tuple[str, ...]) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def ensure_nginx() -> str:
    """Path of nginx; installs Debian's nginx-light + fcgiwrap if missing (CI runs as root)."""
    nginx = _find("nginx", NGINX_CANDIDATES)
    fcgi = _find("fcgiwrap", FCGIWRAP_CANDIDATES)
    if nginx and fcgi:
        return nginx
    if nginx and os.geteuid() != 0:
        return nginx  # static tests can run; the smart fixture reports missing fcgiwrap
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail(
            "nginx and fcgiwrap are required for the tests; install them "
            "(Debian: apt-get install nginx-light fcgiwrap)",
            pytrace=False,
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "nginx-light", "fcgiwrap"],
    ):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}", pytrace=False)
    nginx = _find("nginx", NGINX_CANDIDATES)
    if not nginx or not _find("fcgiwrap", FCGIWRAP_CANDIDATES):
        pytest.fail("nginx-light/fcgiwrap installed but binaries not found", pytrace=False)
    return nginx


_CHILDREN: set[subprocess.Popen[bytes]] = set()


def _spawn(args: list[str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a server in its own process group (fcgiwrap forks workers that must go too);
    it is also ended at interpreter exit if a test run aborts."""
    with log.open("ab") if log else open(os.devnull, "wb") as out:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    _CHILDREN.add(proc)
    return proc


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs.  A zombie does not: a detached daemon's parent is
    init, which in some containers (this one's firecracker init) reaps only every second or
    two, and waiting for that cost ~2 s at every stop."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def status_kb(pid: int, field: str) -> int | None:
    """A figure of /proc/PID/status in KiB (VmHWM: peak resident memory); None if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def stop_daemon(git_dir: Path) -> None:
    """Stop the daemon of ``git_dir`` if one runs (and wait until it has exited)."""
    info = git_dir / "lazygit" / "daemon.json"
    try:
        pid = json.loads(info.read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(200):
        if not running(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # its session: an index-pack it started dies too


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server's process group (nginx: fast shutdown) and reap the leader."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(10)
            break
        except subprocess.TimeoutExpired:
            continue
    # Give forked workers a moment to exit, then make sure none is left.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            break
        time.sleep(0.02)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    _CHILDREN.discard(proc)


@atexit.register
def _kill_all_children() -> None:
    for proc in list(_CHILDREN):
        _kill(proc)


def free_port() -> int:
    """A port that was free a moment ago (bind port 0); callers retry on collision."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(
    port: int, proc: subprocess.Popen[bytes], path: str, expect: bytes, timeout: float = 20
) -> bool:
    """Wait until `proc` answers GET `path` on `port` with a body containing `expect`.

    Checking a per-instance token (not just a TCP connect) tells our server apart from a
    stranger that grabbed the same port. False if the process died first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            if expect in data:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


class _ServerBase:
    """Shared shape: base_url, url(name), start/stop, context manager."""

    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, name: str) -> str:
        """URL of a path under the served root, e.g. url("sample.git")."""
        return self.base_url + name.lstrip("/")

    def start(self) -> _ServerBase:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class LogEntry:
    """One nginx access-log line."""

    method: str
    path: str  # request path without the query string, as sent (not decoded)
    status: int
    bytes: int  # body bytes sent
    range: str | None  # the Range request header, if any
    query: str = ""
    if_range: str | None = None
    protocol: str | None = None


_LOG_FORMAT = (
    "log_format lazy escape=json '{"
    '"method":"$request_method","uri":"$request_uri","status":"$status",'
    '"bytes":"$body_bytes_sent","range":"$http_range","if_range":"$http_if_range",'
    '"protocol":"$server_protocol"'
    "}';"
)


class Nginx(_ServerBase):
    """nginx serving `root` statically on 127.0.0.1 (optionally also git smart HTTP).

    Runs in the foreground (`daemon off`) as our child, so stop() is a plain terminate/wait.
    `extra` is inserted into the server block (e.g. "max_ranges 1;").
    """

    def __init__(self, root: Path, workdir: Path, *, smart: bool = False, extra: str = "") -> None:
        self.root = Path(root).resolve()
        self.workdir = Path(workdir).resolve()
        self.smart = smart
        self.extra = extra
        self.nginx = ensure_nginx()
        self.access_log = self.workdir / "access.log"
        self.error_log = self.workdir / "error.log"
        self.conf = self.workdir / "nginx.conf"
        self.token = os.urandom(8).hex()
        self._proc: subprocess.Popen[bytes] | None = None
        self._fcgi: subprocess.Popen[bytes] | None = None
        self._fcgi_sock = self.workdir / "fcgiwrap.sock"

    def _config(self) -> str:
        w = self.workdir
        smart = ""
        if self.smart:
            backend = subprocess.run(
                ["git", "--exec-path"], capture_output=True, text=True, check=True
            ).stdout.strip()
            git_env = {
                "GIT_PROJECT_ROOT": str(self.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_COUNT": "3",
                "GIT_CONFIG_KEY_0": "uploadpack.allowFilter",
                "GIT_CONFIG_VALUE_0": "true",
                "GIT_CONFIG_KEY_1": "uploadpack.allowAnySHA1InWant",
                "GIT_CONFIG_VALUE_1": "true",
                "GIT_CONFIG_KEY_2": "safe.directory",
                "GIT_CONFIG_VALUE_2": "*",
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(w),
            }
            params = "\n".join(f'            fastcgi_param {k} "{v}";' for k, v in git_env.items())
            smart = f"""
        # git smart HTTP: only `info/refs?service=...` and `git-upload-pack` go to
        # git http-backend; plain `info/refs` (dumb clients) stays static.
        location ~ ^/.+/info/refs$ {{
            if ($arg_service) {{ return 418; }}
            error_page 418 = @git;
        }}
        location ~ ^/.+/git-upload-pack$ {{
            client_max_body_size 0;
            fastcgi_pass unix:{self._fcgi_sock};
            include {w}/git_fastcgi.conf;
        }}
        location @git {{
            fastcgi_pass unix:{self._fcgi_sock};
            include {w}/git_fastcgi.conf;
        }}
"""
            (w / "git_fastcgi.conf").write_text(
                f"""fastcgi_param SCRIPT_FILENAME {backend}/git-http-backend;
fastcgi_param PATH_INFO $uri;
fastcgi_param QUERY_STRING $args;
fastcgi_param REQUEST_METHOD $request_method;
fastcgi_param CONTENT_TYPE $content_type;
fastcgi_param CONTENT_LENGTH $content_length;
fastcgi_param REMOTE_ADDR $remote_addr;
fastcgi_param REMOTE_USER $remote_user;
fastcgi_param SERVER_PROTOCOL $server_protocol;
fastcgi_param HTTP_GIT_PROTOCOL $http_git_protocol;
fastcgi_param HTTP_CONTENT_ENCODING $http_content_encoding;
fastcgi_buffering off;
fastcgi_request_buffering off;
{params}
"""
            )
        return self._http_config(
            f"""    server {{
        listen 127.0.0.1:{self.port};
        server_name localhost;
        root {self.root};
        autoindex off;
        location = /__lazygit_ping {{
            access_log off;
            return 200 "{self.token}";
        }}
        location = /__lazygit_barrier {{
            access_log off;
            return 200 "barrier";
        }}
{smart}
        {self.extra}
    }}"""
        )

    def _http_config(self, servers: str) -> str:
        """The whole nginx.conf around ``servers`` (paths, log format, temp dirs in workdir)."""
        w = self.workdir
        user = "user root;" if os.geteuid() == 0 else ""
        return f"""{user}
worker_processes 1;
daemon off;
pid {w}/nginx.pid;
error_log {self.error_log} warn;
events {{ worker_connections 256; }}
http {{
    {_LOG_FORMAT}
    access_log {self.access_log} lazy;
    client_body_temp_path {w}/client_body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    default_type application/octet-stream;
    sendfile off;
    keepalive_timeout 75s;
    keepalive_requests 100000;
{servers}
}}
"""

    def _start_fcgiwrap(self) -> None:
        fcgi = _find("fcgiwrap", FCGIWRAP_CANDIDATES)
        if fcgi is None:
            pytest.fail("fcgiwrap not found (Debian: apt-get install fcgiwrap)", pytrace=False)
        self._fcgi_sock.unlink(missing_ok=True)
        self._fcgi = _spawn(
            [fcgi, "-c", "4", "-s", f"unix:{self._fcgi_sock}"], self.workdir / "fcgiwrap.log"
        )
        deadline = time.monotonic() + 10
        while not self._fcgi_sock.exists():
            if self._fcgi.poll() is not None or time.monotonic() > deadline:
                pytest.fail("fcgiwrap did not start", pytrace=False)
            time.sleep(0.02)

    def start(self) -> Nginx:
        if self._proc is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.smart:
            self._start_fcgiwrap()
        for _attempt in range(10):
            self.port = free_port()
            self.conf.write_text(self._config())
            self.access_log.write_bytes(b"")
            args = ["-p", str(self.workdir), "-c", str(self.conf), "-e", str(self.error_log)]
            self._proc = _spawn([self.nginx, *args], self.workdir / "nginx.out")
            if _wait_http(self.port, self._proc, "/__lazygit_ping", self.token.encode()):
                return self
            _kill(self._proc)
            self._proc = None
        errors = self.error_log.read_text(errors="replace") if self.error_log.exists() else ""
        self.stop()
        pytest.fail(f"nginx did not start:\n{errors[-3000:]}", pytrace=False)

    def stop(self) -> None:
        if self._proc is not None:
            _kill(self._proc)
            self._proc = None
        if self._fcgi is not None:
            _kill(self._fcgi)
            self._fcgi = None
            self._fcgi_sock.unlink(missing_ok=True)

    def log_entries(self) -> list[LogEntry]:
        """Access-log entries since start or the last clear_log(), oldest first.

        nginx writes each line (unbuffered) only after the response's last byte went out, so
        a client may see a response before its log line exists. One worker handles events
        in order, so once a barrier request is answered every finished request is logged.
        """
        self._barrier()
        entries = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            path, _, query = rec["uri"].partition("?")
            entries.append(
                LogEntry(
                    method=rec["method"],
                    path=path,
                    status=int(rec["status"]),
                    bytes=int(rec["bytes"]),
                    range=rec["range"] or None,
                    query=query,
                    if_range=rec["if_range"] or None,
                    protocol=rec.get("protocol") or None,
                )
            )
        return entries

    def _barrier(self) -> None:
        if self._proc is not None and not _wait_http(
            self.port, self._proc, "/__lazygit_barrier", b"barrier", timeout=10
        ):
            raise RuntimeError("nginx does not answer")

    def clear_log(self) -> None:
        """Forget the entries so far (nginx appends with O_APPEND, so truncating is safe)."""
        self._barrier()
        with self.access_log.open("r+b") as f:
            f.truncate(0)


class PythonHttpServer(_ServerBase):
    """`python3 -m http.server`: ignores Range (200 with the whole file), HTTP/1.0."""

    def __init__(self, root: Path, workdir: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.workdir = Path(workdir).resolve() if workdir else None
        self._proc: subprocess.Popen[bytes] | None = None
        self.token = "__lazygit_ping_" + os.urandom(8).hex()

    def start(self) -> PythonHttpServer:
        if self._proc is not None:
            return self
        log = None
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            log = self.workdir / "http.server.log"
        for _attempt in range(10):
            self.port = free_port()
            args = ["--bind", "127.0.0.1", "--directory", str(self.root), str(self.port)]
            self._proc = _spawn([sys.executable, "-m", "http.server", *args], log)
            # http.server has no way to echo a token; check the banner and that our process
            # survived binding (on a port collision it exits with "Address already in use").
            if _wait_http(self.port, self._proc, "/" + self.token, b"SimpleHTTP"):
                time.sleep(0.1)
                if self._proc.poll() is None:
                    return self
            _kill(self._proc)
            self._proc = None
        pytest.fail("python3 -m http.server did not start", pytrace=False)

    def stop(self) -> None:
        if self._proc is not None:
            _kill(self._proc)
            self._proc = None


class EmbeddedServer(_ServerBase):
    """lazygit.server.BackgroundServer with the same shape as the other test servers."""

    def __init__(self, root: Path, workdir: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.server: BackgroundServer | None = None

    def start(self) -> EmbeddedServer:
        from lazygit.server import BackgroundServer

        if self.server is None:
            self.server = BackgroundServer(self.root)
            self.server.start()
            self.port = self.server.port
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def bytes_sent(self) -> int:
        return self.server.bytes_sent if self.server else 0

    @property
    def requests(self) -> int:
        return self.server.requests if self.server else 0

    def reset_counters(self) -> None:
        """Zero bytes_sent and requests (between measurements)."""
        if self.server is not None:
            self.server.reset_counters()
