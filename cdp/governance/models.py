"""API shapes of governance (../shared/API.md, "Governance"): labels, marketing actions, policies,
and the answer of a policy evaluation with its violations and their lineage."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cdp.expressions.models import MAX_EXPRESSION_CHARS
from cdp.governance.policy_language import MAX_CHARS
from cdp.text import StoredText

LABEL_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
ACTION_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_EXPORTED = 1000


class LabelFamily(StrEnum):
    contract = "contract"
    identity = "identity"
    sensitive = "sensitive"
    custom = "custom"


class LabelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "name": "PARTNER_ONLY", "description": "Shared with us by a partner; may only be used in our own channels"}})

    name: str = Field(pattern=LABEL_PATTERN, description="A letter, then up to 63 letters, digits, `_` or `-`; "
                                                         "case-sensitive; not a standard label, not AND or OR.")
    description: StoredText | None = Field(default=None, max_length=10_000)


class LabelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: StoredText | None = Field(default=None, max_length=10_000)


class LabelRead(BaseModel):
    name: str
    family: LabelFamily
    standard: bool = Field(description="One of the standard labels (C1–C12, I1–I2, S1–S2).")
    title: str | None = Field(description="A short name (standard labels).")
    description: str | None
    created_at: datetime | None = Field(description="When a custom label was created (null: standard).")


class MarketingActionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "key": "sms_targeting", "name": "SMS targeting", "description": "Text messages to customers"}})

    key: str = Field(pattern=ACTION_PATTERN, description="Lower-case letters, digits and `_` (up to 64), starting "
                                                         "with a letter; not a core action's key.")
    name: StoredText = Field(min_length=1, max_length=256)
    description: StoredText | None = Field(default=None, max_length=10_000)


class MarketingActionUpdate(BaseModel):
    """Only the fields given change; the key never does."""

    model_config = ConfigDict(extra="forbid")

    # name may be left out but not null (the document says so: no null type)
    name: StoredText = Field(default=None, min_length=1, max_length=256)  # type: ignore[assignment]
    description: StoredText | None = Field(default=None, max_length=10_000)


class MarketingActionRead(BaseModel):
    key: str
    name: str
    description: str | None
    core: bool = Field(description="One of the core actions every sandbox has.")
    created_at: datetime | None = Field(description="When a custom action was created (null: core).")


class PolicyStatus(StrEnum):
    draft = "draft"
    enabled = "enabled"


DenyText = Field(min_length=1, max_length=MAX_CHARS, description="Labels combined with AND, OR and parentheses, e.g. "
                 "`C4 OR (I1 AND S1)`: the marketing action is denied when the labels in play make it true.")


class PolicyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "name": "No email targeting of sensitive identified data", "marketing_action": "email_targeting",
        "deny": "C4 OR (I1 AND S1)", "status": "enabled"}})

    name: StoredText = Field(min_length=1, max_length=256)
    marketing_action: str = Field(min_length=1, max_length=64, description="The key of a core or custom action.")
    deny: str = DenyText
    status: PolicyStatus = Field(default=PolicyStatus.draft, description="Only enabled policies are evaluated.")
    description: StoredText | None = Field(default=None, max_length=10_000)


class PolicyUpdate(BaseModel):
    """Only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    # name, marketing_action, deny and status may be left out but not null (the document says so: no null type)
    name: StoredText = Field(default=None, min_length=1, max_length=256)  # type: ignore[assignment]
    marketing_action: str = Field(default=None, min_length=1, max_length=64)  # type: ignore[assignment]
    deny: str = Field(default=None, min_length=1, max_length=MAX_CHARS)  # type: ignore[assignment]
    status: PolicyStatus = None  # type: ignore[assignment]
    description: StoredText | None = Field(default=None, max_length=10_000)


class PolicyRead(BaseModel):
    id: int
    name: str
    description: str | None
    marketing_action: str
    deny: str = Field(description="The deny condition, canonical.")
    deny_tree: dict[str, Any] = Field(description='Its tree: {"label": name}, {"and": [...]} or {"or": [...]}.')
    labels: list[str] = Field(description="The labels the condition names.")
    status: PolicyStatus
    created_at: datetime
    updated_at: datetime


class PolicyEvaluate(BaseModel):
    """A segment (by key) or an expression, or neither; and the attributes to be exported."""

    # The document states the rule: at most one of segment and expression, and at least one of them
    # or a non-empty attributes. segment and expression may be left out but not null.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "example": {"marketing_action": "email_targeting", "segment": "gift-givers", "attributes": ["email"]},
        "not": {"required": ["segment", "expression"]},
        "anyOf": [{"required": ["segment"]}, {"required": ["expression"]},
                  {"required": ["attributes"], "properties": {"attributes": {"minItems": 1}}}]})

    marketing_action: str = Field(min_length=1, max_length=64)
    segment: StoredText = Field(default=None, min_length=1, max_length=128,  # type: ignore[assignment]
                                description="A saved segment's key.")
    expression: str = Field(default=None, min_length=1, max_length=MAX_EXPRESSION_CHARS)  # type: ignore[assignment]
    attributes: list[str] = Field(default_factory=list, max_length=MAX_EXPORTED,
                                  description="Profile attributes to be exported (field paths; an object path "
                                              "such as `home_address` stands for every field under it).")

    @model_validator(mode="after")
    def _one_source(self) -> PolicyEvaluate:
        if self.segment is not None and self.expression is not None:
            raise ValueError("give at most one of segment and expression")
        if self.segment is None and self.expression is None and not self.attributes:
            raise ValueError("give a segment, an expression or attributes to evaluate")
        return self


class DatasetRef(BaseModel):
    id: int
    name: str


class LineageStep(BaseModel):
    """attribute → dataset → label → (the violation's) policy."""

    attribute: str = Field(description="The field path (a profile attribute, or an event field).")
    kind: str = Field(description="`profile` (an attribute) or `event` (a field of events).")
    use: str = Field(description="`read` (the expression reads it) or `export` (it is exported).")
    dataset: DatasetRef
    label: str
    level: str = Field(description="`field`: the label is on the dataset's field; `dataset`: on the whole dataset.")
    via_segment: str | None = Field(default=None, description="The referenced segment whose expression reads it.")


class PolicyRef(BaseModel):
    id: int
    name: str
    deny: str


class Violation(BaseModel):
    policy: PolicyRef
    marketing_action: str
    labels: list[str] = Field(description="The labels in play that made the deny condition true.")
    lineage: list[LineageStep]


class PolicyDecision(BaseModel):
    allowed: bool
    marketing_action: str
    labels: list[str] = Field(description="Every label in play (on the datasets of the fields in play).")
    violations: list[Violation]
