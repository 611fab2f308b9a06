"""Identity settings of a sandbox: the merge policy and the graph limit.

* ``merge_policy``: ``timestamp_ordered`` (default) — for each attribute, the value observed last
  wins, whatever dataset it came from; ``dataset_precedence`` — the value of the first dataset in
  ``dataset_precedence`` (a list of dataset ids) that has one wins; datasets not in the list come
  after it, latest first.
* ``graph_limit``: the most identities one profile holds (default 50, from 2 to 1,000); see
  cdp/identity/graph.py for what is dropped when a link passes it.
* ``unique_namespaces`` (default ``crm_id``, ``loyalty_id``) and ``namespace_priority`` (default
  ``crm_id``, ``loyalty_id``, ``email``, ``phone``, custom person namespaces, then device and
  cookie ones): the linking rules (cdp/identity/rules.py). None: the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum

import sqlalchemy as sa

from cdp.errors import Unprocessable
from cdp.storage.models import datasets, identity_settings

DEFAULT_GRAPH_LIMIT = 50
MIN_GRAPH_LIMIT = 2
MAX_GRAPH_LIMIT = 1000
DEFAULT_UNIQUE_NAMESPACES = ("crm_id", "loyalty_id")


class MergePolicy(StrEnum):
    timestamp_ordered = "timestamp_ordered"
    dataset_precedence = "dataset_precedence"


@dataclass(frozen=True)
class IdentitySettings:
    merge_policy: MergePolicy = MergePolicy.timestamp_ordered
    dataset_precedence: tuple[int, ...] = field(default_factory=tuple)
    graph_limit: int = DEFAULT_GRAPH_LIMIT
    updated_at: datetime | None = None
    unique_namespaces: tuple[str, ...] = DEFAULT_UNIQUE_NAMESPACES
    namespace_priority: tuple[str, ...] | None = None  # None: the default order (rules.priority_order)


_SETTINGS = sa.select(identity_settings).where(identity_settings.c.sandbox == sa.bindparam("b_sandbox"))


def get_identity_settings(*, connection: sa.Connection, sandbox: str) -> IdentitySettings:
    row = connection.execute(_SETTINGS, {"b_sandbox": sandbox}).first()
    if row is None:
        return IdentitySettings()
    return IdentitySettings(
        MergePolicy(row.merge_policy), tuple(row.dataset_order), row.graph_limit, row.updated_at,
        DEFAULT_UNIQUE_NAMESPACES if row.unique_namespaces is None else tuple(row.unique_namespaces),
        None if row.namespace_priority is None else tuple(row.namespace_priority))


def put_identity_settings(*, connection: sa.Connection, sandbox: str, merge_policy: MergePolicy,
                          dataset_precedence: list[int], graph_limit: int,
                          unique_namespaces: list[str] | None = None, namespace_priority: list[str] | None = None,
                          namespaces: frozenset[str] = frozenset()) -> IdentitySettings:
    """Store the settings (Unprocessable ``invalid_identity_settings`` lists every problem); the
    caller re-applies the merge policy to the sandbox's profiles."""
    errors: list[str] = []
    if not MIN_GRAPH_LIMIT <= graph_limit <= MAX_GRAPH_LIMIT:
        errors.append(f"graph_limit: from {MIN_GRAPH_LIMIT} to {MAX_GRAPH_LIMIT}, got {graph_limit}")
    if len(set(dataset_precedence)) != len(dataset_precedence):
        errors.append("dataset_precedence: a dataset appears twice")
    if merge_policy == MergePolicy.dataset_precedence and not dataset_precedence:
        errors.append("dataset_precedence: the dataset_precedence policy needs the ordered list of datasets")
    if merge_policy == MergePolicy.timestamp_ordered and dataset_precedence:
        errors.append("dataset_precedence: only the dataset_precedence policy takes a list of datasets")
    if dataset_precedence:
        found = {row.pk: row.kind for row in connection.execute(
            sa.select(datasets.c.pk, datasets.c.kind).where(datasets.c.sandbox == sandbox,
                                                            datasets.c.pk.in_(dataset_precedence)))}
        for dataset_id in dataset_precedence:
            if dataset_id not in found:
                errors.append(f"dataset_precedence: no dataset {dataset_id} in sandbox {sandbox!r}")
            elif found[dataset_id] != "profile":
                errors.append(f"dataset_precedence: dataset {dataset_id} holds events; attributes come from profile "
                              f"datasets")
    unique = tuple(DEFAULT_UNIQUE_NAMESPACES if unique_namespaces is None else unique_namespaces)
    for name, codes in (("unique_namespaces", unique), ("namespace_priority", namespace_priority or ())):
        if len(set(codes)) != len(codes):
            errors.append(f"{name}: a namespace appears twice")
        errors += [f"{name}: no namespace {code!r} in sandbox {sandbox!r}" for code in codes if code not in namespaces]
    if errors:
        raise Unprocessable(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                            code="invalid_identity_settings", details={"errors": errors})
    now = datetime.now(timezone.utc)
    priority = None if namespace_priority is None else tuple(namespace_priority)
    values = {"merge_policy": merge_policy.value, "dataset_order": list(dataset_precedence),
              "graph_limit": graph_limit, "updated_at": now, "unique_namespaces": list(unique),
              "namespace_priority": None if priority is None else list(priority)}
    updated = connection.execute(identity_settings.update().where(identity_settings.c.sandbox == sandbox)
                                 .values(**values)).rowcount
    if not updated:
        connection.execute(identity_settings.insert().values(sandbox=sandbox, **values))
    return IdentitySettings(merge_policy, tuple(dataset_precedence), graph_limit, now, unique, priority)
