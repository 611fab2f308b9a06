"""API shapes of sources: the catalog, a source (create / read), its runs, and the tracking API's
kept messages; the configuration of each type (its JSON schema is the catalog's
``config_schema``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SourceType(StrEnum):
    tracking_api = "tracking_api"
    database = "database"
    file_drop = "file_drop"


class SourceStatus(StrEnum):
    active = "active"
    paused = "paused"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- configuration per type -------------------------------------------------------------------

class TrackingConfig(Strict):
    """The tracking API of the analytics SDKs (the Segment spec)."""

    channel: str | None = Field(default="web", description="The event field `channel` of events from web SDKs; "
                                "`screen` calls and messages whose `context.os.name` is iOS or Android get "
                                "`mobile`. null: not set.")


class TrackingMapping(Strict):
    """How the SDKs' messages map onto the schema; every table is merged over the defaults
    (docs/sources.md lists them)."""

    user_id: str = Field(default="crm_id", description="Namespace of `userId`.")
    anonymous_id: str = Field(default="ecid", description="Namespace of `anonymousId`.")
    previous_id: str | None = Field(default=None, description="Namespace of an alias's `previousId` "
                                    "(default: the namespace of `userId`: a server-side alias joins an old user id "
                                    "to the new one — unless the linking rules make that namespace unique, as "
                                    "`crm_id` is by default: then the alias is rejected and reported).")
    email: str | None = Field(default="email", description="Namespace of `traits.email` (identify and "
                              "`context.traits`); null: not an identity.")
    traits: dict[str, str | None] = Field(default_factory=dict, description="Trait (dotted path in `traits`) → "
                                          "profile field; null ignores the trait. A trait named like a profile "
                                          "field maps onto it without an entry.")
    events: dict[str, str | None] = Field(default_factory=dict, description="`track` event name → event type; "
                                          "null ignores the event. Names that are event types pass through.")
    properties: dict[str, str | None] = Field(default_factory=dict, description="Property (dotted path in "
                                              "`properties`) → event field; null ignores it. A property named like "
                                              "an event field maps onto it without an entry.")
    group: dict[str, str] = Field(default_factory=dict, description="`group` calls: `{\"group_id\": profile "
                                  "field}` stores the group's id on the member's profile; without it a group call "
                                  "is rejected (the schema has no accounts).")
    unknown: Literal["report", "reject", "ignore"] = Field(
        default="report", description="Traits and properties that map onto nothing: `report` stores the message "
                                      "without them and keeps a warning; `reject` rejects the message; `ignore` "
                                      "drops them without a word.")


class DatabaseConfig(Strict):
    """A table (or a read-only query) of a database reachable by a SQLAlchemy URL."""

    url: str = Field(description="SQLAlchemy URL (`postgresql://user:password@host/db`, `sqlite:///path.db`); the "
                                 "password is stored apart and never returned.")
    password: str | None = Field(default=None, description="The password, when not in the URL; never returned.")
    table: str | None = Field(default=None, description="A table (`schema.table` allowed). Give this or `query`.")
    query: str | None = Field(default=None, description="One read-only SELECT (run in a read-only transaction).")
    cursor_column: str | None = Field(default=None, description="An increasing column (`updated_at`, an id): each "
                                      "run reads the rows past the last successful run's end. Without it every "
                                      "run reads every row.")
    target: Literal["profile", "event"] = Field(default="profile", description="Which dataset of the pair the "
                                                "rows go to.")
    error_threshold: float = Field(default=0.05, ge=0, le=1, description="Fraction of a run's rows that may be "
                                   "rejected; over it the run fails and nothing of it is applied.")
    max_rows_per_run: int = Field(default=100_000, ge=1, le=1_000_000, description="Rows read by one run; the next "
                                  "run goes on from there (needs a cursor column).")


class FileDropConfig(Strict):
    """A folder on the server: new .csv / .jsonl files are ingested and moved to done/ or failed/."""

    directory: str = Field(description="Absolute path of the watched folder (under CDP_FILE_DROP_ROOT when set).")
    target: Literal["profile", "event"] = "profile"
    error_threshold: float = Field(default=0.05, ge=0, le=1)
    min_age_seconds: float = Field(default=5, ge=0, le=3600, description="A file modified more recently is left "
                                   "for the next run (it may still be being written).")


class Schedule(Strict):
    every_minutes: int = Field(ge=1, le=7 * 24 * 60, description="Run every this many minutes.")


class DatasetPair(Strict):
    # ids are 64-bit: a larger number is refused by its shape, not by the database (bigint out of range)
    profile: int | None = Field(default=None, ge=1, le=2**63 - 1,
                                description="The profile dataset (identify, alias; rows of a `profile` target).")
    event: int | None = Field(default=None, ge=1, le=2**63 - 1,
                              description="The event dataset (track, page, screen; rows of an `event` target).")


# ---- a source ---------------------------------------------------------------------------------

class SourceCreate(Strict):
    name: str = Field(min_length=1, max_length=256)
    type: SourceType
    datasets: DatasetPair
    config: dict[str, Any] | None = Field(default=None, description="As the type's `config_schema` says.")
    mapping: dict[str, Any] | None = Field(default=None, description="tracking_api: a TrackingMapping; database and "
                                           "file_drop: the batch mapping language (column → field).")
    schedule: Schedule | None = None


# The body of POST /v1/sources as the document states it: one shape per type (discriminated by
# `type`), each with its own `config` (and, for tracking_api, `mapping`), so that a config the
# type does not take is refused as the document says (422 validation_error), not after it.
# SourceCreate above is what the service works with (``SourceCreate.model_validate(body.model_dump(
# exclude_unset=True))``); the rules left to the service (invalid_source) are about stored data and
# the server: the datasets' kinds, the folder, the database URL.

class _SourceCreateBody(Strict):
    name: str = Field(min_length=1, max_length=256)
    datasets: DatasetPair
    schedule: Schedule | None = None


class TrackingSourceCreate(_SourceCreateBody):
    type: Literal[SourceType.tracking_api]
    config: TrackingConfig | None = Field(default=None, description="Default: every default.")
    mapping: TrackingMapping | None = Field(default=None, description="Merged over the defaults.")


class DatabaseSourceCreate(_SourceCreateBody):
    type: Literal[SourceType.database]
    config: DatabaseConfig
    mapping: dict[str, Any] = Field(description="The batch mapping language (column → field).")


class FileDropSourceCreate(_SourceCreateBody):
    type: Literal[SourceType.file_drop]
    config: FileDropConfig
    mapping: dict[str, Any] | None = Field(default=None, description="The batch mapping language (column → field).")


SourceCreateBody = Annotated[TrackingSourceCreate | DatabaseSourceCreate | FileDropSourceCreate,
                             Field(discriminator="type")]


class SourceUpdate(Strict):
    name: str = Field(default=None, min_length=1, max_length=256)  # type: ignore[assignment]  # not null
    config: dict[str, Any] | None = None
    mapping: dict[str, Any] | None = None
    schedule: Schedule | None = None


class SourceTypeRead(BaseModel):
    type: SourceType
    name: str
    description: str
    needs: list[str] = Field(description="What a source of this type needs, in words.")
    config_schema: dict
    mapping_schema: dict | None = None


class MessageStats(BaseModel):
    accepted: int
    rejected: int
    duplicate: int
    last_message_at: datetime | None


class RunCounts(BaseModel):
    total_rows: int = 0
    accepted_rows: int = 0
    rejected_rows: int = 0
    duplicate_rows: int = 0


class SourceFileRead(BaseModel):
    name: str
    status: Literal["ingesting", "done", "failed"]
    batch_id: int | None
    job_id: int | None
    moved_to: str | None
    message: str | None


class RunRead(BaseModel):
    id: int
    source_id: int
    trigger: Literal["manual", "schedule"]
    status: Literal["queued", "running", "succeeded", "failed", "skipped"]
    job_id: int | None = Field(description="The job that ran (or runs) the extraction.")
    batch_id: int | None = Field(description="A database run's batch: its rejected rows are at "
                                              "`GET /v1/batches/{batch_id}/errors`.")
    cursor_from: Any = Field(default=None, description="The cursor the run started after (exclusive).")
    cursor_to: Any = Field(default=None, description="The cursor of the last row it read.")
    rows_read: int
    counts: RunCounts
    files: list[SourceFileRead] = Field(default_factory=list, description="A file drop's files of this run.")
    message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class SourceRead(BaseModel):
    id: int
    name: str
    type: SourceType
    status: SourceStatus
    datasets: DatasetPair
    config: dict[str, Any] = Field(description="Credentials left out (`password_set` says whether one is stored).")
    mapping: dict[str, Any] | None
    schedule: Schedule | None
    endpoint: str | None = Field(default=None, description="tracking_api: the path an SDK's host setting points at "
                                 "(it posts to `<base URL><endpoint>/v1/batch`, `/v1/track`, …).")
    write_key: str | None = Field(default=None, description="tracking_api: the write key — in the answer to "
                                  "`POST /v1/sources` only.")
    write_key_hint: str | None = Field(default=None, description="The write key's first characters.")
    messages: MessageStats | None = Field(default=None, description="tracking_api: messages taken in.")
    last_run: RunRead | None = None
    next_run_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class ConnectionTest(BaseModel):
    ok: bool
    message: str
    columns: list[str] = Field(default_factory=list)
    error: dict | None = Field(default=None, description="`{code, message}` when the test failed.")


class PreviewRow(BaseModel):
    row_number: int
    raw: dict[str, Any]
    record: dict | None = Field(description="The row through the mapping, as a streaming record (null when it "
                                            "fails).")
    errors: list[dict] = Field(default_factory=list, description="`{column, reason}`: what would reject the row.")


class Preview(BaseModel):
    columns: list[str]
    rows: list[PreviewRow]
    source: str | None = Field(default=None, description="file_drop: the file previewed.")


class MessageIssue(BaseModel):
    id: int
    received_at: datetime
    request_id: str
    index: int = Field(description="Position of the message in its request.")
    message_id: str | None
    type: str | None
    level: Literal["error", "warning"] = Field(description="error: the message was rejected (nothing stored); "
                                               "warning: stored, without what the warning names.")
    errors: list[dict] = Field(description="`{path, message}`")
    raw: str = Field(description="The message as received (at most 2,048 bytes of it).")
    raw_bytes: int
