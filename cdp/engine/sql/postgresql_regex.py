"""RE2 patterns on PostgreSQL: a documented mapping to PostgreSQL's ARE, or a clear rejection.

The walk is cdp.engine.sql.regex_translation's (its table lists what every dialect does alike);
here are only the entries in which PostgreSQL's advanced regular expressions differ:

| RE2 | PostgreSQL ARE | why |
|---|---|---|
| `\\A`, `\\z`, `$` | `^`, `$`, `$` (outside multi-line mode they are the same) | |
| `\\b`, `\\B` | `\\y`, `\\Y` | ARE spells word boundaries differently (RE2 and ARE both use ASCII word characters here) |
| `(?i)` at the very start | the same | |
| `\\a`, `\\v` | refused | |
"""

from __future__ import annotations

from cdp.dsl.errors import Span
from cdp.engine.sql.regex_translation import RegexTranslation
from cdp.engine.support import UnsupportedOnBackend  # noqa: F401  (its home is support)


class PostgresRegex(RegexTranslation):
    backend = "postgresql"
    target = "PostgreSQL"
    run_instead = "SQLite or in memory"
    assertions = {"A": "^", "z": "$", "b": "\\y", "B": "\\Y"}


def re2_to_postgres(pattern: str, span: Span | None = None) -> str:
    return PostgresRegex(pattern, span).translated()
