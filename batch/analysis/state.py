"""What an incremental run starts from (issue 22), kept in the target schema with the results:
the per-device-day partials and episodes every published table is rolled up from, the index of
the input files they were computed from, and the settings they depend on.

Internal tables, not for dashboards (docs/tables.md lists them apart):
- `state_device_days`: the partials and the episodes, one Parquet blob per kind and local
  month of the device-day (`month` 0: the readings without a date or a device, kept per input
  file); and the digests of every published table's rows (batch/analysis/delta.py). A blob, not a column per partial: the partials are ~80 columns and a run rewrites
  only the months it recomputed; PostgreSQL's COPY of 666,000 device-days x 80 columns took
  longer than the whole roll-up, Arrow writes and reads the same rows in a fraction of it.
- `state_input_files`: one row per input file read: its size and modification time (how a
  changed file is found), its sink batch, its readings and [min, max] `sendtime` (which older
  files can hold readings of a device-day the run recomputes).
- `state_meta`: the format version, the settings' fingerprint, the last sink batch read.

They are written by the transaction that publishes the tables (batch/analysis/publish.py
swap_in), so a kill leaves both the previous run's or both the new one's.
"""
from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg2 import sql
from psycopg2.extras import execute_values

from batch.analysis.statistics import READING_DATE
from batch.core.input_index import InputEntry
from batch.core.postgres import qualified
from batch.core.session import arrow_to_pandas
from batch.core.schema import BIGINT, BYTEA, INTEGER, JSONB, TEXT, TIMESTAMPTZ, Column, Table

# Bumped whenever what a partial column means changes: a state of another version is rebuilt.
STATE_FORMAT_VERSION = 1
PARTIALS, EPISODES = "partials", "episodes"
# The digests of a published table's rows (batch/analysis/delta.py), kind "rows:<table>".
ROW_DIGESTS = "rows:"
UNDATED_MONTH = 0

STATE_META = Table(
    "state_meta",
    "Internal state of the incremental analysis (not for dashboards): the settings the stored "
    "partials were computed with; a run whose settings differ rebuilds everything",
    key=("format_version",),
    columns=(
        Column("format_version", INTEGER, "format of the stored state", nullable=False),
        Column("fingerprint", JSONB, "settings the partials depend on (files by their contents' hash)",
               nullable=False),
        Column("last_sink_batch_id", BIGINT, "last streaming sink batch read (null: a plain folder)"),
        Column("last_sink_batch_marker", TEXT, "that batch's log file: name, size, modification "
               "time (another file there: the sink was recreated, every file is listed)"),
        Column("run_id", BIGINT, "run that wrote the state (batch_runs)", nullable=False),
        Column("written_at", TIMESTAMPTZ, "when the state was written", nullable=False),
    ),
    published=False,
)
STATE_INPUT_FILES = Table(
    "state_input_files",
    "Internal state of the incremental analysis (not for dashboards): every input file the "
    "stored partials were computed from",
    key=("path",),
    columns=(
        Column("path", TEXT, "file, as the file system lists it", nullable=False),
        Column("size", BIGINT, "size when read", unit="bytes", nullable=False),
        Column("modification_time", BIGINT, "modification time when read, ms since the epoch",
               unit="ms", nullable=False),
        Column("sink_batch_id", BIGINT, "streaming sink batch that wrote it, when its log says"),
        Column("readings", BIGINT, "rows in the file", unit="readings", nullable=False),
        Column("min_sendtime", TIMESTAMPTZ, "earliest sendtime in the file (null: none)"),
        Column("max_sendtime", TIMESTAMPTZ, "latest sendtime in the file (null: none)"),
    ),
    published=False,
)
STATE_DEVICE_DAYS = Table(
    "state_device_days",
    "Internal state of the incremental analysis (not for dashboards): the per-device-day "
    "partials and episodes every published table is rolled up from, as Parquet, per local month",
    key=("kind", "month"),
    columns=(
        Column("kind", TEXT, "partials, episodes, or rows:<table>: the digests of a published "
               "table's rows (key, two 64-bit hashes), by which a run swaps only its changed rows",
               nullable=False),
        Column("month", INTEGER, "local month of the device-days, YYYYMM (0: readings without a "
               "date or device, kept per input file)", nullable=False),
        Column("rows", BIGINT, "rows in the blob", nullable=False),
        Column("data", BYTEA, "the rows, a Parquet file", nullable=False),
    ),
    published=False,
)
STATE_TABLES = (STATE_META, STATE_INPUT_FILES, STATE_DEVICE_DAYS)


@dataclass(frozen=True)
class IndexedFile:
    """One row of state_input_files."""

    entry: InputEntry
    readings: int
    min_sendtime: datetime | None
    max_sendtime: datetime | None


@dataclass(frozen=True)
class StoredMeta:
    format_version: int
    fingerprint: dict[str, Any]
    last_sink_batch_id: int | None
    last_sink_batch_marker: str | None


@dataclass(frozen=True)
class StateUpdate:
    """What a run writes: the months it rewrote per kind (every month on a full run), the
    whole file index, and the meta row."""

    full: bool
    months: Mapping[str, Mapping[int, pa.Table]]
    files: tuple[IndexedFile, ...]
    fingerprint: Mapping[str, Any]
    last_sink_batch_id: int | None
    last_sink_batch_marker: str | None


def nullable(schema: pa.Schema) -> pa.Schema:
    """`schema` with every field nullable and no metadata: the state's schema whatever plan
    computed it (Spark's nullability depends on the plan)."""
    return pa.schema([field.with_nullable(True) for field in schema])


def month_keys(table: pa.Table) -> pa.Array:
    """Each row's local month as YYYYMM (UNDATED_MONTH for a row without a date)."""
    dates = table[READING_DATE]
    months = pc.add(pc.multiply(pc.year(dates), 100), pc.month(dates))
    return pc.fill_null(months, UNDATED_MONTH)


def split_by_month(table: pa.Table, months: Iterable[int] | None = None) -> dict[int, pa.Table]:
    """`table`'s rows per month (`months`: these only, an empty table for a month with none;
    every month by default, UNDATED_MONTH always: its blob, even empty, keeps the columns)."""
    keys = month_keys(table)
    wanted = sorted(set(pc.unique(keys).to_pylist()) | {UNDATED_MONTH} if months is None else set(months))
    return {month: table.filter(pc.equal(keys, month)) for month in wanted}


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def read_meta(cursor: Any, schema: str) -> StoredMeta | None:
    cursor.execute(sql.SQL("SELECT format_version, fingerprint, last_sink_batch_id, last_sink_batch_marker "
                           "FROM {}").format(qualified(schema, STATE_META.name)))
    row = cursor.fetchone()
    return None if row is None else StoredMeta(*row)


def read_files(cursor: Any, schema: str) -> tuple[IndexedFile, ...]:
    cursor.execute(sql.SQL(
        "SELECT path, size, modification_time, sink_batch_id, readings, min_sendtime, max_sendtime "
        "FROM {} ORDER BY path").format(qualified(schema, STATE_INPUT_FILES.name)))
    return tuple(IndexedFile(InputEntry(path, size, mtime, batch), readings, low, high)
                 for path, size, mtime, batch, readings, low, high in cursor.fetchall())


def read_device_days(cursor: Any, schema: str, kind: str) -> pa.Table:
    """Every stored month of `kind`, as one table (the undated month is always stored)."""
    cursor.execute(sql.SQL("SELECT data FROM {} WHERE kind = %s ORDER BY month").format(
        qualified(schema, STATE_DEVICE_DAYS.name)), (kind,))
    parts = [pq.read_table(io.BytesIO(bytes(data))) for (data,) in cursor.fetchall()]
    parts = [part.cast(nullable(part.schema)) for part in parts]
    if not parts:
        raise ValueError(f"the state of {schema} holds no {kind}: run with --full")
    return pa.concat_tables(parts)


def read_row_digests(cursor: Any, schema: str) -> dict[str, pd.DataFrame]:
    """The stored digests of every published table's rows, by table name."""
    cursor.execute(sql.SQL("SELECT kind, data FROM {} WHERE starts_with(kind, %s)").format(
        qualified(schema, STATE_DEVICE_DAYS.name)), (ROW_DIGESTS,))
    return {kind[len(ROW_DIGESTS):]: arrow_to_pandas(pq.read_table(io.BytesIO(bytes(data))))
            for kind, data in cursor.fetchall()}


def digest_row_counts(cursor: Any, schema: str) -> dict[str, int]:
    """How many published rows the stored digests of each table describe (the previous run's),
    without decoding a blob: the state keeps their count."""
    cursor.execute(sql.SQL("SELECT kind, rows FROM {} WHERE starts_with(kind, %s)").format(
        qualified(schema, STATE_DEVICE_DAYS.name)), (ROW_DIGESTS,))
    return {kind[len(ROW_DIGESTS):]: rows for kind, rows in cursor.fetchall()}


# (kind, month) -> (rows, Parquet bytes), or None for a month left with no row (deleted).
StateBlobs = dict[tuple[str, int], "tuple[int, bytes] | None"]


def state_blobs(update: StateUpdate, row_digests: Mapping[str, pd.DataFrame]) -> StateBlobs:
    """The rows of `state_device_days` a run writes: the months of `update` and every published
    table's row digests, serialised before the swap, which then only inserts them."""
    tables = {**update.months, **{ROW_DIGESTS + table: {UNDATED_MONTH: pa.Table.from_pandas(digests, preserve_index=False)}
                                  for table, digests in row_digests.items()}}
    return {(kind, month): (rows.num_rows, _parquet(rows)) if rows.num_rows or month == UNDATED_MONTH else None
            for kind, months in tables.items() for month, rows in months.items()}


def write_state(cursor: Any, schema: str, run_id: int, update: StateUpdate, blobs: StateBlobs) -> None:
    """Replace the state by `update`'s, with its `state_blobs`, inside the caller's transaction
    (the swap's)."""
    device_days = qualified(schema, STATE_DEVICE_DAYS.name)
    if update.full:
        cursor.execute(sql.SQL("DELETE FROM {}").format(device_days))
    for (kind, month), blob in blobs.items():
        cursor.execute(sql.SQL("DELETE FROM {} WHERE kind = %s AND month = %s").format(device_days),
                       (kind, month))
        if blob is not None:
            cursor.execute(sql.SQL("INSERT INTO {} (kind, month, rows, data) VALUES (%s, %s, %s, %s)")
                           .format(device_days), (kind, month, *blob))
    files = qualified(schema, STATE_INPUT_FILES.name)
    cursor.execute(sql.SQL("DELETE FROM {}").format(files))
    execute_values(cursor, sql.SQL(
        "INSERT INTO {} (path, size, modification_time, sink_batch_id, readings, min_sendtime, "
        "max_sendtime) VALUES %s").format(files).as_string(cursor),
        [(file.entry.path, file.entry.size, file.entry.modification_time, file.entry.sink_batch_id,
          file.readings, file.min_sendtime, file.max_sendtime) for file in update.files],
        page_size=1000)
    meta = qualified(schema, STATE_META.name)
    cursor.execute(sql.SQL("DELETE FROM {}").format(meta))
    cursor.execute(sql.SQL(
        "INSERT INTO {} (format_version, fingerprint, last_sink_batch_id, last_sink_batch_marker, run_id, "
        "written_at) VALUES (%s, %s, %s, %s, %s, %s)").format(meta),
        (STATE_FORMAT_VERSION, json.dumps(dict(update.fingerprint), sort_keys=True),
         update.last_sink_batch_id, update.last_sink_batch_marker, run_id, datetime.now(timezone.utc)))
