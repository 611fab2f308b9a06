"""Saving a timed streaming segment makes the sandbox's profiles due for THAT segment, not for all
of their timed segments: ``segment_due_saved`` (one row per profile: the earliest save not yet
evaluated for it). Before, a save lowered every profile's ``segment_due`` instant (0018) and the
due job, re-evaluating all the timed segments of a due profile, evaluated profiles × timed
segments for each save (bench/RESULTS.md, session 10: the bench's 500 saves took 2–3× longer).
Now the due job evaluates, for a profile due only here, the timed streaming segments evaluated
(``segments.evaluated_at``) at or after that instant: the segments saved since, and any a batch
run evaluated since (more than needed, never fewer).

Downgrade moves each row into ``segment_due`` at the earlier of the two instants (the old due
job then re-evaluates all the profile's timed segments: nothing is lost).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 12:55:00
"""

from alembic import op
import sqlalchemy as sa

import cdp.storage.models

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
UTC = cdp.storage.models.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'segment_due_saved',
        sa.Column('profile_pk', KEY, nullable=False),
        sa.Column('sandbox', sa.String(length=64), nullable=False),
        sa.Column('due_at', UTC, nullable=False),
        sa.ForeignKeyConstraint(['profile_pk'], ['profiles.pk'],
                                name=op.f('fk_segment_due_saved_profile_pk_profiles'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('profile_pk', name=op.f('pk_segment_due_saved')))
    op.create_index('ix_segment_due_saved_due_at', 'segment_due_saved', ['due_at'], unique=False)


def downgrade() -> None:
    least = "min" if op.get_bind().dialect.name == "sqlite" else "LEAST"
    op.execute("INSERT INTO segment_due (profile_pk, sandbox, due_at) SELECT profile_pk, sandbox, due_at "
               "FROM segment_due_saved WHERE true ORDER BY profile_pk ON CONFLICT (profile_pk) DO UPDATE SET due_at = "
               f"{least}(segment_due.due_at, excluded.due_at)")
    op.drop_index('ix_segment_due_saved_due_at', table_name='segment_due_saved')
    op.drop_table('segment_due_saved')
