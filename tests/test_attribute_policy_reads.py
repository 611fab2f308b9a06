"""A profile's attributes after streaming requests equal the merge policy applied again to every
stored source row, decoded as Core decodes them (``apply_policy``) — on both databases, both
policies, values of every type (numbers that are whole, dates, datetimes, lists, booleans), ties
of ``observed_at`` between datasets, removals, and records that land on stored profiles and merge
them.

Ingestion reads only what the policy needs of the stored rows and decodes only the winning
values (cdp/identity/attributes.py, ``record_attributes_many``); this checks that what it shows is
what reading and decoding every row would show.
"""

from __future__ import annotations

import random
import uuid

import pytest
import sqlalchemy as sa

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)
from cdp.identity.attributes import apply_policy
from cdp.identity.settings import MergePolicy, get_identity_settings, put_identity_settings
from cdp.ingestion.service import ingest_records
from cdp.schema import luma_schema
from cdp.storage.database import write_transaction
from cdp.storage.models import datasets, profiles

_VALUES = {
    "lifetime_value": [1.0, 2.5, 3, 0.0, -7.25, 1e20],
    "loyalty.points": [0, 10, 20_000, -3],
    "loyalty.tier": ["gold", "silver", "bronze"],
    "home_address.street": ["", "ünïcode ✓", "1", "null", "1.0", "true"],  # texts that look like JSON
    "person.birth_date": ["1990-01-02", "2001-12-31"],
    "created_at": ["2026-11-28T10:00:00Z", "2026-11-28T11:30:00.123456+02:00"],
    "interests": [["a", "b"], [], ["x"]],
    "email_opt_in": [True, False],
    "home_address.city": ["Paris", "Lyon"],
}
_TIMESTAMPS = ["2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "2026-11-02T00:00:00Z", None]


def _attributes(rng: random.Random) -> dict:
    attributes: dict = {}
    for path in rng.sample(sorted(_VALUES), rng.randint(1, 5)):
        value = None if rng.random() < 0.15 else rng.choice(_VALUES[path])  # null: removed
        node = attributes
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return attributes


@pytest.mark.parametrize("policy", [MergePolicy.timestamp_ordered, MergePolicy.dataset_precedence])
def test_shown_attributes_are_the_policy_over_every_stored_row(migrated_engine, policy):
    engine = migrated_engine
    sandbox = f"ap-{uuid.uuid4().hex[:8]}"
    with write_transaction(engine) as connection:
        keys = [connection.execute(datasets.insert().values(
            sandbox=sandbox, name=f"crm{n}", kind="profile", labels=[], field_labels={},
            created_at=sa.func.now(), updated_at=sa.func.now()).returning(datasets.c.pk)).scalar_one()
            for n in range(3)]
        put_identity_settings(connection=connection, sandbox=sandbox, merge_policy=policy,
                              dataset_precedence=[keys[2], keys[0]] if policy == MergePolicy.dataset_precedence
                              else [], graph_limit=50, unique_namespaces=[], namespaces=frozenset({"ecid", "email"}))
    rng = random.Random(16)
    for _ in range(14):
        records = []
        for _ in range(rng.randint(1, 6)):
            pairs = [{"namespace": "ecid", "id": f"c{rng.randint(1, 8)}"}]
            if rng.random() < 0.25:  # links two people now and then: merges
                pairs.append({"namespace": "email", "id": f"p{rng.randint(1, 8)}@example.com"})
            record = {"identities": pairs, "attributes": _attributes(rng)}
            stamp = rng.choice(_TIMESTAMPS)
            if stamp is not None:
                record["timestamp"] = stamp
            records.append(record)
        with write_transaction(engine) as connection:
            answer = ingest_records(connection=connection, sandbox=sandbox, dataset_id=rng.choice(keys),
                                    body={"records": records}, schema=luma_schema())
            assert answer.accepted == len(records), [r.errors for r in answer.results if r.errors]
        with engine.connect() as connection:
            settings = get_identity_settings(connection=connection, sandbox=sandbox)
            shown = dict(connection.execute(sa.select(profiles.c.pk, profiles.c.attributes)
                                            .where(profiles.c.sandbox == sandbox)).all())
            for pk, attributes in shown.items():
                again = apply_policy(connection, profile_pk=pk, settings=settings)
                assert attributes == again, pk
                assert {path: type(value) for path, value in attributes.items()} == \
                       {path: type(value) for path, value in again.items()}, pk
            connection.rollback()
    assert len(shown) > 1
