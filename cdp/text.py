"""Text accepted from clients: strings that every database can store."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from cdp.engine.profile import parse_timestamp


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text may not contain the NUL character (\\u0000)")
    return value


class DocumentPattern:
    """A pattern for the OpenAPI document only, for a rule the code checks itself (with its own
    error code and message): ``Annotated[str, check, DocumentPattern("^…$")]``."""

    def __init__(self, pattern: str):
        self.pattern = pattern

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema


NO_NUL = "^[^\\u0000]*$"  # every character but NUL

# A str without NUL characters (PostgreSQL text and JSONB cannot hold them).
StoredText = Annotated[str, AfterValidator(_no_nul), DocumentPattern(NO_NUL)]


# An instant as ISO 8601 text, `2026-11-28T12:00:00Z` (RFC 3339; an offset-less value is read as UTC,
# as the field descriptions say). Pydantic alone would also take a number of seconds since 1970
# (`0.0`) or a bare date, which the OpenAPI document (`format: date-time`) does not allow.
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:\d{2})?")


def _iso_instant(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _INSTANT.fullmatch(value):
        raise ValueError("expected an ISO 8601 date and time, like 2026-11-28T12:00:00Z")
    return value


def _instant(value: datetime) -> datetime:
    return parse_timestamp(value)  # ValueError (a 422 naming the parameter) outside the range


# A datetime from a client (``as_of``, ``since``, ``until``): ISO 8601 text, read as an aware UTC
# instant (no offset means UTC) within the range data may hold, 0001-01-01T00:00:00Z to
# 9999-12-31T23:59:59.999999Z.
Instant = Annotated[datetime, BeforeValidator(_iso_instant), AfterValidator(_instant)]
IsoDateTime = Instant


def json_integers(value: object) -> object:
    """For a ``mode="before"`` field validator: a JSON integer (``3``, or ``3.0``, which JSON
    Schema counts as one) or a list of them, not ``"3"`` or ``true``, which pydantic's lax mode
    would take. (A validator on the field, not on its type, keeps the document's
    ``minimum``/``maximum`` plain integers.)"""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ValueError("expected a JSON integer")
    return value
