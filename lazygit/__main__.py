"""``lazygit`` and ``git lazy``: the program's entry point (``python -m lazygit`` too).

The command line interface imports typer, click and httpx (~0.15 s): Ctrl-C in that window
must end in one line, like any other interruption, not in a traceback.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from lazygit.cli import main as cli_main
    except KeyboardInterrupt:
        print("lazygit: interrupted", file=sys.stderr)
        return 130
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
