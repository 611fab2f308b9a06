"""The SQL backend: generated SQL snapshots per dialect, injection attempts, RE2 on PostgreSQL,
migrations against the models."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cdp.engine import sql
from cdp.engine.sql.postgresql_regex import UnsupportedOnBackend, re2_to_postgres
from cdp.schema import Schema
from cdp.storage.database import create_engine
from cdp.engine.sql.loading import load_documents
from cdp.storage.migrate import current_revision, head_revision, upgrade
from cdp.storage.models import metadata
from tests.snapshots import assert_snapshot

AS_OF = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
SNAPSHOTS = Path(__file__).parent / "snapshots" / "sql"
DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}

TYPICAL_SEGMENTS = {
    "attributes": 'loyalty.tier in ["silver", "gold"] and home_address.country = "US" and loyalty.points > 500',
    "between": 'home_address.country = "US" and loyalty.points between 500 and 5000',
    "count_window": 'count(event where type = "purchase" within last 90 days) >= 3',
    "sum_this_year": 'sum(event.order.total where type = "purchase" within this year) > 1000',
    "birthday_month": "month(person.birth_date) = month(today()) and email_opt_in",
    "email_patterns": 'lower(email) ends with "@example.com" or email matches "^[^@]+@luma\\\\.com$"',
    "interests_not_segment": 'interests has any ["running", "yoga"] and not in segment "churn-risk"',
    "last_category": 'last(event.product.category where type = "purchase") != preferred_category',
    "days_since_last": 'days_since(last(event.timestamp where type = "purchase")) > 180',
    "funnel": ('exists event where type = "productView" within last 1 day '
               'then event where type = "addToCart" within 1 hour '
               'then no event where type = "purchase" within 1 day'),
    "gift_givers": (Path(__file__).resolve().parents[1] / "examples" / "gift_giving_cart_abandoners.pql").read_text(),
    "null_logic": 'not (home_address.country != "US") or loyalty.tier not in ["gold"]',
}
CATALOGUE = {"churn-risk": "days_since(last(event.timestamp)) > 90"}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("name", sorted(TYPICAL_SEGMENTS))
def test_generated_sql_snapshot(name, dialect, snapshot_update):
    query = sql.members_query(TYPICAL_SEGMENTS[name], dialect=dialect, as_of=AS_OF, segments=CATALOGUE)
    text = str(query.compile(dialect=DIALECTS[dialect])).strip() + "\n"
    assert_snapshot(SNAPSHOTS / f"{name}.{dialect}.sql", text, update=snapshot_update)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, sqlite_url_factory):
    url = sqlite_url_factory() if request.param == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    engine = create_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


HOSTILE = "x'); DROP TABLE profiles; --"


def test_injection_through_literals_names_and_regexes(database):
    schema = Schema.from_dict({"profile": {"email": "string", 'we"ird\'name': "string"}, "event": {}})
    documents = [
        {"id": "p1", "attributes": {"email": HOSTILE, 'we"ird\'name': HOSTILE}},
        {"id": "p2", "attributes": {"email": "ok@example.com"}},
    ]
    with database.begin() as connection:
        load_documents(connection, documents, schema=schema)
    expressions = [
        f'email = "{HOSTILE}"',
        f'`we"ird\'name` = "{HOSTILE}"',
        'email matches "^x.\\\\); DROP"',
        f'email like "%DROP TABLE%" and email in ["{HOSTILE}", "\\"; --"]',
    ]
    for expression in expressions:
        query = sql.members_query(expression, dialect=database.dialect.name, as_of=AS_OF, schema=schema)
        assert "DROP" not in str(query.compile(dialect=database.dialect))  # values travel as parameters
        with database.connect() as connection:
            assert sql.evaluate(connection, expression, as_of=AS_OF, schema=schema) == ["p1"], expression
    with database.connect() as connection:
        assert connection.execute(sa.text("select count(*) from profiles")).scalar() == 2


@pytest.mark.parametrize("pattern, translated", [
    ("^[^@]+@luma\\.com$", "^[^@]+@luma\\.com$"),
    ("a.b", "a[^\\n]b"),
    ("\\d+-\\w*\\s", "[0-9]+-[0-9A-Za-z_]*[\\t\\n\\f\\r ]"),
    ("[\\d.]", "[0-9.]"),
    ("\\Afoo\\z", "^foo$"),
    ("(?i)abc", "[Aa][Bb][Cc]"),  # RE2's case folding spelled out (cdp.engine.sql.regex_case_folding)
    ("\\Bx\\b", "(?:(?<=[0-9A-Za-z_])(?=[0-9A-Za-z_])|(?<![0-9A-Za-z_])(?![0-9A-Za-z_]))x"
                 "(?:(?<=[0-9A-Za-z_])(?![0-9A-Za-z_])|(?<![0-9A-Za-z_])(?=[0-9A-Za-z_]))"),
    ("(?:ab)+|c{2,3}?", "(?:ab)+|c{2,3}?"),
])
def test_re2_to_postgres_mapping(pattern, translated):
    assert re2_to_postgres(pattern) == translated


@pytest.mark.parametrize("pattern", ["\\pL", "(?s).", "a(?i)b", "(?P<x>a)", "[[:alpha:]]", "\\Qa.b\\E", "\\C"])
def test_re2_features_without_an_exact_postgres_equivalent_are_refused(pattern):
    with pytest.raises(UnsupportedOnBackend, match="no exact PostgreSQL equivalent"):
        re2_to_postgres(pattern)


def test_translated_patterns_agree_with_re2_on_postgres(postgres_url_factory):
    from cdp.dsl.regex import compile_regex

    engine = create_engine(postgres_url_factory())
    samples = ["a\nb", "axb", "sarah@luma.com", "x@lumaXcom", "12-ab ", "Ünïcode 7", "word", "swordfish", "ABC", "abc"]
    patterns = ["a.b", "^[^@]+@luma\\.com$", "\\d+-\\w*\\s", "\\bword\\b", "(?i)abc", "[^a]", "^\\w+$", "\\d"]
    with engine.connect() as connection:
        for pattern in patterns:
            for sample in samples:
                in_postgres = connection.execute(sa.select(sa.literal(sample).op("~")(re2_to_postgres(pattern)))).scalar()
                assert in_postgres == (compile_regex(pattern).search(sample) is not None), (pattern, sample)
    engine.dispose()


def test_migrations_build_exactly_the_models(database):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    assert current_revision(database) == head_revision()
    with database.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata)
    assert differences == []


def test_unsupported_is_a_clear_answer():
    with pytest.raises(UnsupportedOnBackend, match="PostgreSQL equivalent"):
        sql.members_query('email matches "\\\\pL"', dialect="postgresql", as_of=AS_OF)
    with pytest.raises(UnsupportedOnBackend, match="arithmetic chain"):
        sql.members_query(" + ".join(["loyalty.points"] * 1000) + " > 1", dialect="sqlite", as_of=AS_OF)
