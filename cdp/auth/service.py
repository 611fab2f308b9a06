"""API keys: creation, authentication, revocation, and the bootstrap admin key.

Format: ``cdp_<id>_<secret>`` — ``id`` is 12 lowercase hex characters (8–32 letters/digits are
accepted, so a fixed demo key can be readable), public, shown in listings and used to find the
key's row; ``secret`` is 43 URL-safe random characters (256 bits) from :mod:`secrets`. The full
key is returned once, at creation; the database keeps only ``sha256(key)`` (hex). A plain,
unsalted SHA-256 is enough for a 256-bit random secret (nothing to brute-force; GitHub and Stripe
do the same); authentication compares digests with :func:`hmac.compare_digest`, and an unknown
id costs the same comparison as a known one.

Bootstrap: on start (cdp/api/startup.py), when no active admin key for all sandboxes exists, one is
created and printed once to stderr. ``CDP_BOOTSTRAP_ADMIN_KEY`` fixes that key (tests, demos): it
must be in the format above.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from cdp.auth.models import ApiKeyCreated, ApiKeyRead
from cdp.auth.roles import Role
from cdp.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable
from cdp.storage.models import api_keys

# Keys that authenticated, per engine (database), for KEY_CACHE_SECONDS: a request then reads no
# key row (the lookup, with its transaction work, was a third of a trivial GET's time). A revoke in
# this process drops the key at once; one made by another process (another `cdp serve` worker, the
# CLI, an UPDATE by hand) takes effect here within KEY_CACHE_SECONDS: the key's next request after
# that reads its row again (tests/api/test_auth.py). Keyed by the key's SHA-256, never its text.
KEY_CACHE_SECONDS = 2.0
_clock = time.monotonic  # tests step it
_KEY_CACHE_MAX = 10_000
_key_cache: weakref.WeakKeyDictionary[sa.Engine, dict[str, tuple[float, ApiKeyRead]]] = weakref.WeakKeyDictionary()
_key_cache_lock = threading.Lock()
_KEY_ROW = sa.select(api_keys).where(api_keys.c.key_id == sa.bindparam("b_key_id"))

KEY_PATTERN = re.compile(r"cdp_(?P<id>[a-z0-9]{8,32})_(?P<secret>[A-Za-z0-9_-]{20,200})")
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and role, the sandbox the key is bound to (None: all)
    and the sandbox this request works in."""

    key_id: str
    name: str
    role: Role
    key_sandbox: str | None
    sandbox: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    return f"cdp_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def _read(row) -> ApiKeyRead:
    return ApiKeyRead(id=row.key_id, name=row.name, role=Role(row.role), sandbox=row.sandbox,
                      created_at=row.created_at, revoked_at=row.revoked_at)


def create_key(*, connection: sa.Connection, name: str, role: Role, sandbox: str | None,
               key: str | None = None) -> ApiKeyCreated:
    """A new key (``sandbox`` None: valid in every sandbox). ``key`` fixes its text (bootstrap)."""
    key = key or generate_key()
    match = KEY_PATTERN.fullmatch(key)
    if match is None:
        raise Unprocessable("an API key must look like cdp_<8-32 lowercase letters or digits>_<20+ characters "
                            "of A-Z a-z 0-9 - _>", code="invalid_api_key_format")
    key_id = match["id"]
    if connection.execute(sa.select(api_keys.c.pk).where(api_keys.c.key_id == key_id)).first():
        raise Conflict(f"an API key with id {key_id!r} exists", code="api_key_exists", details={"id": key_id})
    now = datetime.now(timezone.utc)
    connection.execute(api_keys.insert().values(
        key_id=key_id, name=name, role=role.value, sandbox=sandbox, secret_hash=hash_key(key), created_at=now))
    return ApiKeyCreated(id=key_id, name=name, role=role, sandbox=sandbox, created_at=now, key=key)


def cached_key(engine: sa.Engine, key: str | None) -> ApiKeyRead | None:
    """The key as it authenticated on ``engine`` within KEY_CACHE_SECONDS (and was not revoked in
    this process since), without touching the database; None: ask :func:`authenticate`."""
    if not key:
        return None
    digest = hash_key(key)
    with _key_cache_lock:
        cached = _key_cache.get(engine, {}).get(digest)
    return cached[1] if cached is not None and cached[0] > _clock() else None


def authenticate(*, connection: sa.Connection, key: str | None) -> ApiKeyRead:
    """The active key matching ``key``; Unauthorized (401) when missing, malformed, unknown or revoked."""
    if not key:
        raise Unauthorized("an API key is required: send `Authorization: Bearer <key>`", code="missing_api_key",
                           headers={"WWW-Authenticate": "Bearer"})
    engine = connection.engine
    found = cached_key(engine, key)
    if found is not None:
        return found
    digest = hash_key(key)
    now = _clock()
    match = KEY_PATTERN.fullmatch(key)
    row = None
    if match is not None:
        row = connection.execute(_KEY_ROW, {"b_key_id": match["id"]}).first()
    valid = hmac.compare_digest(row.secret_hash if row is not None else _DUMMY_HASH, digest)
    if row is None or not valid or row.revoked_at is not None:
        raise Unauthorized("invalid or revoked API key", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
    found = _read(row)
    with _key_cache_lock:
        keys = _key_cache.setdefault(engine, {})
        if len(keys) >= _KEY_CACHE_MAX:
            keys.clear()
        keys[digest] = (now + KEY_CACHE_SECONDS, found)
    return found


def forget_key(engine: sa.Engine, key_id: str) -> None:
    """Drop a key from the authentication cache (it was revoked)."""
    with _key_cache_lock:
        keys = _key_cache.get(engine, {})
        for digest in [d for d, (_, k) in keys.items() if k.id == key_id]:
            del keys[digest]


def _visible(sandbox: str):
    """Keys seen from a sandbox: those bound to it and those valid everywhere."""
    return sa.or_(api_keys.c.sandbox == sandbox, api_keys.c.sandbox.is_(None))


def list_keys(*, connection: sa.Connection, sandbox: str, limit: int, offset: int) -> tuple[list[ApiKeyRead], int]:
    total = connection.execute(sa.select(sa.func.count()).select_from(api_keys).where(_visible(sandbox))).scalar_one()
    rows = connection.execute(sa.select(api_keys).where(_visible(sandbox)).order_by(api_keys.c.pk)
                              .limit(limit).offset(offset)).all()
    return [_read(row) for row in rows], total


def get_key(*, connection: sa.Connection, sandbox: str, key_id: str) -> ApiKeyRead:
    row = connection.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id, _visible(sandbox))).first()
    if row is None:
        raise NotFound.resource("api key", key_id, sandbox)
    return _read(row)


def revoke_key(*, connection: sa.Connection, principal: Principal, key_id: str) -> None:
    """Revoke a key seen from the principal's sandbox. Keys valid everywhere can only be revoked by
    a key valid everywhere, and the last active admin key valid everywhere cannot be revoked."""
    key = get_key(connection=connection, sandbox=principal.sandbox, key_id=key_id)
    if key.revoked_at is not None:
        return
    if key.sandbox is None and principal.key_sandbox is not None:
        raise Forbidden(f"key {key_id!r} works in every sandbox; only such a key may revoke it",
                        details={"id": key_id})
    if key.sandbox is None and key.role == Role.admin and count_global_admins(connection=connection) <= 1:
        raise Conflict("this is the last admin key valid in every sandbox; create another before revoking it",
                       code="last_admin_key", details={"id": key_id})
    connection.execute(api_keys.update().where(api_keys.c.key_id == key_id)
                       .values(revoked_at=datetime.now(timezone.utc)))
    forget_key(connection.engine, key_id)
    # and once more when the revoke commits: a request between the two may have cached the key again
    sa.event.listen(connection, "commit", lambda _conn: forget_key(connection.engine, key_id), once=True)


def count_global_admins(*, connection: sa.Connection) -> int:
    return connection.execute(
        sa.select(sa.func.count()).select_from(api_keys).where(
            api_keys.c.role == Role.admin.value, api_keys.c.sandbox.is_(None), api_keys.c.revoked_at.is_(None))
    ).scalar_one()


def ensure_bootstrap_admin(*, connection: sa.Connection, fixed_key: str | None = None) -> ApiKeyCreated | None:
    """Create the first admin key (valid in every sandbox) when there is none; returns it, or None
    when an active one exists. ``fixed_key`` is CDP_BOOTSTRAP_ADMIN_KEY."""
    if count_global_admins(connection=connection):
        return None
    return create_key(connection=connection, name="bootstrap admin", role=Role.admin, sandbox=None, key=fixed_key)
