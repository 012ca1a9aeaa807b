"""``git-remote-lazy``: the remote helper stock git runs for ``lazy::URL`` remotes.

git starts a new helper for every batch of missing objects (and for ``git fetch``), so this
module imports only the standard library and hands the real work to the repository's daemon
(docs/protocol.md).  The dialogue with git is the one measured in
shared/research/git-integration.md.
"""

from __future__ import annotations

import os
import sys

from lazygit import daemonclient
from lazygit.errors import LazyGitError

# `typing` costs ~15 ms to import: on this per-batch path its names are for checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from lazygit.adopt import Adopter

_HEX = frozenset("0123456789abcdef")
#: The options `git fetch --depth / --shallow-since / --shallow-exclude / --deepen` send.
_SHALLOW_OPTIONS = ("depth", "deepen-since", "deepen-not", "deepen-relative")


def _is_oid(name: str) -> bool:
    return len(name) == 40 and set(name) <= _HEX


def _is_lazy_fetch() -> bool:
    """True when git runs us to fill in missing objects rather than for `git fetch`.

    git sends `option from-promisor 1` for both in a partial clone; only its lazy fetch runs
    `git -c fetch.negotiationAlgorithm=noop fetch ...`, which reaches us in
    GIT_CONFIG_PARAMETERS (measured on git 2.39.5).
    """
    params = os.environ.get("GIT_CONFIG_PARAMETERS", "").lower()
    return "'fetch.negotiationalgorithm'='noop'" in params


class RemoteHelper:
    """One helper run: read git's commands on ``inp``, answer on ``out``."""

    def __init__(
        self,
        inp: TextIO,
        out: TextIO,
        err: TextIO,
        url: str | None = None,
        remote: str | None = None,
    ) -> None:
        self.inp = inp
        self.out = out
        self.err = err
        self.url = url  # what follows "lazy::" (git's second argument)
        self.remote = remote  # the remote's name (git's first argument; the URL if none)
        self.progress = False
        self.from_promisor = False
        self.filter: str | None = None  # `git clone --filter=SPEC`, as git passes it on
        self.cloning = False
        self._said_shallow = False
        self._git_dir: str | None = None
        self._adopter: Adopter | None = None  # a server no daemon reads for us (adopt.py)

    @property
    def git_dir(self) -> str:
        if self._git_dir is None:
            self._git_dir = daemonclient.common_git_dir()
        return self._git_dir

    def _send(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def run(self) -> int:
        try:
            return self._dialogue()
        finally:
            if self._adopter is not None:
                self._adopter.close()

    def _dialogue(self) -> int:
        while True:
            line = self.inp.readline()
            if not line:
                return 0
            cmd = line.rstrip("\n")
            if cmd == "":
                return 0
            if cmd == "capabilities":
                self._send("fetch\noption\n\n")
            elif cmd.startswith("option "):
                self._send(self._option(cmd[7:]) + "\n")
            elif cmd == "list" or cmd == "list for-fetch":
                self._list()
            elif cmd.startswith("list"):
                raise LazyGitError("lazy:: remotes are read-only (push is not supported)")
            elif cmd.startswith("fetch "):
                self._fetch(cmd)
            else:
                raise LazyGitError(f"unsupported remote-helper command {cmd[:40]!r}")

    def _option(self, text: str) -> str:
        name, _, value = text.partition(" ")
        if name == "progress":
            self.progress = value == "true"
        elif name == "from-promisor":
            self.from_promisor = value in ("1", "true")
        elif name == "filter":
            self.filter = value
        elif name == "cloning":
            self.cloning = value == "true"
        elif name in _SHALLOW_OPTIONS:
            # git goes on without a word when a helper does not support these: say why.
            if not self._said_shallow:
                self._said_shallow = True
                self.err.write(
                    "lazygit: --depth, --shallow-since and --shallow-exclude are ignored: "
                    "a lazy clone holds every commit and tree, and fetches blobs when needed\n"
                )
            return "unsupported"
        elif name not in ("verbosity", "check-connectivity"):
            return "unsupported"
        return "ok"

    def _list(self) -> None:
        if self.from_promisor and _is_lazy_fetch():
            self._send("\n")  # a lazy fetch asks for objects by id: it needs no refs
            return
        git_dir = self._repository()
        if git_dir is not None and self._adopted() and self._other_server() is None:
            message = daemonclient.with_command_config({"op": "list"})
            reply = daemonclient.request(git_dir, message)
        else:
            # `git clone lazy::URL`, `git ls-remote lazy::URL`, a second lazy:: remote: the
            # daemon knows no such server (lazygit.adopt).
            reply = self._adopting(git_dir).list_refs()
        # Each peeled line right after its tag, as in info/refs: git fetches a new annotated
        # tag only when it sees what the tag points at.
        peeled = {name[:-3]: oid for oid, name in reply["refs"] if name.endswith("^{}")}
        lines = []
        for oid, name in reply["refs"]:
            if not name.endswith("^{}"):
                lines.append(f"{oid} {name}\n")
                if name in peeled:
                    lines.append(f"{peeled[name]} {name}^{{}}\n")
        head = reply.get("head")
        # HEAD of an empty repository names a branch that does not exist yet: git would ask
        # for it as the null id.  Unlisted, git sees an empty repository, as with git's own.
        if head and any(name == head for _, name in reply["refs"]):
            lines.append(f"@{head} HEAD\n")
        self._send("".join(lines) + "\n")

    def _fetch(self, first: str) -> None:
        wants: list[tuple[str, str]] = []
        line = first
        while line:
            parts = line.split(" ", 2)
            if len(parts) < 2 or parts[0] != "fetch" or not _is_oid(parts[1]):
                raise LazyGitError(f"malformed fetch line from git: {line[:60]!r}")
            wants.append((parts[1], parts[2] if len(parts) > 2 else parts[1]))
            line = self.inp.readline().rstrip("\n")
        oids = list(dict.fromkeys(oid for oid, _ in wants))
        lazy = all(oid == name for oid, name in wants)
        if not self._adopted():
            if self._adopt(lazy, oids):
                self._send("\n")  # what git asked for came with the commits and trees
                return
        elif not lazy:
            clone_server = self._other_server()
            if clone_server is not None:
                raise LazyGitError(
                    f"lazy:: remote {self.remote or ''} is not the server this clone reads from "
                    f"({clone_server}): lazygit fetches from one server per clone",
                    "git remote set-url on the clone's own remote to move it there, or "
                    "lazygit clone URL",
                )
        op = "fetch" if lazy else "update"
        message = daemonclient.with_command_config({"op": op, "oids": oids})
        meter = _Meter(self.err) if self.progress and _isatty(self.err) else None
        reply = daemonclient.request(
            self.git_dir, message, on_progress=meter.show if meter else None
        )
        if self.progress:
            self.err.write((meter.clear() if meter else "") + daemonclient.describe(reply) + "\n")
            self.err.flush()
        self._send("\n")

    def _repository(self) -> str | None:
        """The repository git runs us in; None outside any (`git ls-remote lazy::URL`)."""
        try:
            return self.git_dir
        except LazyGitError:
            return None

    def _catalog(self) -> str:
        return os.path.join(self.git_dir, daemonclient.STATE_DIR, "catalog.json")

    def _adopted(self) -> bool:
        """Whether the repository has a pack catalog (lazygit made it, or adopted it)."""
        return os.path.exists(self._catalog())

    def _other_server(self) -> str | None:
        """The URL the clone reads from when this remote is another server (a second lazy::
        remote), else None.  The clone's own remote at a new URL (`git remote set-url`) is
        not another server: the daemon follows it."""
        import json

        from lazygit.discovery import redact_url, same_url

        try:
            with open(self._catalog()) as f:
                clone_url = json.load(f)["sources"][0]["url"]
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None  # the daemon reports a damaged catalog
        if not self.url or same_url(self.url, clone_url):
            return None
        from lazygit.config import promisor_remote, remote_config

        if promisor_remote(remote_config(self.git_dir)) == self.remote:
            return None
        return redact_url(clone_url)

    def _adopting(self, git_dir: str | None) -> Adopter:
        if self._adopter is None:
            from lazygit.adopt import Adopter

            self._adopter = Adopter(git_dir, self._url())
        return self._adopter

    def _url(self) -> str:
        if not self.url:
            raise LazyGitError("git-remote-lazy needs the remote's URL (git passes it)")
        return self.url

    def _adopt(self, lazy: bool, oids: list[str]) -> bool:
        """`git clone --filter=... lazy::URL` is fetching its refs: make the repository a
        lazygit clone first (lazygit.adopt); True if that brought every one of ``oids``.
        Without a filter git would expect every blob."""
        if self.cloning and self.filter is None:
            raise LazyGitError(
                "git clone of a lazy:: URL needs a filter: lazygit brings blobs only when "
                "git needs them",
                "git clone --filter=blob:none lazy::URL, or lazygit clone URL",
            )
        if lazy or self.filter is None:
            raise LazyGitError(
                f"{self.git_dir} is not a lazygit clone",
                "make one with lazygit clone URL, or git clone --filter=blob:none lazy::URL",
            )
        adopter = self._adopting(self.git_dir)
        if self.progress:  # git's stderr is a terminal (or --progress): the clone's bars
            from lazygit.progress import Progress

            with Progress() as progress:
                reply = adopter.adopt(oids, self.remote, progress)
        else:
            reply = adopter.adopt(oids, self.remote)
        if self.progress:
            self.err.write(
                daemonclient.describe(reply).replace("fetched", "fetched the commits and trees:")
                + "\n"
            )
            self.err.flush()
        return bool(reply["complete"])


class _Meter:
    """The daemon's progress of a long batch on git's terminal, as one line redrawn in place
    (git's own "Receiving objects" does the same); the batch's summary line replaces it."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.width = 0

    def show(self, progress: dict[str, Any]) -> None:
        done, total = int(progress.get("bytes") or 0), int(progress.get("total") or 0)
        text = f"lazygit: fetching objects: {_mib(done)}"
        if total > 0:  # (rounds of delta bases add to it as they are planned)
            total = max(total, done)  # (multipart part headers count as read)
            text = (
                f"lazygit: fetching objects: {100 * done // total}% ({_mib(done)} of {_mib(total)})"
            )
        self.err.write("\r" + text.ljust(self.width))
        self.err.flush()
        self.width = len(text)

    def clear(self) -> str:
        """What rubs the line out (nothing if none was drawn)."""
        return "\r" + " " * self.width + "\r" if self.width else ""


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def main() -> int:
    remote = sys.argv[1] if len(sys.argv) > 1 else None
    url = sys.argv[2] if len(sys.argv) > 2 else None
    helper = RemoteHelper(sys.stdin, sys.stdout, sys.stderr, url, remote)
    try:
        return helper.run()
    except LazyGitError as exc:
        sys.stderr.write(f"lazygit: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
