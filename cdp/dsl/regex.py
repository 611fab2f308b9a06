"""Regular expressions are RE2's (DSL.md §5): linear time, no catastrophic backtracking."""

from __future__ import annotations

from functools import lru_cache

import re2


@lru_cache(maxsize=1024)
def compile_regex(pattern: str):
    """A compiled RE2 pattern; ValueError with RE2's message when the pattern is invalid."""
    try:
        return re2.compile(pattern)
    except re2.error as exc:
        message = exc.args[0] if exc.args else str(exc)
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        raise ValueError(str(message)) from None
