"""One job table for all background work (cdp/jobs): batch files become jobs of kind
``ingestion.batch`` keyed by the batch's id (their attempts, worker and heartbeat move to the
job); batch errors say when their raw row was cut (``raw_truncated``)
and how long it was (``raw_bytes``); batch files move to a table of their own
(``ingestion_batch_files``), on PostgreSQL stored uncompressed (``STORAGE EXTERNAL``) so a job
reads a file in slices without decompressing it from the start.

Columns are added and dropped with ALTER TABLE on SQLite too (3.35+), never by copying a table:
a copy drops the old table, and with foreign keys on that would cascade into the batch errors.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 07:40:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import cdp.storage.models

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
UTC = cdp.storage.models.UtcDateTime(timezone=True)
BATCH_KIND = 'ingestion.batch'


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    op.create_table('jobs',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=True),
    sa.Column('sandbox', sa.String(length=64), nullable=True),
    sa.Column('payload', DOCUMENT, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('run_at', UTC, nullable=False),
    sa.Column('interval_seconds', sa.Float(), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=128), nullable=True),
    sa.Column('heartbeat_at', UTC, nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('progress_done', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('progress_total', sa.BigInteger(), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('started_at', UTC, nullable=True),
    sa.Column('finished_at', UTC, nullable=True),
    sa.CheckConstraint("status in ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
                       name=op.f('ck_jobs_status')),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_jobs')),
    sa.UniqueConstraint('kind', 'key', name=op.f('uq_jobs_kind_key'))
    )
    op.create_index('ix_jobs_status_run_at', 'jobs', ['status', 'run_at'])

    # every batch gets its job, with the run state it had
    payload = "json_object('batch_id', pk)" if sqlite else "jsonb_build_object('batch_id', pk)"
    false = '0' if sqlite else 'false'
    op.execute(f"INSERT INTO jobs (kind, key, sandbox, payload, status, run_at, attempts, max_attempts, worker, "
               f"heartbeat_at, cancel_requested, progress_done, created_at, started_at, finished_at) "
               f"SELECT '{BATCH_KIND}', CAST(pk AS VARCHAR(200)), sandbox, {payload}, "
               f"CASE status WHEN 'processing' THEN 'running' ELSE status END, created_at, attempts, 1, worker, "
               f"heartbeat_at, {false}, 0, created_at, started_at, finished_at FROM ingestion_batches")
    for column in ('attempts', 'worker', 'heartbeat_at'):
        op.execute(f'ALTER TABLE ingestion_batches DROP COLUMN {column}')

    op.add_column('ingestion_errors', sa.Column('raw_truncated', sa.Boolean(), server_default=sa.false(),
                                                nullable=False))
    op.add_column('ingestion_errors', sa.Column('raw_bytes', sa.BigInteger(), server_default='0', nullable=False))
    op.execute('UPDATE ingestion_errors SET raw_bytes = '
               + ('length(CAST(raw AS BLOB))' if sqlite else 'octet_length(raw)'))
    # rows stored whole before the cap give their space back (2,048 characters kept here; reads cut
    # them to 2,048 bytes)
    op.execute(f"UPDATE ingestion_errors SET raw = substr(raw, 1, 2048), raw_truncated = {'1' if sqlite else 'true'} "
               f"WHERE raw_bytes > 2048")

    # the files move to a table of their own (a batch's updates no longer rewrite its file)
    op.create_table('ingestion_batch_files',
    sa.Column('batch_pk', KEY, autoincrement=False, nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['batch_pk'], ['ingestion_batches.pk'],
                            name=op.f('fk_ingestion_batch_files_batch_pk_ingestion_batches'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('batch_pk', name=op.f('pk_ingestion_batch_files'))
    )
    if not sqlite:  # before the copy: the storage applies to values stored from now on
        op.execute('ALTER TABLE ingestion_batch_files ALTER COLUMN content SET STORAGE EXTERNAL')
    op.execute('INSERT INTO ingestion_batch_files (batch_pk, content) SELECT pk, content FROM ingestion_batches')
    op.execute('ALTER TABLE ingestion_batches DROP COLUMN content')


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    empty = sa.text("X''" if sqlite else "''::bytea")
    op.add_column('ingestion_batches', sa.Column('content', sa.LargeBinary(), server_default=empty, nullable=False))
    op.execute('UPDATE ingestion_batches SET content = (SELECT content FROM ingestion_batch_files '
               'WHERE ingestion_batch_files.batch_pk = ingestion_batches.pk)')
    op.drop_table('ingestion_batch_files')
    op.execute('ALTER TABLE ingestion_errors DROP COLUMN raw_bytes')
    op.execute('ALTER TABLE ingestion_errors DROP COLUMN raw_truncated')
    op.add_column('ingestion_batches', sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
    op.add_column('ingestion_batches', sa.Column('worker', sa.String(length=128), nullable=True))
    op.add_column('ingestion_batches', sa.Column('heartbeat_at', UTC, nullable=True))
    for column in ('attempts', 'worker', 'heartbeat_at'):
        op.execute(f"UPDATE ingestion_batches SET {column} = (SELECT jobs.{column} FROM jobs "
                   f"WHERE jobs.kind = '{BATCH_KIND}' AND jobs.key = CAST(ingestion_batches.pk AS VARCHAR(200))) "
                   f"WHERE EXISTS (SELECT 1 FROM jobs WHERE jobs.kind = '{BATCH_KIND}' "
                   f"AND jobs.key = CAST(ingestion_batches.pk AS VARCHAR(200)))")
    op.drop_index('ix_jobs_status_run_at', table_name='jobs')
    op.drop_table('jobs')
