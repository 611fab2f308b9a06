"""A batch file as a job of kind ``ingestion.batch`` (cdp/jobs): the handler that processes it.

The handler reads the stored file once, as a stream of rows, and never holds the rows — or the
file — in memory: the rejected rows' numbers and errors are kept (spooled to a temporary file past
a few MiB), the valid rows handed on a few thousand at a time. Two threads work at once:

* the *reader* (a thread of its own) reads every row, maps and validates it against the schema in
  force, counts the rejected ones with their reasons, and prepares the valid ones for the staging
  tables — into a bounded queue (cdp/ingestion/staging.py's ``Feed``: it waits while the queue is
  full, so memory stays bounded);
* the *applier* (the job's thread) applies them in ONE transaction: it loads each chunk into
  temporary staging tables while the reader prepares the next (the database's work and the
  reader's Python overlap: the driver releases the GIL while it waits); once the last row is
  read, the rows that are people of their own are written set-wise from them, the others through
  the Writer in file order (cdp/ingestion/staging.py). The same transaction records the outcome (the batch's
  status, counts and per-row errors, and its job's end). Rows the writer refuses (an identity its
  namespace does not accept, too many events …) count as rejected too (the file is read again for
  their raw rows only).

When the reader is done over the error threshold (a fraction of the rows: known at the last
row), the transaction is rolled back before the split and writes; past the rows' limit, or when
the reader fails or is stopped, at once — the batch fails and nothing of it is applied. On SQLite
the transaction holds the write lock from the first row read (docs/ingestion.md says what that
costs a file that fails).

Events already ingested into the dataset (by id) are counted as duplicates, not errors, so
re-uploading a file changes nothing. While the job runs, the batch's ``message`` says that it is
applying, and the job's progress how many rows were read (then applied).

A batch job is tried once (``max_attempts=1``): a batch fails for reasons in its data or the
schema, which a person fixes before ``POST /v1/batches/{id}/retry``; and when its server stops
(killed, shut down) the batch is marked failed — nothing of it was applied, since the outcome is
written in the applying transaction and fenced by the job's attempt — so that a person decides
to run it again. The runner's hook (:func:`_on_failure`) writes that message.
"""

from __future__ import annotations

import json
import tempfile
import threading
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
from cdp.ingestion.service import Writer
from cdp.ingestion.staging import Feed, FeedAbandoned, apply_staged
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


class _Failed(Exception):
    """Raised (by the reader, or the applier) out of the applying transaction to roll it back: the
    batch fails with ``message`` (and ``outcome``'s counts and errors, when given)."""

    def __init__(self, message: str, outcome: "_Outcome | None" = None):
        super().__init__(message)
        self.message = message
        self.outcome = outcome


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
        self._validate_and_apply(rules, fields, target_columns)

    def _validate_and_apply(self, rules: list[Rule] | None, fields: dict, target_columns: dict) -> None:
        batch = self.batch
        outcome = _Outcome()
        mapped = None if rules is None else compile_rows(rules, self.kind, fields)
        self.validator = compiled_validator(self.schema, self.kind, self.namespaces)  # validation.validate_record's
        self._message("applying the rows as they are read and validated, in one transaction (nothing is visible "
                      "until it commits)")
        self.context.progress(0, None, "reading, validating and applying the rows", flush=True)

        def read(feed: Feed) -> None:  # the reader's thread: counts and rejected rows in outcome, valid rows fed
            try:
                if batch.format == "csv" and rules is not None:
                    self._validate_csv(rules, mapped, target_columns, feed, outcome)
                else:
                    self._validate_rows(rules, mapped, target_columns, feed, outcome)
            except FeedAbandoned:  # the applier stopped taking rows: it has its reason
                return
            except Unprocessable as exc:
                feed.finish(_Failed(f"{exc.message}; nothing was applied", outcome))
            except BaseException as exc:  # noqa: BLE001 - a stop request, a bug: raised in the applier
                feed.finish(exc)
            else:
                feed.finish()

        try:
            with self.context.exclusive(), write_transaction(self.engine) as connection:
                self._apply(connection, outcome, read)
        except _Rejected:
            self._over_threshold(outcome)
            return
        except _Failed as exc:
            self.fail(exc.message, exc.outcome)
            return
        if self.metrics is not None:
            if outcome.accepted:
                self.metrics.ingested(batch.sandbox, self.kind, outcome.accepted)
            if outcome.rejected:
                self.metrics.rejected(batch.sandbox, self.kind, len(outcome.rejected))

    def _counted(self, outcome: _Outcome) -> None:
        """One more row read (:class:`_Failed` past MAX_BATCH_ROWS)."""
        outcome.total += 1
        if outcome.total % _CHECK_EVERY_ROWS == 0 or outcome.total > limits.MAX_BATCH_ROWS:
            self._checkpoint(outcome)

    def _checkpoint(self, outcome: _Outcome) -> None:
        """:class:`_Failed` past MAX_BATCH_ROWS; else a stop request looked for and progress
        reported (every _CHECK_EVERY_ROWS rows)."""
        if outcome.total > limits.MAX_BATCH_ROWS:
            raise _Failed(f"more than {limits.MAX_BATCH_ROWS:,} rows; at most {limits.MAX_BATCH_ROWS:,} per file "
                          f"(split it into several batches); nothing was applied", _Outcome(total=outcome.total))
        self.context.checkpoint()
        self.context.progress(outcome.total, None, "reading, validating and applying the rows")

    def _take(self, row: Row, rules: list[Rule] | None, mapped, target_columns: dict, spool: Feed,
              outcome: _Outcome) -> None:
        valid, problems = self._check(row, rules, mapped, target_columns)
        if valid is None:
            outcome.reject(row, problems)
        else:
            spool.add(row.number, valid)

    def _validate_rows(self, rules: list[Rule] | None, mapped, target_columns: dict, spool: Feed,
                       outcome: _Outcome) -> None:
        """The validate pass, row by row."""
        for row in self._rows():
            self._counted(outcome)
            self._take(row, rules, mapped, target_columns, spool, outcome)

    def _validate_csv(self, rules: list[Rule], mapped, target_columns: dict, spool: Feed, outcome: _Outcome
                      ) -> None:
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
                if outcome.total % every == 0 or outcome.total > most:
                    self._checkpoint(outcome)
                if staged is not None and too_long is None:
                    try:
                        row = staged(number, cells)
                    except Exception:  # noqa: BLE001 - any problem at all: the general way answers
                        row = None
                    if row is not None:
                        add(row)
                        continue
                self._take(csv_row(number, header, cells, too_long), rules, mapped, target_columns, spool, outcome)

    def _apply(self, connection: sa.Connection, outcome: _Outcome, read) -> None:
        """The applier: starts the reader (``read``, given the Feed) on a thread of its own and
        applies what it feeds; raises out of the transaction when the batch fails."""
        batch, threshold = self.batch, self.batch.error_threshold
        now = datetime.now(timezone.utc)  # one instant for the batch: it is one transaction
        writer = Writer(connection, sandbox=batch.sandbox, dataset_pk=batch.dataset_pk, kind=self.kind,
                        batch_pk=self.batch_id, clock=lambda: now)
        feed = Feed(writer, self.kind, connection.dialect.name)
        reader = threading.Thread(target=read, args=(feed,), name=f"batch-{self.batch_id}-reader", daemon=True)

        def checkpoint(done: int) -> None:
            self.context.checkpoint()
            self.context.progress(done, None, f"applied {done:,} valid rows")

        def read_all(count: int) -> None:  # the reader is done (its last item taken from the queue)
            if outcome.total and len(outcome.rejected) > threshold * outcome.total:
                raise _Rejected  # before the split and writes: nothing more is done in the transaction

        refused: dict[int, list[tuple[str | None, str]]] = {}  # row number → what the writer said

        def report(number: int, result: RecordResult) -> None:
            if result.status == RecordStatus.rejected:
                refused[number] = [(None, e.message) for e in result.errors]
            elif result.status == RecordStatus.duplicate:
                outcome.duplicates += 1
            else:
                outcome.accepted += 1

        reader.start()
        try:
            staged = apply_staged(connection, writer, feed, kind=self.kind, dataset_pk=batch.dataset_pk,
                                  batch_pk=self.batch_id, now=now, checkpoint=checkpoint, read=read_all,
                                  report=report)
        finally:  # the reader stops at its next chunk when the applier stopped taking them
            feed.abandoned.set()
            reader.join()
            feed.close()
        total = outcome.total
        if total == 0:
            raise _Failed("the file holds no rows", outcome)
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
