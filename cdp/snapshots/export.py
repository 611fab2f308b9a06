"""A sandbox's profiles and events exported to Parquet, incrementally, with a manifest.

Layout under ``<root>/<sandbox>/``:

* ``manifest.json`` — the parts in order, each with its counts and watermarks (written last,
  atomically: a reader never sees a part that is not complete);
* ``part-NNNNN/profiles.parquet`` — ``pk``, ``sandbox``, ``external_id``, ``attributes`` (JSON
  text), ``part``, ``deleted`` (a tombstone: the profile is gone since the part before), and the
  sandbox's schema's scalar attributes as typed columns ``"a.<key>"`` (DuckDB's JSON read of each,
  evaluated once here: cdp.snapshots.flat), which DuckDB reads instead of the JSON;
* ``part-NNNNN/events/bucket=K/events.parquet`` — ``profile_pk``, ``event_id``, ``type``, ``ts``
  (UTC), ``fields`` (JSON text), ``part``, and the schema's scalar event fields as typed columns
  ``"f.<key>"`` (as the attributes': cdp.snapshots.flat): one file per bucket (``profile_pk %
  BUCKETS``, hive style), sorted by profile and time, so a profile's events sit together in one
  file (cdp.snapshots.columns writes them, a chunk of rows at a time as Arrow columns).

The first snapshot (or ``full=True``) writes every profile. A later one writes only what changed
since the last: every profile updated or given a new event since its watermarks — with all of its
events, so a part holds a profile's whole current state — and a tombstone for each profile that is
gone. Readers merge on read (:func:`relations_sql`: the latest part of each profile wins); past
``MAX_PARTS`` parts a snapshot compacts instead (writes one full part and drops the others).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import sqlalchemy as sa

from cdp.engine.sql.analytic import events_schema, profiles_schema
from cdp.engine.sql.analytic import common_flat_columns
from cdp.engine.sql.duckdb import EVENT_PREFIX, FLAT_PREFIX
from cdp.jobs import JobContext, JobKind
from cdp.schema import Schema
from cdp.schema_registry.service import get_schema
from cdp.snapshots import columns, flat
from cdp.snapshots.columns import BUCKETS  # noqa: F401 - the layout's bucket count, kept importable here
from cdp.storage.models import events, profiles

MAX_PARTS = 8  # past this many parts, a snapshot compacts
MANIFEST = "manifest.json"


@dataclass
class Part:
    number: int
    created_at: str
    full: bool
    profiles: int  # rows written (tombstones included)
    events: int
    deleted: int
    max_profile_updated_at: str | None
    max_event_pk: int


@dataclass
class Manifest:
    sandbox: str
    root: str
    parts: list[Part] = field(default_factory=list)
    seconds: float = 0.0  # what the last export took

    @property
    def folder(self) -> Path:
        return Path(self.root) / self.sandbox

    def to_dict(self) -> dict:
        return {"version": 1, "sandbox": self.sandbox, "parts": [asdict(p) for p in self.parts],
                "seconds": round(self.seconds, 3)}


def latest_manifest(root: Path | str, sandbox: str) -> Manifest | None:
    path = Path(root) / sandbox / MANIFEST
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return Manifest(sandbox=sandbox, root=str(root), parts=[Part(**p) for p in data["parts"]],
                    seconds=data.get("seconds", 0.0))


def _pa():
    import pyarrow
    import pyarrow.parquet  # noqa: F401

    return pyarrow


def _write_part(connection: sa.Connection, folder: Path, number: int, sandbox: str, changed: sa.Select | None,
                deleted: Sequence[int], schema: Schema) -> tuple[int, int]:
    """Write the profiles whose pk ``changed`` selects (None: all of the sandbox) with all their
    events, and tombstones for ``deleted``; returns (profile rows, event rows). Columnar: each
    chunk of rows read becomes Arrow arrays (cdp.snapshots.columns)."""
    pa = _pa()
    target = folder / f"part-{number:05d}"
    if target.exists():
        shutil.rmtree(target)
    (target / "events").mkdir(parents=True)
    where = [profiles.c.sandbox == sandbox] + ([profiles.c.pk.in_(changed)] if changed is not None else [])
    profile_schema = profiles_schema().append(pa.field("part", pa.int64())).append(pa.field("deleted", pa.bool_()))
    event_schema = events_schema().append(pa.field("part", pa.int64()))
    profile_count = 0
    with pa.parquet.ParquetWriter(target / "profiles.raw.parquet", profile_schema) as writer:
        query = (sa.select(profiles.c.pk, profiles.c.external_id,
                           sa.cast(profiles.c.attributes, sa.Text).label("attributes"))
                 .where(*where).order_by(profiles.c.pk))
        for rows in columns.chunks(connection, query):
            writer.write_table(columns.profile_table(rows, sandbox, number, profile_schema))
            profile_count += len(rows)
        if len(deleted):
            writer.write_table(columns.tombstones_table(list(deleted), sandbox, number, profile_schema))
            profile_count += len(deleted)
    flat.write_profiles(target / "profiles.raw.parquet", target / "profiles.parquet", schema)
    (target / "profiles.raw.parquet").unlink()
    owner = sa.select(profiles.c.pk).where(*where)
    # the timestamp and the JSON as the driver gives them (text on SQLite): the column types'
    # per-row conversions are what columns.timestamps / document_texts do per chunk
    query = (sa.select(events.c.profile_pk, events.c.event_id, events.c.type,
                       sa.type_coerce(events.c.ts, sa.String).label("ts"),
                       sa.cast(events.c.fields, sa.Text).label("fields"))
             .where(events.c.profile_pk.in_(owner)).order_by(events.c.profile_pk, events.c.ts, events.c.event_id))
    buckets = columns.BucketWriter(target / "events", event_schema, name="events.raw.parquet")
    try:
        for rows in columns.chunks(connection, query):
            buckets.write(columns.event_table(rows, number, event_schema))
    finally:
        buckets.close()
    for raw in buckets.files():  # each bucket's file again, with its typed event-field columns
        flat.write_events(raw, raw.with_name("events.parquet"), schema, columns.ROW_GROUP)
        raw.unlink()
    return profile_count, buckets.rows


def _deleted_since(connection: sa.Connection, manifest: Manifest, sandbox: str):
    """The pks a reader of the snapshot sees that the database no longer has (set-wise: two
    sorted arrays)."""
    import numpy

    seen = columns.live_pks([manifest.folder / f"part-{p.number:05d}" / "profiles.parquet" for p in manifest.parts])
    current = columns.database_pks(connection, sa.select(profiles.c.pk).where(profiles.c.sandbox == sandbox))
    return numpy.setdiff1d(numpy.asarray(seen, dtype="int64"), current, assume_unique=True).tolist()


def export_snapshot(connection: sa.Connection, *, sandbox: str, root: Path | str, full: bool = False) -> Manifest:
    """Export what changed since the sandbox's last snapshot (everything the first time, with
    ``full``, or when ``MAX_PARTS`` parts would be exceeded: a compaction); returns the manifest."""
    _pa()  # pyarrow is there, or ImportError says so before anything is written
    schema = get_schema(connection=connection, sandbox=sandbox)
    started = time.perf_counter()
    previous = latest_manifest(root, sandbox)
    folder = Path(root) / sandbox
    folder.mkdir(parents=True, exist_ok=True)
    max_updated, max_event = connection.execute(sa.select(
        sa.select(sa.func.max(profiles.c.updated_at)).where(profiles.c.sandbox == sandbox).scalar_subquery(),
        sa.select(sa.func.max(events.c.pk)).scalar_subquery())).one()
    compact = full or previous is None or not previous.parts or len(previous.parts) >= MAX_PARTS
    number = 0 if previous is None or not previous.parts else previous.parts[-1].number + 1
    if compact:
        counts = _write_part(connection, folder, number, sandbox, None, [], schema)
        deleted_count = 0
        parts: list[Part] = []
    else:
        last = previous.parts[-1]
        since = datetime.fromisoformat(last.max_profile_updated_at) if last.max_profile_updated_at else None
        conditions = [profiles.c.pk.in_(sa.select(events.c.profile_pk).where(events.c.pk > last.max_event_pk))]
        if since is not None:
            conditions.append(profiles.c.updated_at > since)
        changed = sa.select(profiles.c.pk).where(profiles.c.sandbox == sandbox, sa.or_(*conditions))
        deleted = _deleted_since(connection, previous, sandbox)
        counts = _write_part(connection, folder, number, sandbox, changed, deleted, schema)
        deleted_count = len(deleted)
        parts = list(previous.parts)
    part = Part(number=number, created_at=datetime.now(timezone.utc).isoformat(), full=compact,
                profiles=counts[0], events=counts[1], deleted=deleted_count,
                max_profile_updated_at=max_updated.isoformat() if max_updated is not None else None,
                max_event_pk=int(max_event or 0))
    manifest = Manifest(sandbox=sandbox, root=str(root), parts=parts + [part],
                        seconds=time.perf_counter() - started)
    temporary = folder / (MANIFEST + ".tmp")
    temporary.write_text(json.dumps(manifest.to_dict(), indent=1), encoding="utf-8")
    temporary.replace(folder / MANIFEST)  # the snapshot exists from here on
    if compact:  # the parts before the compaction are no longer read
        for old in (previous.parts if previous else []):
            shutil.rmtree(folder / f"part-{old.number:05d}", ignore_errors=True)
    return manifest


def _named(columns: list[str], alias: str = "") -> str:
    return "".join(", " + alias + '"' + c.replace('"', '""') + '"' for c in columns)


def relations_sql(manifest: Manifest) -> tuple[str, str]:
    """DuckDB SELECTs of the ``profiles`` and ``events`` relations, the parts merged on read:
    each profile's latest part wins (a tombstone removes it), and its events are that part's.
    Both keep the flat columns every part's files have (cdp.snapshots.flat)."""
    folder = manifest.folder
    profile_files = [str(folder / f"part-{p.number:05d}" / "profiles.parquet") for p in manifest.parts]
    event_globs = [str(folder / f"part-{p.number:05d}" / "events" / "**" / "*.parquet")
                   for p in manifest.parts if p.events]
    event_files = [str(path) for p in manifest.parts if p.events
                   for path in sorted((folder / f"part-{p.number:05d}" / "events").rglob("*.parquet"))]
    quoted = lambda paths: "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"  # noqa: E731
    columns = "pk, sandbox, external_id, attributes" + _named(common_flat_columns(profile_files)[0])
    event_columns, differ = common_flat_columns(event_files, EVENT_PREFIX)
    by_name = ", union_by_name = true" if differ else ""
    events_from = (f"read_parquet({quoted(event_globs)}, hive_partitioning = true{by_name})" if event_globs else
                   "(SELECT NULL::BIGINT AS profile_pk, NULL::VARCHAR AS event_id, NULL::VARCHAR AS type, "
                   "NULL::TIMESTAMP AS ts, NULL::VARCHAR AS fields, NULL::BIGINT AS part WHERE false)")
    if len(manifest.parts) == 1:
        return (f"SELECT {columns} FROM read_parquet({quoted(profile_files)}) WHERE NOT deleted",
                f"SELECT profile_pk, event_id, type, ts, fields{_named(event_columns)} FROM {events_from}")
    # by name: parts written under different schemas have different flat columns
    latest = (f"SELECT * FROM read_parquet({quoted(profile_files)}, union_by_name = true) "
              "QUALIFY row_number() OVER (PARTITION BY pk ORDER BY part DESC) = 1")
    return (f"SELECT {columns} FROM ({latest}) WHERE NOT deleted",
            f"SELECT e.profile_pk, e.event_id, e.type, e.ts, e.fields{_named(event_columns, 'e.')} "
            f"FROM {events_from} e JOIN ({latest}) l ON e.profile_pk = l.pk AND e.part = l.part WHERE NOT l.deleted")


SNAPSHOT_KIND = "snapshots.export"


def snapshot_kind(root: Path | str) -> JobKind:
    """The runner's job that exports a sandbox's snapshot (payload: ``sandbox``, ``full``)."""

    def run(context: JobContext) -> None:
        with context.engine.connect() as connection:
            export_snapshot(connection, sandbox=context.payload["sandbox"], root=root,
                            full=bool(context.payload.get("full")))

    return JobKind(name=SNAPSHOT_KIND, run=run, max_attempts=1,
                   description="exports a sandbox's profiles and events to a Parquet snapshot (incremental)")
