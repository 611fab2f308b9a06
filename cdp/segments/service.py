"""Segments of a sandbox: saving (checked against the schema in force and the other segments),
reading, the reference graph, members, history and single-profile evaluation (estimates:
cdp/segments/estimates.py).

Saving an active segment (create, or an update of its expression or to status active) evaluates
it at once over every profile (cdp/segments/batch.py), with the active segments that reference it
and the active segments those use, in dependency order, in the same transaction: its size and
members are there when the answer is.
Draft and inactive segments are never evaluated; an inactive segment keeps the memberships of its
last evaluation.
"""

from __future__ import annotations

import base64
import difflib
import threading
import weakref
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

import sqlalchemy as sa

from cdp.dsl import Diagnostic, PqlError, ast, check, render
from cdp.dsl.catalogue import cycle_errors
from cdp.engine import ProfileError, compile_predicate, explain, load_profile
from cdp.engine.sql import MAX_SEGMENT_DEPTH, MAX_SEGMENT_REFERENCES
from cdp.errors import Conflict, NotFound, Unprocessable
from cdp.schema import Schema
from cdp.segments import batch
from cdp.segments.models import (EvaluateRequest, EvaluateResult, ExplainRow, History, HistoryPoint,
                                 MemberPage, MemberRead, MembershipStatus, SegmentCreate, SegmentRead, SegmentStatus,
                                 SegmentUpdate)
from cdp.segments.membership import MEMBER, compiled_catalogue, hour_of
from cdp.storage.models import (activations, memberships, profiles, segment_dependencies, segment_due, segment_due_saved,
                                segment_history, segment_versions, segments)

SAMPLE_MEMBERS = 20


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime | None) -> datetime:
    if value is None:
        return _now()
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# ---- the catalogue and the reference graph ---------------------------------------------------


def catalogue(connection: sa.Connection, sandbox: str) -> dict[str, str]:
    """Every segment of the sandbox, key → expression (what `in segment` resolves against)."""
    rows = connection.execute(sa.select(segments.c.key, segments.c.expression).where(segments.c.sandbox == sandbox))
    return {row.key: row.expression for row in rows}


def reference_graph(connection: sa.Connection, sandbox: str) -> dict[str, set[str]]:
    """key → keys it references, from the stored dependency edges."""
    s, d = segments.alias("s"), segments.alias("d")
    rows = connection.execute(
        sa.select(s.c.key, d.c.key.label("dep")).select_from(
            segment_dependencies.join(s, s.c.pk == segment_dependencies.c.segment_pk)
            .join(d, d.c.pk == segment_dependencies.c.depends_on_pk)).where(s.c.sandbox == sandbox))
    graph: dict[str, set[str]] = {}
    for row in rows:
        graph.setdefault(row.key, set()).add(row.dep)
    return graph


def _dependents(graph: Mapping[str, set[str]], key: str) -> set[str]:
    """Keys that reference ``key``, directly or through others."""
    reverse: dict[str, set[str]] = {}
    for source, targets in graph.items():
        for target in targets:
            reverse.setdefault(target, set()).add(source)
    found, stack = set(), [key]
    while stack:
        for user in reverse.get(stack.pop(), ()):
            if user not in found:
                found.add(user)
                stack.append(user)
    return found


def _depth_and_reach(graph: Mapping[str, set[str]], refs: set[str]) -> tuple[int, int]:
    """How deep the references go below an expression referencing ``refs``, and how many distinct
    segments it reaches."""
    depth: dict[str, int] = {}

    def depth_of(key: str) -> int:  # iterative: chains can be long
        stack = [key]
        while stack:
            top = stack[-1]
            pending = [d for d in graph.get(top, ()) if d not in depth]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            depth[top] = 1 + max((depth[d] for d in graph.get(top, ())), default=0)
        return depth[key]

    reached, stack = set(refs), list(refs)
    while stack:
        for dep in graph.get(stack.pop(), ()):
            if dep not in reached:
                reached.add(dep)
                stack.append(dep)
    return max((depth_of(r) for r in refs), default=0), len(reached)


def check_definition(*, expression: str, key: str, schema: Schema, known: Mapping[str, Any],
                     graph: Mapping[str, set[str]]) -> ast.Node:
    """The typed tree of a segment's expression, checked against the schema, the keys of the other
    segments (``known``) and their reference graph (cycles, depth). PqlError with every error."""
    try:
        typed = check(expression, schema)
        errors: list[Diagnostic] = []
    except PqlError as error:
        typed, errors = None, list(error.errors)
        try:  # still report reference errors of a tree that parses
            from cdp.dsl import parse
            tree = parse(expression)
        except PqlError:
            raise error from None
    tree = typed if typed is not None else tree
    refs = ast.segment_references(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.SegmentRef) and node.key not in known and node.key != key:
            close = difflib.get_close_matches(node.key, list(known), n=3, cutoff=0.6)
            errors.append(Diagnostic("unknown_segment", f'unknown segment "{node.key}"', node.span,
                                     hint=("did you mean " + ", ".join(f'"{c}"' for c in close) + "?") if close
                                     else "save the segment it refers to first", source=expression))
    others = {k: set(v) for k, v in graph.items() if k != key}
    errors.extend(cycle_errors(expression, tree, others, key))
    if not errors:
        depth, reach = _depth_and_reach(others, refs)
        if depth + 1 > MAX_SEGMENT_DEPTH or reach > MAX_SEGMENT_REFERENCES:
            span = next(n.span for n in ast.walk(tree) if isinstance(n, ast.SegmentRef))
            errors.append(Diagnostic("too_complex", f"the segments this one references go {depth} deep and reach "
                                     f"{reach} segments; the limits are {MAX_SEGMENT_DEPTH - 1} deep and "
                                     f"{MAX_SEGMENT_REFERENCES} segments", span,
                                     hint="flatten the chain of segments", source=expression))
    if errors:
        raise PqlError(sorted(errors, key=lambda d: (d.span.line, d.span.column)))
    return typed


def invalid(error: PqlError) -> Unprocessable:
    """422: ``unknown_segment`` or ``segment_cycle`` when every error is that one reference
    problem, else ``invalid_expression``; ``details.errors`` lists every diagnostic."""
    codes = {d.code for d in error.errors}
    code = codes.pop() if len(codes) == 1 and codes <= {"unknown_segment", "segment_cycle"} else "invalid_expression"
    first = error.errors[0]
    more = f" (and {len(error.errors) - 1} more)" if len(error.errors) > 1 else ""
    label = "invalid expression" if code == "invalid_expression" else code.replace("_", " ")
    return Unprocessable(f"{label}: {first.message}{more}", code=code,
                         details={"errors": [d.to_dict() for d in error.errors]})


# ---- reading ---------------------------------------------------------------------------------


def _row(connection: sa.Connection, sandbox: str, key: str):
    row = connection.execute(sa.select(segments).where(segments.c.sandbox == sandbox, segments.c.key == key)).first()
    if row is None:
        raise NotFound.resource("segment", key, sandbox)
    return row


def _reads(connection: sa.Connection, sandbox: str, rows: list) -> list[SegmentRead]:
    if not rows:
        return []
    pks = [row.pk for row in rows]
    sizes = dict(connection.execute(
        sa.select(memberships.c.segment_pk, sa.func.count()).where(memberships.c.segment_pk.in_(pks),
                                                                    memberships.c.status.in_(MEMBER))
        .group_by(memberships.c.segment_pk)).all())
    # one instant per profile (migration 0018): a profile's scheduled re-evaluation evaluates every
    # timed streaming segment of its sandbox, so each of them counts the sandbox's scheduled profiles
    from cdp.segments.due import timed_streaming_segments

    timed = timed_streaming_segments(connection, sandbox) & set(pks)
    # (its own instant, or a saved segment's: migration 0023; a profile with both counts once)
    both = sa.union(sa.select(segment_due.c.profile_pk).where(segment_due.c.sandbox == sandbox),
                    sa.select(segment_due_saved.c.profile_pk).where(segment_due_saved.c.sandbox == sandbox)).subquery()
    count = connection.execute(sa.select(sa.func.count()).select_from(both)).scalar_one() if timed else 0
    scheduled = {pk: count for pk in timed}
    graph = reference_graph(connection, sandbox)
    users: dict[str, set[str]] = {}
    for source, targets in graph.items():
        for target in targets:
            users.setdefault(target, set()).add(source)
    return [SegmentRead(key=row.key, name=row.name, description=row.description, expression=row.expression,
                        canonical=row.canonical, status=row.status, evaluation=row.evaluation,
                        depends_on=sorted(graph.get(row.key, ())), used_by=sorted(users.get(row.key, ())),
                        created_at=row.created_at, updated_at=row.updated_at, evaluated_at=row.evaluated_at,
                        size=sizes.get(row.pk, 0), scheduled=scheduled.get(row.pk, 0)) for row in rows]


def get_segment(*, connection: sa.Connection, sandbox: str, key: str) -> SegmentRead:
    return _reads(connection, sandbox, [_row(connection, sandbox, key)])[0]


def list_segments(*, connection: sa.Connection, sandbox: str, limit: int, offset: int,
                  status: SegmentStatus | None = None) -> tuple[list[SegmentRead], int]:
    where = [segments.c.sandbox == sandbox]
    if status is not None:
        where.append(segments.c.status == status.value)
    total = connection.execute(sa.select(sa.func.count()).select_from(segments).where(*where)).scalar_one()
    rows = connection.execute(sa.select(segments).where(*where).order_by(segments.c.key).limit(limit)
                              .offset(offset)).all()
    return _reads(connection, sandbox, rows), total


# ---- writing ---------------------------------------------------------------------------------


def _set_dependencies(connection: sa.Connection, sandbox: str, segment_pk: int, refs: set[str]) -> None:
    connection.execute(segment_dependencies.delete().where(segment_dependencies.c.segment_pk == segment_pk))
    if refs:
        pks = connection.execute(sa.select(segments.c.pk).where(segments.c.sandbox == sandbox,
                                                                 segments.c.key.in_(sorted(refs)))).scalars().all()
        connection.execute(segment_dependencies.insert(), [{"segment_pk": segment_pk, "depends_on_pk": pk}
                                                           for pk in pks])


def _evaluate_after_save(connection: sa.Connection, sandbox: str, key: str, schema: Schema,
                         as_of: datetime | None = None) -> None:
    """Evaluate the saved segment (if active), the active segments that depend on it, and the
    active segments those use (so every reference inside the run reads fresh memberships)."""
    graph = reference_graph(connection, sandbox)
    active = connection.execute(sa.select(segments).where(segments.c.sandbox == sandbox,
                                                          segments.c.status == "active")).all()
    keys = batch.run_set({key} | _dependents(graph, key), [r.key for r in active], graph)
    rows = [r for r in active if r.key in keys]
    if not rows:
        return
    known = catalogue(connection, sandbox)

    @contextmanager
    def same_transaction() -> Iterator[sa.Connection]:
        yield connection

    as_of = as_of or _now()
    batch.evaluate_segments(same_transaction, sandbox=sandbox, rows=batch.ordered(rows, graph), schema=schema,
                            catalogue=known, as_of=as_of, source="save")
    from cdp.segments.due import schedule_segment

    for row in rows:
        if row.evaluation == "streaming":
            schedule_segment(connection, sandbox=sandbox, segment_pk=row.pk, key=row.key, catalogue=known,
                             schema=schema, at=as_of)


def create_segment(*, connection: sa.Connection, sandbox: str, spec: SegmentCreate, schema: Schema,
                   as_of: datetime | None = None) -> SegmentRead:
    known = catalogue(connection, sandbox)
    if spec.key in known:
        raise Conflict(f"a segment with key {spec.key!r} exists in sandbox {sandbox!r}", code="conflict",
                       details={"key": spec.key, "sandbox": sandbox})
    try:
        typed = check_definition(expression=spec.expression, key=spec.key, schema=schema, known=known,
                                 graph=reference_graph(connection, sandbox))
    except PqlError as error:
        raise invalid(error) from None
    now = _now()
    pk = connection.execute(segments.insert().values(
        sandbox=sandbox, key=spec.key, name=spec.name, description=spec.description, expression=spec.expression,
        canonical=render(typed), status=spec.status.value, evaluation=spec.evaluation.value, created_at=now,
        updated_at=now).returning(segments.c.pk)).scalar_one()
    _set_dependencies(connection, sandbox, pk, ast.segment_references(typed))
    if spec.status == SegmentStatus.active:
        _evaluate_after_save(connection, sandbox, spec.key, schema, as_of)
    return get_segment(connection=connection, sandbox=sandbox, key=spec.key)


def update_segment(*, connection: sa.Connection, sandbox: str, key: str, spec: SegmentUpdate,
                   schema: Schema, as_of: datetime | None = None) -> SegmentRead:
    row = _row(connection, sandbox, key)
    changes = spec.model_dump(exclude_unset=True)
    for name in ("name", "expression", "status", "evaluation"):
        if name in changes and changes[name] is None:
            raise Unprocessable(f"{name} cannot be null", code="validation_error",
                                details={"errors": [{"loc": ["body", name], "message": "may not be null",
                                                     "type": "null"}]})
    values: dict[str, Any] = {"updated_at": _now()}
    for name in ("name", "description"):
        if name in changes:
            values[name] = changes[name]
    for name in ("status", "evaluation"):
        if name in changes:
            values[name] = changes[name].value if hasattr(changes[name], "value") else changes[name]
    expression_changed = "expression" in changes and changes["expression"] != row.expression
    if expression_changed:
        known = catalogue(connection, sandbox)
        try:
            typed = check_definition(expression=changes["expression"], key=key, schema=schema, known=known,
                                     graph=reference_graph(connection, sandbox))
        except PqlError as error:
            raise invalid(error) from None
        values["expression"] = changes["expression"]
        values["canonical"] = render(typed)
        _set_dependencies(connection, sandbox, row.pk, ast.segment_references(typed))
    connection.execute(segments.update().where(segments.c.pk == row.pk).values(**values))
    activated = values.get("status") == "active" and row.status != "active"
    # a batch segment made streaming: its members are as of its last batch run, and nothing has
    # scheduled its profiles' next instants, so it is evaluated and scheduled as a new one would be
    made_streaming = values.get("evaluation") == "streaming" and row.evaluation != "streaming"
    if expression_changed or activated or made_streaming:
        _evaluate_after_save(connection, sandbox, key, schema, as_of)
    return get_segment(connection=connection, sandbox=sandbox, key=key)


def delete_segment(*, connection: sa.Connection, sandbox: str, key: str) -> None:
    row = _row(connection, sandbox, key)
    users = connection.execute(
        sa.select(segments.c.key).join(segment_dependencies, segment_dependencies.c.segment_pk == segments.c.pk)
        .where(segment_dependencies.c.depends_on_pk == row.pk).order_by(segments.c.key)).scalars().all()
    using = connection.execute(sa.select(activations.c.pk).where(activations.c.segment_pk == row.pk)
                               .order_by(activations.c.pk)).scalars().all()
    if users or using:
        named = [*map(repr, users), *(f"activation {pk}" for pk in using)]
        raise Conflict(f"segment {key!r} is used by {', '.join(named)}; change or delete those first",
                       code="segment_in_use", details={"segments": list(users), "activations": list(using)})
    connection.execute(segments.delete().where(segments.c.pk == row.pk))


# ---- members and history ---------------------------------------------------------------------


def _cursor(profile_pk: int) -> str:
    return base64.urlsafe_b64encode(f"m:{profile_pk}".encode()).decode().rstrip("=")


def _after(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, value = text.split(":", 1)
        if prefix != "m":
            raise ValueError(prefix)
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise Unprocessable("invalid cursor: pass the `next` of the previous page", code="invalid_cursor",
                            details={"cursor": cursor[:64]}) from None


def list_members(*, connection: sa.Connection, sandbox: str, key: str, statuses: list[MembershipStatus],
                 limit: int, cursor: str | None) -> MemberPage:
    """Memberships in profile order, by cursor (stable while memberships change)."""
    row = _row(connection, sandbox, key)
    after = _after(cursor)
    rows = connection.execute(
        sa.select(memberships.c.profile_pk, profiles.c.external_id, memberships.c.status, memberships.c.entered_at,
                  memberships.c.exited_at).join(profiles, profiles.c.pk == memberships.c.profile_pk)
        .where(memberships.c.segment_pk == row.pk, memberships.c.status.in_([s.value for s in statuses]),
               memberships.c.profile_pk > after)
        .order_by(memberships.c.profile_pk).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return MemberPage(items=[MemberRead(profile_id=r.external_id, status=r.status, entered_at=r.entered_at,
                                        exited_at=r.exited_at) for r in rows],
                      next=_cursor(rows[-1].profile_pk) if more else None)


def history(*, connection: sa.Connection, sandbox: str, key: str, start: datetime | None,
            end: datetime | None) -> History:
    """Hourly points in [start, end) (default: all), oldest first."""
    row = _row(connection, sandbox, key)
    where = [segment_history.c.segment_pk == row.pk]
    if start is not None:
        where.append(segment_history.c.at >= hour_of(_utc(start)))
    if end is not None:
        where.append(segment_history.c.at < _utc(end))
    rows = connection.execute(sa.select(segment_history).where(*where).order_by(segment_history.c.at)).all()
    return History(segment=key, points=[HistoryPoint(at=r.at, size=r.size, entered=r.entered, exited=r.exited)
                                        for r in rows])


# ---- one profile -----------------------------------------------------------------------------

_CHECKED: dict[tuple[str, str], ast.Node] = {}
_CHECKED_SIZE = 4096


def _checked(expression: str, schema: Schema) -> ast.Node:
    """check() of a saved expression, cached by text and schema (typed trees are immutable)."""
    key = (expression, schema.fingerprint)
    found = _CHECKED.get(key)
    if found is None:
        found = check(expression, schema)
        if len(_CHECKED) >= _CHECKED_SIZE:
            _CHECKED.pop(next(iter(_CHECKED)))
        _CHECKED[key] = found
    return found



_READS: dict[int, tuple[ast.Node, tuple, frozenset[str] | None]] = {}


def _event_types_read(typed: ast.Node, known: Mapping[str, str], schema: Schema) -> frozenset[str] | None:
    """The event types an expression (and the segments it references) can read; None: any.
    Cached per checked tree of a saved segment (those trees are cached, see :func:`_checked`)."""
    from cdp.segments.reads import reads_of_tree

    catalogue_key = tuple(sorted(known.items()))  # what references read can change
    found = _READS.get(id(typed))
    if found is not None and found[0] is typed and found[1] == catalogue_key:
        return found[2]
    reads = reads_of_tree(typed, known, schema)
    types = None if reads.any_event else reads.event_types
    if len(_READS) >= _CHECKED_SIZE:
        _READS.clear()
    _READS[id(typed)] = (typed, catalogue_key, types)
    return types


# the sandbox's segments version (raised by database triggers on every write of a segment, see
# cdp/storage/models segment_versions), read with what it versions
_VERSION = (sa.select(segment_versions.c.version).where(segment_versions.c.sandbox == segments.c.sandbox)
            .scalar_subquery().label("version"))
_CATALOGUES: weakref.WeakKeyDictionary[sa.Engine, dict[str, tuple[int, dict[str, str]]]] = weakref.WeakKeyDictionary()
_CATALOGUES_LOCK = threading.Lock()


def _kept_catalogue(connection: sa.Connection, sandbox: str, version: int | None) -> dict[str, str]:
    """:func:`catalogue`, kept per database and sandbox while the sandbox's segments version is
    ``version``: evaluating a segment that references others reads one number, not every
    definition of the sandbox, per call."""
    engine = connection.engine
    with _CATALOGUES_LOCK:
        found = _CATALOGUES.get(engine, {}).get(sandbox)
    if version is not None and found is not None and found[0] == version:
        return found[1]
    rows = connection.execute(sa.select(segments.c.key, segments.c.expression, _VERSION)
                              .where(segments.c.sandbox == sandbox)).all()
    known = {r.key: r.expression for r in rows}
    read_version = rows[0].version if rows else None  # read in the same statement as the definitions
    if read_version is not None:
        with _CATALOGUES_LOCK:
            _CATALOGUES.setdefault(engine, {})[sandbox] = (read_version, known)
    return known


def evaluate(*, connection: sa.Connection, sandbox: str, spec: EvaluateRequest, schema: Schema) -> EvaluateResult:
    """Does one profile (a document, or a stored one by identity or id) qualify at as_of?"""
    from cdp.profiles import lookup
    from cdp.profiles.documents import stored_profile

    as_of = _utc(spec.as_of)
    if spec.segment is not None:
        row = connection.execute(sa.select(segments.c.expression, _VERSION).where(
            segments.c.sandbox == sandbox, segments.c.key == spec.segment)).first()
        if row is None:
            raise NotFound.resource("segment", spec.segment, sandbox)
        try:
            typed = _checked(row.expression, schema)
        except PqlError as error:
            raise invalid(error) from None
        # the catalogue only when the segment references others (one query less on the hot path)
        known = _kept_catalogue(connection, sandbox, row.version) if ast.segment_references(typed) else {}
    else:
        known = catalogue(connection, sandbox)
        try:
            typed = check_definition(expression=spec.expression, key="", schema=schema, known=known,
                                     graph=reference_graph(connection, sandbox))
        except PqlError as error:
            raise invalid(error) from None
    profile_id = None
    if spec.profile is not None:
        document = spec.profile
    else:
        if spec.identity is not None:
            pk = lookup.find_by_identity(connection=connection, sandbox=sandbox, namespace=spec.identity.namespace,
                                         value=spec.identity.id)
        else:
            pk = lookup.find_by_id(connection=connection, sandbox=sandbox, profile_id=spec.profile_id)
        document = None
    try:
        if document is not None:
            profile = load_profile(document, schema)
        else:  # from its rows, only the events of the types the expression reads
            profile = stored_profile(connection, pk, schema=schema, event_types=_event_types_read(typed, known, schema))
            profile_id = profile.id
    except ProfileError as exc:
        raise Unprocessable(f"invalid profile: {exc}", code="invalid_profile") from None
    try:
        if spec.segment is not None:  # compiled once per definition (and referenced ones), kept across calls
            predicate = compiled_catalogue({**known, spec.segment: row.expression}, schema).predicate(spec.segment)
        else:
            predicate = compile_predicate(typed, schema, segments=known)
        qualifies = bool(predicate(profile, as_of))
        rows = explain(typed, profile, as_of, schema, segments=known) if spec.explain else None
    except PqlError as error:
        raise invalid(error) from None
    return EvaluateResult(qualifies=qualifies, as_of=as_of, profile_id=profile_id, segment=spec.segment,
                          explain=[ExplainRow(**r) for r in rows] if rows is not None else None)


def parse_statuses(text: str) -> list[MembershipStatus]:
    """``realized,existing`` → statuses; 422 ``validation_error`` naming a wrong one."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    wrong = [n for n in names if n not in MembershipStatus.__members__]
    if wrong or not names:
        raise Unprocessable(f"status: {', '.join(map(repr, wrong)) or 'nothing'} given; use realized, existing, "
                            "exited (comma-separated)", code="validation_error",
                            details={"errors": [{"loc": ["query", "status"], "message": "unknown status",
                                                 "type": "enum"}]})
    return [MembershipStatus(n) for n in dict.fromkeys(names)]
