"""`user_errors`: a UserError raised anywhere below the CLI becomes one red line and exit 2; so does an OSError
that the user's paths or the machine cause (a name too long, no space, no permission), naming the file."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from stages.progress import console
from store_schema.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])

# what a user's path or the machine causes, never the program: the name and the reason are all there is to say
USERS_OS_ERRORS = {
    errno.ENAMETOOLONG, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
    errno.EISDIR, errno.ELOOP, errno.EMFILE,
}  # fmt: skip


def user_errors(fn: F) -> F:
    """A UserError becomes one red line and exit code 2, never a traceback."""
    import typer
    from rich.markup import escape

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)  # [brackets] stay text
            raise typer.Exit(2) from None
        except OSError as e:
            if e.errno not in USERS_OS_ERRORS:
                raise
            where = e.filename if len(str(e.filename)) <= 200 else f"{str(e.filename)[:200]}…"
            console.print(f"[bold red]error:[/] {escape(f'{where}: {e.strerror}')}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]
