"""cdp/identity/listed.py: a list sent as ONE parameter selects exactly the rows whose value is
in the list — on SQLite (JSON text) and PostgreSQL (an array literal built here) — whatever the
values hold (quotes, backslashes, braces, commas, spaces, non-ASCII, the empty string)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)
from cdp.identity import listed

# what an array literal reads specially, often; and any text
texts = st.one_of(st.text(alphabet='"\\{},; aNUL\'é\t', max_size=6),
                  st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12))


@pytest.fixture
def connection(migrated_engine):
    with migrated_engine.connect() as connection:
        connection.exec_driver_sql("CREATE TEMPORARY TABLE listed_probe (pk bigint, v varchar)")
        yield connection
        connection.rollback()


def _fill(connection: sa.Connection, values: list[str]) -> None:
    connection.exec_driver_sql("DELETE FROM listed_probe")
    if values:
        connection.execute(sa.text("INSERT INTO listed_probe (pk, v) VALUES (:pk, :v)"),
                           [{"pk": pk, "v": v} for pk, v in enumerate(values)])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=st.lists(texts, max_size=8, unique=True), asked=st.lists(texts, max_size=8))
def test_text_lists_select_exactly_their_values(connection, stored, asked):
    _fill(connection, stored)
    found = listed.run(connection, "SELECT v FROM listed_probe WHERE v {list}",
                       listed.Many(asked, "varchar")).scalars().all()
    assert sorted(found) == sorted(set(stored) & set(asked))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=st.lists(texts, min_size=1, max_size=6, unique=True),
       keys=st.lists(st.integers(-2**63, 2**63 - 1), max_size=8))
def test_key_lists_and_other_parameters_keep_their_order(connection, stored, keys):
    _fill(connection, stored)
    wanted = keys + [0]  # the first stored row's key, among any others
    found = listed.run(connection, "SELECT pk FROM listed_probe WHERE v = ? AND pk {list} AND v {list}",
                       stored[0], listed.keys(wanted), listed.Many(stored, "varchar")).scalars().all()
    assert found == [0]


def test_an_empty_list_selects_nothing(connection):
    _fill(connection, ["a"])
    assert listed.run(connection, "SELECT v FROM listed_probe WHERE pk {list}", listed.keys([])).all() == []


def test_array_literal_escapes_what_postgresql_reads_specially():
    assert listed.array_literal([1, -2]) == "{1,-2}"
    assert listed.array_literal(['a"b', "c\\d", "{e,f}", ""]) == '{"a\\"b","c\\\\d","{e,f}",""}'
