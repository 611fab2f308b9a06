"""Reading batch files as streams of rows, in bounded memory.

A stored file is read from the database in chunks of CHUNK_BYTES (:func:`open_stored_file`:
SQLite's incremental blob I/O; PostgreSQL slices of the value, stored uncompressed so a slice
costs its own size), and split into physical lines of at most MAX_LINE_BYTES: a longer line is
never held whole — it is skipped to its end and its row rejected with its length ("line too
long"), keeping RAW_MAX_BYTES of it for the error. What an error keeps of any rejected row is
capped the same way (:meth:`Row.raw`): at most RAW_MAX_BYTES bytes of UTF-8, with the row's
full length and whether it was cut — so the errors of a file never weigh much more than the file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import sqlalchemy as sa

from cdp.errors import Unprocessable
from cdp.storage.models import ingestion_batch_files

CHUNK_BYTES = 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024  # a physical line of a batch file; records are at most 64 KiB as JSON
RAW_MAX_BYTES = 2048  # what a row error keeps of the raw row
_BOM = b"\xef\xbb\xbf"


def clip(text: str, limit: int = RAW_MAX_BYTES) -> tuple[str, int, bool]:
    """``text`` cut to at most ``limit`` bytes of UTF-8 (never inside a character); its full
    length in bytes; whether it was cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text, len(data), False
    return data[:limit].decode("utf-8", "ignore"), len(data), True


@dataclass(slots=True)
class Row:
    number: int  # CSV: as a spreadsheet numbers rows (the header is row 1); JSON Lines: the line (from 1)
    values: dict | None  # column → value; None when the line could not be read
    line: str | None = None  # JSON Lines: the line as read (for a line over the limit: its head)
    problem: str | None = None  # why the row cannot be used as it is
    line_bytes: int | None = None  # set for a line over the limit: its full length

    def raw(self) -> tuple[str, int, bool]:
        """The row as read — the line for JSON Lines, a JSON object for CSV — capped (:func:`clip`):
        text, full length in bytes, cut or not."""
        if self.line_bytes is not None:
            return clip(self.line or "")[0], self.line_bytes, True
        return clip(self.line if self.line is not None else json.dumps(self.values, ensure_ascii=False))


@dataclass(slots=True)
class _Line:
    text: str  # the line with its end; for a line over the limit, its head
    size: int  # its length in bytes
    too_long: bool


def _too_long(size: int) -> str:
    return (f"line too long: {size:,} bytes, over the limit of {MAX_LINE_BYTES:,} bytes per line; nothing of it was "
            f"read")


def _fits(data: bytes) -> bool:
    return len(data) <= MAX_LINE_BYTES or data.endswith(b"\n") and len(data) == MAX_LINE_BYTES + 1


def _long_line(stream: BinaryIO, data: bytes) -> _Line:
    """A line over the limit whose first MAX_LINE_BYTES + 1 bytes are ``data``: skipped to its end,
    its head kept."""
    size = len(data)
    head = data[:RAW_MAX_BYTES].decode("utf-8", "ignore")
    while not data.endswith(b"\n"):
        data = stream.readline(CHUNK_BYTES)
        if not data:
            break
        size += len(data)
    return _Line(head, size - (1 if data.endswith(b"\n") else 0), True)


def _lines(stream: BinaryIO) -> Iterator[_Line]:
    """The physical lines of a UTF-8 file (ending in ``\\n``), each read in at most
    MAX_LINE_BYTES; a longer one is skipped to its end, keeping its head (a BOM is dropped)."""
    data = stream.readline(MAX_LINE_BYTES + 1).removeprefix(_BOM)
    while data:
        if _fits(data):
            yield _Line(data.decode("utf-8"), len(data.rstrip(b"\r\n")), False)
        else:
            yield _long_line(stream, data)
        data = stream.readline(MAX_LINE_BYTES + 1)


def _csv_feed(stream: BinaryIO, oversized: list[_Line]) -> Iterator[str]:
    """What the csv module reads: :func:`_lines`' text, a line over the limit as an empty one
    (noted in ``oversized``)."""
    readline = stream.readline
    data = readline(MAX_LINE_BYTES + 1).removeprefix(_BOM)
    while data:
        if len(data) <= MAX_LINE_BYTES or _fits(data):
            yield data.decode("utf-8")
        else:
            oversized.append(_long_line(stream, data))
            yield "\n"
        data = readline(MAX_LINE_BYTES + 1)


def csv_header(stream: BinaryIO) -> list[str]:
    stream.seek(0)
    lines = _lines(stream)
    first = next(lines, None)
    if first is not None and first.too_long:
        raise Unprocessable(f"the CSV header is {first.size:,} bytes, over the limit of {MAX_LINE_BYTES:,} bytes "
                            f"per line", code="invalid_file")
    try:
        header = next(csv.reader([first.text] if first is not None else []), None)
    except csv.Error as exc:
        raise Unprocessable(f"the CSV header cannot be read: {exc}", code="invalid_file") from None
    if not header or not any(h.strip() for h in header):
        raise Unprocessable("the CSV file has no header row", code="invalid_file")
    return header


def iter_rows(stream: BinaryIO, format_: str) -> Iterator[Row]:
    """The file's rows, one at a time (blank lines skipped); Unprocessable (``invalid_file``) when
    the file cannot be read on past a point (a CSV quoting error, a cell over the CSV field size).
    A line over MAX_LINE_BYTES is a rejected row, not an error of the file."""
    if format_ == "csv":
        yield from _csv_rows(stream)
        return
    for number, line in enumerate(_lines(stream), 1):
        if line.too_long:
            yield Row(number, None, line.text, _too_long(line.size), line_bytes=line.size)
            continue
        text = line.text.rstrip("\r\n")
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            yield Row(number, None, text, f"not JSON: {exc}")
            continue
        if isinstance(value, dict):
            yield Row(number, value, text)
        else:
            yield Row(number, None, text, "a line must be a JSON object")


def csv_records(stream: BinaryIO) -> Iterator[tuple[int, list[str], _Line | None]]:
    """A CSV file's header as ``(1, cells, None)``, then its records as ``(number, cells,
    too_long)``, blank ones skipped; ``too_long``: the longest line over MAX_LINE_BYTES the
    record took in (its row is rejected with it, :func:`csv_row`). Unprocessable
    (``invalid_file``) when the file cannot be read on past a point."""
    # the csv module reads whole lines: it is fed the bounded lines, and a line over the limit
    # as an empty one, noted — the row it falls in is rejected with it
    oversized: list[_Line] = []
    reader = csv.reader(_csv_feed(stream, oversized))
    try:
        yield 1, next(reader, []), None
        for number, cells in enumerate(reader, 2):
            if oversized:
                longest = max(oversized, key=lambda line: line.size)
                oversized.clear()
                yield number, cells, longest
            elif cells and (cells[0].strip() or "".join(cells).strip()):  # else a blank line
                yield number, cells, None
    except csv.Error as exc:
        raise Unprocessable(f"the CSV file cannot be read past line {reader.line_num}: {exc}",
                            code="invalid_file") from None


def csv_row(number: int, header: list[str], cells: list[str], too_long: _Line | None) -> Row:
    """The Row of a record of :func:`csv_records`."""
    if too_long is not None:
        return Row(number, None, too_long.text, _too_long(too_long.size), line_bytes=too_long.size)
    problem = None if len(cells) == len(header) else f"{len(cells)} cells; the header has {len(header)} columns"
    return Row(number, dict(zip(header, cells)), problem=problem)


def _csv_rows(stream: BinaryIO) -> Iterator[Row]:
    records = csv_records(stream)
    _, header, _ = next(records)
    for number, cells, too_long in records:
        yield csv_row(number, header, cells, too_long)


# ---- the stored file -----------------------------------------------------------------------------

class _ChunkReader(io.RawIOBase):
    """A value read in slices: ``fetch(offset, size)`` gives the bytes at ``offset``."""

    def __init__(self, fetch, length: int):
        self._fetch = fetch
        self._length = length
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = min(len(buffer), self._length - self._offset)
        if size <= 0:
            return 0
        data = self._fetch(self._offset, size)
        buffer[:len(data)] = data
        self._offset += len(data)
        return len(data)


@contextmanager
def open_stored_file(engine: sa.Engine, batch_id: int) -> Iterator[BinaryIO]:
    """The file stored with a batch, as a buffered binary stream read from the database in
    chunks (never whole)."""
    c = ingestion_batch_files.c
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            # incremental blob I/O on the driver's connection, in its own read transaction
            driver = connection.connection.driver_connection
            blob = driver.blobopen("ingestion_batch_files", "content", batch_id, readonly=True)
            try:
                def fetch(offset: int, size: int) -> bytes:
                    blob.seek(offset)
                    return blob.read(size)

                yield io.BufferedReader(_ChunkReader(fetch, len(blob)), CHUNK_BYTES)
            finally:
                blob.close()
            return
        length = connection.execute(sa.select(sa.func.length(c.content)).where(c.batch_pk == batch_id)).scalar_one()
        connection.rollback()

        def fetch(offset: int, size: int) -> bytes:
            data = connection.execute(sa.select(sa.func.substr(c.content, offset + 1, size))
                                      .where(c.batch_pk == batch_id)).scalar_one()
            connection.rollback()  # no snapshot held between two slices
            return bytes(data)

        yield io.BufferedReader(_ChunkReader(fetch, length), CHUNK_BYTES)
