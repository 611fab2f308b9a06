"""Sources (cdp/sources): connectors bound to a dataset pair — the analytics SDKs' tracking API,
database tables, file drops — with their runs, the files a drop picked up, and the tracking
API's rejected or warned messages.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 08:30:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import cdp.storage.models

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
UTC = cdp.storage.models.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('sources',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('profile_dataset_pk', KEY, nullable=True),
    sa.Column('event_dataset_pk', KEY, nullable=True),
    sa.Column('config', DOCUMENT, nullable=False),
    sa.Column('secrets', DOCUMENT, nullable=False),
    sa.Column('mapping', DOCUMENT, nullable=True),
    sa.Column('schedule', DOCUMENT, nullable=True),
    sa.Column('write_key_hash', sa.String(length=64), nullable=True),
    sa.Column('messages_accepted', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('messages_rejected', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('messages_duplicate', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('last_message_at', UTC, nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('updated_at', UTC, nullable=False),
    sa.CheckConstraint("type in ('tracking_api', 'database', 'file_drop')", name=op.f('ck_sources_type')),
    sa.CheckConstraint("status in ('active', 'paused')", name=op.f('ck_sources_status')),
    sa.ForeignKeyConstraint(['profile_dataset_pk'], ['datasets.pk'],
                            name=op.f('fk_sources_profile_dataset_pk_datasets'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['event_dataset_pk'], ['datasets.pk'],
                            name=op.f('fk_sources_event_dataset_pk_datasets'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_sources')),
    sa.UniqueConstraint('sandbox', 'name', name=op.f('uq_sources_sandbox_name')),
    sa.UniqueConstraint('write_key_hash', name=op.f('uq_sources_write_key_hash'))
    )
    op.create_table('source_runs',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('source_pk', KEY, nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('job_pk', KEY, nullable=True),
    sa.Column('batch_pk', KEY, nullable=True),
    sa.Column('cursor_from', DOCUMENT, nullable=True),
    sa.Column('cursor_to', DOCUMENT, nullable=True),
    sa.Column('rows_read', sa.Integer(), server_default='0', nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('started_at', UTC, nullable=True),
    sa.Column('finished_at', UTC, nullable=True),
    sa.CheckConstraint("status in ('queued', 'running', 'submitted', 'succeeded', 'failed', 'skipped')",
                       name=op.f('ck_source_runs_status')),
    sa.ForeignKeyConstraint(['source_pk'], ['sources.pk'], name=op.f('fk_source_runs_source_pk_sources'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['batch_pk'], ['ingestion_batches.pk'],
                            name=op.f('fk_source_runs_batch_pk_ingestion_batches'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_source_runs'))
    )
    op.create_index('ix_source_runs_source_pk', 'source_runs', ['source_pk'])
    op.create_table('source_files',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('source_pk', KEY, nullable=False),
    sa.Column('run_pk', KEY, nullable=True),
    sa.Column('name', sa.String(length=512), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('batch_pk', KEY, nullable=True),
    sa.Column('job_pk', KEY, nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('moved_to', sa.Text(), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('finished_at', UTC, nullable=True),
    sa.CheckConstraint("status in ('ingesting', 'done', 'failed')", name=op.f('ck_source_files_status')),
    sa.ForeignKeyConstraint(['source_pk'], ['sources.pk'], name=op.f('fk_source_files_source_pk_sources'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_pk'], ['source_runs.pk'], name=op.f('fk_source_files_run_pk_source_runs'),
                            ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['batch_pk'], ['ingestion_batches.pk'],
                            name=op.f('fk_source_files_batch_pk_ingestion_batches'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_source_files')),
    sa.UniqueConstraint('source_pk', 'name', 'sha256', name=op.f('uq_source_files_source_pk_name_sha256'))
    )
    op.create_table('source_message_issues',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('source_pk', KEY, nullable=False),
    sa.Column('received_at', UTC, nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('message_index', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=256), nullable=True),
    sa.Column('type', sa.String(length=32), nullable=True),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('errors', DOCUMENT, nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.Column('raw_bytes', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("level in ('error', 'warning')", name=op.f('ck_source_message_issues_level')),
    sa.ForeignKeyConstraint(['source_pk'], ['sources.pk'], name=op.f('fk_source_message_issues_source_pk_sources'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_source_message_issues'))
    )
    op.create_index('ix_source_message_issues_source_pk_pk', 'source_message_issues', ['source_pk', 'pk'])


def downgrade() -> None:
    op.drop_index('ix_source_message_issues_source_pk_pk', table_name='source_message_issues')
    op.drop_table('source_message_issues')
    op.drop_table('source_files')
    op.drop_index('ix_source_runs_source_pk', table_name='source_runs')
    op.drop_table('source_runs')
    op.drop_table('sources')
