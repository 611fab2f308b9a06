"""The profiles' flat attribute columns, each JSON document parsed once (cdp.snapshots.export).

Each flat column holds the DuckDB compiler's JSON read of one attribute
(cdp.engine.sql.analytic.flat_items: ``CAST(json_extract_string(attributes, '/key') AS T)``).
Evaluated as written, every column parses the whole document again: 23 columns of the Luma schema
took ~80 µs a profile, the better part of an export. Here the reads share one parse —
``json_extract_string(attributes, ['/k1', '/k2', …])`` gives every key's text at once, the same
function on the same pointers — and each column is its expression with its read replaced by its
element of that list. As analytic.write_flat: a column whose read does not succeed on every row
(data stored before the schema changed) is left out, so a query reads that attribute through
JSON and stops (or not) exactly as it would have.
"""

from __future__ import annotations

import re
from pathlib import Path

from cdp.engine.sql.analytic import flat_items, write_readable_columns
from cdp.schema import Schema

_READ = re.compile(r"json_extract_string\(attributes, ('(?:[^']|'')*')\)")
_PARSED = "__cdp_json"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def shared_reads(items: list[tuple[str, str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """(pointers, items over the parsed list): each expression holding exactly one JSON read of
    ``attributes`` gets it as ``__cdp_json[i]``; any other stays as it is (its own read)."""
    pointers: list[str] = []
    rewritten = []
    for column, expression in items:
        found = _READ.findall(expression)
        if len(found) != 1:
            rewritten.append((column, expression))
            continue
        pointers.append(found[0])
        rewritten.append((column, _READ.sub(lambda _m: f"{_PARSED}[{len(pointers)}]", expression)))
    return pointers, rewritten


def write_profiles(raw: Path, target: Path, schema: Schema) -> None:
    """``raw`` (the profiles as read) → ``target`` with the flat attribute columns, in row order."""
    import duckdb

    pointers, items = shared_reads(flat_items(schema))
    source = "read_parquet('" + str(raw).replace("'", "''") + "')"
    if pointers:
        source = (f"(SELECT *, json_extract_string(attributes, [{', '.join(pointers)}]) AS {_PARSED} "
                  f"FROM {source})")
    destination = "'" + str(target).replace("'", "''") + "'"

    def statement(chosen: list[tuple[str, str]]) -> str:
        return ("SELECT * EXCLUDE (" + _PARSED + ")" if pointers else "SELECT *") + "".join(
            f", {expression} AS {_quoted(column)}" for column, expression in chosen) + f" FROM {source}"

    connection = duckdb.connect(":memory:")
    try:
        connection.execute("SET TimeZone = 'UTC'")  # as the session that reads it (a datetime cast)
        write_readable_columns(connection, source, items, statement,
                               lambda select: connection.execute(f"COPY ({select}) TO {destination} (FORMAT parquet)"))
    finally:
        connection.close()
