"""Streaming evaluation: a profile's streaming segments re-evaluated in memory when a record
changes it, in the record's transaction, and again when time alone can change an answer.

What a segment reads comes from its checked tree (:func:`reads_of`, through the segments it
references): the event types its filters admit (or any type), the profile attributes it names,
and what makes it depend on time (window lengths, calendar windows, clock functions). A change
(:class:`Change`: events of some types, some attributes, or everything after a merge) evaluates
only the streaming segments whose reads it touches — and, since reads are taken through
references, the segments that reference them, in dependency order (the in-memory predicate of a
referencing segment evaluates what it references on the same data and instant).

For every profile and time-dependent streaming segment, :func:`next_change` computes an instant
no later than the first at which the answer can change without new data (or None: never), from
the tree's durations and calendar windows and the profile's instants; it is stored in
``segment_due`` and the ``segments.due`` job kind re-evaluates profiles whose instant has come.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from time import perf_counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cdp.dsl import PqlError, ast, check
from cdp.dsl.catalogue import dependency_order
from cdp.engine.memory import CompiledCatalogue
from cdp.schema import Schema
from cdp.segments.membership import SegmentRef, apply_verdicts
from cdp.segments.timing import _instant, next_change
from cdp.storage.memberships import exit_all  # noqa: F401 - re-exported: streaming's exits
from cdp.storage.models import profiles, segment_due, segment_versions, segments

log = logging.getLogger("cdp.segments")

_UNITS = {"second": timedelta(seconds=1), "minute": timedelta(minutes=1), "hour": timedelta(hours=1),
          "day": timedelta(days=1), "week": timedelta(weeks=1)}


@dataclass(frozen=True)
class Reads:
    """What an expression reads (see the module doc)."""

    any_event: bool = False  # a filter that admits events of any type
    event_types: frozenset[str] = frozenset()
    attributes: frozenset[tuple[str, ...]] = frozenset()
    references: frozenset[str] = frozenset()
    durations: frozenset[timedelta] = frozenset()
    periods: frozenset[str] = frozenset()  # today | week | month | year
    months: frozenset[int] = frozenset()  # window lengths in months / years (as months)
    clock: bool = False  # calls a function of the clock (now(), today(), days_until …)
    literal_instants: frozenset[datetime] = frozenset()

    @property
    def timed(self) -> bool:
        # events count from their timestamp on: one stored ahead of the clock enters later
        return bool(self.durations or self.periods or self.months or self.clock or self.literal_instants
                    or self.any_event or self.event_types)

    def union(self, other: Reads) -> Reads:
        return Reads(*(getattr(self, f.name) | getattr(other, f.name) for f in dataclasses.fields(self)))

    def touched_by(self, change: Change) -> bool:
        if change.everything:
            return True
        if change.event_types and (self.any_event or self.event_types & change.event_types):
            return True
        for path in change.attributes:
            for read in self.attributes:
                n = min(len(path), len(read))
                if path[:n] == read[:n]:
                    return True
        return False


@dataclass(frozen=True)
class Change:
    """What a record changed on a profile."""

    event_types: frozenset[str] = frozenset()
    attributes: frozenset[tuple[str, ...]] = frozenset()
    everything: bool = False  # a merge, a deletion: every segment can be affected


def _event_types(condition: ast.Node | None) -> frozenset[str] | None:
    """The types a filter's condition admits when it says so at its top (``type = "x"``, ``type
    in [...]``, in an ``and``); None: any type."""
    if condition is None:
        return None
    if isinstance(condition, ast.BoolChain) and condition.op == "and":
        found = None
        for operand in condition.operands:
            types = _event_types(operand)
            if types is not None:
                found = types if found is None else found & types
        return found
    if isinstance(condition, ast.BoolChain) and condition.op == "or":
        parts = [_event_types(operand) for operand in condition.operands]
        return None if any(p is None for p in parts) else frozenset().union(*parts)

    def is_type(node: ast.Node) -> bool:
        return isinstance(node, ast.Name) and node.binding == "event" and node.path == ("type",)

    if isinstance(condition, ast.Comparison) and condition.op == "=":
        for name, value in ((condition.left, condition.right), (condition.right, condition.left)):
            if is_type(name) and isinstance(value, ast.StringLiteral):
                return frozenset([value.value])
    if (isinstance(condition, ast.InList) and not condition.negated and is_type(condition.value)
            and isinstance(condition.items, ast.ListLiteral)
            and all(isinstance(i, ast.StringLiteral) for i in condition.items.items)):
        return frozenset(i.value for i in condition.items.items)
    return None


def _own_reads(tree: ast.Node) -> Reads:
    from cdp.functions.registry import lookup

    any_event = False
    types: set[str] = set()
    attributes: set[tuple[str, ...]] = set()
    references: set[str] = set()
    durations: set[timedelta] = set()
    periods: set[str] = set()
    months: set[int] = set()
    instants: set[datetime] = set()
    clock = False
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):
            stack.extend(node)
            continue
        if not isinstance(node, ast.Node):
            continue
        if isinstance(node, ast.EventFilter):
            admitted = _event_types(node.condition)
            if admitted is None:
                any_event = True
            else:
                types |= admitted
        elif isinstance(node, ast.Name) and node.binding in (None, "profile"):
            attributes.add(node.path)
        elif isinstance(node, ast.SegmentRef):
            references.add(node.key)
        elif isinstance(node, (ast.WithinLast, ast.WithinGap, ast.DurationLiteral)):
            amount, unit = node.amount, node.unit
            if unit in ("month", "year"):
                months.add(amount * (12 if unit == "year" else 1))
            else:
                durations.add(amount * _UNITS[unit])
        elif isinstance(node, ast.WithinPeriod):
            periods.add(node.period)
        elif isinstance(node, ast.Call):
            function = lookup(node.function)
            if function is None or function.needs_clock or function.stage == "as_of":
                clock = True
        elif isinstance(node, ast.StringLiteral):
            try:
                instants.add(_instant(datetime.fromisoformat(node.value)))
            except ValueError:
                pass
        for f in dataclasses.fields(node):
            if f.name not in ("span", "type", "nullable"):
                stack.append(getattr(node, f.name))
    if any(isinstance(n, (ast.Since, ast.Before, ast.FromTo)) for n in _walk(tree)):
        clock = clock or not instants
    return Reads(any_event, frozenset(types), frozenset(attributes), frozenset(references), frozenset(durations),
                 frozenset(periods), frozenset(months), clock, frozenset(instants))


def _walk(tree: ast.Node) -> Iterable[ast.Node]:
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):
            stack.extend(node)
        elif isinstance(node, ast.Node):
            yield node
            stack.extend(getattr(node, f.name) for f in dataclasses.fields(node)
                         if f.name not in ("span", "type", "nullable"))


_cache: dict[tuple, Reads] = {}
_cache_lock = threading.Lock()


def reads_of(key: str, catalogue: Mapping[str, str], schema: Schema | None) -> Reads:
    """What segment ``key`` reads, through the segments it references (checked against
    ``schema``); cached per schema and the texts involved."""
    seen: dict[str, Reads] = {}

    def own(k: str) -> Reads:
        if k not in seen:
            text = catalogue[k]
            cache_key = (id(schema), getattr(schema, "version", None), text)
            with _cache_lock:
                found = _cache.get(cache_key)
            if found is None:
                found = _own_reads(check(text, schema))
                with _cache_lock:
                    if len(_cache) > 10_000:
                        _cache.clear()
                    _cache[cache_key] = found
            seen[k] = found
        return seen[k]

    total = Reads()
    stack, visited = [key], set()
    while stack:
        k = stack.pop()
        if k in visited or k not in catalogue:
            continue
        visited.add(k)
        r = own(k)
        total = total.union(r)
        stack.extend(r.references)
    return total


def reads_of_tree(tree: ast.Node, catalogue: Mapping[str, str], schema: Schema | None = None) -> Reads:
    """What a checked tree reads, through the segments of ``catalogue`` it references."""
    total = _own_reads(tree)
    for key in total.references:
        if key in catalogue:
            total = total.union(reads_of(key, catalogue, schema))
    return total


# ---- the next instant an answer can change without new data: cdp/segments/timing.py ----------

# ---- evaluation ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamingSegment:
    ref: SegmentRef
    expression: str


class _Plan:
    """One sandbox's streaming segments as evaluation needs them, built once per version of its
    segments and schema and shared by every request (:func:`_plan`): the segments in dependency
    order with what each reads, an index from event type to the segments that read it, and the
    catalogue compiled once (references compiled once and shared)."""

    def __init__(self, schema: Schema | None, rows: list, sandbox: str):
        catalogue = {row.key: row.expression for row in rows}
        streaming = {row.key: row for row in rows if row.status == "active" and row.evaluation == "streaming"}
        self.schema = schema
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
        self.any_event = [i for i, row in enumerate(self.order) if self.reads[row.key].any_event]
        self.by_type: dict[str, list[int]] = {}
        for i, row in enumerate(self.order):
            for event_type in self.reads[row.key].event_types:
                self.by_type.setdefault(event_type, []).append(i)

    def chosen(self, change: Change) -> list[int]:
        """Positions (in dependency order) of the segments ``change`` can affect."""
        if change.everything:
            return list(range(len(self.order)))
        found: set[int] = set()
        if change.event_types:
            found.update(self.any_event)
            for event_type in change.event_types:
                found.update(self.by_type.get(event_type, ()))
        if change.attributes:
            found.update(i for i, row in enumerate(self.order) if i not in found
                         and self.reads[row.key].touched_by(Change(attributes=change.attributes)))
        return sorted(found)

    def event_types(self, positions: Iterable[int]) -> frozenset[str] | None:
        """The event types the segments at ``positions`` read (None: any type)."""
        types: set[str] = set()
        for i in positions:
            reads = self.reads[self.order[i].key]
            if reads.any_event:
                return None
            types |= reads.event_types
        return frozenset(types)


_plans: dict[tuple[str, str], tuple[tuple, _Plan]] = {}
_NO_SEGMENTS = _Plan(None, [], "")


def _plan(connection: sa.Connection, sandbox: str) -> _Plan:
    """The sandbox's plan, rebuilt when its segments or its schema changed: the segments' version
    (``segment_versions``, raised by database triggers on every write of a segment's definition,
    status or mode, whoever writes) and the schema's fingerprint are compared, one lookup each;
    the definitions are read only to build a plan."""
    version = connection.execute(sa.select(segment_versions.c.version)
                                 .where(segment_versions.c.sandbox == sandbox)).scalar()
    if version is None:  # no segment was ever saved in the sandbox
        return _NO_SEGMENTS
    from cdp.schema_registry.service import get_schema

    schema = get_schema(connection=connection, sandbox=sandbox)
    key = (str(connection.engine.url), sandbox)  # tests run several databases in one process
    found = _plans.get(key)
    if found is None or found[0] != (version, schema.fingerprint):
        rows = connection.execute(
            sa.select(segments.c.pk, segments.c.key, segments.c.expression, segments.c.status, segments.c.evaluation)
            .where(segments.c.sandbox == sandbox).order_by(segments.c.pk)).all()
        found = ((version, schema.fingerprint), _Plan(schema, rows, sandbox))
        with _cache_lock:
            if len(_plans) > 1000:
                _plans.clear()
            _plans[key] = found
    return found[1]


class StreamingEvaluator:
    """Evaluates one sandbox's active streaming segments for profiles on one connection (its
    transaction): memberships through :func:`apply_verdicts` (source ``streaming``), and the
    next instants in ``segment_due``. Reads the sandbox's segments and schema once."""

    def __init__(self, connection: sa.Connection, *, sandbox: str, metrics: Any = None):
        self.connection = connection
        self.sandbox = sandbox
        self.metrics = metrics  # cdp.observability.metrics.Metrics, or None
        self._loaded: _Plan | None = None
        self.evaluations = 0

    def _load(self) -> _Plan:
        if self._loaded is None:
            self._loaded = _plan(self.connection, self.sandbox)
        return self._loaded

    def profile_changed(self, profile_pk: int, change: Change, now: datetime) -> dict[str, str]:
        """Re-evaluate the streaming segments ``change`` can affect on the profile at ``now``;
        returns key → new status for the memberships that changed."""
        plan = self._load()
        return self._evaluate(profile_pk, plan, plan.chosen(change), now)

    def due(self, profile_pk: int, segment_keys: Iterable[str], now: datetime) -> dict[str, str]:
        """Re-evaluate the given streaming segments (their instant has come)."""
        plan = self._load()
        # every instant that has come is consumed (a segment no longer streaming, or whose
        # expression no longer checks, is not scheduled again); the evaluated ones get their next.
        # The segments of all the consumed rows are evaluated, not only ``segment_keys``: a wave
        # reads a limited number of rows, so a profile's rows can straddle two waves, and the
        # rows beyond the limit would be deleted here without their segments being evaluated
        # (found by tests/api/test_crash_due_wave.py).
        come = (segment_due.c.profile_pk == profile_pk, segment_due.c.due_at <= now)
        keys = set(segment_keys) | set(self.connection.execute(
            sa.select(segments.c.key).join(segment_due, segment_due.c.segment_pk == segments.c.pk).where(*come))
            .scalars())
        chosen = sorted(plan.position[key] for key in keys if key in plan.position)
        self.connection.execute(segment_due.delete().where(*come))
        return self._evaluate(profile_pk, plan, chosen, now)

    def _evaluate(self, profile_pk: int, plan: _Plan, chosen: list[int], now: datetime) -> dict[str, str]:
        if not chosen:
            return {}
        from cdp.profiles.documents import stored_profile

        # only the events the chosen segments (and those they reference) can read
        profile = stored_profile(self.connection, profile_pk, schema=plan.schema,
                                 event_types=plan.event_types(chosen))
        verdicts: dict[SegmentRef, bool] = {}
        due: dict[int, datetime | None] = {}
        memo: dict = {}  # a referenced segment is evaluated once for all that reference it
        points: dict = {}  # the profile's instants, per set of event types read (next_change)
        for i in chosen:
            row = plan.order[i]
            started = perf_counter()
            try:
                verdicts[SegmentRef(row.pk, row.key)] = memo[row.key] = bool(
                    plan.compiled.predicate(row.key)(profile, now, memo))
            except PqlError as error:
                log.warning("streaming segment %r of sandbox %r skipped: %s", row.key, self.sandbox, error)
                continue
            self.evaluations += 1
            if self.metrics is not None:
                self.metrics.evaluated(self.sandbox, row.key, perf_counter() - started)
            due[row.pk] = next_change(plan.reads[row.key], profile, now, points)
        changed = apply_verdicts(self.connection, sandbox=self.sandbox, profile_pk=profile_pk, verdicts=verdicts,
                                 now=now, source="streaming")
        self._store_due(profile_pk, due)
        return changed

    def _store_due(self, profile_pk: int, due: Mapping[int, datetime | None]) -> None:
        """Only the instants that changed are written (most evaluations leave them as they were)."""
        if not due:
            return
        current = dict(self.connection.execute(_DUE_OF_PROFILE, {"b_profile": profile_pk}).all())
        stale = sorted(pk for pk, at in due.items() if pk in current and current[pk] != at)
        if stale:
            self.connection.execute(_DUE_DELETE, {"b_profile": profile_pk, "b_segments": stale})
        rows = [{"segment_pk": pk, "profile_pk": profile_pk, "sandbox": self.sandbox, "due_at": at}
                for pk, at in sorted(due.items()) if at is not None and current.get(pk) != at]
        if rows:
            self.connection.execute(segment_due.insert(), rows)


_DUE_OF_PROFILE = sa.select(segment_due.c.segment_pk, segment_due.c.due_at).where(
    segment_due.c.profile_pk == sa.bindparam("b_profile"))
_DUE_DELETE = segment_due.delete().where(segment_due.c.profile_pk == sa.bindparam("b_profile"),
                                         segment_due.c.segment_pk.in_(sa.bindparam("b_segments", expanding=True)))


def schedule_segment(connection: sa.Connection, *, sandbox: str, segment_pk: int, key: str,
                     catalogue: Mapping[str, str], schema: Schema, at: datetime) -> None:
    """A streaming segment just saved and evaluated set-wise (its memberships as of ``at``): when
    its answers can change with time, every profile of the sandbox is due at ``at``, so the due
    job computes each one's next instant (one statement here; the work is the job's)."""
    connection.execute(segment_due.delete().where(segment_due.c.segment_pk == segment_pk))
    try:
        reads = reads_of(key, catalogue, schema)
    except PqlError:
        return
    if not reads.timed:
        return
    connection.execute(segment_due.insert().from_select(
        ["segment_pk", "profile_pk", "sandbox", "due_at"],
        sa.select(sa.literal(segment_pk, segment_due.c.segment_pk.type), profiles.c.pk,
                  sa.literal(sandbox, sa.String), sa.literal(at, segment_due.c.due_at.type))
        .where(profiles.c.sandbox == sandbox)))


def run_due(connection_factory, *, now: datetime, limit: int = 1000, metrics: Any = None) -> int:
    """Re-evaluate (profile, segment) pairs whose instant has come (due_at ≤ now), each profile
    in a transaction of its own; returns how many profiles were evaluated."""
    with connection_factory() as connection:
        rows = connection.execute(sa.select(segment_due.c.sandbox, segment_due.c.profile_pk, segments.c.key)
                                  .join(segments, segments.c.pk == segment_due.c.segment_pk)
                                  .where(segment_due.c.due_at <= now)
                                  .order_by(segment_due.c.due_at).limit(limit)).all()
    by_profile: dict[tuple[str, int], set[str]] = {}
    for row in rows:
        by_profile.setdefault((row.sandbox, row.profile_pk), set()).add(row.key)
    done = 0
    for (sandbox, profile_pk), keys in by_profile.items():
        try:
            with connection_factory() as connection:
                exists = connection.execute(sa.select(profiles.c.pk).where(profiles.c.pk == profile_pk)).first()
                if exists is not None:
                    StreamingEvaluator(connection, sandbox=sandbox, metrics=metrics).due(profile_pk, keys, now)
        except (sa.exc.IntegrityError, sa.exc.OperationalError) as error:
            # lost a race with an ingest writing the same profile (which re-evaluated it): its
            # rows stay due and the next wave sees them
            log.info("due re-evaluation of profile %s lost a race: %s", profile_pk, str(error).splitlines()[0])
            continue
        done += 1
    return done


def due_depth(connection: sa.Connection, now: datetime) -> tuple[int, int]:
    """(scheduled re-evaluations, of which due by ``now``)."""
    total, due = connection.execute(sa.select(
        sa.select(sa.func.count()).select_from(segment_due).scalar_subquery(),
        sa.select(sa.func.count()).select_from(segment_due).where(segment_due.c.due_at <= now).scalar_subquery())).one()
    return total, due


# ---- the due job ---------------------------------------------------------------------------------

DUE_KIND = "segments.due"
DUE_EVERY = timedelta(seconds=30)


def due_job_kind(metrics: Any = None) -> Any:
    """Re-evaluates the (profile, streaming segment) pairs whose instant has come, at the runner's
    clock; recurring (:func:`schedule_due_job`)."""
    from cdp.jobs import JobKind

    def run(context: Any) -> None:
        from cdp.storage.database import write_transaction

        now = context.clock()
        if metrics is not None:
            with context.engine.connect() as connection:
                scheduled, overdue = due_depth(connection, now)
                oldest = connection.execute(sa.select(sa.func.min(segment_due.c.due_at))
                                            .where(segment_due.c.due_at <= now)).scalar()
            metrics.due_queue(scheduled, overdue, (now - _instant(oldest)).total_seconds() if oldest else 0.0)
        while run_due(lambda: write_transaction(context.engine), now=now, metrics=metrics):
            pass  # in waves; each profile's re-evaluation commits on its own

    return JobKind(name=DUE_KIND, run=run, max_attempts=3, backoff_seconds=5.0,
                   description="streaming segments: profiles whose answer can change with time alone, re-evaluated")


def schedule_due_job(engine: sa.Engine, registry: Any, *, every: timedelta = DUE_EVERY) -> None:
    """Enqueue the recurring due job once (kept across restarts: a stored job of the kind is reused)."""
    from cdp.jobs.queue import enqueue
    from cdp.storage.models import jobs
    from cdp.storage.database import write_transaction

    try:
        with write_transaction(engine) as connection:
            if connection.execute(sa.select(jobs.c.pk).where(jobs.c.kind == DUE_KIND, jobs.c.key == DUE_KIND)).first():
                return
            enqueue(connection, kind=registry[DUE_KIND], payload={}, key=DUE_KIND, every=every)
    except (sa.exc.OperationalError, sa.exc.InternalError) as error:  # a database refusing writes: /healthz says so
        log.warning("the %s job could not be scheduled: %s", DUE_KIND, str(error).splitlines()[0])
