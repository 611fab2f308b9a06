"""API shapes of identity: namespaces and the sandbox's identity settings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cdp.identity.namespaces import NamespaceKind
from cdp.identity.settings import DEFAULT_GRAPH_LIMIT, MAX_GRAPH_LIMIT, MIN_GRAPH_LIMIT, MergePolicy
from cdp.text import StoredText, json_integers


class NamespaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "code": "idfa", "name": "Apple advertising id", "kind": "device"}})

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$", description="What records name it by: lower-case "
                                                                     "letters, digits and _, 2 to 64 characters.")
    name: StoredText = Field(min_length=1, max_length=256)
    kind: NamespaceKind = Field(description="cookie, device or person: what the graph limit drops first (cookie ids "
                                            "first, then device ids, then person ids).")
    description: StoredText | None = Field(default=None, max_length=2000)


class NamespaceRead(BaseModel):
    code: str
    name: str
    kind: NamespaceKind
    builtin: bool
    description: str | None
    identities: int = Field(description="Identities of this namespace in the sandbox.")


class IdentitySettingsWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "merge_policy": "dataset_precedence", "dataset_precedence": [3, 1], "graph_limit": 50}})

    merge_policy: MergePolicy = Field(default=MergePolicy.timestamp_ordered, description=(
        "timestamp_ordered: for each attribute the value observed last wins; dataset_precedence: the value of the "
        "first dataset in `dataset_precedence` that has one wins (datasets not listed come after, latest first)."))
    dataset_precedence: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(default_factory=list, max_length=1000,
                                          description="Profile dataset ids, the most trusted first.")
    graph_limit: int = Field(default=DEFAULT_GRAPH_LIMIT, ge=MIN_GRAPH_LIMIT, le=MAX_GRAPH_LIMIT,
                             description="The most identities one profile holds.")

    _integers = field_validator("dataset_precedence", "graph_limit", mode="before")(json_integers)


class IdentitySettingsRead(BaseModel):
    merge_policy: MergePolicy
    dataset_precedence: list[int]
    graph_limit: int
    updated_at: datetime | None = Field(description="None: the defaults, never changed.")
    profiles_recomputed: int | None = Field(default=None, description="On change: profiles whose attributes were "
                                                                      "recomputed under the new policy.")
