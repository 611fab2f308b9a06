"""The snapshot's flat columns, each JSON document parsed once (cdp.snapshots.export): the
profiles' typed attribute columns and the events' typed event-field columns.

Each flat column holds the DuckDB compiler's JSON read of one attribute
(cdp.engine.sql.analytic.flat_items: ``CAST(json_extract_string(attributes, '/key') AS T)``), or
of one event field (``… fields …``). Evaluated as written, every column parses the whole document
again: 23 columns of the Luma schema took ~80 µs a profile, the better part of an export. Here the
reads share one parse — ``json_extract_string(attributes, ['/k1', '/k2', …])`` gives every key's
text at once, the same function on the same pointers — and each column is its expression with its
read replaced by its element of that list. As analytic.write_flat: a column whose read does not
succeed on every row (data stored before the schema changed) is left out, so a query reads that
attribute (field) through JSON and stops (or not) exactly as it would have.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from cdp.engine.sql.analytic import flat_items, list_items, write_readable_columns
from cdp.schema import Schema

_PARSED = "__cdp_json"


def _read_pattern(document: str) -> re.Pattern:
    return re.compile(r"json_extract_string\(" + document + r", ('(?:[^']|'')*')\)")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def shared_reads(items: list[tuple[str, str]],
                 document: str = "attributes") -> tuple[list[str], list[tuple[str, str]]]:
    """(pointers, items over the parsed list): each expression holding exactly one JSON read of
    ``document`` gets it as ``__cdp_json[i]``; any other stays as it is (its own read)."""
    read = _read_pattern(document)
    pointers: list[str] = []
    rewritten = []
    for column, expression in items:
        found = read.findall(expression)
        if len(found) != 1:
            rewritten.append((column, expression))
            continue
        pointers.append(found[0])
        rewritten.append((column, read.sub(lambda _m: f"{_PARSED}[{len(pointers)}]", expression)))
    return pointers, rewritten


def _parsed_source(source: str, document: str, pointers: list[str]) -> str:
    """``source`` with the one shared parse of ``document`` as a column (when anything reads it)."""
    if not pointers:
        return source
    return f"(SELECT *, json_extract_string({document}, [{', '.join(pointers)}]) AS {_PARSED} FROM {source})"


def _statement(source: str, pointers: list[str]) -> Callable[[list[tuple[str, str]]], str]:
    def statement(chosen: list[tuple[str, str]]) -> str:
        return ("SELECT * EXCLUDE (" + _PARSED + ")" if pointers else "SELECT *") + "".join(
            f", {expression} AS {_quoted(column)}" for column, expression in chosen) + f" FROM {source}"

    return statement


def _parquet(path: Path) -> str:
    return "read_parquet('" + str(path).replace("'", "''") + "')"


def _connection():
    import duckdb

    connection = duckdb.connect(":memory:")
    connection.execute("SET TimeZone = 'UTC'")  # as the session that reads it (a datetime cast)
    return connection


def write_profiles(raw: Path, target: Path, schema: Schema) -> None:
    """``raw`` (the profiles as read) → ``target`` with the flat attribute columns, in row order."""
    pointers, items = shared_reads(flat_items(schema) + list_items(schema))
    source = _parsed_source(_parquet(raw), "attributes", pointers)
    destination = "'" + str(target).replace("'", "''") + "'"
    connection = _connection()
    try:
        write_readable_columns(connection, source, items, _statement(source, pointers),
                               lambda select: connection.execute(f"COPY ({select}) TO {destination} (FORMAT parquet)"))
    finally:
        connection.close()


def write_events(raw: Path, target: Path, schema: Schema, row_group: int) -> None:
    """``raw`` (one bucket's events as read) → ``target`` with the flat event-field columns, in
    row order, in row groups of ``row_group`` rows (DuckDB computes, pyarrow writes: the row
    groups a reader skips by ``profile_pk`` stay the export's)."""
    import duckdb
    import pyarrow
    import pyarrow.parquet

    pointers, items = shared_reads(flat_items(schema, event_fields=True), "fields")
    source = _parsed_source(_parquet(raw), "fields", pointers)
    connection = _connection()

    def batches(select: str):
        """The rows as Arrow batches; a read that fails (a cast) stops as DuckDB's error, which
        write_readable_columns answers — inside the stream it reaches us as Arrow's."""
        reader = connection.sql(select).to_arrow_reader(row_group)
        yield reader.schema
        while True:
            try:
                yield reader.read_next_batch()
            except StopIteration:
                return
            except (OSError, pyarrow.ArrowException) as error:
                raise duckdb.ConversionException(str(error)) from error

    def write(select: str) -> None:
        stream = batches(select)
        pending, rows = [], 0
        with pyarrow.parquet.ParquetWriter(target, next(stream)) as writer:
            for batch in stream:
                pending.append(batch)
                rows += batch.num_rows
                if rows >= row_group:
                    writer.write_table(pyarrow.Table.from_batches(pending), row_group_size=row_group)
                    pending, rows = [], 0
            if pending:
                writer.write_table(pyarrow.Table.from_batches(pending), row_group_size=row_group)

    try:
        write_readable_columns(connection, source, items, _statement(source, pointers), write)
    finally:
        connection.close()
