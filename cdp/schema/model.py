from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping

from cdp.dsl.types import DATETIME, STRING, PqlType, parse_type

# Every event has these, whatever the schema says (DSL.md §3).
BUILTIN_EVENT_FIELDS: dict[str, PqlType] = {"id": STRING, "type": STRING, "timestamp": DATETIME}


class SchemaError(ValueError):
    pass


@dataclass(frozen=True)
class Schema:
    """Leaf paths (``"loyalty.tier"``) to types, for profiles and for events.

    ``enums`` lists the documented values of a field (``loyalty.tier``: bronze … platinum); the
    checker does not reject other values (data may hold them) but the docs and UI show them.
    """

    profile: Mapping[str, PqlType]
    event: Mapping[str, PqlType]
    event_types: tuple[str, ...] = ()
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, fields_ in (("profile", self.profile), ("event", self.event)):
            paths = set(fields_)
            for path in paths:
                parts = path.split(".")
                if any(not p for p in parts):
                    raise SchemaError(f"{kind} field {path!r} has an empty path segment")
                for i in range(1, len(parts)):
                    if ".".join(parts[:i]) in paths:
                        raise SchemaError(
                            f"{kind} field {path!r} lies under {'.'.join(parts[:i])!r}, which is a leaf"
                        )
        for name in BUILTIN_EVENT_FIELDS:
            if name in self.event and self.event[name] != BUILTIN_EVENT_FIELDS[name]:
                raise SchemaError(f"event field {name!r} is built in with type {BUILTIN_EVENT_FIELDS[name]}")

    @classmethod
    def from_dict(cls, data: Mapping) -> "Schema":
        """``{"profile": {"path": "type"}, "event": {...}, "event_types": [...], "enums": {...}}``"""
        try:
            return cls(
                profile={k: parse_type(v) for k, v in data.get("profile", {}).items()},
                event={k: parse_type(v) for k, v in data.get("event", {}).items()},
                event_types=tuple(data.get("event_types", ())),
                enums={k: tuple(v) for k, v in data.get("enums", {}).items()},
            )
        except (AttributeError, TypeError) as exc:
            raise SchemaError(f"malformed schema: {exc}") from exc

    @cached_property
    def fingerprint(self) -> str:
        """A digest of the schema's content: equal schemas share compiled code, different ones never."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict:
        return {
            "profile": {k: str(v) for k, v in self.profile.items()},
            "event": {k: str(v) for k, v in self.event.items()},
            "event_types": list(self.event_types),
            "enums": {k: list(v) for k, v in self.enums.items()},
        }

    # ---- look-ups used by the checker -------------------------------------------------------

    def profile_type(self, path: str) -> PqlType | None:
        return self.profile.get(path)

    def event_type(self, path: str) -> PqlType | None:
        return BUILTIN_EVENT_FIELDS.get(path) or self.event.get(path)

    def all_event_fields(self) -> dict[str, PqlType]:
        return {**BUILTIN_EVENT_FIELDS, **self.event}

    @cached_property
    def profile_objects(self) -> frozenset[str]:
        """Every object path of the profile (``loyalty``, ``home_address``): proper prefixes of fields."""
        return _prefixes(self.profile)

    @cached_property
    def event_objects(self) -> frozenset[str]:
        return _prefixes(self.event)

    @staticmethod
    def is_object(fields_: Mapping[str, PqlType], path: str) -> bool:
        prefix = path + "."
        return any(k.startswith(prefix) for k in fields_)

    @staticmethod
    def closest(fields_: Mapping[str, PqlType] | list[str], path: str, n: int = 3) -> list[str]:
        names = list(fields_)
        scored = sorted(((difflib.SequenceMatcher(None, path, k).ratio(), k) for k in names), reverse=True)
        best = scored[0][0] if scored else 0
        # only the clear winners: `loyality.tier` suggests `loyalty.tier`, not every loyalty.* field
        found = [k for ratio, k in scored[:n] if ratio >= 0.6 and ratio >= best - 0.05]
        if not found:  # `tier` → `loyalty.tier`: match on the last segment too
            last = path.split(".")[-1]
            found = [k for k in names if k.split(".")[-1] == last][:n]
        if not found:
            found = [k for k in names if k.startswith(path + ".")][:n]
        return found


def _prefixes(fields_: Mapping[str, PqlType]) -> frozenset[str]:
    found = set()
    for path in fields_:
        parts = path.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return frozenset(found)
