"""Authentication and git's http.* settings: credential helpers (basic and bearer),
http.extraHeader, TLS against a local CA (nginx with ssl), and no secret in any message,
log or process title.  The authenticating server is the fault proxy in front of nginx
(it answers 401 with a challenge unless the Authorization header matches)."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Published, stop_daemon
from faultproxy import FaultProxy
from servers import Nginx, free_port

USER, PASSWORD, TOKEN = "alice", "s3cret-pw-XYZ", "tok-0123456789-QWE"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BEARER = f"Bearer {TOKEN}"


@pytest.fixture(scope="module")
def proxy(nginx: Nginx) -> Iterator[FaultProxy]:
    with FaultProxy(nginx.port) as p:
        yield p


@pytest.fixture
def auth_proxy(proxy: FaultProxy) -> Iterator[FaultProxy]:
    proxy.reset()
    proxy.require_auth = {BASIC}
    yield proxy
    proxy.reset()


def helper(tmp_path: Path, password: str = PASSWORD, username: str = USER) -> tuple[str, Path]:
    """A credential helper script that logs each call's action (get/store/erase)."""
    log = tmp_path / "helper.log"
    script = tmp_path / "cred-helper"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$1" >> {log}\n'
        "cat > /dev/null\n"
        f'if [ "$1" = get ]; then printf "username={username}\\npassword={password}\\n"; fi\n'
    )
    script.chmod(0o755)
    return str(script), log


def calls(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def env(config: dict[str, str] | None = None) -> dict[str, str]:
    e = dict(os.environ)
    items = [(e["GIT_CONFIG_KEY_0"], e["GIT_CONFIG_VALUE_0"]), *(config or {}).items()]
    items.append(("lazygit.retryBackoff", "0.01"))
    for i, (k, v) in enumerate(items):
        e[f"GIT_CONFIG_KEY_{i}"] = k
        e[f"GIT_CONFIG_VALUE_{i}"] = v
    e["GIT_CONFIG_COUNT"] = str(len(items))
    e["GIT_TERMINAL_PROMPT"] = "0"
    # As in git, these override http.sslCAInfo / http.sslVerify; the tests set the config.
    e.pop("GIT_SSL_CAINFO", None)
    e.pop("GIT_SSL_NO_VERIFY", None)
    e["LC_ALL"] = "C"
    return e


def clone(url: str, dest: Path, config: dict[str, str] | None = None, *args: str):
    return subprocess.run(
        ["lazygit", "clone", "-q", *args, url, str(dest)],
        capture_output=True,
        text=True,
        env=env(config),
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_basic_via_credential_helper_asks_once(
    auth_proxy: FaultProxy, small: Published, tmp_path: Path, daemons: list[Path]
) -> None:
    script, log = helper(tmp_path)
    config = {"credential.helper": script}
    dest = tmp_path / "c"
    proc = clone(auth_proxy.url(small.name), dest, config, "--no-checkout")
    assert proc.returncode == 0, proc.stderr
    assert calls(log) == ["get", "store"]  # asked once, approved once
    n_requests = len(auth_proxy.log)
    assert n_requests > 5
    assert sum(e.status == 401 for e in auth_proxy.log) == 1
    # The daemon (started through git) asks once for its lifetime, not once per object, and
    # before its first request: the clone found that the server wants a password, and the
    # requests of a first batch, sent at once, were each answered 401.
    daemons.append(dest / ".git")
    for args in (["reset", "-q", "--hard", "HEAD"], ["log", "-p", "-3", "--all"]):
        out = subprocess.run(["git", "-C", str(dest), *args], capture_output=True, env=env(config))
        assert out.returncode == 0, out.stderr
    assert calls(log) == ["get", "store", "get", "store"]
    assert sum(e.status == 401 for e in auth_proxy.log) == 1
    # No secret in the daemon's log, its argv, or the saved state's log lines.
    daemon_log = (dest / ".git" / "lazygit" / "daemon.log").read_text()
    assert PASSWORD not in daemon_log
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert PASSWORD not in ps


def test_a_daemon_that_met_a_401_notes_it_for_the_next_one(
    auth_proxy: FaultProxy, small: Published, tmp_path: Path, daemons: list[Path]
) -> None:
    """A clone whose catalog.json lacks the mark (made before lazygit kept it, or a password
    added on the server since): its daemon meets 401s, and saves the mark, so the next
    daemon asks the credential helper before its first request."""
    import json

    script, _log = helper(tmp_path)
    config = {"credential.helper": script}
    dest = tmp_path / "c"
    proc = clone(auth_proxy.url(small.name), dest, config, "--no-checkout")
    assert proc.returncode == 0, proc.stderr
    daemons.append(dest / ".git")
    stop_daemon(dest / ".git")
    catalog = dest / ".git" / "lazygit" / "catalog.json"
    doc = json.loads(catalog.read_text())
    assert [s["credentials"] for s in doc["sources"]] == [True]
    for s in doc["sources"]:
        s["credentials"] = False
    catalog.write_text(json.dumps(doc))

    def git(*args: str) -> None:
        out = subprocess.run(["git", "-C", str(dest), *args], capture_output=True, env=env(config))
        assert out.returncode == 0, out.stderr

    auth_proxy.log.clear()
    git("log", "-p", "-3")
    assert sum(e.status == 401 for e in auth_proxy.log) >= 1
    assert [s["credentials"] for s in json.loads(catalog.read_text())["sources"]] == [True]
    stop_daemon(dest / ".git")
    auth_proxy.log.clear()
    git("log", "-p", "-3", "HEAD~20")
    assert len(auth_proxy.log) > 0
    assert sum(e.status == 401 for e in auth_proxy.log) == 0


def test_wrong_password_rejected_once(
    auth_proxy: FaultProxy, small: Published, tmp_path: Path
) -> None:
    script, log = helper(tmp_path, password="wrong-pw-ABC")
    dest = tmp_path / "c"
    proc = clone(auth_proxy.url(small.name), dest, {"credential.helper": script})
    assert proc.returncode != 0
    line = one_line(proc.stderr)
    assert "HTTP 401" in line and "refused the credential" in line
    assert "wrong-pw-ABC" not in proc.stderr
    assert calls(log) == ["get", "erase"]  # asked once, rejected once
    assert not dest.exists()


def test_no_credentials_is_one_line(
    auth_proxy: FaultProxy, small: Published, tmp_path: Path
) -> None:
    proc = clone(auth_proxy.url(small.name), tmp_path / "c")
    line = one_line(proc.stderr)
    assert proc.returncode != 0 and "HTTP 401" in line and "credential helper" in line


def test_bearer_via_extra_header(auth_proxy: FaultProxy, small: Published, tmp_path: Path) -> None:
    auth_proxy.require_auth = {BEARER}
    script, log = helper(tmp_path)
    config = {"http.extraHeader": f"Authorization: {BEARER}", "credential.helper": script}
    proc = clone(auth_proxy.url(small.name), tmp_path / "c", config, "--no-checkout")
    assert proc.returncode == 0, proc.stderr
    assert calls(log) == []  # the header is enough: no helper asked
    assert all(e.authorization == BEARER for e in auth_proxy.log)


def test_bearer_via_credential_helper(
    auth_proxy: FaultProxy, small: Published, tmp_path: Path
) -> None:
    auth_proxy.require_auth = {BEARER}
    auth_proxy.auth_scheme = "Bearer"
    script, log = helper(tmp_path, password=TOKEN)
    config = {"credential.helper": script, "lazygit.authType": "bearer"}
    try:
        proc = clone(auth_proxy.url(small.name), tmp_path / "c", config, "--no-checkout")
    finally:
        auth_proxy.auth_scheme = "Basic"
    assert proc.returncode == 0, proc.stderr
    assert calls(log) == ["get", "store"]


def test_extra_header_sent_per_url(proxy: FaultProxy, small: Published, tmp_path: Path) -> None:
    """http.<url>.extraHeader applies to matching URLs only; an empty value resets the list."""
    proxy.reset()
    config = {
        "http.extraHeader": "X-Ignored: 1",
        f"http.{proxy.base_url}.extraHeader": "",  # resets the list for this URL
        f"http.{proxy.base_url}{small.name}.extraHeader": "Authorization: Bearer per-url",
        "http.http://elsewhere.invalid/.extraHeader": "Authorization: Bearer nope",
    }
    proxy.require_auth = {"Bearer per-url"}
    proc = clone(proxy.url(small.name), tmp_path / "c", config, "--no-checkout")
    proxy.reset()
    assert proc.returncode == 0, proc.stderr


def test_url_credentials_never_shown(
    auth_proxy: FaultProxy, small: Published, tmp_path: Path
) -> None:
    url = auth_proxy.url(small.name).replace("http://", f"http://{USER}:{PASSWORD}@")
    proc = clone(url, tmp_path / "ok", None, "--no-checkout")
    assert proc.returncode == 0, proc.stderr
    # git passes remote.origin.url to git-remote-lazy on its command line: no password there.
    # The daemon finds it in the private catalog and fetches without asking.
    ok = tmp_path / "ok"
    remote_url = subprocess.run(
        ["git", "-C", str(ok), "config", "remote.origin.url"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert PASSWORD not in remote_url and USER not in remote_url
    catalog = ok / ".git" / "lazygit" / "catalog.json"
    assert stat.S_IMODE(catalog.stat().st_mode) == 0o600
    try:
        missing = subprocess.run(
            ["git", "-C", str(ok), "rev-list", "--objects", "--missing=print", "HEAD"],
            capture_output=True,
            text=True,
            env={**os.environ, "GIT_NO_LAZY_FETCH": "1"},
        ).stdout
        blob = next(ln[1:] for ln in missing.splitlines() if ln.startswith("?"))
        show = subprocess.run(
            ["git", "-C", str(ok), "cat-file", "-p", blob],
            capture_output=True,
            text=True,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
        assert show.returncode == 0, show.stderr
        assert PASSWORD not in (ok / ".git" / "lazygit" / "daemon.log").read_text()
    finally:
        stop_daemon(ok / ".git")
    # Refused, unreachable, missing: the password appears in no message.
    bad = url.replace(PASSWORD, "wrong-pw-ABC")
    port = free_port()
    for u in (
        bad,
        f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/x.git",
        url.replace(small.name, "nope.git"),
    ):
        proc = clone(u, tmp_path / "c")
        line = one_line(proc.stderr)
        assert proc.returncode != 0
        assert PASSWORD not in line and "wrong-pw-ABC" not in line, line


# -- TLS against a local CA --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_nginx(
    server_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Nginx, int, Path]]:
    """nginx with an extra TLS listener whose certificate comes from a trustme CA."""
    import trustme

    work = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(work / "server.pem"))
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    port = free_port()
    extra = (
        f"listen 127.0.0.1:{port} ssl http2; ssl_certificate {work}/server.pem; "
        f"ssl_certificate_key {work}/server.pem;"
    )
    with Nginx(server_root, work / "nginx", extra=extra) as server:
        yield server, port, work / "ca.pem"


def test_tls_untrusted_is_one_line(tls_nginx, small: Published, tmp_path: Path) -> None:
    _server, port, _ca = tls_nginx
    dest = tmp_path / "c"
    proc = clone(f"https://127.0.0.1:{port}/{small.name}", dest)
    line = one_line(proc.stderr)
    assert proc.returncode != 0
    assert "certificate not trusted" in line and "http.sslCAInfo" in line
    assert not dest.exists()


@pytest.mark.parametrize(
    "how", ["sslCAInfo", "per-url-sslCAInfo", "sslVerify-false", "sslVerify-empty"]
)
def test_tls_clone(tls_nginx, small: Published, tmp_path: Path, how: str) -> None:
    _server, port, ca = tls_nginx
    url = f"https://127.0.0.1:{port}/{small.name}"
    config = {
        "sslCAInfo": {"http.sslCAInfo": str(ca)},
        "per-url-sslCAInfo": {f"http.https://127.0.0.1:{port}/.sslCAInfo": str(ca)},
        "sslVerify-false": {"http.sslVerify": "false"},
        "sslVerify-empty": {"http.sslVerify": ""},  # the empty string is false, as in git
    }[how]
    dest = tmp_path / "c"
    proc = clone(url, dest, config)
    assert proc.returncode == 0, proc.stderr
    fsck = subprocess.run(
        ["git", "-C", str(dest), "fsck"],
        capture_output=True,
        env={**env(), "GIT_NO_LAZY_FETCH": "1"},
    )
    assert fsck.returncode == 0
    head = subprocess.run(["git", "-C", str(dest), "rev-parse", "HEAD"], capture_output=True)
    full = subprocess.run(["git", "-C", str(small.full), "rev-parse", "HEAD"], capture_output=True)
    assert head.stdout == full.stdout


def test_https_speaks_http2_and_plain_http_does_not(
    tls_nginx, nginx: Nginx, small: Published, tmp_path: Path
) -> None:
    """HTTP/2 comes by ALPN over TLS (httpx with h2); a plain-http process skips importing h2
    and speaks HTTP/1.1."""
    server, port, ca = tls_nginx
    server.clear_log()
    dest = tmp_path / "tls"
    proc = clone(f"https://127.0.0.1:{port}/{small.name}", dest, {"http.sslCAInfo": str(ca)})
    assert proc.returncode == 0, proc.stderr
    ours = [e for e in server.log_entries() if small.name in e.path]
    assert ours and {e.protocol for e in ours} == {"HTTP/2.0"}, ours
    nginx.clear_log()
    proc = clone(nginx.url(small.name), tmp_path / "plain", {}, "--no-checkout")
    assert proc.returncode == 0, proc.stderr
    ours = [e for e in nginx.log_entries() if small.name in e.path]
    assert ours and {e.protocol for e in ours} == {"HTTP/1.1"}, ours


def test_http_proxy_setting(proxy: FaultProxy, nginx: Nginx, small: Published, tmp_path: Path):
    """http.proxy: requests go through the configured (forward) proxy.  The fault proxy
    forwards absolute-form requests to nginx like any other, and logs them."""
    proxy.reset()
    proc = clone(
        nginx.url(small.name), tmp_path / "c", {"http.proxy": proxy.base_url}, "--no-checkout"
    )
    assert proc.returncode == 0, proc.stderr
    assert any(small.name in e.path for e in proxy.log)
