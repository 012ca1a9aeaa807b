"""The bad-input catalogue: every case ends with one clear line, a non-zero exit, no
traceback, and nothing lost - the destination removed again, or left exactly as it was.

Servers are real: nginx serving deliberately broken copies of a sample repository, and the
fault proxy where a server must misbehave (HTML, 401/403/410, redirect loops, stalls).
Each outcome line is recorded in ``reliability-tally.json`` (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Published
from faultproxy import FaultProxy, Rule
from servers import free_port

from lazygit.sample import TINY, make_server_repo

OUTCOMES: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def write_outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    out = tmp_path_factory.getbasetemp() / "reliability-tally.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    old["badinput"] = OUTCOMES
    out.write_text(json.dumps(old, indent=1, sort_keys=True))
    print(f"\nbad-input outcomes ({len(OUTCOMES)}): {out}")


@pytest.fixture(scope="module")
def tiny(server_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Published:
    info = make_server_repo(server_root / "badinput-tiny.git", TINY)
    full = tmp_path_factory.mktemp("badinput-full") / "full"
    subprocess.run(["git", "clone", "-q", "--no-local", str(info.path), str(full)], check=True)
    return Published(info, "badinput-tiny.git", full)


@pytest.fixture(scope="module")
def proxy(nginx) -> Iterator[FaultProxy]:  # type: ignore[no-untyped-def]
    with FaultProxy(nginx.port) as p:
        yield p


@pytest.fixture
def fresh_proxy(proxy: FaultProxy) -> Iterator[FaultProxy]:
    proxy.reset()
    yield proxy
    proxy.reset()


def env() -> dict[str, str]:
    e = dict(os.environ)
    items = [
        (e["GIT_CONFIG_KEY_0"], e["GIT_CONFIG_VALUE_0"]),
        ("lazygit.retries", "2"),
        ("lazygit.retryBackoff", "0.01"),
        ("lazygit.readTimeout", "3"),
    ]
    for i, (k, v) in enumerate(items):
        e[f"GIT_CONFIG_KEY_{i}"] = k
        e[f"GIT_CONFIG_VALUE_{i}"] = v
    e["GIT_CONFIG_COUNT"] = str(len(items))
    e["GIT_TERMINAL_PROMPT"] = "0"
    return e


def run_clone(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["lazygit", "clone", "-q", *args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def snapshot(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    if not path.is_dir():
        return {"": path.read_bytes()}
    return {
        str(p.relative_to(path)): (p.read_bytes() if p.is_file() else b"<dir>")
        for p in sorted(path.rglob("*"))
    }


def check_failure(
    case: str, proc: subprocess.CompletedProcess[str], dest: Path, before: object = None
) -> str:
    """One line, non-zero, no traceback, destination as before (absent if it was)."""
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lazygit: "), lines[0]
    assert snapshot(dest) == before
    OUTCOMES[case] = f"exit {proc.returncode}: {lines[0]}"
    return lines[0]


def broken_copy(tiny: Published, server_root: Path, name: str, breaker: Callable[[Path], None]):
    """A copy of the tiny repository under server_root, broken by ``breaker``."""
    dest = server_root / f"badinput-{name}.git"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(tiny.info.path, dest)
    breaker(dest)
    return f"badinput-{name}.git"


def bitmap_pack(repo: Path) -> Path:
    return next((repo / "objects" / "pack").glob("pack-*.bitmap")).with_suffix(".pack")


# -- URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["prefetch", "HEAD"], ["prefetch", "--history", "x"], ["offline", "on"], ["hooks", "install"],
     ["sparse", "set", "src"], ["status"]],
    ids=["prefetch", "prefetch-history", "offline", "hooks", "sparse", "status"],
)  # fmt: skip
def test_commands_refuse_a_repository_lazygit_did_not_clone(
    args: list[str], tmp_path: Path
) -> None:
    """One line naming the directory, exit 1, and nothing written (no hook, no config)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "x"],
                   check=True, env=env())  # fmt: skip
    before = (tmp_path / ".git" / "config").read_bytes()
    proc = subprocess.run(
        ["lazygit", *args], capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"lazygit: error: {tmp_path} is not a lazygit clone "
        "(run it inside a clone made by lazygit clone)\n"
    )
    assert not (tmp_path / ".git" / "hooks" / "read-object").exists()
    assert (tmp_path / ".git" / "config").read_bytes() == before


def test_ctrl_c_inside_a_command_is_one_line_and_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """typer turns a KeyboardInterrupt that leaves a command (say, during one of its lazy
    imports) into a returned 130: that is an interruption, not a success."""
    import lazygit.cli

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(lazygit.cli.typer, "echo", interrupted)
    assert lazygit.cli.main(["version"]) == 130
    assert capsys.readouterr().err == "lazygit: interrupted\n"


def test_ctrl_c_while_the_cli_loads_is_one_line(tmp_path: Path) -> None:
    """The console scripts enter through lazygit.__main__, which imports the command line
    interface (typer, click) inside its own handler: a Ctrl-C there is one line, exit 130."""
    code = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def imp(name, *a, **k):\n"
        "    if name == 'lazygit.cli':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = imp\n"
        "from lazygit.__main__ import main\n"
        "sys.exit(main())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=60
    )
    assert proc.returncode == 130
    assert proc.stderr == "lazygit: interrupted\n"


def test_version() -> None:
    from lazygit import __version__

    for prog in (["lazygit"], ["git", "lazy"]):
        proc = subprocess.run(
            [*prog, "--version"], capture_output=True, text=True, env=env(), timeout=60
        )
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"lazygit {__version__}\n", "")


def test_help_describes_every_argument() -> None:
    """Each command's --help gives its positional arguments' help, not just their names
    (click 8.5 dropped what typer 0.24 set, leaving bare "url TEXT [required]" rows)."""
    import typer.main

    from lazygit.cli import app

    def walk(group: object, path: list[str]) -> Iterator[tuple[list[str], object]]:
        for name, cmd in getattr(group, "commands", {}).items():
            yield [*path, name], cmd
            yield from walk(cmd, [*path, name])

    commands = [
        (path, cmd)
        for path, cmd in walk(typer.main.get_command(app), [])
        if any(p.param_type_name == "argument" for p in cmd.params)  # type: ignore[attr-defined]
    ]
    assert len(commands) >= 8
    for path, cmd in commands:
        proc = subprocess.run(
            ["lazygit", *path, "--help"],
            capture_output=True,
            text=True,
            env={**env(), "COLUMNS": "200"},
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        for param in cmd.params:  # type: ignore[attr-defined]
            if param.param_type_name == "argument":
                assert param.help, (path, param.name)
                assert param.help.split("(")[0].strip() in proc.stdout, (path, proc.stdout)


@pytest.mark.parametrize(
    ("args", "hint"),
    [(["daemn"], "'demo'"), (["sparse", "sett"], "'set'")],
    ids=["command", "subcommand"],
)
def test_mistyped_command_is_suggested_once(args: list[str], hint: str) -> None:
    proc = subprocess.run(["lazygit", *args], capture_output=True, text=True, env=env(), timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("Did you mean") == 1, proc.stderr
    assert f"Did you mean {hint}?" in proc.stderr


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/x.git", "http:///x.git", "not a url", "http://127.0.0.1:99999/x.git"],
    ids=["ftp", "no-host", "garbage", "bad-port"],
)
def test_malformed_url(url: str, tmp_path: Path) -> None:
    dest = tmp_path / "c"
    check_failure(f"malformed URL {url!r}", run_clone(url, str(dest)), dest)


def test_connection_refused(tmp_path: Path) -> None:
    dest = tmp_path / "c"
    line = check_failure(
        "connection refused", run_clone(f"http://127.0.0.1:{free_port()}/x.git", str(dest)), dest
    )
    assert "connection refused" in line


# -- servers that are not (or not quite) git servers --------------------------------------------


def test_not_a_git_server_404(nginx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dest = tmp_path / "c"
    line = check_failure("no info/refs (404)", run_clone(nginx.url("nothing.git"), str(dest)), dest)
    assert "not a git repository" in line


def test_html_with_status_200(fresh_proxy: FaultProxy, tiny: Published, tmp_path: Path) -> None:
    fresh_proxy.add(Rule("html", path=r"/info/refs$"))
    dest = tmp_path / "c"
    line = check_failure(
        "HTML page with 200", run_clone(fresh_proxy.url(tiny.name), str(dest)), dest
    )
    assert "HTML" in line


@pytest.mark.parametrize("status", [401, 403, 404, 410, 500])
def test_http_status(status: int, fresh_proxy: FaultProxy, tiny: Published, tmp_path: Path) -> None:
    if status == 401:
        fresh_proxy.require_auth = {"Basic nobody"}
    else:
        fresh_proxy.add(Rule("status", path=r"/info/refs$", status=status))
    dest = tmp_path / "c"
    line = check_failure(
        f"HTTP {status} on info/refs", run_clone(fresh_proxy.url(tiny.name), str(dest)), dest
    )
    assert f"HTTP {status}" in line or "not a git repository" in line


def test_status_on_pack_midway(fresh_proxy: FaultProxy, tiny: Published, tmp_path: Path) -> None:
    """404 on a pack after discovery succeeded (deleted by a repack): the clone is undone."""
    fresh_proxy.add(Rule("status", path=r"\.pack$", status=404))
    dest = tmp_path / "c"
    check_failure("HTTP 404 on a pack", run_clone(fresh_proxy.url(tiny.name), str(dest)), dest)


def test_redirect_loop(fresh_proxy: FaultProxy, tiny: Published, tmp_path: Path) -> None:
    fresh_proxy.add(Rule("redirect_loop", path=r"/info/refs$"))
    dest = tmp_path / "c"
    line = check_failure("redirect loop", run_clone(fresh_proxy.url(tiny.name), str(dest)), dest)
    assert "redirects" in line


# -- broken repository files ----------------------------------------------------------------------


def _write(rel: str, data: bytes) -> Callable[[Path], None]:
    return lambda repo: (repo / rel).write_bytes(data)


def _truncate_idx(repo: Path) -> None:
    idx = bitmap_pack(repo).with_suffix(".idx")
    idx.write_bytes(idx.read_bytes()[:1500])


def _flip_idx(repo: Path) -> None:
    idx = bitmap_pack(repo).with_suffix(".idx")
    data = bytearray(idx.read_bytes())
    data[len(data) // 2] ^= 0x55
    idx.write_bytes(bytes(data))


def _bitmap_other_pack(repo: Path) -> None:
    bm = bitmap_pack(repo).with_suffix(".bitmap")
    data = bytearray(bm.read_bytes())
    data[12:32] = b"\x42" * 20  # the pack checksum it claims to index
    bm.write_bytes(bytes(data))


def _short_pack(repo: Path) -> None:
    pack = bitmap_pack(repo)
    pack.write_bytes(pack.read_bytes()[: pack.stat().st_size // 3])


def _dotdot_pack(repo: Path) -> None:
    (repo / "objects/info/packs").write_text("P ../../../etc/pack-" + "a" * 40 + ".pack\n")


def _slash_pack(repo: Path) -> None:
    (repo / "objects/info/packs").write_text("P sub/pack-" + "a" * 40 + ".pack\n")


def _ftp_alternate(repo: Path) -> None:
    (repo / "objects/info/http-alternates").write_text("ftp://127.0.0.1/objects\n")


def _missing_pack(repo: Path) -> None:
    with (repo / "objects/info/packs").open("a") as f:
        f.write("P pack-" + "b" * 40 + ".pack\n")


BROKEN: dict[str, Callable[[Path], None]] = {
    "info-refs-garbage": _write("info/refs", b"\x00\xff garbage \x01\n\x02"),
    "info-refs-bad-name": _write("info/refs", b"a" * 40 + b"\trefs/heads/../../x\n"),
    "info-refs-short-oid": _write("info/refs", b"abc123\trefs/heads/main\n"),
    "head-garbage": _write("HEAD", b"not a ref at all\n"),
    "packs-dotdot": _dotdot_pack,
    "packs-slash": _slash_pack,
    "idx-truncated": _truncate_idx,
    "idx-corrupt": _flip_idx,
    "bitmap-checksum": _bitmap_other_pack,
    "pack-shorter-than-idx": _short_pack,
    "alternate-ftp": _ftp_alternate,
    "packs-lists-missing-pack": _missing_pack,
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_repository(
    case: str, tiny: Published, server_root: Path, nginx, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    name = broken_copy(tiny, server_root, case, BROKEN[case])
    dest = tmp_path / "c"
    check_failure(case, run_clone(nginx.url(name), str(dest)), dest)


@pytest.mark.parametrize("ref", ["refs/heads/ghost", "refs/tags/ghost"])
def test_a_ref_to_an_object_the_server_lacks(
    ref: str, tiny: Published, server_root: Path, nginx, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A ref naming an object neither packed nor loose (a damaged server repository): one
    line naming it.  A branch's tip is asked for as a loose object before the pack indexes
    are in, and its 404 is checked against them once they are; a tag's waits for them."""
    ghost = "c0ffee" * 6 + "c0ff"

    def add_ref(repo: Path) -> None:
        with (repo / "info/refs").open("a") as f:
            f.write(f"{ghost}\t{ref}\n")

    name = broken_copy(tiny, server_root, "ghost-" + ref.split("/")[1], add_ref)
    dest = tmp_path / "c"
    line = check_failure(
        f"{ref} names a missing object", run_clone(nginx.url(name), str(dest)), dest
    )
    assert f"object {ghost} is not on the server" in line, line


def test_huge_number_of_refs(tiny: Published, server_root: Path, nginx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """200,000 refs: works (or would fail with one line) in bounded time."""

    def many_refs(repo: Path) -> None:
        refs = (repo / "info/refs").read_bytes()
        head = refs.split(b"\t", 1)[0]
        extra = b"".join(b"%s\trefs/tags/t%06d\n" % (head, i) for i in range(200_000))
        (repo / "info/refs").write_bytes(refs + extra)

    name = broken_copy(tiny, server_root, "many-refs", many_refs)
    dest = tmp_path / "c"
    t0 = time.monotonic()
    proc = run_clone("--no-checkout", nginx.url(name), str(dest), timeout=300)
    seconds = time.monotonic() - t0
    if proc.returncode == 0:
        count = subprocess.run(
            ["git", "-C", str(dest), "for-each-ref", "--count=300000", "refs/tags"],
            capture_output=True,
            text=True,
        ).stdout.count("\n")
        assert count >= 200_000
        OUTCOMES["200,000 refs"] = f"exit 0: cloned with {count} tags in {seconds:.1f} s"
    else:
        check_failure("200,000 refs", proc, dest)


def test_sha256_repository_is_refused_by_name(server_root: Path, nginx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A repository made with ``--object-format=sha256`` (git 2.39 can): the line says so,
    where a parser of 40-hex ids would only call info/refs malformed."""
    work = tmp_path / "w"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work)]
    subprocess.run(["git", "init", "-q", "--object-format=sha256", str(work)], check=True)
    (work / "a").write_text("a\n")
    subprocess.run([*git, "add", "a"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    bare = server_root / "badinput-sha256.git"
    shutil.rmtree(bare, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    dest = tmp_path / "c"
    line = check_failure("sha256", run_clone(nginx.url("badinput-sha256.git"), str(dest)), dest)
    assert "SHA-256" in line and "SHA-1" in line, line


# -- the local side -----------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["../x", "/abs", "a/../../b"])
def test_invalid_sparse_pattern(pattern: str, tiny: Published, nginx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dest = tmp_path / "c"
    check_failure(
        f"--sparse {pattern}", run_clone("--sparse", pattern, nginx.url(tiny.name), str(dest)), dest
    )


def test_unknown_branch(tiny: Published, nginx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dest = tmp_path / "c"
    check_failure("--branch nope", run_clone("-b", "nope", nginx.url(tiny.name), str(dest)), dest)


def test_existing_non_empty_dir(tiny: Published, nginx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dest = tmp_path / "c"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    before = snapshot(dest)
    check_failure(
        "existing non-empty directory", run_clone(nginx.url(tiny.name), str(dest)), dest, before
    )


def test_destination_is_a_file(tiny: Published, nginx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dest = tmp_path / "c"
    dest.write_text("a file")
    before = snapshot(dest)
    check_failure("destination is a file", run_clone(nginx.url(tiny.name), str(dest)), dest, before)


def test_unwritable_destination_parent_is_file(tiny: Published, nginx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Running as root defeats permission bits, so a file where a directory is expected
    stands in for an unwritable place (ENOTDIR)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    dest = blocker / "c"
    check_failure(
        "parent of destination is a file", run_clone(nginx.url(tiny.name), str(dest)), dest
    )
    assert blocker.read_text() == "x"


def test_unwritable_destination_proc(tiny: Published, nginx) -> None:  # type: ignore[no-untyped-def]
    """/proc refuses new directories even to root (a real read-only place)."""
    dest = Path("/proc/lazygit-test-clone")
    check_failure("destination under /proc", run_clone(nginx.url(tiny.name), str(dest)), dest)


@pytest.mark.parametrize("where", ["checkout", "index-pack"])
def test_full_destination(  # type: ignore[no-untyped-def]
    where: str, small: Published, large: Published, nginx, tmp_path: Path
) -> None:
    """A small tmpfs (mounted as root) fills up during the clone: ENOSPC, one line naming the
    cause and the fix.  1 MiB fills while SMALL's working tree is written; 2 MiB while
    index-pack writes LARGE's commits and trees (once reported as "git index-pack rejected the
    data", and then read from the server a second time, as damaged data is)."""
    mnt = tmp_path / "tiny-fs"
    mnt.mkdir()
    size, repo, args = ("1m", small, []) if where == "checkout" else ("2m", large, ["-n"])
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    assert mount.returncode == 0, f"cannot mount a tmpfs here: {mount.stderr}"
    try:
        dest = mnt / "c"
        nginx.clear_log()
        line = check_failure(
            f"full disk ({size} tmpfs, {where})",
            run_clone(*args, nginx.url(repo.name), str(dest)),
            dest,
        )
        assert "no space left" in line.lower() and "free some space" in line, line
        assert "rejected" not in line, line
        assert list(mnt.iterdir()) == []
        # Nothing is read twice (damaged data is read once more; a full disk is not).
        ranges = [
            f"{e.path} {part}"
            for e in nginx.log_entries()
            if e.method == "GET" and e.path.endswith(".pack")
            for part in (e.range or "whole").removeprefix("bytes=").split(",")
        ]
        assert len(ranges) == len(set(ranges)), ranges
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_index_pack_on_a_full_disk_blames_the_disk(small: Published, tmp_path: Path) -> None:
    """index-pack failing for lack of space is the disk, not the data: DestinationError
    naming the repository and the fix (not CorruptDataError, which makes a clone or a batch
    read everything from the server once more)."""
    from lazygit.errors import CorruptDataError, DestinationError
    from lazygit.localrepo import LocalRepo

    mnt = tmp_path / "half-mib"
    mnt.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    assert mount.returncode == 0, f"cannot mount a tmpfs here: {mount.stderr}"
    try:
        repo = LocalRepo.init(mnt / "r")
        pack = max((small.info.path / "objects" / "pack").glob("pack-*.pack"), key=os.path.getsize)
        assert pack.stat().st_size > 1 << 20

        def write(out):  # type: ignore[no-untyped-def]
            with pack.open("rb") as f:
                shutil.copyfileobj(f, out)

        with pytest.raises(DestinationError) as caught:
            repo.index_pack(write, promisor="lazygit")
        assert not isinstance(caught.value, CorruptDataError)
        assert str(caught.value).startswith(f"cannot write to {repo.git_dir}: ")
        assert "No space left on device" in str(caught.value)
        assert str(caught.value).endswith("(free some space)")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


#: Where a clone can stall, each read by other threads than the one Ctrl-C reaches.
STALLS = {
    "a pack read": Rule("stall", path=r"\.pack$", methods=("GET",), stall=60),
    "the discovery files": Rule("stall", path=r"/objects/info/packs$", stall=60),
    "the .idx files": Rule("stall", path=r"\.idx$", stall=60),
    "the walk over loose objects": Rule(
        "stall", path=r"/objects/[0-9a-f]{2}/[0-9a-f]{38}$", stall=60
    ),
}


@pytest.mark.parametrize("where", list(STALLS))
def test_interrupted(fresh_proxy: FaultProxy, small: Published, tmp_path: Path, where: str) -> None:
    """SIGINT while a read stalls: 'interrupted', exit 130 at once, nothing half-made.

    No thread stuck in a read may hold the process (a ThreadPoolExecutor's does, until
    lazygit.readTimeout)."""
    rule = STALLS[where]
    fresh_proxy.add(Rule(rule.fault, path=rule.path, methods=rule.methods, stall=rule.stall))
    dest = tmp_path / "c"
    proc = subprocess.Popen(
        ["lazygit", "clone", "-q", fresh_proxy.url(small.name), str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env(), "GIT_CONFIG_VALUE_3": "60"},
    )
    deadline = time.monotonic() + 60
    while not fresh_proxy.fired["stall"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fresh_proxy.fired["stall"], f"the clone never reached {where}"
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    _out, err = proc.communicate(timeout=60)
    took = time.monotonic() - started
    print(f"interrupted during {where}: exited {took:.2f} s after SIGINT")
    assert took < 10, f"the clone took {took:.0f} s"
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert proc.returncode == 130 and len(lines) == 1 and "interrupted" in lines[0], err
    assert "Traceback" not in err
    # Nothing half-made: either no destination, or one the same command completes (resume).
    fresh_proxy.reset()
    if dest.exists():
        again = run_clone(fresh_proxy.url(small.name), str(dest))
        assert again.returncode == 0, again.stderr
        fsck = subprocess.run(
            ["git", "-C", str(dest), "fsck"],
            capture_output=True,
            env={**env(), "GIT_NO_LAZY_FETCH": "1"},
        )
        assert fsck.returncode == 0
        outcome = f"exit 130: {lines[0]}; the same command resumed it"
    else:
        outcome = f"exit 130: {lines[0]}; destination removed"
    if where == "a pack read":
        OUTCOMES["SIGINT during transfer"] = outcome


def test_git_fetch_depth_is_ignored_with_a_line_saying_so(
    tiny: Published, nginx, tmp_path: Path, daemons: list[Path]
) -> None:  # type: ignore[no-untyped-def]
    """git goes on without a word when a remote helper answers `unsupported` to
    `option depth`: `git fetch --depth=1` fetched everything and said nothing."""
    dest = tmp_path / "c"
    assert run_clone("--no-checkout", nginx.url(tiny.name), str(dest)).returncode == 0
    daemons.append(dest / ".git")
    for args in (["--depth=1"], ["--shallow-since=2001-01-01", "--deepen=2"]):
        proc = subprocess.run(
            ["git", "-C", str(dest), "fetch", *args], capture_output=True, text=True, env=env()
        )
        assert proc.returncode == 0, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if "are ignored" in ln]
        assert lines == [
            "lazygit: --depth, --shallow-since and --shallow-exclude are ignored: a lazy clone "
            "holds every commit and tree, and fetches blobs when needed"
        ], proc.stderr
    shallow = subprocess.run(
        ["git", "-C", str(dest), "rev-parse", "--is-shallow-repository"],
        capture_output=True,
        text=True,
    )
    assert shallow.stdout.strip() == "false"
