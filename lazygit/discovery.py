"""What a dumb-HTTP server publishes about a repository: refs, HEAD, packs, alternates.

These are the files `git update-server-info` writes.  The parsers are pure functions (fuzzed
in the tests); :func:`discover` reads them through a :class:`~lazygit.remote.DumbRemote`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from lazygit.errors import CorruptDataError, HTTPStatusError, NotAGitServerError, RemoteError
from lazygit.workers import Workers

if TYPE_CHECKING:
    from lazygit.remote import DumbRemote

_HEX40 = re.compile(rb"^[0-9a-f]{40}$")
_HEX64 = re.compile(rb"^[0-9a-f]{64}$")  # a SHA-256 repository's object names
_PACK_NAME = re.compile(r"^pack-[0-9a-f]{40}$")
_REF_NAME = re.compile(r"^(HEAD|refs/[^\s\\]+)$")
#: How deep alternates may chain (git's own http-walker follows them the same way).
MAX_ALTERNATE_DEPTH = 5
#: More refs than this in info/refs is refused (a sane upper bound against abuse).
MAX_REFS = 1_000_000


@dataclass(frozen=True)
class Ref:
    """One advertised ref; ``peeled`` is the object an annotated tag finally points at."""

    name: str
    oid: bytes
    peeled: bytes | None = None


@dataclass
class ObjectSource:
    """One object directory on the server: the repository's own or an alternate."""

    remote: DumbRemote
    prefix: str  # path of the objects directory relative to ``remote.url``, "" or "objects/"
    packs: list[str] = field(default_factory=list)  # "pack-<hex>" names

    def path(self, rel: str) -> str:
        """Path of ``rel`` (e.g. "pack/pack-X.idx") relative to the remote's URL."""
        return self.prefix + rel

    def loose_path(self, oid: bytes) -> str:
        h = oid.hex()
        return self.path(f"{h[:2]}/{h[2:]}")


@dataclass
class RemoteRepo:
    """A snapshot of what the server publishes."""

    url: str
    refs: list[Ref]
    head_target: str | None  # "refs/heads/main" when HEAD is a symref
    head_oid: bytes | None
    sources: list[ObjectSource]


def parse_info_refs(data: bytes) -> list[Ref]:
    """Parse ``info/refs`` ("<hex>\\t<name>" lines, peeled tags as "<name>^{}")."""
    refs: dict[str, Ref] = {}
    order: list[str] = []
    for lineno, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        hexid, sep, name_b = raw.partition(b"\t")
        hexid = hexid.strip()
        if not sep or not _HEX40.match(hexid):
            if sep and _HEX64.match(hexid):
                raise RemoteError(
                    "the repository uses SHA-256 object names; lazygit reads SHA-1 "
                    "repositories only",
                    "clone it with git itself",
                )
            raise CorruptDataError(f"malformed info/refs line {lineno}: {raw[:80]!r}")
        try:
            name = name_b.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise CorruptDataError(f"malformed ref name in info/refs line {lineno}") from None
        oid = bytes.fromhex(hexid.decode())
        if name.endswith("^{}"):
            base = name[:-3]
            if base not in refs:
                raise CorruptDataError(f"info/refs peels {base!r} before listing it")
            refs[base] = Ref(base, refs[base].oid, oid)
            continue
        if not valid_ref_name(name):
            raise CorruptDataError(f"invalid ref name in info/refs line {lineno}: {name[:80]!r}")
        if name not in refs:
            order.append(name)
        refs[name] = Ref(name, oid)
        if len(order) > MAX_REFS:
            raise CorruptDataError(f"info/refs lists more than {MAX_REFS} refs")
    return [refs[n] for n in order]


_BAD_REF_CHARS = frozenset(" ~^:?*[\\\x7f") | frozenset(chr(c) for c in range(32))


def valid_ref_name(name: str) -> bool:
    """git check-ref-format's rules (refs are written straight into packed-refs)."""
    if name == "HEAD":
        return True
    if not name.startswith("refs/") or name.endswith(("/", ".")) or "@{" in name:
        return False
    if ".." in name or "//" in name or any(c in _BAD_REF_CHARS for c in name):
        return False
    return all(p and not p.startswith(".") and not p.endswith(".lock") for p in name.split("/"))


def parse_head(data: bytes) -> tuple[str | None, bytes | None]:
    """Parse ``HEAD``: ("refs/heads/x", None) for a symref, (None, oid) when detached."""
    text = data.decode("utf-8", "replace").strip()
    if text.startswith("ref:"):
        target = text[4:].strip()
        if _REF_NAME.match(target):
            return target, None
    elif _HEX40.match(text.encode()):
        return None, bytes.fromhex(text)
    raise CorruptDataError(f"malformed HEAD: {text[:80]!r}")


def parse_info_packs(data: bytes) -> list[str]:
    """Parse ``objects/info/packs`` into pack names ("pack-<hex>"), rejecting odd names."""
    names: list[str] = []
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line.startswith("P "):
            continue  # git also writes other (ignored) line kinds
        fname = line[2:].strip()
        base = fname[:-5] if fname.endswith(".pack") else ""
        if not _PACK_NAME.match(base):
            raise CorruptDataError(f"invalid pack name in objects/info/packs: {fname[:80]!r}")
        if base not in names:
            names.append(base)
    return names


def parse_alternates(data: bytes, objects_url: str) -> list[str]:
    """Resolve ``objects/info/(http-)alternates`` lines into absolute object-directory URLs.

    Relative entries are taken relative to this objects directory and absolute paths as
    paths on the same host, as git's own http-walker does.
    """
    base = urlsplit(objects_url)
    urls: list[str] = []
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "://" in line:
            url = line
            if urlsplit(url).scheme not in ("http", "https"):
                raise CorruptDataError(f"unsupported alternate URL: {line[:80]!r}")
        elif line.startswith("/"):
            url = f"{base.scheme}://{base.netloc}{line}"
        else:
            url = urljoin(objects_url, line)
        resolved = urlsplit(url)
        if resolved.scheme not in ("http", "https") or not resolved.netloc:
            raise CorruptDataError(f"unsupported alternate: {line[:80]!r}")
        if not url.endswith("/"):
            url += "/"
        urls.append(url)
    return urls


def same_url(a: str, b: str) -> bool:
    """Whether two remote URLs name the same place (credentials and a final / aside)."""

    def plain(url: str) -> tuple[str, ...]:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2].lower()
        return (parts.scheme.lower(), host, parts.path.rstrip("/"), parts.query)

    return plain(a) == plain(b)


def redact_url(url: str) -> str:
    """``url`` without userinfo (credentials never appear in messages)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _shown(remote: DumbRemote) -> str:
    return getattr(remote, "display_url", None) or redact_url(remote.url)


def _looks_like_html(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body"))


#: The object directory's files that name packs and alternates.
_OBJECT_FILES = ("info/packs", "info/http-alternates", "info/alternates")


def _get_all(remote: DumbRemote, paths: Iterable[str]) -> dict[str, bytes | None]:
    """GET these files at once (missing ones give None): one round trip, not one each."""
    paths = list(paths)
    with Workers(len(paths), "lazygit-discovery") as pool:
        got = pool.map(lambda p: remote.get_bytes(p, missing_ok=True), paths)
    return dict(zip(paths, got, strict=True))


def discover(remote: DumbRemote, *, connect_alternate=None) -> RemoteRepo:
    """Read refs, then HEAD, packs and alternates at once: two round trips, not five.
    ``connect_alternate(url)`` makes a remote.

    ``info/refs`` goes alone first: it tells a git server from anything else, and a server
    that wants a password answers one request 401, not five (some lock an account out
    after a few failures)."""
    try:
        info_refs = remote.get_bytes("info/refs")
    except HTTPStatusError as exc:
        if exc.status in (404, 410):
            raise NotAGitServerError(
                f"{_shown(remote)} is not a git repository published for dumb HTTP (info/refs: "
                f"HTTP {exc.status})",
                "check the URL, and run `git update-server-info` in the bare repository "
                "on the server",
            ) from None
        raise
    assert info_refs is not None
    if _looks_like_html(info_refs):
        raise NotAGitServerError(
            f"{_shown(remote)} is not a git repository published for dumb HTTP (info/refs is HTML)",
            "check the URL; the server must publish a bare repository after "
            "`git update-server-info`",
        )
    refs = parse_info_refs(info_refs)
    files = _get_all(remote, ["HEAD", *(f"objects/{f}" for f in _OBJECT_FILES)])
    head_data = files["HEAD"]
    head_target, head_oid = parse_head(head_data) if head_data else (None, None)
    if head_target is not None:
        head_oid = next((r.oid for r in refs if r.name == head_target), None)
    objects = {f: files[f"objects/{f}"] for f in _OBJECT_FILES}
    sources = _object_sources(remote, "objects/", connect_alternate, objects, depth=0, seen=set())
    return RemoteRepo(remote.url, refs, head_target, head_oid, sources)


def _object_sources(
    remote: DumbRemote,
    prefix: str,
    connect_alternate,
    files: dict[str, bytes | None] | None,
    *,
    depth: int,
    seen: set[str],
) -> list[ObjectSource]:
    """The object directory at ``prefix`` and those it borrows from; ``files``: its
    _OBJECT_FILES when already read."""
    objects_url = remote.url + prefix
    if objects_url in seen:
        return []
    seen.add(objects_url)
    if files is None:
        asked = _get_all(remote, (prefix + f for f in _OBJECT_FILES))
        files = {f: asked[prefix + f] for f in _OBJECT_FILES}
    packs_data = files["info/packs"]
    packs = parse_info_packs(packs_data) if packs_data else []
    sources = [ObjectSource(remote, prefix, packs)]
    alt_urls: list[str] = []
    for name in ("info/http-alternates", "info/alternates"):
        data = files[name]
        if data and not _looks_like_html(data):
            alt_urls = parse_alternates(data, objects_url)
            break
    if alt_urls and depth >= MAX_ALTERNATE_DEPTH:
        raise RemoteError(f"alternates of {_shown(remote)} nest deeper than {MAX_ALTERNATE_DEPTH}")
    for url in alt_urls:
        if connect_alternate is None:
            raise RemoteError(
                f"{_shown(remote)} borrows objects from {redact_url(url)}, "
                "which is not supported here"
            )
        alt_remote = connect_alternate(url)
        sources += _object_sources(
            alt_remote, "", connect_alternate, None, depth=depth + 1, seen=seen
        )
    return sources


def peeled_oids(refs: Iterable[Ref]) -> set[bytes]:
    """Every object the refs name, tags and what they peel to."""
    out: set[bytes] = set()
    for r in refs:
        out.add(r.oid)
        if r.peeled:
            out.add(r.peeled)
    return out


def refs_reply(snapshot: RemoteRepo) -> dict[str, object]:
    """The refs and HEAD of ``snapshot`` as the daemon's `list` reply carries them: each
    tag's peeled object as a ``NAME^{}`` entry, HEAD's target if it is a symref."""
    return {
        "refs": [[r.oid.hex(), r.name] for r in snapshot.refs]
        + [[r.peeled.hex(), r.name + "^{}"] for r in snapshot.refs if r.peeled],
        "head": snapshot.head_target,
    }
