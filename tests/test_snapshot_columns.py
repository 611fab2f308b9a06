"""The columnar snapshot export (cdp.snapshots.columns, cdp.snapshots.flat), on SQLite and
PostgreSQL: the events as the database holds them, one sorted file per bucket; chunk boundaries
change nothing; timestamps and documents converted a column at a time as the column types would
convert them one by one; the flat attribute columns from one JSON parse equal analytic.write_flat's."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow
import pyarrow.parquet
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.engine.sql.analytic import document_tables, write_flat
from cdp.engine.sql.loading import load_documents
from cdp.schema import luma_schema
from cdp.snapshots import columns, export_snapshot, flat
from cdp.snapshots.export import relations_sql
from cdp.storage.models import events, profiles
from tests.test_segments_batch import DOCUMENTS, SANDBOXES
from tests.test_snapshots import relation


def test_events_are_the_databases_one_sorted_file_per_bucket(migrated_engine, tmp_path):
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        manifest = export_snapshot(connection, sandbox=sandbox, root=tmp_path)
        stored = connection.execute(
            sa.select(events.c.profile_pk, events.c.event_id, events.c.type, events.c.ts, events.c.fields)
            .join(profiles, profiles.c.pk == events.c.profile_pk).where(profiles.c.sandbox == sandbox)).all()
    expected = sorted((pk, event_id, type_, ts.astimezone(timezone.utc).replace(tzinfo=None), fields)
                      for pk, event_id, type_, ts, fields in stored)
    merged = sorted((pk, event_id, type_, ts, json.loads(fields)) for pk, event_id, type_, ts, fields, *_flat
                    in relation(manifest, "events"))
    assert merged == expected and manifest.parts[0].events == len(expected) > 0
    files = sorted((tmp_path / sandbox / "part-00000" / "events").rglob("*.parquet"))
    owners: dict[int, str] = {}
    for path in files:
        assert len(list(path.parent.glob("*.parquet"))) == 1  # one file per bucket
        bucket = int(path.parent.name.removeprefix("bucket="))
        table = pyarrow.parquet.read_table(path)
        order = list(zip(table.column("profile_pk").to_pylist(), table.column("ts").to_pylist(),
                         table.column("event_id").to_pylist()))
        assert order == sorted(order)  # by profile, then time
        for pk in set(table.column("profile_pk").to_pylist()):
            assert pk % columns.BUCKETS == bucket and owners.setdefault(pk, str(path)) == str(path)


def test_chunk_boundaries_change_nothing(migrated_engine, tmp_path, monkeypatch):
    """Chunks of 7 rows and row groups of 5 (every boundary inside a profile's events) give the
    relations one big chunk gives; an incremental part after them too."""
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        whole = export_snapshot(connection, sandbox=sandbox, root=tmp_path / "whole")
        monkeypatch.setattr(columns, "CHUNK", 7)
        monkeypatch.setattr(columns, "ROW_GROUP", 5)
        small = export_snapshot(connection, sandbox=sandbox, root=tmp_path / "small")
        assert max(pyarrow.parquet.ParquetFile(path).metadata.num_row_groups
                   for path in (tmp_path / "small").rglob("events.parquet")) > 1
        connection.execute(profiles.update().where(profiles.c.sandbox == sandbox, profiles.c.external_id == "c05")
                           .values(attributes={"loyalty.tier": "gold"},
                                   updated_at=datetime.now(timezone.utc) + timedelta(seconds=5)))
        incremental = export_snapshot(connection, sandbox=sandbox, root=tmp_path / "small")
    for which in ("profiles", "events"):
        assert relation(small, which) == relation(whole, which)
    assert incremental.parts[-1].profiles == 1 and not incremental.parts[-1].full
    assert any(row[2] == "c05" and json.loads(row[3]) == {"loyalty.tier": "gold"}
               for row in relation(incremental, "profiles"))


def test_timestamps_convert_a_column_as_the_column_type_converts_each():
    plus_two = timezone(timedelta(hours=2))
    cases = [
        (["2026-11-28 12:00:00.000001", "2026-01-01 00:00:00"],  # SQLite's stored text
         [datetime(2026, 11, 28, 12, 0, 0, 1), datetime(2026, 1, 1)]),
        ([datetime(2026, 11, 28, 14, tzinfo=plus_two), datetime(2026, 11, 28, 12, tzinfo=timezone.utc)],
         [datetime(2026, 11, 28, 12), datetime(2026, 11, 28, 12)]),  # a driver's aware datetimes
        (["2026-11-28T14:00:00+02:00"], [datetime(2026, 11, 28, 12)]),  # text with an offset: per value
        ([], []),
    ]
    for values, expected in cases:
        converted = columns.timestamps(values)
        assert converted.type == pyarrow.timestamp("us") and converted.to_pylist() == expected, values


def test_documents_are_the_text_stored_or_encoded_again():
    assert columns.document_texts(['{"a": 1}', "{}"]).to_pylist() == ['{"a": 1}', "{}"]
    assert [json.loads(t) for t in columns.document_texts([{"a": 1}, '{"b": 2}']).to_pylist()] == [{"a": 1}, {"b": 2}]


def test_shared_reads_replace_each_expressions_one_read():
    pointers, items = flat.shared_reads([("a.x", "CAST(json_extract_string(attributes, '/x') AS BIGINT)"),
                                         ("a.o'k", "json_extract_string(attributes, '/o''k')"),
                                         ("other", "json_extract_string(fields, '/y')")])
    assert pointers == ["'/x'", "'/o''k'"]
    assert items == [("a.x", "CAST(__cdp_json[1] AS BIGINT)"), ("a.o'k", "__cdp_json[2]"),
                     ("other", "json_extract_string(fields, '/y')")]


def document_values(word: str) -> st.SearchStrategy:
    """Values of any JSON type for a document's keys, some that cast to the schema's types and
    some that do not (``word``: a text the schema's enums or categories know)."""
    return st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                     st.text(max_size=8), st.sampled_from(["2026-11-28", "2026-11-28 12:00:00", word, "1e3", "12", "infinity", "-Infinity", "epoch"]),
                     st.lists(st.integers(), max_size=2))


def assert_same_values(ours, theirs) -> None:
    """The two tables' columns hold the same values, compared as Arrow arrays: DuckDB reads the
    strings `infinity` and `-infinity` as a date or timestamp beyond Python's range (both writers
    alike), which to_pylist cannot convert."""
    different = [name for name in ours.column_names
                 if not ours.column(name).combine_chunks().equals(theirs.column(name).combine_chunks())]
    assert not different, (different, ours.select(different).to_string(), theirs.select(different).to_string())


_VALUES = document_values("gold")
_KEYS = st.sampled_from(sorted(luma_schema().profile))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(_KEYS, _VALUES, max_size=6), min_size=1, max_size=6))
def test_one_parse_gives_the_columns_of_a_parse_per_column(tmp_path, attributes):
    """Random attribute documents (values of any type under the schema's keys, some that do not
    cast): the columns written from one parse are analytic.write_flat's (the list attribute
    columns included), the same columns left out, the same values."""
    profiles_table, _events = document_tables([{"id": f"x{i}"} for i in range(len(attributes))], sandbox="s")
    raw = profiles_table.set_column(3, "attributes", pyarrow.array([json.dumps(a) for a in attributes]))
    source = tmp_path / "raw.parquet"
    pyarrow.parquet.write_table(raw, source)
    ours, theirs = tmp_path / "ours.parquet", tmp_path / "theirs.parquet"
    flat.write_profiles(source, ours, luma_schema())
    connection = duckdb.connect(":memory:")
    try:
        connection.execute("SET TimeZone = 'UTC'")
        write_flat(connection, f"read_parquet('{source}')", luma_schema(), lambda select: connection.execute(
            f"COPY ({select}) TO '{theirs}' (FORMAT parquet)"), lists=True)
    finally:
        connection.close()
    ours_table, theirs_table = pyarrow.parquet.read_table(ours), pyarrow.parquet.read_table(theirs)
    # names, types and values (DuckDB marks a column NOT NULL or not by its statistics)
    assert [(f.name, f.type) for f in ours_table.schema] == [(f.name, f.type) for f in theirs_table.schema]
    assert_same_values(ours_table, theirs_table)


def test_the_merged_relations_read_the_bucket_files(migrated_engine, tmp_path):
    """DuckDB's relations over a snapshot written by the columnar export: the events view has
    no column the export does not write (bucket comes from the folder), and every flat one."""
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        manifest = export_snapshot(connection, sandbox=sandbox, root=tmp_path)
    _profiles_sql, events_sql = relations_sql(manifest)
    connection = duckdb.connect(":memory:")
    try:
        names = [d[0] for d in connection.execute(events_sql + " LIMIT 0").description]
    finally:
        connection.close()
    # and the schema's scalar event fields, typed (cdp.snapshots.flat.write_events)
    assert names == ["profile_pk", "event_id", "type", "ts", "fields"] + sorted(f"f.{k}" for k in luma_schema().event)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
