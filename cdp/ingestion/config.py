"""What streaming ingestion reads about a sandbox on every request — its schema, datasets, identity
namespaces and identity settings — kept per process and checked with one number per request.

Database triggers (migration 0016) raise the sandbox's row of ``ingestion_versions`` on every
insert, update and delete of those four tables, by any writer and any process; a request reads
that version and, when it is the one the kept configuration was read at, uses it, else reads the
four again. The version is read first — in one statement with the versions the streaming
segments' plan is kept by (one round trip for both) — and the rest after it, so what is kept is
never older than its version (on PostgreSQL a change committed in between is newer: the next request sees a
higher version and reads again). Measured (bench/RESULTS.md, issue 16): the four reads were ~1.5 ms
of a ~5 ms single-record request on SQLite, four round trips on PostgreSQL.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from cdp.errors import NotFound
from cdp.identity.namespaces import Namespace, sandbox_namespaces
from cdp.identity.rules import Rules
from cdp.identity.settings import IdentitySettings, get_identity_settings
from cdp.schema import Schema
from cdp.schema_registry.service import get_schema
from cdp.storage.driver import driver
from cdp.storage.models import datasets

# one statement, straight to the driver: the configuration's version and, for the streaming
# segments' plan of the same request, the versions that plan is kept by (cdp/segments/streaming.py
# reads the same three itself when not given them) — two round trips of a request made one
_VERSIONS = {dialect: ("SELECT (SELECT version FROM ingestion_versions WHERE sandbox = {0}), "
                       "(SELECT version FROM segment_versions WHERE sandbox = {0}), "
                       "(SELECT version FROM sandbox_schemas WHERE sandbox = {0}), "
                       "(SELECT updated_at FROM sandbox_schemas WHERE sandbox = {0})").format(parameter)
             for dialect, parameter in (("sqlite", ":sandbox"), ("postgresql", "%(sandbox)s"))}
_DATASETS = sa.select(datasets.c.pk, datasets.c.kind).where(datasets.c.sandbox == sa.bindparam("b_sandbox"))
_PER_ENGINE = 1000  # sandboxes kept per engine (then the cache starts over)


@dataclass(frozen=True)
class IngestConfig:
    version: int | None  # None: nothing of the four was ever written in the sandbox (the defaults)
    schema: Schema
    namespaces: Mapping[str, Namespace]
    settings: IdentitySettings
    dataset_kinds: Mapping[int, str]  # dataset key → "profile" / "event"

    @functools.cached_property
    def rules(self) -> Rules:
        """The identity graph's linking rules of these namespaces and settings, made once per
        version (each request made them: the priority order sorted afresh)."""
        return Rules.of(self.namespaces, self.settings.unique_namespaces, self.settings.namespace_priority)

    def dataset_kind(self, sandbox: str, dataset_id: int) -> str:
        """The dataset's kind; NotFound (404) when the sandbox has no such dataset."""
        kind = self.dataset_kinds.get(dataset_id)
        if kind is None:
            raise NotFound.resource("dataset", dataset_id, sandbox)
        return kind


_kept: weakref.WeakKeyDictionary[sa.Engine, dict[str, IngestConfig]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def ingest_config(*, connection: sa.Connection, sandbox: str) -> IngestConfig:
    """The sandbox's configuration as of now (see the module doc)."""
    return ingest_config_and_plan_version(connection=connection, sandbox=sandbox)[0]


def ingest_config_and_plan_version(*, connection: sa.Connection, sandbox: str) -> tuple[IngestConfig, tuple]:
    """The sandbox's configuration as of now, and the version of its streaming segments' plan
    (``StreamingEvaluator(plan_version=…)``), read by the same statement."""
    [(version, *plan_version)] = driver(connection, _VERSIONS[connection.dialect.name], {"sandbox": sandbox},
                                        rows=True)
    return _config_at(connection, sandbox, version), tuple(plan_version)


def _config_at(connection: sa.Connection, sandbox: str, version: int | None) -> IngestConfig:
    engine = connection.engine
    with _lock:
        found = _kept.get(engine, {}).get(sandbox)
    if found is not None and found.version == version:
        return found
    config = IngestConfig(
        version=version, schema=get_schema(connection=connection, sandbox=sandbox),
        namespaces=sandbox_namespaces(connection=connection, sandbox=sandbox),
        settings=get_identity_settings(connection=connection, sandbox=sandbox),
        dataset_kinds={row.pk: row.kind for row in connection.execute(_DATASETS, {"b_sandbox": sandbox})})
    with _lock:
        kept = _kept.setdefault(engine, {})
        if len(kept) >= _PER_ENGINE:
            kept.clear()
        kept[sandbox] = config
    return config
