"""Identity graph and unified profiles: custom namespaces, identity settings (merge policy, graph
limit), attribute provenance,
identities removed by the graph limit, merged-away profile ids, privacy deletions; identities
remember when they were last seen; batch jobs remember their attempts and their worker's
heartbeat (so an interrupted job can be found and retried).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 00:10:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import cdp.storage.models

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
UTC = cdp.storage.models.UtcDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('identities') as batch:
        batch.add_column(sa.Column('last_seen', UTC, nullable=True))
    op.execute('UPDATE identities SET last_seen = first_seen')
    with op.batch_alter_table('ingestion_batches') as batch:
        batch.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('worker', sa.String(length=128), nullable=True))
        batch.add_column(sa.Column('heartbeat_at', UTC, nullable=True))
    op.create_table('identity_namespaces',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.CheckConstraint("kind in ('cookie', 'device', 'person')", name=op.f('ck_identity_namespaces_kind')),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_identity_namespaces')),
    sa.UniqueConstraint('sandbox', 'code', name=op.f('uq_identity_namespaces_sandbox_code'))
    )
    op.create_table('identity_settings',
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('merge_policy', sa.String(length=32), nullable=False),
    sa.Column('dataset_order', DOCUMENT, nullable=False),
    sa.Column('graph_limit', sa.Integer(), nullable=False),
    sa.Column('updated_at', UTC, nullable=False),
    sa.CheckConstraint("merge_policy in ('timestamp_ordered', 'dataset_precedence')",
                       name=op.f('ck_identity_settings_merge_policy')),
    sa.PrimaryKeyConstraint('sandbox', name=op.f('pk_identity_settings'))
    )
    op.create_table('attribute_sources',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('profile_pk', KEY, nullable=False),
    sa.Column('path', sa.String(length=512), nullable=False),
    sa.Column('dataset_pk', KEY, nullable=False),
    sa.Column('value', DOCUMENT, nullable=True),
    sa.Column('removed', sa.Boolean(), nullable=False),
    sa.Column('observed_at', UTC, nullable=False),
    sa.Column('batch_pk', KEY, nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('record_index', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['profile_pk'], ['profiles.pk'], name=op.f('fk_attribute_sources_profile_pk_profiles'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['dataset_pk'], ['datasets.pk'], name=op.f('fk_attribute_sources_dataset_pk_datasets'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['batch_pk'], ['ingestion_batches.pk'],
                            name=op.f('fk_attribute_sources_batch_pk_ingestion_batches'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_attribute_sources')),
    sa.UniqueConstraint('profile_pk', 'path', 'dataset_pk', name=op.f('uq_attribute_sources_profile_pk_path_dataset_pk'))
    )
    op.create_table('identity_removals',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('profile_pk', KEY, nullable=False),
    sa.Column('namespace', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=512), nullable=False),
    sa.Column('removed_at', UTC, nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['profile_pk'], ['profiles.pk'], name=op.f('fk_identity_removals_profile_pk_profiles'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_identity_removals'))
    )
    op.create_index('ix_identity_removals_profile_pk', 'identity_removals', ['profile_pk'])
    op.create_table('profile_merges',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('survivor_pk', KEY, nullable=False),
    sa.Column('merged_external_id', sa.String(length=256), nullable=False),
    sa.Column('merged_at', UTC, nullable=False),
    sa.Column('identities_moved', sa.Integer(), nullable=False),
    sa.Column('events_moved', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['survivor_pk'], ['profiles.pk'], name=op.f('fk_profile_merges_survivor_pk_profiles'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_profile_merges')),
    sa.UniqueConstraint('sandbox', 'merged_external_id', name=op.f('uq_profile_merges_sandbox_merged_external_id'))
    )
    op.create_index('ix_profile_merges_survivor_pk', 'profile_merges', ['survivor_pk'])
    op.create_table('privacy_deletions',
    sa.Column('pk', KEY, autoincrement=True, nullable=False),
    sa.Column('sandbox', sa.String(length=64), nullable=False),
    sa.Column('profile_external_id', sa.String(length=256), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('requested_at', UTC, nullable=False),
    sa.Column('identities', sa.Integer(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('memberships', sa.Integer(), nullable=False),
    sa.Column('attribute_sources', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_privacy_deletions'))
    )
    op.create_index('ix_privacy_deletions_sandbox_requested_at', 'privacy_deletions', ['sandbox', 'requested_at'])


def downgrade() -> None:
    op.drop_index('ix_privacy_deletions_sandbox_requested_at', table_name='privacy_deletions')
    op.drop_table('privacy_deletions')
    op.drop_index('ix_profile_merges_survivor_pk', table_name='profile_merges')
    op.drop_table('profile_merges')
    op.drop_index('ix_identity_removals_profile_pk', table_name='identity_removals')
    op.drop_table('identity_removals')
    op.drop_table('attribute_sources')
    op.drop_table('identity_settings')
    op.drop_table('identity_namespaces')
    with op.batch_alter_table('ingestion_batches') as batch:
        batch.drop_column('heartbeat_at')
        batch.drop_column('worker')
        batch.drop_column('attempts')
    with op.batch_alter_table('identities') as batch:
        batch.drop_column('last_seen')
