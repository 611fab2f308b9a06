"""Attribute sources' keys checked per statement: the foreign keys of ``attribute_sources``
(``profile_pk`` → profiles and ``dataset_pk`` → datasets, ON DELETE CASCADE; ``batch_pk`` →
ingestion_batches, ON DELETE SET NULL) become triggers that do the same
(cdp.storage.key_triggers) — on PostgreSQL an insert's keys once per statement instead of once per
row and key, as 0019 did for ``events`` and 0021 for the identity graph.

Why: a batch file's new people are written set-wise (cdp/ingestion/staging.py), ~4 attribute
sources a CRM contact; PostgreSQL probed profiles, datasets and batches once a source row — three
probes a row, the same dataset and batch row each time. In process, 100,000 CRM contacts
(400,000 sources): the sources' insert took 19.5 and 33.6 s with the constraints and 7.5 and 3.9 s
with them dropped (bench/RESULTS.md, session 13, lead).

What stays the same (cdp.storage.key_triggers): an insert's keys must exist (locked ``FOR KEY
SHARE`` in key order, counted; a missing key raises 23503); an update that moves a source to
another profile (a merge, a split) checks the new key; deleting a profile or a dataset deletes its
sources, deleting a batch clears their ``batch_pk``.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 13:45:00
"""

from cdp.storage.key_triggers import downgrade_keys, upgrade_keys

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None

# (table, column, referenced table, ON DELETE) — what the constraints were
_KEYS = (
    ("attribute_sources", "profile_pk", "profiles", "CASCADE"),
    ("attribute_sources", "dataset_pk", "datasets", "CASCADE"),
    ("attribute_sources", "batch_pk", "ingestion_batches", "SET NULL"),
)
_TABLES = ("attribute_sources",)
_CASCADES = (
    ("sources_of_deleted_profiles", "profiles", (("attribute_sources", "profile_pk", "CASCADE"),)),
    ("sources_of_deleted_datasets", "datasets", (("attribute_sources", "dataset_pk", "CASCADE"),)),
    ("sources_of_deleted_batches", "ingestion_batches", (("attribute_sources", "batch_pk", "SET NULL"),)),
)


def upgrade() -> None:
    upgrade_keys(_KEYS, _TABLES, _CASCADES)


def downgrade() -> None:
    downgrade_keys(_KEYS, _TABLES, _CASCADES)
