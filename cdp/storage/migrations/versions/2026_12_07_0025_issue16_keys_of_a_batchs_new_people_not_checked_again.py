"""A batch file's new people: the key checks of their identities, links and attribute sources are
not run again for the rows the batch has just created itself (PostgreSQL; SQLite unchanged).

The statement triggers of 0021 and 0022 (cdp.storage.key_triggers) check an insert's keys: the
statement's distinct keys of each column sorted, looked up, locked ``FOR KEY SHARE`` and counted.
The set-wise writes of a batch's fresh rows (cdp/ingestion/staging.py) insert identities, links and
sources whose profile and identity keys are rows the same statements inserted a moment before in
the same transaction (invisible to any other, so none can delete them) and whose dataset and batch
are the job's own, locked ``FOR KEY SHARE`` once by the apply. Measured (bench/RESULTS.md, session
16, s16-csv; 200,000 CRM contacts): the three triggers took ~2.8 s of PostgreSQL's ~15 s a batch —
the sources' insert 4.1 s with its trigger, 2.8 s without; the identities' 2.2 / 1.6; the links'
1.9 / 0.9.

Now each of the three insert triggers fires ``WHEN (current_setting('cdp.keys_created', true) IS
DISTINCT FROM 'on')``: the apply sets ``cdp.keys_created`` to ``on`` (``set_config(…, true)``: for
its transaction only, undone with a savepoint rolled back) around those writes and back to ``off``
after them. Every other insert — streaming, the Writer's path of a batch, any statement outside
that window — is checked exactly as before; updates and deletes are untouched.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 22:15:00
"""

from alembic import op

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None

_TABLES = ("identities", "identity_links", "attribute_sources")
WHEN = "WHEN (current_setting('cdp.keys_created', true) IS DISTINCT FROM 'on') "


def _triggers(when: str) -> None:
    for table in _TABLES:
        op.execute(f"DROP TRIGGER {table}_keys_insert ON {table}")
        op.execute(f"CREATE TRIGGER {table}_keys_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows "
                   f"FOR EACH STATEMENT {when}EXECUTE FUNCTION cdp_{table}_keys_insert()")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _triggers(WHEN)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _triggers("")
