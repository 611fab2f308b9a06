"""The storage schema. Alembic migrations in cdp/storage/migrations/ build exactly this (a test compares them).

Design for the compiled SQL:
* profile attributes live in one JSON document per profile, flattened to dotted keys
  (``{"loyalty.tier": "gold"}``) so every attribute is one key lookup (SQLite ``json_extract``,
  PostgreSQL ``->>`` on JSONB); a missing or null attribute is an absent key;
* events are rows with their time, type and id as real columns — every event term filters on
  them — and the other fields in a JSON document; ``(profile_pk, type, ts)`` is the index every
  event term uses;
* datetimes are stored as UTC (PostgreSQL ``timestamptz``; SQLite text ``YYYY-MM-DD
  HH:MM:SS.ffffff``, which orders like time), dates as ``YYYY-MM-DD``.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
})

# JSONB on PostgreSQL (indexable, `->>` is cheap), JSON text on SQLite.
Document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# 64-bit keys on PostgreSQL; SQLite's INTEGER PRIMARY KEY is its 64-bit rowid.
Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UtcDateTime(sa.TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on every dialect."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: cdp stores UTC instants only")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


profiles = sa.Table(
    "profiles", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False, server_default="prod"),
    sa.Column("external_id", sa.String(256), nullable=False),
    sa.Column("attributes", Document, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # how many events the profile holds, kept exact by triggers on events (migration 0017): the
    # per-profile event limit of ingestion reads it instead of counting
    sa.Column("event_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("sandbox", "external_id"),
)

identities = sa.Table(
    "identities", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False, server_default="prod"),
    # checked, and its deletes cascaded (a profile's identities deleted with it), by triggers rather
    # than a foreign key (migration 0021): on PostgreSQL once per statement, not once per row
    sa.Column("profile_pk", Key, nullable=False),
    sa.Column("namespace", sa.String(64), nullable=False),
    sa.Column("value", sa.String(512), nullable=False),
    sa.Column("first_seen", UtcDateTime, nullable=False),
    # when a record or event last carried this identity (cdp/identity: the graph limit drops the
    # least recently seen identities of the lowest kind first)
    sa.Column("last_seen", UtcDateTime, nullable=True),
    sa.UniqueConstraint("sandbox", "namespace", "value"),
    sa.Index("ix_identities_profile_pk", "profile_pk"),
)

events = sa.Table(
    "events", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    # profile_pk and dataset_pk are checked, and their deletes cascaded (a profile's events deleted,
    # a dataset's events keep no dataset), by triggers rather than foreign keys (migration 0019): a
    # foreign key costs PostgreSQL one query per inserted row and key; the triggers check a
    # statement's keys at once
    sa.Column("profile_pk", Key, nullable=False),
    sa.Column("event_id", sa.String(256), nullable=False),
    sa.Column("type", sa.String(128), nullable=False),
    sa.Column("ts", UtcDateTime, nullable=False),
    sa.Column("fields", Document, nullable=False),
    # the dataset an event was ingested through (cdp/ingestion); NULL for events loaded otherwise.
    # An event id is stored once per dataset (NULLs are distinct, so loaded events are unaffected).
    sa.Column("dataset_pk", Key, nullable=True),
    # the identities the record carried ([[namespace, value], …]): a split of its profile sends the
    # event to the part holding the highest-priority one (cdp/identity/split.py); NULL: loaded otherwise
    sa.Column("identities", Document, nullable=True),
    sa.Index("ix_events_profile_pk_type_ts", "profile_pk", "type", "ts"),
    sa.Index("ix_events_profile_pk_ts", "profile_pk", "ts"),
    sa.Index("uq_events_dataset_pk_event_id", "dataset_pk", "event_id", unique=True),
)

segments = sa.Table(
    "segments", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False, server_default="prod"),
    sa.Column("key", sa.String(128), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("expression", sa.Text, nullable=False),
    sa.Column("canonical", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # cdp/segments: what it is for, whether it is evaluated (active) and how (streaming or batch),
    # and when a batch evaluation last wrote its memberships
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column("evaluation", sa.String(16), nullable=False, server_default="batch"),
    sa.Column("evaluated_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("sandbox", "key"),
    sa.CheckConstraint("status in ('active', 'draft', 'inactive')", name="status"),
    sa.CheckConstraint("evaluation in ('streaming', 'batch')", name="evaluation"),
)

memberships = sa.Table(
    "memberships", metadata,
    sa.Column("segment_pk", Key, sa.ForeignKey("segments.pk", ondelete="CASCADE"), primary_key=True),
    sa.Column("profile_pk", Key, sa.ForeignKey("profiles.pk", ondelete="CASCADE"), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # realized | existing | exited
    sa.Column("entered_at", UtcDateTime, nullable=False),
    sa.Column("exited_at", UtcDateTime, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("status in ('realized', 'existing', 'exited')", name="status"),
    sa.Index("ix_memberships_profile_pk", "profile_pk"),
)

# Streaming evaluation (cdp/segments/streaming.py): per profile, an instant no later than the first
# at which any of its timed streaming segments can change its answer without new data (migration
# 0018; was one row per segment); the due job re-evaluates all of them then.
segment_due = sa.Table(
    "segment_due", metadata,
    sa.Column("profile_pk", Key, sa.ForeignKey("profiles.pk", ondelete="CASCADE"), primary_key=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=False),
    sa.Index("ix_segment_due_due_at", "due_at"),
)

# Profiles due because a timed streaming segment was saved (migration 0023): at ``due_at`` (the
# earliest save not yet evaluated for the profile) the due job evaluates the timed streaming
# segments evaluated at or after it — not all of the profile's timed segments, as for segment_due.
segment_due_saved = sa.Table(
    "segment_due_saved", metadata,
    sa.Column("profile_pk", Key, sa.ForeignKey("profiles.pk", ondelete="CASCADE"), primary_key=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=False),
    sa.Index("ix_segment_due_saved_due_at", "due_at"),
)


# A counter per sandbox that database triggers (migration 0015) raise on every insert, update and
# delete of its segments, by any writer: streaming evaluation compares one number to know that the
# segments it compiled are still the ones in force, instead of reading every definition per record.
segment_versions = sa.Table(
    "segment_versions", metadata,
    sa.Column("sandbox", sa.String(64), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)

# The same for what streaming ingestion reads per request (migration 0016's triggers on the
# sandbox's schema, datasets, identity namespaces and identity settings): cdp/ingestion/config.py
# keeps them per process and reads only this number per request.
ingestion_versions = sa.Table(
    "ingestion_versions", metadata,
    sa.Column("sandbox", sa.String(64), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)

# ---- the service (cdp/api): keys, per-sandbox schemas, datasets -------------------------------

# Sandboxes (cdp/sandboxes): a sandbox exists before anything is done in it (an admin creates it;
# ``prod`` is created by the migration that made this table). The API answers 404
# ``unknown_sandbox`` for a name without a row, so a typo in X-Sandbox writes nothing.
sandboxes = sa.Table(
    "sandboxes", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("description", sa.String(1024), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# API keys (cdp/auth): only a SHA-256 of the key is kept; ``key_id`` is the public part of the key
# (``cdp_<key_id>_<secret>``) and finds the row. ``sandbox`` NULL: the key works in every sandbox.
api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("sandbox", sa.String(64), nullable=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("key_id"),
    sa.CheckConstraint("role in ('admin', 'data_steward', 'marketer', 'reader')", name="role"),
)

# The schema in force per sandbox (cdp/schema_registry): Schema.to_dict() as JSON. No row: the
# Luma schema. ``version`` counts replacements (1 for the first stored schema).
sandbox_schemas = sa.Table(
    "sandbox_schemas", metadata,
    sa.Column("sandbox", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("document", Document, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Datasets (cdp/datasets): a named source of records of one kind, with data-usage labels on the
# dataset (a JSON list) and on its fields (a JSON object: field path → list of labels).
datasets = sa.Table(
    "datasets", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("labels", Document, nullable=False),
    sa.Column("field_labels", Document, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("sandbox", "name"),
    sa.CheckConstraint("kind in ('profile', 'event')", name="kind"),
)


# Background work (cdp/jobs): one row per job of any kind — a batch file, later segment runs,
# exports, deliveries. ``run_at`` is the next instant the job may run (claimed by the worker that
# finds it due: ``status = 'queued' AND run_at <= now``, the index below); ``worker`` and
# ``heartbeat_at`` say who runs it and when it last showed life; ``attempts`` counts claims
# against ``max_attempts``; ``interval_seconds`` makes it recurring. ``key`` is a domain's name
# for what the job is about (a batch's id): one job per (kind, key).
jobs = sa.Table(
    "jobs", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("key", sa.String(200), nullable=True),
    sa.Column("sandbox", sa.String(64), nullable=True),
    sa.Column("payload", Document, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("run_at", UtcDateTime, nullable=False),
    sa.Column("interval_seconds", sa.Float, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("worker", sa.String(128), nullable=True),
    sa.Column("heartbeat_at", UtcDateTime, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("progress_done", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("progress_total", sa.BigInteger, nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=True),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.CheckConstraint("status in ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"),
    sa.UniqueConstraint("kind", "key"),
    sa.Index("ix_jobs_status_run_at", "status", "run_at"),
)

# Batch files (cdp/ingestion): one row per uploaded file, with its mapping, status and counts;
# the file itself in ``ingestion_batch_files`` (so a job can be run again after a crash), its
# per-row errors in ``ingestion_errors``. The run itself — attempts, worker, heartbeat — is its job: the row of
# ``jobs`` of kind ``ingestion.batch`` whose key is the batch's id.
ingestion_batches = sa.Table(
    "ingestion_batches", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("dataset_pk", Key, sa.ForeignKey("datasets.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("filename", sa.String(512), nullable=True),
    sa.Column("file_sha256", sa.String(64), nullable=False),
    sa.Column("mapping", Document, nullable=True),
    sa.Column("error_threshold", sa.Float, nullable=False),
    sa.Column("total_rows", sa.Integer, nullable=False),
    sa.Column("accepted_rows", sa.Integer, nullable=False),
    sa.Column("rejected_rows", sa.Integer, nullable=False),
    sa.Column("duplicate_rows", sa.Integer, nullable=False),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=True),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.CheckConstraint("status in ('queued', 'processing', 'succeeded', 'failed')", name="status"),
    sa.Index("ix_ingestion_batches_sandbox_dataset_pk", "sandbox", "dataset_pk"),
)

# The file of a batch, in a table of its own: updating a batch's status never rewrites its file
# (SQLite rewrites a whole row on update, blob included), and the file is its row's last value,
# which SQLite can create empty at its full size and fill a chunk at a time (incremental blob I/O).
# On PostgreSQL ``content`` is stored uncompressed (migration 0005), so a slice of it is read alone.
ingestion_batch_files = sa.Table(
    "ingestion_batch_files", metadata,
    sa.Column("batch_pk", Key, sa.ForeignKey("ingestion_batches.pk", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
)

# ``raw``: the row as read, at most RAW_MAX_BYTES of it (cdp/ingestion/readers.py);
# ``raw_truncated`` says it was cut and ``raw_bytes`` how long the row was.
ingestion_errors = sa.Table(
    "ingestion_errors", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("batch_pk", Key, sa.ForeignKey("ingestion_batches.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("row_number", sa.Integer, nullable=False),
    sa.Column("column", sa.String(512), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("raw_truncated", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("raw_bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_ingestion_errors_batch_pk_row_number", "batch_pk", "row_number"),
)


# ---- identity (cdp/identity) -----------------------------------------------------------------------

# Custom identity namespaces of a sandbox (the built-in ones are in code, cdp/identity/namespaces.py).
# ``kind`` orders what the graph limit drops first: cookie, then device, then person.
identity_namespaces = sa.Table(
    "identity_namespaces", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("sandbox", "code"),
    sa.CheckConstraint("kind in ('cookie', 'device', 'person')", name="kind"),
)

# Identity settings of a sandbox (no row: the defaults): the merge policy (timestamp-ordered, or
# dataset precedence with ``dataset_order``: dataset ids, the first wins) and the graph limit
# (identities per profile).
identity_settings = sa.Table(
    "identity_settings", metadata,
    sa.Column("sandbox", sa.String(64), primary_key=True),
    sa.Column("merge_policy", sa.String(32), nullable=False),
    sa.Column("dataset_order", Document, nullable=False),
    sa.Column("graph_limit", sa.Integer, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # linking rules (cdp/identity/rules.py); NULL: the defaults
    sa.Column("unique_namespaces", Document, nullable=True),
    sa.Column("namespace_priority", Document, nullable=True),
    sa.CheckConstraint("merge_policy in ('timestamp_ordered', 'dataset_precedence')", name="merge_policy"),
)

# Attribute provenance: for each profile attribute (leaf path), the latest value each dataset gave
# it and where it came from (a batch row, or a record of a streaming request). ``removed``: the
# dataset's latest word was null (a tombstone). The profile's ``attributes`` is the merge policy
# applied to these rows; a merge of profiles re-applies it to the union.
attribute_sources = sa.Table(
    "attribute_sources", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    # the keys are checked, and their deletes cascaded (ON DELETE CASCADE for the profile and the
    # dataset, SET NULL for the batch), by triggers rather than foreign keys (migration 0022): on
    # PostgreSQL an insert's keys once per statement, not once per row and key
    sa.Column("profile_pk", Key, nullable=False),
    sa.Column("path", sa.String(512), nullable=False),
    sa.Column("dataset_pk", Key, nullable=False),
    sa.Column("value", Document, nullable=True),
    sa.Column("removed", sa.Boolean, nullable=False),
    sa.Column("observed_at", UtcDateTime, nullable=False),
    sa.Column("batch_pk", Key, nullable=True),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("record_index", sa.Integer, nullable=True),
    # the identities of the record that wrote this word (as on events: a split follows them)
    sa.Column("identities", Document, nullable=True),
    sa.UniqueConstraint("profile_pk", "path", "dataset_pk"),
    # governance: which datasets supplied an attribute (cdp/governance/lineage.py)
    sa.Index("ix_attribute_sources_dataset_pk_path", "dataset_pk", "path"),
)

# Identities the graph limit removed from a profile (reported with the profile; the events stay).
# the identity graph's edges: two identities seen together in a record, when (first and last) and by
# which record last (cdp/identity/rules.py). A link the linking rules removed stays, with why.
identity_links = sa.Table(
    "identity_links", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    # the keys are checked, and their deletes cascaded (ON DELETE CASCADE for the profile and the two
    # identities, SET NULL for the dataset and the batch), by triggers rather than foreign keys
    # (migration 0021): on PostgreSQL an insert's keys once per statement, not once per row and key
    sa.Column("profile_pk", Key, nullable=False),
    sa.Column("a_pk", Key, nullable=False),
    sa.Column("b_pk", Key, nullable=False),
    sa.Column("first_seen", UtcDateTime, nullable=False),
    sa.Column("last_seen", UtcDateTime, nullable=False),
    sa.Column("seen_order", sa.Integer, nullable=False),  # the record's place in its write: ties of last_seen
    sa.Column("dataset_pk", Key, nullable=True),
    sa.Column("batch_pk", Key, nullable=True),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("record_index", sa.Integer, nullable=True),
    sa.Column("removed_at", UtcDateTime, nullable=True),
    sa.Column("removed_reason", sa.Text, nullable=True),
    sa.UniqueConstraint("a_pk", "b_pk"),
    sa.Index("ix_identity_links_profile_pk", "profile_pk"),
    sa.Index("ix_identity_links_b_pk", "b_pk"),
)
identity_removals = sa.Table(
    "identity_removals", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("profile_pk", Key, sa.ForeignKey("profiles.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("namespace", sa.String(64), nullable=False),
    sa.Column("value", sa.String(512), nullable=False),
    sa.Column("removed_at", UtcDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_identity_removals_profile_pk", "profile_pk"),
)

# Profiles merged into another: the merged-away id still finds the survivor.
profile_merges = sa.Table(
    "profile_merges", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("survivor_pk", Key, sa.ForeignKey("profiles.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("merged_external_id", sa.String(256), nullable=False),
    sa.Column("merged_at", UtcDateTime, nullable=False),
    sa.Column("identities_moved", sa.Integer, nullable=False),
    sa.Column("events_moved", sa.Integer, nullable=False),
    sa.UniqueConstraint("sandbox", "merged_external_id"),
    sa.Index("ix_profile_merges_survivor_pk", "survivor_pk"),
)

# Privacy deletions: that one happened, by whom, and how much went — never the personal data.
privacy_deletions = sa.Table(
    "privacy_deletions", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("profile_external_id", sa.String(256), nullable=False),
    sa.Column("requested_by", sa.String(64), nullable=False),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.Column("identities", sa.Integer, nullable=False),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("memberships", sa.Integer, nullable=False),
    sa.Column("attribute_sources", sa.Integer, nullable=False),
    sa.Index("ix_privacy_deletions_sandbox_requested_at", "sandbox", "requested_at"),
)


# ---- segments (cdp/segments) ---------------------------------------------------------------------

# The reference graph: segment ``segment_pk`` reads ``in segment`` of ``depends_on_pk``. Kept in
# step with the expressions by the service; a used segment cannot be deleted (no cascade).
segment_dependencies = sa.Table(
    "segment_dependencies", metadata,
    sa.Column("segment_pk", Key, sa.ForeignKey("segments.pk", ondelete="CASCADE"), primary_key=True),
    sa.Column("depends_on_pk", Key, sa.ForeignKey("segments.pk"), primary_key=True),
    sa.Index("ix_segment_dependencies_depends_on_pk", "depends_on_pk"),
)

# Size over time, one row per segment and hour (``at``: the start of the hour, UTC): the size after
# the last change in that hour, and the entries and exits during it (batch runs and streaming).
segment_history = sa.Table(
    "segment_history", metadata,
    sa.Column("segment_pk", Key, sa.ForeignKey("segments.pk", ondelete="CASCADE"), primary_key=True),
    sa.Column("at", UtcDateTime, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("entered", sa.BigInteger, nullable=False),
    sa.Column("exited", sa.BigInteger, nullable=False),
)

# The membership change outbox: every entry and exit, written in the transaction that changed the
# membership; delivery (destinations) reads it in ``pk`` order. No foreign keys: a change outlives
# the profile or segment it was about (the key and the external id say which).
membership_changes = sa.Table(
    "membership_changes", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("segment_pk", Key, nullable=False),
    sa.Column("segment_key", sa.String(128), nullable=False),
    sa.Column("profile_pk", Key, nullable=False),
    sa.Column("profile_id", sa.String(256), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # entered | exited
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # batch | streaming | merge | save
    sa.CheckConstraint("status in ('entered', 'exited')", name="status"),
    sa.Index("ix_membership_changes_sandbox_pk", "sandbox", "pk"),
    sa.Index("ix_membership_changes_segment_pk_pk", "segment_pk", "pk"),  # an activation reads its segment's
)

# Batch evaluation runs (POST /v1/segment-jobs): which segments (null: all active ones), the
# instant they were evaluated at, and counts per segment key ({"realized", "existing", "exited"}).
segment_jobs = sa.Table(
    "segment_jobs", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("segments", Document, nullable=True),
    sa.Column("counts", Document, nullable=False),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("requested_by", sa.String(64), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("as_of", UtcDateTime, nullable=True),
    sa.Column("started_at", UtcDateTime, nullable=True),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.CheckConstraint("status in ('queued', 'running', 'succeeded', 'failed')", name="status"),
    sa.Index("ix_segment_jobs_sandbox_status", "sandbox", "status"),
)


# The tables of the later domains, in modules of their own, on the same metadata (imported here, after
# the names they use, so that `from cdp.storage.models import policies` and Alembic see every table).
from cdp.storage.models.governance import custom_labels, marketing_actions, policies  # noqa: E402
from cdp.storage.models.sources import source_files, source_message_issues, source_runs, sources  # noqa: E402
from cdp.storage.models.activation import activation_members, activations, deliveries, destinations  # noqa: E402
