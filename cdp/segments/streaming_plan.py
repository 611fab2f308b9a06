"""A sandbox's streaming segments as evaluation needs them: the plan (:class:`StreamingPlan`),
built once per version of the sandbox's segments and schema and shared by every request and
due wave (:func:`streaming_plan`).

What the plan holds, from each segment's checked tree (cdp/segments/reads.py): the segments in
dependency order, what each reads, indexes from event type and attribute to the segments that
read them, the relevance screen, the polarity of each, the timing parts of the timed ones, and
the predicates compiled once (a rebuilt plan keeps the compiled predicates of unchanged
segments). Evaluation with a plan is cdp/segments/streaming.py.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cdp.dsl import PqlError
from cdp.dsl.catalogue import dependency_order
from cdp.engine.memory import CompiledCatalogue
from cdp.engine.profile import ProfileError
from cdp.profiles.documents import _stored_fields
from cdp.schema import Schema
from cdp.segments.membership import SegmentRef
from cdp.segments.polarity import Polarity, grows, shrinks
from cdp.segments.reads import Change, Reads, own_reads, reads_of
from cdp.segments.relevance import Relevance, Screen
from cdp.segments.timing import SchemaInstants, _instant, merge_timing, timing_parts
from cdp.storage.database import PerEngine
from cdp.storage.memberships import state_rows_parameters
from cdp.storage.models import segments

log = logging.getLogger("cdp.segments")


@dataclass(frozen=True)
class StreamingSegment:
    ref: SegmentRef
    expression: str


class StreamingPlan:
    """One sandbox's streaming segments as evaluation needs them, built once per version of its
    segments and schema and shared by every request (:func:`streaming_plan`): the segments in dependency
    order with what each reads, indexes from event type and from an attribute's first name to the
    segments that read it, and the catalogue compiled once (references compiled once and shared).
    What a change selects is kept too (a sandbox sees a handful of distinct changes)."""

    def __init__(self, schema: Schema | None, rows: list, sandbox: str, previous: StreamingPlan | None = None):
        catalogue = self.catalogue = {row.key: row.expression for row in rows}
        streaming = {row.key: row for row in rows if row.status == "active" and row.evaluation == "streaming"}
        self.schema = schema
        self.sandbox = sandbox
        self.compiled = CompiledCatalogue(catalogue, schema) if schema is not None else None
        self.reads: dict[str, Reads] = {}
        for key in streaming:
            try:
                self.reads[key] = reads_of(key, catalogue, schema)
            except PqlError as error:
                log.warning("streaming segment %r of sandbox %r skipped: %s", key, sandbox, error)
        graph = {key: set(reads.references) & set(streaming) for key, reads in self.reads.items()}
        self.order = [streaming[key] for key in dependency_order(graph)]
        self.position = {row.key: index for index, row in enumerate(self.order)}
        self.refs = [SegmentRef(row.pk, row.key) for row in self.order]
        # what next_change reads of a segment: its Reads without the attributes and references
        self.timing = [dataclasses.replace(self.reads[row.key], attributes=frozenset(), references=frozenset())
                       if self.reads[row.key].timed else None for row in self.order]
        # per position: the same in the form earliest_change merges (None: untimed); an evaluation
        # computes the earliest next instant of its segments at once, segments reading the same
        # instants merged (cdp/segments/timing.py)
        self.timing_parts = [None if reads is None else timing_parts(reads) for reads in self.timing]
        # the positions of the timed ones: what a profile's stored instant stands for, all of them
        # re-evaluated when it comes (one instant per profile, migration 0018)
        self.timed = [i for i, timing in enumerate(self.timing) if timing is not None]
        # where the profiles this plan loads (under its schema) hold their instants: the next
        # instants read those values only (cdp/segments/timing.py SchemaInstants)
        self.instants = SchemaInstants(schema) if schema is not None else None
        self.any_event = [i for i, row in enumerate(self.order) if self.reads[row.key].any_event]
        self.by_type: dict[str, list[int]] = {}
        self.by_attribute: dict[str, list[int]] = {}  # an attribute path's first name → positions
        self.any_attribute: list[int] = []  # reads an empty path (cannot happen for checked names; kept exact)
        for i, row in enumerate(self.order):
            reads = self.reads[row.key]
            for event_type in reads.event_types:
                self.by_type.setdefault(event_type, []).append(i)
            for first in {path[0] if path else "" for path in reads.attributes}:
                (self.any_attribute if not first else self.by_attribute.setdefault(first, [])).append(i)
        self._predicates: list = [None] * len(self.order)
        # per position: the compiled predicate once compiled (None: not yet, or it failed — then
        # :meth:`predicate` compiles it or raises its error)
        self.predicates: list = [None] * len(self.order)
        # per position: what every event its filters (and its references') admit satisfies
        # (cdp/segments/relevance.py); None: any event may change it
        self.relevance = Relevance(schema) if schema is not None else None
        self.guards = [self.relevance.segment_guards(row.key, self._tree) if self.relevance else None
                       for row in self.order]
        # per position: whether a member stays one, and a non-member stays none, when the profile
        # only gains events (cdp/segments/polarity.py); both False when there is no schema
        polarity = self._any_polarity = Polarity(self._tree) if schema is not None else None
        signs = [polarity.segment(row.key) if polarity else None for row in self.order]
        self.grows = [sign is not None and grows(sign) for sign in signs]
        self.shrinks = [sign is not None and shrinks(sign) for sign in signs]
        # the same for events of given types only (:meth:`polarity`), kept per set of types
        self._polarity: dict[frozenset[str], tuple[Polarity, list, list, dict]] = {}
        # per position: the positions of the streaming segments it references when its own
        # expression reads no event (``in segment "a" and not in segment "b"``, with attributes or
        # the clock at most): for a record that only adds events its answer moves only if one of
        # theirs does (:meth:`StreamingEvaluator._unmoved`); None otherwise
        self.derived: list[tuple[int, ...] | None] = []
        # per position: the positions of the streaming segments its own expression references
        # (their answers seeded from the stored memberships when they are not evaluated: _evaluate)
        self.referenced: list[tuple[int, ...]] = []
        for row in self.order:
            try:
                own = own_reads(catalogue[row.key], schema) if schema is not None else None
            except PqlError:
                own = None
            self.referenced.append(() if own is None else tuple(sorted(
                self.position[key] for key in own.references if key in self.position)))
            self.derived.append(
                tuple(sorted(self.position[key] for key in own.references))
                if own is not None and own.references and not own.any_event and not own.event_types
                and all(key in self.position for key in own.references) else None)
        self._chosen: dict[Change, tuple[list[int], frozenset[str] | None]] = {}
        self._screens: dict[Change, Screen] = {}
        self._merged: dict[tuple[int, ...], tuple] = {}  # merged_timing's answers
        self._kept_types: dict[int, tuple[list[int], frozenset[str] | None]] = {}  # kept_types' answers
        self._listed: dict[tuple, tuple[list[int], tuple]] = {}  # listed's answers
        # per position: the event types it reads (None: any)
        self._types = [None if self.reads[row.key].any_event else self.reads[row.key].event_types
                       for row in self.order]
        self.keys = [row.key for row in self.order]  # per position: the segment's key
        self._lock = threading.Lock()
        # every predicate compiled now, with the plan (once per version of the segments and the
        # schema), not by the first records that select each segment: a request then never pays a
        # compilation (~0.3 ms a segment) — at 500 segments the first few hundred records after a
        # start or a save each paid several; one that fails is kept as its error, raised (and
        # logged) when the segment is evaluated, as before. The sandbox's previous plan gives its
        # compiled predicates of the segments whose definition, and the definitions of every
        # segment they reference (through references), are the same under the same schema: the
        # same function (a save compiles the segments it changed, not the catalogue)
        if self.compiled is not None:
            if previous is not None and previous.compiled is not None \
                    and previous.schema.fingerprint == schema.fingerprint:
                old_catalogue = previous.catalogue
                for i, key in enumerate(self.keys):
                    j = previous.position.get(key)
                    found = None if j is None else previous.predicates[j]
                    if found is not None and all(old_catalogue.get(k) == catalogue.get(k)
                                                 for k in (key, *self.reads[key].references)):
                        self._predicates[i] = self.predicates[i] = found
            for i in range(len(self.order)):
                if self.predicates[i] is not None:
                    continue
                try:
                    self.predicate(i)
                except PqlError:
                    pass
            # and the polarity for a record of events of one type, of the segments that type selects
            # (:meth:`polarity`; ~15 ms in all at 500 segments, with the plan rather than on the
            # first record of each type; a record of several types asks for its own set then)
            for event_type, positions in self.by_type.items():
                self.polarity(frozenset([event_type]), sorted({*positions, *self.any_event}))

    def polarity(self, added: frozenset[str], positions: list[int]) -> tuple[list, list]:
        """Per position, whether a member stays one (grows) and a non-member stays none (shrinks)
        when the profile gains events of the types ``added`` only (cdp/segments/polarity.py: a
        term none of whose filters admits those types is constant) — at least :attr:`grows` and
        :attr:`shrinks`; computed for ``positions`` the first time they are asked for with these
        types (an analysis of every segment per set of types cost ~15–25 ms at 500 segments),
        and kept (entries of positions not asked for yet are None)."""
        if self.schema is None or not added:
            return self.grows, self.shrinks
        found = self._polarity.get(added)
        if found is not None and found[3].get(id(positions)) is positions:  # this list's, all computed
            return found[1], found[2]
        if found is None or any(found[1][i] is None for i in positions):
            with self._lock:
                found = self._polarity.get(added)
                if found is None:
                    if len(self._polarity) > 1000:
                        self._polarity.clear()
                    found = self._polarity[added] = (Polarity(self._tree, added, self._any_polarity),
                                                     [None] * len(self.order),
                                                     [None] * len(self.order), {})
                polarity, grown, shrunk, _ = found
                for i in positions:
                    if grown[i] is None:
                        sign = polarity.segment(self.keys[i])
                        grown[i], shrunk[i] = grows(sign), shrinks(sign)
        # the selections and the Screen's answers are kept lists (the same object for the same
        # choice): a list seen once is answered by one lookup (held, so its id is not reused)
        complete = found[3]
        if len(complete) > 10_000:
            complete.clear()
        complete[id(positions)] = positions
        return found[1], found[2]

    def merged_timing(self, positions: tuple[int, ...]) -> tuple:
        """:func:`merge_timing` of the segments at ``positions`` (kept per set of positions: a
        record's evaluated segments are one of a few sets)."""
        found = self._merged.get(positions)
        if found is None:
            parts = self.timing_parts
            found = merge_timing([parts[i] for i in positions])
            with self._lock:
                if len(self._merged) > 10_000:
                    self._merged.clear()
                self._merged[positions] = found
        return found

    def chosen(self, change: Change) -> list[int]:
        """Positions (in dependency order) of the segments ``change`` can affect."""
        return self.selection(change)[0]

    def selection(self, change: Change) -> tuple[list[int], frozenset[str] | None]:
        """(:meth:`chosen`, the event types those segments read: None for any type)."""
        found = self._chosen.get(change)
        if found is None:
            positions = self._choose(change)
            found = (positions, self.event_types(positions))
            with self._lock:
                if len(self._chosen) > 10_000:
                    self._chosen.clear()
                self._chosen[change] = found
        return found

    def _tree(self, key: str):
        try:
            return self.compiled.tree(key) if key in self.compiled.catalogue else None
        except PqlError:
            return None

    def relevant(self, positions: list[int], change: Change, now: datetime) -> list[int]:
        """The ``positions`` (the selection for ``change``) whose filters can admit one of its new
        events at ``now`` or later; the others' answers and next instants cannot change
        (cdp/segments/relevance.py). The selection's :class:`Screen` is kept with it."""
        screen = self._screens.get(change)
        if screen is None:
            screen = Screen(self.relevance, positions, self.guards)
            with self._lock:
                if len(self._screens) > 10_000:
                    self._screens.clear()
                self._screens[change] = screen
        try:
            events = [_engine_event(row, self.schema) for row in change.events]
        except ProfileError:  # not expected of a validated record: evaluate as before
            return positions
        return screen.keep(events, now)

    def listed(self, chosen: list[int], added: bool, dialect: str) -> tuple[list[int], dict[str, Any]]:
        """The segments whose memberships streaming's read gives — those at ``chosen`` and, for a
        record of new events only, the segments they reference (answered from their memberships
        when not evaluated) — and :func:`state_rows_parameters` of them; kept per list (the
        selections and the Screen's answers are kept lists: the same object for the same
        choice)."""
        key = (id(chosen), added, dialect)
        found = self._listed.get(key)
        if found is not None and found[0] is chosen:
            return found[1]
        refs = self.refs
        listed = [refs[i].pk for i in chosen]
        if added:
            extra = {refs[j].pk for i in chosen for j in self.referenced[i]}
            if extra:
                listed = sorted(extra.union(listed))
        found = (listed, state_rows_parameters(dialect, listed))
        with self._lock:
            if len(self._listed) > 10_000:
                self._listed.clear()
            self._listed[key] = (chosen, found)  # the list held: its id is not reused meanwhile
        return found

    def kept_types(self, kept: list[int]) -> frozenset[str] | None:
        """:meth:`event_types` of a list :meth:`relevant` gave (a Screen keeps its answers: the
        same list object for the same admitted guards), kept with the list."""
        found = self._kept_types.get(id(kept))
        if found is not None and found[0] is kept:
            return found[1]
        types = self.event_types(kept)
        with self._lock:
            if len(self._kept_types) > 10_000:
                self._kept_types.clear()
            self._kept_types[id(kept)] = (kept, types)  # the list held: its id is not reused meanwhile
        return types

    def _choose(self, change: Change) -> list[int]:
        if change.everything:
            return list(range(len(self.order)))
        found: set[int] = set()
        if change.event_types:
            found.update(self.any_event)
            for event_type in change.event_types:
                found.update(self.by_type.get(event_type, ()))
        if change.attributes:
            candidates = set(self.any_attribute)
            for path in change.attributes:
                candidates.update(self.by_attribute.get(path[0], ()) if path else range(len(self.order)))
            found.update(i for i in candidates - found
                         if self.reads[self.order[i].key].touched_by(Change(attributes=change.attributes)))
        return sorted(found)

    def event_types(self, positions: Iterable[int]) -> frozenset[str] | None:
        """The event types the segments at ``positions`` read (None: any type)."""
        read = [self._types[i] for i in positions]
        return None if None in read else frozenset().union(*read)

    def predicate(self, i: int):
        """The compiled predicate at position ``i`` (PqlError: its definition no longer checks)."""
        found = self._predicates[i]
        if found is None:
            try:
                found = self.compiled.predicate(self.order[i].key)
            except PqlError as error:
                found = error
            self._predicates[i] = found
            if not isinstance(found, PqlError):
                self.predicates[i] = found
        if isinstance(found, PqlError):
            raise found
        return found


# each database's plans by sandbox, kept beside its engine (tests run several databases in one
# process): keyed by the engine itself, not its URL made a string every request (0.8 µs on SQLite,
# 3.6 µs on PostgreSQL: bench/RESULTS.md, session 17)
_plans = PerEngine(dict)
_plans_lock = threading.Lock()
NO_SEGMENTS = StreamingPlan(None, [], "")


def streaming_plan(connection: sa.Connection, sandbox: str, version: tuple | None = None) -> StreamingPlan:
    """The sandbox's plan, rebuilt when its segments or its schema changed: one statement reads
    the segments' version (``segment_versions``, raised by database triggers on every write of a
    segment's definition, status or mode, whoever writes) and the schema's version and time of
    writing (``sandbox_schemas``; none: the default schema); the definitions and the schema are
    read only to build a plan."""
    if version is None:  # else read by the caller in this transaction (cdp/ingestion/config.py)
        version = connection.exec_driver_sql(_VERSIONS[connection.dialect.name], {"sandbox": sandbox}).one()
    if version[0] is None:  # no segment was ever saved in the sandbox
        return NO_SEGMENTS
    plans: dict[str, tuple[tuple, StreamingPlan]] = _plans(connection.engine)
    found = plans.get(sandbox)
    if found is None or found[0] != tuple(version):
        from cdp.schema_registry.service import get_schema

        schema = get_schema(connection=connection, sandbox=sandbox)
        rows = connection.execute(
            sa.select(segments.c.pk, segments.c.key, segments.c.expression, segments.c.status, segments.c.evaluation)
            .where(segments.c.sandbox == sandbox).order_by(segments.c.pk)).all()
        found = (tuple(version), StreamingPlan(schema, rows, sandbox, None if found is None else found[1]))
        with _plans_lock:
            if len(plans) > 1000:
                plans.clear()
            plans[sandbox] = found
    return found[1]


# per record: straight to the driver (Core's per-statement Python work is most of a lookup this small);
# the values are only compared with the plan's, so the driver's forms of them do
_VERSIONS = {dialect: ("SELECT (SELECT version FROM segment_versions WHERE sandbox = {0}), "
                       "(SELECT version FROM sandbox_schemas WHERE sandbox = {0}), "
                       "(SELECT updated_at FROM sandbox_schemas WHERE sandbox = {0})").format(parameter)
             for dialect, parameter in (("sqlite", ":sandbox"), ("postgresql", "%(sandbox)s"))}


def _engine_event(row: Mapping[str, Any], schema: Schema) -> dict[str, Any]:
    """An event row as inserted (event_id, type, ts, fields as stored) as the engine holds it —
    what :func:`profile_from_rows` makes of the row once read back."""
    fields = _stored_fields(row["fields"], schema.event_type, "")
    return {**fields, "id": row["event_id"], "type": row["type"], "timestamp": _instant(row["ts"])}
