"""Segments: description, status (active, draft, inactive), evaluation mode (streaming, batch) and
the time of the last batch evaluation; the reference graph between segments; size history per
hour; the membership change outbox; batch evaluation jobs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 07:30:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import cdp.storage.models

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
UTC = cdp.storage.models.UtcDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('segments') as batch:
        batch.add_column(sa.Column('description', sa.Text(), nullable=True))
        batch.add_column(sa.Column('status', sa.String(length=16), server_default='active', nullable=False))
        batch.add_column(sa.Column('evaluation', sa.String(length=16), server_default='batch', nullable=False))
        batch.add_column(sa.Column('evaluated_at', UTC, nullable=True))
        batch.create_check_constraint(op.f('ck_segments_status'), "status in ('active', 'draft', 'inactive')")
        batch.create_check_constraint(op.f('ck_segments_evaluation'), "evaluation in ('streaming', 'batch')")
    op.create_table('segment_dependencies',
    sa.Column('segment_pk', KEY, nullable=False),
    sa.Column('depends_on_pk', KEY, nullable=False),
    sa.ForeignKeyConstraint(['segment_pk'], ['segments.pk'], name=op.f('fk_segment_dependencies_segment_pk_segments'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['depends_on_pk'], ['segments.pk'],
                            name=op.f('fk_segment_dependencies_depends_on_pk_segments')),
    sa.PrimaryKeyConstraint('segment_pk', 'depends_on_pk', name=op.f('pk_segment_dependencies'))
    )
    op.create_index('ix_segment_dependencies_depends_on_pk', 'segment_dependencies', ['depends_on_pk'], unique=False)
    op.create_table('segment_history',
    sa.Column('segment_pk', KEY, nullable=False),
    sa.Column('at', UTC, nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('entered', sa.BigInteger(), nullable=False),
    sa.Column('exited', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['segment_pk'], ['segments.pk'], name=op.f('fk_segment_history_segment_pk_segments'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('segment_pk', 'at', name=op.f('pk_segment_history'))
    )
    op.create_table('membership_changes',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('segment_pk', KEY, nullable=False),
    sa.Column('segment_key', sa.String(length=128), nullable=False),
    sa.Column('profile_pk', KEY, nullable=False),
    sa.Column('profile_id', sa.String(length=256), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('at', UTC, nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.CheckConstraint("status in ('entered', 'exited')", name=op.f('ck_membership_changes_status')),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_membership_changes'))
    )
    op.create_index('ix_membership_changes_sandbox_pk', 'membership_changes', ['sandbox', 'pk'], unique=False)
    op.create_table('segment_jobs',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('segments', DOCUMENT, nullable=True),
    sa.Column('counts', DOCUMENT, nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('requested_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('as_of', UTC, nullable=True),
    sa.Column('started_at', UTC, nullable=True),
    sa.Column('finished_at', UTC, nullable=True),
    sa.CheckConstraint("status in ('queued', 'running', 'succeeded', 'failed')", name=op.f('ck_segment_jobs_status')),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_segment_jobs'))
    )
    op.create_index('ix_segment_jobs_sandbox_status', 'segment_jobs', ['sandbox', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_segment_jobs_sandbox_status', table_name='segment_jobs')
    op.drop_table('segment_jobs')
    op.drop_index('ix_membership_changes_sandbox_pk', table_name='membership_changes')
    op.drop_table('membership_changes')
    op.drop_table('segment_history')
    op.drop_index('ix_segment_dependencies_depends_on_pk', table_name='segment_dependencies')
    op.drop_table('segment_dependencies')
    with op.batch_alter_table('segments') as batch:
        batch.drop_constraint(op.f('ck_segments_evaluation'), type_='check')
        batch.drop_constraint(op.f('ck_segments_status'), type_='check')
        batch.drop_column('evaluated_at')
        batch.drop_column('evaluation')
        batch.drop_column('status')
        batch.drop_column('description')
