"""The governance tables (cdp/governance): custom labels, marketing actions, policies."""

from __future__ import annotations

import sqlalchemy as sa

from cdp.storage.models import Document, Key, UtcDateTime, metadata

# ---- governance (cdp/governance) -----------------------------------------------------------------

# Custom data-usage labels of a sandbox (the standard C1–C12, I1–I2, S1–S2 live in code).
custom_labels = sa.Table(
    "custom_labels", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("sandbox", "name"),
)

# Custom marketing actions of a sandbox (the core ones live in code).
marketing_actions = sa.Table(
    "marketing_actions", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("sandbox", "key"),
)

# Data-usage policies: a marketing action (a key, core or custom) denied when the deny condition
# over labels holds. ``deny`` is the canonical text, ``deny_tree`` its JSON form; only enabled
# policies are evaluated.
policies = sa.Table(
    "policies", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("marketing_action", sa.String(64), nullable=False),
    sa.Column("deny", sa.Text, nullable=False),
    sa.Column("deny_tree", Document, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("sandbox", "name"),
    sa.CheckConstraint("status in ('draft', 'enabled')", name="status"),
    sa.Index("ix_policies_sandbox_marketing_action_status", "sandbox", "marketing_action", "status"),
)
