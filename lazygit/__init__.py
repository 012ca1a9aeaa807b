"""lazygit: cheap clones of huge git repositories from plain static HTTP hosting.

Importing this package stays light on purpose: the remote helper and the read-object
hook import it on every batch git asks for, so nothing here may pull in httpx, dulwich,
rich or typer.  The heavy modules are imported by the commands that need them.
"""

__version__ = "0.1.0"

from lazygit.errors import LazyGitError

__all__ = ["LazyGitError", "__version__"]
