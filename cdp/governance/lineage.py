"""The fields in play and where their labels come from.

* :func:`fields_read` — the fields a checked PQL tree reads: profile attributes by name, event
  fields by name (in event conditions, through aliases, and the path of a value aggregate), and
  ``timestamp`` for every event filter with a window, every sequence and ``first``/``last`` (they
  read the time of events). An event term that reads nothing else of its events (``exists
  event``, ``count(event)``) still reads the events: it counts as reading ``id``.
* :func:`fields_in_play` — those of an expression or a saved segment, through every segment it
  references (each field tagged with the referenced segment whose expression reads it), plus the
  attributes to be exported.
* :func:`label_lineage` — for each field, the datasets of the sandbox that supply it and their
  labels: a profile attribute is supplied by the profile datasets that have supplied a value of it
  (attribute provenance), an event field by the event datasets that hold events; a dataset that
  labels the field is counted as supplying it even before data arrives (what is labelled is never
  left out). Each label is at ``dataset`` level (on the whole dataset) or ``field`` level.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from cdp.dsl import ast, check
from cdp.schema import Schema
from cdp.storage.models import attribute_sources, datasets, events

_PAIRS_PER_QUERY = 200


@dataclass(frozen=True)
class FieldUse:
    kind: str  # "profile" | "event"
    path: str
    use: str  # "read" | "export"
    via_segment: str | None = None

    def order(self) -> tuple:
        return self.kind, self.path, self.use, self.via_segment or ""


@dataclass(frozen=True)
class LabelSource:
    """One step of lineage: a field in play, a dataset supplying it, one of its labels."""

    field: FieldUse
    dataset_id: int
    dataset_name: str
    label: str
    level: str  # "field" | "dataset"


def fields_read(tree: ast.Node) -> set[tuple[str, str]]:
    """(kind, path) of every field a checked tree reads, ``kind`` being ``profile`` or ``event``."""
    found: set[tuple[str, str]] = set()
    # filters whose term reads something of the events besides their condition: a value
    # aggregate's path, the time order of a sequence
    reads_more = {id(n.filter) for n in ast.walk(tree)
                  if (isinstance(n, ast.Aggregate) and n.path is not None) or (isinstance(n, ast.Exists) and n.steps)
                  or isinstance(n, ast.SequenceStep)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.binding == "profile":
                found.add(("profile", node.dotted))
            elif node.binding == "event":
                found.add(("event", node.dotted))
            elif node.binding == "alias":
                found.add(("event", ".".join(node.path[1:])))
        elif isinstance(node, ast.Aggregate):
            if node.path is not None:
                found.add(("event", ".".join(node.path)))
            if node.function in ("first", "last"):
                found.add(("event", "timestamp"))
        elif isinstance(node, ast.SequenceStep):
            found.add(("event", "timestamp"))
        elif isinstance(node, ast.EventFilter):
            if node.window is not None:
                found.add(("event", "timestamp"))
            names_a_field = node.condition is not None and any(
                isinstance(n, ast.Name) and n.binding in ("event", "alias") for n in ast.walk(node.condition))
            if not names_a_field and node.window is None and id(node) not in reads_more:
                found.add(("event", "id"))
    return found


def fields_in_play(*, tree: ast.Node | None, catalogue: Mapping[str, str], schema: Schema,
                   attributes: Iterable[str] = ()) -> list[FieldUse]:
    """The fields ``tree`` reads, through every segment it references (``catalogue``: key →
    expression, each checked here), and the exported ``attributes`` (profile leaf paths)."""
    uses: set[FieldUse] = set()
    if tree is not None:
        pending: list[tuple[ast.Node, str | None]] = [(tree, None)]
        seen: set[str] = set()
        while pending:
            current, via = pending.pop()
            uses.update(FieldUse(kind, path, "read", via) for kind, path in fields_read(current))
            for key in sorted(ast.segment_references(current)):
                if key in seen or key not in catalogue:
                    continue
                seen.add(key)
                pending.append((check(catalogue[key], schema), key))  # PqlError: it no longer checks
    uses.update(FieldUse("profile", path, "export") for path in attributes)
    return sorted(uses, key=FieldUse.order)


def _label_pairs(field_labels: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    return {path: list(values) for path, values in (field_labels or {}).items()}


def label_lineage(*, connection: sa.Connection, sandbox: str, uses: Sequence[FieldUse]) -> list[LabelSource]:
    """Every (field in play, dataset supplying it, label) of the sandbox, sorted."""
    if not uses:
        return []
    rows = connection.execute(sa.select(datasets.c.pk, datasets.c.name, datasets.c.kind, datasets.c.labels,
                                        datasets.c.field_labels).where(datasets.c.sandbox == sandbox)
                              .order_by(datasets.c.pk)).all()
    by_kind = {"profile": [r for r in rows if r.kind == "profile"], "event": [r for r in rows if r.kind == "event"]}
    profile_paths = sorted({u.path for u in uses if u.kind == "profile"})
    supplied = _profile_provenance(connection, [r.pk for r in by_kind["profile"]], profile_paths)
    with_events = _event_datasets_with_events(connection, [r.pk for r in by_kind["event"]]) \
        if any(u.kind == "event" for u in uses) else set()
    found: list[LabelSource] = []
    for use in uses:
        for row in by_kind[use.kind]:
            field_labels = _label_pairs(row.field_labels).get(use.path, [])
            supplies = ((row.pk, use.path) in supplied if use.kind == "profile" else row.pk in with_events)
            if not supplies and not field_labels:
                continue
            found += [LabelSource(use, row.pk, row.name, label, "dataset") for label in row.labels]
            found += [LabelSource(use, row.pk, row.name, label, "field") for label in field_labels]
    return sorted(found, key=lambda s: (s.field.order(), s.dataset_id, s.label, s.level))


def _profile_provenance(connection: sa.Connection, dataset_pks: list[int], paths: list[str]) -> set[tuple[int, str]]:
    """(dataset, path) pairs for which the dataset has supplied a value: an index probe each
    (ix_attribute_sources_dataset_pk_path), many per statement."""
    pairs = [(pk, path) for pk in dataset_pks for path in paths]
    found: set[tuple[int, str]] = set()
    for start in range(0, len(pairs), _PAIRS_PER_QUERY):
        chunk = pairs[start:start + _PAIRS_PER_QUERY]
        probes = [sa.exists().where(attribute_sources.c.dataset_pk == pk, attribute_sources.c.path == path,
                                    attribute_sources.c.removed.is_(False)).label(f"p{i}")
                  for i, (pk, path) in enumerate(chunk)]
        row = connection.execute(sa.select(*probes)).one()
        found.update(pair for pair, hit in zip(chunk, row) if hit)
    return found


def _event_datasets_with_events(connection: sa.Connection, dataset_pks: list[int]) -> set[int]:
    found: set[int] = set()
    for start in range(0, len(dataset_pks), _PAIRS_PER_QUERY):
        chunk = dataset_pks[start:start + _PAIRS_PER_QUERY]
        probes = [sa.exists().where(events.c.dataset_pk == pk).label(f"e{i}") for i, pk in enumerate(chunk)]
        row = connection.execute(sa.select(*probes)).one()
        found.update(pk for pk, hit in zip(chunk, row) if hit)
    return found


def datasets_supplying(*, connection: sa.Connection, sandbox: str, uses: Sequence[FieldUse]) -> set[int]:
    """The datasets of the sandbox that supply any field in play, labelled or not (the data-flow
    graph draws them all; :func:`label_lineage` keeps only the labelled ones)."""
    rows = connection.execute(sa.select(datasets.c.pk, datasets.c.kind).where(datasets.c.sandbox == sandbox)).all()
    profile_pks = [r.pk for r in rows if r.kind == "profile"]
    event_pks = [r.pk for r in rows if r.kind == "event"]
    paths = sorted({u.path for u in uses if u.kind == "profile"})
    found = {pk for pk, _path in _profile_provenance(connection, profile_pks, paths)} if paths else set()
    if any(u.kind == "event" for u in uses):
        found |= _event_datasets_with_events(connection, event_pks)
    return found
