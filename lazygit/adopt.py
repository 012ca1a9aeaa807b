"""`git clone --filter=blob:none lazy::URL`: stock git makes the repository, lazygit fills it.

`lazygit clone` builds a clone itself.  When git's own `git clone` (or `git submodule update`)
meets a ``lazy::`` URL, it runs git-remote-lazy in a new repository that has no pack catalog
yet.  The helper then answers `list` from the server directly (:func:`list_refs`), and at
`fetch` -- once git has said which filter it cloned with -- makes the repository a lazygit
clone (:func:`adopt`): the catalog of the server's packs, and every commit, tree and tag in
promisor packs, read by byte range exactly as `lazygit clone` reads them.  From then on the
daemon serves it like any other clone: git's checkout after the fetch is its first lazy fetch.

Only the helper imports this module, and only on that first run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lazygit.catalog import Catalog
from lazygit.clone import normalize_url
from lazygit.config import Settings, remote_config
from lazygit.discovery import RemoteRepo, discover, peeled_oids, refs_reply
from lazygit.fetch import fetch_metadata
from lazygit.localrepo import LocalRepo
from lazygit.remote import DumbRemote


def list_refs(git_dir: str | Path | None, url: str) -> dict[str, Any]:
    """The server's refs and HEAD in the daemon's `list` reply form, read directly (with
    ``git_dir`` None, outside any repository: `git ls-remote lazy::URL`)."""
    settings = Settings.load(git_dir)
    where = Path(git_dir) if git_dir is not None else None
    with DumbRemote(normalize_url(url), settings, git_dir=where) as remote:
        return refs_reply(discover(remote, connect_alternate=lambda _url: remote))


def adopt(
    git_dir: str | Path, url: str, wants: list[str], remote: str | None = None
) -> dict[str, Any]:
    """Make the repository at ``git_dir`` a lazygit clone of ``url``: its pack catalog, and
    the commits, trees and tags of every server pack and of the loose objects the refs reach.

    The catalog file is written first with no pack marked done, then again with all of them:
    a run stopped in between leaves a clone whose next `git fetch` reads what is missing.
    Returns a reply in the form of the daemon's (objects, bytes, requests, seconds), and
    ``complete``: whether the objects git ``wants`` (hex ids) are all local now.

    ``remote`` (git's name for it) becomes ``extensions.partialClone`` when that is unset,
    as `lazygit clone` writes it: git 2.39's `git clone --filter` marks the remote a
    promisor only, and lazygit finds its remote by the extension (else "origin").
    """
    t0 = time.monotonic()
    repo = LocalRepo(Path(git_dir), None)
    settings = Settings.load(repo.git_dir)
    opened: list[DumbRemote] = []

    def connect(alt_url: str) -> DumbRemote:
        opened.append(DumbRemote(alt_url, settings, git_dir=repo.git_dir))
        return opened[-1]

    try:
        snapshot: RemoteRepo = discover(connect(normalize_url(url)), connect_alternate=connect)
        catalog = Catalog(snapshot.sources, repo.state_dir)
        catalog.load_packs(settings)  # (saves the catalog)
        roots = peeled_oids(snapshot.refs) | ({snapshot.head_oid} if snapshot.head_oid else set())
        stats = fetch_metadata(catalog, repo, settings, roots)
        catalog.meta_done.update(h.name for h in catalog.packs)
        catalog.save()
        _name_the_promisor_remote(repo, remote)
    finally:
        for client in opened:
            client.close()
    missing = repo.local_objects().missing(bytes.fromhex(oid) for oid in wants)
    return {
        "objects": stats.objects,
        "bytes": stats.bytes,
        "requests": stats.requests,
        "seconds": round(time.monotonic() - t0, 4),
        "complete": not missing,
    }


def _name_the_promisor_remote(repo: LocalRepo, remote: str | None) -> None:
    """``extensions.partialClone = remote`` if unset and ``remote`` is a lazy:: remote."""
    if not remote:
        return
    values = remote_config(repo.git_dir)
    if "extensions.partialclone" not in values and values.get(
        f"remote.{remote.lower()}.url", ""
    ).startswith("lazy::"):
        repo.git(["config", "extensions.partialClone", remote])
