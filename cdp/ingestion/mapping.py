"""The field mapping of a batch file: a JSON object mapping a source column (CSV header; for JSON
Lines a key, or a dotted path into nested objects) to a target with optional transforms::

    {"Email": {"to": "identity.email", "transforms": ["trim", "lower"]},
     "E-mail": "email",
     "Birthday": {"to": "person.birth_date", "transforms": [{"parse_date": "%d/%m/%Y"}]},
     "Hobbies": {"to": "interests", "transforms": [{"split": ";"}]}}

Targets: ``identity.<namespace>`` for an identity (a built-in namespace or one of the sandbox's
custom ones), else a field of the schema in force — a profile attribute for a profile dataset,
an event field (``id``, ``type``, ``timestamp`` included) for an event dataset. Transforms,
applied in order to text: ``trim``, ``lower``, ``{"parse_date": FORMAT}`` (``datetime.strptime``
format; gives a date or a UTC datetime as the target needs), ``{"split": SEPARATOR}`` (a list;
items trimmed, empty ones dropped). Text is then converted to the target's type (integer,
number, boolean ``true/false/yes/no/1/0``, date, datetime). An empty cell sets nothing. JSON
Lines without a mapping: each line is a record as streamed.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cdp.errors import Unprocessable
from cdp.schema import Schema

_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}


@dataclass(frozen=True)
class Rule:
    column: str
    target: str  # identity.<ns> or a schema path
    transforms: tuple  # ("trim",), ("lower",), ("parse_date", fmt), ("split", sep)


def _transform(spec: Any, where: str, errors: list[str]) -> tuple | None:
    if spec in ("trim", "lower"):
        return (spec,)
    if spec == "split":
        return ("split", ",")
    if isinstance(spec, dict) and len(spec) == 1:
        (name, arg), = spec.items()
        if name == "parse_date" and isinstance(arg, str) and arg:
            return ("parse_date", arg)
        if name == "split" and isinstance(arg, str) and arg:
            return ("split", arg)
    errors.append(f"{where}: unknown transform {json.dumps(spec)[:100]}; use \"trim\", \"lower\", "
                  f"{{\"parse_date\": \"%Y-%m-%d\"}} or {{\"split\": \",\"}}")
    return None


def parse_mapping(mapping: Any, kind: str, schema: Schema, *, namespaces: Collection[str]) -> list[Rule]:
    """The rules of a mapping; Unprocessable (``invalid_mapping``) lists every problem.
    ``namespaces``: the identity namespace codes of the sandbox (built-in and custom)."""
    errors: list[str] = []
    rules: list[Rule] = []
    fields = dict(schema.profile) if kind == "profile" else schema.all_event_fields()
    if not isinstance(mapping, dict) or not mapping:
        errors.append("the mapping must be a non-empty JSON object: source column → target")
        mapping = {}
    targets: dict[str, str] = {}
    for column, spec in mapping.items():
        where = f"mapping[{column!r}]"
        if isinstance(spec, str):
            spec = {"to": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("to"), str) or set(spec) - {"to", "transforms"}:
            errors.append(f"{where}: a target path, or {{\"to\": PATH, \"transforms\": [...]}}")
            continue
        target = spec["to"]
        if target.startswith("identity."):
            if target.removeprefix("identity.") not in namespaces:
                errors.append(f"{where}: unknown identity namespace in {target!r}; one of "
                              f"{', '.join(namespaces)} (custom namespaces: POST /v1/identity/namespaces)")
        elif target not in fields:
            suggestion = Schema.closest(fields, target)
            errors.append(f"{where}: {target!r} is not a {kind} field of the schema in force"
                          + (f" (did you mean {', '.join(map(repr, suggestion))}?)" if suggestion else ""))
        if target in targets:
            errors.append(f"{where}: {target!r} is already the target of column {targets[target]!r}")
        targets[target] = column
        raw_transforms = spec.get("transforms") or []
        if not isinstance(raw_transforms, list):
            errors.append(f"{where}: transforms must be a list")
            raw_transforms = []
        transforms = tuple(t for t in (_transform(s, where, errors) for s in raw_transforms) if t is not None)
        rules.append(Rule(column, target, transforms))
    if mapping and not any(r.target.startswith("identity.") for r in rules):
        errors.append("the mapping names no identity: map at least one column to identity.<namespace>")
    if kind == "event":
        for name in ("id", "type", "timestamp"):
            if mapping and name not in targets:
                errors.append(f"an event dataset's mapping needs a column for the event's {name!r}")
    if errors:
        raise Unprocessable(f"invalid mapping: {errors[0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1
                                                                 else ""),
                            code="invalid_mapping", details={"errors": errors})
    return rules


def _convert(value: Any, rule: Rule, fields: dict) -> Any:
    """A source value through the rule's transforms and into the target's type (ValueError)."""
    if isinstance(value, str) and "\x00" in value:  # PostgreSQL's text and JSONB cannot hold it
        raise ValueError("the value contains a NUL character (U+0000), which cannot be stored")
    for transform in rule.transforms:
        if value is None:
            break
        if not isinstance(value, str):
            raise ValueError(f"{transform[0]} applies to text, got {type(value).__name__}")
        if transform[0] == "trim":
            value = value.strip()
        elif transform[0] == "lower":
            value = value.lower()
        elif transform[0] == "split":
            value = [item.strip() for item in value.split(transform[1]) if item.strip()]
        elif transform[0] == "parse_date":
            if value.strip() == "":
                value = None
                break
            try:
                parsed = datetime.strptime(value.strip(), transform[1])
            except ValueError as exc:
                raise ValueError(f"parse_date {transform[1]!r}: {exc}") from None
            type_ = fields.get(rule.target)
            if type_ is not None and type_.name == "date":
                value = parsed.date().isoformat()
            else:
                value = (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, str) and value == "":
        return None
    type_ = None if rule.target.startswith("identity.") else fields.get(rule.target)
    if isinstance(value, str) and type_ is not None:
        text = value.strip()
        if type_.name == "integer":
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"expected an integer, got {value!r}") from None
        if type_.name == "number":
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"expected a number, got {value!r}") from None
            return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
        if type_.name == "boolean":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(f"expected a boolean (true/false, yes/no, 1/0), got {value!r}")
        if type_.name == "list":
            raise ValueError(f"expected a list for {rule.target!r}: add a split transform")
    return value


def _set(document: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        document = document.setdefault(part, {})
    document[parts[-1]] = value


def _lookup(values: dict, column: str) -> Any:
    if column in values:
        return values[column]
    current: Any = values
    for part in column.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def row_record(values: dict, rules: list[Rule], kind: str, fields: dict) -> tuple[dict | None, list[tuple[str, str]]]:
    """A row (column → value) as a streaming record, or the (column, reason) problems met on the way."""
    identities: list[dict] = []
    body: dict = {}
    errors: list[tuple[str, str]] = []
    for rule in rules:
        try:
            value = _convert(_lookup(values, rule.column), rule, fields)
        except ValueError as exc:
            errors.append((rule.column, str(exc)[:300]))
            continue
        if value is None:
            continue
        if rule.target.startswith("identity."):
            identities.append({"namespace": rule.target.removeprefix("identity."),
                               "id": value if isinstance(value, str) else str(value)})
        else:
            _set(body, rule.target, value)
    if errors:
        return None, errors
    return {"identities": identities, ("attributes" if kind == "profile" else "event"): body}, []


def record_size_bound(values: dict, rules: list[Rule]) -> int | None:
    """An upper bound on the JSON size in bytes of :func:`row_record`'s record for this row, or None
    when a mapped value is not text (JSON Lines). A character takes at most 6 bytes of JSON (an
    escape; UTF-8 takes at most 4), 9 once split into items (quotes and comma); a converted value
    (number, boolean, date) and a target's keys take less than 2 × the target's length + 64."""
    total = 256
    for rule in rules:
        value = _lookup(values, rule.column)
        if value is None:
            continue
        if not isinstance(value, str):
            return None
        total += 9 * len(value) + 2 * len(rule.target) + 64
    return total


def column_of(path: str, target_columns: dict[str, str], unmapped: bool) -> str | None:
    """The source column behind a validation error's path (``attributes.loyalty.points``)."""
    if unmapped:
        return path or None
    if path.startswith("identities"):
        columns = [c for t, c in target_columns.items() if t.startswith("identity.")]
        return ", ".join(columns) or None
    for prefix in ("attributes.", "event."):
        if path.startswith(prefix):
            target = path.removeprefix(prefix)
            while target:
                if target in target_columns:
                    return target_columns[target]
                target = target.rpartition(".")[0]
    return None


# ---- compiled once per batch -------------------------------------------------------------------
# row_record and record_size_bound interpret the rules for every row (a type lookup, the target's
# kind, the transforms' names, per cell); a batch compiles them once into one function of the
# row, with the same results (tests/test_ingestion_mapping.py checks it on generated rows).

_NUL = "the value contains a NUL character (U+0000), which cannot be stored"
_TYPED = ("integer", "number", "boolean", "list")


def _compiled_converter(rule: Rule, fields: dict):
    """``_convert`` for one rule, specialised; the general one for transforms other than trim and lower."""
    if any(transform[0] not in ("trim", "lower") for transform in rule.transforms):
        return lambda value: _convert(value, rule, fields)
    type_ = None if rule.target.startswith("identity.") else fields.get(rule.target)
    if type_ is not None and type_.name in _TYPED:
        return lambda value: _convert(value, rule, fields)
    steps = tuple(str.strip if transform[0] == "trim" else str.lower for transform in rule.transforms)
    first = rule.transforms[0][0] if rule.transforms else None

    def convert(value: Any) -> Any:
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError(_NUL)
            for step in steps:
                value = step(value)
            return None if value == "" else value
        if value is not None and first is not None:
            raise ValueError(f"{first} applies to text, got {type(value).__name__}")
        return value
    return convert


def compile_rows(rules: list[Rule], kind: str, fields: dict):
    """One function of a row's values → (record or None, problems, size bound): what
    :func:`row_record` and :func:`record_size_bound` give for it."""
    body_key = "attributes" if kind == "profile" else "event"
    plan = []
    for rule in rules:
        column = rule.column
        get = (lambda values, column=column: _lookup(values, column)) if "." in column else (
            lambda values, column=column: values.get(column))
        namespace = rule.target.removeprefix("identity.") if rule.target.startswith("identity.") else None
        parts = tuple(rule.target.split("."))
        plan.append((column, get, _compiled_converter(rule, fields), namespace, parts[:-1], parts[-1],
                     2 * len(rule.target) + 64))

    def record(values: dict) -> tuple[dict | None, list[tuple[str, str]], int | None]:
        identities: list[dict] = []
        body: dict = {}
        errors: list[tuple[str, str]] = []
        bound: int | None = 256
        for column, get, convert, namespace, parents, leaf, extra in plan:
            raw = get(values)
            if raw is not None and bound is not None:
                bound = bound + 9 * len(raw) + extra if isinstance(raw, str) else None
            try:
                value = convert(raw)
            except ValueError as exc:
                errors.append((column, str(exc)[:300]))
                continue
            if value is None:
                continue
            if namespace is not None:
                identities.append({"namespace": namespace, "id": value if isinstance(value, str) else str(value)})
            else:
                document = body
                for part in parents:
                    document = document.setdefault(part, {})
                document[leaf] = value
        if errors:
            return None, errors, bound
        return {"identities": identities, body_key: body}, [], bound
    return record
