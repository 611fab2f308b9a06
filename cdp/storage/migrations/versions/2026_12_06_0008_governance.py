"""Governance: custom labels and custom marketing actions per sandbox, data-usage policies (a
marketing action denied for a condition over labels, draft or enabled), and an index to find
the datasets that supplied an attribute.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 08:00:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import cdp.storage.models

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
UTC = cdp.storage.models.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('custom_labels',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_custom_labels')),
    sa.UniqueConstraint('sandbox', 'name', name=op.f('uq_custom_labels_sandbox_name'))
    )
    op.create_table('marketing_actions',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_marketing_actions')),
    sa.UniqueConstraint('sandbox', 'key', name=op.f('uq_marketing_actions_sandbox_key'))
    )
    op.create_table('policies',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('marketing_action', sa.String(length=64), nullable=False),
    sa.Column('deny', sa.Text(), nullable=False),
    sa.Column('deny_tree', DOCUMENT, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('updated_at', UTC, nullable=False),
    sa.CheckConstraint("status in ('draft', 'enabled')", name=op.f('ck_policies_status')),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_policies')),
    sa.UniqueConstraint('sandbox', 'name', name=op.f('uq_policies_sandbox_name'))
    )
    op.create_index('ix_policies_sandbox_marketing_action_status', 'policies',
                    ['sandbox', 'marketing_action', 'status'], unique=False)
    op.create_index('ix_attribute_sources_dataset_pk_path', 'attribute_sources', ['dataset_pk', 'path'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_attribute_sources_dataset_pk_path', table_name='attribute_sources')
    op.drop_index('ix_policies_sandbox_marketing_action_status', table_name='policies')
    op.drop_table('policies')
    op.drop_table('marketing_actions')
    op.drop_table('custom_labels')
