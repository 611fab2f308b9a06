"""API shapes of sandboxes: SandboxCreate (request), SandboxRead."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from cdp.sandboxes import NAME_PATTERN
from cdp.text import StoredText


class SandboxCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"name": "dev",
                                                                            "description": "Trying out new schemas"}})

    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN,
                      description="1-64 lowercase letters, digits, `-` or `_`, starting with a letter.")
    description: StoredText | None = Field(default=None, max_length=1024)


class SandboxRead(BaseModel):
    name: str
    description: str | None
    created_at: datetime
