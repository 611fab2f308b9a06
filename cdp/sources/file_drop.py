"""A file drop: a folder on the server, watched on a schedule.

Each run (scheduled or asked for) looks at the folder's files — ``*.csv``, ``*.jsonl`` and
``*.ndjson``, not in sub-folders, not hidden, last modified at least ``min_age_seconds`` ago (a
file still being written is left for the next run) — and submits every new one as a batch
(cdp/ingestion) with the source's mapping and error threshold. A file is picked up once per name
and content (SHA-256): the same file met again is skipped and the run says so. When its batch
has ended the file moves to ``done/`` (batch succeeded) or ``failed/`` (it failed, or the file
could not be submitted: not UTF-8, too large, a mapping that does not fit), renamed
``<job id>-<name>`` (the batch's job; ``nojob-<name>`` when none was made). The move is done by a
follow-up job a moment after the batch ends (cdp/sources/jobs.py), and by every run.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from cdp.errors import CdpError, Unprocessable
from cdp.storage.database import write_transaction
from cdp.storage.models import ingestion_batches, jobs, source_files, source_runs, sources

SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
DONE, FAILED = "done", "failed"


def check_directory(directory: str, settings) -> None:
    path = Path(directory)
    problems = []
    if not path.is_absolute():
        problems.append(f"config.directory: {directory!r} is not an absolute path")
    elif not path.is_dir():
        problems.append(f"config.directory: {directory!r} is not a folder the server can see")
    elif not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        problems.append(f"config.directory: the server may not read and write {directory!r}")
    root = getattr(settings, "file_drop_root", None)
    if root is not None and not problems:
        resolved, allowed = path.resolve(), Path(root).resolve()
        if resolved != allowed and allowed not in resolved.parents:
            problems.append(f"config.directory: must be under {str(allowed)!r} (CDP_FILE_DROP_ROOT)")
    if problems:
        raise Unprocessable(problems[0], code="invalid_source", details={"errors": problems})


def candidates(directory: Path, min_age_seconds: float) -> list[Path]:
    now = time.time()
    found = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or not entry.is_file() or entry.suffix.lower() not in SUFFIXES:
            continue
        if now - entry.stat().st_mtime < min_age_seconds:
            continue
        found.append(entry)
    return found


def _target(directory: Path, folder: str, name: str, job_pk: int | None) -> Path:
    (directory / folder).mkdir(exist_ok=True)
    target = directory / folder / f"{job_pk if job_pk is not None else 'nojob'}-{name}"
    counter = 1
    while target.exists():  # never overwrite: a second drop of the same name in the same job cannot happen,
        counter += 1        # but a person may have put a file there
        target = directory / folder / f"{job_pk if job_pk is not None else 'nojob'}-{counter}-{name}"
    return target


def _move(directory: Path, name: str, folder: str, job_pk: int | None) -> str | None:
    source = directory / name
    if not source.exists():
        return None
    target = _target(directory, folder, name, job_pk)
    os.replace(source, target)
    return str(target)


def settle(engine: sa.Engine, *, source_pk: int) -> int:
    """Move the files whose batch has ended; how many are still being ingested."""
    f = source_files.c
    with engine.connect() as connection:
        source = connection.execute(sa.select(sources).where(sources.c.pk == source_pk)).first()
        if source is None:
            return 0
        rows = connection.execute(sa.select(f.pk, f.name, f.job_pk, ingestion_batches.c.status,
                                            ingestion_batches.c.message).select_from(
            source_files.outerjoin(ingestion_batches, ingestion_batches.c.pk == f.batch_pk))
            .where(f.source_pk == source_pk, f.status == "ingesting")).all()
    directory = Path(source.config["directory"])
    pending = 0
    for row in rows:
        if row.status in ("queued", "processing"):
            pending += 1
            continue
        ok = row.status == "succeeded"
        try:
            moved = _move(directory, row.name, DONE if ok else FAILED, row.job_pk)
            note = None if moved else "the file was no longer in the folder when its batch ended"
        except OSError as exc:
            moved, note = None, f"could not move the file: {exc}"
        message = "; ".join(m for m in (row.message if not ok or row.message else None, note) if m) or None
        with write_transaction(engine) as connection:
            connection.execute(source_files.update().where(f.pk == row.pk, f.status == "ingesting").values(
                status="done" if ok else "failed", moved_to=moved, message=message,
                finished_at=datetime.now(timezone.utc)))
    return pending


def scan(context, source, run_pk: int) -> None:
    """One run of a file drop: settle what has ended, submit the new files."""
    from cdp.ingestion.batches import create_batch
    from cdp.ingestion.uploads import file_limit, read_upload
    from cdp.schema_registry.service import get_schema
    from cdp.sources.jobs import follow_up

    engine = context.engine
    settle(engine, source_pk=source.pk)
    config = source.config
    directory = Path(config["directory"])
    if not directory.is_dir():
        raise Unprocessable(f"the folder {str(directory)!r} is not there (or the server may not see it)",
                            code="source_unavailable")
    dataset_pk = source.profile_dataset_pk if config.get("target", "profile") == "profile" else source.event_dataset_pk
    limit, reason = file_limit(engine.dialect.name, 1024 ** 3)
    submitted, skipped, failed = 0, [], 0
    for path in candidates(directory, float(config.get("min_age_seconds", 5))):
        context.checkpoint()
        name = path.name
        now = datetime.now(timezone.utc)
        batch_pk = job_pk = None
        problem = None
        with open(path, "rb") as stream, write_transaction(engine) as connection:
            try:
                upload = read_upload(stream, filename=name, limit=limit, limit_reason=reason)
            except CdpError as exc:
                upload, problem = None, exc.message
            if upload is not None:
                seen = connection.execute(sa.select(source_files.c.job_pk, source_files.c.status).where(
                    source_files.c.source_pk == source.pk, source_files.c.name == name,
                    source_files.c.sha256 == upload.sha256)).first()
                if seen is not None:
                    skipped.append(f"{name} (already picked up, job {seen.job_pk}, {seen.status})")
                    continue
                try:
                    with connection.begin_nested():
                        schema = get_schema(connection=connection, sandbox=source.sandbox)
                        batch_pk = create_batch(
                            connection=connection, sandbox=source.sandbox, dataset_id=dataset_pk, upload=upload,
                            format_=SUFFIXES[path.suffix.lower()],
                            mapping=json.dumps(source.mapping) if source.mapping else None,
                            error_threshold=config.get("error_threshold", 0.05), schema=schema)
                except CdpError as exc:
                    problem = exc.message
                if batch_pk is not None:
                    job_pk = connection.execute(sa.select(jobs.c.pk).where(
                        jobs.c.kind == "ingestion.batch", jobs.c.key == str(batch_pk))).scalar_one()
            sha = upload.sha256 if upload is not None else "unreadable-" + str(path.stat().st_size)
            connection.execute(source_files.insert().values(
                source_pk=source.pk, run_pk=run_pk, name=name[:512], sha256=sha, size=path.stat().st_size,
                batch_pk=batch_pk, job_pk=job_pk, status="ingesting" if problem is None else "failed",
                message=problem, created_at=now, finished_at=None if problem is None else now))
        if problem is not None:
            failed += 1
            moved = _move(directory, name, FAILED, None)
            with write_transaction(engine) as connection:
                connection.execute(source_files.update().where(
                    source_files.c.source_pk == source.pk, source_files.c.run_pk == run_pk,
                    source_files.c.name == name[:512]).values(moved_to=moved))
        else:
            submitted += 1
    parts = [f"{submitted} file(s) submitted"]
    if failed:
        parts.append(f"{failed} refused (moved to failed/)")
    if skipped:
        parts.append("skipped: " + ", ".join(skipped[:20]))
    with write_transaction(engine) as connection:
        connection.execute(source_runs.update().where(source_runs.c.pk == run_pk).values(
            status="submitted" if submitted or failed else "succeeded", rows_read=0, message="; ".join(parts),
            finished_at=None if submitted else datetime.now(timezone.utc)))
        if submitted:
            follow_up(connection, source_pk=source.pk, run_pk=run_pk, round_=0, sandbox=source.sandbox)
        context.succeed(connection, "; ".join(parts))
