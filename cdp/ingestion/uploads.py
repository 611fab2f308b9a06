"""Uploads of batch files: checked while read, then stored with their batch.

The multipart parser spools the file to a temporary file (the middleware bounds the request by
file + form limits); :func:`read_upload` reads it in chunks of 1 MiB, hashing it and checking it
is UTF-8 on the way, and stops with 413 ``file_too_large`` as soon as it passes the limit
(``CDP_MAX_FILE_BYTES``, capped by what the database stores in one value: see
:func:`file_limit`) — all before the request's transaction begins. Only an authorized upload
with a valid mapping is stored (:func:`store_content`), streamed from the spooled file a chunk at
a time (SQLite: incremental blob I/O; PostgreSQL: a large object the server turns into the
value). The job reads it back in chunks (cdp/ingestion/readers.py): the server never holds a
batch file whole.
"""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass
from functools import cache
from typing import BinaryIO

import sqlalchemy as sa

from cdp.errors import PayloadTooLarge, Unprocessable
from cdp.ingestion.readers import CHUNK_BYTES
from cdp.storage.models import ingestion_batch_files

POSTGRESQL_MAX_VALUE_BYTES = 2**30 - 2**20  # a value is at most 1 GiB; room for the rest of the row


@dataclass(frozen=True)
class Upload:
    """An uploaded file, checked (size, UTF-8) and hashed, still in the request's spooled file."""

    file: BinaryIO
    size: int
    sha256: str
    filename: str | None

    def read(self) -> bytes:
        self.file.seek(0)
        return self.file.read()


@cache
def _sqlite_max_length() -> int:
    import sqlite3

    connection = sqlite3.connect(":memory:")
    try:
        return connection.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
    finally:
        connection.close()


def file_limit(dialect: str, configured: int) -> tuple[int, str]:
    """The largest batch file accepted, and what sets it: ``CDP_MAX_FILE_BYTES``, or — when that is
    more — the most the database stores in one value (SQLite's length limit, 1,000,000,000 bytes
    unless compiled otherwise; PostgreSQL's 1 GiB per value, less room for the rest of the row)."""
    stored = {"sqlite": _sqlite_max_length, "postgresql": lambda: POSTGRESQL_MAX_VALUE_BYTES}.get(dialect)
    if stored is not None and stored() < configured:
        name = "SQLite" if dialect == "sqlite" else "PostgreSQL"
        return stored(), f"the most the {name} database stores in one value; CDP_MAX_FILE_BYTES is {configured}"
    return configured, "CDP_MAX_FILE_BYTES"


def read_upload(file: BinaryIO, *, filename: str | None, limit: int, limit_reason: str = "CDP_MAX_FILE_BYTES"
                ) -> Upload:
    """An uploaded file read in chunks: 413 ``file_too_large`` as soon as it passes ``limit``,
    422 ``invalid_file`` when it is not UTF-8; hashed on the way. Nothing is kept in memory: the
    file is read whole only once the request is authorized and checked (:func:`create_batch`)."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = 0
    file.seek(0)
    while chunk := file.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the file is larger than {limit} bytes ({limit_reason}); split it into several "
                                  f"batches", code="file_too_large",
                                  details={"limit_bytes": limit, "limit": limit_reason})
        digest.update(chunk)
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise Unprocessable(f"the file is not UTF-8 text (byte {size - len(chunk) - pending + exc.start})",
                                code="invalid_file") from None
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise Unprocessable("the file is not UTF-8 text (it ends inside a character)", code="invalid_file") from None
    return Upload(file, size, digest.hexdigest(), filename or None)


def store_content(connection: sa.Connection, *, batch_id: int, upload: Upload) -> None:
    """Store the uploaded file of a batch, in the caller's transaction, a chunk at a time: this
    process never holds the file whole."""
    upload.file.seek(0)
    if connection.dialect.name == "sqlite":
        # the row is created with a value of the file's size, then filled by incremental blob I/O
        # (as the row's last value, SQLite does not build that value in memory)
        connection.execute(ingestion_batch_files.insert().values(batch_pk=batch_id,
                                                                 content=sa.func.zeroblob(upload.size)))
        blob = connection.connection.driver_connection.blobopen("ingestion_batch_files", "content", batch_id)
        try:
            while chunk := upload.file.read(CHUNK_BYTES):
                blob.write(chunk)
        finally:
            blob.close()
        return
    # PostgreSQL takes a bytea parameter whole: the chunks go to a large object first (rolled
    # back with the transaction), which the server turns into the value and drops
    oid = connection.execute(sa.text("SELECT lo_from_bytea(0, :chunk)"),
                             {"chunk": upload.file.read(CHUNK_BYTES)}).scalar_one()
    offset = CHUNK_BYTES
    while chunk := upload.file.read(CHUNK_BYTES):
        connection.execute(sa.text("SELECT lo_put(:oid, :offset, :chunk)"),
                           {"oid": oid, "offset": offset, "chunk": chunk})
        offset += len(chunk)
    connection.execute(ingestion_batch_files.insert().values(batch_pk=batch_id, content=sa.func.lo_get(oid)))
    connection.execute(sa.text("SELECT lo_unlink(:oid)"), {"oid": oid})
