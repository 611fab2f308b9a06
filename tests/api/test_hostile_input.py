"""Hostile values through every entry point: dates and datetimes at and past the edges of their
range, numbers that are not finite or not 64-bit, values outside a field's allowed values.

Each class goes through streamed records (profile and event datasets), batch files (CSV with a
mapping, JSON Lines), evaluate documents, query parameters (``since``/``until``, ``as_of``) and
``cdp evaluate --profiles``. A bad value is rejected with its path and reason (never a 500, never
stored, never read back as something else); a good value at the edge is stored and read back
unchanged. Values are written into the JSON text as literals, since ``NaN``, ``Infinity`` and
``1e400`` are what a client may send but not what Python's json module writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.schema.luma import LUMA_SCHEMA
from tests.api.conftest import assert_error, create_dataset
from tests.api.test_ingestion_batches import _errors, _upload, _wait

# The sandbox's schema: Luma plus the field kinds Luma lacks (event date/datetime fields, lists of
# dates and numbers, a list<string> with allowed values).
SCHEMA = {
    "profile": {**LUMA_SCHEMA["profile"], "visits": "list<date>", "scores": "list<number>", "labels": "list<string>"},
    "event": {**LUMA_SCHEMA["event"], "delivery.date": "date", "delivery.at": "datetime",
              "delivery.weight": "number", "delivery.count": "integer"},
    "event_types": LUMA_SCHEMA["event_types"],
    "enums": {**LUMA_SCHEMA["enums"], "labels": ["vip", "staff"]},
}

HUGE_INTEGER = "9" * 5000  # past Python's 4,300-digit limit for parsing integers


@dataclass(frozen=True)
class Case:
    kind: str  # "profile" (attributes.<path>, or the record's timestamp) or "event" (event.<path>)
    path: str  # dotted, within attributes / event; "timestamp" for the record's or event's own
    literal: str  # JSON text of the value
    reason: str | None  # a word of the rejection, or None when the value is accepted
    cell: str | None = None  # the CSV cell, when it differs from the literal without quotes
    csv_reason: str | None = None  # the reason for the CSV cell, when a CSV cell is refused earlier

    @property
    def id(self) -> str:
        return f"{self.kind}.{self.path}={self.literal[:30]}"

    @property
    def text(self) -> str:
        if self.cell is not None:
            return self.cell
        return json.loads(self.literal) if self.literal.startswith('"') else self.literal


def _range(kind, path, literal, cell=None):
    return Case(kind, path, literal, "range", cell)


BAD_DATES = [
    _range("event", "timestamp", '"9999-12-31T23:59:59-05:00"'),
    _range("event", "timestamp", '"0001-01-01T00:00:00+01:00"'),
    Case("event", "timestamp", '"0000-01-01T00:00:00Z"', "year 0"),
    Case("event", "timestamp", '"10000-01-01T00:00:00Z"', "ISO 8601"),
    Case("event", "timestamp", '"2026-02-30T10:00:00Z"', "day is out of range"),
    Case("event", "timestamp", "1764331200", "expected an ISO 8601 timestamp", csv_reason="not an ISO 8601"),
    _range("profile", "timestamp", '"9999-12-31T23:59:59-05:00"'),
    _range("profile", "created_at", '"0001-01-01T00:00:00+01:00"'),
    _range("profile", "created_at", '"9999-12-31T20:00:00-12:00"'),
    Case("profile", "person.birth_date", '"0000-01-01"', "year 0"),
    Case("profile", "person.birth_date", '"10000-01-01"', "expected a date"),
    Case("profile", "loyalty.joined", '"2026-02-30"', "day is out of range"),
    Case("profile", "visits", '["2026-01-01", "0000-12-31"]', "year 0", cell="2026-01-01;0000-12-31"),
    _range("event", "delivery.at", '"9999-12-31T23:59:59.999999-00:01"'),
    Case("event", "delivery.date", '"2026-13-01"', "month must be in 1..12"),
]
GOOD_DATES = [  # (case, how the API shows it)
    (Case("event", "timestamp", '"0999-01-01T00:00:00Z"', None), "0999-01-01T00:00:00Z"),
    (Case("event", "timestamp", '"0001-01-01T00:00:00-01:00"', None), "0001-01-01T01:00:00Z"),
    (Case("event", "timestamp", '"9999-12-31T23:59:59.999999Z"', None), "9999-12-31T23:59:59.999999Z"),
    (Case("event", "timestamp", '"9999-12-31T23:59:59+05:00"', None), "9999-12-31T18:59:59Z"),
    (Case("profile", "created_at", '"0001-01-01T00:00:00Z"', None), "0001-01-01T00:00:00Z"),
    (Case("profile", "created_at", '"0999-12-31T23:00:00-01:00"', None), "1000-01-01T00:00:00Z"),
    (Case("profile", "person.birth_date", '"0001-01-01"', None), "0001-01-01"),
    (Case("profile", "loyalty.joined", '"9999-12-31"', None), "9999-12-31"),
    (Case("profile", "visits", '["0999-06-15", "9999-12-31"]', None, cell="0999-06-15;9999-12-31"),
     ["0999-06-15", "9999-12-31"]),
    (Case("event", "delivery.at", '"0500-05-05T05:05:05Z"', None), "0500-05-05T05:05:05Z"),
    (Case("event", "delivery.date", '"0001-01-01"', None), "0001-01-01"),
]

NOT_FINITE = "numbers are finite"
BEYOND_64 = "64-bit integer range"
BAD_NUMBERS = [
    Case("profile", "lifetime_value", "NaN", NOT_FINITE),
    Case("profile", "lifetime_value", "Infinity", NOT_FINITE),
    Case("profile", "lifetime_value", "-Infinity", NOT_FINITE),
    Case("profile", "lifetime_value", "1e400", NOT_FINITE),
    Case("profile", "lifetime_value", "-1e400", NOT_FINITE),
    Case("profile", "lifetime_value", "100000000000000000000", BEYOND_64),
    Case("profile", "loyalty.points", "9223372036854775808", BEYOND_64),
    Case("profile", "loyalty.points", "-9223372036854775809", BEYOND_64),
    Case("profile", "loyalty.points", "1e19", BEYOND_64, csv_reason="expected an integer"),
    Case("profile", "loyalty.points", "NaN", NOT_FINITE, csv_reason="expected an integer"),
    Case("profile", "loyalty.points", "1e400", NOT_FINITE, csv_reason="expected an integer"),
    Case("profile", "scores", "[1.5, NaN]", NOT_FINITE),  # not in CSV: a split cell's items stay text
    Case("event", "product.price", "Infinity", NOT_FINITE),
    Case("event", "delivery.weight", "1e999", NOT_FINITE),
    Case("event", "product.quantity", "18446744073709551616", BEYOND_64),
    Case("event", "delivery.count", "-1e300", BEYOND_64, csv_reason="expected an integer"),
]
GOOD_NUMBERS = [
    (Case("profile", "loyalty.points", "9223372036854775807", None), 9223372036854775807),
    (Case("profile", "loyalty.points", "-9223372036854775808", None), -9223372036854775808),
    (Case("profile", "lifetime_value", "1.7976931348623157e308", None), 1.7976931348623157e308),
    (Case("profile", "lifetime_value", "5e-324", None), 5e-324),
    (Case("profile", "lifetime_value", "-9223372036854775808", None), -9223372036854775808),
    (Case("event", "product.quantity", "3.0", None, cell="3"), 3),  # CSV integers are digits
    (Case("event", "delivery.weight", "1e20", None), 1e20),
]

NOT_ALLOWED = "is not an allowed value"
BAD_VALUES = [
    Case("profile", "loyalty.tier", '"diamond"', NOT_ALLOWED),
    Case("profile", "loyalty.tier", '"Gold"', "did you mean 'gold'"),
    Case("profile", "preferred_size", '"XXXXL"', "did you mean 'XXL'"),
    Case("profile", "preferred_category", '"shoes"', NOT_ALLOWED),
    Case("profile", "home_address.country", '"Narnia"', NOT_ALLOWED),
    Case("profile", "home_address.country", '"us"', "did you mean 'US'"),
    Case("profile", "home_address.country", '"USA"', NOT_ALLOWED),
    Case("profile", "consents.email", '"maybe"', NOT_ALLOWED),
    Case("profile", "consents.sms", '"Y"', "did you mean 'y'"),
    Case("profile", "consents.ads", '"yes"', NOT_ALLOWED),
    Case("profile", "labels", '["vip", "intern"]', NOT_ALLOWED, cell="vip;intern"),
    Case("event", "channel", '"store"', NOT_ALLOWED),
    Case("event", "device.type", '"watch"', NOT_ALLOWED),
]
GOOD_VALUES = [
    (Case("profile", "loyalty.tier", '"platinum"', None), "platinum"),
    (Case("profile", "home_address.country", '"ZW"', None), "ZW"),
    (Case("profile", "consents.email", '"n"', None), "n"),
    (Case("profile", "labels", '["staff", "vip"]', None, cell="staff;vip"), ["staff", "vip"]),
    (Case("event", "channel", '"call_center"', None), "call_center"),
]

BAD = BAD_DATES + BAD_NUMBERS + BAD_VALUES
GOOD = GOOD_DATES + GOOD_NUMBERS + GOOD_VALUES


def _nested(path: str, literal: str) -> str:
    """``{"a": {"b": <literal>}}`` as text, for a dotted path."""
    text = literal
    for part in reversed(path.split(".")):
        text = f"{{{json.dumps(part)}: {text}}}"
    return text


def record_text(case: Case, email: str, event_id: str = "e-1") -> str:
    identities = json.dumps([{"namespace": "email", "id": email}])
    if case.kind == "profile":
        if case.path == "timestamp":
            return f'{{"identities": {identities}, "timestamp": {case.literal}, "attributes": {{"email": "{email}"}}}}'
        return f'{{"identities": {identities}, "attributes": {_nested(case.path, case.literal)}}}'
    timestamp = "" if case.path == "timestamp" else ', "timestamp": "2026-11-27T10:00:00Z"'
    fields = _nested(case.path, case.literal)[1:-1]  # "path": value, inside the event object
    return (f'{{"identities": {identities}, "event": {{"id": "{event_id}", "type": "purchase"{timestamp}, '
            f'{fields}}}}}')


def document_text(case: Case) -> str:
    """A profile document holding the value (for evaluate and cdp evaluate)."""
    if case.kind == "profile":
        if case.path == "timestamp":
            pytest.skip("a profile document has no record timestamp")
        return f'{{"id": "p-1", "attributes": {_nested(case.path, case.literal)}}}'
    timestamp = "" if case.path == "timestamp" else ', "timestamp": "2026-11-27T10:00:00Z"'
    fields = _nested(case.path, case.literal)[1:-1]
    return f'{{"id": "p-1", "events": [{{"id": "e-1", "type": "purchase"{timestamp}, {fields}}}]}}'


def _where(case: Case) -> str:
    if case.path == "timestamp" and case.kind == "profile":
        return "timestamp"
    return ("attributes." if case.kind == "profile" else "event.") + case.path


@pytest.fixture
def hostile(api):
    response = api.put("/v1/schema", json=SCHEMA)
    assert response.status_code == 200, response.text
    return api, {"profile": create_dataset(api, "profile"), "event": create_dataset(api, "event")}


def _post_record(api, dataset: int, text: str):
    return api.post(f"/v1/datasets/{dataset}/records", content=text.encode(),
                    headers={"content-type": "application/json"})


def _same(value, shown) -> bool:
    """Equal, and of the same JSON type (1e20 read back as the integer 100000000000000000000 is not)."""
    if isinstance(shown, list):
        return isinstance(value, list) and len(value) == len(shown) and all(map(_same, value, shown))
    return value == shown and type(value) is type(shown)


def _read_back(api, case: Case, email: str):
    profile = api.get("/v1/profiles/lookup", params={"namespace": "email", "id": email})
    assert profile.status_code == 200, profile.text
    body = profile.json()
    if case.kind == "event":
        [event] = body["events"]
        value = event
    else:
        value = body["attributes"]
    for part in case.path.split("."):
        value = value[part]
    return value


# ---- streamed records ------------------------------------------------------------------------


def test_streamed_records(hostile):
    api, datasets = hostile
    for number, case in enumerate(BAD):
        response = _post_record(api, datasets[case.kind], record_text(case, f"bad{number}@example.com"))
        assert response.status_code == 200, (case.id, response.text)
        [result] = response.json()["results"]
        assert result["status"] == "rejected", (case.id, result)
        [error] = result["errors"]
        assert error["path"] == _where(case) and case.reason in error["message"], (case.id, error)
    for number, (case, shown) in enumerate(GOOD):
        email = f"good{number}@example.com"
        response = _post_record(api, datasets[case.kind], record_text(case, email, f"g-{number}"))
        assert response.status_code == 200 and response.json()["accepted"] == 1, (case.id, response.text)
        if case.path != "timestamp" or case.kind == "event":
            assert _same(_read_back(api, case, email), shown), case.id
    rejected = api.get("/v1/profiles", params={"q": "bad"}).json()
    assert rejected["total"] == 0, "a rejected record stored something"


def test_a_huge_integer_or_a_non_json_number_is_a_clear_error(hostile):
    api, datasets = hostile
    case = Case("profile", "loyalty.points", HUGE_INTEGER, None)
    response = _post_record(api, datasets["profile"], record_text(case, "huge@example.com"))
    error = assert_error(response, 400, "invalid_json")
    assert len(response.text) < 2000, error


def test_year_999_is_stored_and_read_like_any_other(hostile):
    """The profile of an event before year 1000 stays readable (lookup, by id, events, search),
    its events sort by time, and since/until find it."""
    api, datasets = hostile
    email = "old@example.com"
    for event_id, timestamp in (("new", "2026-11-27T10:00:00Z"), ("old", "0999-01-01T00:00:00Z"),
                                ("older", "0099-05-05T00:00:00Z")):
        text = record_text(Case("event", "timestamp", json.dumps(timestamp), None), email, event_id)
        assert _post_record(api, datasets["event"], text).json()["accepted"] == 1
    lookup = api.get("/v1/profiles/lookup", params={"namespace": "email", "id": email})
    assert lookup.status_code == 200, lookup.text
    profile_id = lookup.json()["id"]
    assert [e["id"] for e in lookup.json()["events"]] == ["new", "old", "older"]
    assert api.get(f"/v1/profiles/{profile_id}").status_code == 200
    events = api.get(f"/v1/profiles/{profile_id}/events", params={"until": "1000-01-01T00:00:00Z"})
    assert [(e["id"], e["timestamp"]) for e in events.json()["items"]] == [
        ("old", "0999-01-01T00:00:00Z"), ("older", "0099-05-05T00:00:00Z")]
    events = api.get(f"/v1/profiles/{profile_id}/events", params={"since": "0999-01-01T00:00:00Z"})
    assert [e["id"] for e in events.json()["items"]] == ["new", "old"]
    assert api.get("/v1/profiles", params={"q": "old@"}).json()["total"] == 1


# ---- batch files -----------------------------------------------------------------------------


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


@pytest.mark.parametrize("kind", ["profile", "event"])
def test_csv_files(hostile, kind):
    api, datasets = hostile
    cases = [c for c in BAD if c.kind == kind and (c.path != "timestamp" or kind == "event") and c.path != "scores"]
    good = [(c, shown) for c, shown in GOOD if c.kind == kind and (c.path != "timestamp" or kind == "event")]
    paths = sorted({c.path for c in cases} | {c.path for c, _ in good})
    mapping = {"email": "identity.email", **{p: {"to": p, "transforms": [{"split": ";"}]}
                                             if SCHEMA["profile" if kind == "profile" else "event"].get(p, "")
                                             .startswith("list") else p for p in paths if p != "timestamp"}}
    if kind == "event":
        mapping.update({"id": "id", "type": "type", "timestamp": "timestamp"})
    columns = list(mapping)
    rows = []
    for number, case in enumerate([c for c in cases] + [c for c, _ in good]):
        row = {"email": f"{kind}{number}@example.com", "id": f"c-{number}", "type": "purchase",
               "timestamp": "2026-11-27T10:00:00Z", case.path: case.text}
        rows.append(",".join(_csv_cell(str(row.get(column, ""))) for column in columns))
    content = ",".join(columns) + "\n" + "\n".join(rows) + "\n"
    batch = _wait(api, _upload(api, datasets[kind], content, f"{kind}.csv", mapping, error_threshold=1)["id"])
    assert batch["status"] == "succeeded", batch
    errors = {e["row_number"]: e for e in _errors(api, batch["id"])}
    assert batch["rejected_rows"] == len(cases) and batch["accepted_rows"] == len(good), (
        batch, [(n, e["column"], e["reason"][:100]) for n, e in sorted(errors.items())])
    for number, case in enumerate(cases):
        error = errors[number + 2]
        assert (case.csv_reason or case.reason) in error["reason"], (case.id, error)
    for number, (case, shown) in enumerate(good, start=len(cases)):
        assert _same(_read_back(api, case, f"{kind}{number}@example.com"), shown), case.id


def test_json_lines_files(hostile):
    api, datasets = hostile
    for kind in ("profile", "event"):
        cases = [c for c in BAD if c.kind == kind] + [Case(kind, "x", HUGE_INTEGER, "")]
        lines = [record_text(c, f"j{kind}{n}@example.com", f"j-{n}") if c.path != "x" else
                 f'{{"identities": [{{"namespace": "email", "id": "j@example.com"}}], "x": {HUGE_INTEGER}}}'
                 for n, c in enumerate(cases)]
        good = [(c, shown) for c, shown in GOOD if c.kind == kind]
        lines += [record_text(c, f"jg{kind}{n}@example.com", f"jg-{n}") for n, (c, _) in enumerate(good)]
        batch = _wait(api, _upload(api, datasets[kind], "\n".join(lines) + "\n", f"{kind}.jsonl",
                                   error_threshold=1)["id"])
        assert batch["status"] == "succeeded", batch
        errors = {e["row_number"]: e for e in _errors(api, batch["id"])}
        assert (batch["rejected_rows"], batch["accepted_rows"]) == (len(cases), len(good)), (batch, errors)
        for number, case in enumerate(cases[:-1], start=1):
            assert case.reason in errors[number]["reason"], (case.id, errors[number])
        assert len(errors[len(cases)]["reason"]) < 400
        for number, (case, shown) in enumerate(good):
            assert _same(_read_back(api, case, f"jg{kind}{number}@example.com"), shown), case.id


# ---- evaluate documents and query parameters ---------------------------------------------------


@pytest.mark.parametrize("case", [c for c in BAD if not (c.kind == "profile" and c.path == "timestamp")],
                         ids=lambda c: c.id)
def test_evaluate_documents(hostile, case):
    api, _ = hostile
    body = f'{{"expression": "loyalty.points > 1", "as_of": "2026-11-28T12:00:00Z", "profile": {document_text(case)}}}'
    response = api.post("/v1/profiles/evaluate", role="reader", content=body.encode(),
                        headers={"content-type": "application/json"})
    error = assert_error(response, 422, "invalid_profile")
    assert case.path in error["message"] and case.reason in error["message"], error


def test_evaluate_documents_at_the_edges_are_evaluated(hostile):
    api, _ = hostile
    for case, _shown in GOOD:
        if case.kind == "profile" and case.path == "timestamp":
            continue
        body = f'{{"expression": "loyalty.points > 1", "profile": {document_text(case)}}}'
        response = api.post("/v1/profiles/evaluate", role="reader", content=body.encode(),
                            headers={"content-type": "application/json"})
        assert response.status_code == 200, (case.id, response.text)


OUT_OF_RANGE_INSTANTS = ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"]
EDGE_INSTANTS = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59+05:00",
                 "0001-01-01T00:00:00-01:00"]


def test_as_of_outside_the_range_is_a_validation_error(hostile):
    api, _ = hostile
    expression = 'exists event where type = "purchase" within last 30 days and age(person.birth_date) > 1'
    for as_of in OUT_OF_RANGE_INSTANTS:
        response = api.post("/v1/profiles/evaluate", role="reader", json={
            "expression": expression, "profile": {"id": "p"}, "as_of": as_of})
        error = assert_error(response, 422, "validation_error")
        assert error["details"]["errors"][0]["loc"] == ["body", "as_of"] and "range" in error["message"], error
    document = {"id": "p", "attributes": {"person": {"birth_date": "0001-01-01"}},
                "events": [{"id": "e", "type": "purchase", "timestamp": "9999-12-31T23:59:59Z"}]}
    for as_of in EDGE_INSTANTS:
        response = api.post("/v1/profiles/evaluate", role="reader", json={
            "expression": expression, "profile": document, "as_of": as_of})
        assert response.status_code == 200, (as_of, response.text)


def test_since_and_until_outside_the_range_are_validation_errors(hostile):
    api, datasets = hostile
    text = record_text(Case("event", "timestamp", '"2026-11-27T10:00:00Z"', None), "q@example.com")
    assert _post_record(api, datasets["event"], text).json()["accepted"] == 1
    profile_id = api.get("/v1/profiles/lookup", params={"namespace": "email", "id": "q@example.com"}).json()["id"]
    for name in ("since", "until"):
        for value in OUT_OF_RANGE_INSTANTS:
            response = api.get(f"/v1/profiles/{profile_id}/events", params={name: value}, role="reader")
            error = assert_error(response, 422, "validation_error")
            assert error["details"]["errors"][0]["loc"] == ["query", name] and "range" in error["message"], error
        for value in EDGE_INSTANTS:
            response = api.get(f"/v1/profiles/{profile_id}/events", params={name: value}, role="reader")
            assert response.status_code == 200, (name, value, response.text)
            assert response.json()["total"] == (1 if (name == "since") == value.startswith("0001") else 0)


def test_datetime_literals_outside_the_range_are_invalid_literals(hostile):
    api, _ = hostile
    for value in OUT_OF_RANGE_INSTANTS:
        response = api.post("/v1/expressions/check", json={"expression": f'created_at < datetime("{value}")'})
        error = assert_error(response, 422, "invalid_expression")
        assert [e["code"] for e in error["details"]["errors"]] == ["invalid_literal"], error


def test_the_checker_warns_about_values_outside_the_allowed_values(hostile):
    api, _ = hostile
    response = api.post("/v1/expressions/check", json={
        "expression": 'labels has "intern" or loyalty.tier in ["gold", "Diamond"] or '
                      'exists event where channel != "store"'})
    assert response.status_code == 200, response.text
    warnings = response.json()["warnings"]
    assert [(w["code"], w["column"], w["end_column"]) for w in warnings] == [
        ("unlisted_value", 12, 20), ("unlisted_value", 49, 58), ("unlisted_value", 93, 100)]
    assert "allowed values: vip, staff" in warnings[0]["hint"] and "bronze" in warnings[1]["hint"]


# ---- the command line ------------------------------------------------------------------------

CLI_CASES = [c for c in BAD if c.path in LUMA_SCHEMA["profile"] or c.path in LUMA_SCHEMA["event"]
             or (c.kind == "event" and c.path == "timestamp")]


def test_cdp_evaluate_profiles(tmp_path: Path):
    lines = [document_text(case).replace('"p-1"', f'"p-{n}"') for n, case in enumerate(CLI_CASES)]
    lines.append('{"id": "huge", "attributes": {"loyalty": {"points": ' + HUGE_INTEGER + "}}}")
    lines.append(document_text(Case("event", "timestamp", '"0999-01-01T00:00:00Z"', None)).replace('"p-1"', '"ok"'))
    path = tmp_path / "profiles.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = subprocess.run([str(Path(sys.executable).parent / "cdp"), "evaluate", "--profiles", str(path),
                             "--as-of", "2026-11-28T12:00:00Z", "loyalty.points > 1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    problems = result.stderr.strip().splitlines()
    assert len(problems) == len(CLI_CASES) + 1, result.stderr
    for number, (case, line) in enumerate(zip(CLI_CASES, problems), start=1):
        assert line.startswith(f"invalid_profile: {path} line {number}: ") and case.reason in line, (case.id, line)
    assert problems[-1].startswith(f"invalid_profile: {path} line {len(CLI_CASES) + 1}: ")
    for as_of in OUT_OF_RANGE_INSTANTS:
        result = subprocess.run([str(Path(sys.executable).parent / "cdp"), "evaluate", "--profiles", str(path),
                                 "--as-of", as_of, "true"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("invalid_argument: --as-of") and "range" in result.stderr


# ---- the stored text of instants -------------------------------------------------------------

# fixed offsets: a zone's gaps and folds make aware datetimes compare unequal to themselves (PEP 495)
offsets = st.integers(min_value=-1439, max_value=1439).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets)


@settings(max_examples=300, deadline=None)
@given(instants, instants)
def test_sqlite_text_of_instants_sorts_and_reads_back_as_the_instants_do(a: datetime, b: datetime):
    """SQLite compares stored instants as text: the text must order as the instants do and
    read back as the same instant (the year in four digits: ``999`` sorted after ``2026``)."""
    from cdp.storage.sqlite_functions import to_text, to_value
    from cdp.storage.database import sqlite_text
    from cdp.engine.sql.loading import json_value

    for value in (a, b):
        assert to_text(value) == sqlite_text(value) == json_value(value, "sqlite")
        assert to_value(sqlite_text(value)) == value
    assert (sqlite_text(a) < sqlite_text(b)) == (a < b)
    assert (sqlite_text(a) == sqlite_text(b)) == (a == b)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(), st.integers(min_value=-1439, max_value=1439))
def test_an_instant_is_accepted_exactly_when_it_lies_in_the_range(value: datetime, minutes: int):
    """Ingestion's parse and the documented range agree on every datetime and offset."""
    from cdp.engine.profile import parse_timestamp

    offset = timezone(timedelta(minutes=minutes))
    local = value.replace(tzinfo=offset)
    try:
        expected = local.astimezone(timezone.utc)
        in_range = True
    except OverflowError:
        in_range = False
    text = local.isoformat()
    if in_range:
        assert parse_timestamp(text) == expected
    else:
        with pytest.raises(ValueError, match="outside the range of datetimes"):
            parse_timestamp(text)


# ---- allowed values that change ----------------------------------------------------------------


def test_an_enum_that_shrinks_keeps_stored_data_and_segments(api, engine):
    """Removing an allowed value is a compatible change: the profiles holding it stay readable and
    are evaluated as they are (a merge re-evaluates them), a stored segment naming it still checks
    (a warning), and new records with it are refused."""
    from datetime import datetime, timezone

    from cdp.storage.models import segments

    schema = {k: api.get("/v1/schema").json()[k] for k in ("profile", "event", "event_types", "enums")}
    schema["enums"]["loyalty.tier"] = ["bronze", "silver", "gold", "platinum", "diamond"]
    assert api.put("/v1/schema", json=schema).status_code == 200
    now = datetime.now(timezone.utc)
    with engine.begin() as connection:
        connection.execute(segments.insert().values(sandbox=api.sandbox, key="diamonds", name="diamonds",
                                                    expression='loyalty.tier = "diamond"',
                                                    canonical='loyalty.tier = "diamond"', created_at=now, updated_at=now))
    crm, web = create_dataset(api, "profile"), create_dataset(api, "event")
    email, cookie = {"namespace": "email", "id": "d@example.com"}, {"namespace": "ecid", "id": "X"}
    accepted = api.post(f"/v1/datasets/{crm}/records", json={"identities": [email],
                                                             "attributes": {"loyalty": {"tier": "diamond"}}})
    assert accepted.json()["accepted"] == 1, accepted.text
    login = {"id": "l-1", "type": "login", "timestamp": now.isoformat()}
    assert api.post(f"/v1/datasets/{web}/records", json={"identities": [cookie], "event": login}).json()["accepted"] == 1

    schema["enums"]["loyalty.tier"] = ["bronze", "silver", "gold", "platinum"]
    shrunk = api.put("/v1/schema", json=schema)
    assert shrunk.status_code == 200, shrunk.text
    check = api.post("/v1/expressions/check", json={"expression": 'loyalty.tier = "diamond"'}).json()
    assert [w["code"] for w in check["warnings"]] == ["unlisted_value"]

    refused = api.post(f"/v1/datasets/{crm}/records", json={"identities": [{"namespace": "email", "id": "e@x.com"}],
                                                            "attributes": {"loyalty": {"tier": "diamond"}}})
    assert refused.json()["results"][0]["status"] == "rejected"
    merge = {**login, "id": "l-2"}
    merged = api.post(f"/v1/datasets/{web}/records", json={"identities": [email, cookie], "event": merge})
    assert merged.status_code == 200 and merged.json()["accepted"] == 1, merged.text
    profile = api.get("/v1/profiles/lookup", params={"namespace": "ecid", "id": "X"}).json()
    assert profile["attributes"]["loyalty"]["tier"] == "diamond"
    assert {m["segment"]: m["status"] for m in profile["memberships"]} == {"diamonds": "realized"}


def test_allowed_values_are_for_string_fields(api):
    schema = {k: api.get("/v1/schema").json()[k] for k in ("profile", "event", "event_types", "enums")}
    for enums, problem in (({"loyalty.points": ["1", "2"]}, "is of type integer"),
                           ({"loyalty.tier": []}, "lists 0 values"),
                           ({"loyalty.tier": ["gold", "gold"]}, "lists a value twice"),
                           ({"loyalty.tier": ["gold", ""]}, "1 to 256 characters")):
        response = api.put("/v1/schema", json={**schema, "enums": enums})
        error = assert_error(response, 422, "invalid_schema")
        assert any(problem in e for e in error["details"]["errors"]), error
