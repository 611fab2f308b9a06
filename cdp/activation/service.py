"""Destinations and activations: create, read, change, delete, and the policy evaluation that
guards every activation.

An activation is allowed only when, for every marketing action of its destination, no enabled
policy is violated by the labels of the fields in play — what the segment reads (through the
segments it references) and the attributes it exports (cdp/governance, with the lineage of each
label). Creating or changing one that would violate is refused (409 ``policy_violation`` with the
violations): nothing is stored, nothing is sent. :func:`recheck` evaluates the active activations
again after labels, policies, a segment or a destination change, and pauses those that now
violate, with the reason; they send nothing more until a person resumes them (which evaluates
again).

Delivery (cdp/activation/delivery.py) and file export (cdp/activation/export.py) read what is
stored here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath

import sqlalchemy as sa

from cdp.activation import export
from cdp.activation.models import (ActivationCreate, ActivationRead, ActivationStatus, ActivationUpdate,
                                   DestinationCreate, DestinationRead, DestinationType, DestinationUpdate,
                                   ExportRequested, FileConfig,
                                   WebhookConfig, WebhookConfigRead)
from cdp.errors import Conflict, NotFound, Unprocessable
from cdp.governance import service as governance
from cdp.governance.models import Violation
from cdp.identity.namespaces import namespace_codes
from cdp.schema_registry.service import get_schema
from cdp.storage.models import activation_members, activations, deliveries, destinations, membership_changes, segments

log = logging.getLogger("cdp.activation")
DEFAULT_DURATION = timedelta(days=90)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# ---- destinations ----------------------------------------------------------------------------


def _invalid(message: str, **details) -> Unprocessable:
    return Unprocessable(message, code="invalid_destination", details=details)


def _check_destination(connection: sa.Connection, sandbox: str, *, marketing_actions: Sequence[str] | None,
                       consent: str | None, config: WebhookConfig | FileConfig | None) -> None:
    if marketing_actions is not None:
        known = {a.key for a in governance.list_marketing_actions(connection=connection, sandbox=sandbox,
                                                                   limit=10_000, offset=0)[0]}
        unknown = [key for key in marketing_actions if key not in known]
        if unknown:
            raise Unprocessable(f"unknown marketing action {unknown[0]!r} (GET /v1/marketing-actions lists them)",
                                code="unknown_marketing_action", details={"marketing_actions": unknown})
    if consent is not None:
        schema = get_schema(connection=connection, sandbox=sandbox)
        if consent not in schema.profile:
            raise _invalid(f"consent: {consent!r} is not a profile attribute of the schema in force", consent=consent)
    if isinstance(config, FileConfig):
        parts = PurePosixPath(config.directory).parts
        if ".." in parts or config.directory.startswith("/"):
            raise _invalid("config.directory: a folder under the export root, without `..`",
                           directory=config.directory)


def _destination_read(connection: sa.Connection, row) -> DestinationRead:
    count = connection.execute(sa.select(sa.func.count()).select_from(activations)
                               .where(activations.c.destination_pk == row.pk)).scalar_one()
    config = (WebhookConfigRead(url=row.config["url"], secret_set=bool(row.secret))
              if row.type == DestinationType.webhook else FileConfig(**row.config))
    return DestinationRead(id=row.pk, name=row.name, type=row.type, marketing_actions=row.marketing_actions,
                           consent=row.consent, config=config, activations=count, created_at=row.created_at,
                           updated_at=row.updated_at)


def destination_row(connection: sa.Connection, sandbox: str, destination_id: int):
    row = connection.execute(sa.select(destinations).where(destinations.c.pk == destination_id,
                                                           destinations.c.sandbox == sandbox)).first()
    if row is None:
        raise NotFound.resource("destination", destination_id, sandbox)
    return row


def _config_values(config: WebhookConfig | FileConfig) -> dict:
    if isinstance(config, WebhookConfig):
        return {"config": {"url": config.url}, "secret": config.secret}
    return {"config": config.model_dump(mode="json"), "secret": None}


def _name_taken(connection: sa.Connection, sandbox: str, name: str, exclude: int | None = None) -> None:
    query = sa.select(destinations.c.pk).where(destinations.c.sandbox == sandbox, destinations.c.name == name)
    if exclude is not None:
        query = query.where(destinations.c.pk != exclude)
    if connection.execute(query).first() is not None:
        raise Conflict(f"a destination named {name!r} exists already", code="conflict", details={"name": name})


def create_destination(*, connection: sa.Connection, sandbox: str, spec: DestinationCreate,
                       now: datetime | None = None) -> DestinationRead:
    now = now or _now()
    _check_destination(connection, sandbox, marketing_actions=spec.marketing_actions, consent=spec.consent,
                       config=spec.config)
    _name_taken(connection, sandbox, spec.name)
    pk = connection.execute(destinations.insert().values(
        sandbox=sandbox, name=spec.name, type=spec.type, marketing_actions=list(dict.fromkeys(
            spec.marketing_actions)), consent=spec.consent, created_at=now, updated_at=now,
        **_config_values(spec.config)).returning(destinations.c.pk)).scalar_one()
    if isinstance(spec.config, FileConfig):
        export.set_schedule(connection, sandbox=sandbox, destination_pk=pk, every_minutes=spec.config.every_minutes,
                            now=now)
    return get_destination(connection=connection, sandbox=sandbox, destination_id=pk)


def get_destination(*, connection: sa.Connection, sandbox: str, destination_id: int) -> DestinationRead:
    return _destination_read(connection, destination_row(connection, sandbox, destination_id))


def list_destinations(*, connection: sa.Connection, sandbox: str, limit: int,
                      offset: int) -> tuple[list[DestinationRead], int]:
    total = connection.execute(sa.select(sa.func.count()).select_from(destinations)
                               .where(destinations.c.sandbox == sandbox)).scalar_one()
    rows = connection.execute(sa.select(destinations).where(destinations.c.sandbox == sandbox)
                              .order_by(destinations.c.pk).limit(limit).offset(offset)).all()
    return [_destination_read(connection, row) for row in rows], total


def update_destination(*, connection: sa.Connection, sandbox: str, destination_id: int, spec: DestinationUpdate,
                       now: datetime | None = None) -> DestinationRead:
    """A change of marketing actions or consent evaluates the destination's activations again."""
    now = now or _now()
    row = destination_row(connection, sandbox, destination_id)
    given = spec.model_fields_set
    if "config" in given and spec.config is not None:
        expected = WebhookConfig if row.type == DestinationType.webhook else FileConfig
        if not isinstance(spec.config, expected):
            raise _invalid(f"a {row.type} destination takes a {expected.__name__} config", type=row.type)
    _check_destination(connection, sandbox, marketing_actions=spec.marketing_actions if "marketing_actions" in given
                       else None, consent=spec.consent if "consent" in given else None,
                       config=spec.config if "config" in given else None)
    values: dict = {"updated_at": now}
    if "name" in given and spec.name is not None:
        _name_taken(connection, sandbox, spec.name, exclude=row.pk)
        values["name"] = spec.name
    if "marketing_actions" in given and spec.marketing_actions is not None:
        values["marketing_actions"] = list(dict.fromkeys(spec.marketing_actions))
    if "consent" in given:
        values["consent"] = spec.consent
    if "config" in given and spec.config is not None:
        values.update(_config_values(spec.config))
    connection.execute(destinations.update().where(destinations.c.pk == row.pk).values(**values))
    if isinstance(spec.config, FileConfig) and "config" in given:
        export.set_schedule(connection, sandbox=sandbox, destination_pk=row.pk, every_minutes=spec.config.every_minutes,
                            now=now)
    if "marketing_actions" in values:
        recheck(connection=connection, sandbox=sandbox, now=now, destination_pk=row.pk)
    return get_destination(connection=connection, sandbox=sandbox, destination_id=row.pk)


def request_export(*, connection: sa.Connection, sandbox: str, destination_id: int,
                   now: datetime | None = None) -> ExportRequested:
    """An export of a file destination, as a job (409 ``not_exportable`` for a webhook)."""
    row = destination_row(connection, sandbox, destination_id)
    if row.type != DestinationType.file:
        raise Conflict(f"destination {row.pk} is a webhook: its changes are sent as they happen",
                       code="not_exportable", details={"destination": row.pk})
    job = export.request_export(connection, sandbox=sandbox, destination_pk=row.pk, now=now or _now())
    return ExportRequested(destination=row.pk, job_id=job)


def delete_destination(*, connection: sa.Connection, sandbox: str, destination_id: int) -> None:
    row = destination_row(connection, sandbox, destination_id)
    using = connection.execute(sa.select(activations.c.pk).where(activations.c.destination_pk == row.pk)
                               .order_by(activations.c.pk)).scalars().all()
    if using:
        raise Conflict(f"destination {row.pk} is used by activation(s) {', '.join(map(str, using))}; delete those "
                       "first", code="destination_in_use", details={"activations": list(using)})
    export.set_schedule(connection, sandbox=sandbox, destination_pk=row.pk, every_minutes=None, now=_now())
    connection.execute(destinations.delete().where(destinations.c.pk == row.pk))


# ---- the policy evaluation ---------------------------------------------------------------------


def violations_of(connection: sa.Connection, sandbox: str, *, segment: str, marketing_actions: Sequence[str],
                  attributes: Sequence[str]) -> list[Violation]:
    """Every violation of an activation of ``segment`` exporting ``attributes`` to a destination
    performing ``marketing_actions`` (422 ``invalid_attributes`` for unknown attributes)."""
    schema = get_schema(connection=connection, sandbox=sandbox)
    decisions = governance.evaluate(connection=connection, sandbox=sandbox, schema=schema,
                                    marketing_actions=list(marketing_actions), segment=segment,
                                    attributes=list(attributes))
    return [violation for decision in decisions for violation in decision.violations]


def _refuse(found: list[Violation]) -> Conflict:
    names = sorted({f"{v.policy.name!r} ({v.marketing_action})" for v in found})
    return Conflict(f"the activation would violate {', '.join(names)}: nothing was created or sent",
                    code="policy_violation", details={"violations": [v.model_dump(mode="json") for v in found]})


def _check_identities(connection: sa.Connection, sandbox: str, namespaces: Sequence[str]) -> None:
    known = set(namespace_codes(connection=connection, sandbox=sandbox))
    unknown = [n for n in namespaces if n not in known]
    if unknown:
        raise Unprocessable(f"unknown identity namespace {unknown[0]!r} (GET /v1/namespaces lists them)",
                            code="invalid_identities", details={"identities": unknown})


# ---- activations -------------------------------------------------------------------------------


def _status(row, now: datetime) -> ActivationStatus:
    if row.status == "active" and now >= row.end_at:
        return ActivationStatus.ended
    return ActivationStatus(row.status)


def _activation_query():
    return (sa.select(activations, segments.c.key.label("segment_key"), destinations.c.name.label("destination_name"))
            .join(segments, segments.c.pk == activations.c.segment_pk)
            .join(destinations, destinations.c.pk == activations.c.destination_pk))


def _counts(connection: sa.Connection, row) -> dict[str, int]:
    """Members the destination holds and members left out: what ``activation_members`` says —
    except for a file destination in full mode, where each file is the whole audience: its last
    file's rows and exclusions."""
    config = connection.execute(sa.select(destinations.c.type, destinations.c.config)
                                .where(destinations.c.pk == row.destination_pk)).one()
    if config.type == "file" and config.config.get("mode") == "full":
        last = connection.execute(sa.select(deliveries.c.change_count, deliveries.c.excluded_no_consent)
                                  .where(deliveries.c.activation_pk == row.pk).order_by(deliveries.c.pk.desc())
                                  .limit(1)).first()
        return {"exported": last.change_count, "excluded": last.excluded_no_consent} if last else {}
    return dict(connection.execute(
        sa.select(activation_members.c.state, sa.func.count()).where(activation_members.c.activation_pk == row.pk)
        .group_by(activation_members.c.state)).all())


def _activation_read(connection: sa.Connection, row, now: datetime) -> ActivationRead:
    counts = _counts(connection, row)
    return ActivationRead(
        id=row.pk, segment=row.segment_key, destination=row.destination_pk, destination_name=row.destination_name,
        attributes=row.attributes, identities=row.identities, start=row.start_at, end=row.end_at,
        status=_status(row, now), paused_reason=row.paused_reason,
        violations=[Violation(**v) for v in row.violations or []], members_exported=counts.get("exported", 0),
        excluded_no_consent=counts.get("excluded", 0), created_at=row.created_at, updated_at=row.updated_at)


def activation_row(connection: sa.Connection, sandbox: str, activation_id: int):
    row = connection.execute(_activation_query().where(activations.c.pk == activation_id,
                                                       activations.c.sandbox == sandbox)).first()
    if row is None:
        raise NotFound.resource("activation", activation_id, sandbox)
    return row


def create_activation(*, connection: sa.Connection, sandbox: str, spec: ActivationCreate,
                      now: datetime | None = None) -> ActivationRead:
    """Evaluates the policies for every marketing action of the destination first: a violation
    is 409 ``policy_violation`` and nothing is stored. The segment's members at that moment are
    sent first (a backfill), then every change."""
    now = now or _now()
    destination = destination_row(connection, sandbox, spec.destination)
    segment = connection.execute(sa.select(segments.c.pk).where(segments.c.sandbox == sandbox,
                                                                segments.c.key == spec.segment)).first()
    if segment is None:
        raise NotFound.resource("segment", spec.segment, sandbox)
    _check_identities(connection, sandbox, spec.identities)
    start = _utc(spec.start) if spec.start is not None else now
    end = _utc(spec.end) if spec.end is not None else start + DEFAULT_DURATION
    if end <= start:
        raise Unprocessable("end must be after start", code="invalid_activation",
                            details={"start": start.isoformat(), "end": end.isoformat()})
    found = violations_of(connection, sandbox, segment=spec.segment, marketing_actions=destination.marketing_actions,
                          attributes=spec.attributes)
    if found:
        raise _refuse(found)
    if connection.execute(sa.select(activations.c.pk).where(activations.c.segment_pk == segment.pk,
                                                            activations.c.destination_pk == destination.pk)).first():
        raise Conflict(f"segment {spec.segment!r} is already activated to destination {destination.pk}",
                       code="conflict", details={"segment": spec.segment, "destination": destination.pk})
    cursor = connection.execute(sa.select(sa.func.coalesce(sa.func.max(membership_changes.c.pk), 0))).scalar_one()
    pk = connection.execute(activations.insert().values(
        sandbox=sandbox, segment_pk=segment.pk, destination_pk=destination.pk,
        attributes=list(dict.fromkeys(spec.attributes)), identities=list(dict.fromkeys(spec.identities)),
        start_at=start, end_at=end, status="active", cursor=cursor, backfill_after=0, created_at=now,
        updated_at=now).returning(activations.c.pk)).scalar_one()
    log.info("activation %s in sandbox %r: segment %r to destination %s", pk, sandbox, spec.segment, destination.pk)
    return _activation_read(connection, activation_row(connection, sandbox, pk), now)


def get_activation(*, connection: sa.Connection, sandbox: str, activation_id: int,
                   now: datetime | None = None) -> ActivationRead:
    return _activation_read(connection, activation_row(connection, sandbox, activation_id), now or _now())


def list_activations(*, connection: sa.Connection, sandbox: str, limit: int, offset: int, segment: str | None = None,
                     destination: int | None = None, now: datetime | None = None) -> tuple[list[ActivationRead], int]:
    conditions = [activations.c.sandbox == sandbox]
    if segment is not None:
        conditions.append(segments.c.key == segment)
    if destination is not None:
        conditions.append(activations.c.destination_pk == destination)
    total = connection.execute(sa.select(sa.func.count()).select_from(
        activations.join(segments, segments.c.pk == activations.c.segment_pk)).where(*conditions)).scalar_one()
    rows = connection.execute(_activation_query().where(*conditions).order_by(activations.c.pk)
                              .limit(limit).offset(offset)).all()
    return [_activation_read(connection, row, now or _now()) for row in rows], total


def update_activation(*, connection: sa.Connection, sandbox: str, activation_id: int, spec: ActivationUpdate,
                      now: datetime | None = None) -> ActivationRead:
    """A new mapping, or resuming, evaluates the policies again (409 ``policy_violation``:
    nothing changes)."""
    now = now or _now()
    row = activation_row(connection, sandbox, activation_id)
    given = {name for name in spec.model_fields_set if getattr(spec, name) is not None}
    attributes = list(dict.fromkeys(spec.attributes)) if "attributes" in given else row.attributes
    values: dict = {"updated_at": now, "attributes": attributes}
    if "identities" in given:
        _check_identities(connection, sandbox, spec.identities)
        values["identities"] = list(dict.fromkeys(spec.identities))
    if "end" in given:
        if _utc(spec.end) <= row.start_at:
            raise Unprocessable("end must be after start", code="invalid_activation",
                                details={"start": row.start_at.isoformat(), "end": _utc(spec.end).isoformat()})
        values["end_at"] = _utc(spec.end)
    target = spec.status if "status" in given else row.status
    if target == "active" and ("attributes" in given or row.status != "active"):
        destination = destination_row(connection, sandbox, row.destination_pk)
        found = violations_of(connection, sandbox, segment=row.segment_key,
                              marketing_actions=destination.marketing_actions, attributes=attributes)
        if found:
            raise _refuse(found)
    if target == "paused" and row.status != "paused":
        values.update(status="paused", paused_reason="paused by request", violations=None)
    elif target == "active" and row.status != "active":
        values.update(status="active", paused_reason=None, violations=None)
    connection.execute(activations.update().where(activations.c.pk == row.pk).values(**values))
    return get_activation(connection=connection, sandbox=sandbox, activation_id=row.pk, now=now)


def delete_activation(*, connection: sa.Connection, sandbox: str, activation_id: int) -> None:
    """Stops sending; its delivery log stays with the destination."""
    row = activation_row(connection, sandbox, activation_id)
    connection.execute(activations.delete().where(activations.c.pk == row.pk))


def recheck(*, connection: sa.Connection, sandbox: str, now: datetime | None = None,
            destination_pk: int | None = None, segment_pk: int | None = None) -> list[int]:
    """Evaluate the active activations of the sandbox again (those of one destination or
    segment when given); pause each that now violates a policy, with the reason and the
    violations. Returns the ids paused. A segment that no longer checks pauses its activations
    too: what it selects cannot be known."""
    now = now or _now()
    query = _activation_query().where(activations.c.sandbox == sandbox, activations.c.status == "active")
    if destination_pk is not None:
        query = query.where(activations.c.destination_pk == destination_pk)
    if segment_pk is not None:
        query = query.where(activations.c.segment_pk == segment_pk)
    paused = []
    for row in connection.execute(query.order_by(activations.c.pk)).all():
        actions = connection.execute(sa.select(destinations.c.marketing_actions)
                                     .where(destinations.c.pk == row.destination_pk)).scalar_one()
        try:
            found = violations_of(connection, sandbox, segment=row.segment_key, marketing_actions=actions,
                                  attributes=row.attributes)
        except (Unprocessable, NotFound) as error:
            reason, found = f"the activation can no longer be evaluated: {error.message}", []
        else:
            if not found:
                continue
            names = ", ".join(sorted({f"{v.policy.name!r} ({v.marketing_action})" for v in found}))
            reason = f"violates {names}"
        connection.execute(activations.update().where(activations.c.pk == row.pk).values(
            status="paused", paused_reason=reason, violations=[v.model_dump(mode="json") for v in found],
            updated_at=now))
        log.warning("activation %s of sandbox %r paused: %s", row.pk, sandbox, reason)
        paused.append(row.pk)
    return paused
