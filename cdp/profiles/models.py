"""API shapes of single-profile evaluation: ProfileEvaluate (request), ProfileEvaluation (result)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cdp.expressions.models import Catalogue, Expression
from cdp.text import Instant


class ProfileEvaluate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "expression": 'loyalty.tier = "bronze" and exists event where type = "addToCart" within last 7 days',
        "profile": {"id": "p-001", "attributes": {"loyalty": {"tier": "bronze"}},
                    "events": [{"id": "e-1", "type": "addToCart", "timestamp": "2026-11-27T18:04:00Z"}]},
        "as_of": "2026-11-28T12:00:00Z"}})

    expression: str = Expression
    profile: dict[str, Any] = Field(
        description="A profile document (SPEC.md, 'The profile document'): an `id`, and optionally `identities`, "
                    "`attributes` and `events`. What does not fit the sandbox's schema is 422 `invalid_profile`.",
        json_schema_extra={"required": ["id"], "properties": {"id": {"type": "string", "minLength": 1}}})
    as_of: Instant | None = Field(default=None, description="The instant to evaluate at (default: now). "
                                                           "Without an offset: UTC. From 0001-01-01T00:00:00Z to "
                                                           "9999-12-31T23:59:59.999999Z.")
    segments: dict[str, str] | None = Catalogue


class ExplainRow(BaseModel):
    depth: int
    expression: str
    value: str = Field(description="TRUE, FALSE, UNKNOWN, a value, or 'not evaluated'.")


class ProfileEvaluation(BaseModel):
    qualifies: bool
    as_of: datetime
    explain: list[ExplainRow] = Field(description="The value of each sub-expression, the root first.")


# ---- stored profiles ---------------------------------------------------------------------------

class IdentityRead(BaseModel):
    namespace: str
    id: str
    first_seen: datetime
    last_seen: datetime | None


class RemovedIdentity(BaseModel):
    namespace: str
    id: str
    removed_at: datetime
    reason: str


class AttributeSource(BaseModel):
    """Where the value an attribute shows came from (lineage for governance)."""

    dataset_id: int
    dataset_name: str
    observed_at: datetime = Field(description="The record's `timestamp`, else when it was ingested.")
    batch_id: int | None = Field(description="The batch file the value came from, if any …")
    row_number: int | None = Field(description="… and its row there (as the batch's errors number rows).")
    request_id: str | None = Field(description="The streaming request the value came from, if any …")
    record_index: int | None = Field(description="… and the record's index in it.")


class MembershipRead(BaseModel):
    segment: str = Field(description="The segment's key.")
    name: str
    status: str = Field(description="realized, existing or exited.")
    entered_at: datetime
    exited_at: datetime | None


class LinkedIdentity(BaseModel):
    namespace: str
    id: str


class LinkRead(BaseModel):
    """An edge of the identity graph: two identities a record carried together."""

    identities: list[LinkedIdentity] = Field(description="The two identities.")
    first_seen: datetime
    last_seen: datetime = Field(description="When a record last carried both (what 'newest' means to the rules).")
    dataset_id: int | None = Field(description="The dataset of the last record that carried it (none: a link made "
                                               "for a profile that existed before links were kept).")
    batch_id: int | None = Field(description="The batch file of that record, if any …")
    row_number: int | None = Field(description="… and its row there.")
    request_id: str | None = Field(description="The streaming request of that record, if any …")
    record_index: int | None = Field(description="… and the record's index in it.")
    removed_at: datetime | None = Field(default=None, description="Removed links: when the linking rules removed it.")
    reason: str | None = Field(default=None, description="Removed links: why.")


class GraphInfo(BaseModel):
    size: int = Field(description="Identities the profile holds.")
    limit: int = Field(description="The sandbox's graph limit.")
    removed: list[RemovedIdentity] = Field(description="Identities the graph limit removed (newest first); the "
                                                       "profile's events and attributes stayed.")
    links: list[LinkRead] = Field(default_factory=list, description=(
        "The links that hold the profile together (the newest 200, newest first)."))
    removed_links: list[LinkRead] = Field(default_factory=list, description=(
        "Links of its identities the linking rules removed, with why (the newest 100)."))


class EventRead(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    type: str
    timestamp: datetime
    dataset_id: int | None = Field(default=None, description="The dataset it was ingested through.")


class ProfileRead(BaseModel):
    """A stored profile: the profile document of SPEC.md (id, identities, attributes, events) with
    what the identity graph knows about it."""

    id: str
    identities: list[IdentityRead]
    attributes: dict[str, Any] = Field(description="Merged by the sandbox's merge policy, nested as in the profile "
                                                   "document.")
    provenance: dict[str, AttributeSource] = Field(description="Per attribute path (`loyalty.tier`), where its "
                                                               "value came from. Attributes loaded without a "
                                                               "dataset have none.")
    events: list[EventRead] = Field(description="The newest events (see events_total; page with "
                                                "GET /v1/profiles/{id}/events).")
    events_total: int
    memberships: list[MembershipRead]
    graph: GraphInfo
    merged_ids: list[str] = Field(description="Ids of profiles merged into this one; they still find it.")
    created_at: datetime
    updated_at: datetime


class ProfileSummary(BaseModel):
    id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    identities: list[dict[str, str]] = Field(description="Up to 10 of its identities.")
    updated_at: datetime


class PrivacyDeletionRead(BaseModel):
    """A privacy deletion: that it happened, for which profile id, by which key, and how much was
    removed — never the personal data."""

    id: int
    profile_id: str
    requested_by: str = Field(description="The id of the API key that asked.")
    requested_at: datetime
    identities: int
    events: int
    memberships: int
    attribute_sources: int
