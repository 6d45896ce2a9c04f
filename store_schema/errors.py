"""The one exception type for a user's mistake; the CLI prints its message and exits 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a bad setting. The message names the file or shard and says what to do."""
