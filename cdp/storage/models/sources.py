"""The source connector tables (cdp/sources): sources, their runs, dropped files, message issues."""

from __future__ import annotations

import sqlalchemy as sa

from cdp.storage.models import Document, Key, UtcDateTime, metadata

# ---- sources (cdp/sources) ---------------------------------------------------------------------------

# A connector bound to a dataset pair: the analytics SDKs' tracking API, a database table, a file
# drop. ``config`` is what reads show; ``secrets`` (a database password) is never returned;
# ``write_key_hash`` (SHA-256 of a tracking API's write key, shown once at creation) finds the
# source of an SDK's request. The message counters count what the tracking API took in.
sources = sa.Table(
    "sources", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("profile_dataset_pk", Key, sa.ForeignKey("datasets.pk", ondelete="RESTRICT"), nullable=True),
    sa.Column("event_dataset_pk", Key, sa.ForeignKey("datasets.pk", ondelete="RESTRICT"), nullable=True),
    sa.Column("config", Document, nullable=False),
    sa.Column("secrets", Document, nullable=False),
    sa.Column("mapping", Document, nullable=True),
    sa.Column("schedule", Document, nullable=True),
    sa.Column("write_key_hash", sa.String(64), nullable=True),
    sa.Column("messages_accepted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("messages_rejected", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("messages_duplicate", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_message_at", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("sandbox", "name"),
    sa.UniqueConstraint("write_key_hash"),
    sa.CheckConstraint("type in ('tracking_api', 'database', 'file_drop')", name="type"),
    sa.CheckConstraint("status in ('active', 'paused')", name="status"),
)

# One run of a database or file-drop source (scheduled or asked for): the batch it submitted
# (a database run) — its outcome is the batch's — and the cursor range it read.
source_runs = sa.Table(
    "source_runs", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("source_pk", Key, sa.ForeignKey("sources.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("job_pk", Key, nullable=True),
    sa.Column("batch_pk", Key, sa.ForeignKey("ingestion_batches.pk", ondelete="SET NULL"), nullable=True),
    sa.Column("cursor_from", Document, nullable=True),
    sa.Column("cursor_to", Document, nullable=True),
    sa.Column("rows_read", sa.Integer, nullable=False, server_default="0"),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=True),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.CheckConstraint("status in ('queued', 'running', 'submitted', 'succeeded', 'failed', 'skipped')",
                       name="status"),
    sa.Index("ix_source_runs_source_pk", "source_pk"),
)

# The files a file drop picked up: once per (name, content), with the batch that ingested it and
# where the file went (done/ or failed/).
source_files = sa.Table(
    "source_files", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("source_pk", Key, sa.ForeignKey("sources.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("run_pk", Key, sa.ForeignKey("source_runs.pk", ondelete="SET NULL"), nullable=True),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("batch_pk", Key, sa.ForeignKey("ingestion_batches.pk", ondelete="SET NULL"), nullable=True),
    sa.Column("job_pk", Key, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("moved_to", sa.Text, nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("source_pk", "name", "sha256"),
    sa.CheckConstraint("status in ('ingesting', 'done', 'failed')", name="status"),
)

# Messages of the tracking API that were rejected (``level = 'error'``) or stored with a warning
# (an unknown trait): kept for inspection, newest first, at most MAX_MESSAGE_ISSUES per source.
source_message_issues = sa.Table(
    "source_message_issues", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("source_pk", Key, sa.ForeignKey("sources.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("message_index", sa.Integer, nullable=False),
    sa.Column("message_id", sa.String(256), nullable=True),
    sa.Column("type", sa.String(32), nullable=True),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("errors", Document, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("raw_bytes", sa.BigInteger, nullable=False),
    sa.CheckConstraint("level in ('error', 'warning')", name="level"),
    sa.Index("ix_source_message_issues_source_pk_pk", "source_pk", "pk"),
)
