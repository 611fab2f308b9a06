"""The lean load of a stored profile for in-memory evaluation (cdp.profiles.documents.stored_profile,
what streaming evaluation and POST /v1/evaluate read) gives exactly what the profile document
round trip gave — ``load_profile(profile_document(...), allowed_values=False)`` — identities
aside, on SQLite and PostgreSQL; with ``event_types``, the same profile holding only the events
of those types. Keys are interned."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings

import cdp.dsl  # noqa: F401 - before cdp.schema
from cdp.demo import generate_profiles
from cdp.engine import load_profile
from cdp.engine.sql.loading import load_documents
from cdp.profiles.documents import profile_document, stored_profile
from cdp.schema import luma_schema
from cdp.storage.models import profiles
from tests.test_differential import profiles as generated_profiles

SANDBOXES = (f"stored-{i}" for i in itertools.count())


def _shape(profile) -> tuple:
    return (profile.id, profile.attributes, profile.events, profile.timestamps,
            {t: (list(e), list(ts)) for t, (e, ts) in profile.by_type.items()})


def _assert_same(engine, documents) -> None:
    import sqlalchemy as sa

    schema = luma_schema()
    sandbox = next(SANDBOXES)
    with engine.begin() as connection:
        load_documents(connection, [load_profile(d, allowed_values=False) for d in documents], sandbox=sandbox)
    with engine.connect() as connection:
        for pk in connection.execute(sa.select(profiles.c.pk).where(profiles.c.sandbox == sandbox)).scalars():
            expected = load_profile(profile_document(connection, pk, schema=schema), schema, allowed_values=False)
            lean = stored_profile(connection, pk, schema=schema)
            assert _shape(lean) == _shape(expected)
            assert all(type(v) is type(expected.attributes[k]) for k, v in lean.attributes.items())
            for types in ({"purchase"}, {"addToCart", "productView"}, set()):
                some = stored_profile(connection, pk, schema=schema, event_types=types)
                assert some.attributes == expected.attributes
                assert some.events == [e for e in expected.events if e["type"] in types]
            for path in lean.attributes:
                assert path is next(k for k in expected.attributes if k == path)  # interned: the same object


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents=generated_profiles)
def test_stored_profile_is_the_document_round_trip(migrated_engine, documents):
    _assert_same(migrated_engine, documents)


def test_stored_profile_of_demo_profiles(migrated_engine):
    _assert_same(migrated_engine, generate_profiles(30, seed=7))


@pytest.mark.parametrize("types", [None])
def test_unknown_profile_raises(migrated_engine, types):
    import sqlalchemy as sa

    with migrated_engine.connect() as connection, pytest.raises(sa.exc.NoResultFound):
        stored_profile(connection, 10**9, schema=luma_schema(), event_types=types)
