"""`lazygit prepare`: the server-side layout, reported from disk and checked against real clones.

The SMALL sample has the three layouts a live server ends up with (a gc'd pack with a bitmap,
a pushed pack without one, loose objects).  Each test works on its own copy in server_root so
that nginx, the embedded server and http.server all serve it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, Published

from lazygit.prepare import analyze

LAZYGIT = str(REPO / ".venv" / "bin" / "lazygit")
ENV = {**os.environ, "GIT_NO_LAZY_FETCH": "1", "LC_ALL": "C"}


def lazygit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LAZYGIT, *args], capture_output=True, text=True, cwd=cwd, env=ENV)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=ENV, check=True
    ).stdout


def copy_sample(sample: Published, server_root: Path, name: str) -> Path:
    dest = server_root / f"test_prepare-{name}.git"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(sample.info.path, dest, symlinks=True)
    return dest


def pack_ranges(entries: list, pack_name: str) -> tuple[int, int]:
    """(ranges, bytes) the client asked for in the .pack, range-mode probes left out."""
    ranges = nbytes = 0
    for e in entries:
        if not e.path.endswith(f"/{pack_name}.pack") or not e.range:
            continue
        if e.range in ("bytes=0-0,2-2", "bytes=0-0"):
            continue
        for part in e.range.removeprefix("bytes=").split(","):
            a, b = part.split("-")
            ranges += 1
            nbytes += int(b) - int(a) + 1
    return ranges, nbytes


def test_check_reports_the_sample_layout_and_exits_1(small: Published, server_root: Path):
    repo = copy_sample(small, server_root, "check")
    before = sorted(p.name for p in repo.rglob("*") if p.is_file())
    proc = lazygit("prepare", "--check", str(repo))
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "bitmap: yes" in out and "bitmap: no" in out
    assert "read whole (small, no bitmap)" in out
    assert "2 packs" in out and "loose objects" in out
    assert out.rstrip().endswith("not ready for lazy clones")
    assert "fix: lazygit prepare" in out
    # --check changes nothing.
    assert sorted(p.name for p in repo.rglob("*") if p.is_file()) == before
    doc = json.loads(lazygit("prepare", "--check", "--json", str(repo)).stdout)
    assert doc["ready"] is False
    assert [p["bitmap"] for p in doc["packs"]] == [True, False]
    assert doc["loose_objects"] == int(
        dict(ln.split(": ") for ln in git(repo, "count-objects", "-v").splitlines())["count"]
    )
    bitmap_pack = doc["packs"][0]
    assert (
        bitmap_pack["commits"] + bitmap_pack["trees"] + bitmap_pack["blobs"] + bitmap_pack["tags"]
        == bitmap_pack["objects"]
    )


def test_prepare_makes_one_pack_with_bitmap_and_nginx_clone_reads_the_reported_ranges(
    small: Published, server_root: Path, nginx, tmp_path: Path
):
    repo = copy_sample(small, server_root, "plain")
    proc = lazygit("prepare", str(repo))
    assert proc.returncode == 0, proc.stderr
    assert "git -c pack.writeReverseIndex=true repack -a -d -b -q" in proc.stdout
    assert "ready for lazy clones" in proc.stdout
    packs = sorted((repo / "objects" / "pack").iterdir())
    suffixes = sorted(p.suffix for p in packs)
    assert suffixes == [".bitmap", ".idx", ".pack", ".rev"]
    assert lazygit("prepare", "--check", str(repo)).returncode == 0
    assert git(repo, "count-objects", "-v").startswith("count: 0\n")
    # info/refs is what update-server-info writes now (a second run changes nothing).
    info_refs = (repo / "info" / "refs").read_bytes()
    git(repo, "update-server-info")
    assert (repo / "info" / "refs").read_bytes() == info_refs

    report = analyze(repo)
    (pack,) = report.packs
    nginx.clear_log()
    dest = tmp_path / "lazy"
    clone = lazygit("clone", "-q", "--no-checkout", nginx.url(repo.name), str(dest))
    assert clone.returncode == 0, clone.stderr
    ranges, nbytes = pack_ranges(nginx.log_entries(), pack.name)
    # The client planned exactly what prepare reported.
    assert (ranges, nbytes) == (pack.ranges, pack.read_bytes)
    git(dest, "fsck", "--connectivity-only")


def test_aggressive_keeps_commits_and_trees_contiguous(small: Published, server_root: Path):
    plain = copy_sample(small, server_root, "plain2")
    aggressive = copy_sample(small, server_root, "aggressive")
    assert lazygit("prepare", "--json", str(plain)).returncode == 0
    proc = lazygit("prepare", "--aggressive", "--json", str(aggressive))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert any(c.endswith(" -f") for c in doc["commands"])
    (p_plain,) = analyze(plain).packs
    (p_aggr,) = doc["after"]["packs"]
    assert p_aggr["ranges"] <= 2 < p_plain.ranges
    assert doc["before"]["packs"][0]["ranges"] > p_aggr["ranges"]


def test_stale_and_missing_server_info(small: Published, server_root: Path):
    repo = copy_sample(small, server_root, "stale")
    assert lazygit("prepare", str(repo)).returncode == 0
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "update-ref", "refs/heads/pushed-later", head)
    proc = lazygit("prepare", "--check", str(repo))
    assert proc.returncode == 1
    assert "info/refs is stale" in proc.stdout
    assert f"git -C {repo} update-server-info" in proc.stdout
    (repo / "objects" / "info" / "packs").unlink()
    proc = lazygit("prepare", "--check", str(repo))
    assert "objects/info/packs is missing" in proc.stdout
    assert lazygit("prepare", str(repo)).returncode == 0
    assert lazygit("prepare", "--check", str(repo)).returncode == 0


def test_repository_without_bitmap(
    small: Published, server_root: Path, embedded, http_server, tmp_path: Path
):
    """One pack and no bitmap: --check names the fix; clones still work on both servers."""
    repo = copy_sample(small, server_root, "nobitmap")
    git(repo, "-c", "repack.writeBitmaps=false", "repack", "-a", "-d", "-q")
    git(repo, "update-server-info")
    assert not list((repo / "objects" / "pack").glob("*.bitmap"))
    proc = lazygit("prepare", "--check", str(repo))
    assert proc.returncode == 1
    assert "has no bitmap" in proc.stdout and "header scan" in proc.stdout
    doc = json.loads(lazygit("prepare", "--check", "--json", str(repo)).stdout)
    (pack,) = doc["packs"]
    assert pack["method"] == "header scan" and not pack["bitmap"]
    # The header-scan plan is the client's: clone through the embedded server.
    for server in (embedded, http_server):
        dest = tmp_path / f"lazy-{server.port}"
        clone = lazygit("clone", "-q", "--no-checkout", server.url(repo.name), str(dest))
        assert clone.returncode == 0, clone.stderr
    proc = lazygit("prepare", str(repo))
    assert proc.returncode == 0 and "bitmap: yes" in proc.stdout


def test_prepared_repository_clones_through_embedded_server(
    small: Published, server_root: Path, embedded, tmp_path: Path
):
    repo = copy_sample(small, server_root, "embedded")
    assert lazygit("prepare", "--aggressive", str(repo)).returncode == 0
    embedded.reset_counters()
    dest = tmp_path / "lazy"
    clone = lazygit("clone", "-q", "--no-checkout", embedded.url(repo.name), str(dest))
    assert clone.returncode == 0, clone.stderr
    report = analyze(repo)
    # Nothing but the planned ranges, the .idx, the bitmap head and the small files.
    assert embedded.bytes_sent < report.clone_bytes + 64 * 1024
    assert git(dest, "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")


def test_not_a_bare_repository(tmp_path: Path):
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    proc = lazygit("prepare", "--check", str(work))
    assert proc.returncode == 1
    assert proc.stderr.startswith("lazygit: error: ") and "not a bare repository" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = lazygit("prepare", str(tmp_path / "nowhere"))
    assert proc.returncode == 1 and "is not a directory" in proc.stderr


def test_report_counts_requests_for_both_range_modes(small: Published, server_root: Path):
    repo = copy_sample(small, server_root, "requests")
    (pack, _nobitmap) = analyze(repo).packs
    assert pack.requests_multi <= pack.requests_single == pack.ranges


@pytest.mark.slow
def test_report_of_an_unprepared_repository_matches_what_a_clone_reads(
    large: Published, server_root: Path, nginx, tmp_path: Path
):
    """Bitmap pack, pushed pack (whose --fix-thin bases repeat objects of the bitmap pack) and
    loose objects: from each pack, the client reads exactly the bytes prepare predicts (its
    long reads go out in more, shorter ranges: the resume store keeps them in pieces)."""
    repo = copy_sample(large, server_root, "layouts")
    report = analyze(repo)
    assert len(report.packs) == 2
    assert {p.method for p in report.packs} == {"ranges", "header scan"}
    nginx.clear_log()
    dest = tmp_path / "lazy"
    clone = lazygit("clone", "-q", "--no-checkout", nginx.url(repo.name), str(dest))
    assert clone.returncode == 0, clone.stderr
    entries = nginx.log_entries()
    for pack in report.packs:
        ranges, nbytes = pack_ranges(entries, pack.name)
        assert nbytes == pack.read_bytes, pack.name
        assert ranges >= pack.ranges, pack.name
