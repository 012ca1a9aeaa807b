"""HTTP credentials from git's own credential helpers (``git credential fill/approve/reject``).

Users already have their tokens in git's helpers (store, cache, libsecret, a CI's helper), so
lazygit asks git rather than keeping a store of its own.  A remote asks at most once per
session (a clone, or the daemon's lifetime) and keeps the answer in memory: a lazy fetch never
runs a helper per object.  Secrets travel only on the helper's standard input and output,
never in argv, the environment or messages.  Standard library only.
"""

from __future__ import annotations

import base64
import os
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from lazygit.gitcmd import run_git


@dataclass
class Credential:
    """A username and password (or token) for one server."""

    username: str
    password: str = field(repr=False)
    bearer: bool = False
    #: The description git gave (protocol, host, path, ...), echoed back on approve/reject.
    description: dict[str, str] = field(default_factory=dict, repr=False)
    #: True when a credential helper answered (only those are approved or rejected).
    from_helper: bool = True

    def header(self) -> str:
        """The Authorization header value."""
        if self.bearer:
            return f"Bearer {self.password}"
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"


def describe(url: str) -> dict[str, str]:
    """git's credential description of an http(s) URL (userinfo dropped except the name)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    desc = {"protocol": parts.scheme, "host": host, "path": parts.path.strip("/")}
    if parts.username:
        desc["username"] = urllib.parse.unquote(parts.username)
    return desc


def _encode(desc: dict[str, str]) -> bytes:
    lines = []
    for key, value in desc.items():
        if "\n" in value or "\0" in value:
            continue  # git refuses such values; never send them
        lines.append(f"{key}={value}\n")
    return ("".join(lines) + "\n").encode()


def _decode(out: bytes) -> dict[str, str]:
    desc: dict[str, str] = {}
    for line in out.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            desc[key] = value
    return desc


def fill(url: str, *, cwd: Path | None = None, bearer: bool = False) -> Credential | None:
    """Ask git's credential helpers for ``url``; None when none has one.

    Prompts on the terminal only when lazygit runs in one (a daemon never prompts).
    """
    prompt = "1" if sys.stdin.isatty() and os.environ.get("GIT_TERMINAL_PROMPT") != "0" else "0"
    proc = run_git(
        ["credential", "fill"],
        cwd=cwd,
        input=_encode(describe(url)),
        env={"GIT_TERMINAL_PROMPT": prompt},
        check=False,
    )
    if proc.returncode != 0:
        return None
    desc = _decode(proc.stdout)
    if desc.get("authtype", "").lower() == "bearer" and desc.get("credential"):
        return Credential("", desc["credential"], True, desc)
    if "password" not in desc:
        return None
    return Credential(desc.get("username", ""), desc["password"], bearer, desc)


def _tell(action: str, cred: Credential, cwd: Path | None) -> None:
    if not cred.from_helper:
        return
    desc = dict(cred.description)
    desc.setdefault("username", cred.username)
    desc.setdefault("password", cred.password)
    run_git(["credential", action], cwd=cwd, input=_encode(desc), check=False)


def approve(cred: Credential, *, cwd: Path | None = None) -> None:
    """Tell the helpers the credential worked (they may store it)."""
    _tell("approve", cred, cwd)


def reject(cred: Credential, *, cwd: Path | None = None) -> None:
    """Tell the helpers the server refused the credential (they forget it)."""
    _tell("reject", cred, cwd)
