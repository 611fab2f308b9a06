"""Streaming segments: the next instant at which each (segment, profile) answer can change
without new data (cdp/segments/streaming.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 09:10:00
"""

from alembic import op
import sqlalchemy as sa

import cdp.storage.models

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
UTC = cdp.storage.models.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('segment_due',
    sa.Column('segment_pk', KEY, nullable=False),
    sa.Column('profile_pk', KEY, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('due_at', UTC, nullable=False),
    sa.ForeignKeyConstraint(['profile_pk'], ['profiles.pk'], name=op.f('fk_segment_due_profile_pk_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['segment_pk'], ['segments.pk'], name=op.f('fk_segment_due_segment_pk_segments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('segment_pk', 'profile_pk', name=op.f('pk_segment_due'))
    )
    op.create_index('ix_segment_due_due_at', 'segment_due', ['due_at'], unique=False)
    op.create_index('ix_segment_due_profile_pk', 'segment_due', ['profile_pk'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_segment_due_profile_pk', table_name='segment_due')
    op.drop_index('ix_segment_due_due_at', table_name='segment_due')
    op.drop_table('segment_due')
