"""Faults on the wire, through a real fault-injecting proxy in front of nginx.

Each transient fault (resets, stalls past the read timeout, truncated bodies, 5xx bursts,
429 with Retry-After, Range ignored) must be survived by a real ``lazygit clone`` and by a
daemon batch (a lazy fetch through git), with results equal to a full clone.  Integrity
faults (bytes flipped inside a 206 part or a loose object, a pack replaced mid-session)
must either be survived or fail with one clear line - and never leave a wrong object in the
object store.  Outcomes are tallied into ``reliability-tally.json`` under pytest's base temp
dir (the figures of docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Published
from faultproxy import FaultProxy, Rule

PACK = r"/objects/pack/pack-[0-9a-f]{40}\.pack$"
IDX = r"\.idx$"
LOOSE = r"/objects/[0-9a-f]{2}/[0-9a-f]{38}$"

#: Settings for every lazygit run here: quick retries, a short read timeout (stalls).
CONFIG = {
    "lazygit.retries": "6",
    "lazygit.retryBackoff": "0.05",
    "lazygit.retryMaxDelay": "2",
    "lazygit.readTimeout": "2",
    "lazygit.connectTimeout": "2",
}

#: Transient faults: each must be survived.  Rules hit discovery, indexes and pack reads.
TRANSIENT: dict[str, list[Rule]] = {
    "reset": [
        Rule("reset", path=r"/info/refs$", nth={1}),
        Rule("reset", path=IDX, nth={1}),
        Rule("reset", path=PACK, nth={1, 3}),
    ],
    "stall": [Rule("stall", path=PACK, nth={2}, stall=20)],
    "truncate": [
        Rule("truncate", path=IDX, nth={1}),
        Rule("truncate", path=PACK, nth={1, 2, 4}),
    ],
    "http-5xx-burst": [
        Rule("status", path=".*", nth={1, 2, 3}, status=503),
        Rule("status", path=PACK, nth={2, 3}, status=500),
        Rule("status", path=IDX, nth={1}, status=502),
    ],
    "http-429-retry-after": [
        Rule("retry_after", path=r"/info/refs$", nth={1}, retry_after="1"),
        Rule("retry_after", path=PACK, nth={2}, retry_after="1"),
    ],
    # Retry-After values int() and float() refuse: ignored, the backoff applies.
    "http-429-odd-retry-after": [
        Rule("retry_after", path=r"/info/refs$", nth={1}, retry_after="\u00b2"),
        Rule("retry_after", path=PACK, nth={2}, retry_after="9" * 5000),
    ],
    "range-ignored": [Rule("ignore_range", path=PACK)],
    "random-mix": [
        Rule("reset", probability=0.08),
        Rule("truncate", probability=0.08),
        Rule("status", probability=0.08, status=502),
    ],
}

#: Integrity faults: survived, or one clear line; never a wrong object.
INTEGRITY: dict[str, list[Rule]] = {
    **{f"flip-206-part-{n}": [Rule("flip", path=PACK, nth={n})] for n in (1, 2, 3, 4)},
    "flip-random": [Rule("flip", path=PACK, probability=0.3)],
    "flip-every-206": [Rule("flip", path=PACK)],
    "flip-loose": [Rule("flip", path=LOOSE, flip_status=(200,), nth={1})],
    "pack-replaced": [Rule("replace", path=PACK, nth={3})],
}

TALLY: dict[str, dict[str, int]] = {}


def tally(case: str, key: str, n: int = 1) -> None:
    TALLY.setdefault(case, {}).setdefault(key, 0)
    TALLY[case][key] += n


@pytest.fixture(scope="module", autouse=True)
def write_tally(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    out = tmp_path_factory.getbasetemp() / "reliability-tally.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    old["faults"] = TALLY
    out.write_text(json.dumps(old, indent=1, sort_keys=True))
    print(f"\nreliability tally: {out}\n{json.dumps(TALLY, sort_keys=True)}")


@pytest.fixture(scope="module")
def proxy(nginx) -> Iterator[FaultProxy]:
    with FaultProxy(nginx.port, seed=7) as p:
        yield p


@pytest.fixture
def fresh_proxy(proxy: FaultProxy) -> Iterator[FaultProxy]:
    proxy.reset()
    yield proxy
    proxy.reset()


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment with lazygit's test config (GIT_CONFIG_* entries; conftest's first)."""
    e = dict(os.environ)
    items = [(e["GIT_CONFIG_KEY_0"], e["GIT_CONFIG_VALUE_0"]), *CONFIG.items()]
    items += list((extra or {}).items())
    for i, (k, v) in enumerate(items):
        e[f"GIT_CONFIG_KEY_{i}"] = k
        e[f"GIT_CONFIG_VALUE_{i}"] = v
    e["GIT_CONFIG_COUNT"] = str(len(items))
    e["LC_ALL"] = "C"
    return e


def git(repo: Path, *args: str, lazy: bool = False, check: bool = True) -> str:
    e = env()
    if not lazy:
        e["GIT_NO_LAZY_FETCH"] = "1"
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, env=e)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.decode()[-2000:]}")
    return proc.stdout.decode()


def clone(url: str, dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["lazygit", "clone", "-q", *args, url, str(dest)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
    )


def local_objects(repo: Path) -> set[str]:
    out = git(repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
    return set(out.split())


def tree_files(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if ".git" in dirnames:
            dirnames.remove(".git")
        for name in filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = (
                os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
            )
    return out


def wrong_objects(repo: Path, full_objects: set[str]) -> int:
    """Objects in ``repo`` that fsck rejects or that the full clone does not have."""
    fsck = subprocess.run(
        ["git", "-C", str(repo), "fsck", "--no-dangling"],
        capture_output=True,
        text=True,
        env={**env(), "GIT_NO_LAZY_FETCH": "1"},
    )
    bad = sum(1 for ln in fsck.stderr.splitlines() if ln.startswith(("error", "fatal")))
    return bad + len(local_objects(repo) - full_objects)


def same_history(lazy: Path, full: Path) -> None:
    fmt = "--format=%H %T"
    assert git(lazy, "log", "--all", fmt) == git(full, "log", "--all", fmt)


def one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def full_objects(small: Published) -> set[str]:
    return local_objects(small.full)


# -- transient faults: always survived --------------------------------------------------------


@pytest.mark.parametrize("case", sorted(TRANSIENT))
def test_clone_survives(
    case: str, fresh_proxy: FaultProxy, small: Published, full_objects: set[str], tmp_path: Path
) -> None:
    for rule in TRANSIENT[case]:
        fresh_proxy.add(Rule(**{k: getattr(rule, k) for k in _RULE_ARGS}))
    dest = tmp_path / "c"
    proc = clone(fresh_proxy.url(small.name), dest)
    fired = sum(fresh_proxy.fired.values())
    tally(case, "trials")
    tally(case, "faults_injected", fired)
    assert proc.returncode == 0, proc.stderr
    assert fired > 0, "the fault was never injected"
    tally(case, "survived")
    tally(case, "wrong_objects", wrong_objects(dest, full_objects))
    same_history(dest, small.full)
    assert tree_files(dest) == tree_files(small.full)
    assert wrong_objects(dest, full_objects) == 0


_RULE_ARGS = (
    "fault",
    "path",
    "methods",
    "nth",
    "probability",
    "times",
    "status",
    "retry_after",
    "stall",
    "flip_status",
    "body",
)


def _copy(rule: Rule, **kw: object) -> Rule:
    args = {k: getattr(rule, k) for k in _RULE_ARGS}
    args.update(kw)
    return Rule(**args)  # type: ignore[arg-type]


def _blob_rules(case: str) -> list[Rule]:
    """The case's rules aimed at what a lazy fetch reads (pack ranges, loose objects)."""
    out = []
    for rule in TRANSIENT.get(case) or INTEGRITY[case]:
        if rule.path in (r"/info/refs$", IDX):
            continue
        path = rule.path if rule.path != ".*" else r"/objects/"
        nth = rule.nth
        if nth is not None and rule.fault not in ("flip", "replace"):
            nth = {1, *nth} if rule.fault != "stall" else {1}
        out.append(_copy(rule, path=path, nth=nth))
    return out


@pytest.mark.parametrize("case", sorted(TRANSIENT))
def test_daemon_batch_survives(
    case: str,
    fresh_proxy: FaultProxy,
    small: Published,
    full_objects: set[str],
    tmp_path: Path,
    daemons: list[Path],
) -> None:
    dest = tmp_path / "c"
    proc = clone(fresh_proxy.url(small.name), dest, "--no-checkout")
    assert proc.returncode == 0, proc.stderr
    daemons.append(dest / ".git")
    for rule in _blob_rules(case):
        fresh_proxy.add(rule)
    # git checks out HEAD: the missing blobs come in a batch through git-remote-lazy and the
    # daemon, whose DumbRemote meets the faults.
    git(dest, "reset", "-q", "--hard", "HEAD", lazy=True)
    fired = sum(fresh_proxy.fired.values())
    tally(f"daemon:{case}", "trials")
    tally(f"daemon:{case}", "faults_injected", fired)
    assert fired > 0, "the fault was never injected"
    tally(f"daemon:{case}", "survived")
    assert tree_files(dest) == tree_files(small.full)
    bad = wrong_objects(dest, full_objects)
    tally(f"daemon:{case}", "wrong_objects", bad)
    assert bad == 0


# -- integrity faults: survived or one clear line, never a wrong object -------------------------


@pytest.mark.parametrize("case", sorted(INTEGRITY))
def test_clone_never_stores_wrong_bytes(
    case: str, fresh_proxy: FaultProxy, small: Published, full_objects: set[str], tmp_path: Path
) -> None:
    for rule in INTEGRITY[case]:
        fresh_proxy.add(_copy(rule))
    dest = tmp_path / "c"
    proc = clone(fresh_proxy.url(small.name), dest)
    fired = sum(fresh_proxy.fired.values())
    tally(case, "trials")
    tally(case, "faults_injected", fired)
    assert fired > 0, "the fault was never injected"
    if proc.returncode == 0:
        tally(case, "survived")
        same_history(dest, small.full)
        assert tree_files(dest) == tree_files(small.full)
        bad = wrong_objects(dest, full_objects)
    else:
        tally(case, "failed_cleanly")
        line = one_line_error(proc.stderr)
        assert line.startswith("lazygit: error:")
        tally(case, "error:" + line.split(":", 2)[2].strip()[:90])
        assert not dest.exists()  # nothing half-made, so nothing wrong stored
        bad = 0
    tally(case, "wrong_objects", bad)
    assert bad == 0


@pytest.mark.parametrize("case", sorted(INTEGRITY))
def test_daemon_never_stores_wrong_bytes(
    case: str,
    fresh_proxy: FaultProxy,
    small: Published,
    full_objects: set[str],
    tmp_path: Path,
    daemons: list[Path],
) -> None:
    dest = tmp_path / "c"
    proc = clone(fresh_proxy.url(small.name), dest, "--no-checkout")
    assert proc.returncode == 0, proc.stderr
    daemons.append(dest / ".git")
    for rule in _blob_rules(case):
        fresh_proxy.add(rule)
    e = env()
    result = subprocess.run(
        ["git", "-C", str(dest), "reset", "-q", "--hard", "HEAD"], capture_output=True, env=e
    )
    key = f"daemon:{case}"
    tally(key, "trials")
    tally(key, "faults_injected", sum(fresh_proxy.fired.values()))
    if result.returncode == 0:
        tally(key, "survived")
        assert tree_files(dest) == tree_files(small.full)
    else:
        tally(key, "failed_cleanly")
        assert b"Traceback" not in result.stderr
    bad = wrong_objects(dest, full_objects)
    tally(key, "wrong_objects", bad)
    assert bad == 0


def test_retries_exhausted_is_one_line(
    fresh_proxy: FaultProxy, small: Published, tmp_path: Path
) -> None:
    """A server that keeps failing: bounded retries, then one line naming the cause."""
    fresh_proxy.add(Rule("status", path=r"/info/refs$", status=503))
    dest = tmp_path / "c"
    proc = clone(fresh_proxy.url(small.name), dest)
    assert proc.returncode != 0
    line = one_line_error(proc.stderr)
    assert "HTTP 503" in line and "7 attempts" in line
    assert fresh_proxy.fired["status"] == 7  # 1 + lazygit.retries
    assert not dest.exists()
    tally("persistent-503", "trials")
    tally("persistent-503", "failed_cleanly")


def test_permanent_failures_are_not_retried(
    fresh_proxy: FaultProxy, small: Published, tmp_path: Path
) -> None:
    """404 on info/refs is answered at once: no retries of permanent failures."""
    proc = clone(fresh_proxy.url("test_faults-missing.git"), tmp_path / "c")
    assert proc.returncode != 0
    one_line_error(proc.stderr)
    assert [e.path for e in fresh_proxy.log].count("/test_faults-missing.git/info/refs") == 1


def test_an_object_store_that_answers_403_for_missing_files(
    fresh_proxy: FaultProxy,
    small: Published,
    full_objects: set[str],
    tmp_path: Path,
    daemons: list[Path],
) -> None:
    """Amazon S3 and Google Cloud Storage answer 403, not 404, for a key that does not exist
    when the reader may not list the bucket (public buckets are usually set up so). The
    files a clone probes for (alternates, the .bitmap of a pushed pack, a .mtimes, the
    multi-pack-index) are then 403s: they mean absent, and the clone and the daemon go on."""
    fresh_proxy.missing_status = 403
    dest = tmp_path / "c"
    proc = clone(fresh_proxy.url(small.name), dest, "--no-checkout")
    assert proc.returncode == 0, proc.stderr
    daemons.append(dest / ".git")
    refused = {e.path.rsplit("/", 1)[1] for e in fresh_proxy.log if e.status == 403}
    assert {"alternates", "http-alternates"} <= refused, refused
    assert any(p.endswith(".bitmap") for p in refused), refused
    same_history(dest, small.full)
    git(dest, "reset", "-q", "--hard", "HEAD", lazy=True)
    assert tree_files(dest) == tree_files(small.full)
    assert wrong_objects(dest, full_objects) == 0
