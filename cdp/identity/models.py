"""API shapes of identity: namespaces and the sandbox's identity settings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cdp.identity.namespaces import NamespaceKind
from cdp.identity.settings import (DEFAULT_GRAPH_LIMIT, DEFAULT_UNIQUE_NAMESPACES, MAX_GRAPH_LIMIT, MIN_GRAPH_LIMIT,
                                   MergePolicy)

NamespaceCode = Annotated[str, Field(min_length=1, max_length=64)]
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
        "merge_policy": "dataset_precedence", "dataset_precedence": [3, 1], "graph_limit": 50,
        "unique_namespaces": ["crm_id", "loyalty_id"], "namespace_priority": ["crm_id", "loyalty_id", "email"]}})

    merge_policy: MergePolicy = Field(default=MergePolicy.timestamp_ordered, description=(
        "timestamp_ordered: for each attribute the value observed last wins; dataset_precedence: the value of the "
        "first dataset in `dataset_precedence` that has one wins (datasets not listed come after, latest first)."))
    dataset_precedence: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(default_factory=list, max_length=1000,
                                          description="Profile dataset ids, the most trusted first.")
    graph_limit: int = Field(default=DEFAULT_GRAPH_LIMIT, ge=MIN_GRAPH_LIMIT, le=MAX_GRAPH_LIMIT,
                             description="The most identities one profile holds.")
    unique_namespaces: list[NamespaceCode] = Field(
        default_factory=lambda: list(DEFAULT_UNIQUE_NAMESPACES), max_length=200, description=(
            "Namespaces that identify one person: a graph holds at most one identity of each (linking rules). "
            "[] turns the rules off: identities seen together are always one profile."))
    namespace_priority: list[NamespaceCode] | None = Field(default=None, max_length=200, description=(
        "Namespaces, the highest priority first; those not listed follow in the default order (crm_id, "
        "loyalty_id, email, phone, custom person, device, then cookie namespaces). null: the default order."))
    reevaluate: bool = Field(default=False, description=(
        "Also queue a job that applies the rules to every graph of the sandbox now (links removed under other "
        "rules may come back, profiles may split or merge). Without it, new rules apply to a graph from its next "
        "link on."))

    _integers = field_validator("dataset_precedence", "graph_limit", mode="before")(json_integers)


class IdentitySettingsRead(BaseModel):
    merge_policy: MergePolicy
    dataset_precedence: list[int]
    graph_limit: int
    updated_at: datetime | None = Field(description="None: the defaults, never changed.")
    profiles_recomputed: int | None = Field(default=None, description="On change: profiles whose attributes were "
                                                                      "recomputed under the new policy.")
    unique_namespaces: list[str] = Field(description="At most one identity of each in a graph.")
    namespace_priority: list[str] = Field(description="Every namespace of the sandbox, the highest priority first.")
    reevaluation: ReevaluationRead | None = Field(default=None, description=(
        "The latest re-evaluation job of the sandbox (PUT with reevaluate: true queues one)."))


class ReevaluationRead(BaseModel):
    job_id: int
    status: str = Field(description="queued, running, succeeded, failed or cancelled.")
    message: str | None = Field(description="When it ended: what it changed, or why it failed.")
    created_at: datetime
    finished_at: datetime | None


class SimulationIdentity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: NamespaceCode
    id: str = Field(min_length=1, max_length=600)


class SimulationRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identities: list[SimulationIdentity] = Field(min_length=1, max_length=20)


class SimulationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"records": [
        {"identities": [{"namespace": "crm_id", "id": "A"}, {"namespace": "ecid", "id": "laptop"}]},
        {"identities": [{"namespace": "crm_id", "id": "B"}, {"namespace": "ecid", "id": "laptop"}]}]}})

    records: list[SimulationRecord] = Field(min_length=1, max_length=1000, description=(
        "Records in the order they arrive (the later, the newer)."))
    unique_namespaces: list[NamespaceCode] | None = Field(default=None, max_length=200, description=(
        "Rules to try instead of the sandbox's (null: the sandbox's)."))
    namespace_priority: list[NamespaceCode] | None = Field(default=None, max_length=200, description=(
        "A priority order to try instead of the sandbox's (null: the sandbox's)."))


class SimulatedIdentity(BaseModel):
    namespace: str
    id: str


class SimulatedLink(BaseModel):
    identities: list[SimulatedIdentity] = Field(description="The two identities linked.")
    record: int = Field(description="The index of the last record that carried the link.")
    reason: str | None = Field(default=None, description="Why the rules removed it (removed links only).")


class SimulatedRejection(BaseModel):
    record: int
    message: str


class SimulatedProfile(BaseModel):
    identities: list[SimulatedIdentity] = Field(description="The highest priority first.")
    records: list[int] = Field(description="The records (by index) whose events would belong to this profile.")


class SimulationRead(BaseModel):
    unique_namespaces: list[str]
    namespace_priority: list[str]
    profiles: list[SimulatedProfile]
    links: list[SimulatedLink] = Field(description="The links kept.")
    removed_links: list[SimulatedLink] = Field(description="The links removed, each with why.")
    rejected: list[SimulatedRejection] = Field(description="Records ingestion would reject (nothing of them linked).")

IdentitySettingsRead.model_rebuild()
