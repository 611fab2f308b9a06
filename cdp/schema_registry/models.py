"""API shapes of the schema in force: SchemaReplace (the PUT body) and SchemaRead."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from cdp.text import StoredText


class SchemaReplace(BaseModel):
    """The whole schema: field paths to types (``string``, ``integer``, ``number``, ``boolean``,
    ``date``, ``datetime``, ``list<T>``), the event types, and the allowed values of string fields
    (enums)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "profile": {"loyalty.tier": "string", "loyalty.points": "integer"},
        "event": {"product.sku": "string"}, "event_types": ["purchase"],
        "enums": {"loyalty.tier": ["bronze", "silver", "gold", "platinum"]}}})

    profile: dict[StoredText, StoredText] = Field(description="Profile attribute path → type.")
    event: dict[StoredText, StoredText] = Field(default_factory=dict, description="Event field path → type (besides id, type, "
                                                                    "timestamp, which every event has).")
    event_types: list[StoredText] = Field(default_factory=list)
    enums: dict[StoredText, list[StoredText]] = Field(default_factory=dict, description="Field path → its allowed values (string and list<string> fields): "
                                                                    "ingestion refuses others; the checker warns "
                                                                    "about a comparison with one.")


class SchemaRead(SchemaReplace):
    model_config = ConfigDict(extra="forbid")

    sandbox: str
    version: int = Field(description="0 for the default schema; +1 at each replacement.")
    is_default: bool = Field(description="True while the sandbox uses the default (Luma) schema.")
    updated_at: datetime | None = None
