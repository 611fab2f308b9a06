"""Spark over Parquet snapshots (`--engine spark`): a batch run on Spark writes exactly what the
database batch job writes (members, counts, statuses, outbox), a snapshot of several parts reads
as DuckDB reads it (merged on read), and what Spark's dialect translates (regular expressions,
LIKE patterns) or refuses. One Spark (local[2]) for the whole test run: the session-scoped
``spark_session`` fixture of tests/conftest.py, which fails instead of skipping where Spark is
required (CI=true or CDP_REQUIRE_SPARK=1)."""

from __future__ import annotations

import re

import pytest
import re2
import sqlalchemy as sa

from cdp.engine.sql.spark_regex import like_for_spark, re2_to_java
from cdp.engine.support import UnsupportedOnBackend
from cdp.storage.database import create_engine
from cdp.storage.migrate import upgrade
from tests.test_segments_batch import AS_OF, DOCUMENTS, SANDBOXES
from tests.test_snapshots import analytic_run_equals_the_database_run, relation, two_part_snapshot


@pytest.fixture(scope="module")
def sqlite_engine(sqlite_url_factory):
    engine = create_engine(sqlite_url_factory())
    upgrade(engine)
    yield engine
    engine.dispose()


def test_spark_run_writes_what_the_database_run_writes(sqlite_engine, spark_session, tmp_path):
    """Conformance cases saved as active segments (one of them referencing another): Spark over
    the snapshot writes the same members, counts and outbox as the database; a second run turns
    realized into existing on both."""
    analytic_run_equals_the_database_run(sqlite_engine, tmp_path, "spark", every=12)  # every few sections


# The columns Spark reads. DuckDB's relation also has the typed attribute columns ("a.<key>") its
# compiler reads instead of the JSON; Spark's dialect reads the JSON.
COLUMNS = {"profiles": "pk, sandbox, external_id, attributes", "events": "profile_pk, event_id, type, ts, fields"}


def spark_relation(session, manifest, which: str) -> list[tuple]:
    session.from_snapshot(manifest)
    order = "pk" if which == "profiles" else "profile_pk, event_id"
    rows = session.spark.sql(f"SELECT {COLUMNS[which]} FROM {which} ORDER BY {order}").collect()
    return [tuple(row) for row in rows]


def test_a_snapshot_of_several_parts_reads_as_on_duckdb(sqlite_engine, spark_session, tmp_path):
    """Changes, a new event and a deletion in a second part: Spark merges on read as DuckDB does."""
    sandbox = next(SANDBOXES)
    manifest = two_part_snapshot(sqlite_engine, sandbox, tmp_path)
    expected_profiles = relation(manifest, "profiles")
    expected_events = relation(manifest, "events")
    width = {which: len(COLUMNS[which].split(", ")) for which in COLUMNS}
    assert spark_relation(spark_session, manifest, "profiles") == [tuple(r)[:width["profiles"]] for r in expected_profiles]
    assert spark_relation(spark_session, manifest, "events") == [tuple(r)[:width["events"]] for r in expected_events]
    assert "c04" not in {p[2] for p in expected_profiles}


EVENT_FIELD_SEGMENTS = ['exists event where type = "purchase" and product.category = "kids"',
                        'sum(event.order.total where type = "purchase") > 50',
                        'count(event where product.price >= 10) < 2']


def test_spark_reads_the_typed_event_columns_every_events_file_has(sqlite_engine, spark_session, tmp_path):
    """Over a snapshot of two parts, Spark reads the `f.<key>` columns (the compiled SQL names them,
    not get_json_object of `fields`) and answers as DuckDB does; a column one events file lacks
    (written before the schema had it, or its read failed there) is read through the JSON, as on
    DuckDB: Spark, given one file's schema, would read it as null in the other file."""
    import pyarrow.parquet

    from cdp.engine.sql.analytic import DuckDBSession, members_query
    from cdp.snapshots.export import relations_sql

    sandbox = next(SANDBOXES)
    manifest = two_part_snapshot(sqlite_engine, sandbox, tmp_path)
    files = sorted(manifest.folder.rglob("events/**/*.parquet"))
    assert len(files) >= 2
    table = pyarrow.parquet.read_table(files[0])  # one file without product.category's column
    pyarrow.parquet.write_table(table.drop_columns(["f.product.category"]), files[0])
    spark_session.from_snapshot(manifest)
    assert "order.total" in spark_session.flat_events and "product.category" not in spark_session.flat_events
    duck = DuckDBSession().from_sql(*relations_sql(manifest))
    try:
        assert set(duck.flat_events) == set(spark_session.flat_events)
        for text in EVENT_FIELD_SEGMENTS:
            sql, _ = spark_session.rendered(members_query(text, engine="spark", as_of=AS_OF, sandbox=sandbox,
                                                          flat_events=spark_session.flat_events))
            assert ("`f.product.category`" in sql) is False and ("`f.order.total`" in sql) == ("order" in text)
            assert spark_session.members(text, as_of=AS_OF, sandbox=sandbox) == \
                duck.members(text, as_of=AS_OF, sandbox=sandbox), text
    finally:
        duck.close()


ATTRIBUTE_SEGMENTS = ['loyalty.tier = "gold" and loyalty.points > 100',
                      'home_address.country = "US" or month(person.birth_date) = 3',
                      'email_opt_in and lifetime_value > 10']


def test_spark_reads_the_typed_attribute_columns_every_profiles_file_has(sqlite_engine, spark_session, tmp_path):
    """Over a snapshot of two parts, Spark reads the `a.<key>` attribute columns (the compiled SQL
    names them, not get_json_object of `attributes`) and answers as DuckDB does; a column one
    profiles file lacks is read through the JSON, as on DuckDB."""
    import pyarrow.parquet

    from cdp.engine.sql.analytic import DuckDBSession, members_query
    from cdp.snapshots.export import relations_sql

    sandbox = next(SANDBOXES)
    manifest = two_part_snapshot(sqlite_engine, sandbox, tmp_path)
    files = sorted(manifest.folder.rglob("profiles.parquet"))
    assert len(files) >= 2
    table = pyarrow.parquet.read_table(files[0])  # one file without loyalty.points' column
    pyarrow.parquet.write_table(table.drop_columns(["a.loyalty.points"]), files[0])
    spark_session.from_snapshot(manifest)
    assert "loyalty.tier" in spark_session.flat and "loyalty.points" not in spark_session.flat
    duck = DuckDBSession().from_sql(*relations_sql(manifest))
    try:
        # Spark's flat has the list attributes' columns too, which DuckDB does not read
        assert set(duck.flat) == {key for key, type_ in spark_session.flat.items() if type_ != "list"}
        for text in ATTRIBUTE_SEGMENTS:
            sql, _ = spark_session.rendered(members_query(text, engine="spark", as_of=AS_OF, sandbox=sandbox,
                                                          flat=spark_session.flat))
            assert "`a.loyalty.points`" not in sql and ("`a.loyalty.tier`" in sql) == ("tier" in text)
            assert ("get_json_object" in sql) == ("points" in text), sql
            assert spark_session.members(text, as_of=AS_OF, sandbox=sandbox) == \
                duck.members(text, as_of=AS_OF, sandbox=sandbox), text
    finally:
        duck.close()


LIST_SEGMENTS = ['interests has any ["running", "yoga"]', 'interests has all ["running", "hiking"]',
                 'not (interests has "cycling")', 'size(interests) = 2', 'interests is null', 'interests has any []']


def test_spark_reads_a_list_attribute_from_its_typed_column(sqlite_engine, spark_session, tmp_path):
    """A list attribute has a column of its own in the snapshot (`a.interests`: its elements as
    text, cdp.engine.sql.analytic.list_items): Spark reads it, not get_json_object + from_json of
    the whole `attributes` document per profile per test, and answers as DuckDB (reading the
    JSON) does — null lists, null elements, empty lists and duplicates included (the
    conformance profiles have each)."""
    from cdp.engine.sql.analytic import DuckDBSession, members_query
    from cdp.snapshots.export import relations_sql

    sandbox = next(SANDBOXES)
    manifest = two_part_snapshot(sqlite_engine, sandbox, tmp_path)
    spark_session.from_snapshot(manifest)
    assert spark_session.flat.get("interests") == "list"
    duck = DuckDBSession().from_sql(*relations_sql(manifest))
    try:
        assert "interests" not in duck.flat  # DuckDB reads the JSON
        queries = spark_session.queries(LIST_SEGMENTS, as_of=AS_OF, sandbox=sandbox)
        sql, _ = spark_session.rendered(sa.union_all(*queries))
        assert sql.count("`a.interests`") >= len(LIST_SEGMENTS), sql
        assert "get_json_object" not in sql and "from_json" not in sql, sql
        assert spark_session.members_many(queries) == duck.members_many(duck.queries(LIST_SEGMENTS, as_of=AS_OF,
                                                                                      sandbox=sandbox))
    finally:
        duck.close()


CART_ABANDONERS = """loyalty.tier is not null
and (exists event where type = "addToCart" and product.category != profile.preferred_category
     within last 7 days)
and (exists event as cart where type = "addToCart" within last 7 days
     then no event where type = "purchase" within 1 day)"""


def test_a_sequence_of_the_events_alone_is_joined_before_the_attribute_reading_term(spark_session):
    """The cart abandoners' plan is the hand-written query's (bench/bench_spark.py): the carts
    without a purchase (a LEFT ANTI join of events to events) are semi-joined to the profiles
    first, by pk alone, and only the profiles left meet the join that tests each (profile, event)
    pair's JSON. In the order written, that join ran over every profile with a tier: 1.5×."""
    from cdp.engine.sql.analytic import document_tables, members_query

    spark_session.from_tables(*document_tables(DOCUMENTS[:4], sandbox="plan"))
    text, parameters = spark_session.rendered(members_query(CART_ABANDONERS, engine="spark", as_of=AS_OF,
                                                            sandbox="plan"))
    plan = spark_session.spark.sql(text, args=parameters)._jdf.queryExecution().optimizedPlan().toString()
    semi_joins = [line for line in plan.splitlines() if "Join LeftSemi" in line]
    assert len(semi_joins) == 2 and "Join LeftAnti" in plan, plan
    outer, inner = semi_joins  # the plan prints the last join applied first
    assert "get_json_object" in outer and "get_json_object" not in inner, plan


# ---- what the dialect translates or refuses (no Spark needed) ----------------------------------

@pytest.mark.parametrize("pattern, subject", [
    (r"^a.c$", "a\rc"), (r"^a.c$", "a\nc"), (r"abc$", "abc\n"), (r"\bé", "xé"), (r"\s", "\x0b"),
    (r"[[]", "["), (r"[a&&b]", "&"), (r"a{,2}", "a{,2}"), (r"(?i)straße", "STRASSE"), (r"(?i)é", "É"),
    (r"[]a]", "]"), (r"\d+", "١٢"), (r"x\vy", "x\x0by"), (r"a{2}", "aa"),
])
def test_translated_patterns_search_as_re2_does(pattern, subject):
    """Java's dialect of the translation, checked with Python's `re` where it agrees with Java on
    these constructs (classes, anchors, look-arounds; `(?u)` is Python's default): the same
    answer as RE2 itself."""
    translated = re2_to_java(pattern).replace("(?iu)", "(?i)").replace("\\z", "\\Z")
    assert bool(re.search(translated, subject, re.ASCII if "(?i)" not in translated else 0)) == \
        bool(re2.search(pattern, subject)), translated


@pytest.mark.parametrize("pattern", [r"(?s).", r"(?P<n>a)", r"\pL", r"\Qa\E", r"[[:alpha:]]", r"\C", r"a(?i)b"])
def test_untranslatable_patterns_are_refused(pattern):
    with pytest.raises(UnsupportedOnBackend) as info:
        re2_to_java(pattern)
    assert info.value.backend == "spark"


@pytest.mark.parametrize("pattern, spark", [(r"a\%b", "a!%b"), (r"a\_b", "a!_b"), ("a!b", "a!!b"),
                                            (r"a\\b", "a\\b"), (r"\a", "a"), ("50%", "50%")])
def test_like_patterns_take_bang_as_the_escape(pattern, spark):
    assert like_for_spark(pattern) == spark


def test_a_spark_evaluation_through_the_command_line_module(spark_session):
    """`cdp evaluate --backend spark`'s path (evaluate_documents) on a session given to it."""
    from cdp.engine.sql.analytic import evaluate_documents

    result = evaluate_documents("spark", DOCUMENTS[:6], {"opt-in": "email_opt_in", "none": "1 = 2"},
                                as_of=AS_OF, session=spark_session)
    assert result["none"] == []
    assert result["opt-in"] == [d["id"] for d in DOCUMENTS[:6] if d.get("attributes", {}).get("email_opt_in") is True]
