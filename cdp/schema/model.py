from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping

from cdp.pqltypes import DATETIME, STRING, PqlType, parse_type

# Every event has these, whatever the schema says (DSL.md §3).
BUILTIN_EVENT_FIELDS: dict[str, PqlType] = {"id": STRING, "type": STRING, "timestamp": DATETIME}


class SchemaError(ValueError):
    pass


@dataclass(frozen=True)
class Schema:
    """Leaf paths (``"loyalty.tier"``) to types, for profiles and for events.

    ``enums`` lists the allowed values of a string (or list<string>) field (``loyalty.tier``:
    bronze … platinum), for the profile or event field of that path. Ingestion refuses any other
    value (:meth:`value_problem`, with a did-you-mean); the checker warns about a comparison with
    one (``unlisted_value``); data stored before the list changed is kept and evaluated as it is.
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

    # ---- allowed values ---------------------------------------------------------------------

    @cached_property
    def _allowed(self) -> dict[str, frozenset[str]]:
        return {path: frozenset(values) for path, values in self.enums.items()}

    def value_problem(self, path: str, value: object) -> str | None:
        """Why ``value`` (a field's value as the engine holds it; a tuple for a list) is not
        allowed for ``path``, or None. Only fields with allowed values are checked."""
        allowed = self._allowed.get(path)
        if not allowed:
            return None
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, str) and item not in allowed:
                return not_allowed(path, item, self.enums[path])
        return None

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


_LISTED = 12  # allowed values shown in a message; longer lists are named, not listed


def closest_value(value: str, allowed: tuple[str, ...]) -> str | None:
    """The allowed value ``value`` most likely meant: the same but for case (``Gold`` → ``gold``,
    ``us`` → ``US``), else a close spelling (``XXXXL`` → ``XXL``), else None."""
    folded = {a.casefold(): a for a in allowed}
    if value.casefold() in folded:
        return folded[value.casefold()]
    close = difflib.get_close_matches(value.casefold(), list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else None


def describe_allowed(allowed: tuple[str, ...]) -> str:
    if len(allowed) <= _LISTED:
        return ", ".join(allowed)
    return f"{', '.join(allowed[:6])} … ({len(allowed)} values, listed by GET /v1/schema)"


def not_allowed(path: str, value: str, allowed: tuple[str, ...]) -> str:
    shown = value if len(value) <= 64 else value[:64] + "…"
    suggestion = closest_value(value, allowed)
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    return f"{shown!r} is not an allowed value of {path}{hint} (allowed: {describe_allowed(allowed)})"


def _prefixes(fields_: Mapping[str, PqlType]) -> frozenset[str]:
    found = set()
    for path in fields_:
        parts = path.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return frozenset(found)
