"""The access log without personal data: uvicorn logs each request's path with its query string,
and a query string carries identities (``/v1/profiles/lookup?namespace=email&id=…``). The filter
installed on ``uvicorn.access`` keeps every parameter's name and replaces its value with ``…``
(tests/api/test_logs_hold_no_secrets.py runs a whole session and greps the log for the demo's
emails and the keys it used)."""

from __future__ import annotations

import logging
import re

_VALUE = re.compile(r"=[^&]*")


def redact_query(path: str) -> str:
    """``/p?namespace=email&id=a@b`` → ``/p?namespace=…&id=…``."""
    base, separator, query = path.partition("?")
    return base + separator + _VALUE.sub("=…", query) if separator else path


class RedactQueryStrings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's record: '%s - "%s %s HTTP/%s" %d' % (client, method, path with query, version, status)
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            record.args = (*record.args[:2], redact_query(record.args[2]), *record.args[3:])
        return True


def install() -> None:
    """Idempotent: once per process, whatever number of apps it starts."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueryStrings) for f in access.filters):
        access.addFilter(RedactQueryStrings())
