"""A streaming request's statements — and the triggers they fire — are planned without sequential
scans, and only they (PostgreSQL only).

With statistics that lag a new database's growth, PostgreSQL planned a merge's move of events,
the identity counts and the touch's lock of a 500-record request as scans of whole tables
(bench/RESULTS.md, session 12); a request touches the rows of its records only, so it runs with
``SET LOCAL enable_seqscan = off`` (cdp/ingestion/writer.py, with its savepoint). ``LOCAL``: the
pooled connection's next user plans as before.

(Reproducing such a plan here was tried — merges served by one connection while ``events`` was
small, then ``events`` grown by 4,000 rows without ANALYZE — and did not: the next merge read 178
rows of events before this change, 98 after. So this checks the setting and its scope.)
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)
from cdp.identity.settings import MergePolicy, put_identity_settings
from cdp.ingestion.service import ingest_records
from cdp.schema import luma_schema
from cdp.storage.database import create_engine, write_transaction
from cdp.storage.migrate import upgrade
from cdp.storage.models import datasets

def _record(n: int, *pairs: tuple[str, str]) -> dict:
    return {"identities": [{"namespace": ns, "id": value} for ns, value in pairs],
            "event": {"id": f"e{n}", "type": "pageView", "timestamp": "2026-11-28T10:00:00Z"}}


def test_a_request_plans_without_sequential_scans_and_only_within_it(postgres_url_factory):
    engine = create_engine(postgres_url_factory(), pool_size=1, max_overflow=0)  # one connection throughout
    upgrade(engine)
    sandbox = f"rs-{uuid.uuid4().hex[:8]}"
    with write_transaction(engine) as connection:
        dataset = connection.execute(datasets.insert().values(
            sandbox=sandbox, name="Web", kind="event", labels=[], field_labels={},
            created_at=sa.func.now(), updated_at=sa.func.now()).returning(datasets.c.pk)).scalar_one()
        put_identity_settings(connection=connection, sandbox=sandbox, merge_policy=MergePolicy.timestamp_ordered,
                              dataset_precedence=[], graph_limit=50, unique_namespaces=[],
                              namespaces=frozenset({"ecid", "email"}))
    for records in ([_record(1, ("ecid", "c1")), _record(2, ("email", "p1@example.com"))],  # two new people
                    [_record(3, ("ecid", "c1"), ("email", "p1@example.com"))]):  # a merge of them
        with write_transaction(engine) as connection:
            answer = ingest_records(connection=connection, sandbox=sandbox, dataset_id=dataset,
                                    body={"records": records}, schema=luma_schema())
            assert answer.accepted == len(records), answer
            # what the request's statements (and the triggers they fired) were planned under
            assert connection.exec_driver_sql("SHOW enable_seqscan").scalar() == "off"
        with engine.connect() as connection:  # the pool's one connection, for its next user: as before
            assert connection.exec_driver_sql("SHOW enable_seqscan").scalar() == "on"
    engine.dispose()
