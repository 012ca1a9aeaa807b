"""The command line (typer): parse, call, print.  Nothing else lives here."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from lazygit.errors import LazyGitError
from lazygit.progress import counted
from lazygit.progress import human_size as _size

# click already says "Did you mean ...?" for a mistyped command; typer would say it twice.
app = typer.Typer(
    add_completion=False,
    suggest_commands=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Cheap clones of huge git repositories from plain static HTTP hosting.",
)
hooks_app = typer.Typer(no_args_is_help=True, suggest_commands=False, help="Install git hooks.")
app.add_typer(hooks_app, name="hooks")

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


def _print_version(wanted: bool) -> None:
    if wanted:
        version()
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Cheap clones of huge git repositories from plain static HTTP hosting."""


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        typer.echo(message, err=True)


@app.command()
def clone(
    url: Annotated[str, typer.Argument(help="http(s) URL of a bare repository (lazy:: optional)")],
    directory: Annotated[Path | None, typer.Argument(help="Where to clone to.")] = None,
    branch: Annotated[
        str | None, typer.Option("--branch", "-b", help="Branch to check out.")
    ] = None,
    no_checkout: Annotated[
        bool, typer.Option("--no-checkout", "-n", help="No working tree files.")
    ] = False,
    sparse: Annotated[
        list[str] | None,
        typer.Option("--sparse", help="Cone-mode sparse checkout of this directory (repeatable)."),
    ] = None,
    sparse_top: Annotated[
        bool, typer.Option("--sparse-top", help="Sparse checkout of the top-level files only.")
    ] = False,
    read_object_hook: Annotated[
        bool, typer.Option("--read-object-hook", help="Also install the read-object hook.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Clone lazily: commits and trees now, blobs when git needs them."""
    from lazygit.clone import CloneOptions
    from lazygit.clone import clone as do_clone
    from lazygit.progress import Progress

    cone = list(sparse) if sparse else ([] if sparse_top else None)
    opts = CloneOptions(
        url, directory, branch, no_checkout, cone, read_object_hook=read_object_hook
    )
    # A Ctrl-C once the clone is complete (its marker gone) has nothing left to stop: it
    # must not report "interrupted" over a finished DIR.
    done = []
    try:
        with Progress(quiet) as progress:
            done.append(do_clone(opts, progress=progress))
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        if not done:
            raise
    result = done[0]
    _say(
        quiet,
        f"Cloned into {result.dest} in {result.seconds:.1f} s: {result.metadata.objects} commits/"
        f"trees/tags and {counted(result.blobs.objects, 'blob')}, {_size(result.bytes_read)} "
        f"read from the server in "
        f"{counted(result.metadata.requests + result.blobs.requests, 'request')}.",
    )


@app.command()
def serve(
    directory: Annotated[Path, typer.Argument(help="Folder holding bare repositories.")],
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port on 127.0.0.1.")] = 8080,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    quiet: Quiet = False,
) -> None:
    """Publish the bare repositories under DIRECTORY over HTTP (ranges, multi-ranges)."""
    from lazygit.server import serve as do_serve

    if not directory.is_dir():
        raise LazyGitError(f"{directory} is not a directory")
    do_serve(directory, host, port, quiet)


@app.command()
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="Keep the demo files here (default: a temp dir)."),
    ] = None,
    size: Annotated[str, typer.Option("--size", help="tiny, small or large.")] = "small",
    quiet: Quiet = False,
) -> None:
    """Make a sample repository, serve it with `lazygit serve`, lazy-clone it, report savings."""
    from lazygit.demo import run_demo

    for line in run_demo(workdir, size, quiet):
        typer.echo(line)


@hooks_app.command("install")
def hooks_install(
    repo: Annotated[Path, typer.Argument(help="The lazy clone.")] = Path("."),
) -> None:
    """Install the microsoft/git read-object hook into a lazy clone."""
    from lazygit.hooks import install_read_object_hook
    from lazygit.localrepo import LocalRepo

    path = install_read_object_hook(LocalRepo.find(repo).ensure_lazy_clone())
    typer.echo(f"installed {path}")


@app.command()
def version() -> None:
    """Print lazygit's version."""
    from lazygit import __version__

    typer.echo(f"lazygit {__version__}")


@app.command()
def prepare(
    directory: Annotated[Path, typer.Argument(help="The bare repository on the server.")],
    check: Annotated[
        bool, typer.Option("--check", help="Only report; exit 1 when not ready. No changes.")
    ] = False,
    aggressive: Annotated[
        bool,
        typer.Option("--aggressive", help="Recompute deltas (repack -f): fewer ranges."),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False,
) -> None:
    """Make a bare repository cheap to lazy-clone (one pack, bitmap, server info); report."""
    import json

    from lazygit.prepare import analyze, summary_lines
    from lazygit.prepare import prepare as do_prepare

    if check:
        report = analyze(directory)
        if json_out:
            typer.echo(json.dumps(report.to_json(), indent=1))
        else:
            for line in summary_lines(report):
                typer.echo(line)
        if not report.ready:
            from lazygit.prepare import NotReadyError

            raise NotReadyError(directory)
        return
    result = do_prepare(
        directory, aggressive=aggressive, on_command=None if json_out else typer.echo
    )
    if json_out:
        doc = {
            "commands": result.commands,
            "before": result.before.to_json(),
            "after": result.after.to_json(),
        }
        typer.echo(json.dumps(doc, indent=1))
        return
    b, a = result.before, result.after
    typer.echo(
        f"before: {len(b.packs)} pack(s), {sum(p.ranges for p in b.packs):,} ranges, "
        f"{_size(b.clone_bytes)} for a lazy clone, {b.loose_objects:,} loose objects"
    )
    for line in summary_lines(a):
        typer.echo(line)


@app.command()
def doctor(
    url: Annotated[
        str | None, typer.Argument(help="Check this server instead of the current clone's.")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Also verify every object of the local packs.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False,
    do_repair: Annotated[
        bool,
        typer.Option("--repair", help="Move damaged local packs aside and fetch them again."),
    ] = False,
) -> None:
    """Check git, git-remote-lazy, the daemon, the server and the local packs; name fixes."""
    import json

    from lazygit.doctor import doctor as do_doctor

    if do_repair:
        from lazygit.doctor import find_clone, repair

        clone = find_clone()
        if clone is None:
            raise LazyGitError("not inside a lazy clone", "run `lazygit doctor --repair` in one")
        for line in repair(clone, full=full) or ["no damaged local pack"]:
            typer.echo(f"repaired: {line}" if line != "no damaged local pack" else line)

    def show(c: object) -> None:
        from lazygit.doctor import DoctorReport

        for line in DoctorReport([c]).lines():  # type: ignore[list-item]
            typer.echo(line)

    report = do_doctor(url, full=full, on_check=None if json_out else show)
    if json_out:
        typer.echo(json.dumps(report.to_json(), indent=1))
    if report.failed:
        from lazygit.doctor import DoctorFailedError

        raise DoctorFailedError(report)


@app.command()
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False,
) -> None:
    """How much of HEAD is local, what was read from the server, the daemon's counters."""
    import json

    from lazygit.doctor import status as do_status

    report = do_status(".")
    if json_out:
        typer.echo(json.dumps(report.to_json(), indent=1))
        return
    for line in report.lines():
        typer.echo(line)


sparse_app = typer.Typer(
    no_args_is_help=True, suggest_commands=False, help="Cone-mode sparse checkout, hydrated first."
)
app.add_typer(sparse_app, name="sparse")


def _sparse_summary(quiet: bool, result: object, what: str) -> None:
    from lazygit.sparsecmd import describe

    _say(quiet, describe(result.hydrate, what))  # type: ignore[attr-defined]


@sparse_app.command("set")
def sparse_set_cmd(
    dirs: Annotated[
        list[str], typer.Argument(help="Directories of the cone (relative to the current one).")
    ],
    quiet: Quiet = False,
) -> None:
    """Set the cone: fetch its files in one batch, then update the working tree.

    Directories are relative to the current one, as with git sparse-checkout."""
    from lazygit.localrepo import LocalRepo
    from lazygit.progress import Progress
    from lazygit.sparsecmd import sparse_set

    with Progress(quiet) as progress:
        result = sparse_set(LocalRepo.find("."), dirs, progress=progress)
    _sparse_summary(quiet, result, "sparse set")


@sparse_app.command("add")
def sparse_add_cmd(
    dirs: Annotated[
        list[str], typer.Argument(help="Directories to add (relative to the current one).")
    ],
    quiet: Quiet = False,
) -> None:
    """Widen the cone: fetch the new files in one batch, then update the working tree.

    Directories are relative to the current one, as with git sparse-checkout."""
    from lazygit.localrepo import LocalRepo
    from lazygit.progress import Progress
    from lazygit.sparsecmd import sparse_set

    with Progress(quiet) as progress:
        result = sparse_set(LocalRepo.find("."), dirs, add=True, progress=progress)
    _sparse_summary(quiet, result, "sparse add")


@sparse_app.command("list")
def sparse_list_cmd() -> None:
    """Print the cone's directories."""
    from lazygit.localrepo import LocalRepo
    from lazygit.sparsecmd import cone_dirs

    dirs = cone_dirs(LocalRepo.find("."))
    if dirs is None:
        typer.echo("sparse checkout is off", err=True)
        return
    for d in dirs:
        typer.echo(d)


@sparse_app.command("disable")
def sparse_disable_cmd(quiet: Quiet = False) -> None:
    """Check out every file: fetch them in one batch first."""
    from lazygit.localrepo import LocalRepo
    from lazygit.progress import Progress
    from lazygit.sparsecmd import sparse_disable

    with Progress(quiet) as progress:
        result = sparse_disable(LocalRepo.find("."), progress=progress)
    _sparse_summary(quiet, result, "sparse disable")


@app.command()
def offline(
    state: Annotated[str | None, typer.Argument(help="on or off (none: show the state).")] = None,
) -> None:
    """Stop (on) or resume (off) fetching: missing objects then fail at once."""
    from lazygit.localrepo import LocalRepo
    from lazygit.sparsecmd import is_offline, set_offline

    repo = LocalRepo.find(".")
    if state is not None:
        if state not in ("on", "off"):
            raise LazyGitError(f"unknown state {state!r}", "use lazygit offline on|off")
        set_offline(repo, state == "on")
    typer.echo(f"lazygit is {'offline' if is_offline(repo) else 'online'}")


@app.command(context_settings={"allow_interspersed_args": True})
def prefetch(
    words: Annotated[
        list[str] | None,
        typer.Argument(
            help="Revisions (default HEAD), then a pathspec to limit them (relative to the "
            "current directory, as in git; :/ for the top)."
        ),
    ] = None,
    history: Annotated[
        list[str] | None,
        typer.Option("--history", help="Every version of these paths (repeatable)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only versions from commits newer than this.")
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Hydrate blobs ahead of time: trees of revisions, or the history of paths.

    Arguments are git's: revisions, then paths relative to the current directory (:/ top)."""
    from lazygit.localrepo import LocalRepo
    from lazygit.progress import Progress
    from lazygit.sparsecmd import describe
    from lazygit.sparsecmd import prefetch as do_prefetch

    with Progress(quiet) as progress:
        result = do_prefetch(
            LocalRepo.find("."), words or [], history=history or [], since=since, progress=progress
        )
    _say(quiet, describe(result, "prefetch"))


def main(argv: list[str] | None = None) -> int:
    """Entry point: expected failures are one line on stderr and a non-zero exit."""
    try:
        # Not standalone, typer turns Ctrl-C (and typer.Exit) into a returned exit code.
        code = app(args=argv, prog_name="lazygit", standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool) and code:
            if code == 130:
                print("lazygit: interrupted", file=sys.stderr)
            return code
    except LazyGitError as exc:
        print(f"lazygit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lazygit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except typer.Abort:
        print("lazygit: aborted", file=sys.stderr)
        return 1
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
