"""The records endpoint's answer, encoded by hand (``models.ingest_response_json``), is byte for
byte what pydantic makes of the documented response model, and the hand-made C encoder of the bulk
writes (``bulk.json_text``) is ``json.dumps``, and a record is measured as its compact JSON."""

from __future__ import annotations

import json

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.ingestion.models import IngestResponse, RecordError, RecordResult, RecordStatus, ingest_response_json
from cdp.storage import bulk

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
results = st.builds(
    RecordResult, index=st.integers(0, 999), status=st.sampled_from(list(RecordStatus)),
    profile_id=st.one_of(st.none(), texts),
    errors=st.lists(st.builds(RecordError, path=texts, message=texts), max_size=2),
    warnings=st.lists(texts, max_size=2))
responses = st.builds(IngestResponse, dataset_id=st.integers(1, 2**63 - 1), request_id=texts,
                      accepted=st.integers(0, 1000), rejected=st.integers(0, 1000), duplicates=st.integers(0, 1000),
                      results=st.lists(results, max_size=4))


@settings(max_examples=300, deadline=None)
@given(responses)
def test_hand_encoded_answer_is_the_models(response):
    encoded = ingest_response_json(response)
    assert json.loads(encoded) == response.model_dump(mode="json")
    assert encoded == response.model_dump_json().encode()


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80), st.floats(), texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)), max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_bulk_json_text_is_json_dumps(value):
    assert bulk.json_text(value) == json.dumps(value)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(0, 200))
def test_record_size_is_the_compact_json_of_the_record(value, limit):
    from cdp.ingestion.validation import record_size, within_size

    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    assert record_size(value) == len(text.encode())
    assert within_size(value, limit) == (len(text.encode()) <= limit)
