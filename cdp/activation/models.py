"""API shapes of destinations and activation (API.md, "Destinations and activation"): a
destination and its configuration per type, an activation, the delivery log, and the data-flow
graph."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cdp.governance.models import Violation
from cdp.text import StoredText

ACTION_KEY = r"^[a-z][a-z0-9_]{0,63}$"
# a profile attribute path (checked against the schema in force by the service)
PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,15}$"
NAMESPACE_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
# a folder under the export root: relative, no `..` (the service refuses those with invalid_destination)
DIRECTORY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}$"
SEGMENT_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
MAX_ATTRIBUTES = 100


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DestinationType(StrEnum):
    webhook = "webhook"
    file = "file"


class WebhookConfig(Strict):
    """A POST of each batch of membership changes, signed with the secret."""

    url: str = Field(pattern=r"^https?://[^\s/?#]+[^\s]*$", max_length=2048,
                     description="Where the changes are POSTed (http or https).")
    secret: str = Field(min_length=16, max_length=512, pattern=r"^[\x21-\x7e]+$",
                        description="The HMAC-SHA256 key of `X-CDP-Signature`; stored, never returned.")


class FileFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


class FileMode(StrEnum):
    full = "full"
    incremental = "incremental"


class FileConfig(Strict):
    """Files written into a folder under the export root (CDP_EXPORT_ROOT), each written to a
    temporary name and renamed into place, with a manifest."""

    directory: str = Field(pattern=DIRECTORY_PATTERN, description="A folder under the export root (relative; "
                                                                 "created when missing).")
    format: FileFormat = FileFormat.csv
    mode: FileMode = Field(default=FileMode.full, description="`full`: every member with consent; `incremental`: "
                                                              "the entries and exits since the last export.")
    every_minutes: int | None = Field(default=None, ge=1, le=525_600,
                                      description="Export on this schedule; null: only when asked "
                                                  "(POST /v1/destinations/{id}/export).")


class _DestinationCreate(Strict):
    name: StoredText = Field(min_length=1, max_length=256)
    marketing_actions: list[str] = Field(min_length=1, max_length=20, description="Keys of the marketing actions "
                                         "the destination performs; each is evaluated at activation.")
    consent: str | None = Field(default=None, pattern=PATH_PATTERN, max_length=512,
                                description='The profile attribute that must be "y" for a profile to be sent '
                                            '(e.g. `consents.email`); null: no consent needed.')


class WebhookDestinationCreate(_DestinationCreate):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "name": "Luma Email", "type": "webhook", "marketing_actions": ["email_targeting"],
        "consent": "consents.email", "config": {"url": "https://email.example.com/cdp",
                                                "secret": "s3cret-s3cret-s3cret"}}})

    type: Literal["webhook"]
    config: WebhookConfig


class FileDestinationCreate(_DestinationCreate):
    type: Literal["file"]
    config: FileConfig


DestinationCreate = Annotated[WebhookDestinationCreate | FileDestinationCreate, Field(discriminator="type")]


class DestinationUpdate(Strict):
    """Only what is given changes; a new webhook config replaces the old (secret included)."""

    name: StoredText = Field(default=None, min_length=1, max_length=256)  # type: ignore[assignment]
    marketing_actions: list[str] = Field(default=None, min_length=1, max_length=20)  # type: ignore[assignment]
    consent: str | None = Field(default=None, pattern=PATH_PATTERN, max_length=512)
    config: WebhookConfig | FileConfig = None  # type: ignore[assignment]


class WebhookConfigRead(BaseModel):
    url: str
    secret_set: bool = Field(description="A secret is stored (it is never returned).")


class DestinationRead(BaseModel):
    id: int
    name: str
    type: DestinationType
    marketing_actions: list[str]
    consent: str | None
    config: WebhookConfigRead | FileConfig
    activations: int = Field(description="How many activations send to it.")
    created_at: datetime
    updated_at: datetime


class ActivationStatus(StrEnum):
    active = "active"
    paused = "paused"
    ended = "ended"


class ActivationCreate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "segment": "gift-giving-cart-abandoners", "destination": 1, "attributes": ["email", "person.first_name"],
        "identities": ["email"]}})

    segment: str = Field(pattern=SEGMENT_KEY_PATTERN, description="The segment's key.")
    destination: int = Field(ge=1, le=2**63 - 1, description="The destination's id.")
    attributes: list[str] = Field(default_factory=list, max_length=MAX_ATTRIBUTES,
                                  description="Profile attribute paths sent with each change.")
    identities: list[str] = Field(default_factory=list, max_length=20,
                                  description="Identity namespaces sent with each change.")
    start: datetime | None = Field(default=None, description="Default: now.")
    end: datetime | None = Field(default=None, description="Default: 90 days after start.")


class ActivationUpdate(Strict):
    """The mapping, the end, or the status (`paused` stops sending; `active` resumes after the
    policies are evaluated again)."""

    attributes: list[str] = Field(default=None, max_length=MAX_ATTRIBUTES)  # type: ignore[assignment]
    identities: list[str] = Field(default=None, max_length=20)  # type: ignore[assignment]
    end: datetime = None  # type: ignore[assignment]
    status: Literal["active", "paused"] = None  # type: ignore[assignment]


class ActivationRead(BaseModel):
    id: int
    segment: str
    destination: int
    destination_name: str
    attributes: list[str]
    identities: list[str]
    start: datetime
    end: datetime
    status: ActivationStatus
    paused_reason: str | None = Field(description="Why it is paused (a policy now violated, or by request).")
    violations: list[Violation] = Field(description="The violations that paused it (empty otherwise).")
    members_exported: int = Field(description="Members the destination holds now.")
    excluded_no_consent: int = Field(description="Members left out for want of the destination's consent.")
    created_at: datetime
    updated_at: datetime


class DeliveryStatus(StrEnum):
    pending = "pending"
    retrying = "retrying"
    delivered = "delivered"
    dead = "dead"


class DeliveryRead(BaseModel):
    id: str = Field(description="The delivery id (what a receiver deduplicates by).")
    at: datetime = Field(description="When it was made.")
    status: DeliveryStatus
    attempts: int
    changes: int = Field(description="How many membership changes it carries (rows, for a file).")
    excluded_no_consent: int = Field(description="Changes left out for want of consent.")
    activation: int | None
    response_status: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    file: str | None = Field(default=None, description="The file written (file destinations).")


class DeliveryPage(BaseModel):
    items: list[DeliveryRead]
    next: str | None = Field(description="Pass as `cursor` for the next page (older deliveries); null on the last.")


class ExportRequested(BaseModel):
    destination: int
    job_id: int = Field(description="The export job (one file per active activation of the destination).")


class Redelivered(BaseModel):
    requeued: int = Field(description="Dead deliveries put back in the queue.")


class FlowNode(BaseModel):
    id: str = Field(description="`dataset:<id>`, `segment:<key>`, `activation:<id>` or `destination:<id>`.")
    kind: Literal["dataset", "segment", "activation", "destination"]
    name: str
    labels: list[str] = Field(description="Data-usage labels (a dataset's own and its fields'; for the others, "
                                          "every label that reaches them).")
    status: str | None = Field(description="A segment's or activation's status; for a destination its type.")
    policy: Literal["allowed", "violation"] | None = Field(
        description="For an activation: whether the policies allow it now.")
    details: dict[str, Any] = Field(default_factory=dict)


class FlowEdge(BaseModel):
    source: str
    target: str
    labels: list[str] = Field(description="The labels carried along this edge.")
    policy: Literal["allowed", "violation"] | None = None


class DataFlow(BaseModel):
    nodes: list[FlowNode]
    edges: list[FlowEdge]
