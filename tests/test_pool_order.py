"""The pool hands out the connection returned last (cdp/storage/database.py,
_hand_out_last_returned): its SQLite page cache is warm and, on PostgreSQL, its backend holds the
hot statements prepared. SQLAlchemy's default handed out the one returned first, so under
concurrent requests every pooled connection took turns."""

from __future__ import annotations

import pytest
from sqlalchemy.pool import NullPool


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, sqlite_url_factory):
    from cdp.storage.database import create_engine

    url = sqlite_url_factory() if request.param == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    engine = create_engine(url)
    yield engine
    engine.dispose()


def test_the_connection_returned_last_is_handed_out_next(engine):
    held = [engine.connect() for _ in range(3)]  # three connections in the pool once returned
    dbapi = [connection.connection.dbapi_connection for connection in held]
    for connection in held:  # returned in order: the third one last
        connection.close()
    for _ in range(3):  # request after request, one at a time: always the warm one
        with engine.connect() as connection:
            assert connection.connection.dbapi_connection is dbapi[2]


def test_a_pool_class_of_the_callers_own_is_left_as_it_is(sqlite_url_factory):
    from cdp.storage.database import create_engine

    engine = create_engine(sqlite_url_factory(), poolclass=NullPool)  # pool_use_lifo would be refused
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
    engine.dispose()
