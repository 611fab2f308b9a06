"""The identity graph's keys checked per statement: the foreign keys of ``identities``
(``profile_pk`` → profiles, ON DELETE CASCADE) and ``identity_links`` (``profile_pk`` → profiles and
``a_pk``/``b_pk`` → identities, ON DELETE CASCADE; ``dataset_pk`` → datasets and ``batch_pk`` →
ingestion_batches, ON DELETE SET NULL) become triggers that do the same — on PostgreSQL an
insert's keys once per statement instead of once per row, as 0019 did for ``events``.

Why: PostgreSQL checks a foreign key with one query per inserted row and key (an SPI ``SELECT 1
FROM ONLY … FOR KEY SHARE``). In the identity-graph stream (20,000 records, 4,000 people) that was
21,691 probes of profiles and 13,616 of identities (and one of datasets per link); the same stream
with these constraints dropped spent 83.5 instead of 103.5 µs of PostgreSQL CPU a record, the
links' COPY 11.6 instead of 23.1 µs a record (bench/RESULTS.md, session 13).

What stays the same:

* An insert's keys must exist: the statement's distinct keys of each column are locked ``FOR KEY
  SHARE`` (what a foreign key takes: a concurrent delete of the profile or identity waits for us,
  and a merge's ``FOR UPDATE`` too), in key order, and counted; a missing key raises
  ``foreign_key_violation`` (SQLSTATE 23503, as the constraint did — ingestion takes it for a lost
  race and tries again). An insert waiting for a concurrent delete finds the row gone: 23503.
* An update that changes a key (a merge or split moving identities and links; an upsert of a link
  seen again in another dataset) checks the new key: a row trigger ``WHEN`` the key changed, as the
  constraint checked only changed keys. (A statement trigger with transition tables would capture
  every row of every update, the identities' ``last_seen`` touch of each request included.)
* Deletes cascade once per statement: a profile's identities and links, an identity's links (by
  either end); a dataset's or batch's links keep no dataset / batch.

SQLite checks a foreign key with an index probe per row (cheap): there the constraints become row
triggers doing what they did (``BEFORE INSERT/UPDATE`` raising "FOREIGN KEY constraint failed",
``AFTER DELETE`` cascading), so that both databases hold the schema of the models
(tests/test_sql_engine.py compares them). The triggers are written by cdp.storage.key_triggers
(0022 uses it too).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 13:00:00
"""

from cdp.storage.key_triggers import downgrade_keys, upgrade_keys

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

# (table, column, referenced table, ON DELETE) — what the constraints were
_KEYS = (
    ("identities", "profile_pk", "profiles", "CASCADE"),
    ("identity_links", "profile_pk", "profiles", "CASCADE"),
    ("identity_links", "a_pk", "identities", "CASCADE"),
    ("identity_links", "b_pk", "identities", "CASCADE"),
    ("identity_links", "dataset_pk", "datasets", "SET NULL"),
    ("identity_links", "batch_pk", "ingestion_batches", "SET NULL"),
)
_TABLES = ("identity_links", "identities")  # rebuilt on SQLite in this order: links reference identities
# the deletes the constraints cascaded: (trigger, table deleted from, what follows in which table)
_CASCADES = (
    ("identities_of_deleted_profiles", "profiles",
     (("identities", "profile_pk", "CASCADE"), ("identity_links", "profile_pk", "CASCADE"))),
    ("links_of_deleted_identities", "identities",
     (("identity_links", "a_pk", "CASCADE"), ("identity_links", "b_pk", "CASCADE"))),
    ("links_of_deleted_datasets", "datasets", (("identity_links", "dataset_pk", "SET NULL"),)),
    ("links_of_deleted_batches", "ingestion_batches", (("identity_links", "batch_pk", "SET NULL"),)),
)


def upgrade() -> None:
    upgrade_keys(_KEYS, _TABLES, _CASCADES)


def downgrade() -> None:
    downgrade_keys(_KEYS, _TABLES, _CASCADES)
