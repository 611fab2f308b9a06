"""Streaming evaluation: a profile's streaming segments re-evaluated in memory when a record
changes it, in the record's transaction, and again when time alone can change an answer.

What a segment reads comes from its checked tree (cdp/segments/reads.py :func:`reads_of`, through
the segments it references): the event types its filters admit (or any type), the profile
attributes it names, and what makes it depend on time (window lengths, calendar windows, clock
functions). A change
(:class:`Change`: events of some types, some attributes, or everything after a merge) evaluates
only the streaming segments whose reads it touches — and, since reads are taken through
references, the segments that reference them, in dependency order (the in-memory predicate of a
referencing segment evaluates what it references on the same data and instant).

For every profile and time-dependent streaming segment, :func:`cdp.segments.timing.next_change` computes an instant
no later than the first at which the answer can change without new data (or None: never), from
the tree's durations and calendar windows and the profile's instants. ONE instant per profile is
stored in ``segment_due`` (migration 0018): no later than the earliest of its timed segments'. An
evaluation stores the earliest it computed when that is earlier than the stored one (the segments
it did not evaluate cannot have changed, and the stored instant covers them); the ``segments.due``
job kind (cdp.segments.due) re-evaluates all the timed streaming segments of a profile whose instant has come and
stores their earliest next instant (or none). Saving a timed streaming segment does not move
those instants: it makes the sandbox's profiles due in ``segment_due_saved`` (migration 0023),
for which the job evaluates only the segments saved since (:meth:`StreamingEvaluator.due`), and
until then a record skips nothing by polarity for the profile (the stored instant does not stand
for a segment not yet evaluated for it).

A record that only adds events (no attribute, no merge, no deletion) also skips, per profile, the
selected segments whose stored membership it cannot change (cdp/segments/polarity.py, from the
checked tree): a member of a *monotone* segment (more events never turn TRUE into not-TRUE at any
instant: ``exists``, ``count(…) >= n``, ``and``/``or`` of such) and a non-member of an *antitone*
one (``no event``, ``count(…) < n``). It needs the membership, so the decision is taken after the
one read, and only while the profile's stored instant is after now (or there is none). Why the
stored memberships and instant stay right: the stored instant S promises that each timed
segment's answer, on the events before the record, is constant — equal to its stored membership —
on [now, S) (that is what the due job and the evaluations that wrote it guarantee: an instant is
never late). For a member of a monotone segment the old answer is TRUE at every t in [now, S),
and with more events it is ≥ at every t, so still TRUE: its first change on the new events is
not before S. The stored instant is only ever lowered by a record (it keeps S or moves earlier),
and at S the due job re-evaluates every timed segment of the profile, the skipped one included.
Symmetrically for a non-member of an antitone segment. Likewise a segment whose own expression
reads no event and that references streaming segments (``in segment "a" and not in segment "b"``)
is skipped when none of them moved (:meth:`StreamingEvaluator._unmoved`): its answer is a function
of theirs and of what the record does not change. Once S has passed (the due job has not run
yet) the stored membership may already be stale, so nothing is skipped by polarity: the record
evaluates as before and a member whose window has passed leaves at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from time import perf_counter
from typing import Any

import sqlalchemy as sa

from cdp.dsl import PqlError
from cdp.schema import Schema
from cdp.segments.membership import SegmentRef
from cdp.segments.reads import Change
from cdp.segments.streaming_plan import StreamingPlan, streaming_plan
from cdp.segments.timing import earliest_merged
from cdp.storage.driver import driver
from cdp.storage.memberships import (
    HistoryMoves, due_form, move_history, state_from_rows, state_rows_parameters, state_rows_sql, write_profile,
)
from cdp.storage.models import (
    segment_due, segment_due_saved, segments,
)

log = logging.getLogger("cdp.segments")

# ---- evaluation ----------------------------------------------------------------------------------

class StreamingEvaluator:
    """Evaluates one sandbox's active streaming segments for profiles on one connection (its
    transaction): memberships through :func:`write_profile` (source ``streaming``), and the
    next instants in ``segment_due``. Reads the sandbox's plan once.

    Per profile: the plan's selection for the change (cached); ONE statement reading the lean
    profile (only the event types the selection reads), its memberships of the selected segments
    and its stored instant (:func:`_load_with_state`); each selected predicate once, through
    one memo (a referenced segment, and an event term several predicates contain, computed once);
    the earliest of their next instants at once, the segments reading the same instants merged
    (:func:`earliest_change`);
    then writes only for what changed — a record that changes no membership and no instant writes
    nothing here. With ``metrics``: each segment's time, and per profile the time spent
    evaluating (the read included) and writing (``cdp_streaming_profile_seconds``)."""

    def __init__(self, connection: sa.Connection, *, sandbox: str, metrics: Any = None,
                 plan_version: tuple | None = None):
        self.connection = connection
        self.plan_version = plan_version  # _VERSIONS' row, when the caller read it (one round trip less)
        self.sandbox = sandbox
        self.metrics = metrics  # cdp.observability.metrics.Metrics, or None
        self._loaded: StreamingPlan | None = None
        self._since: dict[datetime, set[int]] = {}  # _saved_since's reads
        self.evaluations = 0
        self.skipped = 0  # segments selected by a change's types whose filters admit none of its events
        # segments left after that whose answer cannot change for the profile when it only gains
        # events: a member of a monotone one, a non-member of an antitone one (cdp/segments/polarity.py),
        # and a segment reading no event itself none of whose references moved (:meth:`_unmoved`)
        self.kept = 0
        # the history deltas of the profiles written so far, while :meth:`profiles_changed` or
        # :meth:`deferred` runs (None: each profile's write moves its own)
        self.moves: HistoryMoves | None = None

    def _load(self) -> StreamingPlan:
        if self._loaded is None:
            self._loaded = streaming_plan(self.connection, self.sandbox, self.plan_version)
        return self._loaded

    def profile_changed(self, profile_pk: int, change: Change, now: datetime) -> dict[str, str]:
        """Re-evaluate the streaming segments ``change`` can affect on the profile at ``now``;
        returns key → new status for the memberships that changed."""
        plan = self._load()
        chosen, types = plan.selection(change)
        added = bool(change.events) and not change.everything and not change.attributes  # events only
        if chosen and added:
            kept = plan.relevant(chosen, change, now)
            if len(kept) < len(chosen):
                self.skipped += len(chosen) - len(kept)
                chosen, types = kept, plan.kept_types(kept)
        return self._evaluate(profile_pk, plan, chosen, types, now, change.event_types if added else None)

    def profiles_changed(self, changes: Iterable[tuple[int, Change]], now: datetime) -> dict[int, dict[str, str]]:
        """:meth:`profile_changed` for several profiles in one transaction (a request of several
        records), in profile order; their history rows moved once, at the end
        (cdp/storage/memberships.py ``move_history``): every row the transaction shares with
        concurrent writers locked in one order, whatever segments each profile changed (each
        profile's own write locking its segments' rows would not be: two such transactions
        deadlocked on PostgreSQL). Returns profile → what :meth:`profile_changed` gave."""
        ordered = sorted(changes)
        if len(ordered) == 1:  # one profile's write locks its rows in order: moved by its own statement
            return {pk: self.profile_changed(pk, change, now) for pk, change in ordered}
        with self.deferred():
            return {pk: self.profile_changed(pk, change, now) for pk, change in ordered}

    @contextmanager
    def deferred(self) -> Iterator[HistoryMoves]:
        """Within it, the profiles' writes add their history deltas to the yielded
        ``HistoryMoves`` (:attr:`moves`), moved when it ends — unless it ends by an exception (the
        transaction, or its savepoint, is then rolled back by the caller). A caller that rolls
        back a savepoint inside it removes that profile's deltas itself (cdp/segments/due.py)."""
        if self.moves is not None:  # nested: the outer one moves them
            yield self.moves
            return
        self.moves = {}
        try:
            yield self.moves
            move_history(self.connection, self.moves)
        finally:
            self.moves = None

    def due(self, profile_pk: int, now: datetime) -> dict[str, str]:
        """Re-evaluate the timed streaming segments of a profile whose instant has come: all of
        them when its own instant (``segment_due``) has come, else — due only because segments
        were saved (``segment_due_saved``) — the timed segments evaluated at or after that
        instant (:func:`cdp.segments.due.schedule_segment`)."""
        plan = self._load()
        # the instants are consumed (a profile with no timed segment left is not scheduled again),
        # then the segments evaluated and the earliest of their next instants stored
        own = self.connection.execute(_DUE_CONSUME[0], {"b_profile": profile_pk, "b_now": now}).first()
        saved = self.connection.execute(_DUE_CONSUME[1], {"b_profile": profile_pk, "b_now": now}).first()
        if saved is not None:
            # the save that wrote this row may have committed after this transaction read the plan
            # (PostgreSQL's statements each see what is committed when they start): the row is gone
            # now, so the plan must hold the segments saved — read its version again (one statement;
            # only for profiles due because of a save)
            plan = self._loaded = streaming_plan(self.connection, self.sandbox)
        chosen = plan.timed
        if own is None and saved is not None:
            since = self._saved_since(saved.due_at)
            chosen = [i for i in chosen if plan.refs[i].pk in since]
        return self._evaluate(profile_pk, plan, chosen, plan.event_types(chosen), now)

    def _saved_since(self, at: datetime) -> set[int]:
        """The sandbox's segments evaluated at or after ``at`` (those saved since: their save
        evaluates them set-wise at the instant it schedules the profiles with); one read per
        instant for this evaluator's transaction."""
        found = self._since.get(at)
        if found is None:
            found = self._since[at] = set(self.connection.execute(
                sa.select(segments.c.pk).where(segments.c.sandbox == self.sandbox,
                                               segments.c.evaluated_at >= at)).scalars())
        return found

    def _evaluate(self, profile_pk: int, plan: StreamingPlan, chosen: list[int], event_types: frozenset[str] | None,
                  now: datetime, added: frozenset[str] | None = None) -> dict[str, str]:
        if not chosen:
            return {}
        started = perf_counter()
        refs = plan.refs
        # ONE statement: the profile (only the events the chosen segments, and those they
        # reference, can read), its memberships of the chosen segments and its stored instant
        listed, listed_parameters = None, None  # None: all the profile's memberships (_load_with_state)
        if len(chosen) <= _LISTED_AT_MOST:
            listed, listed_parameters = plan.listed(chosen, added is not None, self.connection.dialect.name)
        profile, members, stored, saved = _load_with_state(self.connection, profile_pk, plan.schema, event_types,
                                                           listed, listed_parameters)
        # a record of new events only, the stored instant not passed: the stored memberships are
        # the answers until it, and the segments whose membership it cannot move are skipped
        # (and no saved segment waits for its first evaluation here: the stored instant does not
        # stand for those yet, migration 0023)
        settled = added is not None and saved is None and (stored is None or due_form(self.connection)(now) < stored)
        if settled:
            chosen = self._unchangeable(plan, chosen, members, added)
        verdicts: dict[int, bool] = {}
        memo: dict = {}  # a referenced segment is evaluated once for all that reference it
        spent: list[tuple[str, float]] = []
        keys, predicates = plan.keys, plan.predicates
        derived = plan.derived if settled else None
        # settled: a streaming segment not evaluated for this record (not selected, screened out,
        # skipped by polarity or as unmoved) keeps its stored membership as its answer now (the
        # arguments of _unchangeable and _unmoved; a segment the record cannot touch keeps its
        # answer, which the stored instant makes the stored membership until then) — so the
        # segments referencing it read that instead of evaluating its expression again
        referenced = plan.referenced if settled else None
        failed: set[str] = set()
        before = perf_counter()
        for i in chosen:
            if derived is not None and derived[i] is not None and self._unmoved(derived[i], verdicts, members, refs):
                continue
            key = keys[i]
            if referenced is not None:
                for j in referenced[i]:
                    other = keys[j]
                    if other not in memo and other not in failed and predicates[j] is not None:
                        memo[other] = refs[j].pk in members
            try:
                verdicts[i] = memo[key] = bool((predicates[i] or plan.predicate(i))(profile, now, memo))
            except PqlError as error:  # no longer checks against the schema, or fails at run time
                log.warning("streaming segment %r of sandbox %r skipped: %s", key, self.sandbox, error)
                failed.add(key)
                before = perf_counter()
                continue
            after = perf_counter()
            spent.append((key, after - before))
            before = after
        # the earliest of the evaluated segments' next instants, computed at once
        # (cdp/segments/timing.py earliest_change: exactly the least of each one's next_change)
        earliest = earliest_merged(plan.merged_timing(tuple(verdicts)), profile, now, plan.instants)
        self.evaluations += len(spent)
        evaluated = perf_counter()
        changed = self._write(profile_pk, profile.id, plan, verdicts, earliest, now, members, stored)
        if self.metrics is not None:
            self.metrics.evaluated(self.sandbox, spent)
            self.metrics.streaming_profile(self.sandbox, evaluated - started, perf_counter() - evaluated)
        return changed

    def _unchangeable(self, plan: StreamingPlan, chosen: list[int], members: set[int],
                      added: frozenset[str] = frozenset()) -> list[int]:
        """``chosen`` without the segments whose stored membership a record that only adds events
        cannot change: a member of a monotone segment, a non-member of an antitone one
        (cdp/segments/polarity.py). Called only when the profile's stored instant is after now
        (or there is none), so each stored membership is the answer at every instant from now
        until that instant (that is what the stored instant promises). With more events a
        monotone answer is TRUE wherever it was TRUE, so a member's answer stays TRUE on
        [now, stored): the membership is right and the stored instant still comes no later than
        its first change; the due job re-evaluates it then, as every timed segment of the
        profile. Likewise a non-member of an antitone segment. The stored instant is only ever
        lowered here (:meth:`_write`), so it keeps covering the segments skipped. ``added``: the
        types of the record's events — a segment is monotone or antitone for events of those types
        (:meth:`StreamingPlan.polarity`: a cart-then-no-purchase segment keeps its members on a
        new cart, its non-members on a new purchase)."""
        refs = plan.refs
        grown, shrunk = plan.polarity(added, chosen)
        kept = [i for i in chosen if not (grown[i] if refs[i].pk in members else shrunk[i])]
        self.kept += len(chosen) - len(kept)
        return kept

    def _unmoved(self, on: tuple[int, ...], verdicts: Mapping[int, bool], members: set[int],
                 refs: list[SegmentRef]) -> bool:
        """Whether a segment whose own expression reads no event and that references the segments
        at positions ``on`` keeps its stored membership: each of them evaluated so far (they come
        first, in dependency order) gave its stored membership. Called only for a record that only
        adds events while the profile's stored instant is after now (or absent), so the stored
        memberships are the answers at every instant from now until it, on the events before the
        record. The segment's answer is a function of the referenced answers and of what the
        record does not change (attributes, the clock): a referenced segment not evaluated — not
        selected (the record touches nothing it reads), or skipped by relevance or polarity —
        keeps its answer, an evaluated one gave the stored one; so its answer now is the stored
        membership, and until the stored instant it changes only if theirs do, which the instants
        they computed (stored when earlier) and the stored instant cover."""
        for j in on:
            verdict = verdicts.get(j)
            if verdict is not None and verdict != (refs[j].pk in members):
                return False
        self.kept += 1
        return True

    def _write(self, profile_pk: int, profile_id: str, plan: StreamingPlan, verdicts: Mapping[int, bool],
               earliest: datetime | None, now: datetime, members: set[int], stored: Any) -> dict[str, str]:
        """ONE write of what changed against the profile's state read with it (``members``, the
        ``stored`` instant): :func:`write_profile` — memberships with their outbox and history
        rows, and the profile's instant when ``earliest`` (of the evaluated segments' next
        instants) is earlier than the stored one, or there was none; on PostgreSQL a single
        statement, on SQLite one executemany per table.

        The stored instant is never moved later, nor deleted, here: it also stands for the
        profile's timed segments this evaluation did not evaluate, and an instant may be early,
        never late (the due job then re-evaluates all of them, and stores their earliest next
        instant, or none). A profile receiving a stream of events of a type it already has
        rewrites nothing for them."""
        refs = plan.refs
        # (pk, key, entered) of the memberships that change, in segment order (one order for every
        # writer): what verdict_changes gives, without a SegmentRef mapping built per record
        changes = sorted((refs[i].pk, refs[i].key, verdict) for i, verdict in verdicts.items()
                         if verdict != (refs[i].pk in members))
        if earliest is not None and stored is not None and not due_form(self.connection)(earliest) < stored:
            earliest = None
        if changes or earliest is not None:
            write_profile(self.connection, sandbox=self.sandbox, profile_pk=profile_pk, profile_id=profile_id,
                          now=now, source="streaming", changes=changes, due=earliest, moves=self.moves)
        return {key: "realized" if entered else "exited" for _, key, entered in changes}


_LOAD_SQL: dict[tuple[str, bool | None, bool], str] = {}

# the state rows with every current membership of the profile (the rows of
# cdp.storage.memberships.state_rows_sql without its segment filter): for a long list of segments
# to evaluate, reading the profile's memberships (a few tens, by its index) costs less than probing
# each listed segment (SQLite, shapes(500): 300 listed segments 79–96 µs, all of a profile's 2–74
# memberships 5–34 µs); the memberships of segments not evaluated are not used
_ALL_MEMBERS = {
    "sqlite": (" UNION ALL SELECT 2, NULL, NULL, NULL, NULL, segment_pk FROM memberships WHERE profile_pk = :profile "
               "AND status IN ('realized', 'existing') "
               "UNION ALL SELECT 3, NULL, NULL, NULL, due_at, NULL FROM segment_due WHERE profile_pk = :profile "
               "UNION ALL SELECT 4, NULL, NULL, NULL, due_at, NULL FROM segment_due_saved WHERE profile_pk = :profile"),
    "postgresql": (" UNION ALL SELECT 2, NULL::text, NULL::text, NULL::text, NULL::timestamptz, segment_pk "
                   "FROM memberships WHERE profile_pk = %(profile)s AND status IN ('realized', 'existing') "
                   "UNION ALL SELECT 3, NULL::text, NULL::text, NULL::text, due_at, NULL::bigint FROM segment_due "
                   "WHERE profile_pk = %(profile)s "
                   "UNION ALL SELECT 4, NULL::text, NULL::text, NULL::text, due_at, NULL::bigint FROM segment_due_saved "
                   "WHERE profile_pk = %(profile)s"),
}
_LISTED_AT_MOST = 32  # segments to evaluate beyond which all the profile's memberships are read


def _load_with_state(connection: sa.Connection, profile_pk: int, schema: Schema, event_types: frozenset[str] | None,
                     evaluated: list[int] | None,
                     listed_parameters: dict[str, Any] | None = None) -> tuple[Any, set[int], Any, Any]:
    """The lean profile (cdp.profiles.documents.stored_profile), which of the ``evaluated``
    segments it is a current member of (None, or more than ``_LISTED_AT_MOST`` of them: all its
    current memberships, a superset; ``listed_parameters``: their parameters when the caller has
    them, :meth:`StreamingPlan.listed`), its stored instant and its instant in
    ``segment_due_saved`` (None: none; migration 0023), read by
    ONE statement straight to the driver (was three: two Core queries for the profile, one for
    its state — a round trip each — and every membership of the profile)."""
    from cdp.profiles.documents import profile_from_rows, profile_rows_parameters, profile_rows_sql

    dialect = connection.dialect.name
    every = evaluated is None or len(evaluated) > _LISTED_AT_MOST
    shape = (dialect, None if event_types is None else bool(event_types), every)
    sql = _LOAD_SQL.get(shape)
    if sql is None:
        sql = _LOAD_SQL[shape] = profile_rows_sql(dialect, event_types,
                                                  _ALL_MEMBERS[dialect] if every else state_rows_sql(dialect))
    parameters = profile_rows_parameters(dialect, profile_pk, event_types)
    if not every:
        parameters.update(listed_parameters or state_rows_parameters(dialect, evaluated))
    profile, rest = profile_from_rows(driver(connection, sql, parameters, rows=True), schema, dialect)
    members, stored, saved = state_from_rows(rest)
    return profile, members, stored, saved


# built once (SQLAlchemy compiles it once): it runs on every due re-evaluation
_DUE_CONSUME = [table.delete().where(table.c.profile_pk == sa.bindparam("b_profile"),
                                     table.c.due_at <= sa.bindparam("b_now")).returning(table.c.due_at)
                for table in (segment_due, segment_due_saved)]
