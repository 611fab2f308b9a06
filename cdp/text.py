"""Text accepted from clients: strings that every database can store."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text may not contain the NUL character (\\u0000)")
    return value


# A str without NUL characters (PostgreSQL text and JSONB cannot hold them).
StoredText = Annotated[str, AfterValidator(_no_nul)]
