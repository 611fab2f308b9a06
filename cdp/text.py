"""Text accepted from clients: strings that every database can store."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text may not contain the NUL character (\\u0000)")
    return value


# A str without NUL characters (PostgreSQL text and JSONB cannot hold them).
StoredText = Annotated[str, AfterValidator(_no_nul)]


def _instant(value: datetime) -> datetime:
    from cdp.engine.profile import parse_timestamp

    return parse_timestamp(value)  # ValueError (a 422 naming the parameter) outside the range


# A datetime from a client (``as_of``, ``since``, ``until``): an aware UTC instant (no offset means
# UTC) within the range data may hold, 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z.
Instant = Annotated[datetime, AfterValidator(_instant)]
