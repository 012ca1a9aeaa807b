"""Installing microsoft/git's read-object hook into a lazy clone.

microsoft/git calls ``<hooks dir>/read-object`` for a missing object only when
``core.virtualizeObjects`` is true (its t0499-read-object.sh sets exactly that and installs
the hook; nothing else is needed). Stock git ignores both, so installing is harmless there.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from lazygit.errors import LazyGitError
from lazygit.gitcmd import run_git
from lazygit.localrepo import LocalRepo

HOOK_NAME = "read-object"
#: The repository copy of the hook (absent when lazygit is installed as a package).
REPO_HOOK = Path(__file__).resolve().parent.parent / "hooks" / HOOK_NAME
#: Identifies a hook lazygit wrote, so reinstalling may overwrite it but nobody else's.
MARKER = "lazygit.readobject"
PATH_LINE = "LAZYGIT_PATH = None"

# Same as hooks/read-object; used when the repository copy is not shipped.
_EMBEDDED_BODY = '''#!/usr/bin/env python3
"""lazygit's read-object hook for microsoft/git: fetch missing objects through the daemon.

Installed by `lazygit hooks install` with the shebang set to lazygit's own interpreter and
LAZYGIT_PATH set to the directory holding the lazygit package.
"""

import os
import sys

LAZYGIT_PATH = None

if LAZYGIT_PATH:
    if LAZYGIT_PATH not in sys.path:
        sys.path.insert(0, LAZYGIT_PATH)
    # The daemon this hook may start is a new interpreter: let it import the same lazygit.
    _path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = LAZYGIT_PATH + (os.pathsep + _path if _path else "")
try:
    from lazygit.readobject import main
except ImportError as exc:
    sys.stderr.write(
        f"lazygit: read-object hook cannot import lazygit with {sys.executable} ({exc}); "
        "reinstall it with 'lazygit hooks install'\\n"
    )
    sys.exit(1)

sys.exit(main())
'''


def hook_source() -> str:
    """The hook's text as shipped (repository copy if present, else the embedded copy)."""
    try:
        text = REPO_HOOK.read_text(encoding="utf-8")
    except OSError:
        return _EMBEDDED_BODY
    return text if MARKER in text and PATH_LINE in text else _EMBEDDED_BODY


def render_hook(python: str | None = None, lazygit_path: str | Path | None = None) -> str:
    """The hook text for this interpreter and this lazygit package.

    The shebang names the real interpreter (``sys.executable``, never resolved: a venv's
    python must stay the venv's) because a pyenv shim costs ~150 ms on every git process.
    LAZYGIT_PATH makes the hook import the same lazygit that installed it even when lazygit
    is run from a checkout rather than installed.
    """
    python = python if python is not None else sys.executable
    if lazygit_path is None:
        lazygit_path = Path(__file__).resolve().parent.parent
    lines = hook_source().splitlines(keepends=True)
    # A shebang cannot hold whitespace; fall back to PATH lookup then.
    if python and not any(c.isspace() for c in python):
        lines[0] = f"#!{python}\n"
    text = "".join(lines)
    return text.replace(PATH_LINE, f"LAZYGIT_PATH = {str(lazygit_path)!r}", 1)


def hooks_dir(repo: LocalRepo) -> Path:
    """Where git looks for hooks: ``core.hooksPath`` if set, else ``<git dir>/hooks``."""
    proc = run_git(
        [f"--git-dir={repo.git_dir}", "config", "--type=path", "--get", "core.hooksPath"],
        cwd=repo.cwd,
        check=False,
    )
    value = proc.stdout.decode("utf-8", "replace").strip() if proc.returncode == 0 else ""
    if not value:
        return repo.git_dir / "hooks"
    path = Path(value)
    # githooks(5): hooks run in the worktree top (the git dir when bare); relative
    # core.hooksPath values are taken from there.
    return path if path.is_absolute() else (repo.worktree or repo.git_dir) / path


def install_read_object_hook(repo: LocalRepo, *, force: bool = False) -> Path:
    """Write the read-object hook (mode 0755) and set core.virtualizeObjects; the hook path.

    An existing read-object hook that lazygit did not write is kept unless ``force``.
    """
    directory = hooks_dir(repo)
    hook = directory / HOOK_NAME
    try:
        existing = hook.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise LazyGitError(f"cannot read {hook}: {exc.strerror}") from None
    if existing is not None and MARKER not in existing and not force:
        raise LazyGitError(
            f"{hook} exists and was not written by lazygit",
            "move it away to install lazygit's read-object hook",
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".read-object.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(render_hook())
            os.chmod(tmp, 0o755)
            os.replace(tmp, hook)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise LazyGitError(f"cannot write {hook}: {exc.strerror}") from None
    run_git(
        [f"--git-dir={repo.git_dir}", "config", "--local", "core.virtualizeObjects", "true"],
        cwd=repo.cwd,
    )
    return hook


__all__ = ["hook_source", "hooks_dir", "install_read_object_hook", "render_hook"]
