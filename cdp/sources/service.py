"""Sources as a resource: the catalog, create / read / update / delete, pause and resume, runs
asked for and their history, and the tracking API's intake (:func:`receive`)."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from cdp.observability.metrics import Metrics
from cdp.datasets.service import get_dataset
from cdp.errors import Conflict, NotFound, PayloadTooLarge, Unauthorized, Unprocessable
from cdp.identity.namespaces import IdentityValueError, namespace_codes, normalize
from cdp.identity.settings import get_identity_settings
from cdp.ingestion.mapping import parse_mapping
from cdp.jobs import JobStatus, enqueue
from cdp.schema import Schema
from cdp.sources import MAX_MESSAGE_ISSUES, tracking
from cdp.sources.models import (
    DatabaseConfig, DatasetPair, FileDropConfig, MessageIssue, MessageStats, RunCounts, RunRead, Schedule,
    SourceCreate, SourceFileRead, SourceRead, SourceStatus, SourceType, SourceTypeRead, SourceUpdate, TrackingConfig,
    TrackingMapping,
)
from cdp.storage.models import ingestion_batches, jobs, source_files, source_message_issues, source_runs, sources

ENDPOINT = "/sources/segment"
WRITE_KEY_PREFIX = "wk_"

CONFIGS = {SourceType.tracking_api: TrackingConfig, SourceType.database: DatabaseConfig,
           SourceType.file_drop: FileDropConfig}


def catalog() -> list[SourceTypeRead]:
    return [
        SourceTypeRead(type=SourceType.tracking_api, name="Analytics SDKs (tracking API)",
                       description="Web and app events from any SDK that speaks the Segment spec (Segment's, "
                                   "RudderStack's …): point the SDK's host at cdp and give it the write key.",
                       needs=["a profile dataset (identify, alias) and an event dataset (track, page, screen)",
                              "nothing else: the write key is made at creation and shown once"],
                       config_schema=TrackingConfig.model_json_schema(),
                       mapping_schema=TrackingMapping.model_json_schema()),
        SourceTypeRead(type=SourceType.database, name="Database table",
                       description="A table or a read-only query of a database (PostgreSQL, SQLite, any "
                                   "SQLAlchemy URL with its driver installed), read incrementally by a cursor column.",
                       needs=["the dataset its rows go to (config.target: profile or event)",
                              "config.url (the password is stored apart, never returned) and config.table or "
                              "config.query", "a mapping of columns onto the schema (the batch mapping language)",
                              "optionally config.cursor_column and a schedule"],
                       config_schema=DatabaseConfig.model_json_schema()),
        SourceTypeRead(type=SourceType.file_drop, name="File drop",
                       description="A folder on the server, watched on a schedule: new .csv and .jsonl files are "
                                   "ingested as batches and moved to done/ or failed/ with their job's id.",
                       needs=["the dataset its rows go to (config.target)", "config.directory",
                              "a mapping (required for CSV files)", "a schedule (or runs asked for)"],
                       config_schema=FileDropConfig.model_json_schema()),
    ]


# ---- create, read ------------------------------------------------------------------------------

def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _invalid(message: str, errors: list, code: str = "invalid_source") -> Unprocessable:
    return Unprocessable(message + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""), code=code,
                         details={"errors": errors})


def _checked_config(type_: SourceType, config: dict[str, Any] | None, settings: Any):
    try:
        return CONFIGS[type_].model_validate(config or {})
    except ValidationError as exc:
        errors = [{"loc": ["config", *map(str, e["loc"])], "message": e["msg"], "type": e["type"]}
                  for e in exc.errors(include_url=False, include_context=False, include_input=False)]
        raise _invalid(f"config: {errors[0]['message']} at {'.'.join(errors[0]['loc'])}", errors) from None


def _validate(connection: sa.Connection, sandbox: str, type_: SourceType, datasets: DatasetPair, config, mapping,
              schema: Schema, settings: Any) -> tuple[dict, dict]:
    """(config to show, secrets) after checking everything; 422 with every problem otherwise."""
    from cdp.sources import database, file_drop

    namespaces = list(namespace_codes(connection=connection, sandbox=sandbox))
    kinds = {}
    for kind in ("profile", "event"):
        dataset_id = getattr(datasets, kind)
        if dataset_id is not None:
            dataset = get_dataset(connection=connection, sandbox=sandbox, dataset_id=dataset_id)
            if dataset.kind.value != kind:
                raise _invalid(f"datasets.{kind}: dataset {dataset_id} holds {dataset.kind.value} records",
                               [f"datasets.{kind}: dataset {dataset_id} is a {dataset.kind.value} dataset"])
            kinds[kind] = dataset_id
    if type_ == SourceType.tracking_api:
        if set(kinds) != {"profile", "event"}:
            raise _invalid("a tracking_api source needs both datasets: profile (identify, alias) and event (track, "
                           "page, screen)", ["datasets: profile and event are required"])
        try:
            parsed = TrackingMapping.model_validate(mapping or {})
        except ValidationError as exc:
            errors = [f"mapping.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)]
            raise _invalid(errors[0], errors, "invalid_mapping") from None
        problems = tracking.mapping_problems(parsed.model_dump(exclude_unset=True), schema, namespaces)
        if problems:
            raise _invalid(problems[0], problems, "invalid_mapping")
        return config.model_dump(), {}
    if config.target not in kinds:
        raise _invalid(f"config.target is {config.target!r}: datasets.{config.target} is required",
                       [f"datasets.{config.target} is required"])
    if mapping is not None:
        parse_mapping(mapping, config.target, schema, namespaces=namespaces)  # 422 invalid_mapping, every problem
    if type_ == SourceType.database:
        if mapping is None:
            raise _invalid("a database source needs a mapping (column → field, the batch mapping language)",
                           ["mapping is required"], "invalid_mapping")
        own = settings.resolved_database_url() if hasattr(settings, "resolved_database_url") else None
        return database.split_secrets(config, own)
    file_drop.check_directory(config.directory, settings)
    return config.model_dump(), {}


def create_source(*, connection: sa.Connection, sandbox: str, spec: SourceCreate, schema: Schema, settings: Any,
                  now: datetime | None = None) -> SourceRead:
    now = now or datetime.now(timezone.utc)
    config = _checked_config(spec.type, spec.config, settings)
    shown, hidden = _validate(connection, sandbox, spec.type, spec.datasets, config, spec.mapping, schema, settings)
    if spec.schedule is not None and spec.type == SourceType.tracking_api:
        raise _invalid("a tracking_api source takes messages as they come: it has no schedule",
                       ["schedule: not for tracking_api"])
    if connection.execute(sa.select(sources.c.pk).where(sources.c.sandbox == sandbox, sources.c.name == spec.name)
                          ).first() is not None:
        raise Conflict(f"a source named {spec.name!r} exists in sandbox {sandbox!r}", code="source_exists",
                       details={"name": spec.name, "sandbox": sandbox})
    write_key = WRITE_KEY_PREFIX + secrets.token_urlsafe(32) if spec.type == SourceType.tracking_api else None
    pk = connection.execute(sources.insert().values(
        sandbox=sandbox, name=spec.name, type=spec.type.value, status=SourceStatus.active.value,
        profile_dataset_pk=spec.datasets.profile, event_dataset_pk=spec.datasets.event, config=shown, secrets=hidden,
        mapping=spec.mapping, schedule=spec.schedule.model_dump() if spec.schedule else None,
        write_key_hash=_hash(write_key) if write_key else None, created_at=now, updated_at=now,
    ).returning(sources.c.pk)).scalar_one()
    if write_key:  # a hint to tell keys apart, never enough to use
        shown = {**shown, "write_key_hint": write_key[:7]}
        connection.execute(sources.update().where(sources.c.pk == pk).values(config=shown))
    if spec.schedule is not None:
        _schedule(connection, pk, sandbox, spec.schedule, now)
    read = get_source(connection=connection, sandbox=sandbox, source_id=pk)
    return read.model_copy(update={"write_key": write_key})


def _schedule(connection: sa.Connection, pk: int, sandbox: str, schedule: Schedule | None, now: datetime) -> None:
    """The source's recurring job follows its schedule (none: no recurring job)."""
    from cdp.sources.jobs import SCHEDULE_KIND

    row = connection.execute(sa.select(jobs.c.pk, jobs.c.status).where(jobs.c.kind == SCHEDULE_KIND.name,
                                                                       jobs.c.key == str(pk))).first()
    if schedule is None:
        if row is not None and row.status == JobStatus.running.value:  # ends after this run
            connection.execute(jobs.update().where(jobs.c.pk == row.pk).values(interval_seconds=None))
        elif row is not None:
            connection.execute(jobs.delete().where(jobs.c.pk == row.pk))
        return
    every = timedelta(minutes=schedule.every_minutes)
    if row is not None and row.status in (JobStatus.queued.value, JobStatus.running.value):
        values = {"interval_seconds": every.total_seconds()}
        if row.status == JobStatus.queued.value:
            values["run_at"] = now + every
        connection.execute(jobs.update().where(jobs.c.pk == row.pk).values(**values))
        return
    if row is not None:
        connection.execute(jobs.delete().where(jobs.c.pk == row.pk))
    enqueue(connection, kind=SCHEDULE_KIND, payload={"source_id": pk}, sandbox=sandbox, key=str(pk),
            run_at=now + every, every=every, now=now)


def _row(connection: sa.Connection, sandbox: str, source_id: int):
    row = connection.execute(sa.select(sources).where(sources.c.pk == source_id, sources.c.sandbox == sandbox)
                             ).first()
    if row is None:
        raise NotFound.resource("source", source_id, sandbox)
    return row


def _read(connection: sa.Connection, row) -> SourceRead:
    from cdp.sources.jobs import SCHEDULE_KIND

    config = dict(row.config)
    hint = config.pop("write_key_hint", None)
    if row.type == SourceType.database.value:
        config["password_set"] = bool((row.secrets or {}).get("password"))
    last = connection.execute(sa.select(source_runs.c.pk).where(source_runs.c.source_pk == row.pk)
                              .order_by(source_runs.c.pk.desc()).limit(1)).scalar_one_or_none()
    next_run = connection.execute(sa.select(jobs.c.run_at).where(
        jobs.c.kind == SCHEDULE_KIND.name, jobs.c.key == str(row.pk), jobs.c.status == JobStatus.queued.value)
    ).scalar_one_or_none()
    tracking_api = row.type == SourceType.tracking_api.value
    return SourceRead(
        id=row.pk, name=row.name, type=SourceType(row.type), status=SourceStatus(row.status),
        datasets=DatasetPair(profile=row.profile_dataset_pk, event=row.event_dataset_pk), config=config,
        mapping=row.mapping, schedule=Schedule(**row.schedule) if row.schedule else None,
        endpoint=ENDPOINT if tracking_api else None, write_key_hint=hint,
        messages=MessageStats(accepted=row.messages_accepted, rejected=row.messages_rejected,
                              duplicate=row.messages_duplicate, last_message_at=row.last_message_at)
        if tracking_api else None,
        last_run=get_run(connection=connection, sandbox=row.sandbox, source_id=row.pk, run_id=last)
        if last is not None else None,
        next_run_at=next_run if row.status == SourceStatus.active.value else None,
        created_at=row.created_at, updated_at=row.updated_at)


def get_source(*, connection: sa.Connection, sandbox: str, source_id: int) -> SourceRead:
    return _read(connection, _row(connection, sandbox, source_id))


def list_sources(*, connection: sa.Connection, sandbox: str, limit: int, offset: int,
                 type_: SourceType | None = None) -> tuple[list[SourceRead], int]:
    where = [sources.c.sandbox == sandbox]
    if type_ is not None:
        where.append(sources.c.type == type_.value)
    total = connection.execute(sa.select(sa.func.count()).select_from(sources).where(*where)).scalar_one()
    rows = connection.execute(sa.select(sources).where(*where).order_by(sources.c.pk).limit(limit).offset(offset))
    return [_read(connection, row) for row in rows], total


def update_source(*, connection: sa.Connection, sandbox: str, source_id: int, spec: SourceUpdate, schema: Schema,
                  settings: Any) -> SourceRead:
    row = _row(connection, sandbox, source_id)
    changes = spec.model_dump(exclude_unset=True)
    type_ = SourceType(row.type)
    now = datetime.now(timezone.utc)
    values: dict[str, Any] = {"updated_at": now}
    if "name" in changes:
        if changes["name"] is None:
            raise _invalid("name cannot be null", ["name: may not be null"])
        taken = connection.execute(sa.select(sources.c.pk).where(sources.c.sandbox == sandbox, sources.c.name ==
                                                                 changes["name"], sources.c.pk != row.pk)).first()
        if taken is not None:
            raise Conflict(f"a source named {changes['name']!r} exists in sandbox {sandbox!r}", code="source_exists",
                           details={"name": changes["name"], "sandbox": sandbox})
        values["name"] = changes["name"]
    if "config" in changes or "mapping" in changes:
        given = changes.get("config") or {}
        merged = {**{k: v for k, v in row.config.items() if k != "write_key_hint"}, **given}
        if type_ == SourceType.database and "url" not in given and "password" not in given:
            merged["password"] = (row.secrets or {}).get("password")  # kept; a new URL brings its own
        config = _checked_config(type_, merged, settings)
        mapping = changes["mapping"] if "mapping" in changes else row.mapping
        shown, hidden = _validate(connection, sandbox, type_, DatasetPair(profile=row.profile_dataset_pk,
                                                                          event=row.event_dataset_pk),
                                  config, mapping, schema, settings)
        if "write_key_hint" in row.config:
            shown["write_key_hint"] = row.config["write_key_hint"]
        values.update(config=shown, secrets=hidden, mapping=mapping)
    if "schedule" in changes:
        if type_ == SourceType.tracking_api and changes["schedule"] is not None:
            raise _invalid("a tracking_api source has no schedule", ["schedule: not for tracking_api"])
        values["schedule"] = changes["schedule"]
        _schedule(connection, row.pk, sandbox, spec.schedule, now)
    connection.execute(sources.update().where(sources.c.pk == row.pk).values(**values))
    return get_source(connection=connection, sandbox=sandbox, source_id=row.pk)


def set_status(*, connection: sa.Connection, sandbox: str, source_id: int, status: SourceStatus) -> SourceRead:
    """Pause (no scheduled run starts, the tracking API answers 403 ``source_paused``) or resume."""
    row = _row(connection, sandbox, source_id)
    connection.execute(sources.update().where(sources.c.pk == row.pk).values(
        status=status.value, updated_at=datetime.now(timezone.utc)))
    return get_source(connection=connection, sandbox=sandbox, source_id=row.pk)


def delete_source(*, connection: sa.Connection, sandbox: str, source_id: int) -> None:
    from cdp.sources.jobs import RUN_KIND, SCHEDULE_KIND, SETTLE_KIND

    row = _row(connection, sandbox, source_id)
    running = connection.execute(sa.select(source_runs.c.pk).where(
        source_runs.c.source_pk == row.pk, source_runs.c.status.in_(("queued", "running")))).first()
    if running is not None:
        raise Conflict(f"source {source_id} has a run in progress (run {running.pk}); delete it once the run has "
                       f"ended", code="source_busy", details={"run_id": running.pk})
    connection.execute(jobs.delete().where(jobs.c.kind == SCHEDULE_KIND.name, jobs.c.key == str(row.pk),
                                           jobs.c.status != JobStatus.running.value))
    connection.execute(jobs.delete().where(jobs.c.kind.in_((RUN_KIND.name, SETTLE_KIND.name)),
                                           jobs.c.key.like(f"{row.pk}:%"), jobs.c.status == JobStatus.queued.value))
    connection.execute(sources.delete().where(sources.c.pk == row.pk))


# ---- runs --------------------------------------------------------------------------------------

def request_run(*, connection: sa.Connection, sandbox: str, source_id: int, now: datetime | None = None
                ) -> RunRead:
    """A run asked for now (in the caller's transaction: wake the runner after it commits)."""
    from cdp.sources.jobs import RUN_KIND

    now = now or datetime.now(timezone.utc)
    row = _row(connection, sandbox, source_id)
    if row.type == SourceType.tracking_api.value:
        raise Conflict("a tracking_api source takes messages as the SDKs send them; it has no runs",
                       code="source_not_runnable", details={"type": row.type})
    busy = connection.execute(sa.select(source_runs.c.pk).where(
        source_runs.c.source_pk == row.pk, source_runs.c.status.in_(("queued", "running")))).first()
    if busy is not None:
        raise Conflict(f"run {busy.pk} of source {source_id} has not ended yet", code="run_in_progress",
                       details={"run_id": busy.pk})
    run_pk = connection.execute(source_runs.insert().values(
        source_pk=row.pk, trigger="manual", status="queued", rows_read=0, created_at=now
    ).returning(source_runs.c.pk)).scalar_one()
    job_pk = enqueue(connection, kind=RUN_KIND, payload={"source_id": row.pk, "run_id": run_pk}, sandbox=sandbox,
                     key=f"{row.pk}:{run_pk}", now=now)
    connection.execute(source_runs.update().where(source_runs.c.pk == run_pk).values(job_pk=job_pk))
    return get_run(connection=connection, sandbox=sandbox, source_id=row.pk, run_id=run_pk)


_BATCH_STATUS = {"queued": "running", "processing": "running", "succeeded": "succeeded", "failed": "failed"}


def _run(connection: sa.Connection, row) -> RunRead:
    status, counts, message, finished = row.status, RunCounts(), row.message, row.finished_at
    if row.batch_pk is not None:
        batch = connection.execute(sa.select(ingestion_batches).where(ingestion_batches.c.pk == row.batch_pk)).first()
        if batch is not None:
            counts = RunCounts(total_rows=batch.total_rows, accepted_rows=batch.accepted_rows,
                               rejected_rows=batch.rejected_rows, duplicate_rows=batch.duplicate_rows)
            if row.status == "submitted":
                status = _BATCH_STATUS[batch.status]
                finished = batch.finished_at
                if batch.message:
                    message = f"{row.message}; {batch.message}" if row.message else batch.message
    elif row.status == "submitted":
        status = "running"
    files = []
    last_file_end = None
    for f in connection.execute(sa.select(source_files).where(source_files.c.run_pk == row.pk)
                                .order_by(source_files.c.pk)):
        files.append(SourceFileRead(name=f.name, status=f.status, batch_id=f.batch_pk, job_id=f.job_pk,
                                    moved_to=f.moved_to, message=f.message))
        if f.finished_at is not None and (last_file_end is None or f.finished_at > last_file_end):
            last_file_end = f.finished_at
        batch = connection.execute(sa.select(ingestion_batches).where(ingestion_batches.c.pk == f.batch_pk)
                                   ).first() if f.batch_pk else None
        if batch is not None:
            counts.total_rows += batch.total_rows
            counts.accepted_rows += batch.accepted_rows
            counts.rejected_rows += batch.rejected_rows
            counts.duplicate_rows += batch.duplicate_rows
    if row.status == "submitted" and files:
        pending = [f for f in files if f.status == "ingesting"]
        status = "running" if pending else ("failed" if any(f.status == "failed" for f in files) else "succeeded")
        finished = finished or last_file_end
    return RunRead(id=row.pk, source_id=row.source_pk, trigger=row.trigger, status=status, job_id=row.job_pk,
                   batch_id=row.batch_pk, cursor_from=row.cursor_from, cursor_to=row.cursor_to,
                   rows_read=row.rows_read, counts=counts, files=files, message=message,
                   created_at=row.created_at, started_at=row.started_at,
                   finished_at=finished if status in ("succeeded", "failed", "skipped") else None)


def get_run(*, connection: sa.Connection, sandbox: str, source_id: int, run_id: int) -> RunRead:
    _row(connection, sandbox, source_id)
    row = connection.execute(sa.select(source_runs).where(source_runs.c.pk == run_id,
                                                          source_runs.c.source_pk == source_id)).first()
    if row is None:
        raise NotFound.resource("run", run_id, sandbox)
    return _run(connection, row)


def list_runs(*, connection: sa.Connection, sandbox: str, source_id: int, limit: int, offset: int
              ) -> tuple[list[RunRead], int]:
    _row(connection, sandbox, source_id)
    where = source_runs.c.source_pk == source_id
    total = connection.execute(sa.select(sa.func.count()).select_from(source_runs).where(where)).scalar_one()
    rows = connection.execute(sa.select(source_runs).where(where).order_by(source_runs.c.pk.desc())
                              .limit(limit).offset(offset))
    return [_run(connection, row) for row in rows], total


# ---- the tracking API's intake --------------------------------------------------------------------

def authenticate_write_key(connection: sa.Connection, write_key: str | None):
    """The tracking source of a write key; 401 otherwise (nothing is stored)."""
    if not write_key:
        raise Unauthorized("a write key is needed: HTTP basic auth with the key as user name (as the SDKs send it)",
                           code="unauthorized", headers={"WWW-Authenticate": 'Basic realm="cdp"'})
    row = connection.execute(sa.select(sources).where(sources.c.write_key_hash == _hash(write_key),
                                                      sources.c.type == SourceType.tracking_api.value)).first()
    if row is None:
        raise Unauthorized("unknown write key", code="unauthorized", headers={"WWW-Authenticate": 'Basic realm="cdp"'})
    return row


def parse_body(raw: bytes) -> Any:
    if len(raw) > tracking.MAX_BATCH_BYTES:
        raise PayloadTooLarge(f"the request holds {len(raw):,} bytes; at most {tracking.MAX_BATCH_BYTES:,} per batch "
                              f"(the SDKs' limit)", code="batch_too_large",
                              details={"bytes": len(raw), "limit": tracking.MAX_BATCH_BYTES})
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unprocessable(f"the body is not JSON: {str(exc)[:200]}", code="invalid_json") from None


def receive(*, connection: sa.Connection, source, body: Any, type_: str | None,
            schema: Schema, metrics: Metrics | None, received_at: datetime | None = None) -> dict:
    """Store the messages of one request of the tracking API (``type_``: the endpoint's message
    type; None for ``/v1/batch``). Each message is answered on its own and its outcome kept;
    what is wrong with the request as a whole is an error."""
    from cdp.ingestion.service import ingest_records

    received_at = received_at or datetime.now(timezone.utc)
    if source.status != SourceStatus.active.value:
        from cdp.errors import Forbidden
        raise Forbidden(f"source {source.pk} ({source.name!r}) is paused; resume it to take messages again",
                        code="source_paused", details={"source_id": source.pk})
    if not isinstance(body, dict):
        raise Unprocessable("the body must be a JSON object", code="invalid_payload")
    if type_ is None:
        messages = body.get("batch")
        if not isinstance(messages, list):
            raise Unprocessable("a batch is {\"batch\": [messages]}", code="invalid_payload")
    else:
        messages = [body]
    rules = tracking.rules_of(source.mapping or {}, source.config or {}, schema)
    translated = [tracking.translate(m, type_=type_, batch_sent_at=body.get("sentAt") if type_ is None else None,
                                     received_at=received_at, rules=rules) for m in messages]
    _refuse_aliases_across_a_unique_namespace(connection, source.sandbox, translated, rules)
    outcome: dict[int, tuple[str, list[dict]]] = {}  # index → (status, errors)
    for kind, dataset_pk in (("profile", source.profile_dataset_pk), ("event", source.event_dataset_pk)):
        items = [(i, t) for i, t in enumerate(translated) if t.kind == kind and not t.errors]
        for start in range(0, len(items), 1000):
            chunk = items[start:start + 1000]
            answer = ingest_records(connection=connection, sandbox=source.sandbox, dataset_id=dataset_pk,
                                    body={"records": [t.record for _, t in chunk]}, schema=schema, metrics=metrics)
            for (index, _), result in zip(chunk, answer.results):
                outcome[index] = (result.status.value, [{"path": f"record.{e.path}" if e.path else "record",
                                                         "message": e.message} for e in result.errors])
    counts = {"accepted": 0, "rejected": 0, "duplicate": 0}
    issues = []
    request_id = uuid.uuid4().hex
    for index, t in enumerate(translated):
        if t.errors:
            status, errors = "rejected", t.errors
        elif t.kind is None:  # an event mapped to nothing on purpose
            status, errors = "accepted", []
        else:
            status, errors = outcome[index]
        counts[status] += 1
        if status == "rejected" or t.warnings:
            raw = json.dumps(messages[index], separators=(",", ":"), default=str, ensure_ascii=False)
            encoded = raw.encode()
            kept = encoded[:tracking.RAW_KEPT_BYTES].decode("utf-8", "ignore")
            issues.append({"source_pk": source.pk, "received_at": received_at, "request_id": request_id,
                           "message_index": index, "message_id": t.message_id, "type": t.type,
                           "level": "error" if status == "rejected" else "warning",
                           "errors": errors + t.warnings if status == "rejected" else t.warnings,
                           "raw": kept, "raw_bytes": len(encoded)})
    if issues:
        connection.execute(source_message_issues.insert(), issues)
        _prune_issues(connection, source.pk)
    connection.execute(sources.update().where(sources.c.pk == source.pk).values(
        messages_accepted=sources.c.messages_accepted + counts["accepted"],
        messages_rejected=sources.c.messages_rejected + counts["rejected"],
        messages_duplicate=sources.c.messages_duplicate + counts["duplicate"], last_message_at=received_at))
    if metrics is not None:
        for status, count in counts.items():
            if count:
                metrics.source_messages(source.sandbox, str(source.pk), status, count)
    return {"request_id": request_id, **counts}


def _refuse_aliases_across_a_unique_namespace(connection: sa.Connection, sandbox: str,
                                              translated: list[tracking.Translated], rules: tracking.Rules) -> None:
    """An alias whose ``userId`` and ``previousId`` are two identities of one unique namespace
    (by default two ``crm_id`` identities) cannot link them: the linking rules keep one identity of
    a unique namespace per graph, and ingestion would reject the record as two identities in one.
    It is rejected here in the alias's own words: the profiles stay apart, and which setting would
    let aliases merge them."""
    aliases = [t for t in translated if t.type == "alias" and t.kind == "profile" and not t.errors]
    if not aliases or rules.user_ns != rules.previous_ns:
        return
    namespace = rules.user_ns
    if namespace not in get_identity_settings(connection=connection, sandbox=sandbox).unique_namespaces:
        return
    for t in aliases:
        try:
            values = {normalize(namespace, i["id"]) for i in t.record["identities"] if i["namespace"] == namespace}
        except IdentityValueError:
            continue  # ingestion says what is wrong with it
        if len(values) > 1:
            t.errors.append(tracking.alias_refused(namespace))


def _prune_issues(connection: sa.Connection, source_pk: int) -> None:
    c = source_message_issues.c
    cutoff = connection.execute(sa.select(c.pk).where(c.source_pk == source_pk).order_by(c.pk.desc())
                                .offset(MAX_MESSAGE_ISSUES).limit(1)).scalar_one_or_none()
    if cutoff is not None:
        connection.execute(source_message_issues.delete().where(c.source_pk == source_pk, c.pk <= cutoff))


def message_issues(*, connection: sa.Connection, sandbox: str, source_id: int, limit: int, offset: int,
                   level: str | None = None) -> tuple[list[MessageIssue], int]:
    _row(connection, sandbox, source_id)
    c = source_message_issues.c
    where = [c.source_pk == source_id] + ([c.level == level] if level else [])
    total = connection.execute(sa.select(sa.func.count()).select_from(source_message_issues).where(*where)
                               ).scalar_one()
    rows = connection.execute(sa.select(source_message_issues).where(*where).order_by(c.pk.desc())
                              .limit(limit).offset(offset))
    return [MessageIssue(id=r.pk, received_at=r.received_at, request_id=r.request_id, index=r.message_index,
                         message_id=r.message_id, type=r.type, level=r.level, errors=list(r.errors), raw=r.raw,
                         raw_bytes=r.raw_bytes) for r in rows], total
