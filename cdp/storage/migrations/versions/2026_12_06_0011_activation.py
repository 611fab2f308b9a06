"""Destinations and activation (cdp/activation): destinations, activations, what each
destination holds of an activation's members, and the delivery log.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 10:40:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import cdp.storage.models

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
UTC = cdp.storage.models.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('destinations',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('marketing_actions', DOCUMENT, nullable=False),
    sa.Column('consent', sa.String(length=512), nullable=True),
    sa.Column('config', DOCUMENT, nullable=False),
    sa.Column('secret', sa.String(length=512), nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('updated_at', UTC, nullable=False),
    sa.CheckConstraint("type in ('webhook', 'file')", name=op.f('ck_destinations_type')),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_destinations')),
    sa.UniqueConstraint('sandbox', 'name', name=op.f('uq_destinations_sandbox_name'))
    )
    op.create_table('activations',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('segment_pk', KEY, nullable=False),
    sa.Column('destination_pk', KEY, nullable=False),
    sa.Column('attributes', DOCUMENT, nullable=False),
    sa.Column('identities', DOCUMENT, nullable=False),
    sa.Column('start_at', UTC, nullable=False),
    sa.Column('end_at', UTC, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('paused_reason', sa.Text(), nullable=True),
    sa.Column('violations', DOCUMENT, nullable=True),
    sa.Column('cursor', KEY, server_default='0', nullable=False),
    sa.Column('backfill_after', KEY, nullable=True),
    sa.Column('last_export_at', UTC, nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('updated_at', UTC, nullable=False),
    sa.CheckConstraint("status in ('active', 'paused', 'ended')", name=op.f('ck_activations_status')),
    sa.ForeignKeyConstraint(['destination_pk'], ['destinations.pk'], name=op.f('fk_activations_destination_pk_destinations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['segment_pk'], ['segments.pk'], name=op.f('fk_activations_segment_pk_segments'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_activations')),
    sa.UniqueConstraint('segment_pk', 'destination_pk', name=op.f('uq_activations_segment_pk_destination_pk'))
    )
    with op.batch_alter_table('activations', schema=None) as batch_op:
        batch_op.create_index('ix_activations_destination_pk', ['destination_pk'], unique=False)

    op.create_table('activation_members',
    sa.Column('activation_pk', KEY, nullable=False),
    sa.Column('profile_pk', KEY, nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('identities', DOCUMENT, nullable=True),
    sa.Column('updated_at', UTC, nullable=False),
    sa.CheckConstraint("state in ('exported', 'excluded')", name=op.f('ck_activation_members_state')),
    sa.ForeignKeyConstraint(['activation_pk'], ['activations.pk'], name=op.f('fk_activation_members_activation_pk_activations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('activation_pk', 'profile_pk', name=op.f('pk_activation_members'))
    )
    with op.batch_alter_table('activation_members', schema=None) as batch_op:
        batch_op.create_index('ix_activation_members_activation_pk_state', ['activation_pk', 'state'], unique=False)

    op.create_table('deliveries',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('destination_pk', KEY, nullable=False),
    sa.Column('activation_pk', KEY, nullable=True),
    sa.Column('delivery_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('changes', DOCUMENT, nullable=False),
    sa.Column('change_count', sa.Integer(), nullable=False),
    sa.Column('excluded_no_consent', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', UTC, nullable=True),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('file', sa.Text(), nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('updated_at', UTC, nullable=False),
    sa.Column('delivered_at', UTC, nullable=True),
    sa.CheckConstraint("status in ('pending', 'retrying', 'delivered', 'dead')", name=op.f('ck_deliveries_status')),
    sa.ForeignKeyConstraint(['activation_pk'], ['activations.pk'], name=op.f('fk_deliveries_activation_pk_activations'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['destination_pk'], ['destinations.pk'], name=op.f('fk_deliveries_destination_pk_destinations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_deliveries')),
    sa.UniqueConstraint('delivery_id', name=op.f('uq_deliveries_delivery_id'))
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_destination_pk_pk', ['destination_pk', 'pk'], unique=False)
        batch_op.create_index('ix_deliveries_status_destination_pk_pk', ['status', 'destination_pk', 'pk'], unique=False)

    # each activation reads the changes of its segment past its cursor
    op.create_index('ix_membership_changes_segment_pk_pk', 'membership_changes', ['segment_pk', 'pk'], unique=False)



def downgrade() -> None:
    op.drop_index('ix_membership_changes_segment_pk_pk', table_name='membership_changes')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_status_destination_pk_pk')
        batch_op.drop_index('ix_deliveries_destination_pk_pk')

    op.drop_table('deliveries')
    with op.batch_alter_table('activation_members', schema=None) as batch_op:
        batch_op.drop_index('ix_activation_members_activation_pk_state')

    op.drop_table('activation_members')
    with op.batch_alter_table('activations', schema=None) as batch_op:
        batch_op.drop_index('ix_activations_destination_pk')

    op.drop_table('activations')
    op.drop_table('destinations')
