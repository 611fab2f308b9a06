"""The event counter's insert trigger (0017, 0019) finds ONE profile and ONE dataset by plain key
equality: a single-record request's insert counts into one profile, of one dataset.

Why: ingest requests run with ``plan_cache_mode = auto`` (cdp/ingestion/writer.py, session 10),
so the trigger's statements keep the plan PostgreSQL caches for them per connection. For
``WHERE pk = ANY(wanted)`` that plan is made for an array of unknown length (estimated at ten
keys): on a table with no statistics yet — a new database, before autovacuum's first ANALYZE — it
is a sequential scan of ``profiles``, twice per insert (the lock and the count), kept by the
connection while the table grows (pg_stat_user_tables during 2,000 single-record POSTs: 2
sequential scans of profiles per request, the whole table each time; bench/RESULTS.md, session
11). ``pk = wanted[1]`` is one probe of the primary key in every plan. Several profiles (a
multi-record request) keep 0019's statements; what is checked and locked, and in which order, is
the same on both paths.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 08:20:00
"""

from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

_PROFILE_MISSING = ("RAISE foreign_key_violation USING MESSAGE = 'an event''s profile_pk is not a profile', "
                    "TABLE = 'events', COLUMN = 'profile_pk'")
_DATASET_MISSING = ("RAISE foreign_key_violation USING MESSAGE = 'an event''s dataset_pk is not a dataset', "
                    "TABLE = 'events', COLUMN = 'dataset_pk'")

# 0019's body of cdp_event_count_insert, for the downgrade (and the several-profiles path below)
_WANTED = """
    wanted := ARRAY(SELECT profile_pk FROM (SELECT profile_pk, 1 AS delta FROM new_rows) AS changed
                    GROUP BY profile_pk HAVING sum(delta) <> 0 ORDER BY 1);"""
_SETS = """
    sets := ARRAY(SELECT DISTINCT dataset_pk FROM (SELECT dataset_pk FROM new_rows) AS k
                  WHERE dataset_pk IS NOT NULL ORDER BY 1);"""
_LOCK_MANY = """
    PERFORM 1 FROM profiles WHERE pk = ANY(wanted) ORDER BY pk FOR NO KEY UPDATE;"""
_DATASETS_MANY = """
        PERFORM 1 FROM datasets WHERE pk = ANY(sets) ORDER BY pk FOR KEY SHARE;"""
_COUNT_MANY = """
    UPDATE profiles SET event_count = profiles.event_count + counted.delta
    FROM (SELECT profile_pk, sum(delta) AS delta FROM (SELECT profile_pk, 1 AS delta FROM new_rows) AS changed
          GROUP BY profile_pk HAVING sum(delta) <> 0) AS counted
    WHERE profiles.pk = ANY(wanted) AND profiles.pk = counted.profile_pk;"""


def _body(lock: str, datasets: str, count: str) -> str:
    return (_WANTED + lock + f"""
    GET DIAGNOSTICS found = ROW_COUNT;
    IF found <> cardinality(wanted) THEN
        {_PROFILE_MISSING};
    END IF;""" + _SETS + f"""
    IF cardinality(sets) > 0 THEN{datasets}
        GET DIAGNOSTICS found = ROW_COUNT;
        IF found <> cardinality(sets) THEN
            {_DATASET_MISSING};
        END IF;
    END IF;""" + count)


_PG_0019 = _body(_LOCK_MANY, _DATASETS_MANY, _COUNT_MANY)
# one profile (every row of an insert counts +1 into it) / one dataset: by key; else as 0019
_PG_0020 = _body("""
    IF cardinality(wanted) = 1 THEN
        PERFORM 1 FROM profiles WHERE pk = wanted[1] FOR NO KEY UPDATE;
    ELSE""" + _LOCK_MANY.replace("\n    ", "\n        ") + """
    END IF;""", """
        IF cardinality(sets) = 1 THEN
            PERFORM 1 FROM datasets WHERE pk = sets[1] FOR KEY SHARE;
        ELSE""" + _DATASETS_MANY.replace("\n        ", "\n            ") + """
        END IF;""", """
    IF cardinality(wanted) = 1 THEN
        UPDATE profiles SET event_count = event_count + (SELECT count(*) FROM new_rows) WHERE pk = wanted[1];
    ELSE""" + _COUNT_MANY.replace("\n    ", "\n        ") + """
    END IF;""")


def _insert_function(body: str) -> None:
    op.execute("CREATE OR REPLACE FUNCTION cdp_event_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$\n"
               "DECLARE wanted bigint[]; sets bigint[]; found bigint;\n"
               f"BEGIN{body}\n    RETURN NULL;\nEND $$")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _insert_function(_PG_0020)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _insert_function(_PG_0019)
