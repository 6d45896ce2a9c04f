"""`user_errors`: a UserError raised anywhere below the CLI becomes one red line and exit 2."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from stages.progress import console
from store_schema.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])


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

    return wrapper  # type: ignore[return-value]
