"""`git clone --filter=blob:none lazy::URL`: stock git makes the repository, lazygit fills it.

`lazygit clone` builds a clone itself.  When git's own `git clone` (or `git submodule update`)
meets a ``lazy::`` URL, it runs git-remote-lazy in a new repository that has no pack catalog
yet.  The helper then answers `list` from the server directly (:meth:`Adopter.list_refs`),
and at `fetch` -- once git has said which filter it cloned with -- makes the repository a
lazygit clone (:meth:`Adopter.adopt`): the catalog of the server's packs, and every commit,
tree and tag in promisor packs, read by byte range exactly as `lazygit clone` reads them.
From then on the daemon serves it like any other clone: git's checkout after the fetch is its
first lazy fetch.

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
from lazygit.progress import QUIET, Progress
from lazygit.remote import DumbRemote


class Adopter:
    """One helper run's view of a server that no daemon reads for this repository: its refs
    for `list`, then, at `fetch`, the adoption, which reuses what `list` discovered (the refs
    git chose from, the packs, the alternates) instead of reading it all again."""

    def __init__(self, git_dir: str | Path | None, url: str) -> None:
        self.git_dir = Path(git_dir) if git_dir is not None else None
        self.url = normalize_url(url)
        self.settings = Settings.load(self.git_dir)
        self._opened: list[DumbRemote] = []
        self._snapshot: RemoteRepo | None = None

    def _connect(self, url: str) -> DumbRemote:
        self._opened.append(DumbRemote(url, self.settings, git_dir=self.git_dir))
        return self._opened[-1]

    def _discover(self) -> RemoteRepo:
        if self._snapshot is None:
            self._snapshot = discover(self._connect(self.url), connect_alternate=self._connect)
        return self._snapshot

    def list_refs(self) -> dict[str, Any]:
        """The server's refs and HEAD in the daemon's `list` reply form (also outside any
        repository: `git ls-remote lazy::URL`)."""
        return refs_reply(self._discover())

    def adopt(
        self, wants: list[str], remote: str | None = None, progress: Progress = QUIET
    ) -> dict[str, Any]:
        """Make the repository a lazygit clone of the server: its pack catalog, and the
        commits, trees and tags of every server pack and of the loose objects the refs reach.

        The catalog file is written first with no pack marked done, then again with all of
        them: a run stopped in between leaves a clone whose next `git fetch` reads what is
        missing.  Returns a reply in the form of the daemon's (objects, bytes, requests,
        seconds), and ``complete``: whether the objects git ``wants`` (hex ids) are all local
        now.  ``progress`` draws the bars `lazygit clone` draws (git asked for progress).

        ``remote`` (git's name for it) becomes ``extensions.partialClone`` when that is
        unset, as `lazygit clone` writes it: git 2.39's `git clone --filter` marks the remote
        a promisor only, and lazygit finds its remote by the extension (else "origin").
        """
        assert self.git_dir is not None
        t0 = time.monotonic()
        repo = LocalRepo(self.git_dir, None)
        snapshot = self._discover()
        catalog = Catalog(snapshot.sources, repo.state_dir)
        catalog.load_packs(self.settings, progress)  # (saves the catalog)
        catalog.abbrev = repo.abbreviate_as_full_clone(catalog.object_count())
        roots = peeled_oids(snapshot.refs) | ({snapshot.head_oid} if snapshot.head_oid else set())
        stats = fetch_metadata(catalog, repo, self.settings, roots, progress)
        catalog.save()
        _name_the_promisor_remote(repo, remote)
        missing = repo.local_objects().missing(bytes.fromhex(oid) for oid in wants)
        return {
            "objects": stats.objects,
            "bytes": stats.bytes,
            "requests": stats.requests,
            "seconds": round(time.monotonic() - t0, 4),
            "complete": not missing,
        }

    def close(self) -> None:
        for client in self._opened:
            client.close()


def _name_the_promisor_remote(repo: LocalRepo, remote: str | None) -> None:
    """``extensions.partialClone = remote`` if unset and ``remote`` is a lazy:: remote."""
    if not remote:
        return
    values = remote_config(repo.git_dir)
    if "extensions.partialclone" not in values and values.get(
        f"remote.{remote.lower()}.url", ""
    ).startswith("lazy::"):
        repo.git(["config", "extensions.partialClone", remote])
