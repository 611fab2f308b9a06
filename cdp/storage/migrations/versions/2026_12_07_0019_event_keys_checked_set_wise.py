"""Events' keys checked per statement: the two foreign keys of ``events`` (``profile_pk`` →
profiles, ON DELETE CASCADE; ``dataset_pk`` → datasets, ON DELETE SET NULL) become triggers that
do the same — and, on PostgreSQL, do it once per statement instead of once per row.

Why: PostgreSQL checks a foreign key with one query per inserted row and key (an SPI ``SELECT …
FOR KEY SHARE``): a 500-event insert ran 1,000 of them — the same dataset row 500 times — and
EXPLAIN ANALYZE put them at most of the insert's time (bench/RESULTS.md, issue 16, fourth and
sixth rounds). The event counter's statement trigger (0017) already locks every profile an insert
counts into, in key order, ``FOR NO KEY UPDATE`` (stronger than the key share a foreign key
takes); it now also checks that it found them all, and locks the statement's datasets ``FOR KEY
SHARE`` and checks them too. A missing key raises ``foreign_key_violation`` (SQLSTATE 23503, as the
constraint did: ingestion treats it as a lost race and tries again). The deletes the constraints
cascaded are statement triggers on ``profiles`` (delete their events) and ``datasets`` (clear
``events.dataset_pk``). The counter's statements also find their profiles by ``pk = ANY(array)``:
their join with the transition table made the planner scan all of ``profiles`` twice per insert
of a few hundred rows (20,000 profiles: ~4 ms a scan).

SQLite checks a foreign key with an index probe per row (cheap): there the constraints become
row triggers doing what they did (``BEFORE INSERT/UPDATE`` raising "FOREIGN KEY constraint
failed", ``AFTER DELETE`` cascading) so that both databases hold the same schema
(tests/test_sql_engine.py compares the migrated schema with the models).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 04:40:00
"""

from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

# the profiles a statement counts into (net change ≠ 0), locked in key order (two writers counting
# into the same profiles queue instead of deadlocking, as in 0017) — found by key: a join with the
# transition table let the planner scan all of profiles
_PG_LOCK = """
    wanted := ARRAY(SELECT profile_pk FROM ({rows}) AS changed GROUP BY profile_pk HAVING sum(delta) <> 0
                    ORDER BY 1);
    PERFORM 1 FROM profiles WHERE pk = ANY(wanted) ORDER BY pk FOR NO KEY UPDATE;"""
_PG_COUNT = """
    UPDATE profiles SET event_count = profiles.event_count + counted.delta
    FROM (SELECT profile_pk, sum(delta) AS delta FROM ({rows}) AS changed
          GROUP BY profile_pk HAVING sum(delta) <> 0) AS counted
    WHERE profiles.pk = ANY(wanted) AND profiles.pk = counted.profile_pk;"""
_PROFILE_MISSING = ("RAISE foreign_key_violation USING MESSAGE = 'an event''s profile_pk is not a profile', "
                    "TABLE = 'events', COLUMN = 'profile_pk'")
_DATASET_MISSING = ("RAISE foreign_key_violation USING MESSAGE = 'an event''s dataset_pk is not a dataset', "
                    "TABLE = 'events', COLUMN = 'dataset_pk'")
# the datasets a statement writes (``keys``), locked FOR KEY SHARE (what a foreign key takes) and all found
_PG_DATASETS = """
    sets := ARRAY(SELECT DISTINCT dataset_pk FROM ({keys}) AS k WHERE dataset_pk IS NOT NULL ORDER BY 1);
    IF cardinality(sets) > 0 THEN
        PERFORM 1 FROM datasets WHERE pk = ANY(sets) ORDER BY pk FOR KEY SHARE;
        GET DIAGNOSTICS found = ROW_COUNT;
        IF found <> cardinality(sets) THEN
            {missing};
        END IF;
    END IF;"""
_INSERTED = "SELECT profile_pk, 1 AS delta FROM new_rows"
_DELETED = "SELECT profile_pk, -1 AS delta FROM old_rows"
_UPDATED = f"{_INSERTED} UNION ALL {_DELETED}"
# an update checks the keys it changes, as the constraints did (pk is the same row in both tables)
_MOVED = "new_rows n JOIN old_rows o ON o.pk = n.pk"
_PG_FUNCTIONS = {
    # every profile of an insert counts +1, so every one is locked: all found, or one is missing
    "event_count_insert": _PG_LOCK.format(rows=_INSERTED) + f"""
    GET DIAGNOSTICS found = ROW_COUNT;
    IF found <> cardinality(wanted) THEN
        {_PROFILE_MISSING};
    END IF;""" + _PG_DATASETS.format(keys="SELECT dataset_pk FROM new_rows", missing=_DATASET_MISSING)
    + _PG_COUNT.format(rows=_INSERTED),
    "event_count_delete": _PG_LOCK.format(rows=_DELETED) + _PG_COUNT.format(rows=_DELETED),
    "event_count_update": _PG_LOCK.format(rows=_UPDATED) + f"""
    IF EXISTS (SELECT 1 FROM {_MOVED} WHERE n.profile_pk IS DISTINCT FROM o.profile_pk
               AND NOT EXISTS (SELECT 1 FROM profiles WHERE pk = n.profile_pk)) THEN
        {_PROFILE_MISSING};
    END IF;""" + _PG_DATASETS.format(
        keys=f"SELECT n.dataset_pk FROM {_MOVED} WHERE n.dataset_pk IS DISTINCT FROM o.dataset_pk",
        missing=_DATASET_MISSING) + _PG_COUNT.format(rows=_UPDATED),
}
_PG_DECLARE = "DECLARE wanted bigint[]; sets bigint[]; found bigint;\n"
# 0017's bodies, for the downgrade
_PG_0017 = {
    "event_count_insert": (("new_rows", "+"),),
    "event_count_delete": (("old_rows", "-"),),
    "event_count_update": (("new_rows", "+"), ("old_rows", "-")),
}

# the deletes the constraints cascaded, once per statement
_PG_CASCADES = (
    ("events_of_deleted_profiles", "profiles", "DELETE FROM events WHERE profile_pk = ANY(ARRAY(SELECT pk FROM old_rows))"),
    ("events_of_deleted_datasets", "datasets",
     "UPDATE events SET dataset_pk = NULL WHERE dataset_pk = ANY(ARRAY(SELECT pk FROM old_rows))"),
)

_SQLITE_KEYS_FOUND = """
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed')
    WHERE NOT EXISTS (SELECT 1 FROM profiles WHERE pk = NEW.profile_pk)
       OR (NEW.dataset_pk IS NOT NULL AND NOT EXISTS (SELECT 1 FROM datasets WHERE pk = NEW.dataset_pk));"""
_SQLITE_TRIGGERS = {
    "events_keys_insert": f"BEFORE INSERT ON events BEGIN {_SQLITE_KEYS_FOUND} END",
    "events_keys_update": f"BEFORE UPDATE OF profile_pk, dataset_pk ON events BEGIN {_SQLITE_KEYS_FOUND} END",
    "events_of_deleted_profiles": "AFTER DELETE ON profiles BEGIN DELETE FROM events WHERE profile_pk = OLD.pk; END",
    "events_of_deleted_datasets": ("AFTER DELETE ON datasets BEGIN "
                                   "UPDATE events SET dataset_pk = NULL WHERE dataset_pk = OLD.pk; END"),
}
# 0017's triggers on events: a SQLite table rebuilt by Alembic's batch mode loses its triggers
_SQLITE_COUNTERS = {
    "event_count_insert": """AFTER INSERT ON events BEGIN
            UPDATE profiles SET event_count = event_count + 1 WHERE pk = NEW.profile_pk;
        END""",
    "event_count_delete": """AFTER DELETE ON events BEGIN
            UPDATE profiles SET event_count = event_count - 1 WHERE pk = OLD.profile_pk;
        END""",
    "event_count_update": """AFTER UPDATE OF profile_pk ON events
        WHEN OLD.profile_pk IS NOT NEW.profile_pk BEGIN
            UPDATE profiles SET event_count = event_count - 1 WHERE pk = OLD.profile_pk;
            UPDATE profiles SET event_count = event_count + 1 WHERE pk = NEW.profile_pk;
        END""",
}


def _pg_function(name: str, body: str, declare: str = "") -> None:
    op.execute(f"CREATE OR REPLACE FUNCTION cdp_{name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
               f"{declare}BEGIN{body}\n    RETURN NULL;\nEND $$")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, body in _PG_FUNCTIONS.items():
            _pg_function(name, body, _PG_DECLARE)
        for name, table, statement in _PG_CASCADES:
            _pg_function(name, f"\n    {statement};")
            op.execute(f"CREATE TRIGGER {name} AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION cdp_{name}()")
        op.drop_constraint("fk_events_profile_pk_profiles", "events", type_="foreignkey")
        op.drop_constraint("fk_events_dataset_pk_datasets", "events", type_="foreignkey")
        return
    for name in _SQLITE_COUNTERS:
        op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("events", recreate="always") as batch:
        batch.drop_constraint("fk_events_profile_pk_profiles", type_="foreignkey")
        batch.drop_constraint("fk_events_dataset_pk_datasets", type_="foreignkey")
    for name, body in {**_SQLITE_COUNTERS, **_SQLITE_TRIGGERS}.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _, _ in _PG_CASCADES:
            op.execute(f"DROP TRIGGER {name} ON {dict((n, t) for n, t, _ in _PG_CASCADES)[name]}")
            op.execute(f"DROP FUNCTION cdp_{name}()")
        op.create_foreign_key("fk_events_profile_pk_profiles", "events", "profiles", ["profile_pk"], ["pk"],
                              ondelete="CASCADE")
        op.create_foreign_key("fk_events_dataset_pk_datasets", "events", "datasets", ["dataset_pk"], ["pk"],
                              ondelete="SET NULL")
        for name, counted in _PG_0017.items():
            rows = " UNION ALL ".join(f"SELECT profile_pk, {sign}1 AS delta FROM {table}" for table, sign in counted)
            _pg_function(name, f"""
    PERFORM 1 FROM profiles WHERE pk IN (
        SELECT profile_pk FROM ({rows}) AS changed GROUP BY profile_pk HAVING sum(delta) <> 0)
    ORDER BY pk FOR NO KEY UPDATE;
    UPDATE profiles SET event_count = profiles.event_count + counted.delta
    FROM (SELECT profile_pk, sum(delta) AS delta FROM ({rows}) AS changed
          GROUP BY profile_pk HAVING sum(delta) <> 0) AS counted
    WHERE profiles.pk = counted.profile_pk;""")
        return
    for name in (*_SQLITE_COUNTERS, *_SQLITE_TRIGGERS):
        op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("events", recreate="always") as batch:
        batch.create_foreign_key("fk_events_profile_pk_profiles", "profiles", ["profile_pk"], ["pk"],
                                 ondelete="CASCADE")
        batch.create_foreign_key("fk_events_dataset_pk_datasets", "datasets", ["dataset_pk"], ["pk"],
                                 ondelete="SET NULL")
    for name, body in _SQLITE_COUNTERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")
