"""Sparse checkout: which paths of a tree the working tree holds, in git's cone mode.

git writes the cone patterns (``git sparse-checkout set --cone``); dulwich's pattern matcher
applies them to paths, so lazygit knows exactly which blobs a checkout needs before git asks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePosixPath

from lazygit.errors import LazyGitError
from lazygit.localrepo import LocalRepo

#: Tree entry modes whose object is a blob in the working tree (files and symlinks).
BLOB_MODES = frozenset({"100644", "100755", "120000"})

PathMatcher = Callable[[str], bool]


def validate_cone_dirs(dirs: Sequence[str]) -> list[str]:
    """Normalise cone directories; reject absolute paths, '..' and empty names."""
    out = []
    for d in dirs:
        p = d.strip().strip("/")
        parts = PurePosixPath(p).parts
        if not p or d.strip().startswith("/") or ".." in parts or "." in parts or "\\" in p:
            raise LazyGitError(
                f"invalid sparse directory {d!r}",
                "give directories relative to the repository top, like src/app",
            )
        out.append(p)
    return out


def set_cone(repo: LocalRepo, dirs: Sequence[str]) -> None:
    """Turn on cone-mode sparse checkout with ``dirs`` (git writes the patterns)."""
    repo.git(["sparse-checkout", "set", "--cone", "--", *validate_cone_dirs(dirs)])


def matcher(repo: LocalRepo) -> PathMatcher | None:
    """The sparse-checkout matcher of ``repo``, or None when sparse checkout is off."""
    proc = repo.git(["config", "--bool", "--default", "false", "core.sparseCheckout"])
    if proc.strip() != b"true":
        return None
    from dulwich.sparse_patterns import sparse_path_matcher

    path = repo.git_dir / "info" / "sparse-checkout"
    lines = path.read_text().splitlines() if path.exists() else []
    return sparse_path_matcher([ln for ln in lines if ln.strip()], cone=False)


def checkout_blobs(
    entries: Iterable[tuple[str, str, bytes, str]], match: PathMatcher | None
) -> dict[bytes, str]:
    """{blob oid: first path} for the ls-tree entries a checkout writes."""
    out: dict[bytes, str] = {}
    for mode, typ, oid, path in entries:
        if typ == "blob" and mode in BLOB_MODES and (match is None or match(path)):
            out.setdefault(oid, path)
    return out
