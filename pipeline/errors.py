"""The one exception type for a user's mistake: the CLI prints its message and exits 2, no traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class UserError(Exception):
    """Bad input or a bad setting. The message names the file or shard and says what to do."""


def user_errors(fn: F) -> F:
    """A UserError becomes one red line and exit code 2, never a traceback."""
    import typer
    from rich.markup import escape

    from pipeline.progress import console

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)  # [brackets] stay text
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]
