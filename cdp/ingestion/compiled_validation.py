"""Record validation compiled once per schema: the checks of :mod:`cdp.ingestion.validation`
specialised into lookup tables and converters, so a record walks no schema.

The interpreted validator (``validation.interpret_record``) stays the specification. This one
answers only what it can answer exactly: a record it finds valid gets the same
:class:`ValidRecord` the specification would build; at the first sign of any problem it hands the
record to the specification, which then finds and words every error (errors are rare, and a second
walk keeps their codes, paths, messages and order the same by construction). Agreement on valid
and invalid records is a Hypothesis property (tests/test_ingestion_compiled_validation.py).

What the compilation does, per schema, kind and namespace set (kept per process, keyed by the
schema's fingerprint): a table per object level mapping each key a record may hold there (dotted
keys too, as the specification accepts them) to its path and either a converter for the field's
type (string, integer, number, boolean: inline type tests; dates and datetimes: the engine's
parsers; anything else: the engine's ``coerce``) wrapped in its allowed-values check, or the
table of the object below it with the leaves a null there removes. Measured (bench/RESULTS.md,
issue 16, third round; load ~28): 20 → 13 µs a Luma event record, 56 → 32 µs a profile record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Any

import cdp.ingestion as limits
from cdp.engine.profile import INTEGER_MAX, INTEGER_MIN, coerce, parse_date, parse_timestamp
from cdp.identity.namespaces import normalize
from cdp.ingestion import MAX_IDENTITIES_PER_RECORD
from cdp.ingestion.validation import ValidRecord, interpret_record, within_size
from cdp.pqltypes import PqlType
from cdp.schema import Schema
from cdp.schema.model import BUILTIN_EVENT_FIELDS

Result = tuple[ValidRecord | None, list[dict[str, str]]]
Validator = Callable[[Any, int | None], Result]



class _Refused(Exception):
    """The record is not plainly valid: the specification decides (and words the errors)."""


_REFUSED = _Refused()
_BUILTINS = frozenset(BUILTIN_EVENT_FIELDS)
# types whose converters (_converter) give the JSON value itself: a str, int, float or bool
_JSON_TYPES = frozenset({"string", "integer", "number", "boolean"})


# ---- converters: one per field, made once ------------------------------------------------------------

def _converter(type_: PqlType) -> Callable[[Any], Any]:
    """``coerce(value, type_)`` for a non-null value, with the common JSON cases tested inline;
    anything unusual goes to ``coerce`` itself (which raises ValueError where it must)."""
    name = type_.name
    if name == "string":
        def string(value: Any) -> Any:
            if value.__class__ is str and "\x00" not in value:
                return value
            return coerce(value, type_)
        return string
    if name in ("integer", "number"):
        def integer_or_number(value: Any) -> Any:
            kind = value.__class__
            if kind is int and INTEGER_MIN <= value <= INTEGER_MAX:
                return value
            if kind is float and name == "number" and value - value == 0.0:  # finite: inf - inf and NaN are NaN
                return value
            return coerce(value, type_)
        return integer_or_number
    if name == "boolean":
        def boolean(value: Any) -> Any:
            if value is True or value is False:
                return value
            return coerce(value, type_)
        return boolean
    if name == "datetime":
        return parse_timestamp
    if name == "date":
        return parse_date
    return lambda value: coerce(value, type_)


def _checked(path: str, type_: PqlType, schema: Schema) -> Callable[[Any], Any]:
    """The field's converter, followed by its allowed-values check when the schema lists some."""
    convert = _converter(type_)
    allowed = schema.enums.get(path)
    if not allowed:
        return convert
    if type_.name == "string":
        members = frozenset(allowed)

        def listed_string(value: Any) -> Any:
            value = convert(value)
            if value not in members:
                raise _REFUSED
            return value
        return listed_string

    def listed(value: Any) -> Any:
        value = convert(value)
        if schema.value_problem(path, value):
            raise _REFUSED
        return value
    return listed


# ---- the tables of one object level ----------------------------------------------------------------------

# an entry: (path, converter or None, the level below or None, the leaves a null removes, a bound
# of the length of the key's JSON with its colon and comma: see _chars)
Entry = tuple[str, Callable[[Any], Any] | None, "dict[str, Entry] | None", tuple[str, ...], int]


def _level(prefix: str, fields: dict[str, PqlType], objects: frozenset[str], schema: Schema,
           made: dict[str, dict[str, Entry]]) -> dict[str, Entry]:
    """Every key a record may hold in the object at ``prefix``: each path below it, by its rest
    (``tier`` and, at the top, ``loyalty.tier`` too — the specification looks keys up by path)."""
    if prefix in made:
        return made[prefix]
    table: dict[str, Entry] = {}
    made[prefix] = table
    for path in [*fields, *objects]:
        if not path.startswith(prefix) or path == prefix:
            continue
        key = path[len(prefix):]
        type_ = fields.get(path)
        if type_ is not None:
            table[key] = (path, _checked(path, type_, schema), None, (path,), 6 * len(key) + 4)
        else:
            below = _level(path + ".", fields, objects, schema, made)
            leaves = tuple(sorted(f for f in fields if f.startswith(path + ".")))
            table[key] = (path, None, below, leaves, 6 * len(key) + 4)
    return table


# The record's size, bounded as the walk goes (so that a plainly small record is not encoded to be
# measured: that was ~4.4 of a Luma event's ~9.5 µs of validation). A bound of the length in
# characters of its compact JSON (what ``validation.record_size`` encodes): a string of n characters
# takes at most 6n + 2 (every character escaped as \\uXXXX, and the quotes); an object of n keys 2n + 1
# of braces, colons and commas besides its keys and values; a list of n items n + 1. ``within_size``
# takes a text of c characters as within the limit when 4c is (UTF-8: at most 4 bytes a character),
# so a bound b with 4b within the limit gives its answer without the text. A value whose form has no
# cheap bound (an object in a list, an integer beyond 64 bits, a subclass) is _UNBOUNDED: measured.
_INTEGER_CHARS = 20  # "-9223372036854775808"; "18446744073709551615"
_FLOAT_CHARS = 24  # float repr at its longest: "-2.2250738585072014e-308" (inf, nan: "-Infinity", "NaN")
_UNBOUNDED = 1 << 62


def _chars(value: Any) -> int:
    """An upper bound of the length of ``value``'s compact JSON, for a leaf; _UNBOUNDED when unknown."""
    kind = value.__class__
    if kind is str:
        return 6 * len(value) + 2
    if kind is int:
        return _INTEGER_CHARS if -0x8000000000000000 <= value <= 0xFFFFFFFFFFFFFFFF else _UNBOUNDED
    if kind is float:
        return _FLOAT_CHARS
    if kind is bool or value is None:
        return 5
    if kind is list:  # a list attribute's values: brackets, commas and each item
        return 2 + len(value) + sum(map(_chars, value))
    return _UNBOUNDED


def _walk(obj: dict, table: dict[str, Entry], out: dict, removed: list | None,
          builtins: Collection[str] = ()) -> int:
    """``obj``'s values into ``out`` by path; ``builtins``: top-level keys read elsewhere (skipped:
    the caller bounds them). Returns a bound of ``obj``'s compact JSON length, builtins left out."""
    chars = 2  # the braces (each key's entry bounds it with its colon and comma)
    for key, value in obj.items():
        entry = table.get(key)
        if entry is None:
            if key in builtins:
                continue
            raise _REFUSED
        path, convert, below, leaves, key_chars = entry
        if value is None:
            if removed is not None:
                removed.extend(leaves)
            chars += key_chars + 4
            continue
        if convert is not None:
            out[path] = convert(value)
            chars += key_chars + (6 * len(value) + 2 if value.__class__ is str else _chars(value))
        elif isinstance(value, dict):
            chars += key_chars
            chars += _walk(value, below, out, removed)
        else:
            raise _REFUSED
    return chars


# ---- the record ------------------------------------------------------------------------------------

def _identities(record: dict, namespaces: Collection[str]) -> tuple[list[tuple[str, str]], int]:
    """(the pairs, a bound of the compact JSON length of ``record["identities"]`` with its key)."""
    raw = record.get("identities")
    if raw.__class__ is not list or not raw or len(raw) > MAX_IDENTITIES_PER_RECORD:
        raise _REFUSED
    found: list[tuple[str, str]] = []
    # "identities": [ … ] — each {"namespace": …, "id": …}: 1 + 4 of braces, colons, a comma and
    # 11 + 4 of its keys, and a comma after it
    chars = 14 + 2 + len(raw) * 21
    for identity in raw:
        # two keys, one of them `id`, and a known namespace: exactly {namespace, id}
        if identity.__class__ is not dict or len(identity) != 2 or "id" not in identity:
            raise _REFUSED
        namespace = identity.get("namespace")
        if namespace not in namespaces:
            raise _REFUSED
        value = identity["id"]
        pair = (namespace, normalize(namespace, value))
        chars += 6 * len(namespace) + 2 + _chars(value)
        if pair not in found:
            found.append(pair)
    return found, chars


def _profile_validator(schema: Schema, namespaces: tuple[str, ...]) -> Callable[[dict], tuple[ValidRecord, int]]:
    table = _level("", dict(schema.profile), schema.profile_objects, schema, {})
    allowed_keys = frozenset({"identities", "attributes", "timestamp"})

    def validate(record: dict) -> tuple[ValidRecord, int]:
        if not allowed_keys.issuperset(record):
            raise _REFUSED
        identities, chars = _identities(record, namespaces)
        chars += 1 + 2 * len(record)
        attributes = record.get("attributes")
        out: dict[str, Any] = {}
        removed: list[str] = []
        if attributes is not None:
            if attributes.__class__ is not dict:
                raise _REFUSED
            chars += 14 + _walk(attributes, table, out, removed)
        elif "attributes" in record:
            chars += 18
        stamp = record.get("timestamp")
        if "timestamp" in record:
            chars += 13 + _chars(stamp)
        return ValidRecord(identities=identities, set_attributes=out, removed=removed, normalized=True,
                           observed_at=None if stamp is None else parse_timestamp(stamp)), chars
    return validate


def _event_validator(schema: Schema, namespaces: tuple[str, ...]) -> Callable[[dict], tuple[ValidRecord, int]]:
    table = {key: entry for key, entry in _level("", dict(schema.event), schema.event_objects, schema, {}).items()
             if key not in _BUILTINS}  # the built-in fields are checked on their own, not walked
    types = frozenset(schema.event_types)
    allowed_keys = frozenset({"identities", "event"})
    # the fields whose engine values are not JSON values (``json_value`` converts dates, datetimes
    # and lists): an event holding none of them is stored as it is
    converted = frozenset(path for path, type_ in schema.event.items()
                          if path not in _BUILTINS and type_.name not in _JSON_TYPES)

    def validate(record: dict) -> tuple[ValidRecord, int]:
        if not allowed_keys.issuperset(record):
            raise _REFUSED
        identities, chars = _identities(record, namespaces)
        event = record.get("event")
        if event.__class__ is not dict:
            raise _REFUSED
        event_id, event_type, stamp = event.get("id"), event.get("type"), event.get("timestamp")
        if (event_id.__class__ is not str or not 0 < len(event_id) <= 256 or "\x00" in event_id
                or event_type.__class__ is not str or not 0 < len(event_type) <= 128
                or (types and event_type not in types) or stamp is None):
            raise _REFUSED
        fields: dict[str, Any] = {}
        # the record's braces, colon and comma, "event": and the three built-in keys (4 + 6 + 11)
        # with their colons and commas, and their values
        chars += 1 + 2 * len(record) + 9 + 27 + (6 * len(event_id) + 2) + (6 * len(event_type) + 2) + _chars(stamp)
        chars += _walk(event, table, fields, None, _BUILTINS)
        return ValidRecord(identities=identities, event_id=event_id, event_type=event_type,
                           ts=parse_timestamp(stamp), event_fields=fields, normalized=True,
                           plain_fields=converted.isdisjoint(fields)), chars
    return validate


def compile_validator(schema: Schema, kind: str, namespaces: Collection[str]) -> Validator:
    """``validate(record, size_bound)`` → what ``interpret_record(record, kind, schema,
    namespaces=namespaces, size_bound=size_bound)`` answers."""
    names = tuple(namespaces)
    fast = _profile_validator(schema, names) if kind == "profile" else _event_validator(schema, names)

    def validate(record: Any, size_bound: int | None = None) -> Result:
        if record.__class__ is dict:
            try:
                valid, chars = fast(record)
            except Exception:  # noqa: BLE001 - any problem at all: the specification answers
                valid = None
            if valid is not None:
                limit = limits.RECORD_MAX_BYTES
                # within the limit: the caller's bound, the walk's (see _chars), or measured
                if (size_bound is not None and size_bound <= limit or chars * 4 <= limit
                        or within_size(record, limit)):
                    return valid, []
        return interpret_record(record, kind, schema, namespaces=names, size_bound=size_bound)
    return validate


_compiled: dict[tuple[str, str, tuple[str, ...]], Validator] = {}
_lock = threading.Lock()
_KEPT = 256  # validators kept per process (then the cache starts over)


def compiled_validator(schema: Schema, kind: str, namespaces: Collection[str]) -> Validator:
    """The validator of this schema (by content), kind and namespaces, compiled on first use."""
    key = (schema.fingerprint, kind, namespaces if isinstance(namespaces, tuple) else tuple(namespaces))
    found = _compiled.get(key)
    if found is None:
        found = compile_validator(schema, kind, key[2])
        with _lock:
            if len(_compiled) >= _KEPT:
                _compiled.clear()
            _compiled[key] = found
    return found
