"""The event counter's insert trigger, for an insert into ONE profile (a single-record request):
the profile locked by the count's own UPDATE, and the statement's keys summed up by one query.

Why: 0020's trigger ran five statements for a one-event insert — the profiles wanted (an array
query), the profile locked ``FOR NO KEY UPDATE``, the datasets wanted (another array query), the
dataset locked ``FOR KEY SHARE``, the count's UPDATE of the profile locked just before (with a
``count(*)`` of the new rows) — measured, with the touch it rides with, at ~250 µs of PostgreSQL's
time a single-record request (bench/RESULTS.md, session 15). The UPDATE takes the same row lock
the PERFORM took (``FOR NO KEY UPDATE``) and its row count says whether the profile exists, so for
one profile: one query over the new rows (lowest and highest profile and dataset, the row count),
the UPDATE (a missing profile: 0 rows, ``foreign_key_violation`` as before), the dataset's lock.
Lock order as before: the profile, then the dataset. Several profiles (or none) keep 0020's
statements, unchanged.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 19:00:00
"""

from alembic import op

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None

_PROFILE_MISSING = ("RAISE foreign_key_violation USING MESSAGE = 'an event''s profile_pk is not a profile', "
                    "TABLE = 'events', COLUMN = 'profile_pk'")
_DATASET_MISSING = ("RAISE foreign_key_violation USING MESSAGE = 'an event''s dataset_pk is not a dataset', "
                    "TABLE = 'events', COLUMN = 'dataset_pk'")

# 0020's body of cdp_event_count_insert (copied from it as it is): the downgrade, and the path of several
# profiles below
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

# one profile: one query over the new rows, the count's UPDATE (which locks the row), the dataset(s)
_PG_0024 = f"""
    SELECT min(profile_pk), max(profile_pk), count(*), min(dataset_pk), max(dataset_pk)
        INTO low, high, total, set_low, set_high FROM new_rows;
    IF low = high THEN
        UPDATE profiles SET event_count = event_count + total WHERE pk = low;
        GET DIAGNOSTICS found = ROW_COUNT;
        IF found <> 1 THEN
            {_PROFILE_MISSING};
        END IF;
        IF set_low = set_high THEN
            PERFORM 1 FROM datasets WHERE pk = set_low FOR KEY SHARE;
            GET DIAGNOSTICS found = ROW_COUNT;  -- (the variable found hides PL/pgSQL's FOUND)
            IF found <> 1 THEN
                {_DATASET_MISSING};
            END IF;
        ELSIF set_low IS NOT NULL THEN{_SETS.replace(chr(10) + "    ", chr(10) + "        ")}{_DATASETS_MANY}
            GET DIAGNOSTICS found = ROW_COUNT;
            IF found <> cardinality(sets) THEN
                {_DATASET_MISSING};
            END IF;
        END IF;
        RETURN NULL;
    END IF;""" + _PG_0020


def _insert_function(body: str, declare: str = "") -> None:
    op.execute("CREATE OR REPLACE FUNCTION cdp_event_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$\n"
               f"DECLARE wanted bigint[]; sets bigint[]; found bigint;{declare}\n"
               f"BEGIN{body}\n    RETURN NULL;\nEND $$")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _insert_function(_PG_0024, " low bigint; high bigint; total bigint; set_low bigint; set_high bigint;")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _insert_function(_PG_0020)
