"""`lazygit doctor` and `lazygit status` against real clones, servers, daemons and interpreters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, Published, stop_daemon
from faultproxy import FaultProxy, Rule

from lazygit.doctor import is_shim, no_lazy_fetch_by_version, parse_git_version

LAZYGIT = str(REPO / ".venv" / "bin" / "lazygit")
NO_LAZY = {**os.environ, "GIT_NO_LAZY_FETCH": "1", "LC_ALL": "C"}


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [LAZYGIT, *args], capture_output=True, text=True, cwd=cwd, env=env or dict(os.environ)
    )


def checks(proc: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    """{check name: check} from `doctor --json` output."""
    return {c["name"]: c for c in json.loads(proc.stdout)["checks"]}


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=env or NO_LAZY,
        check=True,
    ).stdout


@pytest.fixture(scope="module")
def prepared(small: Published, server_root: Path) -> Path:
    """A copy of SMALL after `lazygit prepare` (one pack with a bitmap)."""
    dest = server_root / "test_doctor-prepared.git"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(small.info.path, dest, symlinks=True)
    subprocess.run([LAZYGIT, "prepare", str(dest)], check=True, capture_output=True)
    return dest


@pytest.fixture(scope="module")
def lazy(prepared: Path, nginx, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --no-checkout lazy clone of `prepared` through nginx (no daemon left running)."""
    dest = tmp_path_factory.mktemp("doctor") / "lazy"
    proc = run("clone", "-q", "--no-checkout", nginx.url(prepared.name), str(dest))
    assert proc.returncode == 0, proc.stderr
    return dest


def test_doctor_in_a_healthy_clone(lazy: Path):
    proc = run("doctor", cwd=lazy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for name in (
        "git",
        "GIT_NO_LAZY_FETCH",
        "interpreter",
        "git-remote-lazy",
        "clone",
        "settings",
        "daemon",
        "cache",
        "integrity",
        "server",
        "ranges",
        "bitmaps",
    ):
        assert any(ln.startswith(f"OK   {name}: ") for ln in lines), (name, proc.stdout)
    assert "multi-range" in proc.stdout and "the pack has a bitmap" in proc.stdout
    c = checks(run("doctor", "--json", cwd=lazy))
    assert c["daemon"]["data"]["running"] is False
    assert c["server packs"]["message"] == "unchanged since the clone"
    assert c["ranges"]["data"]["mode"] == "multi"


def test_doctor_url_on_a_server_that_ignores_range(prepared: Path, http_server, tmp_path: Path):
    proc = run("doctor", http_server.url(prepared.name), cwd=tmp_path)
    assert proc.returncode == 1
    assert "FAIL ranges: the server ignores Range" in proc.stdout
    assert "fix: serve the repository with a server that honours Range" in proc.stdout
    assert proc.stderr.strip() == "lazygit: error: 1 check(s) failed: ranges (see FAIL above)"
    assert (
        checks(run("doctor", "--json", http_server.url(prepared.name)))["ranges"]["data"]["mode"]
        == "none"
    )


def test_doctor_url_on_the_embedded_server(prepared: Path, embedded, tmp_path: Path):
    proc = run("doctor", "--json", embedded.url(prepared.name), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    c = checks(proc)
    assert c["ranges"]["status"] == "OK" and c["bitmaps"]["status"] == "OK"
    assert "clone" not in c  # a URL checks the server only


def test_doctor_url_on_a_repository_with_a_pack_without_bitmap(small: Published, nginx):
    proc = run("doctor", nginx.url(small.name))
    assert proc.returncode == 0
    assert "WARN bitmaps: 1 of 2 packs has no .bitmap" in proc.stdout
    assert "fix: run `lazygit prepare DIR`" in proc.stdout
    assert "403" not in proc.stdout


def test_doctor_names_a_server_that_refuses_the_bitmap(prepared: Path, nginx):
    """A server that answers 403 for *.bitmap (a deny rule) makes every clone scan the pack's
    headers, and a clone cannot tell that from a missing file (object stores answer 403 for
    one): doctor says which status came and what to look at."""
    with FaultProxy(nginx.port) as proxy:
        proxy.add(Rule("status", path=r"\.bitmap$", status=403))
        proc = run("doctor", "--json", proxy.url(prepared.name))
    bitmaps = checks(proc)["bitmaps"]
    assert bitmaps["status"] == "WARN", bitmaps
    assert "the server answered 403, not 404" in bitmaps["message"], bitmaps
    assert bitmaps["fix"].startswith("if the .bitmap files are there, let the server publish")
    assert len(bitmaps["data"]["refused_bitmap"]) == 1


def test_doctor_bad_url_and_outside_a_clone(nginx, tmp_path: Path):
    proc = run("doctor", nginx.url("no-such-repo.git"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "FAIL server: " in proc.stdout and "not a git repository" in proc.stdout
    proc = run("doctor", cwd=tmp_path)
    assert proc.returncode == 1 and "FAIL clone: not inside a git repository" in proc.stdout
    plain = tmp_path / "plain"
    subprocess.run(["git", "init", "-q", str(plain)], check=True)
    proc = run("doctor", cwd=plain)
    assert proc.returncode == 1 and "is not a lazy clone" in proc.stdout
    proc = run("status", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith("lazygit: error: ")


def test_status_and_daemon_after_a_lazy_fetch(lazy: Path, daemons: list[Path]):
    doc = json.loads(run("status", "--json", cwd=lazy).stdout)
    assert doc["blobs"] > 100 and doc["local"] == 0 and doc["missing"] == doc["blobs"]
    assert doc["missing_server_bytes"] > 0 and doc["daemon"] is None
    assert doc["promisor_packs"] >= 1 and doc["stored_bytes"] > 0
    # status itself never fetched anything.
    assert json.loads(run("status", "--json", cwd=lazy).stdout)["local"] == 0

    daemons.append(lazy / ".git")
    path = git(lazy, "ls-tree", "-r", "--name-only", "HEAD").split()[0]
    env = {k: v for k, v in os.environ.items() if k != "GIT_NO_LAZY_FETCH"}
    git(lazy, "cat-file", "-p", f"HEAD:{path}", env=env)  # one lazy fetch through the daemon

    after = json.loads(run("status", "--json", cwd=lazy).stdout)
    assert after["local"] >= 1 and after["missing"] == after["blobs"] - after["local"]
    assert after["promisor_packs"] == doc["promisor_packs"] + 1
    assert after["daemon"]["batches"] == 1 and after["daemon"]["bytes"] > 0
    text = run("status", cwd=lazy).stdout
    assert f"{after['local']:,} local" in text and "this session 1 batch," in text
    c = checks(run("doctor", "--json", cwd=lazy))
    assert c["daemon"]["data"]["running"] is True
    assert c["daemon"]["data"]["pid"] == after["daemon"]["pid"]
    assert "socket" in c["daemon"]["message"]


def test_status_counts_the_sparse_cone(prepared: Path, nginx, tmp_path: Path):
    dest = tmp_path / "sparse"
    proc = run("clone", "-q", "--sparse", "src/core", nginx.url(prepared.name), str(dest))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(run("status", "--json", cwd=dest).stdout)
    assert doc["sparse"] is True and doc["missing"] == 0
    listing = git(dest, "ls-tree", "-r", "HEAD").splitlines()
    in_cone = {
        line.split()[2]
        for line in listing
        if line.split()[1] == "blob"
        and line.split()[0] != "160000"
        and ("/" not in line.split("\t")[1] or line.split("\t")[1].startswith("src/core/"))
    }
    assert doc["blobs"] == len(in_cone) < len({ln.split()[2] for ln in listing})


def test_doctor_detects_a_damaged_promisor_pack(
    prepared: Path, nginx, tmp_path: Path, daemons: list[Path]
):
    dest = tmp_path / "lazy"
    assert run("clone", "-q", "--no-checkout", nginx.url(prepared.name), str(dest)).returncode == 0
    daemons.append(dest / ".git")
    path = git(dest, "ls-tree", "-r", "--name-only", "HEAD").split()[0]
    env = {k: v for k, v in os.environ.items() if k != "GIT_NO_LAZY_FETCH"}
    content = git(dest, "cat-file", "-p", f"HEAD:{path}", env=env)
    stop_daemon(dest / ".git")
    pack_dir = dest / ".git" / "objects" / "pack"
    blob_pack = min(pack_dir.glob("*.pack"), key=lambda p: p.stat().st_size)
    data = bytearray(blob_pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob_pack.write_bytes(bytes(data))

    for args in (["doctor"], ["doctor", "--full"]):
        proc = run(*args, cwd=dest)
        assert proc.returncode == 1, proc.stdout
        assert f"FAIL integrity: {blob_pack.name} is damaged" in proc.stdout
        assert "fix: run `lazygit doctor --repair`" in proc.stdout
    # The fix works: the damaged pack goes aside and its objects are fetched again at once.
    proc = run("doctor", "--repair", cwd=dest)
    assert proc.returncode == 0, proc.stderr
    assert f"repaired: {blob_pack.name}" in proc.stdout and "objects fetched again" in proc.stdout
    assert (dest / ".git" / "lazygit" / "damaged" / blob_pack.name).exists()
    # (The refetched pack may well get the same name: the same objects make the same pack.)
    # Back without any lazy fetch: the repair brought it.
    assert git(dest, "cat-file", "-p", f"HEAD:{path}") == content
    assert run("doctor", "--full", cwd=dest).returncode == 0
    git(dest, "fsck")


def test_helper_behind_a_pyenv_shim_and_helper_missing(lazy: Path, tmp_path: Path):
    shims = tmp_path / ".pyenv" / "shims"
    shims.mkdir(parents=True)
    shim = shims / "python3"
    shim.write_text(f'#!/usr/bin/env bash\n# pyenv shim\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "git-remote-lazy"
    helper.write_text(f"#!{shim}\nimport sys\nfrom lazygit.helper import main\nsys.exit(main())\n")
    helper.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    c = checks(run("doctor", "--json", cwd=lazy, env=env))
    assert c["interpreter"]["status"] == "WARN" and "pyenv shim" in c["interpreter"]["message"]
    assert c["git-remote-lazy"]["status"] == "OK"  # the shim still reaches this lazygit

    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    proc = run("doctor", cwd=lazy, env=env)
    assert proc.returncode == 1
    assert "FAIL git-remote-lazy: not on PATH" in proc.stdout


def test_version_rules_and_shim_detection(tmp_path: Path):
    assert parse_git_version("git version 2.39.5") == (2, 39, 5)
    assert parse_git_version("git version 2.45.0.windows.1") == (2, 45, 0)
    assert not no_lazy_fetch_by_version((2, 39, 3))
    assert no_lazy_fetch_by_version((2, 39, 4))
    assert not no_lazy_fetch_by_version((2, 44, 0))
    assert no_lazy_fetch_by_version((2, 45, 1)) and no_lazy_fetch_by_version((2, 50, 0))
    assert not is_shim(sys.executable)


def test_doctor_counts_only_packs_a_merge_would_rewrite(lazy: Path, tmp_path: Path):
    """Promisor packs that a .keep file holds are never merged: they do not make the
    "consolidation is due" warning, though they count among the packs stored."""
    clone = tmp_path / "clone"
    shutil.copytree(lazy, clone, symlinks=True)
    git(clone, "config", "lazygit.maxPromisorPacks", "1")
    pack_dir = clone / ".git" / "objects" / "pack"
    commits = git(clone, "rev-list", "--all").split()[:3]
    for oid in commits:
        name = subprocess.run(
            ["git", "-C", str(clone), "pack-objects", "-q", str(pack_dir / "pack")],
            input=oid + "\n", capture_output=True, text=True, env=NO_LAZY, check=True,
        ).stdout.strip()  # fmt: skip
        for suffix in (".promisor", ".keep"):
            (pack_dir / f"pack-{name}{suffix}").touch()
    cache = checks(run("doctor", "--json", cwd=clone))["cache"]
    assert cache["status"] == "OK", cache
    assert cache["data"]["promisor_packs"] >= 4
    for keep in pack_dir.glob("*.keep"):
        keep.unlink()
    cache = checks(run("doctor", "--json", cwd=clone))["cache"]
    assert cache["status"] == "WARN" and "consolidation is due" in cache["message"], cache


def test_doctor_takes_either_promisor_setting(lazy: Path, tmp_path: Path):
    """git names a promisor remote by `remote.<name>.promisor` or by
    `extensions.partialClone`: either alone lets it fetch lazily, so either passes."""
    clone = tmp_path / "clone"
    shutil.copytree(lazy, clone, symlinks=True)
    git(clone, "config", "--unset", "extensions.partialClone")
    assert checks(run("doctor", "--json", cwd=clone))["clone"]["status"] == "OK"
    git(clone, "config", "remote.origin.promisor", "yes")  # git's other spellings of true
    assert checks(run("doctor", "--json", cwd=clone))["clone"]["status"] == "OK"
    git(clone, "config", "--unset", "remote.origin.promisor")
    check = checks(run("doctor", "--json", cwd=clone))["clone"]
    assert check["status"] == "FAIL" and "remote.origin.promisor true" in check["fix"], check
    git(clone, "config", "extensions.partialClone", "origin")
    assert checks(run("doctor", "--json", cwd=clone))["clone"]["status"] == "OK"
