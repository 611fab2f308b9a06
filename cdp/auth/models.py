"""API shapes of keys: ApiKeyCreate (request), ApiKeyRead, ApiKeyCreated (ApiKeyRead + the key,
returned once)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from cdp.auth.roles import Role
from cdp.text import StoredText


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StoredText = Field(min_length=1, max_length=256, description="What the key is for (shown in listings).")
    role: Role
    all_sandboxes: StrictBool = Field(  # true or false, not 0 or "yes" (the document says boolean)
        default=False, description="Make the key work in every sandbox (only a key that itself works in every "
                                   "sandbox may create one). Default: bound to the request's sandbox.")


class ApiKeyRead(BaseModel):
    id: str = Field(description="The public part of the key (`cdp_<id>_…`).")
    name: str
    role: Role
    sandbox: str | None = Field(description="The only sandbox the key works in; null: every sandbox.")
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The key itself. Shown only this once: only a hash of it is stored.")
