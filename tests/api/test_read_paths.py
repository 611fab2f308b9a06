"""Read paths never wait for a writer: on SQLite (WAL) a reader reads its snapshot while another
connection holds the write lock (a batch being applied); on PostgreSQL, while another
transaction holds the tables in EXCLUSIVE mode. Evaluating and checking are POSTs but
only read; they used to begin as writers and queue behind the lock (13 s during a 100,000-row
batch; 503 past the 30 s busy timeout)."""

from __future__ import annotations

import time

from tests.api.conftest import SARAH, store_profiles

PROMPT_S = 3.0  # far below SQLITE_BUSY_TIMEOUT_MS (30 s), which a writer would wait


def test_reads_answer_while_another_connection_holds_the_write_lock(api, engine):
    from cdp.storage.database import create_engine

    store_profiles(engine, api.sandbox, [SARAH])
    other = create_engine(engine.url.render_as_string(hide_password=False))
    requests = {
        "evaluate": lambda: api.post("/v1/profiles/evaluate", role="reader", json={
            "expression": 'loyalty.tier = "bronze"', "profile": SARAH}),
        "check": lambda: api.post("/v1/expressions/check", role="reader",
                                  json={"expression": "loyalty.points > 100"}),
        "profile": lambda: api.get("/v1/profiles/sarah", role="reader"),
        "search": lambda: api.get("/v1/profiles", params={"q": "Sarah"}, role="reader"),
    }
    try:
        with other.connect() as writer:
            writer.execution_options(sqlite_begin="IMMEDIATE")
            with writer.begin():  # holds SQLite's write lock until the block ends
                writer.exec_driver_sql("UPDATE alembic_version SET version_num = version_num")
                if engine.dialect.name == "postgresql":
                    # what a batch apply holds there: writes locked out, readers let through
                    writer.exec_driver_sql("LOCK TABLE profiles, identities IN EXCLUSIVE MODE")
                for name, request in requests.items():
                    started = time.monotonic()
                    response = request()
                    elapsed = time.monotonic() - started
                    assert response.status_code == 200, (name, response.text)
                    assert elapsed < PROMPT_S, f"{name} waited {elapsed:.1f} s for the write lock"
                assert requests["evaluate"]().json()["qualifies"] is True
    finally:
        other.dispose()
