"""Evaluating one expression on one profile document, in memory (cdp.engine)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from cdp.dsl import PqlError
from cdp.engine import ProfileError, compile_predicate, explain, load_profile
from cdp.errors import Unprocessable
from cdp.expressions.service import check_expression, invalid_expression
from cdp.profiles.models import ExplainRow, ProfileEvaluation
from cdp.schema import Schema


def evaluate_profile(*, expression: str, document: Mapping[str, Any], schema: Schema,
                     catalogue: Mapping[str, str], as_of: datetime | None = None) -> ProfileEvaluation:
    """Does the profile qualify at ``as_of`` (default now)? With the value of every sub-expression.

    Unprocessable: ``invalid_expression`` (with the diagnostics) or ``invalid_profile``."""
    as_of = datetime.now(timezone.utc) if as_of is None else (
        as_of.replace(tzinfo=timezone.utc) if as_of.tzinfo is None else as_of.astimezone(timezone.utc))
    tree = check_expression(expression=expression, schema=schema, catalogue=catalogue)
    try:
        profile = load_profile(document, schema)
    except ProfileError as exc:
        raise Unprocessable(f"invalid profile: {exc}", code="invalid_profile") from None
    try:
        predicate = compile_predicate(tree, schema, segments=dict(catalogue))
        qualifies = bool(predicate(profile, as_of))
        rows = explain(tree, profile, as_of, schema, segments=dict(catalogue))
    except PqlError as error:
        raise invalid_expression(error) from None
    return ProfileEvaluation(qualifies=qualifies, as_of=as_of, explain=[ExplainRow(**row) for row in rows])
