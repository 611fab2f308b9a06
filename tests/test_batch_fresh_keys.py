"""Migration 0025 (PostgreSQL): a batch file's fresh rows — new people written set-wise from the
staging tables (cdp/ingestion/staging.py) — do not run the key checks of the identities', links'
and sources' inserts again (their profile and identity keys are rows the same transaction has just
inserted; the dataset and batch are locked once by the apply), while every other insert, the same
transaction's included, is checked as before; and the downgrade puts the unconditional triggers
back."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import cdp.dsl  # noqa: F401 - cdp.schema must not be imported first (import cycle)
from cdp.storage.database import write_transaction
from cdp.storage.models import attribute_sources
from tests.key_checks import postgresql  # noqa: F401 - a fixture
from tests.test_batch_staging import NOW, _records, _sandbox

CHECKS = ("cdp_identities_keys_insert", "cdp_identity_links_keys_insert", "cdp_attribute_sources_keys_insert")
MISSING = 10**12


def _spool(count: int):
    from cdp.ingestion.staging import Spool

    spool = Spool()
    batch = [([("crm_id", f"K{i}"), ("email", f"p{i}@example.com")], {"person.first_name": f"n{i}"}, None, "")
             for i in range(count)]
    for number, record in enumerate(_records("profile", batch), start=1):
        spool.add(number, record)
    return spool


def _checks_called(connection: sa.Connection) -> dict[str, int]:
    return dict(connection.exec_driver_sql(
        "SELECT funcname, calls FROM pg_stat_xact_user_functions WHERE funcname = ANY(%s)", (list(CHECKS),)).all())


def test_fresh_rows_skip_the_key_checks_and_later_inserts_do_not(postgresql):  # noqa: F811
    from cdp.ingestion.writer import Writer
    from cdp.ingestion.staging import apply_staged

    sandbox, dataset = _sandbox(postgresql, "profile", unique=True)
    connection = postgresql.connect()
    try:
        with connection.begin():
            connection.exec_driver_sql("SET LOCAL track_functions = 'pl'")  # the test cluster's user is a superuser
            writer = Writer(connection, sandbox=sandbox, dataset_pk=dataset, kind="profile", clock=lambda: NOW)
            outcome = apply_staged(connection, writer, _spool(20), kind="profile", dataset_pk=dataset, batch_pk=None,
                                   now=NOW)
            assert outcome.fresh == 20
            assert connection.execute(sa.text(
                "SELECT count(*) FROM attribute_sources s JOIN profiles p ON p.pk = s.profile_pk "
                "WHERE p.sandbox = :s"), {"s": sandbox}).scalar_one() == 20
            assert _checks_called(connection) == {}  # not one of the three checks ran
            assert connection.exec_driver_sql("SELECT current_setting('cdp.keys_created', true)").scalar() == "off"
            # the same transaction's next insert is checked again: a missing profile refused
            with pytest.raises(sa.exc.IntegrityError) as refused, connection.begin_nested():
                connection.execute(attribute_sources.insert().values(
                    profile_pk=MISSING, path="loyalty.tier", dataset_pk=dataset, value="gold", removed=False,
                    observed_at=NOW))
            assert refused.value.orig.sqlstate == "23503"  # the check's own error: it ran
    finally:
        connection.close()


def test_a_missing_batch_is_refused_as_its_key_check_refused_it(postgresql):  # noqa: F811
    from cdp.ingestion.writer import Writer
    from cdp.ingestion.staging import apply_staged

    sandbox, dataset = _sandbox(postgresql, "profile", unique=True)
    with pytest.raises(sa.exc.IntegrityError) as refused:
        with write_transaction(postgresql) as connection:
            writer = Writer(connection, sandbox=sandbox, dataset_pk=dataset, kind="profile", clock=lambda: NOW)
            apply_staged(connection, writer, _spool(3), kind="profile", dataset_pk=dataset, batch_pk=MISSING,
                         now=NOW)
    assert refused.value.orig.sqlstate == "23503"
    with postgresql.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM profiles WHERE sandbox = :s"),
                                  {"s": sandbox}).scalar_one() == 0


def test_the_downgrade_puts_the_unconditional_checks_back(postgres_url_factory):
    from cdp.storage.database import create_engine
    from cdp.storage.migrate import upgrade
    from tests.test_migration_0018 import _downgrade

    engine = create_engine(postgres_url_factory())
    try:
        def definitions() -> list[str]:
            with engine.connect() as connection:
                return connection.exec_driver_sql(
                    "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgname IN "
                    "('identities_keys_insert', 'identity_links_keys_insert', 'attribute_sources_keys_insert') "
                    "ORDER BY t.tgname").scalars().all()
        upgrade(engine)
        assert len(definitions()) == 3 and all("cdp.keys_created" in d for d in definitions())
        _downgrade(engine, "0024")
        assert len(definitions()) == 3 and not any("cdp.keys_created" in d for d in definitions())
        upgrade(engine)
        assert all("cdp.keys_created" in d for d in definitions())
    finally:
        engine.dispose()
