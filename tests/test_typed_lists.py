"""List tests (`has`, `has any`, `has all`) over lists of every element type a sandbox's schema may
declare — integers, numbers, booleans, dates, datetimes — give the same, hand-worked answers in
memory, on SQLite, on PostgreSQL and on DuckDB (JSON reads and typed columns).

PostgreSQL and DuckDB read a JSON list's elements as text, so each is read as its element's type;
elements and items meeting as integer and number are compared as doubles, and a list of dates
tested for a datetime takes each date as midnight UTC, as `=` does (docs/language.md, "Integers and
numbers"). The Luma schema has only `list<string>`, so the conformance suite does not reach these.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cdp.engine import compile_predicate, load_profile, sql
from cdp.engine.sql.loading import load_documents
from cdp.pqltypes import parse_type
from cdp.schema import Schema
from cdp.storage.database import create_engine
from cdp.storage.migrate import upgrade

AS_OF = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
SCHEMA = Schema(profile={"scores": parse_type("list<number>"), "counts": parse_type("list<integer>"),
                         "n": parse_type("integer"), "flags": parse_type("list<boolean>"),
                         "dates": parse_type("list<date>"), "stamps": parse_type("list<datetime>")}, event={})
BIG = 2**53 + 1  # the first integer a double cannot hold: as a double it is 2^53
DOCUMENTS = [
    {"id": "a", "attributes": {"scores": [BIG, 1.5], "counts": [BIG], "n": BIG, "flags": [True, None],
                               "dates": ["2026-01-01"], "stamps": ["2026-01-01T10:00:00Z"]}},
    {"id": "b", "attributes": {"scores": [2.0**53], "counts": [2**53], "n": 2**53, "flags": [False],
                               "dates": [], "stamps": ["2026-01-01T00:00:00Z"]}},
    {"id": "c", "attributes": {}},
]
CASES = [
    (f"scores has any [{2**53}]", ["a", "b"]),  # BIG in a list<number> is the double 2^53
    (f"scores has {2**53}", ["a", "b"]),
    (f"scores has all [{BIG}, 1.5]", ["a"]),
    (f"counts has any [{2**53}.0]", ["a", "b"]),  # an integer meeting a number: doubles
    (f"counts has all [{2**53}.0]", ["a", "b"]),
    (f"counts has {2**53}", ["b"]),  # integers with integers: exactly
    (f"counts has any [{2**53}, 7]", ["b"]),
    ("scores has n", ["a", "b"]),
    ("counts has n", ["a", "b"]),
    ("flags has true", ["a"]),
    ("flags has any [false]", ["b"]),
    ("flags has all [true, false]", []),
    ('`dates` has date("2026-01-01")', ["a"]),
    ('`dates` has any [date("2026-01-01"), date("2025-01-01")]', ["a"]),
    ('`dates` has datetime("2026-01-01T00:00:00Z")', ["a"]),  # the date as midnight UTC
    ('`dates` has datetime("2026-01-01T10:00:00Z")', []),
    ('stamps has datetime("2026-01-01T10:00:00+00:00")', ["a"]),
    ('stamps has any [datetime("2026-01-01T00:00:00Z")]', ["b"]),
    ('stamps has date("2026-01-01")', ["b"]),
    ('stamps has all [date("2026-01-01"), datetime("2026-01-01T10:00:00Z")]', []),
    ("not (counts has 5)", ["a", "b"]),  # c has no list: UNKNOWN, not selected
]


@pytest.fixture(scope="module")
def backends(sqlite_url_factory, postgres_url_factory):
    from cdp.engine.sql.analytic import DuckDBSession, document_tables

    loaded = [load_profile(d, SCHEMA) for d in DOCUMENTS]

    def memory(text):
        predicate = compile_predicate(text, schema=SCHEMA)
        return [p.id for p in loaded if predicate(p, AS_OF)]

    def database(url):
        engine = create_engine(url)
        upgrade(engine)
        with engine.begin() as connection:
            load_documents(connection, DOCUMENTS, sandbox="lists", schema=SCHEMA)
        engines.append(engine)

        def evaluate(text):
            with engine.connect() as connection:
                return sql.evaluate(connection, text, as_of=AS_OF, sandbox="lists", schema=SCHEMA)
        return evaluate

    def duckdb(flat_columns):
        session = DuckDBSession()
        sessions.append(session)
        session.from_tables(*document_tables(DOCUMENTS, sandbox="lists", schema=SCHEMA), schema=SCHEMA,
                            flat_columns=flat_columns)
        return lambda text: [e for _pk, e in session.members(text, as_of=AS_OF, sandbox="lists", schema=SCHEMA)]

    engines, sessions = [], []
    yield {"memory": memory, "sqlite": database(sqlite_url_factory()), "postgresql": database(postgres_url_factory()),
           "duckdb": duckdb(True), "duckdb_json": duckdb(False)}
    for engine in engines:
        engine.dispose()
    for session in sessions:
        session.close()


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgresql", "duckdb", "duckdb_json"])
def test_list_tests_of_every_element_type(backends, backend):
    evaluate = backends[backend]
    answers = {text: evaluate(text) for text, _ in CASES}
    assert answers == {text: expected for text, expected in CASES}


def test_list_tests_of_every_element_type_on_spark(spark_session):
    """The same cases on Spark (its arrays typed from the list's JSON text), in the Spark group."""
    from cdp.engine.sql.analytic import document_tables

    spark_session.from_tables(*document_tables(DOCUMENTS, sandbox="lists", schema=SCHEMA), schema=SCHEMA)
    answers = {text: [e for _pk, e in spark_session.members(text, as_of=AS_OF, sandbox="lists", schema=SCHEMA)]
               for text, _ in CASES}
    assert answers == {text: expected for text, expected in CASES}
