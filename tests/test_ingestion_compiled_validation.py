"""The validator compiled per schema (cdp/ingestion/compiled_validation.py) answers exactly what
the interpreted one (``validation.interpret_record``, the specification) answers: the same valid
record, or the same errors (paths, messages, order) — on generated schemas and on records built
from them, valid ones and ones broken in every way the specification checks."""

from __future__ import annotations

import math

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import cdp.ingestion as limits
from cdp.engine.sql.loading import json_value
from cdp.ingestion.compiled_validation import compile_validator, compiled_validator
from cdp.ingestion.validation import interpret_record, validate_record
from cdp.schema import Schema, luma_schema

SEGMENTS = ["a", "b", "c", "tier", "id", "type", "timestamp"]
TYPES = ["string", "integer", "number", "boolean", "date", "datetime", "list<string>", "list<integer>"]
NAMESPACES = ("ecid", "email", "crm_id", "custom")
WORDS = ["gold", "Gold", "silver", "x", "", "a\x00b"]

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(WORDS), st.text(max_size=8),
    st.sampled_from(["2026-01-02", "2026-01-02T03:04:05Z", "9999-12-31T23:59:59-05:00", "not a date", "2026-13-01"]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(SEGMENTS + [""]), inner, max_size=3)), max_leaves=6)


@st.composite
def schemas(draw) -> Schema:
    def fields() -> dict[str, str]:
        paths = draw(st.lists(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).map(".".join),
                              max_size=6, unique=True))
        kept = [p for p in paths if not any(q != p and p.startswith(q + ".") or q.startswith(p + ".")
                                            for q in paths if q != p)]
        return {p: draw(st.sampled_from(TYPES)) for p in kept}
    profile, event = fields(), {k: v for k, v in fields().items() if k not in ("id", "type", "timestamp")}
    strings = [p for p, t in {**profile, **event}.items() if t in ("string", "list<string>")]
    enums = {p: ["gold", "silver"] for p in strings if draw(st.booleans())}
    event_types = draw(st.sampled_from([[], ["view", "buy"], ["buy"]]))
    return Schema.from_dict({"profile": profile, "event": event, "event_types": event_types, "enums": enums})


def value_for(type_: str):
    return {
        "string": st.sampled_from(["gold", "silver", "text", "é"]),
        "integer": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "number": st.one_of(st.integers(-10, 10), st.floats(allow_nan=False, allow_infinity=False)),
        "boolean": st.booleans(),
        "date": st.sampled_from(["2026-01-02", "0001-01-01"]),
        "datetime": st.sampled_from(["2026-01-02T03:04:05Z", "2026-01-02T03:04:05+02:00", "2026-01-02 03:04"]),
        "list<string>": st.lists(st.sampled_from(["gold", "silver"]), max_size=3),
        "list<integer>": st.lists(st.integers(-5, 5), max_size=3),
    }[type_]


@st.composite
def bodies(draw, fields: dict, broken: bool) -> dict:
    """Attributes / event fields: the schema's own paths (nested or dotted), valid values or nulls;
    when ``broken``, sometimes anything at all in a field, or a key the schema does not have."""
    body: dict = {}
    for path, type_ in fields.items():
        choice = draw(st.sampled_from(["skip", "valid", "valid", "null", "any" if broken else "valid"]))
        if choice == "skip":
            continue
        value = {"valid": lambda: draw(value_for(str(type_))), "null": lambda: None,
                 "any": lambda: draw(json_values)}[choice]()
        parts = path.split(".")
        if draw(st.booleans()) or len(parts) == 1:
            target = body
            for part in parts[:-1]:
                nested = target.setdefault(part, {})
                if not isinstance(nested, dict):
                    break
                target = nested
            else:
                target[parts[-1]] = value
        else:
            body[path] = value
    objects = sorted({path.rsplit(".", 1)[0] for path in fields if "." in path})
    if objects and draw(st.booleans()):  # an object set to null: every leaf under it removed
        body[draw(st.sampled_from(objects))] = None
    if broken and draw(st.integers(0, 3)) == 0:
        body[draw(st.sampled_from(SEGMENTS + ["", "zz"]))] = draw(json_values)
    return body


good_identities = st.lists(st.one_of(
    st.fixed_dictionaries({"namespace": st.sampled_from(["ecid", "crm_id"]), "id": st.sampled_from(["c-1", " x "])}),
    st.fixed_dictionaries({"namespace": st.just("email"), "id": st.sampled_from(["a@b.com", "A@B.COM "])})),
    min_size=1, max_size=3)
any_identities = st.lists(st.one_of(
    st.fixed_dictionaries({"namespace": st.sampled_from(NAMESPACES[:3]),
                           "id": st.sampled_from(["a@b.com", "A@B.COM ", "c-1", "n/a", "", " x ", 5])}),
    st.dictionaries(st.sampled_from(["namespace", "id", "extra"]), st.sampled_from(["email", "ecid", "q@r.st"]),
                    max_size=3),
    json_scalars), max_size=4)
good_builtins = {"id": st.sampled_from(["e-1", "x" * 256]), "type": st.sampled_from(["view", "buy"]),
                 "timestamp": st.sampled_from(["2026-01-02T03:04:05Z", "2026-01-02T03:04:05+01:00"])}
any_builtins = {"id": st.sampled_from(["e-1", "", "x" * 257, "a\x00", 3, None]),
                "type": st.sampled_from(["view", "buy", "other", "", "t" * 129, None]),
                "timestamp": st.sampled_from(["2026-01-02T03:04:05Z", "bad", None, 5])}


@st.composite
def records(draw, schema: Schema, kind: str):
    """Half of them valid by construction (as far as the schema allows), half broken somewhere."""
    broken = draw(st.booleans())
    record: dict = {"identities": draw(st.one_of(any_identities, json_values) if broken and draw(st.booleans())
                                       else good_identities)}
    if kind == "profile":
        record["attributes"] = draw(bodies(dict(schema.profile), broken))
        if draw(st.booleans()):
            record["timestamp"] = draw(st.sampled_from(["2026-01-02T03:04:05Z", None] + (["yesterday", 7]
                                                                                         if broken else [])))
    else:
        event = draw(bodies(dict(schema.event), broken))
        for name in ("id", "type", "timestamp"):
            if not broken or draw(st.integers(0, 5)):
                event[name] = draw((any_builtins if broken else good_builtins)[name])
        record["event"] = event
    if broken:
        mutation = draw(st.integers(0, 9))
        if mutation == 0:
            record[draw(st.sampled_from(["attributes", "event", "extra", "timestamp"]))] = draw(json_values)
        elif mutation == 1:
            return draw(json_values)
    return record


def same(left, right) -> bool:
    """Equal answers (NaN never equals itself, but a NaN is never valid, so never compared)."""
    return left == right or (isinstance(left, float) and math.isnan(left) and math.isnan(right))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_compiled_equals_interpreted(data):
    schema = data.draw(schemas())
    kind = data.draw(st.sampled_from(["profile", "event"]))
    namespaces = NAMESPACES
    validator = compile_validator(schema, kind, namespaces)
    for _ in range(5):
        record = data.draw(records(schema, kind))
        expected = interpret_record(record, kind, schema, namespaces=namespaces)
        event(f"{kind} {'valid' if expected[0] is not None else 'invalid'}")
        compiled = validator(record, None)
        assert compiled == expected, (record, schema)
        if compiled[0] is not None and compiled[0].plain_fields:
            # stored as they are: the values json_value would convert are none of them
            fields = compiled[0].event_fields
            for dialect in ("sqlite", "postgresql"):
                assert {k: json_value(v, dialect) for k, v in fields.items()} == fields
                assert all(json_value(v, dialect) is v for v in fields.values()), fields


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_luma_records_agree(data):
    """The real schema, with its enums, nested objects and event types."""
    schema = luma_schema()
    kind = data.draw(st.sampled_from(["profile", "event"]))
    record = data.draw(records(schema, kind))
    assert validate_record(record, kind, schema) == interpret_record(record, kind, schema)


def test_valid_records_take_the_compiled_path(monkeypatch):
    """A valid record never reaches the specification: the fast path answers it (else the speed-up
    is silently lost)."""
    from cdp.ingestion import compiled_validation

    schema = luma_schema()
    calls = []
    monkeypatch.setattr(compiled_validation, "interpret_record", lambda *a, **k: calls.append(a) or (None, []))
    validator = compile_validator(schema, "event", NAMESPACES)
    event = {"identities": [{"namespace": "email", "id": "A@b.com"}],
             "event": {"id": "e1", "type": "purchase", "timestamp": "2026-01-02T03:04:05Z",
                       "order": {"total": 12.5}}}
    valid, errors = validator(event, None)
    assert errors == [] and valid is not None and calls == []
    assert valid.identities == [("email", "a@b.com")] and valid.event_fields == {"order.total": 12.5}
    validator({**event, "event": {**event["event"], "type": 5}}, None)
    assert len(calls) == 1


@pytest.mark.parametrize("bound", [None, 10, 10**9])
def test_size_limit_and_bound(monkeypatch, bound):
    """A record over the limit is measured and refused as the specification words it, whatever
    path found it; a caller's bound within the limit skips the measuring."""
    monkeypatch.setattr(limits, "RECORD_MAX_BYTES", 200)
    schema = luma_schema()
    record = {"identities": [{"namespace": "email", "id": "a@b.com"}],
              "attributes": {"person": {"first_name": "x" * 300}}}
    compiled = compile_validator(schema, "profile", NAMESPACES)(record, bound)
    assert compiled == interpret_record(record, "profile", schema, namespaces=NAMESPACES, size_bound=bound)
    assert (compiled[0] is not None) == (bound == 10)


def test_kept_per_schema_content():
    schema = luma_schema()
    again = Schema.from_dict(schema.to_dict())
    assert compiled_validator(schema, "event", NAMESPACES) is compiled_validator(again, "event", NAMESPACES)
    assert compiled_validator(schema, "event", NAMESPACES) is not compiled_validator(schema, "profile", NAMESPACES)
    other = Schema.from_dict({**schema.to_dict(), "event_types": ["only"]})
    assert compiled_validator(other, "event", NAMESPACES) is not compiled_validator(schema, "event", NAMESPACES)


# ---- the walk's bound of a record's size (compiled_validation._chars) ------------------------------------

any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
edge_numbers = st.one_of(
    st.sampled_from([-(2**63), 2**63 - 1, 2**64 - 1, 2**64, -(2**63) - 1, 2**70, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-2.2250738585072014e-308, -1.2345678901234567e-100, 5e-324, -1.7976931348623157e308]))


def _retexted(draw, value):
    """``value`` with some of its strings replaced by any text at all (control characters, quotes,
    backslashes, astral and surrogate code points) and some numbers by edge cases."""
    if isinstance(value, dict):
        return {key: _retexted(draw, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_retexted(draw, item) for item in value]
    if isinstance(value, str) and draw(st.booleans()):
        return draw(any_text)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and draw(st.booleans()):
        return draw(edge_numbers)
    return value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_the_walks_size_bound_is_never_below_the_size(data):
    """Wherever the fast path answers, its bound is at least the length of the record's compact JSON
    — the text ``validation.within_size`` measures — so a bound whose 4× is within the limit gives
    within_size's own answer."""
    from cdp.ingestion import compiled_validation
    from cdp.ingestion.validation import _compact

    schema = data.draw(schemas())
    kind = data.draw(st.sampled_from(["profile", "event"]))
    record = _retexted(data.draw, data.draw(records(schema, kind)))
    make = compiled_validation._profile_validator if kind == "profile" else compiled_validation._event_validator
    try:
        valid, chars = make(schema, NAMESPACES)(record)
    except Exception:  # noqa: BLE001 - refused: the specification answers, no bound used
        event("refused")
        return
    event("answered")
    assert chars >= len(_compact(record)), (record, chars)


@pytest.mark.parametrize("value", ["", "\x00\x1f\"\\", "é" * 10, "\U0001F600", "\ud800", -(2**63), 2**64 - 1,
                                   -2.2250738585072014e-308, float("nan"), float("-inf"), True, False, None, [],
                                   ["\x00é", 2**64 - 1, 1e300, None, True], [["x", [1]], []], [{"a": 1}]])
def test_leaf_bounds(value):
    from cdp.ingestion.compiled_validation import _chars
    from cdp.ingestion.validation import _compact

    assert _chars(value) >= len(_compact(value))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_compiled_equals_interpreted_near_the_size_limit(data):
    """With the limit small enough that records fall on both sides of it (and of the bound's 4×),
    the compiled validator still answers what the specification answers."""
    schema = data.draw(schemas())
    kind = data.draw(st.sampled_from(["profile", "event"]))
    record = _retexted(data.draw, data.draw(records(schema, kind)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(limits, "RECORD_MAX_BYTES", data.draw(st.sampled_from([64, 200, 400, 1000])))
        try:
            expected = interpret_record(record, kind, schema, namespaces=NAMESPACES)
        except UnicodeEncodeError:  # a lone surrogate in a record the specification measures
            return
        assert compile_validator(schema, kind, NAMESPACES)(record, None) == expected


def test_a_small_valid_record_is_not_measured(monkeypatch):
    """The walk's bound answers for a plainly small record: within_size is not called."""
    from cdp.ingestion import compiled_validation

    calls = []
    real = compiled_validation.within_size
    monkeypatch.setattr(compiled_validation, "within_size", lambda *a: calls.append(a) or real(*a))
    validator = compile_validator(luma_schema(), "event", NAMESPACES)
    event_record = {"identities": [{"namespace": "email", "id": "A@b.com"}],
                    "event": {"id": "e1", "type": "purchase", "timestamp": "2026-01-02T03:04:05Z",
                              "order": {"total": 12.5}, "page": {"url": "https://luma.com/"}}}
    assert validator(event_record, None)[0] is not None and calls == []
    big = {**event_record, "event": {**event_record["event"], "page": {"url": "w" * 3000}}}  # 6 × 3000 × 4 > 64 KiB
    assert validator(big, None)[0] is not None and len(calls) == 1
