"""The Writer: validated records written — profile resolution through the identity graph,
attributes by the merge policy with their provenance, idempotent events, the streaming segments
re-evaluated in the same transaction — and its answer to concurrent writers (savepoints, retries,
the serialized writer, the identity turns). A streaming request's reading and validation are
cdp/ingestion/service.py's; a batch file's staging is cdp/ingestion/staging.py's (see the package
docstring for the rules and limits)."""

from __future__ import annotations

import logging
import random
import time
from operator import itemgetter
from datetime import date, datetime, timezone
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

import cdp.ingestion as limits
from cdp.observability.metrics import Metrics
from cdp.ingestion.config import IngestConfig
from cdp.ingestion.models import RecordError, RecordResult, RecordStatus
from cdp.ingestion.validation import ValidRecord
from cdp.engine.sql.loading import json_value
from cdp.identity import listed
from cdp.identity.attributes import Source, record_attributes_many
from cdp.identity.graph import IdentityGraph, Lineage, Resolution, ResolutionConflict
from cdp.identity.owners import TOUCH_DONE, run_touch
from cdp.identity.namespaces import IdentityValueError, normalize, sandbox_namespaces
from cdp.identity.settings import get_identity_settings
from cdp.identity.turns import MAX_TURN_KEYS, TURN_WAIT_SECONDS, identity_turns
from cdp.segments.membership import MembershipRefresher
from cdp.segments.reads import Change
from cdp.segments.streaming import StreamingEvaluator
from cdp.storage.bulk import insert_events
from cdp.storage.database import hold_until_transaction_ends, holds_until_transaction_ends
from cdp.storage.driver import driver
from cdp.storage.models import profiles

log = logging.getLogger("cdp.ingestion")

# statements of the hot path, the list of ids or keys as one parameter (cdp/identity/listed.py)
_EVENTS_SEEN = "SELECT event_id FROM events WHERE dataset_pk = ? AND event_id {list}"
# PostgreSQL, several ids: one probe of the unique index on (dataset, event id) per id, whatever
# the plan — a scalar subquery per id is never turned into a join. ``event_id = ANY(…)`` was
# planned (generic plan, ``plan_cache_mode = auto``, tables grown since their last ANALYZE) as a
# bitmap scan of the dataset's whole range of that index with the ids as a filter: 32 ms a
# 500-record request at 10,000 events, growing with the dataset (bench/RESULTS.md, session 16)
_EVENTS_SEEN_PROBED = ("SELECT w.id FROM unnest(%s::varchar[]) AS w(id) WHERE (SELECT 1 FROM events AS e "
                       "WHERE e.dataset_pk = %s AND e.event_id = w.id) IS NOT NULL")
# the profiles' event counts (kept by triggers on events, migration 0017): one number a profile,
# not a COUNT that grows with it
_EVENT_COUNTS = "SELECT pk, event_count FROM profiles WHERE pk {list}"
_TOUCH_PROFILE = profiles.update().where(profiles.c.pk == sa.bindparam("b_pk")).values(
    updated_at=sa.bindparam("b_now"))


class Writer:
    """Applies valid records on one connection (one transaction), remembering what it has seen
    (event ids of this call, event counts per profile) so a batch is checked as a whole.

    Identities are normalised per namespace (cdp/identity/namespaces.py) and resolved through the
    identity graph (cdp/identity/graph.py), which links and merges profiles; records are written
    set-wise (:meth:`apply_many`), with the outcome of one after the other. On PostgreSQL a write
    that loses a race with a concurrent writer (a merge deleted its profile, a deadlock, an
    identity or event id claimed meanwhile) is rolled back and tried again.
    """

    def __init__(self, connection: sa.Connection, *, sandbox: str, dataset_pk: int, kind: str,
                 batch_pk: int | None = None, request_id: str | None = None, clock: Callable[[], datetime] | None = None,
                 metrics: Metrics | None = None, config: IngestConfig | None = None, plan_version: tuple | None = None):
        self.connection = connection
        self.sandbox = sandbox
        self.dataset_pk = dataset_pk
        self.kind = kind
        self.batch_pk = batch_pk
        self.request_id = request_id
        self.dialect = connection.dialect.name
        self.seen_event_ids: set[str] = set()
        self.event_counts: dict[int, int] = {}
        # ``config``: what the request already read (cdp/ingestion/config.py); a batch reads its own
        if config is not None:
            self.namespaces, self.settings, rules = config.namespaces, config.settings, config.rules
        else:
            self.namespaces = sandbox_namespaces(connection=connection, sandbox=sandbox)
            self.settings = get_identity_settings(connection=connection, sandbox=sandbox)
            rules = None
        self.graph = IdentityGraph(connection, sandbox=sandbox, namespaces=dict(self.namespaces),
                                   settings=self.settings, rules=rules)
        self.graph.lineage = Lineage(dataset_pk, batch_pk, request_id)
        # PostgreSQL events: the touch rides on the event insert (one round trip less while the
        # identities are locked: 8 writers of the same people queue there)
        self.graph.defer_touch = kind == "event" and self.dialect == "postgresql"
        self.memberships = MembershipRefresher(connection, sandbox=sandbox)
        self.streaming = StreamingEvaluator(connection, sandbox=sandbox, metrics=metrics, plan_version=plan_version)
        self.clock = clock or _wall_clock
        # PostgreSQL: time.monotonic() past which a request stops waiting for other writers (None:
        # no bound, a batch file's apply pass); whether this writer holds the serialized lock
        self.deadline: float | None = None
        # PostgreSQL: whether this writer's statements may reuse cached plans (a request's few rows;
        # see _open_savepoint) — not a batch file's apply pass, which grows tables as it goes
        self.reuse_plans = False
        self.serialized = False
        # PostgreSQL: the state of this writer's savepoint (Writer._open_savepoint): None (none
        # yet), "open" (an attempt runs in it, or lost and was rolled back to it), "won"
        self.savepoint: str | None = None
        # PostgreSQL: whether a request takes turns on its identities before its first attempt
        # (cdp/identity/turns.py): a streaming request whose transaction has written nothing before
        self.take_turns = False

    # ---- identities --------------------------------------------------------------------------

    def normalized_identities(self, pairs: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[RecordError]]:
        found: list[tuple[str, str]] = []
        errors: list[RecordError] = []
        for index, (namespace, value) in enumerate(pairs):
            if namespace not in self.namespaces:
                errors.append(RecordError(path=f"identities[{index}].namespace", message=(
                    f"unknown namespace {namespace!r}; one of {', '.join(self.namespaces)} (custom namespaces: "
                    f"POST /v1/identity/namespaces)")))
                continue
            try:
                normalized = normalize(namespace, value)
            except IdentityValueError as exc:
                errors.append(RecordError(path=f"identities[{index}].id", message=f"invalid {namespace} identity: "
                                                                                  f"{exc}"))
                continue
            if (namespace, normalized) not in found:
                found.append((namespace, normalized))
        return found, errors

    # ---- one record --------------------------------------------------------------------------

    def apply(self, index: int, record: ValidRecord) -> RecordResult:
        """Apply one record (:meth:`apply_many` of one)."""
        return self.apply_many([(index, record)])[0]

    def apply_many(self, items: list[tuple[int, ValidRecord]]) -> list[RecordResult]:
        """Apply many records (index, record) with the outcome of applying them one after the
        other, in a few set-wise statements, in the caller's transaction (a streaming request, a
        batch file: all or nothing). On PostgreSQL in a savepoint of it: when they lose a race with
        a concurrent writer they are rolled back (releasing every lock they took) and tried again
        together, SET_WISE_ATTEMPTS times; then, as the sandbox's one serialized writer
        (:meth:`serialize`), until the request's ``deadline`` (a batch file: MAX_ATTEMPTS times
        more); records that still lose are rejected (``conflict``), never half stored. Never record by
        record: a released savepoint keeps its locks until the transaction ends, so two writers
        applying records one by one would each hold what the other's next record needs (a cycle
        the deadlock detector cannot break by aborting a savepoint). On SQLite the transaction
        holds the write lock, so nothing races."""
        results: dict[int, RecordResult] = {}
        prepared: list[tuple[int, int, ValidRecord, list[tuple[str, str]]]] = []
        namespaces, rules = self.namespaces, self.graph.rules
        for position, (index, record) in enumerate(items):
            pairs = record.identities
            if record.normalized and (pairs[0][0] in namespaces if len(pairs) == 1 else
                                      all(namespace in namespaces for namespace, _ in pairs)):
                errors = []  # normalize() is idempotent: the same pairs again
            else:
                pairs, errors = self.normalized_identities(pairs)
            doubled = None if errors or len(pairs) < 2 else rules.doubled(pairs)  # one identity: never two
            if doubled:
                errors = [RecordError(path="identities", message=(
                    f"two {doubled} identities in one record: {doubled} is a unique namespace of this sandbox (a "
                    f"person has one; GET /v1/identity/settings), so a record carries at most one"))]
            if errors:
                results[position] = RecordResult(index=index, status=RecordStatus.rejected, errors=errors)
            else:
                prepared.append((position, index, record, pairs))
        if prepared and self.dialect != "postgresql":
            applied, remember = self._apply_many(prepared)
            remember()
            results.update(applied)
        elif prepared:
            if self.take_turns:
                self._take_turns(prepared)
            applied = self._attempt(prepared, SET_WISE_ATTEMPTS if len(prepared) > 1 else MAX_ATTEMPTS)
            if applied is None and self.serialize():  # still losing: again, as the sandbox's one such writer
                # each loss means a competitor committed; a request keeps trying until its deadline
                applied = self._attempt(prepared, MAX_ATTEMPTS if self.deadline is None else SERIALIZED_ATTEMPTS)
            if applied is None:  # out of attempts or out of time: rejected, nothing of them stored
                applied = {position: _conflict(index) for position, index, _, _ in prepared}
            results.update(applied)
        return [results[position] for position in range(len(items))]

    def _take_turns(self, prepared: list) -> None:
        """PostgreSQL, a streaming request's first write: wait for this process's other writers of
        the same identities to end their transactions (cdp/identity/turns.py), and hold the turns
        until this one ends. Only before anything is written (no lock of this transaction can be
        what the turn's holder waits for) and for at most MAX_TURN_KEYS identities."""
        if self.savepoint is not None or self.serialized or holds_until_transaction_ends(self.connection):
            return
        keys = {(self.sandbox, namespace, value) for _, _, _, pairs in prepared for namespace, value in pairs}
        if not keys or len(keys) > MAX_TURN_KEYS:
            return
        wait = TURN_WAIT_SECONDS if self.deadline is None else min(TURN_WAIT_SECONDS, self.deadline - time.monotonic())
        give_back = identity_turns(self.connection.engine).take(keys, max(0.0, wait))
        if give_back is None:
            log.info("identity turns not had within %.1f s: writing without them", wait)
            return
        hold_until_transaction_ends(self.connection, give_back)

    def _attempt(self, prepared: list, attempts: int) -> dict[int, RecordResult] | None:
        """PostgreSQL: apply ``prepared`` in a savepoint, up to ``attempts`` times while it loses
        races; None when it never won."""
        for attempt in range(attempts):
            if self.deadline is not None and self.deadline <= time.monotonic():
                return None  # out of time (the savepoint's statement bounds each wait by the time left)
            # the first attempt locks the owners as it reads them; a retry after a lost race locks
            # them all in key order first (cdp/identity/graph.py, IdentityGraph._lock_owners)
            self.graph.lock_at_read = attempt == 0 and not self.serialized
            self._open_savepoint()
            try:
                applied, remember = self._apply_many(prepared)
            except (sa.exc.IntegrityError, sa.exc.OperationalError, ResolutionConflict) as exc:
                if not _lost_a_race(exc):
                    raise
                self.connection.exec_driver_sql(_ROLLBACK_ATTEMPT, execution_options=_NO_PARAMETERS)
                # the other writer has committed by now (we waited for it): the next round sees its
                # identities as owned and links to its profiles
                log.info("%s record(s) lost a race with a concurrent writer (attempt %s): %s", len(prepared),
                         attempt + 1, str(getattr(exc, "orig", exc)).splitlines()[0])
                self.event_counts.clear()
                if _still_running(exc):  # back off only from a writer that has not committed yet
                    time.sleep(random.uniform(0, min(0.2, 0.02 * (attempt + 1))))
                continue
            self.savepoint = "won"
            remember()
            return applied
        return None

    def serialize(self) -> bool:
        """PostgreSQL: become the sandbox's one serialized writer until the transaction ends (an
        advisory lock: another serialized writer — a request that kept losing, a batch file's
        apply pass — waits for this one to commit); False when the request's deadline passed
        first. Take it holding no lock the others may need: before any write of the transaction,
        or after every attempt of it was rolled back (then a cycle through it cannot form)."""
        if self.serialized:
            return True
        if not self._wait_budget():
            return False
        try:
            with self.connection.begin_nested():
                self.connection.execute(_SERIAL_LOCK, {"name": f"cdp.ingest:{self.sandbox}"})
        except sa.exc.OperationalError as exc:
            if not _lost_a_race(exc):
                raise
            log.info("the sandbox's serialized writer did not finish within this request's deadline")
            return False
        self.serialized = True
        return True

    def _open_savepoint(self) -> None:
        """PostgreSQL: the attempt's savepoint and its lock bound, in ONE round trip (``SAVEPOINT``
        and ``SET LOCAL lock_timeout`` sent together: the two were separate statements, and
        SQLAlchemy's nested transaction also sent a ``RELEASE``). A won attempt's savepoint is not
        released: what follows in the transaction runs inside it and the COMMIT commits it all; the
        next attempt on this connection (a batch's next chunk) releases it first, in the same round
        trip, so savepoints never pile up. A lost one was rolled back to (``ROLLBACK TO`` keeps the
        savepoint) and is reused."""
        steps = {None: ["SAVEPOINT cdp_write"], "won": ["RELEASE SAVEPOINT cdp_write", "SAVEPOINT cdp_write"],
                 "open": []}[self.savepoint]
        if self.deadline is not None:  # bounded by the time left (an int: nothing of the caller's in the text)
            left = max(1, int((self.deadline - time.monotonic()) * 1000))
            steps.append(f"SET LOCAL lock_timeout = '{left}ms'")
        if self.reuse_plans:
            # every connection plans every statement afresh (cdp/storage/database.py: a batch's
            # transaction grows tables past any plan made before it); a request writes at most
            # 1,000 records, so its statements — and the event counter's trigger statements — may
            # use PostgreSQL's cached plans: planning was half of a single-record POST's statement
            # time (bench/RESULTS.md, session 10). Inside the savepoint, so a lost attempt's
            # ROLLBACK TO undoes it: it is sent with each attempt, as the lock bound is.
            steps.append("SET LOCAL plan_cache_mode = auto")
            # and find their rows by key: a request's statements — and the triggers they fire (the
            # event counter, the cascades of a merge's deletes) — touch the rows of its records,
            # never a whole table; on a database whose statistics lag its growth (a new one, before
            # autovacuum's ANALYZE catches up) the planner chose sequential scans of events and
            # identities for a merge's moves, identity counts and touch locks (bench/RESULTS.md,
            # session 12). A table with no usable index is still scanned.
            steps.append("SET LOCAL enable_seqscan = off")
        self.savepoint = "open"
        if steps:
            self.connection.exec_driver_sql("; ".join(steps), execution_options=_NO_PARAMETERS)

    def _wait_budget(self) -> bool:
        """PostgreSQL, a request with a ``deadline``: False once it has passed; else each lock wait
        from now on is bounded by the time left (lock_timeout; a wait past it is a lost race)."""
        if self.deadline is None:
            return True
        left = self.deadline - time.monotonic()
        if left <= 0:
            return False
        self.connection.execute(_LOCK_TIMEOUT, {"ms": f"{max(1, int(left * 1000))}ms"})
        return True

    def _apply_many(self, prepared: list[tuple[int, int, ValidRecord, list[tuple[str, str]]]]):
        """(position → result, what to remember once it is committed)."""
        now = self.clock()
        results: dict[int, RecordResult] = {}
        changes: dict[int, Change] = {}  # profile → what the records changed (streaming segments)
        if self.kind == "event":
            stored = self._events_seen([record.event_id for _, _, record, _ in prepared])
            fresh, here = [], set()
            for item in prepared:
                event_id = item[2].event_id
                if event_id in stored or event_id in self.seen_event_ids or event_id in here:
                    results[item[0]] = _result(item[1], RecordStatus.duplicate, None, [
                        f"event {event_id!r} was already ingested into this dataset; not stored again"])
                else:
                    here.add(event_id)
                    fresh.append(item)
            prepared = fresh
        if not prepared:
            return results, _nothing
        resolutions = self.graph.resolve_many([pairs for _, _, _, pairs in prepared], now,
                                              [index for _, index, _, _ in prepared])
        merged_into = sorted({r.profile_pk for r in resolutions if r.merged} | self.graph.regrouped)
        if self.kind == "profile":
            record_attributes_many(self.connection, [
                (resolution.profile_pk, {k: json_value(v, self.dialect) for k, v in record.set_attributes.items()},
                 record.removed, Source(self.dataset_pk, record.observed_at or now, self.batch_pk, self.request_id,
                                        index, pairs))
                for (_, index, record, pairs), resolution in zip(prepared, resolutions)], self.settings,
                created={r.profile_pk for r in resolutions if r.created})
            for (_, _, record, _), resolution in zip(prepared, resolutions):
                paths = frozenset(tuple(p.split(".")) for p in (*record.set_attributes, *record.removed))
                before = changes.get(resolution.profile_pk, Change())
                changes[resolution.profile_pk] = Change(attributes=before.attributes | paths)
            # profiles made just now already say updated_at = now
            touched = sorted({r.profile_pk for r in resolutions if not r.created})
            if touched:
                self.connection.execute(_TOUCH_PROFILE, [{"b_pk": pk, "b_now": now} for pk in touched])
            for (position, index, _, _), resolution in zip(prepared, resolutions):
                results[position] = _result(index, _ACCEPTED, resolution.external_id, self._warnings(resolution))
            remember = _nothing
        else:
            remember = self._apply_events(prepared, resolutions, results, changes, bool(merged_into))
        for profile_pk in merged_into:
            self.memberships.refresh(profile_pk, now)
        for profile_pk in {*merged_into, *(r.profile_pk for r in resolutions if r.created)}:
            changes[profile_pk] = Change(everything=True)  # a new profile: any segment may take it
        # streaming segments: evaluated in this transaction, so memberships commit with the records
        self.streaming.profiles_changed(changes.items(), now)
        return results, remember

    def _apply_events(self, prepared: list, resolutions: list[Resolution], results: dict[int, RecordResult],
                      changes: dict[int, Change], merged: bool) -> Callable[[], None]:
        """The resolved event records checked one after the other against the per-profile limit
        of events (a profile at its limit: each of its records is rejected from the one that
        passes it on), then ONE insert with the identities' touch on PostgreSQL. (A variant that
        built the rows as whole-request lists saved 0–2 µs a record and was a second copy of
        this: bench/RESULTS.md, session 16.)"""
        if merged:
            self.event_counts.clear()
        counts = dict(self.event_counts)
        counts.update((r.profile_pk, 0) for r in resolutions if r.created)  # made just now: none yet
        # read with the owners (cdp/identity/owners.py), unless a merge changed them since
        counts.update((pk, n) for pk, n in self.graph.event_counts.items() if pk not in counts)
        unknown = sorted({r.profile_pk for r in resolutions} - counts.keys())
        if unknown:
            counts.update({pk: 0 for pk in unknown})
            counts.update(listed.rows(self.connection, _EVENT_COUNTS, listed.keys(unknown)))
        rows, stored_ids = [], []
        types_of: dict[int, set[str]] = {}  # profile → the types of the events it got (streaming segments)
        events_of: dict[int, list[dict]] = {}  # profile → the events it got
        dialect, dataset_pk, most = self.dialect, self.dataset_pk, limits.MAX_EVENTS_PER_PROFILE
        for (position, index, record, pairs), resolution in zip(prepared, resolutions):
            profile_pk = resolution.profile_pk
            # a plain resolution (no merge, removal or split: the common case) says nothing
            warnings = (self._warnings(resolution) if resolution.merged or resolution.unlinked or resolution.split
                        or resolution.removed else [])
            count = counts[profile_pk]
            if count >= most:
                results[position] = self._too_many_events(index, resolution.external_id, count, warnings)
                continue
            counts[profile_pk] = count + 1
            row = {"profile_pk": profile_pk, "event_id": record.event_id, "type": record.event_type,
                   "ts": record.ts, "dataset_pk": dataset_pk, "identities": [list(p) for p in pairs],
                   "fields": record.event_fields if record.plain_fields else _stored_fields(record.event_fields,
                                                                                             dialect)}
            rows.append(row)
            stored_ids.append(record.event_id)
            found = types_of.get(profile_pk)
            if found is None:
                types_of[profile_pk] = {record.event_type}
                events_of[profile_pk] = [row]  # its values: streaming skips by them
            else:
                found.add(record.event_type)
                events_of[profile_pk].append(row)
            results[position] = _result(index, _ACCEPTED, resolution.external_id, warnings)
        changes.update((pk, Change(event_types=frozenset(types), events=tuple(events_of[pk])))
                       for pk, types in types_of.items())
        self._insert_events(rows)

        def remember() -> None:
            self.seen_event_ids.update(stored_ids)
            self.event_counts.update(counts)
        return remember

    def _insert_events(self, rows: list[dict]) -> None:
        touch = self.graph.take_touch()  # PostgreSQL: the identities' last_seen, in the insert's statement
        if rows:  # in one order for every writer (the unique index on dataset and event id)
            insert_events(self.connection, sorted(rows, key=_by_event_id),
                          first=None if touch is None else (touch.cte, TOUCH_DONE, touch.parameters))
        elif touch is not None:
            run_touch(self.connection, touch)

    def _events_seen(self, event_ids: list[str]) -> set[str]:
        """Which of ``event_ids`` the dataset holds already."""
        if self.dialect == "postgresql" and len(event_ids) > 1:
            return {row[0] for row in driver(self.connection, _EVENTS_SEEN_PROBED,
                                             (listed.array_literal(event_ids), self.dataset_pk), rows=True)}
        return {row[0] for row in listed.rows(self.connection, _EVENTS_SEEN, self.dataset_pk,
                                              listed.Many(event_ids, "varchar"))}

    def _warnings(self, resolution: Resolution) -> list[str]:
        warnings: list[str] = []
        if resolution.merged:
            warnings.append(f"the record linked profiles {', '.join(map(repr, resolution.merged))} into "
                            f"{resolution.external_id!r} (merged)")
        if resolution.unlinked:
            warnings.append(f"linking rules: removed the link(s) {'; '.join(resolution.unlinked)} (a graph holds one "
                            f"identity of each unique namespace; the newest link is kept)")
        if resolution.split:
            warnings.append(f"linking rules: split off profile(s) {', '.join(map(repr, resolution.split))}")
        if resolution.removed:
            warnings.append(f"the profile passed the graph limit of {self.settings.graph_limit} identities; removed "
                            f"{', '.join(f'{ns}:{value}' for ns, value in resolution.removed)}")
        return warnings

    @staticmethod
    def _too_many_events(index: int, profile_id: str, count: int, warnings: list[str]) -> RecordResult:
        return RecordResult(index=index, status=RecordStatus.rejected, profile_id=profile_id, errors=[
            RecordError(path="event", message=f"too_many_events: profile {profile_id!r} holds {count} events; "
                                              f"at most {limits.MAX_EVENTS_PER_PROFILE} per profile")],
            warnings=warnings)


MAX_ATTEMPTS = 6
SET_WISE_ATTEMPTS = 4  # then as the serialized writer: MAX_ATTEMPTS times (a batch), or until the deadline
SERIALIZED_ATTEMPTS = 1000  # a request's bound is its deadline (WAIT_SECONDS); this only caps the loop
# PostgreSQL: how long a streaming request may wait for concurrent writers in all (every lock wait,
# retry and the serialized writer's lock); then what is not applied yet is rejected as `conflict`
WAIT_SECONDS = 20.0
_SERIAL_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))")
_LOCK_TIMEOUT = sa.text("SELECT set_config('lock_timeout', :ms, true)")
_ROLLBACK_ATTEMPT = "ROLLBACK TO SAVEPOINT cdp_write"
# sent as text with no parameters: psycopg then uses the simple protocol, which takes several statements
_NO_PARAMETERS = {"no_parameters": True}
# foreign key, unique, deadlock, serialization, a lock not taken in time (NOWAIT, lock_timeout)
_RACE_CODES = {"23503", "23505", "40P01", "40001", "55P03"}


_ACCEPTED = RecordStatus.accepted


def _validated_result(index: int, status: RecordStatus, profile_id: str | None, warnings: list[str]) -> RecordResult:
    return RecordResult(index=index, status=status, profile_id=profile_id, warnings=warnings)


def _made_result() -> Callable[[int, RecordStatus, str | None, list[str]], RecordResult]:
    """An accepted or duplicate record's result without pydantic's validation of its values (the
    Writer made them: an int, a RecordStatus, a str or None, a list of str) — 0.66 µs against 1.25
    for the validated model, a record of every request (bench/RESULTS.md, session 17). The model
    is the same one, with the same fields set, as the validated constructor makes (checked here
    once; tests/test_ingest_results.py): pydantic's own ``model_construct`` sets these four
    attributes, after work that made it slower than validating."""
    new, set_attribute = object.__new__, object.__setattr__
    fields_set = frozenset({"index", "status", "profile_id", "warnings"})

    def made(index: int, status: RecordStatus, profile_id: str | None, warnings: list[str]) -> RecordResult:
        result = new(RecordResult)
        set_attribute(result, "__dict__", {"index": index, "status": status, "profile_id": profile_id, "errors": [],
                                           "warnings": warnings})
        set_attribute(result, "__pydantic_fields_set__", set(fields_set))
        set_attribute(result, "__pydantic_extra__", None)
        set_attribute(result, "__pydantic_private__", None)
        return result

    try:
        same = all(made(*case) == _validated_result(*case) and made(*case).model_fields_set
                   == _validated_result(*case).model_fields_set
                   for case in ((3, RecordStatus.accepted, "p-1", []), (0, RecordStatus.duplicate, None, ["w"])))
    except Exception:  # noqa: BLE001 - another pydantic's internals: the validated constructor
        same = False
    return made if same else _validated_result


_result = _made_result()


def _conflict(index: int) -> RecordResult:
    return RecordResult(index=index, status=RecordStatus.rejected, errors=[RecordError(
        path="identities", message=f"conflict: concurrent writers kept changing this record's profiles (retried, "
                                   f"at most {WAIT_SECONDS:g} s for a request); nothing of it was stored, send it "
                                   f"again")])


# lost to a writer still in its transaction (a deadlock victim, NOWAIT, lock_timeout,
# serialization); the other losses waited for the winner's commit (an identity or event id it
# claimed, a profile it merged away), so the next attempt sees its writes at once — no pause: a
# burst of a new person's events (8 clients) lost such races on ~7 % of single-record requests,
# each paying up to 20 ms of sleep on top of the wait
_STILL_RUNNING_CODES = {"40P01", "40001", "55P03"}


def _still_running(exc: Exception) -> bool:
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in _STILL_RUNNING_CODES


def _lost_a_race(exc: Exception) -> bool:
    if isinstance(exc, ResolutionConflict):
        return True
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in _RACE_CODES


_CONVERTED = (date, tuple)  # engine values stored in another form (datetime is a date)


def _stored_fields(fields: dict[str, Any], dialect: str) -> dict[str, Any]:
    """An event's fields as stored (json_value of each): the dict itself when nothing needs
    converting (most events: text, numbers, booleans)."""
    for value in fields.values():
        if isinstance(value, _CONVERTED):
            return {k: json_value(v, dialect) for k, v in fields.items()}
    return fields


_by_event_id = itemgetter("event_id")


def _wall_clock() -> datetime:
    return datetime.now(timezone.utc)


def _nothing() -> None:
    return None
