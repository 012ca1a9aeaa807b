"""lazygit's settings, read from git config (``lazygit.*`` keys) with documented defaults.

One ``git config`` call reads them all.  Standard library only: the daemon and helper use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from lazygit.errors import LazyGitError
from lazygit.gitcmd import run_git

KiB = 1024
MiB = 1024 * KiB


@dataclass
class Settings:
    """Tunables.  Each field is the git config key ``lazygit.<name>`` (case-insensitive)."""

    #: Gaps between wanted byte extents up to this size are always read through.
    rangeGap: int = 512
    #: Extra bytes (as a share of the wanted bytes) that merging ranges may read through.
    rangeOverhead: float = 0.06
    #: A single range longer than this is split so that it can be read concurrently.
    maxRangeBytes: int = 4 * MiB
    #: Ranges in one multi-range request (nginx accepts ~400 in its 8 KiB header buffer).
    rangesPerRequest: int = 100
    #: Bytes read before each delta base fetched on demand: deeper bases of the same delta
    #: family often sit there, saving a round trip per chain level, at the cost of bytes
    #: (measured: 4x the bytes `blame` needs at 16k, so off by default).
    readBehind: int = 0
    #: Entries read before each delta base in the second round of a fetch (four times as
    #: many in later rounds): the rest of a chain usually sits right before its base, so a
    #: chain of any depth costs 3-4 rounds, not one per level (measured over a 25 ms round
    #: trip: 300 versions of a file 0.52 -> 0.34 s for 1.5x the bytes; a 5,103-file
    #: checkout 1.83 -> 1.37 s for 1.09x).  0 turns it off.
    readBehindEntries: int = 2
    #: Concurrent range reads of the server's packs, each on a connection of its own.
    connections: int = 4
    #: Loose objects asked for at once (the walk of a server's recent pushes, a fetch of
    #: loose blobs): each is a small request, and the walk's round trips grow with their
    #: number (60 pushes since the server's last gc over a 50 ms link: 7.1 s at 4, 2.5 s at
    #: 16).  git's dumb HTTP walker asks 5 (http.maxRequests).
    looseRequests: int = 16
    #: A server pack without a bitmap up to this size is read whole; a larger one gets a
    #: header scan (its entries' first bytes) to find its commits and trees.
    smallPackBytes: int = 256 * KiB
    #: Seconds to wait for a TCP connection to the server.
    connectTimeout: float = 10.0
    #: Seconds to wait for bytes from the server once connected.
    readTimeout: float = 30.0
    #: Seconds an idle daemon waits before it exits.
    daemonIdleSeconds: float = 600.0
    #: Seconds a helper or hook waits for the daemon (start-up included) before failing.
    daemonTimeout: float = 120.0
    #: Promisor packs written by lazy fetches before the small ones are consolidated (once no
    #: git process has them open; at four times this many, at once).
    maxPromisorPacks: int = 16
    #: Start the daemon in the background at the end of a clone, so the first lazy fetch
    #: finds it warm.
    prestartDaemon: bool = True
    #: Bytes of server pack blocks the daemon keeps in memory.
    blockCacheBytes: int = 64 * MiB
    #: Attempts after a transient failure (connection lost, timeout, truncated body, HTTP 5xx
    #: or 429) before giving up; Git LFS uses 8.
    retries: int = 6
    #: Seconds before the first retry; doubled for each further one, with random jitter.
    retryBackoff: float = 0.25
    #: Most seconds between two attempts; also caps a server's Retry-After.
    retryMaxDelay: float = 10.0
    #: How a password from git's credential helpers is sent: ``basic``, or ``bearer`` (the
    #: password is a token sent as ``Authorization: Bearer``).
    authType: str = "basic"
    #: Bytes (as stored in the server pack) the daemon may add to one lazy fetch for what git
    #: will ask next (blame: older versions, log -p: next commits, grep: rest of the tree);
    #: 0 turns history-aware prefetch off.
    prefetchBytes: int = 32 * MiB
    #: Bytes (as stored in the server pack) of a file's other versions read after a single
    #: request for an old version of it that no pattern explains (``git show OLD:PATH``),
    #: nearest versions first (their delta bases come too), without delaying the answer; 0
    #: turns it off (as does prefetchBytes 0).
    familyBytes: int = 1 * MiB
    #: File changes the history index behind that prefetch holds, newest commits first
    #: (about 0.3 KB of daemon memory each); older history is not predicted.  A huge
    #: repository's whole history would take minutes and gigabytes to index.
    historyChanges: int = 200_000
    #: Blobs a `lazygit prefetch` run fetches per batch (each batch is one pack, so an
    #: interrupted run keeps the finished batches).
    prefetchBatch: int = 2000
    #: Lazy fetches of blobs outside the sparse-checkout cone: allow, warn (fetch and log) or
    #: deny (fail with how to widen the cone) -- the guard against IDE hydration storms.
    outsideCone: str = "allow"
    #: Fetch nothing: a missing object fails at once (`lazygit offline on|off`).
    offline: bool = False
    #: Extra git-config values that were set but are unknown (kept for `lazygit doctor`).
    unknown: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, repo: str | Path | None = None, **overrides: object) -> Settings:
        """Settings from git config (the repository's if ``repo`` is given, else global)."""
        args = ["config", "--null", "--get-regexp", r"^lazygit\."]
        proc = run_git(args, cwd=repo, check=False)
        values: dict[str, str] = {}
        if proc.returncode == 0:
            for key, value in config_items(proc.stdout):
                # A key with no "=" has no value, which git reads as true; "key =" is the
                # empty string, which git reads as false.
                values[key.split(".", 1)[1].lower()] = "true" if value is None else value
        return cls.from_values(values, **overrides)

    @classmethod
    def from_values(cls, values: dict[str, str], **overrides: object) -> Settings:
        """Settings from ``{lowercase key: text}`` pairs; bad values are one-line errors."""
        settings = cls()
        by_lower = {f.name.lower(): f for f in fields(cls) if f.name != "unknown"}
        for key, text in values.items():
            f = by_lower.get(key)
            if f is None:
                settings.unknown[key] = text
                continue
            setattr(settings, f.name, _parse(f, text))
        for name, value in overrides.items():
            if value is not None:
                setattr(settings, name, value)
        return settings


def parse_bool(text: str) -> bool:
    """A git boolean: "true"/"yes"/"on"/"1", or "false"/"no"/"off"/"0" and the empty string
    (`key =`); a key with no "=" reaches us as "true".  Anything else is a ValueError."""
    low = text.strip().lower()
    if low in ("true", "yes", "on", "1"):
        return True
    if low in ("false", "no", "off", "0", ""):
        return False
    raise ValueError(text)


def remote_config(git_dir: str | Path) -> dict[str, str]:
    """``extensions.partialclone`` and every ``remote.<name>.url`` of the repository's git
    config, keys lowercased, with one `git config` run."""
    proc = run_git(
        ["config", "--null", "--get-regexp", r"^(extensions\.partialclone|remote\..*\.url)$"],
        env={"GIT_DIR": str(git_dir)},
        check=False,
    )
    return {key.lower(): value or "" for key, value in config_items(proc.stdout)}


def config_items(raw: bytes) -> Iterator[tuple[str, str | None]]:
    """(key, value) pairs of ``git config --null`` output; value None for a key written with
    no "=" (git reads it as true), "" for ``key =``."""
    for item in raw.split(b"\0"):
        if item:
            key, sep, value = item.decode("utf-8", "replace").partition("\n")
            yield key, value if sep else None


def promisor_remote(config: dict[str, str]) -> str:
    """The name of the remote lazygit reads from, in ``remote_config``'s answer: the one
    ``extensions.partialClone`` names (as `lazygit clone` writes it), else "origin"."""
    return config.get("extensions.partialclone") or "origin"


#: Settings that only work above a bound: a timeout of 0 or less fails every request,
#: ranges cut to a few bytes take a request per few bytes (a clone that never ends), and a
#: daemon that may idle out before the request that started it arrives serves nothing.
_MORE_THAN: dict[str, float] = {"connectTimeout": 0, "readTimeout": 0, "daemonTimeout": 0}
_AT_LEAST: dict[str, tuple[float, str]] = {
    "maxRangeBytes": (64 * KiB, "64k"),
    "daemonIdleSeconds": (1, "1"),
}


def _parse(f: dataclasses.Field[object], text: str) -> object:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    fix = f"fix it with: git config lazygit.{f.name} <{kind}>"
    try:
        if kind == "bool":
            return parse_bool(text)
        if kind == "int":
            value: float = _parse_size(text)
        elif kind == "float":
            value = float(text)
        else:
            return text
    except ValueError:
        raise LazyGitError(f"bad value {text!r} for git config lazygit.{f.name}", fix) from None
    if f.name in _MORE_THAN and not value > _MORE_THAN[f.name]:
        raise LazyGitError(
            f"bad value {text!r} for git config lazygit.{f.name}: it must be more than "
            f"{_MORE_THAN[f.name]:g}",
            fix,
        )
    if f.name in _AT_LEAST and value < _AT_LEAST[f.name][0]:
        raise LazyGitError(
            f"bad value {text!r} for git config lazygit.{f.name}: it must be at least "
            f"{_AT_LEAST[f.name][1]}",
            fix,
        )
    return value


def _parse_size(text: str) -> int:
    """An integer with git's optional k/m/g suffix."""
    t = text.strip().lower()
    mult = {"k": KiB, "m": MiB, "g": 1024 * MiB}.get(t[-1:], 1)
    if mult != 1:
        t = t[:-1]
    return int(t) * mult
