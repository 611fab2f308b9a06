"""API shapes of expression checking: ExpressionCheck (request), ExpressionChecked (result)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_EXPRESSION_CHARS = 100_000

Expression = Field(min_length=1, max_length=MAX_EXPRESSION_CHARS, description="A PQL expression (docs/language.md).")
Catalogue = Field(
    default=None, description='Segments that `in segment` references resolve against: {"key": "expression"}. '
                              "Default: the segments stored in the sandbox.")


class ExpressionCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "expression": 'loyalty.tier in ["silver", "gold"] and loyalty.points > 500'}})

    expression: str = Expression
    segments: dict[str, str] | None = Catalogue


class ExpressionChecked(BaseModel):
    ok: bool = True
    canonical: str = Field(description="The canonical text of the expression.")
    json_form: dict[str, Any] = Field(alias="json", description="The JSON form of the expression tree (DSL.md §12).")
    warnings: list[dict[str, Any]] = Field(
        default_factory=list, description="Diagnostics that do not make the expression invalid, shaped as errors "
                                          "(code, message, line, column, end_line, end_column, hint): "
                                          "`unlisted_value`, a comparison with a value outside a field's allowed "
                                          "values (docs/language.md).")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class FunctionRead(BaseModel):
    """One built-in function of the language, as docs/language.md lists it."""

    model_config = ConfigDict(json_schema_extra={"example": {
        "name": "abs", "signature": "abs(x)", "doc": "The absolute value.", "example": "abs(lifetime_value) > 100"}})

    name: str
    signature: str = Field(description="Its parameters; optional ones in brackets, `…` when the last one repeats.")
    doc: str
    example: str
