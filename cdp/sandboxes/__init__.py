"""Sandboxes: isolated worlds of data inside one deployment (like Adobe's prod/dev sandboxes).

Every request names its sandbox with the ``X-Sandbox`` header (``prod`` when absent), and every
stored row of every resource carries the sandbox it belongs to; services filter on it in every
query, so data in one sandbox is invisible from another (tests/api/test_sandboxes.py proves it for
each resource type).

A sandbox exists before it is used: an admin key valid in every sandbox creates it
(``POST /v1/sandboxes``, ``cdp sandboxes create NAME``); ``prod`` exists from the first migration
on. A request naming a sandbox that does not exist is 404 ``unknown_sandbox`` (a typo in
``X-Sandbox`` writes nothing anywhere). An API key may be bound to one sandbox (cdp/auth), which
must exist when the key is created, and is then refused elsewhere. Sandboxes are not deleted.

Names: 1–64 characters, lowercase letters, digits, ``-`` and ``_``, starting with a letter.
"""

from __future__ import annotations

import re

from cdp.errors import BadRequest

SANDBOX_HEADER = "X-Sandbox"
DEFAULT_SANDBOX = "prod"
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"  # as the OpenAPI document states it
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")  # fullmatch (Python's `$` would let a final newline in)


def validate_sandbox_name(name: str) -> str:
    """The name itself when valid; raises BadRequest (``invalid_sandbox``) otherwise."""
    if not _NAME.fullmatch(name):
        raise BadRequest(
            f"invalid sandbox name {name[:80]!r}: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter",
            code="invalid_sandbox", details={"sandbox": name[:80]})
    return name
