"""File destinations: an activation's audience written as CSV or JSON Lines into a folder, in full
or incrementally, when asked or on a schedule (job kinds of cdp/jobs).

* ``full`` — every current member of the segment with the destination's consent: one row each
  (``profile_id``, the mapped identities and attributes). Read in pages with the database's
  streaming cursor and written as it is read, so memory stays flat whatever the audience's size.
* ``incremental`` — the entries and exits since the last export (the first export: every member
  as an entry), with consent applied exactly as for a webhook (cdp/activation/changes.py): an
  exit is written only for a profile a previous file held, a consent withdrawn is an exit.

A file is written under a temporary name (``.<name>.tmp``), flushed to disk and renamed into
place — a reader never sees half a file — then its manifest (``<name>.manifest.json``: rows,
left out for want of consent, columns, SHA-256, …) the same way: a consumer waits for the
manifest. Each export is a row of the destination's delivery log. An incremental export moves the
activation's cursor in the transaction that ends after the rename: a crash before that commit
writes the same changes again next time (at least once), never skips them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from cdp.activation.changes import (MEMBER, Change, apply_changes, backfill_page, consent_changes, consented,
                                    identities_of, iso, leaves)
from cdp.activation.outbox import Horizon
from cdp.activation.settings import ActivationSettings
from cdp.jobs import JobContext, JobKind, enqueue
from cdp.profiles.documents import api_value
from cdp.schema_registry.service import get_schema
from cdp.storage.database import write_transaction
from cdp.storage.models import (activations, deliveries, destinations, jobs, membership_changes, memberships, profiles,
                                segments)

log = logging.getLogger("cdp.activation")
PAGE = 10_000


class _Writer:
    """Rows into a temporary file, renamed into place by :meth:`publish`."""

    def __init__(self, folder: Path, name: str, fmt: str, columns: list[str]):
        self.folder, self.name, self.format, self.columns = folder, name, fmt, columns
        self.temporary = folder / f".{name}.tmp"
        self._file = open(self.temporary, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in publish
        self._digest = hashlib.sha256()
        self.rows = 0
        if fmt == "csv":
            self._buffer = io.StringIO()
            self._csv = csv.writer(self._buffer)
            self._csv.writerow(columns)
            self._flush_csv()

    def _flush_csv(self) -> None:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        self._write(text)

    def _write(self, text: str) -> None:
        self._file.write(text)
        self._digest.update(text.encode())

    def row(self, change: dict) -> None:
        self.rows += 1
        if self.format == "jsonl":
            self._write(json.dumps(change, separators=(",", ":"), ensure_ascii=False) + "\n")
            return
        flat = {"profile_id": change["profile_id"], "status": change.get("status"), "at": change.get("at")}
        flat.update({f"identity.{ns}": "|".join(ids) for ns, ids in change["identities"].items()})
        flat.update({path: json.dumps(v) if isinstance(v, (list, dict)) else v
                     for path, v in change["attributes"].items()})
        self._csv.writerow(["" if flat.get(c) is None else flat.get(c) for c in self.columns])
        if self.rows % 1000 == 0:
            self._flush_csv()

    def publish(self, manifest: dict) -> Path:
        if self.format == "csv":
            self._flush_csv()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = self.folder / self.name
        os.replace(self.temporary, final)
        manifest = {**manifest, "file": self.name, "rows": self.rows, "sha256": self._digest.hexdigest(),
                    "format": self.format, "columns": self.columns if self.format == "csv" else None}
        temporary = self.folder / f".{self.name}.manifest.json.tmp"
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(manifest, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.folder / f"{self.name}.manifest.json")
        return final

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.temporary.unlink(missing_ok=True)


def _members(connection: sa.Connection, segment_pk: int) -> Iterator[list]:
    """The segment's members with their attributes, a page at a time, by profile pk (keyset
    pagination: each page is one indexed range read)."""
    after = 0
    while True:
        page = connection.execute(
            sa.select(memberships.c.profile_pk, memberships.c.entered_at, profiles.c.external_id,
                      profiles.c.attributes).join(profiles, profiles.c.pk == memberships.c.profile_pk)
            .where(memberships.c.segment_pk == segment_pk, memberships.c.status.in_(MEMBER),
                   memberships.c.profile_pk > after).order_by(memberships.c.profile_pk).limit(PAGE)).all()
        if not page:
            return
        yield page
        after = page[-1].profile_pk


def _activation(connection: sa.Connection, activation_pk: int):
    return connection.execute(
        sa.select(activations, segments.c.key.label("segment_key"), destinations.c.consent,
                  destinations.c.config.label("destination_config"), destinations.c.name.label("destination_name"))
        .join(segments, segments.c.pk == activations.c.segment_pk)
        .join(destinations, destinations.c.pk == activations.c.destination_pk)
        .where(activations.c.pk == activation_pk)).first()


def _folder(settings: ActivationSettings, directory: str) -> Path:
    folder = (settings.export_root / directory)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _columns(activation, schema, incremental: bool) -> list[str]:
    return (["profile_id"] + (["status", "at"] if incremental else []) + [f"identity.{ns}" for ns in
                                                                          activation.identities]
            + leaves(activation.attributes, schema))


def export_activation(engine: sa.Engine, activation_pk: int, *, now: datetime,
                      settings: ActivationSettings) -> str | None:
    """One file of one activation (see the module doc); its delivery id, or None when the
    activation is not active."""
    with write_transaction(engine) as connection:
        activation = _activation(connection, activation_pk)
        if activation is None or activation.status != "active" or not (activation.start_at <= now < activation.end_at):
            return None
        config = activation.destination_config
        schema = get_schema(connection=connection, sandbox=activation.sandbox)
        incremental = config["mode"] == "incremental"
        stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{activation.segment_key}-{activation.pk}-{stamp}-{config['mode']}.{config['format']}"
        writer = _Writer(_folder(settings, config["directory"]), name, config["format"],
                         _columns(activation, schema, incremental))
        try:
            if incremental:
                excluded = _incremental(connection, engine, activation, schema, writer, now)
            else:
                excluded = _full(connection, activation, schema, writer)
            delivery_id = str(uuid.uuid4())
            path = writer.publish({"delivery_id": delivery_id, "destination": activation.destination_pk,
                                   "activation": activation.pk, "segment": activation.segment_key,
                                   "mode": config["mode"], "excluded_no_consent": excluded, "created_at": iso(now)})
        except BaseException:
            writer.discard()
            raise
        connection.execute(deliveries.insert().values(
            sandbox=activation.sandbox, destination_pk=activation.destination_pk, activation_pk=activation.pk,
            delivery_id=delivery_id, status="delivered", attempts=1, changes=[], change_count=writer.rows,
            excluded_no_consent=excluded, file=str(path), created_at=now, updated_at=now, delivered_at=now))
        connection.execute(activations.update().where(activations.c.pk == activation.pk).values(last_export_at=now))
    log.info("activation %s exported %s rows to %s", activation_pk, writer.rows, path)
    return delivery_id


def _full(connection: sa.Connection, activation, schema, writer: _Writer) -> int:
    paths = leaves(activation.attributes, schema)
    types = {p: str(schema.profile_type(p)) for p in paths}
    excluded = 0
    for page in _members(connection, activation.segment_pk):
        ids = identities_of(connection, [r.profile_pk for r in page], list(activation.identities))
        for row in page:
            attributes = row.attributes or {}
            if not consented(attributes, activation.consent):
                excluded += 1
                continue
            writer.row({"profile_id": row.external_id, "identities": ids.get(row.profile_pk, {}),
                        "attributes": {p: api_value(attributes[p], types[p]) for p in paths
                                       if attributes.get(p) is not None}})
    return excluded


def _incremental(connection: sa.Connection, engine: sa.Engine, activation, schema, writer: _Writer,
                 now: datetime) -> int:
    excluded = 0
    values: dict = {}
    if activation.backfill_after is not None:
        after = activation.backfill_after
        while True:
            found = backfill_page(connection, segment_pk=activation.segment_pk, after=after, limit=PAGE)
            if not found:
                break
            changes, left_out = apply_changes(connection, activation=activation, consent=activation.consent,
                                              segment_key=activation.segment_key, schema=schema, changes=found,
                                              now=now)
            excluded += left_out
            for change in changes:
                writer.row(change)
            after = found[-1].profile_pk
        values["backfill_after"] = None
    horizon = Horizon()
    horizon.start(activation.cursor)
    safe = horizon.advance(connection)
    cursor = activation.cursor
    while True:
        rows = connection.execute(
            sa.select(membership_changes).where(membership_changes.c.segment_pk == activation.segment_pk,
                                                membership_changes.c.pk > cursor, membership_changes.c.pk <= safe)
            .order_by(membership_changes.c.pk).limit(PAGE)).all()
        if not rows:
            break
        changes, left_out = apply_changes(connection, activation=activation, consent=activation.consent,
                                          segment_key=activation.segment_key, schema=schema, now=now,
                                          changes=[Change(r.profile_pk, r.profile_id, r.status, r.at) for r in rows])
        excluded += left_out
        for change in changes:
            writer.row(change)
        cursor = rows[-1].pk
    if activation.consent:
        changes, left_out = apply_changes(connection, activation=activation, consent=activation.consent,
                                          segment_key=activation.segment_key, schema=schema, now=now,
                                          changes=consent_changes(connection, activation=activation,
                                                                  consent=activation.consent, since=None, now=now))
        excluded += left_out
        for change in changes:
            writer.row(change)
    values["cursor"] = max(cursor, activation.cursor)
    connection.execute(activations.update().where(activations.c.pk == activation.pk).values(**values))
    return excluded


def export_destination(engine: sa.Engine, destination_pk: int, *, now: datetime,
                       settings: ActivationSettings) -> list[str]:
    """A file per active activation of the destination; their delivery ids."""
    with engine.connect() as connection:
        pks = connection.execute(sa.select(activations.c.pk).where(activations.c.destination_pk == destination_pk)
                                 .order_by(activations.c.pk)).scalars().all()
    return [found for pk in pks if (found := export_activation(engine, pk, now=now, settings=settings))]


# ---- as jobs ------------------------------------------------------------------------------------


def _export_job(context: JobContext) -> None:
    destination = context.payload["destination"]
    with context.engine.connect() as connection:
        exists = connection.execute(sa.select(destinations.c.pk).where(destinations.c.pk == destination)).first()
    if exists is None:
        with write_transaction(context.engine) as connection:
            context.fail(connection, "the destination was deleted")
        return
    made = export_destination(context.engine, destination, now=datetime.now(timezone.utc),
                              settings=ActivationSettings())
    context.progress(len(made), len(made), f"{len(made)} file(s) written", flush=True)


EXPORT = JobKind("activation.export", run=_export_job, max_attempts=3, backoff_seconds=30,
                 description="A file destination's export (asked for, or on its schedule).")
KINDS = [EXPORT]


def schedule_key(destination_pk: int) -> str:
    return f"schedule:{destination_pk}"


def request_export(connection: sa.Connection, *, sandbox: str, destination_pk: int, now: datetime) -> int:
    return enqueue(connection, kind=EXPORT, payload={"destination": destination_pk}, sandbox=sandbox, now=now)


def set_schedule(connection: sa.Connection, *, sandbox: str, destination_pk: int, every_minutes: int | None,
                 now: datetime) -> None:
    """The destination's recurring export job follows its ``every_minutes`` (none: no job)."""
    connection.execute(jobs.delete().where(jobs.c.kind == EXPORT.name, jobs.c.key == schedule_key(destination_pk),
                                           jobs.c.status != "running"))
    if every_minutes:
        existing = connection.execute(sa.select(jobs.c.pk).where(jobs.c.kind == EXPORT.name,
                                                                 jobs.c.key == schedule_key(destination_pk))).first()
        if existing is None:
            enqueue(connection, kind=EXPORT, payload={"destination": destination_pk}, sandbox=sandbox,
                    key=schedule_key(destination_pk), run_at=now + timedelta(minutes=every_minutes),
                    every=timedelta(minutes=every_minutes), now=now)
