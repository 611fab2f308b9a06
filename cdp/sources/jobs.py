"""The sources' background work (cdp/jobs):

* ``sources.run`` — one run asked for (``POST /v1/sources/{id}/run``), keyed ``<source>:<run>``;
* ``sources.schedule`` — a scheduled source's recurring job, keyed by the source's id: each time
  it is due it makes a run (none while the source is paused);
* ``sources.settle`` — a file drop's follow-up: moves the files whose batch has ended to done/ or
  failed/, and comes back a little later while some are still being ingested.

A run never raises out of its handler: whatever goes wrong is the run's failure, with its reason
(a recurring job must not stop recurring because the source database was down once).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from cdp.jobs import Cause, Failure, Job, JobContext, JobKind, enqueue
from cdp.storage.database import write_transaction
from cdp.storage.models import ingestion_batches, source_runs, sources

log = logging.getLogger("cdp.sources")


def _run_job(context: JobContext) -> None:
    execute(context, run_pk=context.payload["run_id"])


def _schedule_job(context: JobContext) -> None:
    now = datetime.now(timezone.utc)
    with write_transaction(context.engine) as connection:
        row = connection.execute(sa.select(sources.c.status).where(sources.c.pk == context.payload["source_id"])
                                 ).first()
        if row is None:  # deleted while this job ran: it ends here, not recurring
            context.fail(connection, "the source was deleted")
            return
        if row.status != "active":
            context.succeed(connection, "the source is paused")
            return
        run_pk = connection.execute(source_runs.insert().values(
            source_pk=context.payload["source_id"], trigger="schedule", status="queued", rows_read=0, created_at=now,
            job_pk=context.job_id).returning(source_runs.c.pk)).scalar_one()
    execute(context, run_pk=run_pk)


def _settle_job(context: JobContext) -> None:
    from cdp.sources.file_drop import settle

    payload = context.payload
    pending = settle(context.engine, source_pk=payload["source_id"])
    with write_transaction(context.engine) as connection:
        if pending:
            follow_up(connection, source_pk=payload["source_id"], run_pk=payload["run_id"], round_=payload["round"] + 1,
                      sandbox=context.job.sandbox)
        context.succeed(connection, f"{pending} file(s) still being ingested" if pending else "settled")


def follow_up(connection: sa.Connection, *, source_pk: int, run_pk: int, round_: int, sandbox: str | None) -> None:
    """A settle job soon (sooner at first: a small file is ingested in a second or two)."""
    now = datetime.now(timezone.utc)
    wait = min(1.0 * 1.5 ** round_, 30.0)
    enqueue(connection, kind=SETTLE_KIND, payload={"source_id": source_pk, "run_id": run_pk, "round": round_},
            sandbox=sandbox, key=f"{source_pk}:settle:{run_pk}:{round_}", run_at=now + timedelta(seconds=wait), now=now)


def _run_failed(connection: sa.Connection, job: Job, failure: Failure) -> None:
    reason = {Cause.worker_gone: "the server stopped during the run", Cause.shutdown: "the server shut down during "
              "the run", Cause.cancelled: "the run was cancelled"}.get(failure.cause, "internal error during the run; "
                                                                                    "the server log has the details")
    connection.execute(source_runs.update().where(source_runs.c.pk == job.payload["run_id"],
                                                  source_runs.c.status.in_(("queued", "running"))).values(
        status="failed", message=f"{reason}; nothing of it was submitted", finished_at=datetime.now(timezone.utc)))


RUN_KIND = JobKind("sources.run", run=_run_job, max_attempts=1, on_failure=_run_failed,
                   description="a run of a database or file-drop source, asked for")
SCHEDULE_KIND = JobKind("sources.schedule", run=_schedule_job, max_attempts=5, backoff_seconds=30,
                        description="a scheduled source: a run each time it is due")
SETTLE_KIND = JobKind("sources.settle", run=_settle_job, max_attempts=3, backoff_seconds=5,
                      description="a file drop's files moved to done/ or failed/ once their batch has ended")
KINDS = (RUN_KIND, SCHEDULE_KIND, SETTLE_KIND)


def _busy(connection: sa.Connection, source_pk: int, run_pk: int) -> int | None:
    """Another run of the source that has not ended (running, or its batch not yet applied)."""
    r = source_runs.c
    running = connection.execute(sa.select(r.pk).where(r.source_pk == source_pk, r.pk != run_pk,
                                                       r.status == "running")).first()
    if running is not None:
        return running.pk
    pending = connection.execute(sa.select(r.pk).select_from(source_runs.join(
        ingestion_batches, ingestion_batches.c.pk == r.batch_pk)).where(
        r.source_pk == source_pk, r.pk != run_pk, r.status == "submitted",
        ingestion_batches.c.status.in_(("queued", "processing")))).first()
    return pending.pk if pending is not None else None


def execute(context: JobContext, *, run_pk: int) -> None:
    """Run ``run_pk`` of its source in this job; ends the job (succeeded whatever the run's outcome)."""
    from cdp.sources import database, file_drop

    now = datetime.now(timezone.utc)
    with write_transaction(context.engine) as connection:
        run = connection.execute(sa.select(source_runs).where(source_runs.c.pk == run_pk)).one()
        source = connection.execute(sa.select(sources).where(sources.c.pk == run.source_pk)).one()
        other = _busy(connection, source.pk, run_pk)
        if other is not None:
            connection.execute(source_runs.update().where(source_runs.c.pk == run_pk).values(
                status="skipped", started_at=now, finished_at=now,
                message=f"run {other} of this source has not ended yet; this run read nothing"))
            context.succeed(connection, "skipped")
            return
        connection.execute(source_runs.update().where(source_runs.c.pk == run_pk).values(
            status="running", started_at=now, job_pk=context.job_id))
    try:
        if source.type == "database":
            database_run(context, source, run_pk)
        else:
            file_drop.scan(context, source, run_pk)
    except Exception as exc:  # noqa: BLE001 - the run fails with its reason; the job goes on recurring
        from cdp.errors import CdpError
        from cdp.jobs import JobCancelled, JobLost, JobStopped

        if isinstance(exc, (JobLost, JobStopped, JobCancelled)):
            with write_transaction(context.engine) as connection:
                connection.execute(source_runs.update().where(source_runs.c.pk == run_pk,
                                                              source_runs.c.status == "running").values(
                    status="failed", finished_at=datetime.now(timezone.utc),
                    message="interrupted (the server shut down, or the run was cancelled); nothing of it was "
                            "submitted"))
            raise
        message = exc.message if isinstance(exc, CdpError) else f"internal error: {type(exc).__name__}: {exc}"
        if not isinstance(exc, CdpError):
            log.exception("run %s of source %s failed", run_pk, source.pk)
        with write_transaction(context.engine) as connection:
            connection.execute(source_runs.update().where(source_runs.c.pk == run_pk).values(
                status="failed", message=message[:2000], finished_at=datetime.now(timezone.utc)))
            context.succeed(connection, f"run {run_pk} failed: {message[:500]}")


def last_cursor(connection: sa.Connection, source_pk: int):
    """Where the last successful run ended: the newest run whose batch succeeded (or that found
    nothing new), and its cursor."""
    r = source_runs.c
    row = connection.execute(
        sa.select(r.cursor_to).select_from(source_runs.outerjoin(ingestion_batches,
                                                                 ingestion_batches.c.pk == r.batch_pk))
        .where(r.source_pk == source_pk, sa.or_(
            sa.and_(r.status == "submitted", ingestion_batches.c.status == "succeeded"),
            sa.and_(r.status == "succeeded", r.batch_pk.is_(None))))
        .order_by(r.pk.desc()).limit(1)).first()
    return row.cursor_to if row is not None else None


def database_run(context: JobContext, source, run_pk: int) -> None:
    import json

    from cdp.ingestion.batches import create_batch
    from cdp.ingestion.uploads import read_upload
    from cdp.schema_registry.service import get_schema
    from cdp.sources import database

    with context.engine.connect() as connection:
        after = last_cursor(connection, source.pk)
    extracted = database.extract(source.config, source.secrets or {}, after=database.cursor_value(after),
                                 checkpoint=context.checkpoint)
    context.checkpoint()
    now = datetime.now(timezone.utc)
    with write_transaction(context.engine) as connection:
        values = {"cursor_from": after, "rows_read": extracted.rows}
        if extracted.rows == 0:
            connection.execute(source_runs.update().where(source_runs.c.pk == run_pk).values(
                **values, cursor_to=after, status="succeeded", finished_at=now,
                message="no new rows" if source.config.get("cursor_column") else "the source holds no rows"))
            context.succeed(connection, "no new rows")
            return
        config = source.config
        dataset_pk = source.profile_dataset_pk if config.get("target", "profile") == "profile" \
            else source.event_dataset_pk
        upload = read_upload(extracted.file, filename=f"source-{source.pk}-run-{run_pk}.jsonl", limit=2**62)
        schema = get_schema(connection=connection, sandbox=source.sandbox)
        batch_pk = create_batch(connection=connection, sandbox=source.sandbox, dataset_id=dataset_pk, upload=upload,
                                format_="jsonl", mapping=json.dumps(source.mapping),
                                error_threshold=config.get("error_threshold", 0.05), schema=schema)
        cursor_to = database.cursor_json(extracted.last_cursor) if extracted.last_cursor is not None else after
        connection.execute(source_runs.update().where(source_runs.c.pk == run_pk).values(
            **values, cursor_to=cursor_to, status="submitted", batch_pk=batch_pk,
            message=f"{extracted.rows:,} rows read, submitted as batch {batch_pk}"))
        context.succeed(connection, f"batch {batch_pk}")
