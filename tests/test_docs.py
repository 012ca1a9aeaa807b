"""The user documentation is executable: every command it shows runs here.

Convention (also in docs/quickstart.md): fenced blocks marked ``sh`` are runnable.  All ``sh``
blocks of one document run in order as one bash script (``set -euo pipefail``) in a fresh
directory, with these environment variables standing for the reader's values:

- ``DIR``: a bare repository on the "server" (a fresh copy of the SMALL sample, as published:
  a pack with a bitmap, a pushed pack without one, loose objects)
- ``URL``: that repository's URL on nginx; ``ROOT``: the directory nginx serves (holds DIR);
  ``NAME``: DIR's name under ROOT; ``PORT``: a free port for ``lazygit serve``
- ``HOME``: a fresh directory, so ``git config --global`` stays inside the test.

Blocks that cannot run here (cloud CLIs, crontab lines, sample output) are ``text`` or
``console``; the nginx server block of docs/server-guide.md is run by nginx itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import REPO, Published, stop_daemon
from servers import Nginx, free_port

from lazygit.config import KiB, MiB, Settings

DOCS_DIR = REPO / "docs"
DOCS = [
    "quickstart.md",
    "how-it-works.md",
    "server-guide.md",
    "git-integration.md",
    "configuration.md",
    "troubleshooting.md",
]
LANGS = {"sh", "text", "console", "nginx"}
FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(doc: str, lang: str | None = None) -> list[tuple[str, str]]:
    """(language, body) of every fenced block of a document, in order."""
    text = (DOCS_DIR / doc).read_text()
    found = [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]
    return [b for b in found if lang is None or b[0] == lang]


def test_every_block_is_labelled_runnable_or_not():
    for doc in DOCS:
        langs = [lang for lang, _ in blocks(doc)]
        assert langs, f"{doc} has no code blocks"
        assert set(langs) <= LANGS, f"{doc}: fences must be one of {sorted(LANGS)}: {langs}"
        text = (DOCS_DIR / doc).read_text()
        assert text.count("```") == 2 * len(langs), f"{doc}: unbalanced fences"


def test_relative_links_resolve():
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", (DOCS_DIR / doc).read_text()):
            assert (DOCS_DIR / target).is_file(), f"{doc} links to missing {target}"


def _stop_daemons(under: Path) -> None:
    for info in under.rglob("daemon.json"):
        if info.parent.name == "lazygit":
            stop_daemon(info.parent.parent)


@pytest.mark.parametrize("doc", [d for d in DOCS if blocks(d, "sh")])
def test_doc_commands_run(
    doc: str, small: Published, server_root: Path, nginx: Nginx, tmp_path: Path
):
    name = f"test_docs-{doc.removesuffix('.md')}.git"
    repo = server_root / name
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(small.info.path, repo, symlinks=True)
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = {
        **os.environ,
        "URL": nginx.url(name),
        "DIR": str(repo),
        "ROOT": str(server_root),
        "NAME": name,
        "PORT": str(free_port()),
        "HOME": str(home),
    }
    env.pop("GIT_NO_LAZY_FETCH", None)
    script = "set -euo pipefail\n" + "\n".join(body for _, body in blocks(doc, "sh"))
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # background servers a block started
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _stop_daemons(work)
    assert proc.returncode == 0, f"{doc}: exit {proc.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------
# The nginx server block of the server guide, run by nginx


class DocNginx(Nginx):
    """nginx running the server guide's server block (own port and root substituted)."""

    def __init__(self, root: Path, workdir: Path, server_block: str) -> None:
        super().__init__(root, workdir)
        self.server_block = server_block

    def _config(self) -> str:
        block = self.server_block
        assert "listen 80;" in block and "root /srv/git;" in block
        block = block.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        block = block.replace("root /srv/git;", f"root {self.root};")
        probes = (
            f'location = /__lazygit_ping {{ access_log off; return 200 "{self.token}"; }}\n'
            '    location = /__lazygit_barrier { access_log off; return 200 "barrier"; }\n'
        )
        block = block.replace("server {", "server {\n    " + probes, 1)
        return self._http_config(block)


def test_server_guide_nginx_block(
    small: Published, server_root: Path, nginx_bin: str, tmp_path: Path
):
    (nginx_block,) = [body for _, body in blocks("server-guide.md", "nginx")]
    prepared = server_root / "test_docs-nginx-prepared.git"
    as_pushed = server_root / "test_docs-nginx-pushed.git"
    with_midx = server_root / "test_docs-nginx-midx.git"
    for dest in (prepared, as_pushed, with_midx):
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(small.info.path, dest, symlinks=True)
    lazygit = str(REPO / ".venv" / "bin" / "lazygit")
    subprocess.run([lazygit, "prepare", str(prepared)], check=True, capture_output=True)
    for args in (["repack", "-q", "-a", "-d", "-b", "--write-midx"], ["update-server-info"]):
        subprocess.run(["git", "-C", str(with_midx), *args], check=True, capture_output=True)
    (midx_bitmap,) = (with_midx / "objects" / "pack").glob("multi-pack-index-*.bitmap")

    with DocNginx(server_root, tmp_path / "nginx", nginx_block) as server:
        # Lazy clones through it: the prepared layout and the as-pushed one.
        for repo in (prepared, as_pushed, with_midx):
            dest = tmp_path / f"clone-{repo.name}"
            proc = subprocess.run(
                [lazygit, "clone", "-q", server.url(repo.name), str(dest)],
                capture_output=True,
                text=True,
            )
            assert proc.returncode == 0, proc.stderr
            if repo is with_midx:  # the block serves the multi-pack-index and its bitmap
                catalog = json.loads((dest / ".git" / "lazygit" / "catalog.json").read_text())
                assert len(catalog["midx"]) == 1
            try:
                subprocess.run(
                    ["git", "-C", str(dest), "log", "-p", "-3"],
                    check=True,
                    capture_output=True,
                    env={k: v for k, v in os.environ.items() if k != "GIT_NO_LAZY_FETCH"},
                )
            finally:
                stop_daemon(dest / ".git")
        doctor = subprocess.run(
            [lazygit, "doctor", server.url(prepared.name)], capture_output=True, text=True
        )
        assert doctor.returncode == 0, doctor.stdout
        assert "OK   ranges: byte ranges and multi-range requests" in doctor.stdout

        pack = next((prepared / "objects" / "pack").glob("*.pack")).name
        loose = next(
            p for p in (as_pushed / "objects").glob("??/*") if p.parent.name not in ("info",)
        )
        loose_path = f"{as_pushed.name}/objects/{loose.parent.name}/{loose.name}"
        with httpx.Client(base_url=server.base_url, headers={"Accept-Encoding": "gzip"}) as c:
            for path in (
                f"{prepared.name}/objects/pack/{pack}",
                f"{prepared.name}/objects/pack/{pack[:-5]}.idx",
                f"{prepared.name}/objects/pack/{pack[:-5]}.bitmap",
                f"{with_midx.name}/objects/pack/{midx_bitmap.name}",
                loose_path,
            ):
                r = c.head(path)
                assert r.status_code == 200, path
                assert "immutable" in r.headers["cache-control"], path
                assert r.headers.get("etag"), path
            for path in (
                f"{prepared.name}/info/refs",
                f"{prepared.name}/HEAD",
                f"{prepared.name}/objects/info/packs",
                f"{with_midx.name}/objects/pack/multi-pack-index",
            ):
                r = c.get(path)
                assert r.status_code == 200, path
                assert r.headers["cache-control"] == "no-cache", path
                assert "content-encoding" not in r.headers, path
            for path in ("config", "hooks/post-update.sample", "description", "packed-refs"):
                assert c.get(f"{prepared.name}/{path}").status_code == 404, path
            r = c.get(f"{prepared.name}/objects/pack/{pack}", headers={"Range": "bytes=0-3,12-15"})
            assert r.status_code == 206
            assert r.headers["content-type"].startswith("multipart/byteranges")


# ---------------------------------------------------------------------------------------
# The configuration reference lists every setting with its default


def _default_text(value: object) -> str:
    """A default as the docs write it: git-config syntax (4m, 256k, true, 0.06)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value and value % MiB == 0:
            return f"{value // MiB}m"
        if value and value % KiB == 0:
            return f"{value // KiB}k"
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_table() -> dict[str, str]:
    """{key: default text} for every lazygit.* setting, from the Settings dataclass."""
    out = {}
    for f in dataclasses.fields(Settings):
        if f.name == "unknown":
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out[f"lazygit.{f.name}"] = _default_text(default)
    return out


def test_configuration_reference_lists_every_setting():
    text = (DOCS_DIR / "configuration.md").read_text()
    rows = {
        m.group(1): (m.group(2), m.group(3).strip())
        for m in re.finditer(r"^\| `(lazygit\.\w+)` \| `([^`]*)` \|(.*)\|\s*$", text, re.M)
    }
    expected = settings_table()
    missing = sorted(set(expected) - set(rows))
    assert not missing, f"docs/configuration.md lacks {missing}"
    stale = sorted(set(rows) - set(expected))
    assert not stale, f"docs/configuration.md lists unknown keys {stale}"
    for key, default in expected.items():
        assert rows[key][0] == default, f"{key}: the doc says {rows[key][0]}, the code {default}"
        assert len(rows[key][1]) > 10, f"{key}: no meaning given"
    # The defaults as written parse back to the code's defaults.
    parsed = Settings.from_values({k.split(".")[1].lower(): v for k, v in expected.items()})
    assert dataclasses.replace(parsed, unknown={}) == Settings()
