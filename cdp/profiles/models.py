"""API shapes of single-profile evaluation: ProfileEvaluate (request), ProfileEvaluation (result)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cdp.expressions.models import Catalogue, Expression


class ProfileEvaluate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "expression": 'loyalty.tier = "bronze" and exists event where type = "addToCart" within last 7 days',
        "profile": {"id": "p-001", "attributes": {"loyalty": {"tier": "bronze"}},
                    "events": [{"id": "e-1", "type": "addToCart", "timestamp": "2026-11-27T18:04:00Z"}]},
        "as_of": "2026-11-28T12:00:00Z"}})

    expression: str = Expression
    profile: dict[str, Any] = Field(description="A profile document (SPEC.md, 'The profile document').")
    as_of: datetime | None = Field(default=None, description="The instant to evaluate at (default: now). "
                                                             "Without an offset: UTC.")
    segments: dict[str, str] | None = Catalogue


class ExplainRow(BaseModel):
    depth: int
    expression: str
    value: str = Field(description="TRUE, FALSE, UNKNOWN, a value, or 'not evaluated'.")


class ProfileEvaluation(BaseModel):
    qualifies: bool
    as_of: datetime
    explain: list[ExplainRow] = Field(description="The value of each sub-expression, the root first.")
