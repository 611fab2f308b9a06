"""RE2 patterns on PostgreSQL: a documented mapping to PostgreSQL's ARE, or a clear rejection.

The walk is cdp.engine.sql.regex_translation's (its table lists what every dialect does alike);
here are only the entries in which PostgreSQL's advanced regular expressions differ:

| RE2 | PostgreSQL ARE | why |
|---|---|---|
| `\\A`, `\\z`, `$` | `^`, `$`, `$` (outside multi-line mode they are the same) | |
| `\\x41`, `\\x{1F600}` | `\\u0041`, `\\U0001F600` | ARE's `\\x` takes every hex digit that follows; ARE has no `\\x{…}` |
| `(?i)` at the very start | not passed on: each cased character a class of its RE2 orbit (`s` → `[Ssſ]`, `[a-z]` → `[A-Za-zſK]`, `\\w` likewise) | PostgreSQL folds by the locale one pair at a time: `ſ` does not match its `(?i)s` (cdp.engine.sql.regex_case_folding) |
| `\\a`, `\\v`, a repetition count above 255 | refused | 255 is PostgreSQL's bound |
"""

from __future__ import annotations

from cdp.dsl.errors import Span
from cdp.engine.sql.regex_translation import RegexTranslation
from cdp.engine.support import UnsupportedOnBackend  # noqa: F401  (its home is support)


class PostgresRegex(RegexTranslation):
    backend = "postgresql"
    target = "PostgreSQL"
    run_instead = "DuckDB, SQLite or in memory"
    assertions = {**RegexTranslation.assertions, "A": "^", "z": "$"}
    most_repetitions = 255  # PostgreSQL's DUPMAX; RE2 allows 1,000
    spells_out_case_folding = True

    def code_point(self, written: str, code: int) -> str:
        """ARE's `\\x` takes every hex digit that follows (`\\x41B` is one character) and has no
        `\\x{…}`; `\\u` and `\\U` take exactly four and eight."""
        return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def re2_to_postgres(pattern: str, span: Span | None = None) -> str:
    return PostgresRegex(pattern, span).translated()
