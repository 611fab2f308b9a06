"""One next instant per profile: ``segment_due`` keyed by the profile alone (was: one row per
(segment, profile)). The row holds the earliest instant at which any of the profile's timed
streaming segments can change its answer without new data; the due job then re-evaluates all of
that profile's timed streaming segments and stores their earliest next instant
(cdp/segments/streaming.py). An ingest evaluated ~10 timed segments a record and wrote a row for
each new instant; now it writes at most one, and only when it moves the profile's instant earlier.

Upgrade keeps each profile's earliest instant. Downgrade gives every active streaming segment of
the profile's sandbox the profile's instant — early for most of them, which the old due job took
as "nothing changed, schedule the next one" (an instant may be early, never late).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 04:40:00
"""

from alembic import op
import sqlalchemy as sa

import cdp.storage.models

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
UTC = cdp.storage.models.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.execute("CREATE TABLE segment_due_0018 AS SELECT profile_pk, min(sandbox) AS sandbox, min(due_at) AS due_at "
               "FROM segment_due GROUP BY profile_pk")
    op.drop_index('ix_segment_due_profile_pk', table_name='segment_due')
    op.drop_index('ix_segment_due_due_at', table_name='segment_due')
    op.drop_table('segment_due')
    _create(per_segment=False)
    op.execute("INSERT INTO segment_due (profile_pk, sandbox, due_at) SELECT profile_pk, sandbox, due_at "
               "FROM segment_due_0018")
    op.drop_table('segment_due_0018')


def downgrade() -> None:
    op.execute("CREATE TABLE segment_due_0018 AS SELECT profile_pk, sandbox, due_at FROM segment_due")
    op.drop_index('ix_segment_due_due_at', table_name='segment_due')
    op.drop_table('segment_due')
    _create(per_segment=True)
    op.execute("INSERT INTO segment_due (segment_pk, profile_pk, sandbox, due_at) "
               "SELECT s.pk, d.profile_pk, d.sandbox, d.due_at FROM segment_due_0018 d "
               "JOIN segments s ON s.sandbox = d.sandbox AND s.status = 'active' AND s.evaluation = 'streaming'")
    op.drop_table('segment_due_0018')


def _create(*, per_segment: bool) -> None:
    columns = [sa.Column('segment_pk', KEY, nullable=False)] if per_segment else []
    columns += [sa.Column('profile_pk', KEY, nullable=False),
                sa.Column('sandbox', sa.String(length=64), nullable=False),
                sa.Column('due_at', UTC, nullable=False),
                sa.ForeignKeyConstraint(['profile_pk'], ['profiles.pk'],
                                        name=op.f('fk_segment_due_profile_pk_profiles'), ondelete='CASCADE')]
    if per_segment:
        columns.append(sa.ForeignKeyConstraint(['segment_pk'], ['segments.pk'],
                                               name=op.f('fk_segment_due_segment_pk_segments'), ondelete='CASCADE'))
        columns.append(sa.PrimaryKeyConstraint('segment_pk', 'profile_pk', name=op.f('pk_segment_due')))
    else:
        columns.append(sa.PrimaryKeyConstraint('profile_pk', name=op.f('pk_segment_due')))
    op.create_table('segment_due', *columns)
    op.create_index('ix_segment_due_due_at', 'segment_due', ['due_at'], unique=False)
    if per_segment:
        op.create_index('ix_segment_due_profile_pk', 'segment_due', ['profile_pk'], unique=False)
