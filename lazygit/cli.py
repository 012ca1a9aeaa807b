"""The command line (typer): parse, call, print.  Nothing else lives here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lazygit.errors import LazyGitError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Cheap clones of huge git repositories from plain static HTTP hosting.",
)
hooks_app = typer.Typer(no_args_is_help=True, help="Install git hooks.")
app.add_typer(hooks_app, name="hooks")

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        typer.echo(message, err=True)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


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
    with Progress(quiet) as progress:
        result = do_clone(opts, progress=progress)
    _say(
        quiet,
        f"Cloned into {result.dest} in {result.seconds:.1f} s: {result.metadata.objects} commits/"
        f"trees/tags and {result.blobs.objects} blobs, {_size(result.bytes_read)} read from the "
        f"server in {result.metadata.requests + result.blobs.requests} requests.",
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

    path = install_read_object_hook(LocalRepo.find(repo))
    typer.echo(f"installed {path}")


@app.command()
def version() -> None:
    """Print lazygit's version."""
    from lazygit import __version__

    typer.echo(f"lazygit {__version__}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: expected failures are one line on stderr and a non-zero exit."""
    try:
        app(args=argv, prog_name="lazygit", standalone_mode=False)
    except LazyGitError as exc:
        print(f"lazygit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lazygit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except typer.Exit as exc:
        return exc.exit_code
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
