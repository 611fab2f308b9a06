"""Typed event-field columns (``"f.<key>"``) in snapshots and DuckDB's reads of them, on SQLite and
PostgreSQL: the export writes each scalar event field as the DuckDB compiler's JSON read of
``fields``, from one parse per row (cdp.snapshots.flat.write_events); a column whose read fails on
some row is left out of that file and of the relation, so a query reads the JSON and fails exactly
as before; a part without the columns (written before them) leaves every part's reads to the JSON;
the compiler reads a column only where the events relation has it with the field's type."""

from __future__ import annotations

import json

import duckdb
import pyarrow
import pyarrow.parquet
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.engine.sql import evaluate
from cdp.engine.sql.analytic import (DuckDBDialect, DuckDBSession, document_tables, flat_items, members_query,
                                     rendered, write_flat)
from cdp.engine.sql.duckdb import EVENT_PREFIX
from cdp.engine.sql.loading import load_documents
from cdp.schema import luma_schema
from cdp.snapshots import export_snapshot, flat
from cdp.snapshots.export import relations_sql
from cdp.storage.models import events, profiles
from tests.test_segments_batch import AS_OF, DOCUMENTS, SANDBOXES
from tests.test_snapshot_columns import assert_same_values, document_values
from tests.test_snapshots import two_part_snapshot

# segments reading event fields of every type the columns have (string, number, integer) and the
# shapes the compiler makes of them: exists, sums, a sequence comparing to its alias's field
EVENT_SEGMENTS = [
    'exists event where product.category = "gear" and product.sku != "G-1"',
    'sum(event.order.total where type = "purchase") > 50',
    'sum(event.product.quantity where type = "purchase") >= 1',
    'exists event as cart where type = "addToCart" within last 7 days\n'
    '  then no event where type = "purchase" and product.sku = cart.product.sku within 1 day',
    'exists event where channel = "email" or campaign.id = "BF-2026"',
]
SCALAR_FIELDS = sorted(k for k, t in luma_schema().event.items() if not t.is_list)


def snapshot_session(manifest) -> DuckDBSession:
    return DuckDBSession().from_sql(*relations_sql(manifest))


def answers(session: DuckDBSession, sandbox: str) -> list[list[str]]:
    return [[i for _pk, i in session.members(text, as_of=AS_OF, sandbox=sandbox)] for text in EVENT_SEGMENTS]


def database_answers(engine, sandbox: str) -> list[list[str]]:
    with engine.connect() as connection:
        return [evaluate(connection, text, as_of=AS_OF, sandbox=sandbox) for text in EVENT_SEGMENTS]


def test_event_columns_hold_the_json_reads(migrated_engine, tmp_path):
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        manifest = export_snapshot(connection, sandbox=sandbox, root=tmp_path)
    session = snapshot_session(manifest)
    try:
        assert sorted(session.flat_events) == SCALAR_FIELDS
        assert session.flat_events == {k: t.name for k, t in luma_schema().event.items() if not t.is_list}
        for column, expression in flat_items(luma_schema(), event_fields=True):
            differ, read = session.connection.execute(
                f'SELECT count(*) FILTER (WHERE "{column}" IS DISTINCT FROM {expression}), '
                f'count("{column}") FROM events').fetchone()
            assert differ == 0, column
        assert session.connection.execute('SELECT count("f.product.category") FROM events').fetchone()[0] > 0
        expected = database_answers(migrated_engine, sandbox)
        assert all(expected)  # every segment has members: the columns' values decide something
        assert answers(session, sandbox) == expected
    finally:
        session.close()


def test_the_compiled_query_reads_a_column_only_where_the_relation_has_it():
    text = 'exists event where product.category = "shoes" and order.total > 1'
    with_columns = members_query(text, engine="duckdb", as_of=AS_OF, sandbox="s",
                                 flat_events={"product.category": "string", "order.total": "integer"})
    sql, _parameters = rendered(with_columns, DuckDBDialect())
    assert '."f.product.category"' in sql and "'/product.category'" not in sql
    # a column of another type than the field's (a schema changed since) is not read
    assert '"f.order.total"' not in sql and "'/order.total'" in sql
    sql, _parameters = rendered(members_query(text, engine="duckdb", as_of=AS_OF, sandbox="s"), DuckDBDialect())
    assert '"f.' not in sql


def test_an_and_puts_the_semi_joins_first_on_duckdb():
    """The cart abandoners: the `p.pk IN (…)` of the cart-then-no-purchase term is planned before
    the EXISTS reading the profile's attributes (DuckDB plans conjuncts in the order written);
    the answers stay the conformance's (tests/conformance runs every case on DuckDB)."""
    text = ('loyalty.tier is not null and (exists event where type = "addToCart" and product.category != '
            'profile.preferred_category) and (exists event as cart where type = "addToCart" '
            'then no event where type = "purchase" within 1 day)')
    sql, _parameters = rendered(members_query(text, engine="duckdb", as_of=AS_OF, sandbox="s"), DuckDBDialect())
    assert -1 < sql.index("p.pk IN (SELECT") < sql.index("EXISTS (SELECT 1")
    assert sql.index("p.pk IN (SELECT") < sql.index("'/loyalty.tier'")


def test_a_column_that_does_not_read_on_some_row_is_left_out(migrated_engine, tmp_path):
    """One event's ``product.price`` stored as text that does not cast (data from before a schema
    change): its bucket's file has no ``f.product.price`` — the others do — so the relation has
    none, a query reading it stops as the JSON read stops, the other fields stay columns."""
    sandbox = next(SANDBOXES)
    with migrated_engine.begin() as connection:
        load_documents(connection, DOCUMENTS, sandbox=sandbox)
        first = connection.execute(sa.select(events.c.pk).join(profiles, profiles.c.pk == events.c.profile_pk)
                                   .where(profiles.c.sandbox == sandbox).order_by(events.c.pk).limit(1)).scalar_one()
        connection.execute(events.update().where(events.c.pk == first).values(fields={"product.price": "cheap"}))
        manifest = export_snapshot(connection, sandbox=sandbox, root=tmp_path)
    files = sorted((tmp_path / sandbox / "part-00000" / "events").rglob("*.parquet"))
    has_price = ["f.product.price" in pyarrow.parquet.read_schema(f).names for f in files]
    assert has_price.count(False) == 1 and len(files) > 1 and any(has_price)
    session = snapshot_session(manifest)
    try:
        assert "product.price" not in session.flat_events and "product.category" in session.flat_events
        with pytest.raises(duckdb.Error):
            session.members("exists event where product.price > 1", as_of=AS_OF, sandbox=sandbox)
        assert answers(session, sandbox) == database_answers(migrated_engine, sandbox)
    finally:
        session.close()


def strip_event_columns(part_folder) -> None:
    """A part's events as a snapshot written before event columns holds them."""
    for path in part_folder.rglob("events.parquet"):
        table = pyarrow.parquet.read_table(path)
        pyarrow.parquet.write_table(table.select([n for n in table.column_names
                                                  if not n.startswith(EVENT_PREFIX)]), path)


def test_a_part_without_event_columns_leaves_the_reads_to_the_json(migrated_engine, tmp_path):
    """Two parts merged on read: with event columns in both they are read; with the first part's
    stripped (written before them), none is, and the answers are the database's either way."""
    sandbox = next(SANDBOXES)
    manifest = two_part_snapshot(migrated_engine, sandbox, tmp_path)
    expected = database_answers(migrated_engine, sandbox)
    session = snapshot_session(manifest)
    try:
        assert sorted(session.flat_events) == SCALAR_FIELDS
        assert answers(session, sandbox) == expected
    finally:
        session.close()
    strip_event_columns(tmp_path / sandbox / "part-00000")
    _profiles_sql, events_sql = relations_sql(manifest)
    assert "union_by_name = true" in events_sql.split(" e JOIN ")[0]
    session = snapshot_session(manifest)
    try:
        assert session.flat_events == {} and session.flat  # the attributes' columns are still read
        assert answers(session, sandbox) == expected
    finally:
        session.close()


_VALUES = document_values("shoes")
_KEYS = st.sampled_from(sorted(luma_schema().event))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(_KEYS, _VALUES, max_size=6), min_size=1, max_size=6))
def test_one_parse_gives_the_event_columns_of_a_parse_per_column(tmp_path, fields):
    """Random event documents (values of any type under the schema's keys, some that do not
    cast): the columns written from one parse are write_flat's, the same columns left out, the
    same values, the rows in order, in row groups of the size asked."""
    _profiles, events_table = document_tables(
        [{"id": "x", "events": [{"id": f"e{i}", "type": "pageView", "timestamp": "2026-11-01T00:00:00Z"}
                                for i in range(len(fields))]}], sandbox="s")
    raw = events_table.set_column(4, "fields", pyarrow.array([json.dumps(f) for f in fields]))
    source = tmp_path / "raw.parquet"
    pyarrow.parquet.write_table(raw, source)
    ours, theirs = tmp_path / "ours.parquet", tmp_path / "theirs.parquet"
    flat.write_events(source, ours, luma_schema(), row_group=2)
    connection = duckdb.connect(":memory:")
    try:
        connection.execute("SET TimeZone = 'UTC'")
        write_flat(connection, f"read_parquet('{source}')", luma_schema(), lambda select: connection.execute(
            f"COPY ({select}) TO '{theirs}' (FORMAT parquet)"), event_fields=True)
    finally:
        connection.close()
    ours_table, theirs_table = pyarrow.parquet.read_table(ours), pyarrow.parquet.read_table(theirs)
    assert [(f.name, f.type) for f in ours_table.schema] == [(f.name, f.type) for f in theirs_table.schema]
    assert_same_values(ours_table, theirs_table)
    assert pyarrow.parquet.ParquetFile(ours).metadata.num_row_groups == (len(fields) + 1) // 2


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
