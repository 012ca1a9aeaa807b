"""History-aware prefetch: blame, log -p and grep in a lazy clone need one batch, not hundreds.

Real parts only: nginx on 127.0.0.1, the LARGE sample, `lazygit clone --no-checkout`, stock
git finding git-remote-lazy on PATH, the real daemon started cold by git.  Every command's
output must equal the full clone's; the bytes nginx sent must stay within 2x of what the
command needs (its blobs as stored in the server pack, plus their delta chains).  The
predictor's pattern logic (no command line to go by) is checked on the real history index.
"""

from __future__ import annotations

import marshal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Published, stop_daemon
from gitcompare import NO_LAZY, base_env, compare, git, has_object, missing_among
from servers import Nginx

sys.path.insert(0, str(REPO / "benchmarks"))
from prefetch_bench import blobs_read, needed_bytes, pack_entries

from lazygit.daemon import HISTORY_RECHECK
from lazygit.prefetch import (
    INDEX_VERSION,
    LOG_PATH_FIRST_BYTES,
    TOOL_GAP_SECONDS,
    TREE_FIRST_WINDOW,
    HistoryIndex,
    Intent,
    Predictor,
    _finds_renames,
    _merge_diffs,
    _split_diffs,
    _topo_order,
    git_subcommand,
    pathspec_matcher,
    requester_intent,
)

LAZYGIT = REPO / ".venv" / "bin" / "lazygit"


@pytest.fixture(scope="module")
def nginx(module_nginx: Nginx) -> Nginx:
    """This module's own nginx: the byte counts below see only this module's requests."""
    return module_nginx


HOT = "src/core/hot.py"


#: The clone does not pre-start a daemon: the first command starts it cold.
COLD = {
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "lazygit.prestartDaemon",
    "GIT_CONFIG_VALUE_0": "false",
}


def lazy_clone(url: str, dest: Path) -> Path:
    proc = subprocess.run(
        [str(LAZYGIT), "clone", "--no-checkout", "--quiet", url, str(dest)],
        env=base_env(COLD),
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return dest


def daemon_log(repo: Path) -> list[str]:
    path = repo / ".git" / "lazygit" / "daemon.log"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def entries(large: Published) -> dict[str, tuple[int, str | None]]:
    return pack_entries(large.info.path)


@pytest.fixture
def fresh(large: Published, nginx: Nginx, tmp_path: Path, daemons: list[Path]) -> Iterator[Path]:
    """A new lazy clone (no blobs) whose daemon is not running yet."""
    repo = lazy_clone(nginx.url(large.name), tmp_path / "lazy")
    daemons.append(repo / ".git")
    yield repo


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("blame", ["blame", "HEAD", "--", HOT]),
        ("log", ["log", "-p", "-300"]),
        ("grep", ["grep", "-c", "fetch", "HEAD"]),
        # Options with a separate value: before 2026-11-22 the daemon read "-e fetch" as
        # the path "fetch", prefetched nothing and git fetched 5,103 files one at a time.
        ("grep", ["grep", "-c", "-e", "fetch", "HEAD"]),
        ("grep", ["grep", "-c", "-C", "2", "fetch", "HEAD"]),
    ],
    ids=["blame", "log", "grep", "grep-e", "grep-C"],
)
def test_command_needs_few_batches_and_bounded_bytes(
    name: str,
    args: list[str],
    fresh: Path,
    large: Published,
    nginx: Nginx,
    entries: dict[str, tuple[int, str | None]],
) -> None:
    needed = blobs_read(large.full, name)
    assert len(missing_among(fresh, list(needed)[:50])) >= 40
    nginx.clear_log()
    out = compare(fresh, large.full, *args)
    assert out.stdout
    sent = sum(e.bytes for e in nginx.log_entries())
    batches = [ln for ln in daemon_log(fresh) if " batch: " in ln]
    prefetches = [ln for ln in daemon_log(fresh) if " prefetch: " in ln]
    # Without prefetch: one batch per version / commit / file (hundreds).
    assert len(batches) <= 3, batches
    assert prefetches and f"(git {args[0]})" in prefetches[0]
    assert sent <= 2 * needed_bytes(entries, needed), (sent, needed_bytes(entries, needed))
    # Everything the command read is now local.
    assert missing_among(fresh, needed) == []


@pytest.mark.parametrize(
    ("where", "args"),
    [
        ("", ["log", "-p", "--", HOT]),
        ("src", ["log", "-p", "--", "core/hot.py"]),
        ("src", ["log", "--stat", "-40", "core"]),
        ("", ["log", "-p", "--reverse", "-60"]),
        ("", ["format-patch", "-40", "--stdout"]),
        ("", ["show", "-40", "HEAD"]),
        ("", ["format-patch", "-40", "--stdout", "--", HOT]),
        ("", ["log", "-p", "--first-parent", "-40"]),
        ("", ["show", "--stat", "-40"]),
        ("", ["log", "-p", "--graph", "-40"]),
        ("", ["log", "-p", "--cc", "-40"]),
    ],
    ids=[
        "log-path",
        "log-path-in-subdir",
        "log-subdir-no-dashes",
        "log-reverse",
        "format-patch",
        "show-N",
        "format-patch-path",
        "log-first-parent",
        "show-stat-N",
        "log-graph",
        "log-cc",
    ],
)
def test_log_variants_need_few_batches(
    where: str, args: list[str], fresh: Path, large: Published
) -> None:
    """Before 2026-11-22 a log limited to paths took one batch per commit (539 batches and
    24 s on bench.git): a commit's diff under the paths is not its whole diff, and the
    paths of a command run in a subdirectory are relative to it (git's GIT_PREFIX).  So
    did ``log -p --reverse`` (29 batches for -30): git walks toward newer commits; and
    ``format-patch -30`` (30), ``show -30`` (29): they are not log, yet walk as it does."""
    (fresh / "src" / "core").mkdir(parents=True)  # (git takes `core` for a path if it exists)
    out = compare(fresh / where, large.full / where, *args)
    shown = b"From " if args[0] == "format-patch" else b"commit "
    assert out.stdout.count(b" " + shown if "--graph" in args else b"\n" + shown) >= 30
    batches = [ln for ln in daemon_log(fresh) if " batch: " in ln]
    # A log limited to one file counts its window in bytes: the file's whole history (a
    # commit window of 16, 25, 38... took 7 batches over 545 versions).  --first-parent
    # walks first parents only and shows merges' diffs (a window along every parent took 3);
    # show --stat shows merges' diffstats against their first parents (they took 2 more).
    few = args[-1].endswith("hot.py") or "--first-parent" in args or "--stat" in args
    assert len(batches) <= (2 if few else 8), batches
    if "--first-parent" in args:
        parents = git(large.full, "log", "--first-parent", "-40", "--format=%p").text
        assert any(" " in ln for ln in parents.splitlines()), "no merge in the 40 commits"
        assert len(batches) == 1, batches
    if "--graph" in args:  # --topo-order: a side branch's commits before newer ones (took 3)
        by_date = git(large.full, "log", "--format=%H", "-40").text
        assert git(large.full, "log", "--topo-order", "--format=%H", "-40").text != by_date
        assert len(batches) == 1, batches
    if args[0] == "show" or "--cc" in args:
        # Combined diffs: their rename detection compares files added and deleted against
        # each parent; git asked for those in a batch of its own.
        assert len(batches) == 1, batches
    assert any(" prefetch: " in ln and f"(git {args[0]})" in ln for ln in daemon_log(fresh))


_RENAMED: dict[Path, str] = {}


def renamed_file(large: Published) -> str:
    """A file of the sample that was renamed (git finds it), with the most versions."""
    if large.full in _RENAMED:
        return _RENAMED[large.full]
    renames = git(large.full, "log", "-M", "--diff-filter=R", "--format=", "--name-status").text
    best = ("", 0)
    for line in renames.splitlines():
        path = line.split("\t")[-1]
        n = len(git(large.full, "log", "--follow", "--format=%h", "--", path).text.split())
        best = max(best, (path, n), key=lambda b: b[1])
    assert best[1] > len(git(large.full, "log", "--format=%h", "--", best[0]).text.split())
    _RENAMED[large.full] = best[0]
    return best[0]


@pytest.mark.parametrize(
    "args",
    [["blame", "HEAD", "--"], ["log", "-p", "--follow", "--"], ["log", "-L1,3:"]],
    ids=["blame", "log-follow", "log-L"],
)
def test_a_file_is_followed_past_its_renames(
    args: list[str], fresh: Path, large: Published
) -> None:
    """blame, log --follow and log -L go on to the path a file had before its rename:
    its versions there came in batches of their own (blame 2, log --follow 5, log -L 4 on
    bench.git).  So did what git's rename detection reads where the file first appears.
    log -L reads more at merges (one blob, here): not modelled."""
    path = renamed_file(large)
    cmd = [*args[:-1], args[-1] + path] if args[-1].endswith(":") else [*args, path]
    compare(fresh, large.full, *cmd)
    batches = [ln for ln in daemon_log(fresh) if " batch: " in ln]
    assert len(batches) <= (2 if args[1].startswith("-L") else 1), batches


def test_lineage_is_what_git_log_follow_shows(index: HistoryIndex, large: Published) -> None:
    path = renamed_file(large)
    raw = git(large.full, "log", "--follow", "--raw", "--no-abbrev", "--format=", "--", path)
    shown = {ln.split()[3] for ln in raw.text.splitlines() if ln.startswith(":")}
    got = {v.hex() for _, v in index.lineage(index.path_id[path])}
    assert got == shown - {"0" * 40}
    assert len({q for q, _ in index.lineage(index.path_id[path])}) > 1


def test_line_log_paths() -> None:
    assert Intent("log", ["-L1,5:a.py", "-L", ":main:b/c.py", "--", "x"]).line_log_paths() == [
        "a.py",
        "b/c.py",
    ]
    assert Intent("log", ["-L/re:x/,+2:d.py"]).line_log_paths() == ["x/,+2:d.py"]
    assert Intent("log", ["-p", "--", "-Lfile"]).line_log_paths() == []
    assert Intent("show", ["-L1,2:a"]).line_log_paths() == []


def test_grep_in_a_subdirectory_prefetches_that_directory(fresh: Path, large: Published) -> None:
    """git grep REV run in a subdirectory searches that directory only: the prefetch too.
    Outside it, only the delta bases of its blobs come along."""
    listing = git(fresh, "ls-tree", "-r", "HEAD", env=NO_LAZY).text.splitlines()
    inside = {ln.split()[2] for ln in listing if ln.split("\t")[1].startswith("src/")}
    outside = {ln.split()[2] for ln in listing} - inside
    # An object in two server packs may be a delta in one and whole in the other.
    base_of: dict[str, set[str]] = {}
    for idx in (large.info.path / "objects" / "pack").glob("*.idx"):
        for line in git(large.info.path, "verify-pack", "-v", str(idx)).text.splitlines():
            f = line.split()
            if len(f) == 7 and f[1] == "blob":
                base_of.setdefault(f[0], set()).add(f[6])
    bases: set[str] = set()
    todo = set(inside)
    while todo:
        more = set().union(*(base_of.get(o, set()) for o in todo)) - bases
        bases |= more
        todo = more
    (fresh / "src").mkdir()
    compare(fresh / "src", large.full / "src", "grep", "-c", "fetch", "HEAD")
    assert len([ln for ln in daemon_log(fresh) if " batch: " in ln]) <= 3
    assert missing_among(fresh, sorted(inside)) == []
    fetched = outside - set(missing_among(fresh, sorted(outside)))
    assert fetched <= bases and len(fetched) < len(outside) / 2


def test_cat_file_run_is_recognised_as_a_tree(fresh: Path, large: Published) -> None:
    """cat-file --batch gives no revision to go by: the run of requests shows the tree."""
    listing = git(fresh, "ls-tree", "-r", "v7.0", "--", "src", env=NO_LAZY).text.split("\n")
    oids = [ln.split()[2] for ln in listing if ln][:120]
    assert sum(not has_object(fresh, o) for o in oids) > 100
    data = "".join(f"{o}\n" for o in oids).encode()
    compare(fresh, large.full, "cat-file", "--batch", input=data)
    batches = [ln for ln in daemon_log(fresh) if " batch: " in ln]
    # One per blob without the tree pattern (120).  The daemon starts cold and builds its
    # history index first (~1 s, while single requests go on): measured 14.
    assert len(batches) <= 30, len(batches)
    assert any("tree run" in ln for ln in daemon_log(fresh))


def test_offline_then_online(fresh: Path, large: Published) -> None:
    # A prefetch batch of an earlier test may still be running: let it end first.
    stop_daemon(fresh / ".git")
    blob = git(fresh, "rev-parse", "v2.0:" + HOT, env=NO_LAZY).text.strip()
    assert not has_object(fresh, blob)
    subprocess.run([str(LAZYGIT), "offline", "on"], cwd=fresh, env=base_env(), check=True)
    out = git(fresh, "cat-file", "-p", blob, check=False)
    assert out.returncode != 0
    assert (
        f"lazygit is offline: object {blob} is not local (lazygit offline off to fetch)" in out.err
    )
    assert not has_object(fresh, blob)
    subprocess.run([str(LAZYGIT), "offline", "off"], cwd=fresh, env=base_env(), check=True)
    compare(fresh, large.full, "cat-file", "-p", blob)


def wait_for_batches(repo: Path, count: int) -> list[str]:
    """The daemon's log once it has ended ``count`` batches (a prefetch may run after the
    answer)."""
    for _ in range(3000):
        log = daemon_log(repo)
        if sum(" batch: " in ln for ln in log) >= count:
            return log
        time.sleep(0.01)
    raise AssertionError(daemon_log(repo))


def log_once_families_are_planned(repo: Path) -> list[str]:
    """The daemon's log once any family prefetch would be logged: the daemon plans one as
    soon as its history index is loaded (then allow it half a second)."""
    for _ in range(3000):
        if any(" history index: " in ln for ln in daemon_log(repo)):
            break
        time.sleep(0.01)
    time.sleep(0.5)
    return daemon_log(repo)


def test_old_version_brings_its_family_after_the_answer(
    fresh: Path, large: Published, nginx: Nginx, entries: dict[str, tuple[int, str | None]]
) -> None:
    """`git show OLD:PATH`: answered by a batch of its own, then the file's other versions
    come in a second batch, so that the next `git show` of a neighbour fetches nothing."""
    revs = git(large.full, "log", "--format=%H", "--", HOT).text.split()
    old = revs[len(revs) // 2 : len(revs) // 2 + 6]
    blobs = [git(large.full, "rev-parse", f"{r}:{HOT}").text.strip() for r in old]
    nginx.clear_log()
    compare(fresh, large.full, "show", f"{old[0]}:{HOT}")
    log = wait_for_batches(fresh, 2)
    family = [ln for ln in log if " prefetch: " in ln]
    assert len(family) == 1 and f"family of {HOT} (git show), after the answer" in family[0]
    assert missing_among(fresh, blobs) == []
    sent = sum(e.bytes for e in nginx.log_entries())
    for r in old[1:]:
        compare(fresh, large.full, "show", f"{r}:{HOT}")
    assert sum(" batch: " in ln for ln in daemon_log(fresh)) == 2
    # What the family cost, against its budget (lazygit.familyBytes, 1 MiB; sizes as stored
    # in the server pack, delta bases besides): the whole history of the file fits.
    versions = git(large.full, "log", "--all", "--format=", "--raw", "--no-abbrev", "--", HOT)
    family_blobs = {ln.split()[3] for ln in versions.text.splitlines() if ln.startswith(":")}
    assert missing_among(fresh, family_blobs - {"0" * 40}) == []
    assert sent <= 2 * needed_bytes(entries, family_blobs - {"0" * 40}), sent


def test_files_walked_one_at_a_time_bring_one_family_at_most(fresh: Path, large: Published) -> None:
    """Lone requests for old versions of many files in quick succession (a diff through the
    read-object hook, a script): not a file's history, so not a family each."""
    changed = git(large.full, "diff", "--name-only", "v1.0", "HEAD", "--", "src").text.split()
    paths = changed[:6]
    assert len(paths) == 6
    script = " && ".join(f"git show v1.0:{p} > /dev/null" for p in paths)
    proc = subprocess.run(["sh", "-c", script], cwd=fresh, env=base_env(), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    families = [ln for ln in log_once_families_are_planned(fresh) if "after the answer" in ln]
    assert len(families) <= 1, families


def test_current_version_or_family_off_brings_nothing_more(fresh: Path, large: Published) -> None:
    compare(fresh, large.full, "show", f"HEAD:{HOT}")  # the file as it is now
    git(fresh, "config", "lazygit.familyBytes", "0")
    compare(fresh, large.full, "show", f"v2.0:{HOT}")
    log = log_once_families_are_planned(fresh)
    assert sum(" batch: " in ln for ln in log) == 2 and not any(" prefetch: " in ln for ln in log)
    older = git(fresh, "rev-parse", f"v1.0:{HOT}", env=NO_LAZY).text.strip()
    assert not has_object(fresh, older)


# -- the predictor without a command line (pattern only) ----------------------------------


@pytest.fixture(scope="module")
def index(large: Published) -> HistoryIndex:
    return HistoryIndex.build(large.full / ".git")


def predictor(large: Published, index: HistoryIndex, local: set[bytes]) -> Predictor:
    return Predictor(
        large.full / ".git", index, is_local=local.__contains__, size_of=lambda oid: 1000
    )


def test_index_knows_versions_and_diffs(index: HistoryIndex, large: Published) -> None:
    pid = index.path_id[HOT]
    versions = git(large.full, "log", "--all", "--format=", "--raw", "--no-abbrev", "--", HOT)
    expected = {ln.split()[3] for ln in versions.text.splitlines() if ln.startswith(":")}
    assert {v.hex() for _, v in index.versions(pid)} == expected - {"0" * 40}
    head = git(large.full, "rev-parse", "HEAD").text.strip()
    c = index.pos[head]
    diff = git(large.full, "diff-tree", "--no-abbrev", "-r", "--no-renames", "HEAD").text
    blobs = {w for ln in diff.splitlines() for w in ln.split()[2:4] if len(w) == 40}
    assert {o.hex() for o in index.changed(c)} == blobs - {"0" * 40}


def test_index_of_a_huge_history_stops_at_its_limit(index: HistoryIndex, large: Published) -> None:
    """With ``max_changes`` the index holds the newest commits whole, in the same order and
    with the same changes as the full index, stops git, and says it is truncated; the
    streaming parse reads the same index as one read of git's whole output would."""
    assert not index.truncated
    total = index.change_count()
    limit = total // 3
    small = HistoryIndex.build(large.full / ".git", max_changes=limit)
    assert small.truncated
    n = len(small.commits)
    assert 0 < n < len(index.commits)
    assert small.commits == index.commits[:n]
    assert all(small.changes(c) == index.changes(c) for c in range(n))
    most = max(len(index.changes(c)) for c in range(len(index.commits)))
    assert limit <= small.change_count() < limit + most + 1
    assert all(p < n for ps in small.parents for p in ps)
    whole = HistoryIndex.build(large.full / ".git", max_changes=total + 1)
    assert not whole.truncated and vars(whole) == vars(index)


def test_index_saved_and_loaded_answers_alike(
    index: HistoryIndex, large: Published, tmp_path: Path
) -> None:
    """The cached index is the built one (a cold daemon loads it on git's time), and a
    stale key or another format version is not taken."""
    index.save(tmp_path / "history.idx")
    loaded = HistoryIndex.load(tmp_path / "history.idx", index.key)
    assert loaded is not None and vars(loaded) == vars(index)
    pid = index.path_id[HOT]
    oid = index.versions(pid)[3][1]
    assert loaded.version_path(oid) == pid and (HOT in loaded.paths_of(oid))
    c = index.pos[git(large.full, "rev-parse", "HEAD").text.strip()]
    assert loaded.changes(c) == index.changes(c) and loaded.changed(c)
    assert HistoryIndex.load(tmp_path / "history.idx", "another key") is None
    (tmp_path / "old.idx").write_bytes(marshal.dumps((INDEX_VERSION - 1, index.key)))
    assert HistoryIndex.load(tmp_path / "old.idx", index.key) is None


def test_index_of_an_empty_repository_keeps_its_key(tmp_path: Path) -> None:
    """No history yet: an empty index, under its key (so it is not rebuilt at every look)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    empty = HistoryIndex.build(tmp_path / ".git", "the-key", max_changes=10)
    assert empty.key == "the-key" and not empty.commits and not empty.truncated


def test_blame_pattern_needs_two_requests(index: HistoryIndex, large: Published) -> None:
    p = predictor(large, index, set())
    versions = list(dict.fromkeys(v for _, v in index.versions(index.path_id[HOT])))
    first = p.plan([versions[0]], Intent(), 1 << 30)
    assert not first.oids  # a single `git show`: nothing extra
    second = p.plan([versions[1]], Intent(), 1 << 30)
    assert set(second.oids) == set(versions[2:])


def test_a_walk_in_tree_order_brings_the_rest_at_once(
    index: HistoryIndex, large: Published
) -> None:
    """`cat-file --batch` of an ls-tree gives no command line to go by: its second request,
    in tree order, brings the rest of the directory the run stays in (the paths where ref
    trees that fit the run disagree come once git has said which), also for the tree of a
    commit no ref points at.  Requests out of tree order (an editor opening files) bring a
    window of the next blobs instead."""
    listing = git(large.full, "ls-tree", "-r", "HEAD", "--", "src", env=NO_LAZY).text
    oids = [bytes.fromhex(ln.split("\t")[0].split()[2]) for ln in listing.splitlines()]
    assert len(oids) > 2 * TREE_FIRST_WINDOW
    local: set[bytes] = set()
    p = predictor(large, index, local)
    asked = 0
    for oid in oids:  # git's walk: a request for each blob not local yet
        if oid not in local:
            asked += 1
            local.add(oid)
            local.update(p.plan([oid], Intent(), 1 << 30).oids)
    assert asked <= 4, asked  # the first, the rest, and where the candidate trees disagreed
    # The tree of an old commit no ref points at (it took a request per blob): the tree of
    # the commit that gave one of the paths asked for its blob, then of later ones.
    old = git(large.full, "ls-tree", "-r", "HEAD~300", env=NO_LAZY).text
    old_oids = [bytes.fromhex(ln.split("\t")[0].split()[2]) for ln in old.splitlines()]
    local.clear()
    p, asked = predictor(large, index, local), 0
    for oid in old_oids:
        if oid not in local:
            asked += 1
            local.add(oid)
            local.update(p.plan([oid], Intent("cat-file", ["--batch"]), 1 << 30).oids)
    assert asked <= 10, asked
    editor = predictor(large, index, set())
    assert not editor.plan([oids[40]], Intent(), 1 << 30).oids
    window = editor.plan([oids[3]], Intent(), 1 << 30)
    assert "tree run" in window.reason and 0 < len(window.oids) <= TREE_FIRST_WINDOW


def test_two_commands_typed_apart_are_no_tree_run(index: HistoryIndex, large: Published) -> None:
    """Requests of two git commands are one tree run only when the second comes right after
    the first (a tool walking files), not seconds later (someone reading two files): their
    order in the tree then says nothing, and the second command would wait for the rest of
    the tree (by hand, before: 522 blobs and 0.27 s for a second `git cat-file -p`)."""
    head = git(large.full, "ls-tree", "-r", "HEAD", "--", "src", env=NO_LAZY).text.split("\n")
    oids = [bytes.fromhex(ln.split()[2]) for ln in head if ln][:4]
    p = predictor(large, index, set())
    assert not p.plan(oids[:1], Intent("cat-file", ["-p"], 101), 1 << 30).oids
    time.sleep(TOOL_GAP_SECONDS + 0.2)
    assert not p.plan(oids[1:2], Intent("cat-file", ["-p"], 102), 1 << 30).oids
    # The next command right after it: a tool, and the two requests walk the tree in order.
    third = p.plan(oids[2:3], Intent("cat-file", ["-p"], 103), 1 << 30)
    assert "tree run" in third.reason and oids[3] in third.oids
    # One command's requests are one run however far apart (cat-file --batch fed slowly).
    slow = predictor(large, index, set())
    assert not slow.plan(oids[:1], Intent("cat-file", ["--batch"], 104), 1 << 30).oids
    time.sleep(TOOL_GAP_SECONDS + 0.2)
    again = slow.plan(oids[1:2], Intent("cat-file", ["--batch"], 104), 1 << 30)
    assert "tree run" in again.reason and oids[2] in again.oids


def test_a_request_for_several_blobs_is_no_tree_run(index: HistoryIndex, large: Published) -> None:
    """git asked for several blobs in one lazy fetch (`git diff A B`): it is not walking a
    tree, and nothing more is worth the tree listings it takes to guess one (by hand, a
    `git diff HEAD~10 HEAD` of 4 missing blobs took 0.30 s, not 0.06, and brought 35 more)."""
    head = git(large.full, "ls-tree", "-r", "HEAD", "--", "src", env=NO_LAZY).text.split("\n")
    oids = [bytes.fromhex(ln.split()[2]) for ln in head if ln][:6]
    p = predictor(large, index, set())
    for i in range(0, 6, 2):
        plan = p.plan(oids[i : i + 2], Intent("diff", ["HEAD~10", "HEAD"], 201), 1 << 30)
        assert not plan.oids, plan.reason
    assert not p.trees  # no tree was listed


def test_misread_command_line_falls_back_to_the_requests(
    index: HistoryIndex, large: Published
) -> None:
    """An option this module does not know took a value: its value passes for a path that
    matches none of the blobs git asks for.  The requests then show the tree, as with no
    command line."""
    head = git(large.full, "ls-tree", "-r", "HEAD", "--", "src", env=NO_LAZY).text.split("\n")
    oids = [bytes.fromhex(ln.split()[2]) for ln in head if ln][:3]
    intent = Intent("grep", ["--unknown-option", "value", "pattern", "HEAD"])
    p = predictor(large, index, set())
    assert not p.plan(oids[:1], intent, 1 << 30).oids
    second = p.plan(oids[1:2], intent, 1 << 30)
    assert "tree run" in second.reason and oids[2] in second.oids
    # Read rightly, the first request brings the tree.
    good = predictor(large, index, set()).plan(oids[:1], Intent("grep", ["x", "HEAD"]), 1 << 30)
    assert "grep tree" in good.reason and set(oids[1:]) <= set(good.oids)


def test_family_of_an_old_version(index: HistoryIndex, large: Published) -> None:
    """A lone old version brings its neighbours, nearest (older first) within the budget;
    a current version brings nothing, nor does a path outside what is allowed."""
    p = predictor(large, index, set())
    versions = [v for _, v in index.versions(index.path_id[HOT])]
    k = len(versions) // 2
    plan = p.family(versions[k], 4_000, None)
    assert plan.oids == [versions[k + 1], versions[k - 1], versions[k + 2], versions[k - 2]]
    assert plan.bytes == 4_000 and HOT in plan.reason
    whole = p.family(versions[k], 1 << 30, None)
    assert set(whole.oids) == set(versions) - {versions[k]}
    assert not p.family(versions[0], 1 << 30, None).oids  # the file as it is now
    assert not p.family(versions[k], 1 << 30, lambda path: path != HOT).oids
    assert not p.family(versions[k], 0, None).oids
    # Right after lone requests for another file (a tool walking files): none; after
    # requests for other versions of this one: the family all the same.
    hot = index.path_id[HOT]
    other = next(
        v
        for pid in range(len(index.paths))
        if pid != hot and index.version_count(pid) > 1
        for _, v in index.versions(pid)[1:2]
        if index.version_path(v) == pid
    )
    assert not p.family(versions[k], 1 << 30, None, just_before=[other]).oids
    assert p.family(versions[k], 1 << 30, None, just_before=[versions[k + 3]]).oids


def test_log_pattern_grows_its_window(index: HistoryIndex, large: Published) -> None:
    local: set[bytes] = set()
    p = predictor(large, index, local)
    commits = git(large.full, "rev-list", "--no-merges", "-40", "HEAD").text.split()
    first = p.plan(sorted(index.changed(index.pos[commits[0]])), Intent(), 1 << 30)
    assert not first.oids
    second = p.plan(sorted(index.changed(index.pos[commits[1]])), Intent(), 1 << 30)
    assert second.oids and "log 16 commits" in second.reason
    got = set(second.oids)
    for c in commits[:2]:
        got |= index.changed(index.pos[c])
    for c in commits[2:16]:
        assert index.changed(index.pos[c]) <= got, c


def test_a_log_limited_to_a_path_counts_its_window_in_bytes(
    index: HistoryIndex, large: Published
) -> None:
    """`git log -p -- FILE` shows a few blobs a commit: a window of 16, 25, 38... commits
    took 7 batches over 545 versions; one of LOG_PATH_FIRST_BYTES brings the file's history
    at the first request, within the budget."""
    raw = git(large.full, "log", "--format=", "--raw", "--no-abbrev", "--no-merges", "--", HOT)
    history = {bytes.fromhex(w) for ln in raw.text.splitlines() for w in ln.split()[2:4]}
    history.discard(bytes(20))
    assert len(history) > 16 * 2 and len(history) * 1000 < LOG_PATH_FIRST_BYTES
    newest = git(large.full, "rev-list", "--no-merges", "-1", "HEAD", "--", HOT).text.strip()
    asked = index.changed(index.pos[newest], lambda path: path == HOT)
    log = Intent("log", ["-p", "--", HOT])
    plan = predictor(large, index, set()).plan(sorted(asked), log, 1 << 30)
    assert set(plan.oids) == history - asked, plan.reason
    small = predictor(large, index, set()).plan(sorted(asked), log, 20_000)
    assert len(small.oids) == 20 and small.bytes == 20_000
    # A pickaxe reads the diff of every commit it walks, however few match its -N.
    head = git(large.full, "rev-list", "--no-merges", "-1", "HEAD").text.strip()
    pickaxe = Intent("log", ["-S", "needle", "-3", "--oneline"])
    plan = predictor(large, index, set()).plan(
        sorted(index.changed(index.pos[head])), pickaxe, 1 << 30
    )
    assert int(plan.reason.split()[1]) > 3 and plan.bytes >= LOG_PATH_FIRST_BYTES, plan.reason


def test_a_window_stops_at_the_budget(index: HistoryIndex, large: Published) -> None:
    """A merge's diff against a far parent may name most of the tree: the window stops
    walking once its candidates fill the budget, instead of listing them all."""
    head = git(large.full, "rev-list", "--no-merges", "-1", "HEAD").text.strip()
    asked = sorted(index.changed(index.pos[head]))
    for args in (["-p", "-m"], ["-p", "-300"]):
        plan = predictor(large, index, set()).plan(asked, Intent("log", args), 5_000)
        assert plan.bytes <= 5_000 and int(plan.reason.split()[1]) <= 5, (args, plan.reason)


def test_grep_of_several_revisions_prefetches_their_trees(
    index: HistoryIndex, large: Published
) -> None:
    """`git grep PAT REV1 REV2` searches one tree, then the next: both come at the first
    request (it took a batch per revision)."""

    def blobs(rev: str) -> set[bytes]:
        out = git(large.full, "ls-tree", "-r", rev).text.splitlines()
        return {bytes.fromhex(ln.split()[2]) for ln in out if " blob " in ln}

    old, new = blobs("HEAD~40"), blobs("HEAD")
    assert new - old
    first = sorted(old - new)[0]
    grep = Intent("grep", ["-c", "main", "HEAD~40", "HEAD"])
    plan = predictor(large, index, set()).plan([first], grep, 1 << 30)
    assert set(plan.oids) == (old | new) - {first}, plan.reason


def test_which_walks_are_confirmed_at_their_first_request(
    index: HistoryIndex, large: Published
) -> None:
    """show -N and format-patch walk as log does; diff-tree --stdin takes commits in the
    order it is given them (any order, from a script): a second request confirms it."""
    mid = git(large.full, "rev-list", "--no-merges", "-1", "HEAD~40").text.strip()
    asked = sorted(index.changed(index.pos[mid]))  # (format-patch walks toward HEAD)
    for command, args, at_once in (
        ("log", ["-p"], True),
        ("show", ["-20"], True),
        ("format-patch", ["-20", "--stdout"], True),
        ("diff-tree", ["--stdin", "-p"], False),
    ):
        plan = predictor(large, index, set()).plan(asked, Intent(command, args), 1 << 30)
        assert bool(plan.oids) == at_once, (command, plan.reason)


def test_annotate_is_blame(index: HistoryIndex, large: Published) -> None:
    """`git annotate` is blame under another name: its first request brings the older
    versions (before 2026-11-22 only a second request for the path did)."""
    versions = list(dict.fromkeys(v for _, v in index.versions(index.path_id[HOT])))
    for command in ("blame", "annotate"):
        plan = predictor(large, index, set()).plan(
            [versions[0]], Intent(command, ["HEAD", "--", HOT]), 1 << 30
        )
        assert set(plan.oids) == set(versions[1:]), (command, plan.reason)


def test_budget_bounds_a_trigger(index: HistoryIndex, large: Published) -> None:
    p = predictor(large, index, set())
    versions = list(dict.fromkeys(v for _, v in index.versions(index.path_id[HOT])))
    p.plan([versions[0]], Intent(), 10_000)
    plan = p.plan([versions[1]], Intent(), 10_000)
    assert len(plan.oids) == 10 and plan.bytes == 10_000


def test_topo_order_is_gits(index: HistoryIndex, large: Published) -> None:
    """The order a --topo-order (--graph) window follows is git's own, from HEAD or a named
    revision, along every parent or the first ones."""
    p = predictor(large, index, set())
    head = git(large.full, "rev-parse", "HEAD").text.strip()
    tip = p._log_tips(Intent("log", ["-p", "--graph"]), 0)
    assert tip == [index.pos[head]]
    for extra in ([], ["--first-parent"]):
        want = git(large.full, "rev-list", "--topo-order", *extra, "HEAD").text.split()
        walk = p._topo_walk(tip, first_parent=bool(extra))
        assert [index.commits[c] for c in walk] == want
    assert p._log_tips(Intent("log", ["-p", "--graph", "HEAD~3..HEAD"]), 7) == [7]
    assert _topo_order(["-p", "--graph"]) and _topo_order(["--date-order", "--topo-order"])
    assert not _topo_order(["--graph", "--date-order"])
    assert not _topo_order(["--date-order", "--graph"]) and not _topo_order(["-p"])


def _topic_history(seed: int = 7, topics: int = 40) -> bytes:
    """A `git fast-import` stream shaped like git.git's history: every topic branch (1-4
    commits, some main-line commits made meanwhile) merged with --no-ff, dates interleaved,
    so the tip is a merge and git's log shows the side branch's commits among the main
    line's."""
    import random

    rng = random.Random(seed)
    files = {f"f{i:02d}.txt": [f"line {j} of f{i}\n" for j in range(40)] for i in range(30)}
    out: list[str] = []
    clock, marks = 1_700_000_000, 0

    def commit(branch: str, parents: list[int], msg: str, change: bool = True) -> int:
        nonlocal clock, marks
        clock, marks = clock + 60, marks + 1
        out.append(f"commit refs/heads/{branch}\nmark :{marks}\n")
        out.append(f"committer T <t@t> {clock} +0000\ndata {len(msg)}\n{msg}\n")
        if parents:
            out.append(f"from :{parents[0]}\n")
        out.extend(f"merge :{p}\n" for p in parents[1:])
        names = sorted(files) if not parents else rng.sample(sorted(files), 2) if change else []
        for name in names:
            if parents:
                files[name][rng.randrange(40)] = f"changed in {marks} {rng.random()}\n"
            data = "".join(files[name])
            out.append(f"M 100644 inline {name}\ndata {len(data)}\n{data}\n")
        out.append("\n")
        return marks

    main = commit("main", [], "root")
    for topic in range(topics):
        tip = main
        for part in range(rng.randint(1, 4)):
            tip = commit(f"topic{topic}", [tip], f"topic {topic} part {part}")
            if rng.random() < 0.5:
                main = commit("main", [main], f"on main during topic {topic}")
        main = commit("main", [main, tip], f"Merge topic {topic}", change=False)
    return "".join(out).encode()


TOPICS = "topics.git"


@pytest.fixture(scope="module")
def topics(server_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The topic-branch history published as TOPICS; returns a full clone of it."""
    bare = server_root / TOPICS
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(
        ["git", "-C", str(bare), "fast-import", "--quiet"], input=_topic_history(), check=True
    )
    for ref in git(bare, "for-each-ref", "--format=%(refname)", "refs/heads/topic*").text.split():
        git(bare, "update-ref", "-d", ref)
    git(bare, "repack", "-adbq")
    git(bare, "update-server-info")
    full = tmp_path_factory.mktemp("topics") / "full"
    subprocess.run(["git", "clone", "-q", "--no-local", str(bare), str(full)], check=True)
    return full


def test_a_log_under_a_merge_walks_from_its_tip(
    topics: Path, nginx: Nginx, tmp_path: Path, daemons: list[Path]
) -> None:
    """The first diff `git log -p -N` asks for under a merge at the tip is on the merged
    side branch.  The window was walked from that commit's ancestry alone, so it left out
    the main-line commits of the same dates: they took a second batch, whose window then
    ran past -N (`git log -p -100` on 596 commits of this shape: 540 blobs in two
    batches; 241 in one now).  The walk now starts at the tip, as git's does: HEAD, the
    revision named, or the refs of --all (which still walked from that commit)."""
    full = topics
    assert git(full, "log", "-1", "--format=%p").text.count(" ") == 1  # the tip is a merge
    index = HistoryIndex.build(full / ".git")
    shown = git(full, "log", "-60", "--format=%H").text.split()
    first = git(full, "log", "--no-merges", "-1", "--format=%H").text.strip()
    asked = index.changed(index.pos[first])
    needed = set().union(*(index.changed(index.pos[c]) for c in shown))
    for args in (["-p", "-60"], ["-p", "--all", "-60"], ["--stat", "-60", "main"]):
        p = Predictor(full / ".git", index, is_local=lambda oid: False, size_of=lambda o: 1000)
        plan = p.plan(sorted(asked), Intent("log", args), 1 << 30)
        assert needed <= set(plan.oids) | asked, (args, plan.reason)

    # --all where the newest commit of all is on a side branch: git's first diff is there,
    # and main's newer commits come next.
    side = tmp_path / "side"
    git(tmp_path, "clone", "-q", "--no-local", str(full), str(side))
    git(side, "checkout", "-q", "-b", "side", "HEAD~60")
    for i in range(3):
        (side / f"side{i}.txt").write_text(f"side {i}\n")
        git(side, "add", "-A")
        git(side, "commit", "-q", "-m", f"side {i}")
    index = HistoryIndex.build(side / ".git")
    tip = git(side, "rev-parse", "side").text.strip()
    assert index.pos[tip] == 0
    shown = git(side, "log", "--all", "-60", "--format=%H").text.split()
    needed = set().union(*(index.changed(index.pos[c]) for c in shown))
    asked = index.changed(0)
    p = Predictor(side / ".git", index, is_local=lambda oid: False, size_of=lambda o: 1000)
    plan = p.plan(sorted(asked), Intent("log", ["-p", "--all", "-60"]), 1 << 30)
    assert needed <= set(plan.oids) | asked, plan.reason

    repo = lazy_clone(nginx.url(TOPICS), tmp_path / "lazy")
    daemons.append(repo / ".git")
    compare(repo, full, "log", "-p", "-60")
    batches = [ln for ln in daemon_log(repo) if " batch: " in ln]
    assert len(batches) == 1, batches


def test_which_logs_find_renames() -> None:
    assert _finds_renames(["-p"]) and not _finds_renames(["-p"], default=False)
    assert not _finds_renames(["-M", "--no-renames"]) and _finds_renames(["--no-renames", "-M50%"])
    assert _finds_renames(["--find-renames"], default=False)


def test_which_merge_diffs_a_walk_shows() -> None:
    assert _merge_diffs("log", ["-p"]) == ""
    assert _merge_diffs("log", ["-p", "--first-parent"]) == "first"
    assert _merge_diffs("log", ["-p", "--diff-merges=first-parent"]) == "first"
    assert _merge_diffs("log", ["-p", "-m"]) == "each"
    assert _merge_diffs("log", ["--cc"]) == "combined"
    assert _merge_diffs("show", ["-30"]) == "combined"
    assert _merge_diffs("show", ["--stat", "-30"]) == "combined-stat"
    assert _merge_diffs("show", ["-p", "--stat"]) == "combined+first"
    assert _merge_diffs("show", ["--diff-merges=off", "-3"]) == ""


def test_split_diffs_keeps_one_diff_per_line() -> None:
    """`git diff-tree --stdin --always -z`: an empty diff still counts, and a path that
    looks like a commit id is a path (it follows a record)."""
    a, b, m = "a" * 40, "b" * 40, "c" * 40
    hexpath = "d" * 40
    out = (
        f"{m}\0{m}\0:100644 100644 {a} {b} M\0src/x.py\0"
        f":000000 100644 {'0' * 40} {a} A\0{hexpath}\0"
        f":160000 160000 {a} {b} M\0sub\0"
    ).encode()
    ids = {"src/x.py": 1, hexpath: 2, "sub": 3}
    assert _split_diffs(out, ids) == [
        {},
        {1: (bytes.fromhex(a), bytes.fromhex(b)), 2: (None, bytes.fromhex(a))},
    ]


def test_intent_parsing(tmp_path: Path) -> None:
    assert git_subcommand(["git", "-c", "a=b", "-C", "x", "--no-pager", "log", "-p"]) == (
        "log",
        ["-p"],
    )
    assert git_subcommand(["/usr/lib/git-core/git-blame", "f"]) == ("blame", ["f"])
    assert git_subcommand(["python3", "x"]) is None
    log = Intent("log", ["-p", "-300", "--", "src"])
    assert log.is_log and log.max_count() == 300 and log.pathspec() == ["src"]
    assert Intent("log", ["--oneline"]).is_log is False
    assert Intent("log", ["-n", "5", "--stat"]).max_count() == 5
    # -N counts the commits a pickaxe matches, not those whose diffs git reads
    assert Intent("log", ["-Sneedle", "-5"]).searches_diffs
    assert Intent("log", ["-G", "x.*y", "-p"]).searches_diffs
    assert not Intent("log", ["-p", "--", "-Sfile"]).searches_diffs
    # str.isdigit() takes digits int() refuses: no count, not a ValueError in the daemon
    assert Intent("log", ["-n\u00b2"]).max_count() is None
    assert Intent("log", ["-\u00b2"]).max_count() is None
    # Revisions and paths only: not options, their values, or grep's pattern.
    assert Intent("grep", ["-c", "fetch", "HEAD", "--", "src"]).words() == ["HEAD"]
    assert Intent("grep", ["-e", "a", "--and", "-e", "b", "v1", "src"]).words() == ["v1", "src"]
    assert Intent("grep", ["-C", "3", "-ie", "a", "(", "-e", "b", ")", "HEAD"]).words() == ["HEAD"]
    assert Intent("grep", ["-C3", "--max-depth", "2", "-fpats", "HEAD"]).words() == ["HEAD"]
    assert Intent("grep", ["--context=2", "a", "HEAD~1"]).words() == ["HEAD~1"]
    assert Intent("checkout", ["-b", "new", "v1", "--", "src"]).words() == ["v1"]
    assert Intent("restore", ["-s", "v1", "-W", "src"]).words() == ["v1", "src"]
    assert Intent("restore", ["--source=v1", "src"]).words() == ["v1", "src"]
    assert Intent("restore", ["-sv1", "src"]).words() == ["v1", "src"]
    assert Intent("archive", ["-o", "out.tar", "--prefix", "p/", "HEAD"]).words() == ["HEAD"]
    match = pathspec_matcher(["src/net", "*.md"])
    assert match is not None
    assert match("src/net/a.py") and match("README.md") and not match("src/netx/a.py")
    # A real git process, found through /proc.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    proc = subprocess.Popen(
        ["git", "-C", str(tmp_path), "hash-object", "--stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        intent = requester_intent(proc.pid)
        for _ in range(500):  # until the child has exec'd git
            if intent.command:
                break
            time.sleep(0.01)
            intent = requester_intent(proc.pid)
        assert intent.command == "hash-object" and intent.args == ["--stdin"]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()


def test_daemon_restart_uses_cached_index(fresh: Path, large: Published) -> None:
    compare(fresh, large.full, "show", "v1.0:" + HOT)
    cache = fresh / ".git" / "lazygit" / "history.idx"
    for _ in range(3000):  # the daemon builds the index in the background
        if cache.exists():
            break
        time.sleep(0.01)
    assert cache.exists()
    stop_daemon(fresh / ".git")
    compare(fresh, large.full, "blame", "v3.0", "--", HOT)
    assert sum(" prefetch: " in ln for ln in daemon_log(fresh)) >= 1


def test_history_build_waits_for_a_checkout_batch(fresh: Path, large: Published) -> None:
    """Building the history index reads all of history; it must not compete with the batch
    of a checkout (which needs no index) for the machine's cores: it starts afterwards."""
    proc = subprocess.run(
        ["git", "checkout", "-q", "main"], cwd=fresh, env=base_env(), capture_output=True
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    cache = fresh / ".git" / "lazygit" / "history.idx"
    for _ in range(3000):
        if cache.exists() and any(" history index: " in ln for ln in daemon_log(fresh)):
            break
        time.sleep(0.01)
    log = daemon_log(fresh)
    batch = next(i for i, ln in enumerate(log) if " batch: " in ln)
    built = next(i for i, ln in enumerate(log) if " history index: " in ln)
    assert batch < built, log
    # ... and a command that needs the index does not wait for that: blame gets its prefetch.
    stop_daemon(fresh / ".git")
    cache.unlink()
    compare(fresh, large.full, "blame", "v3.0", "--", HOT)
    assert any(" prefetch: " in ln for ln in daemon_log(fresh)), daemon_log(fresh)


def test_the_history_index_follows_new_commits(fresh: Path, large: Published) -> None:
    """A commit made after the daemon loaded its index (here with git commit-tree) is in the
    index the daemon rebuilds once a request comes HISTORY_RECHECK later.  The look whether
    the refs moved (two git processes) runs beside that request, not before it."""
    compare(fresh, large.full, "show", "HEAD~3:" + HOT)
    for _ in range(3000):
        if any(" history index: " in ln for ln in daemon_log(fresh)):
            break
        time.sleep(0.01)
    before = [ln for ln in daemon_log(fresh) if " history index: " in ln]
    count = int(before[-1].split(" history index: ")[1].split()[0])
    tree = git(fresh, "rev-parse", "HEAD^{tree}", env=NO_LAZY).text.strip()
    head = git(fresh, "rev-parse", "HEAD", env=NO_LAZY).text.strip()
    old = git(fresh, "rev-parse", "HEAD~40", env=NO_LAZY).text.strip()
    new = git(fresh, "commit-tree", tree, "-p", head, "-m", "after", env=NO_LAZY).text.strip()
    git(fresh, "update-ref", "refs/heads/main", new, env=NO_LAZY)
    time.sleep(HISTORY_RECHECK + 0.5)
    compare(fresh, large.full, "show", f"{old}:{HOT}")
    for _ in range(3000):
        after = [ln for ln in daemon_log(fresh) if " history index: " in ln]
        if len(after) > len(before):
            break
        time.sleep(0.01)
    assert f" history index: {count + 1} commits" in after[-1], after


@pytest.mark.parametrize(
    ("lines", "want"),
    [
        ([], True),  # unset: git's default since 2.9
        (["renames = false"], False),
        (["renames = off"], False),
        (["renames"], True),  # no "=": true
        (["renames ="], False),  # the empty string: false
        (["renames = copies"], True),
        (["renames = false", "renames = true"], True),  # the last one wins
    ],
)
def test_diff_renames_is_read_as_git_reads_it(
    tmp_path: Path, index: HistoryIndex, lines: list[str], want: bool
) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path / "r")], check=True)
    config = tmp_path / "r" / ".git" / "config"
    config.write_text(config.read_text() + "[diff]\n" + "".join(f"\t{ln}\n" for ln in lines))
    p = Predictor(tmp_path / "r" / ".git", index, is_local=set().__contains__, size_of=len)
    assert p._renames_by_default() is want
