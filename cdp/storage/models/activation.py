"""The destination and activation tables (cdp/activation): destinations, activations, what each
destination holds, deliveries."""

from __future__ import annotations

import sqlalchemy as sa

from cdp.storage.models import Document, Key, UtcDateTime, metadata

# ---- destinations and activation (cdp/activation) ---------------------------------------------

# Where audiences go: a webhook (streaming) or a file directory (batch). ``config`` never holds
# the webhook's secret: it lives in ``secret`` alone, which no read returns.
destinations = sa.Table(
    "destinations", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("marketing_actions", Document, nullable=False),
    sa.Column("consent", sa.String(512), nullable=True),
    sa.Column("config", Document, nullable=False),
    sa.Column("secret", sa.String(512), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("sandbox", "name"),
    sa.CheckConstraint("type in ('webhook', 'file')", name="type"),
)

# A segment onto a destination. ``cursor``: the last outbox row (membership_changes.pk) this
# activation has turned into deliveries or exported; ``backfill_after``: while the members the
# segment had when the activation started are being sent (the profile pk reached; null: done).
activations = sa.Table(
    "activations", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("segment_pk", Key, sa.ForeignKey("segments.pk", ondelete="RESTRICT"), nullable=False),
    sa.Column("destination_pk", Key, sa.ForeignKey("destinations.pk", ondelete="RESTRICT"), nullable=False),
    sa.Column("attributes", Document, nullable=False),
    sa.Column("identities", Document, nullable=False),
    sa.Column("start_at", UtcDateTime, nullable=False),
    sa.Column("end_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("paused_reason", sa.Text, nullable=True),
    sa.Column("violations", Document, nullable=True),
    sa.Column("cursor", Key, nullable=False, server_default="0"),
    sa.Column("backfill_after", Key, nullable=True),
    sa.Column("last_export_at", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("segment_pk", "destination_pk"),
    sa.CheckConstraint("status in ('active', 'paused', 'ended')", name="status"),
    sa.Index("ix_activations_destination_pk", "destination_pk"),
)

# What a destination holds of each profile of an activation: ``exported`` (sent, with the
# identities it was sent with, so its removal can name them even after the profile is gone) or
# ``excluded`` (a member without the destination's consent). No row: not a member there.
activation_members = sa.Table(
    "activation_members", metadata,
    sa.Column("activation_pk", Key, sa.ForeignKey("activations.pk", ondelete="CASCADE"), primary_key=True),
    sa.Column("profile_pk", Key, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("identities", Document, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("state in ('exported', 'excluded')", name="state"),
    sa.Index("ix_activation_members_activation_pk_state", "activation_pk", "state"),
)

# The delivery log: a webhook POST of a batch of changes (retried with backoff until delivered or
# dead), or a file export. ``changes`` holds what is sent, so a retry sends the same body.
deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("pk", Key, primary_key=True, autoincrement=True),
    sa.Column("sandbox", sa.String(64), nullable=False),
    sa.Column("destination_pk", Key, sa.ForeignKey("destinations.pk", ondelete="CASCADE"), nullable=False),
    sa.Column("activation_pk", Key, sa.ForeignKey("activations.pk", ondelete="SET NULL"), nullable=True),
    sa.Column("delivery_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("changes", Document, nullable=False),
    sa.Column("change_count", sa.Integer, nullable=False),
    sa.Column("excluded_no_consent", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime, nullable=True),
    sa.Column("response_status", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("file", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("delivered_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("delivery_id"),
    sa.CheckConstraint("status in ('pending', 'retrying', 'delivered', 'dead')", name="status"),
    sa.Index("ix_deliveries_destination_pk_pk", "destination_pk", "pk"),
    sa.Index("ix_deliveries_status_destination_pk_pk", "status", "destination_pk", "pk"),
)
