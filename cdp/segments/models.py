"""API shapes of segments (../shared/API.md, "Segments"): SegmentCreate, SegmentUpdate,
SegmentRead, members, estimates, history, batch evaluation jobs and single-profile evaluation."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cdp.expressions.models import MAX_EXPRESSION_CHARS
from cdp.text import Instant, StoredText

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
SegmentKey = Field(pattern=KEY_PATTERN, description="Letters, digits, `_`, `.` and `-` (up to 128; it starts with a "
                                                    "letter or digit). What `in segment \"key\"` names.")
ExpressionText = Field(min_length=1, max_length=MAX_EXPRESSION_CHARS, description="A PQL expression "
                                                                                   "(docs/language.md).")


class SegmentStatus(StrEnum):
    active = "active"
    draft = "draft"
    inactive = "inactive"


class Evaluation(StrEnum):
    streaming = "streaming"
    batch = "batch"


class MembershipStatus(StrEnum):
    realized = "realized"
    existing = "existing"
    exited = "exited"


class SegmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "key": "gift-givers", "name": "Gift-giving cart abandoners",
        "description": "Loyalty members whose recent cart holds something off their usual category and size",
        "expression": 'loyalty.tier is not null and exists event where type = "addToCart" within last 7 days',
        "status": "active", "evaluation": "streaming"}})

    key: str = SegmentKey
    name: StoredText = Field(min_length=1, max_length=256)
    description: StoredText | None = Field(default=None, max_length=10_000)
    expression: str = ExpressionText
    status: SegmentStatus = Field(default=SegmentStatus.active, description="Only active segments are evaluated.")
    evaluation: Evaluation = Field(default=Evaluation.batch, description="Batch: by batch runs (POST "
                                   "/v1/segment-jobs); streaming: also on each ingest (and by batch runs).")


class SegmentUpdate(BaseModel):
    """Only the fields given change; the key never does."""

    model_config = ConfigDict(extra="forbid")

    # name, expression, status and evaluation may be left out but not null (the document says so: no null type)
    name: StoredText = Field(default=None, min_length=1, max_length=256)  # type: ignore[assignment]
    description: StoredText | None = Field(default=None, max_length=10_000)
    expression: str = Field(default=None, min_length=1, max_length=MAX_EXPRESSION_CHARS)  # type: ignore[assignment]
    status: SegmentStatus = None  # type: ignore[assignment]
    evaluation: Evaluation = None  # type: ignore[assignment]


class SegmentRead(BaseModel):
    key: str
    name: str
    description: str | None
    expression: str = Field(description="As written.")
    canonical: str = Field(description="The canonical text of the expression.")
    status: SegmentStatus
    evaluation: Evaluation
    depends_on: list[str] = Field(description="Keys of the segments its expression references.")
    used_by: list[str] = Field(description="Keys of the segments whose expressions reference it.")
    created_at: datetime
    updated_at: datetime
    evaluated_at: datetime | None = Field(description="When a batch evaluation last wrote its memberships.")
    size: int = Field(description="Members now (memberships realized or existing).")
    scheduled: int = Field(default=0, description="Streaming, an answer that can change with time alone: profiles "
                                                  "with a re-evaluation scheduled (one instant per profile, at which "
                                                  "all such segments of the sandbox are re-evaluated).")


class MemberRead(BaseModel):
    profile_id: str
    status: MembershipStatus
    entered_at: datetime
    exited_at: datetime | None


class MemberPage(BaseModel):
    items: list[MemberRead]
    next: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class EstimateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "expression": 'loyalty.tier in ["gold", "platinum"] and count(event where type = "purchase" '
                      'within last 90 days) >= 3'}})

    expression: str = ExpressionText
    as_of: Instant | None = Field(default=None, description="Evaluate at this instant (default: now). ISO 8601; "
                                  "without an offset: UTC.")


class Estimate(BaseModel):
    count: int = Field(description="Qualifying profiles (estimated when sampled).")
    total_profiles: int
    sampled: bool = Field(description="True when the count comes from a random sample of profiles.")
    error_bound: float | None = Field(default=None, description="When sampled: the half-width of the 95% "
                                                               "confidence interval of count, in profiles.")
    sample_size: int | None = Field(default=None, description="When sampled: profiles in the sample.")
    sample: list[str] = Field(description="Ids of up to 20 qualifying profiles.")
    took_ms: float
    as_of: datetime


class HistoryPoint(BaseModel):
    at: datetime = Field(description="The start of the hour (UTC).")
    size: int = Field(description="Members at the end of the hour's last change.")
    entered: int
    exited: int


class History(BaseModel):
    segment: str
    points: list[HistoryPoint]


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class SegmentJobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segments: list[Annotated[str, Field(pattern=KEY_PATTERN)]] | None = Field(default=None, max_length=1000, description="Keys of active segments to "
                                       "evaluate (default: every active segment), run in dependency order.")


class SegmentCounts(BaseModel):
    realized: int = Field(description="Profiles that entered in this run.")
    existing: int = Field(description="Members that stayed.")
    exited: int = Field(description="Members that left in this run.")


class SegmentJobRead(BaseModel):
    id: int
    status: JobStatus
    segments: list[str] | None
    counts: dict[str, SegmentCounts]
    message: str | None = Field(description="Why it failed.")
    as_of: datetime | None = Field(description="The instant every segment of the run was evaluated at.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class IdentityRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(min_length=1, max_length=64)
    id: str = Field(min_length=1, max_length=1024)


class EvaluateRequest(BaseModel):
    """One of ``expression`` and ``segment``; one of ``profile``, ``identity`` and ``profile_id``."""

    # The document states the rule (exactly one of each pair/triple); the fields may be left out but
    # not null, so that "given" means "present" for the document and the service alike.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "example": {"segment": "gift-givers", "identity": {"namespace": "email", "id": "sarah.rose@example.com"},
                    "explain": True},
        "allOf": [{"oneOf": [{"required": ["expression"]}, {"required": ["segment"]}]},
                  {"oneOf": [{"required": ["profile"]}, {"required": ["identity"]}, {"required": ["profile_id"]}]}]})

    expression: str = Field(default=None, min_length=1, max_length=MAX_EXPRESSION_CHARS)  # type: ignore[assignment]
    segment: StoredText = Field(default=None, min_length=1, max_length=128,  # type: ignore[assignment]
                         description="A saved segment's key.")
    profile: dict[str, Any] = Field(default=None, description="A profile document (SPEC.md).")  # type: ignore[assignment]
    identity: IdentityRef = Field(default=None,  # type: ignore[assignment]
                                  description="A stored profile, by any of its identities.")
    profile_id: StoredText = Field(default=None, min_length=1, max_length=256,  # type: ignore[assignment]
                            description="A stored profile's id.")
    as_of: Instant | None = Field(default=None, description="Default: now. ISO 8601; without an offset: UTC.")
    explain: bool = Field(default=False, description="Add the value of every sub-expression.")

    @model_validator(mode="after")
    def _one_of_each(self) -> EvaluateRequest:
        if (self.expression is None) == (self.segment is None):
            raise ValueError("give exactly one of expression and segment")
        if sum(x is not None for x in (self.profile, self.identity, self.profile_id)) != 1:
            raise ValueError("give exactly one of profile, identity and profile_id")
        return self


class ExplainRow(BaseModel):
    depth: int
    expression: str
    value: str = Field(description="TRUE, FALSE, UNKNOWN, a value, or 'not evaluated'.")


class EvaluateResult(BaseModel):
    qualifies: bool
    as_of: datetime
    profile_id: str | None = Field(default=None, description="The stored profile evaluated, if one was.")
    segment: str | None = None
    explain: list[ExplainRow] | None = None
