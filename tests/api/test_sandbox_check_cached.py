"""The per-request check that the request's sandbox exists (cdp/api/deps.py) remembers the sandboxes
it found, so a request reads no sandbox row — and is still exactly as strict: an unknown sandbox is
404 every time, and one made by another process (not through this app) is found at once."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import sqlalchemy as sa

from cdp.storage.models import sandboxes
from tests.api.conftest import assert_error


def _sandbox_reads(engine: sa.Engine, run) -> int:
    """How many statements reading the sandboxes table ``run`` made on ``engine``."""
    count = [0]

    def before(_conn, _cursor, statement, *_args):
        if "FROM sandboxes" in statement:
            count[0] += 1

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        run()
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)
    return count[0]


def test_a_known_sandbox_is_not_read_again_and_an_unknown_one_is_404_every_time(api, engine):
    assert api.get("/v1/datasets").status_code == 200  # the test's sandbox: found (and remembered)
    assert _sandbox_reads(engine, lambda: [api.get("/v1/datasets") for _ in range(3)]) == 0
    missing = f"nope-{uuid.uuid4().hex[:8]}"
    for _ in range(2):  # a miss is never remembered
        assert_error(api.get("/v1/datasets", sandbox=missing), 404, "unknown_sandbox")
    # made behind the app's back (another process, the CLI): found at the next request
    with engine.begin() as connection:
        connection.execute(sandboxes.insert().values(name=missing, created_at=datetime.now(timezone.utc)))
    assert api.get("/v1/datasets", sandbox=missing).status_code == 200
