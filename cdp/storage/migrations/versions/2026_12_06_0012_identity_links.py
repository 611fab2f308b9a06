"""Identity-graph linking rules: the graph's links (identity_links), the identities each event and
attribute source came with, and the sandbox's unique namespaces and namespace priority.

Existing profiles get links that keep them whole: each identity is linked to the profile's first
identity, seen when that identity was first seen (which records linked them is not known). The
linking rules apply to them from their next link on, or at once with the re-evaluation job.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 11:00:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import cdp.storage.models

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
UTC = cdp.storage.models.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('identity_links',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('profile_pk', KEY, nullable=False),
    sa.Column('a_pk', KEY, nullable=False),
    sa.Column('b_pk', KEY, nullable=False),
    sa.Column('first_seen', UTC, nullable=False),
    sa.Column('last_seen', UTC, nullable=False),
    sa.Column('seen_order', sa.Integer(), nullable=False),
    sa.Column('dataset_pk', KEY, nullable=True),
    sa.Column('batch_pk', KEY, nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('record_index', sa.Integer(), nullable=True),
    sa.Column('removed_at', UTC, nullable=True),
    sa.Column('removed_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['profile_pk'], ['profiles.pk'], name=op.f('fk_identity_links_profile_pk_profiles'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['a_pk'], ['identities.pk'], name=op.f('fk_identity_links_a_pk_identities'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['b_pk'], ['identities.pk'], name=op.f('fk_identity_links_b_pk_identities'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['dataset_pk'], ['datasets.pk'], name=op.f('fk_identity_links_dataset_pk_datasets'),
                            ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['batch_pk'], ['ingestion_batches.pk'],
                            name=op.f('fk_identity_links_batch_pk_ingestion_batches'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_identity_links')),
    sa.UniqueConstraint('a_pk', 'b_pk', name=op.f('uq_identity_links_a_pk_b_pk'))
    )
    op.create_index('ix_identity_links_profile_pk', 'identity_links', ['profile_pk'])
    op.create_index('ix_identity_links_b_pk', 'identity_links', ['b_pk'])
    with op.batch_alter_table('events') as batch:
        batch.add_column(sa.Column('identities', DOCUMENT, nullable=True))
    with op.batch_alter_table('attribute_sources') as batch:
        batch.add_column(sa.Column('identities', DOCUMENT, nullable=True))
    with op.batch_alter_table('identity_settings') as batch:
        batch.add_column(sa.Column('unique_namespaces', DOCUMENT, nullable=True))
        batch.add_column(sa.Column('namespace_priority', DOCUMENT, nullable=True))
    # existing profiles stay whole: every identity linked to its profile's first one
    op.execute(
        "INSERT INTO identity_links (sandbox, profile_pk, a_pk, b_pk, first_seen, last_seen, seen_order) "
        "SELECT i.sandbox, i.profile_pk, f.first_pk, i.pk, i.first_seen, i.first_seen, 0 FROM identities i "
        "JOIN (SELECT profile_pk, MIN(pk) AS first_pk FROM identities GROUP BY profile_pk) f "
        "ON f.profile_pk = i.profile_pk WHERE i.pk <> f.first_pk")


def downgrade() -> None:
    with op.batch_alter_table('identity_settings') as batch:
        batch.drop_column('namespace_priority')
        batch.drop_column('unique_namespaces')
    with op.batch_alter_table('attribute_sources') as batch:
        batch.drop_column('identities')
    with op.batch_alter_table('events') as batch:
        batch.drop_column('identities')
    op.drop_index('ix_identity_links_b_pk', table_name='identity_links')
    op.drop_index('ix_identity_links_profile_pk', table_name='identity_links')
    op.drop_table('identity_links')
