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

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

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
# what the policy reads of the stored rows of the paths a request touches: no lineage (batch,
# request, the record's identities), and the value as the driver gives it, decoded only for the
# rows that win (:func:`_stored_value`) — decoding every value and identities list of every row
# read measured most of a profile record's CPU when it lands on a stored profile
_c = attribute_sources.c
_POLICY_COLUMNS = {
    "sqlite": (_c.pk, _c.profile_pk, _c.path, _c.dataset_pk, _c.removed, _c.observed_at,
               sa.type_coerce(_c.value, sa.types.NullType()).label("value")),
    "postgresql": (_c.pk, _c.profile_pk, _c.path, _c.dataset_pk, _c.removed, _c.observed_at,
                   sa.cast(_c.value, sa.Text).label("value")),
}


def _stored_value(dialect: sa.Dialect) -> Any:
    """The decoder of a value read as :data:`_POLICY_COLUMNS` reads it: what the column's type
    gives (SQLite: its JSON text, or the number SQLite's numeric affinity made of it)."""
    if dialect.name == "postgresql":
        return lambda text: None if text is None else json.loads(text)
    process = attribute_sources.c.value.type.dialect_impl(dialect).result_processor(dialect, None)
    return process or (lambda value: value)


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
    locking = connection.dialect.name == "postgresql"
    pks = sorted(touched)
    columns, decode = _POLICY_COLUMNS[connection.dialect.name], _stored_value(connection.dialect)
    for start in range(0, len(pks), _PROFILES_PER_QUERY):
        chunk = pks[start:start + _PROFILES_PER_QUERY]
        query = sa.select(profiles.c.pk, profiles.c.attributes).where(profiles.c.pk.in_(chunk))
        current = {row.pk: dict(row.attributes or {}) for row in connection.execute(
            query.order_by(profiles.c.pk).with_for_update() if locking else query)}
        by_path: dict[tuple[int, str], list] = {}
        paths = sorted(set().union(*(touched[pk] for pk in chunk)))
        for row in connection.execute(sa.select(*columns).where(
                attribute_sources.c.profile_pk.in_(chunk), attribute_sources.c.path.in_(paths))):
            if row.path in touched[row.profile_pk]:
                by_path.setdefault((row.profile_pk, row.path), []).append(row)
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
