"""The Writer's results of accepted and duplicate records, made without pydantic's validation
(``writer._result``), are the validated model's: equal, the same fields set, the same dump and
the same bytes in the records endpoint's answer."""

from __future__ import annotations

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.ingestion import writer
from cdp.ingestion.models import IngestResponse, RecordResult, RecordStatus, ingest_response_json

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)


def test_the_fast_constructor_is_in_use():
    # this pydantic's internals are the ones _made_result sets: not the fallback
    assert writer._result is not writer._validated_result


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 999), st.sampled_from([RecordStatus.accepted, RecordStatus.duplicate]),
       st.one_of(st.none(), texts), st.lists(texts, max_size=3))
def test_a_made_result_is_the_validated_model(index, status, profile_id, warnings):
    made = writer._result(index, status, profile_id, list(warnings))
    validated = RecordResult(index=index, status=status, profile_id=profile_id, warnings=list(warnings))
    assert type(made) is RecordResult
    assert made == validated
    assert made.model_fields_set == validated.model_fields_set
    assert made.model_dump() == validated.model_dump()
    assert made.model_dump_json() == validated.model_dump_json()
    response = IngestResponse(dataset_id=1, request_id="r", accepted=1, rejected=0, duplicates=0, results=[made])
    assert response.results[0] is made
    assert ingest_response_json(response) == response.model_dump_json().encode()
    # each result its own lists and fields set: changing one changes no other
    other = writer._result(index, status, profile_id, [])
    made.errors.append("x")
    made.model_fields_set.add("errors")
    assert other.errors == [] and "errors" not in other.model_fields_set
