"""Service foundation: API keys, the schema in force per sandbox, datasets with data-usage labels.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 22:29:09.844747
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import cdp.storage.models

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=True),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role in ('admin', 'data_steward', 'marketer', 'reader')", name=op.f('ck_api_keys_role')),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_id', name=op.f('uq_api_keys_key_id'))
    )
    op.create_table('datasets',
    sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('labels', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('field_labels', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind in ('profile', 'event')", name=op.f('ck_datasets_kind')),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_datasets')),
    sa.UniqueConstraint('sandbox', 'name', name=op.f('uq_datasets_sandbox_name'))
    )
    op.create_table('sandbox_schemas',
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('document', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('updated_at', cdp.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sandbox', name=op.f('pk_sandbox_schemas'))
    )


def downgrade() -> None:
    op.drop_table('sandbox_schemas')
    op.drop_table('datasets')
    op.drop_table('api_keys')
