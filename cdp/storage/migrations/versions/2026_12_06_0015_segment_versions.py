"""Segment versions: a counter per sandbox raised by triggers on every write of its segments, so
that streaming evaluation knows in one lookup whether its compiled segments are still current
(cdp/segments/streaming.py).

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-06 10:45:00
"""

from alembic import op
import sqlalchemy as sa

revision = '0015'
down_revision = '0012'
branch_labels = None
depends_on = None

EVENTS = ("insert", "update", "delete")
# what streaming evaluation compiles from; a batch run's evaluated_at, a new name, do not count
READ = ("sandbox", "key", "expression", "status", "evaluation")


def upgrade() -> None:
    op.create_table('segment_versions',
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('sandbox', name=op.f('pk_segment_versions'))
    )
    # the segments written so far count as one version
    op.execute("INSERT INTO segment_versions (sandbox, version) SELECT DISTINCT sandbox, 1 FROM segments")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION cdp_segment_version() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE
                changed text := CASE WHEN TG_OP = 'DELETE' THEN OLD.sandbox ELSE NEW.sandbox END;
            BEGIN
                INSERT INTO segment_versions (sandbox, version) VALUES (changed, 1)
                ON CONFLICT (sandbox) DO UPDATE SET version = segment_versions.version + 1;
                RETURN NULL;
            END $$""")
        op.execute("CREATE TRIGGER segment_version AFTER INSERT OR DELETE ON segments "
                   "FOR EACH ROW EXECUTE FUNCTION cdp_segment_version()")
        op.execute("CREATE TRIGGER segment_version_update AFTER UPDATE ON segments FOR EACH ROW WHEN ("
                   + " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in READ)
                   + ") EXECUTE FUNCTION cdp_segment_version()")
        return
    for event in EVENTS:
        row = "OLD" if event == "delete" else "NEW"
        when = (" WHEN " + " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in READ)) if event == "update" else ""
        op.execute(f"""
            CREATE TRIGGER segment_version_{event} AFTER {event.upper()} ON segments{when}
            BEGIN
                INSERT OR IGNORE INTO segment_versions (sandbox, version) VALUES ({row}.sandbox, 0);
                UPDATE segment_versions SET version = version + 1 WHERE sandbox = {row}.sandbox;
            END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER segment_version ON segments")
        op.execute("DROP TRIGGER segment_version_update ON segments")
        op.execute("DROP FUNCTION cdp_segment_version()")
    else:
        for event in EVENTS:
            op.execute(f"DROP TRIGGER segment_version_{event}")
    op.drop_table('segment_versions')
