"""Profile event counts: ``profiles.event_count``, the number of events the profile holds, kept
exact by triggers on ``events`` (insert, delete, a change of ``profile_pk``), so that ingestion
checks the per-profile event limit (cdp/ingestion: MAX_EVENTS_PER_PROFILE) by reading one number
instead of counting the profile's events — a COUNT that grows with the profile.

Triggers rather than the writers' own bookkeeping: events are written by streaming ingestion,
batch files (staging tables), merges and splits of the identity graph, and deleted by privacy
deletion and cascades; a trigger sees every one of them. On PostgreSQL the triggers are per
statement, with transition tables (one UPDATE of the counted profiles per statement, whatever
the number of rows), and lock the profiles in key order first so that two writers counting into
the same profiles queue instead of deadlocking; on SQLite (per row only) each row adds or
subtracts one.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 16:30:00
"""

from alembic import op
import sqlalchemy as sa

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

# PostgreSQL: (trigger, event, transition tables, the rows that count: (table, sign))
_PG_TRIGGERS = (
    ("event_count_insert", "INSERT", "NEW TABLE AS new_rows", (("new_rows", "+"),)),
    ("event_count_delete", "DELETE", "OLD TABLE AS old_rows", (("old_rows", "-"),)),
    ("event_count_update", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows", (("new_rows", "+"),
                                                                                     ("old_rows", "-"))),
)


def upgrade() -> None:
    op.add_column('profiles', sa.Column('event_count', sa.BigInteger(), server_default='0', nullable=False))
    op.execute("UPDATE profiles SET event_count = (SELECT count(*) FROM events WHERE events.profile_pk = profiles.pk)")
    if op.get_bind().dialect.name == "postgresql":
        for name, event, tables, counted in _PG_TRIGGERS:
            rows = " UNION ALL ".join(f"SELECT profile_pk, {sign}1 AS delta FROM {table}"
                                      for table, sign in counted)
            op.execute(f"""
                CREATE FUNCTION cdp_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM 1 FROM profiles WHERE pk IN (
                        SELECT profile_pk FROM ({rows}) AS changed GROUP BY profile_pk HAVING sum(delta) <> 0)
                    ORDER BY pk FOR NO KEY UPDATE;
                    UPDATE profiles SET event_count = profiles.event_count + counted.delta
                    FROM (SELECT profile_pk, sum(delta) AS delta FROM ({rows}) AS changed
                          GROUP BY profile_pk HAVING sum(delta) <> 0) AS counted
                    WHERE profiles.pk = counted.profile_pk;
                    RETURN NULL;
                END $$""")
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON events REFERENCING {tables} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION cdp_{name}()")
        return
    op.execute("""
        CREATE TRIGGER event_count_insert AFTER INSERT ON events BEGIN
            UPDATE profiles SET event_count = event_count + 1 WHERE pk = NEW.profile_pk;
        END""")
    op.execute("""
        CREATE TRIGGER event_count_delete AFTER DELETE ON events BEGIN
            UPDATE profiles SET event_count = event_count - 1 WHERE pk = OLD.profile_pk;
        END""")
    op.execute("""
        CREATE TRIGGER event_count_update AFTER UPDATE OF profile_pk ON events
        WHEN OLD.profile_pk IS NOT NEW.profile_pk BEGIN
            UPDATE profiles SET event_count = event_count - 1 WHERE pk = OLD.profile_pk;
            UPDATE profiles SET event_count = event_count + 1 WHERE pk = NEW.profile_pk;
        END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _, _, _ in _PG_TRIGGERS:
            op.execute(f"DROP TRIGGER {name} ON events")
            op.execute(f"DROP FUNCTION cdp_{name}()")
    else:
        for name in ("event_count_insert", "event_count_delete", "event_count_update"):
            op.execute(f"DROP TRIGGER {name}")
    op.drop_column('profiles', 'event_count')
