"""The sample repositories: deterministic, realistic history, published in three layouts."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from lazygit.sample import LARGE, TINY, SampleInfo, SampleSpec, main, make_server_repo


def git(cwd: Path, *args: str) -> str:
    """Run git in cwd and return stdout (text)."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SampleInfo:
    return make_server_repo(tmp_path_factory.mktemp("tiny") / "sample.git", TINY)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> SampleInfo:
    return make_server_repo(tmp_path_factory.mktemp("large") / "sample.git", LARGE)


def check_layouts(info: SampleInfo) -> None:
    """One gc'd pack with a bitmap, one pushed pack without, loose objects, server info."""
    repo = info.path
    packs = sorted(p.stem for p in (repo / "objects" / "pack").glob("pack-*.pack"))
    assert packs == sorted([info.bitmap_pack, info.pushed_pack])
    pack_dir = repo / "objects" / "pack"
    assert (pack_dir / f"{info.bitmap_pack}.bitmap").exists()
    assert not (pack_dir / f"{info.pushed_pack}.bitmap").exists()
    assert not list(pack_dir.glob("*.keep"))
    loose = git(repo, "count-objects", "-v")
    counts = dict(line.split(": ") for line in loose.splitlines())
    assert int(counts["count"]) == info.loose_objects > 0
    # The pushed pack holds commits of its own (not just bases appended by --fix-thin).
    verify = git(repo, "verify-pack", "-v", str(pack_dir / f"{info.pushed_pack}.idx"))
    assert sum(" commit " in line for line in verify.splitlines()) >= 2
    # What a dumb-HTTP client reads first.
    info_packs = (repo / "objects" / "info" / "packs").read_text()
    assert f"P {info.bitmap_pack}.pack" in info_packs
    assert f"P {info.pushed_pack}.pack" in info_packs
    info_refs = (repo / "info" / "refs").read_text()
    assert "\trefs/heads/main\n" in info_refs
    assert "\trefs/heads/release\n" in info_refs
    assert git(repo, "config", "gc.auto").strip() == "0"
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    git(repo, "fsck", "--full", "--no-dangling", "--strict")


def check_shape(info: SampleInfo) -> None:
    """Branches, both kinds of tags, a merge, a binary file, renames and deletions."""
    repo = info.path
    refs = git(repo, "for-each-ref", "--format=%(objecttype) %(refname)").splitlines()
    assert "commit refs/heads/main" in refs
    assert "commit refs/heads/release" in refs
    tag_kinds = {line.split()[1].removeprefix("refs/tags/"): line.split()[0] for line in refs}
    assert info.annotated_tags and info.lightweight_tags
    for name in info.annotated_tags:
        assert tag_kinds[name] == "tag"
    for name in info.lightweight_tags:
        assert tag_kinds[name] == "commit"
    assert sorted(info.tags) == sorted(n for n in tag_kinds if not n.startswith("refs/"))
    assert int(git(repo, "rev-list", "--merges", "--count", "main")) >= 1
    # The release branch diverged from main and main contains an earlier release tip.
    assert git(repo, "merge-base", "--is-ancestor", "v1.0^{}", "main") == ""
    assert info.binary_files
    blob = subprocess.run(
        ["git", "cat-file", "blob", f"main:{info.binary_files[0]}"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout
    assert b"\0" in blob or not blob.isascii()
    assert int(git(repo, "rev-list", "--count", "main", "--", info.binary_files[0])) >= 1
    head_files = git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert len(head_files) == info.files
    assert info.hot_file in head_files
    assert any(p.count("/") >= 3 for p in head_files)  # nested directories
    assert git(repo, "rev-parse", "main").strip() == info.head
    all_objects = git(repo, "cat-file", "--batch-all-objects", "--batch-check")
    assert len(all_objects.splitlines()) == info.objects
    assert int(git(repo, "rev-list", "--all", "--count")) == info.commits


def test_tiny_layouts(tiny: SampleInfo) -> None:
    check_layouts(tiny)


def test_tiny_shape(tiny: SampleInfo) -> None:
    check_shape(tiny)
    assert tiny.commits == TINY.commits
    assert int(git(tiny.path, "log", "--oneline", "--", tiny.hot_file).count("\n")) >= 5


def test_tiny_history_has_renames_and_deletions(tmp_path: Path) -> None:
    spec = replace(TINY, commits=300, files=40)
    info = make_server_repo(tmp_path / "r.git", spec)
    log = git(info.path, "log", "-M", "--name-status", "--format=", "main")
    statuses = {line[0] for line in log.splitlines() if line}
    assert {"A", "M", "D", "R"} <= statuses


def test_deterministic(tmp_path: Path, tiny: SampleInfo) -> None:
    again = make_server_repo(tmp_path / "again.git", TINY)
    assert git(again.path, "for-each-ref") == git(tiny.path, "for-each-ref")
    assert again.objects == tiny.objects
    other = make_server_repo(tmp_path / "other.git", replace(TINY, seed=2))
    assert git(other.path, "rev-parse", "main") != git(tiny.path, "rev-parse", "main")


def test_part_sizes() -> None:
    assert TINY.part_sizes() == (31, 6, 3)
    assert sum(LARGE.part_sizes()) == LARGE.commits
    assert replace(LARGE, pushed_commits=None, pushed_fraction=0.1).part_sizes()[1] == 650


def test_spec_validation() -> None:
    with pytest.raises(ValueError):
        SampleSpec(commits=5, files=10)
    with pytest.raises(ValueError):
        SampleSpec(commits=20, files=10, pushed_commits=15)
    with pytest.raises(ValueError):
        SampleSpec(commits=20, files=10, loose_commits=0)


def test_refuses_non_empty_dest(tmp_path: Path) -> None:
    dest = tmp_path / "x.git"
    dest.mkdir()
    (dest / "file").write_text("x")
    with pytest.raises(FileExistsError):
        make_server_repo(dest, TINY)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "cli.git"
    assert main([str(dest), "--size", "tiny", "--commits", "25", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "25 commits" in out
    assert int(git(dest, "rev-list", "--all", "--count")) == 25
    assert main([str(dest), "--size", "tiny"]) == 1  # exists
    assert main([str(dest), "--size", "tiny", "--force"]) == 0


@pytest.mark.slow
def test_large(large: SampleInfo) -> None:
    repo = large.path
    assert int(git(repo, "rev-list", "--all", "--count")) >= 5000
    assert large.objects >= 50_000
    assert len(git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()) >= 1000
    assert git(repo, "log", "--oneline", "--", large.hot_file).count("\n") >= 300
    check_layouts(large)
    check_shape(large)
    assert len(git(repo, "rev-list", "--merges", "main").splitlines()) >= 5
