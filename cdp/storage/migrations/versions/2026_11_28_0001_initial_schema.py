"""Initial schema: profiles, identities, events, segments, memberships.

Revision ID: 0001
Revises: 
Create Date: 2026-11-28 21:57:11.340732
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import cdp.storage.models

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('profiles',
    sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), server_default='prod', nullable=False),
    sa.Column('external_id', sa.String(length=256), nullable=False),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_profiles')),
    sa.UniqueConstraint('sandbox', 'external_id', name=op.f('uq_profiles_sandbox_external_id'))
    )
    op.create_table('segments',
    sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), server_default='prod', nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('expression', sa.Text(), nullable=False),
    sa.Column('canonical', sa.Text(), nullable=False),
    sa.Column('created_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_segments')),
    sa.UniqueConstraint('sandbox', 'key', name=op.f('uq_segments_sandbox_key'))
    )
    op.create_table('events',
    sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('profile_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('event_id', sa.String(length=256), nullable=False),
    sa.Column('type', sa.String(length=128), nullable=False),
    sa.Column('ts', cdp.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('fields', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['profile_pk'], ['profiles.pk'], name=op.f('fk_events_profile_pk_profiles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_events'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_profile_pk_ts', ['profile_pk', 'ts'], unique=False)
        batch_op.create_index('ix_events_profile_pk_type_ts', ['profile_pk', 'type', 'ts'], unique=False)

    op.create_table('identities',
    sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), server_default='prod', nullable=False),
    sa.Column('profile_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('namespace', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=512), nullable=False),
    sa.Column('first_seen', cdp.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['profile_pk'], ['profiles.pk'], name=op.f('fk_identities_profile_pk_profiles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_identities')),
    sa.UniqueConstraint('sandbox', 'namespace', 'value', name=op.f('uq_identities_sandbox_namespace_value'))
    )
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.create_index('ix_identities_profile_pk', ['profile_pk'], unique=False)

    op.create_table('memberships',
    sa.Column('segment_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('profile_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('entered_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('exited_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status in ('realized', 'existing', 'exited')", name=op.f('ck_memberships_status')),
    sa.ForeignKeyConstraint(['profile_pk'], ['profiles.pk'], name=op.f('fk_memberships_profile_pk_profiles'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['segment_pk'], ['segments.pk'], name=op.f('fk_memberships_segment_pk_segments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('segment_pk', 'profile_pk', name=op.f('pk_memberships'))
    )
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.create_index('ix_memberships_profile_pk', ['profile_pk'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_index('ix_memberships_profile_pk')

    op.drop_table('memberships')
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.drop_index('ix_identities_profile_pk')

    op.drop_table('identities')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_profile_pk_type_ts')
        batch_op.drop_index('ix_events_profile_pk_ts')

    op.drop_table('events')
    op.drop_table('segments')
    op.drop_table('profiles')
