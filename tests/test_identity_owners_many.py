"""The owners of a multi-record request's identities are found pair by pair, not by comparing every
identity of the sandbox with every pair (PostgreSQL only).

``find_owners`` of more than four pairs (cdp/identity/owners.py) was ``namespace = ANY($2) AND value
= ANY($3)``; on a new database (no statistics) PostgreSQL planned it with ``sandbox = $1`` as the only
index condition and the two arrays as a filter: every identity of the sandbox read, each compared with
the arrays — 240 ms a 500-record request at 12,000 identities (bench/RESULTS.md, session 12). Here
the statement runs on tables never analyzed, with the plan cached for it (generic) and with a plan
for its values (custom), and may read only a few rows of ``identities`` for each pair asked.
"""

from __future__ import annotations

import uuid

import pytest

from cdp.identity.owners import find_owners

PEOPLE = 3000
PAIRS = 400


@pytest.fixture(scope="module")
def seeded(postgres_url_factory):
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade

    engine = create_engine(postgres_url_factory())
    upgrade(engine)
    sandbox = f"om-{uuid.uuid4().hex[:8]}"
    with engine.begin() as c:
        for table in ("profiles", "identities"):  # no ANALYZE during the test: the plans of a new database
            c.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        c.exec_driver_sql(
            "INSERT INTO profiles (sandbox, external_id, attributes, created_at, updated_at) "
            "SELECT %s, 'p' || n, '{}', now(), now() FROM generate_series(1, %s) AS n", (sandbox, PEOPLE))
        for namespace in ("email", "ecid"):
            c.exec_driver_sql(
                "INSERT INTO identities (sandbox, profile_pk, namespace, value, first_seen, last_seen) "
                "SELECT %s, pk, %s, external_id || '@example.com', now(), now() FROM profiles WHERE sandbox = %s",
                (sandbox, namespace, sandbox))
        owned = c.exec_driver_sql("SELECT namespace, value, profile_pk FROM identities WHERE sandbox = %s "
                                  "ORDER BY pk DESC LIMIT %s", (sandbox, PAIRS)).all()
    yield engine, sandbox, owned
    engine.dispose()


def _identities_read(connection) -> int:
    """Rows this transaction has read of ``identities`` so far (sequential-scan rows, index entries
    and heap rows fetched through an index), from PostgreSQL's own counters."""
    return connection.exec_driver_sql(
        "SELECT sum(pg_stat_get_xact_tuples_returned(r.oid) + pg_stat_get_xact_tuples_fetched(r.oid)) "
        "FROM pg_class AS r WHERE r.oid = 'identities'::regclass "
        "OR r.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'identities'::regclass)").scalar()


@pytest.mark.parametrize("plans", ["force_generic_plan", "force_custom_plan"])
@pytest.mark.parametrize("lock", [False, True])
def test_the_owners_of_many_pairs_are_found_pair_by_pair(seeded, plans, lock):
    engine, sandbox, owned = seeded
    # the stored pairs, each also asked with the other namespace's value (not stored: a value of
    # one pair with the namespace of another must not match) and some never stored
    pairs = [(namespace, value) for namespace, value, _ in owned]
    pairs += [("crm_id", value) for _, value, _ in owned[:5]] + [("email", f"new-{n}@example.com") for n in range(5)]
    with engine.connect() as connection, connection.begin():
        connection.exec_driver_sql(f"SET LOCAL plan_cache_mode = {plans}")
        connection.connection.dbapi_connection.prepare_threshold = 0  # prepared: its cached plan is used
        for _ in range(2):
            before = _identities_read(connection)
            found = find_owners(connection, sandbox, pairs, lock=lock)
            read = _identities_read(connection) - before
            assert sorted((o.namespace, o.value, o.profile_pk) for o in found) == sorted(owned)
            assert read <= 4 * len(pairs), f"{read} rows of identities read for {len(pairs)} pairs ({2 * PEOPLE} stored)"
