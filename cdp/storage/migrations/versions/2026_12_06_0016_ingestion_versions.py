"""Ingestion versions: a counter per sandbox raised by triggers on every write of what streaming
ingestion reads per request — the sandbox's schema, datasets, custom identity namespaces and
identity settings — so that a request checks one number instead of reading the four
(cdp/ingestion/config.py).

A version is a random 64-bit number, not a count: a process may have kept what it read inside a
transaction that wrote and then rolled back; a count would give the same number again to the
next committed write, a random one never does (in practice: 2^-52 per pair on PostgreSQL).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 13:40:00
"""

from alembic import op
import sqlalchemy as sa

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

TABLES = ("sandbox_schemas", "datasets", "identity_namespaces", "identity_settings")
EVENTS = ("insert", "update", "delete")
RANDOM = "floor((random() - 0.5) * 1.8e19)::bigint"  # PostgreSQL; SQLite's random() is 64-bit already


def upgrade() -> None:
    op.create_table('ingestion_versions',
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('sandbox', name=op.f('pk_ingestion_versions'))
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION cdp_ingestion_version() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE
                changed text := CASE WHEN TG_OP = 'DELETE' THEN OLD.sandbox ELSE NEW.sandbox END;
            BEGIN
                INSERT INTO ingestion_versions (sandbox, version) VALUES (changed, %s)
                ON CONFLICT (sandbox) DO UPDATE SET version = EXCLUDED.version;
                IF TG_OP = 'UPDATE' AND OLD.sandbox IS DISTINCT FROM NEW.sandbox THEN
                    INSERT INTO ingestion_versions (sandbox, version) VALUES (OLD.sandbox, %s)
                    ON CONFLICT (sandbox) DO UPDATE SET version = EXCLUDED.version;
                END IF;
                RETURN NULL;
            END $$""" % (RANDOM, RANDOM))
        for table in TABLES:
            op.execute(f"CREATE TRIGGER ingestion_version AFTER INSERT OR UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION cdp_ingestion_version()")
        return
    for table in TABLES:
        for event in EVENTS:
            rows = ("OLD",) if event == "delete" else ("NEW",) if event == "insert" else ("NEW", "OLD")
            body = "".join(f"""
                INSERT OR REPLACE INTO ingestion_versions (sandbox, version) VALUES ({row}.sandbox, random());"""
                           for row in rows)
            op.execute(f"""
            CREATE TRIGGER ingestion_version_{table}_{event} AFTER {event.upper()} ON {table}
            BEGIN{body}
            END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER ingestion_version ON {table}")
        op.execute("DROP FUNCTION cdp_ingestion_version()")
    else:
        for table in TABLES:
            for event in EVENTS:
                op.execute(f"DROP TRIGGER ingestion_version_{table}_{event}")
    op.drop_table('ingestion_versions')
