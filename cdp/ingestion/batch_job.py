"""A batch file as a job of kind ``ingestion.batch`` (cdp/jobs): the handler that processes it.

The handler reads the stored file once, as a stream of rows, and never holds the rows — or the
file — in memory: the valid rows are spooled to a temporary file (cdp/ingestion/staging.py), the
rejected rows' numbers and errors kept (spooled to a temporary file past a few MiB).

1. *validate* — every row is read, mapped and validated against the schema in force; the valid
   ones are spooled, the rejected ones counted with their reasons. Over the error threshold (a
   fraction of the rows), the batch fails here and nothing is applied.
2. *apply* — the spooled rows are applied in ONE transaction (nothing is read or validated again),
   which also records the outcome (the batch's status, counts and per-row errors, and its job's
   end): loaded into temporary staging tables, the rows that are people of their own written
   set-wise from them, the others through the Writer in file order (cdp/ingestion/staging.py).
   Rows the writer refuses (an identity its namespace does not accept, too many events …) count
   as rejected too (the file is read again for their raw rows only); over the threshold the
   transaction is rolled back and the batch fails — nothing of it is applied.

Events already ingested into the dataset (by id) are counted as duplicates, not errors, so
re-uploading a file changes nothing. While the job runs, the batch's ``message`` says which pass
it is in, and the job's progress how many rows were read.

A batch job is tried once (``max_attempts=1``): a batch fails for reasons in its data or the
schema, which a person fixes before ``POST /v1/batches/{id}/retry``; and when its server stops
(killed, shut down) the batch is marked failed — nothing of it was applied, since the outcome is
written in the applying transaction and fenced by the job's attempt — so that a person decides
to run it again. The runner's hook (:func:`_on_failure`) writes that message.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa

import cdp.ingestion as limits
from cdp.observability.metrics import Metrics
from cdp.errors import CdpError, Unprocessable
from cdp.identity.namespaces import namespace_codes
from cdp.ingestion.compiled_rows import compile_csv_rows
from cdp.ingestion.compiled_validation import compiled_validator
from cdp.ingestion.mapping import Rule, column_of, compile_rows, parse_mapping
from cdp.ingestion.models import BatchStatus, RecordResult, RecordStatus
from cdp.ingestion.readers import Row, csv_records, csv_row, iter_rows, open_stored_file
from cdp.ingestion.writer import Writer
from cdp.ingestion.staging import Spool, apply_staged
from cdp.ingestion.validation import ValidRecord
from cdp.jobs import Cause, Failure, Job, JobContext, JobKind
from cdp.schema_registry.service import get_schema
from cdp.storage.database import write_transaction
from cdp.storage.models import datasets, ingestion_batches, ingestion_errors, jobs

BATCH_KIND = "ingestion.batch"
_CHECK_EVERY_ROWS = 256  # a worker looks for a stop request (and reports progress) this often
_ERRORS_PER_INSERT = 2000
_ERRORS_IN_MEMORY_BYTES = 8 * 1024 * 1024  # past this, a batch's errors wait in a temporary file
_REASON_MAX_CHARS = 1000


def job_of_batch() -> sa.ColumnElement[bool]:
    """The join condition of a batch and its job (the job's key is the batch's id)."""
    return sa.and_(jobs.c.kind == BATCH_KIND, jobs.c.key == sa.cast(ingestion_batches.c.pk, sa.String(200)))


def batch_job_kind(metrics: Metrics | None) -> JobKind:
    return JobKind(name=BATCH_KIND, run=lambda context: _BatchRun(context, metrics).run(), max_attempts=1,
                   on_failure=_on_failure, description="a batch file: validated, then applied in one transaction")


def interrupted_message(batch_id: int, reason: str) -> str:
    return (f"the server stopped while processing this batch ({reason}); nothing of it was applied (its rows are "
            f"applied in one transaction); POST /v1/batches/{batch_id}/retry runs it again")


def _on_failure(connection: sa.Connection, job: Job, failure: Failure) -> None:
    """The batch of a job that ended without its handler: failed, saying why (in the transaction
    that ends the job)."""
    batch_id = job.payload["batch_id"]
    if failure.cause in (Cause.worker_gone, Cause.shutdown):
        message = interrupted_message(batch_id, failure.detail)
    elif failure.cause == Cause.cancelled:
        message = "the batch was cancelled; nothing of it was applied"
    else:
        message = "internal error while processing the batch; the server log has the details; nothing was applied"
    c = ingestion_batches.c
    connection.execute(ingestion_batches.update().where(
        c.pk == batch_id, c.status.in_([BatchStatus.queued.value, BatchStatus.processing.value])
    ).values(status=BatchStatus.failed.value, message=message, finished_at=datetime.now(timezone.utc)))
    connection.execute(ingestion_errors.delete().where(ingestion_errors.c.batch_pk == batch_id))


class _Rejected(Exception):
    """Raised out of the applying transaction to roll it back (threshold passed)."""


def _visible_nul(text: str) -> str:
    """NUL as U+2400 (␀), the symbol for it: shown where the row had one, storable everywhere."""
    return text.replace("\x00", "\u2400")


@dataclass
class _Outcome:
    total: int = 0
    rejected: set[int] = field(default_factory=set)  # row numbers
    accepted: int = 0
    duplicates: int = 0
    # the errors, as JSON lines: in memory up to a few MiB, then in a temporary file
    spool: tempfile.SpooledTemporaryFile = field(
        default_factory=lambda: tempfile.SpooledTemporaryFile(max_size=_ERRORS_IN_MEMORY_BYTES, mode="w+b"))

    def reject(self, row: Row, problems: list[tuple[str | None, str]]) -> None:
        self.rejected.add(row.number)
        raw, raw_bytes, truncated = row.raw()
        raw = _visible_nul(raw)  # the error rows are text in the database, which cannot hold a NUL
        for column, reason in problems:
            column, reason = column and _visible_nul(column), _visible_nul(reason)
            if len(reason) > _REASON_MAX_CHARS:  # a reason may quote a value of the row: the raw row has it
                reason = reason[:_REASON_MAX_CHARS - 1] + "…"
            self.spool.write(json.dumps({"row_number": row.number, "column": column and column[:512],
                                         "reason": reason, "raw": raw, "raw_truncated": truncated,
                                         "raw_bytes": raw_bytes}, ensure_ascii=False).encode() + b"\n")

    def errors(self) -> Iterator[list[dict]]:
        """The errors in chunks of _ERRORS_PER_INSERT."""
        self.spool.seek(0)
        chunk: list[dict] = []
        for line in self.spool:
            chunk.append(json.loads(line))
            if len(chunk) == _ERRORS_PER_INSERT:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
        self.spool.seek(0, 2)

    def counts(self) -> dict:
        return {"total_rows": self.total, "accepted_rows": self.accepted, "rejected_rows": len(self.rejected),
                "duplicate_rows": self.duplicates}




class _BatchRun:
    """One attempt at one batch, in a worker thread of the runner."""

    def __init__(self, context: JobContext, metrics: Metrics | None):
        self.context = context
        self.engine = context.engine
        self.metrics = metrics
        self.batch_id: int = context.payload["batch_id"]

    def _start(self) -> None:

        c = ingestion_batches.c
        with write_transaction(self.engine) as connection:
            self.context.hold(connection)
            connection.execute(ingestion_batches.update().where(c.pk == self.batch_id).values(
                status=BatchStatus.processing.value, started_at=datetime.now(timezone.utc), finished_at=None,
                message="validating the rows"))
            self.batch = connection.execute(sa.select(ingestion_batches).where(c.pk == self.batch_id)).one()
            self.kind = connection.execute(sa.select(datasets.c.kind)
                                           .where(datasets.c.pk == self.batch.dataset_pk)).scalar_one()
            self.schema = get_schema(connection=connection, sandbox=self.batch.sandbox)
            self.namespaces = namespace_codes(connection=connection, sandbox=self.batch.sandbox)

    def _message(self, message: str) -> None:
        with write_transaction(self.engine) as connection:
            self.context.hold(connection)
            connection.execute(ingestion_batches.update().where(ingestion_batches.c.pk == self.batch_id)
                               .values(message=message))

    def fail(self, message: str, outcome: _Outcome | None = None) -> None:
        """The batch ends failed, in a transaction of its own (nothing of it applied)."""
        with write_transaction(self.engine) as connection:
            self._record(connection, BatchStatus.failed, message, outcome)
            self.context.fail(connection, message)

    def _record(self, connection: sa.Connection, status: BatchStatus, message: str | None,
                outcome: _Outcome | None) -> None:
        counts = outcome.counts() if outcome is not None else {}
        connection.execute(ingestion_batches.update().where(ingestion_batches.c.pk == self.batch_id).values(
            status=status.value, message=message, finished_at=datetime.now(timezone.utc), **counts))
        connection.execute(ingestion_errors.delete().where(ingestion_errors.c.batch_pk == self.batch_id))
        if outcome is not None:
            for chunk in outcome.errors():
                connection.execute(ingestion_errors.insert(), [{**e, "batch_pk": self.batch_id} for e in chunk])

    def _check(self, row: Row, rules: list[Rule] | None, mapped, target_columns: dict
               ) -> tuple[ValidRecord | None, list[tuple[str | None, str]]]:
        """``mapped``: the rules compiled (mapping.compile_rows)."""
        if row.problem is not None:
            return None, [(None, row.problem)]
        if rules is None:
            record, problems, bound = row.values, [], None
        else:
            record, problems, bound = mapped(row.values)
        if problems:
            return None, problems
        valid, errors = self.validator(record, bound)
        if valid is None:
            return None, [(column_of(e["path"], target_columns, rules is None), e["message"]) for e in errors]
        return valid, []

    def _rows(self) -> Iterator[Row]:
        with open_stored_file(self.engine, self.batch_id) as stream:
            yield from iter_rows(stream, self.batch.format)

    def run(self) -> None:
        self._start()
        batch = self.batch
        try:
            rules = None if batch.mapping is None else parse_mapping(batch.mapping, self.kind, self.schema,
                                                                     namespaces=self.namespaces)
        except CdpError as exc:  # the schema or the namespaces changed since the upload
            self.fail(f"{exc.message}; nothing was applied")
            return
        fields = dict(self.schema.profile) if self.kind == "profile" else self.schema.all_event_fields()
        target_columns = {r.target: r.column for r in rules or []}
        spool = Spool()
        try:
            self._validate_and_apply(rules, fields, target_columns, spool)
        finally:
            spool.close()

    def _validate_and_apply(self, rules: list[Rule] | None, fields: dict, target_columns: dict, spool: Spool) -> None:
        batch = self.batch
        threshold = batch.error_threshold
        outcome = _Outcome()
        mapped = None if rules is None else compile_rows(rules, self.kind, fields)
        self.validator = compiled_validator(self.schema, self.kind, self.namespaces)  # validation.validate_record's
        # 1. validate every row; keep the counts and the rejected rows, spool the valid ones
        try:
            if batch.format == "csv" and rules is not None:
                read = self._validate_csv(rules, mapped, target_columns, spool, outcome)
            else:
                read = self._validate_rows(rules, mapped, target_columns, spool, outcome)
        except Unprocessable as exc:
            self.fail(f"{exc.message}; nothing was applied", outcome)
            return
        if not read:
            return
        total = outcome.total
        if total == 0:
            self.fail("the file holds no rows", outcome)
            return
        if len(outcome.rejected) > threshold * total:
            self._over_threshold(outcome)
            return
        # 2. apply the valid rows in ONE transaction, with the outcome
        valid_rows = total - len(outcome.rejected)
        self._message(f"applying {valid_rows:,} valid rows of {total:,} in one transaction (nothing is visible "
                      f"until it commits)")
        self.context.progress(0, total, "applying the valid rows", flush=True)
        try:
            with self.context.exclusive(), write_transaction(self.engine) as connection:
                self._apply(connection, outcome, spool)
        except _Rejected:
            self._over_threshold(outcome)
            return
        if self.metrics is not None:
            if outcome.accepted:
                self.metrics.ingested(batch.sandbox, self.kind, outcome.accepted)
            if outcome.rejected:
                self.metrics.rejected(batch.sandbox, self.kind, len(outcome.rejected))

    def _counted(self, outcome: _Outcome) -> bool:
        """One more row read: False (the batch failed) past MAX_BATCH_ROWS."""
        outcome.total += 1
        if outcome.total % _CHECK_EVERY_ROWS == 0 or outcome.total > limits.MAX_BATCH_ROWS:
            return self._checkpoint(outcome)
        return True

    def _checkpoint(self, outcome: _Outcome) -> bool:
        """False (the batch failed) past MAX_BATCH_ROWS; else a stop request looked for and progress
        reported (every _CHECK_EVERY_ROWS rows)."""
        if outcome.total > limits.MAX_BATCH_ROWS:
            self.fail(f"more than {limits.MAX_BATCH_ROWS:,} rows; at most {limits.MAX_BATCH_ROWS:,} per file "
                      f"(split it into several batches); nothing was applied", _Outcome(total=outcome.total))
            return False
        self.context.checkpoint()
        self.context.progress(outcome.total, None, "validating the rows")
        return True

    def _take(self, row: Row, rules: list[Rule] | None, mapped, target_columns: dict, spool: Spool,
              outcome: _Outcome) -> None:
        valid, problems = self._check(row, rules, mapped, target_columns)
        if valid is None:
            outcome.reject(row, problems)
        else:
            spool.add(row.number, valid)

    def _validate_rows(self, rules: list[Rule] | None, mapped, target_columns: dict, spool: Spool,
                       outcome: _Outcome) -> bool:
        """The validate pass, row by row; False when the batch failed."""
        for row in self._rows():
            if not self._counted(outcome):
                return False
            self._take(row, rules, mapped, target_columns, spool, outcome)
        return True

    def _validate_csv(self, rules: list[Rule], mapped, target_columns: dict, spool: Spool, outcome: _Outcome
                      ) -> bool:
        """The validate pass of a mapped CSV file: a row the function compiled for the header
        (compiled_rows.py) answers is spooled as it gives it; any other goes the general way
        (:meth:`_check`), which words its errors."""
        with open_stored_file(self.engine, self.batch_id) as stream:
            records = csv_records(stream)
            _, header, _ = next(records)
            staged = compile_csv_rows(header, rules, self.kind, self.schema, self.namespaces)
            add, every, most = spool.add_staged, _CHECK_EVERY_ROWS, limits.MAX_BATCH_ROWS
            for number, cells, too_long in records:
                outcome.total += 1
                if (outcome.total % every == 0 or outcome.total > most) and not self._checkpoint(outcome):
                    return False
                if staged is not None and too_long is None:
                    try:
                        row = staged(number, cells)
                    except Exception:  # noqa: BLE001 - any problem at all: the general way answers
                        row = None
                    if row is not None:
                        add(row)
                        continue
                self._take(csv_row(number, header, cells, too_long), rules, mapped, target_columns, spool, outcome)
        return True

    def _apply(self, connection: sa.Connection, outcome: _Outcome, spool: Spool) -> None:
        batch, total, threshold = self.batch, outcome.total, self.batch.error_threshold
        now = datetime.now(timezone.utc)  # one instant for the batch: it is one transaction
        writer = Writer(connection, sandbox=batch.sandbox, dataset_pk=batch.dataset_pk, kind=self.kind,
                        batch_pk=self.batch_id, clock=lambda: now)
        valid = spool.count

        def checkpoint(done: int) -> None:
            self.context.checkpoint()
            self.context.progress(done, valid, "applying the valid rows")

        refused: dict[int, list[tuple[str | None, str]]] = {}  # row number → what the writer said

        def report(number: int, result: RecordResult) -> None:
            if result.status == RecordStatus.rejected:
                refused[number] = [(None, e.message) for e in result.errors]
            elif result.status == RecordStatus.duplicate:
                outcome.duplicates += 1
            else:
                outcome.accepted += 1

        staged = apply_staged(connection, writer, spool, kind=self.kind, dataset_pk=batch.dataset_pk,
                              batch_pk=self.batch_id, now=now, checkpoint=checkpoint, report=report)
        outcome.accepted += staged.fresh
        if refused:  # the error rows quote the rows as read: the file is read again for those only
            for row in self._rows():
                if row.number in refused:
                    outcome.reject(row, refused.pop(row.number))
                    if not refused:
                        break
        if len(outcome.rejected) > threshold * total:
            raise _Rejected
        note = None
        if outcome.rejected:
            note = (f"{len(outcome.rejected)} of {total} rows rejected (within the threshold of {threshold:.2%}); "
                    f"see the errors")
        self._record(connection, BatchStatus.succeeded, note, outcome)
        self.context.progress(total, total, "applied")
        self.context.succeed(connection, note)

    def _over_threshold(self, outcome: _Outcome) -> None:
        total, rejected = outcome.total, len(outcome.rejected)
        outcome.accepted = outcome.duplicates = 0
        threshold = self.batch.error_threshold
        self.fail(f"{rejected} of {total} rows rejected ({rejected / total:.2%}), over the error threshold of "
                  f"{threshold:.2%}: nothing of the batch was applied; fix the rows and upload again", outcome)
        if self.metrics is not None:
            self.metrics.rejected(self.batch.sandbox, self.kind, total)
