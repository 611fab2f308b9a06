"""Ingestion: events remember their dataset (an event id is stored once per dataset); batch-file
jobs and their per-row errors.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 22:50:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import cdp.storage.models

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('events') as batch:
        batch.add_column(sa.Column('dataset_pk', KEY, nullable=True))
        batch.create_foreign_key(op.f('fk_events_dataset_pk_datasets'), 'datasets', ['dataset_pk'], ['pk'],
                                 ondelete='SET NULL')
        batch.create_index('uq_events_dataset_pk_event_id', ['dataset_pk', 'event_id'], unique=True)
    op.create_table('ingestion_batches',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('dataset_pk', KEY, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('filename', sa.String(length=512), nullable=True),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('mapping', DOCUMENT, nullable=True),
    sa.Column('error_threshold', sa.Float(), nullable=False),
    sa.Column('total_rows', sa.Integer(), nullable=False),
    sa.Column('accepted_rows', sa.Integer(), nullable=False),
    sa.Column('rejected_rows', sa.Integer(), nullable=False),
    sa.Column('duplicate_rows', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('created_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('started_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status in ('queued', 'processing', 'succeeded', 'failed')",
                       name=op.f('ck_ingestion_batches_status')),
    sa.ForeignKeyConstraint(['dataset_pk'], ['datasets.pk'], name=op.f('fk_ingestion_batches_dataset_pk_datasets'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_ingestion_batches'))
    )
    op.create_index('ix_ingestion_batches_sandbox_dataset_pk', 'ingestion_batches', ['sandbox', 'dataset_pk'])
    op.create_table('ingestion_errors',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('batch_pk', KEY, nullable=False),
    sa.Column('row_number', sa.Integer(), nullable=False),
    sa.Column('column', sa.String(length=512), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['batch_pk'], ['ingestion_batches.pk'],
                            name=op.f('fk_ingestion_errors_batch_pk_ingestion_batches'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_ingestion_errors'))
    )
    op.create_index('ix_ingestion_errors_batch_pk_row_number', 'ingestion_errors', ['batch_pk', 'row_number'])


def downgrade() -> None:
    op.drop_index('ix_ingestion_errors_batch_pk_row_number', table_name='ingestion_errors')
    op.drop_table('ingestion_errors')
    op.drop_index('ix_ingestion_batches_sandbox_dataset_pk', table_name='ingestion_batches')
    op.drop_table('ingestion_batches')
    with op.batch_alter_table('events') as batch:
        batch.drop_index('uq_events_dataset_pk_event_id')
        batch.drop_constraint(op.f('fk_events_dataset_pk_datasets'), type_='foreignkey')
        batch.drop_column('dataset_pk')
