"""API shapes of datasets: DatasetCreate, DatasetUpdate (partial), DatasetRead."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from cdp.text import DocumentPattern, StoredText


class DatasetKind(StrEnum):
    profile = "profile"
    event = "event"


# The label rule (cdp/governance/labels.py) is checked by the service (422 invalid_labels, every bad
# label listed); the pattern states it in the OpenAPI document.
Label = Annotated[StoredText, DocumentPattern("^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
Labels = list[Label]


class DatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "name": "CRM contacts", "kind": "profile", "description": "Nightly export of the CRM",
        "labels": ["C2"], "field_labels": {"email": ["I1"], "person.birth_date": ["S1"]}}})

    name: StoredText = Field(min_length=1, max_length=256)
    kind: DatasetKind = Field(description="What its records are: profile records or events.")
    description: StoredText | None = Field(default=None, max_length=10_000)
    labels: Labels = Field(default_factory=list, max_length=200, description="Data-usage labels of the whole dataset.")
    field_labels: dict[StoredText, Labels] = Field(
        default_factory=dict, description="Field path (of the schema in force, for the dataset's kind) → labels.")


class DatasetUpdate(BaseModel):
    """Only the fields given change; ``labels`` and ``field_labels`` are replaced whole. The kind
    of a dataset never changes."""

    model_config = ConfigDict(extra="forbid")

    # name, labels and field_labels may be left out but not null (the document says so: no null type)
    name: StoredText = Field(default=None, min_length=1, max_length=256)  # type: ignore[assignment]
    description: StoredText | None = Field(default=None, max_length=10_000)
    labels: Labels = Field(default=None, max_length=200)  # type: ignore[assignment]
    field_labels: dict[StoredText, Labels] = None  # type: ignore[assignment]


class DatasetRead(BaseModel):
    id: int
    name: str
    kind: DatasetKind
    description: str | None
    labels: Labels
    field_labels: dict[StoredText, Labels]
    created_at: datetime
    updated_at: datetime
