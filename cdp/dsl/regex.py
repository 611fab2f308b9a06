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


def like_to_regex(pattern: str) -> str:
    """A SQL `like` pattern as an anchored RE2 regex: `%` any run, `_` one character, `\\` escapes."""
    out = ["(?s)\\A"]
    escaped = False
    for ch in pattern:
        if escaped:
            out.append(_re2_escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(_re2_escape(ch))
    out.append("\\z")
    return "".join(out)


def _re2_escape(ch: str) -> str:
    return "\\" + ch if ch in r".^$*+?()[]{}|\-/" else ch
