"""Attribute provenance and the merge policy.

Every profile record leaves, for each attribute it sets or removes, one row in
``attribute_sources`` per (profile, attribute, dataset): the dataset's latest word on that
attribute (a value, or ``removed`` for a null), when it was observed (the record's ``timestamp``,
else the time of ingestion) and where it came from (a batch and row, or a streaming request and
the record's index in it). An older record never overwrites a newer one of the same dataset.

A profile's ``attributes`` (what segments read) is the merge policy applied to those rows, per
attribute (cdp/identity/settings.py):

* timestamp-ordered: the row observed last wins; when it says ``removed``, the attribute is
  missing. Ties go to the row written last.
* dataset precedence: the first dataset of the list with a value (not ``removed``) wins; datasets
  not in the list come after it, latest first.

Values stored without a dataset (profiles loaded from documents, e.g. the demo seed) have no rows:
they stay until an ingested value for the same attribute replaces them, and on a merge the
survivor's value is kept, else the most recently updated merged profile's.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from cdp.identity import listed
from cdp.identity.settings import IdentitySettings, MergePolicy
from cdp.storage.bulk import insert_attribute_sources, set_profile_attributes, upsert_attribute_sources
from cdp.storage.models import attribute_sources, profiles


class _Row(NamedTuple):
    """A source row not read back from the database (the attributes of a profile made just now)."""

    dataset_pk: int
    value: Any
    removed: bool
    observed_at: datetime
    pk: int


@dataclass(frozen=True)
class Source:
    """Where a record came from: its dataset and, for lineage, a batch row or a streaming record."""

    dataset_pk: int
    observed_at: datetime
    batch_pk: int | None = None
    request_id: str | None = None
    record_index: int | None = None
    identities: list[tuple[str, str]] | None = None  # the record's (a split follows them)


_PROFILES_PER_QUERY = 500
_ATTRIBUTES = sa.select(profiles.c.attributes).where(profiles.c.pk == sa.bindparam("b_pk"))
_ATTRIBUTES_FOR_UPDATE = _ATTRIBUTES.with_for_update()
_SOURCES = sa.select(attribute_sources).where(attribute_sources.c.profile_pk == sa.bindparam("b_pk"))
_SOURCES_OF_PATHS = _SOURCES.where(attribute_sources.c.path.in_(sa.bindparam("b_paths", expanding=True)))
# What the policy reads of a request's stored profiles, straight to the driver (cdp/identity/listed.py:
# the keys and paths as one parameter each, the text made once): the profiles' attributes, and of
# the source rows of the paths touched only what the policy needs — no lineage (batch, request, the
# record's identities) — with the value as the database gives it, decoded only for the rows that
# win. Reading every column of every row through Core (the value and identities decoded as JSON, a
# statement built and its IN list expanded on every call) measured most of a profile record's CPU
# when it lands on a stored profile (bench/RESULTS.md, session 14).
_CURRENT = {"sqlite": "SELECT pk, attributes FROM profiles WHERE pk {list}",
            "postgresql": "SELECT pk, attributes FROM profiles WHERE pk {list} ORDER BY pk FOR UPDATE"}
_STORED = {"sqlite": "SELECT pk, profile_pk, path, dataset_pk, removed, observed_at, value FROM attribute_sources "
                     "WHERE profile_pk {list} AND path {list}",
           "postgresql": "SELECT pk, profile_pk, path, dataset_pk, removed, observed_at, value::text "
                         "FROM attribute_sources WHERE profile_pk {list} AND path {list}"}


class _Stored(NamedTuple):
    """A stored source row as the policy reads it (``value`` not decoded yet: :func:`_decoder`)."""

    pk: int
    profile_pk: int
    path: str
    dataset_pk: int
    removed: Any  # truthy when the row says removed (SQLite gives 0 / 1)
    observed_at: datetime
    value: Any


@functools.lru_cache(maxsize=64)  # per (column, dialect): an engine's dialect lives as long as it
def _processor(column: sa.Column, dialect: sa.Dialect):
    """What Core does to a value of ``column`` read through the driver (the identity when nothing)."""
    return column.type.dialect_impl(dialect).result_processor(dialect, None) or (lambda value: value)


@functools.lru_cache(maxsize=64)
def _decoder(dialect: sa.Dialect):
    """The decoder of a stored value as :data:`_STORED` reads it: what Core would have given (SQLite:
    the column type's processor of its JSON text, or of the number SQLite's numeric affinity made of
    it; PostgreSQL: the jsonb's text parsed)."""
    if dialect.name == "postgresql":
        return lambda text: None if text is None else json.loads(text)
    return _processor(attribute_sources.c.value, dialect)


_SET_ATTRIBUTES = profiles.update().where(profiles.c.pk == sa.bindparam("b_pk")).values(
    attributes=sa.bindparam("b_attributes"))


def record_attributes_many(connection: sa.Connection, items: list[tuple[int, Mapping[str, Any], Iterable[str],
                                                                       Source]], settings: IdentitySettings,
                           created: set[int] = frozenset()) -> None:
    """Keep each record's word on each attribute it sets or removes — records given as (profile
    key, values, removed paths, source), in order — then re-apply the policy to those attributes,
    with a few set-wise statements. ``created``: profiles made for these records, whose
    only sources are these rows (their attributes are computed without reading anything back)."""
    rows: list[dict] = []
    touched: dict[int, set[str]] = {}
    for profile_pk, values, removed, source in items:
        lineage = {"profile_pk": profile_pk, "dataset_pk": source.dataset_pk, "observed_at": source.observed_at,
                   "batch_pk": source.batch_pk, "request_id": source.request_id, "record_index": source.record_index,
                   "identities": None if source.identities is None else [list(p) for p in source.identities]}
        rows += [{**lineage, "path": path, "value": value, "removed": False} for path, value in values.items()]
        rows += [{**lineage, "path": path, "value": None, "removed": True} for path in removed if path not in values]
        touched.setdefault(profile_pk, set()).update(values, removed)
    if not rows:
        return
    # one row per (profile, attribute, dataset): the one applying them in order would keep (a
    # multi-row INSERT … ON CONFLICT may not touch a row twice on PostgreSQL)
    latest: dict[tuple, dict] = {}
    for row in rows:
        key = (row["profile_pk"], row["path"], row["dataset_pk"])
        if key not in latest or row["observed_at"] >= latest[key]["observed_at"]:
            latest[key] = row
    # rows of profiles made by this transaction cannot meet a stored row: plain inserts
    upsert_attribute_sources(connection, [row for key, row in latest.items() if key[0] not in created])
    insert_attribute_sources(connection, [row for key, row in latest.items() if key[0] in created])
    updates = []
    fresh: dict[int, dict[str, list]] = {}
    if created:
        for sequence, ((profile_pk, path, _dataset), row) in enumerate(latest.items()):
            if profile_pk in created:
                fresh.setdefault(profile_pk, {}).setdefault(path, []).append((sequence, row))
    for profile_pk, by_path in fresh.items():
        attributes = {}
        for path, candidates in by_path.items():
            if len(candidates) == 1:  # the one row wins unless it says removed (winner() of one row)
                row = candidates[0][1]
                if not row["removed"]:
                    attributes[path] = row["value"]
                continue
            chosen = winner([_Row(row["dataset_pk"], row["value"], row["removed"], row["observed_at"], sequence)
                             for sequence, row in candidates], settings)
            if chosen is not None:
                attributes[path] = chosen.value
        updates.append({"b_pk": profile_pk, "b_attributes": attributes})
    touched = {pk: paths for pk, paths in touched.items() if paths and pk not in created}
    pks = sorted(touched)
    dialect = connection.dialect
    decode, document = _decoder(dialect), _processor(profiles.c.attributes, dialect)
    observed = _processor(attribute_sources.c.observed_at, dialect)
    for start in range(0, len(pks), _PROFILES_PER_QUERY):
        chunk = pks[start:start + _PROFILES_PER_QUERY]
        current = {pk: dict(document(attributes) or {}) for pk, attributes in listed.rows(
            connection, _CURRENT[dialect.name], listed.keys(chunk))}
        by_path: dict[tuple[int, str], list] = {}
        paths = sorted(set().union(*(touched[pk] for pk in chunk)))
        for pk, profile_pk, path, dataset_pk, removed, observed_at, value in listed.rows(
                connection, _STORED[dialect.name], listed.keys(chunk), listed.Many(paths, "varchar")):
            if path in touched[profile_pk]:
                by_path.setdefault((profile_pk, path), []).append(
                    _Stored(pk, profile_pk, path, dataset_pk, removed, observed(observed_at), value))
        changed: dict[int, dict] = {}
        for (profile_pk, path), candidates in by_path.items():
            attributes = changed.get(profile_pk) or dict(current[profile_pk])
            chosen = winner(candidates, settings)
            if chosen is None:
                attributes.pop(path, None)
            else:
                attributes[path] = decode(chosen.value)
            changed[profile_pk] = attributes
        updates += [{"b_pk": pk, "b_attributes": attributes} for pk, attributes in changed.items()
                    if attributes != current[pk]]
    if updates:
        set_profile_attributes(connection, [(u["b_pk"], u["b_attributes"]) for u in updates])


def winner(rows: list, settings: IdentitySettings):
    """The row whose value the profile shows for one attribute (None: the attribute is missing)."""
    if settings.merge_policy == MergePolicy.timestamp_ordered:
        latest = max(rows, key=lambda r: (r.observed_at, r.pk))
        return None if latest.removed else latest
    order = {dataset: rank for rank, dataset in enumerate(settings.dataset_precedence)}
    candidates = [r for r in rows if not r.removed]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (order.get(r.dataset_pk, len(order)), -r.observed_at.timestamp(), -r.pk))


def shown_values(attributes: dict[str, Any], rows_by_path: Mapping[str, list], settings: IdentitySettings
                 ) -> dict[str, Any]:
    """``attributes`` (changed in place and returned) with each path of ``rows_by_path`` set to its
    winning row's value, or removed when no row wins."""
    for path, rows in rows_by_path.items():
        chosen = winner(rows, settings)
        if chosen is None:
            attributes.pop(path, None)
        else:
            attributes[path] = chosen.value
    return attributes


def apply_policy(connection: sa.Connection, *, profile_pk: int, settings: IdentitySettings,
                 paths: set[str] | None = None, legacy: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Recompute the profile's attributes from its source rows (only ``paths`` when given); paths
    without rows keep their value, or take it from ``legacy`` (a merge). Returns the attributes."""
    locking = connection.dialect.name == "postgresql"
    current = dict(connection.execute(_ATTRIBUTES_FOR_UPDATE if locking else _ATTRIBUTES, {"b_pk": profile_pk}
                                      ).scalar_one() or {})
    by_path: dict[str, list] = {}
    if paths is None:
        sources = connection.execute(_SOURCES, {"b_pk": profile_pk})
    elif paths:
        sources = connection.execute(_SOURCES_OF_PATHS, {"b_pk": profile_pk, "b_paths": sorted(paths)})
    else:
        sources = []
    for row in sources:
        by_path.setdefault(row.path, []).append(row)
    attributes = dict(current)
    for path, value in (legacy or {}).items():
        attributes.setdefault(path, value)
    shown_values(attributes, by_path, settings)
    if attributes != current:
        connection.execute(_SET_ATTRIBUTES, {"b_pk": profile_pk, "b_attributes": attributes})
    return attributes


def apply_policy_many(connection: sa.Connection, profile_pks: Iterable[int], settings: IdentitySettings) -> None:
    """:func:`apply_policy` of every attribute of each profile (e.g. the survivors of a request's
    merges), with a few statements for all of them instead of two or three per profile."""
    pks = sorted(set(profile_pks))
    locking = connection.dialect.name == "postgresql"
    updates: list[tuple[int, dict[str, Any]]] = []
    for start in range(0, len(pks), _PROFILES_PER_QUERY):
        chunk = pks[start:start + _PROFILES_PER_QUERY]
        query = sa.select(profiles.c.pk, profiles.c.attributes).where(profiles.c.pk.in_(chunk))
        current = {row.pk: dict(row.attributes or {}) for row in connection.execute(
            query.order_by(profiles.c.pk).with_for_update() if locking else query)}
        by_path: dict[int, dict[str, list]] = {}
        for row in connection.execute(sa.select(attribute_sources).where(attribute_sources.c.profile_pk.in_(chunk))):
            by_path.setdefault(row.profile_pk, {}).setdefault(row.path, []).append(row)
        for profile_pk, paths in by_path.items():
            attributes = shown_values(dict(current[profile_pk]), paths, settings)
            if attributes != current[profile_pk]:
                updates.append((profile_pk, attributes))
    if updates:
        set_profile_attributes(connection, updates)


def provenance(connection: sa.Connection, *, profile_pk: int, settings: IdentitySettings) -> dict[str, Any]:
    """For each attribute the profile shows: the source row it came from (or none: loaded without a
    dataset)."""
    by_path: dict[str, list] = {}
    for row in connection.execute(sa.select(attribute_sources).where(attribute_sources.c.profile_pk == profile_pk)):
        by_path.setdefault(row.path, []).append(row)
    return {path: chosen for path, rows in by_path.items() if (chosen := winner(rows, settings)) is not None}
