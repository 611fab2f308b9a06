"""Sandboxes exist before use: a table of them, with ``prod`` and every sandbox that already
holds data or keys (so an upgraded deployment keeps reaching what it wrote).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 08:00:00
"""

from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

import cdp.storage.models

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

UTC = cdp.storage.models.UtcDateTime(timezone=True)

# Every table with a sandbox column (cdp/storage/models.py at revision 0004).
_WITH_SANDBOX = ('profiles', 'identities', 'segments', 'api_keys', 'sandbox_schemas', 'datasets',
                 'ingestion_batches', 'identity_namespaces', 'identity_settings', 'profile_merges',
                 'privacy_deletions')


def upgrade() -> None:
    table = op.create_table('sandboxes',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=1024), nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_sandboxes'))
    )
    connection = op.get_bind()
    names = {'prod'}
    for name in _WITH_SANDBOX:
        names.update(connection.execute(sa.text(f'SELECT DISTINCT sandbox FROM {name} WHERE sandbox IS NOT NULL'))
                     .scalars())
    now = datetime.now(timezone.utc)
    op.bulk_insert(table, [{'name': name, 'description': 'the default sandbox' if name == 'prod' else None,
                            'created_at': now} for name in sorted(names)])


def downgrade() -> None:
    op.drop_table('sandboxes')
