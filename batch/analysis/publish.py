"""The PostgreSQL sink: DDL and schema evolution derived from the catalog, atomic publication.

The connection is batch/core/postgres.py's, the run table's records batch/analysis/runs.py's.
The design (COPY into staging tables, one transaction replacing the published rows, the
advisory lock that lives as long as the job's connection, evolution in place): docs/analysis.md
("Publish", "Upgrading") and docs/reliability.md. Staging tables carry the run id, so that
nothing a run still writes can reach another run's.
"""
from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
import psycopg2
import psycopg2.errors
import pyarrow as pa
from psycopg2 import sql
from pyarrow import csv as pa_csv
from pyspark.sql.pandas.types import to_arrow_type

from batch.analysis import runs
from batch.analysis.catalog import Catalog
from batch.core.errors import PublishError, first_line
from batch.core.postgres import PostgresTarget, connect, qualified
from batch.core.schema import Column, Table, View

log = logging.getLogger(__name__)

STAGING_PREFIX = "_staging_"
LOCK_WAIT_NOTE_S = 120.0


@contextmanager
def publish_lock(conn: psycopg2.extensions.connection, target: PostgresTarget) -> Iterator[None]:
    """Hold the schema's advisory lock for the block; wait at most `lock_timeout_s` for it."""
    key = f"indoor-air-batch:{target.schema}"
    started = time.monotonic()
    deadline = started + target.lock_timeout_s
    next_note: float | None = None  # when to say again that the run is still waiting
    with conn.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,))
            conn.commit()
            if cursor.fetchone()[0]:
                break
            now = time.monotonic()
            if now >= deadline:
                raise PublishError(
                    f"another run is publishing to schema {target.schema} at {target.address}; "
                    f"gave up after waiting {target.lock_timeout_s:g}s")
            # Polled every 2 s, said once and then every LOCK_WAIT_NOTE_S: a log line per
            # poll would be 300 lines over the default 600 s.
            if next_note is None:
                log.warning("another run holds the publish lock of schema %s; waiting up to %gs",
                            target.schema, target.lock_timeout_s)
                next_note = now + LOCK_WAIT_NOTE_S
            elif now >= next_note:
                log.info("still waiting for the publish lock of schema %s (%.0fs of %gs)",
                         target.schema, now - started, target.lock_timeout_s)
                next_note = now + LOCK_WAIT_NOTE_S
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    try:
        yield
    finally:
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
            conn.commit()
        except psycopg2.Error as error:
            # The session is gone, and the lock with it; the error that ended the run matters more.
            log.warning("cannot release the publish lock (%s); it ended with the session",
                        first_line(error))


# --- DDL and schema evolution ---------------------------------------------------------------

def _column_definition(column: Column, constraints: bool = True) -> sql.Composable:
    return sql.SQL("{} {}").format(
        sql.Identifier(column.name),
        sql.SQL(column.definition if constraints else column.type.create
                + ("" if column.nullable else " NOT NULL")))


def create_table_ddl(schema: str, table: Table, name: str | None = None,
                     constraints: bool = True) -> sql.Composable:
    """CREATE TABLE for `table` (under `name`, for a staging copy; without keys when not `constraints`)."""
    definitions = [_column_definition(column, constraints) for column in table.columns]
    if constraints and table.published:
        definitions.append(sql.SQL("PRIMARY KEY ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, table.key))))
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
        qualified(schema, name or table.name), sql.SQL(", ").join(definitions))


def _comments(table: Table) -> list[tuple[str | None, str]]:
    """(column, or None for the table itself; its comment)."""
    return [(None, table.description), *((column.name, column.comment) for column in table.columns)]


def _comment_ddl(schema: str, table: str, column: str | None, text: str) -> sql.Composable:
    if column is None:
        return sql.SQL("COMMENT ON TABLE {} IS {}").format(qualified(schema, table), sql.Literal(text))
    return sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
        qualified(schema, table), sql.Identifier(column), sql.Literal(text))


def comments_ddl(schema: str, table: Table) -> list[sql.Composable]:
    return [_comment_ddl(schema, table.name, column, text) for column, text in _comments(table)]


def _stored_comments(cursor: Any, schema: str) -> dict[tuple[str, str | None], str]:
    """The comments of the tables of `schema` and of their columns, by (table, column or None)."""
    cursor.execute(
        "SELECT c.relname, a.attname, d.description FROM pg_description d "
        "JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass "
        "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = %s "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0",
        (schema,))
    return {(table, column): text for table, column, text in cursor.fetchall()}


def _update_comments(cursor: Any, schema: str, table: Table,
                     stored: Mapping[tuple[str, str | None], str]) -> None:
    """Comment `table` where its comments differ from the `stored` ones only: COMMENT ON takes a
    lock that autovacuum yields to, so that one issued on every run would cancel the vacuum of
    the rows the run's swap deleted, and wait a second (deadlock_timeout) for it to go."""
    for column, text in _comments(table):
        if stored.get((table.name, column)) != text:
            cursor.execute(_comment_ddl(schema, table.name, column, text))


def _view_ddl(schema: str, view: View, replace: bool) -> list[sql.Composable]:
    query = view.query(lambda name: qualified(schema, name))
    create = "CREATE OR REPLACE VIEW {} AS {}" if replace else "CREATE VIEW {} AS {}"
    return [sql.SQL(create).format(qualified(schema, view.name), query),
            sql.SQL("COMMENT ON VIEW {} IS {}").format(qualified(schema, view.name),
                                                        sql.Literal(view.description))]


def catalog_ddl(schema: str, catalog: Catalog) -> list[sql.Composable]:
    """Every table and view of `catalog`, created from nothing (the schema must exist)."""
    statements: list[sql.Composable] = []
    for table in (catalog.runs, *catalog.state_tables, *catalog.published_tables):
        statements += [create_table_ddl(schema, table), *comments_ddl(schema, table)]
    for view in catalog.views:
        statements += _view_ddl(schema, view, replace=True)
    return statements


@dataclass(frozen=True)
class Evolution:
    """What this release adds to an existing database: per table, its columns new in this release."""

    new_columns: Mapping[str, tuple[Column, ...]]


class SchemaChangeError(PublishError):
    """A published column changed type or disappeared: an operator decides what happens to its data."""


def _existing_columns(cursor: Any, schema: str, table: str) -> dict[str, str] | None:
    """Column name -> type as format_type spells it; None when the table does not exist."""
    cursor.execute("SELECT to_regclass(format('%%I.%%I', %s, %s)) IS NOT NULL", (schema, table))
    if not cursor.fetchone()[0]:
        return None
    cursor.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(format('%%I.%%I', %s, %s)) AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", (schema, table))
    return dict(cursor.fetchall())


def compare_columns(schema: str, table: Table, existing: Mapping[str, str]) -> tuple[tuple[Column, ...], list[str]]:
    """The columns of `table` missing from `existing`, and the SQL an operator must run first.

    Columns are matched by name: their order does not matter. A column whose type changed,
    or that this release no longer publishes, is not changed by the job: its data may be
    someone's, so the run stops and says what to run.
    """
    new = tuple(column for column in table.columns if column.name not in existing)
    to_run = []
    for column in table.columns:
        found = existing.get(column.name)
        if found is not None and found != column.type.sql:
            to_run.append(
                f"ALTER TABLE {schema}.{table.name} ALTER COLUMN {column.name} TYPE "
                f"{column.type.sql} USING {column.name}::{column.type.sql};  "
                f"-- stored as {found}, this release publishes {column.type.sql}")
    declared = set(table.column_names)
    to_run += [f"ALTER TABLE {schema}.{table.name} DROP COLUMN {name};  -- no longer published"
               for name in existing if name not in declared]
    return new, to_run


def ensure_schema(conn: psycopg2.extensions.connection, target: PostgresTarget,
                  catalog: Catalog) -> Evolution:
    """Create what does not exist yet, check what does, and say what the swap must add.

    Missing tables are created (empty); the run table gets its new columns at once (the run
    is recorded in it before anything is published). The new columns of a published table
    are added by `swap_in`, in the transaction that publishes their values. A changed type
    or a column that disappeared stops the run here, before anything is written.
    """
    new_columns: dict[str, tuple[Column, ...]] = {}
    to_run: list[str] = []
    with conn.cursor() as cursor:
        # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists,
        # which a role that only owns its schema does not have.
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (target.schema,))
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(target.schema)))
        for table in (catalog.runs, *catalog.state_tables, *catalog.published_tables):
            existing = _existing_columns(cursor, target.schema, table.name)
            if existing is None:
                cursor.execute(create_table_ddl(target.schema, table))
                for statement in comments_ddl(target.schema, table):
                    cursor.execute(statement)
                continue
            new, problems = compare_columns(target.schema, table, existing)
            to_run += problems
            new_columns[table.name] = new
        if to_run:
            conn.rollback()
            raise SchemaChangeError(
                f"the published tables of schema {target.schema} at {target.address} differ from "
                "what this release publishes; nothing was written. Review and run:\n  "
                + "\n  ".join(to_run))
        # Tables written row by row get their new columns at once.
        for table in (catalog.runs, *catalog.state_tables):
            for column in new_columns.pop(table.name, ()):
                cursor.execute(_add_column(target.schema, table.name, column))
        _update_comments(cursor, target.schema, catalog.runs, _stored_comments(cursor, target.schema))
    conn.commit()
    return Evolution({name: columns for name, columns in new_columns.items() if columns})


def _add_column(schema: str, table: str, column: Column) -> sql.Composable:
    # Without constraints: a NOT NULL column is added to an emptied table (see swap_in), and
    # a key is never new.
    return sql.SQL("ALTER TABLE {} ADD COLUMN {}").format(
        qualified(schema, table), _column_definition(column, constraints=False))


# --- a failed run --------------------------------------------------------------------------

def record_failure(conn: psycopg2.extensions.connection, target: PostgresTarget,
                   tables: Sequence[str], run_id: int, failed: Mapping[str, Any]) -> None:
    """Drop the run's staging tables and mark it failed, over a new connection if `conn` was lost.

    Best effort: when PostgreSQL stays unreachable the run is left 'running', and the next
    run marks it abandoned. The staging tables are this run's own (named by run id): no lock
    is needed to drop them.
    """
    def record(session: psycopg2.extensions.connection) -> None:
        drop_staging(session, target, tables, run_id)
        runs.fail_run(session, target, run_id, failed)

    try:
        return record(conn)
    except psycopg2.Error as error:
        log.warning("lost the connection to PostgreSQL at %s (%s); reconnecting to record "
                    "the failure of run %d", target.address, first_line(error), run_id)
    try:
        with contextlib.closing(connect(target)) as fresh:
            record(fresh)
    except (psycopg2.Error, PublishError) as error:
        log.warning("cannot record the failure of run %d: %s; the next run marks it abandoned",
                    run_id, first_line(error))


# --- publication -----------------------------------------------------------------------------

def staging_table(table: str, run_id: int) -> str:
    return f"{STAGING_PREFIX}{run_id}_{table}"


_DELETED_SUFFIX = "_deleted"


def deleted_keys_table(table: str, run_id: int) -> str:
    """The staging table of the keys an incremental run deletes from `table` (batch/analysis/delta.py)."""
    return f"{staging_table(table, run_id)}{_DELETED_SUFFIX}"


def prepare_staging(conn: psycopg2.extensions.connection, target: PostgresTarget,
                    tables: Sequence[Table], run_id: int) -> None:
    """Fresh, empty staging tables shaped as this release publishes `tables` (without their keys).

    Staging tables left by runs that died are dropped first: the caller holds the publish
    lock, so no live run owns them.
    """
    with conn.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s "
                       "AND starts_with(tablename, %s) ORDER BY tablename",
                       (target.schema, STAGING_PREFIX))
        for (leftover,) in cursor.fetchall():
            log.info("dropping %s.%s, left by a run that died", target.schema, leftover)
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(qualified(target.schema, leftover)))
        for table in tables:
            cursor.execute(sql.SQL("CREATE UNLOGGED TABLE {} ({})").format(
                qualified(target.schema, staging_table(table.name, run_id)),
                sql.SQL(", ").join(_column_definition(column, constraints=False)
                                   for column in table.columns)))
    conn.commit()


def drop_staging(conn: psycopg2.extensions.connection, target: PostgresTarget,
                 tables: Sequence[str], run_id: int) -> None:
    conn.rollback()
    with conn.cursor() as cursor:
        for table in tables:
            for name in (staging_table(table, run_id), deleted_keys_table(table, run_id)):
                cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(qualified(target.schema, name)))
    conn.commit()


def tidy_up(conn: psycopg2.extensions.connection, target: PostgresTarget, tables: Sequence[str],
            run_id: int, phase_seconds: Mapping[str, float]) -> None:
    """After a successful swap: drop the staging tables and complete the timings, best effort.

    The results are published and the run recorded as succeeded by then, so a failure here
    (a lost connection) is only reported; the next run drops the leftover staging tables.
    """
    try:
        drop_staging(conn, target, tables, run_id)
        runs.record_phases(conn, target, run_id, phase_seconds)
    except psycopg2.Error as error:
        log.warning("run %d is published, but tidying up after it failed: %s", run_id,
                    first_line(error))


def _copy_text(rows: pd.DataFrame, columns: tuple[Column, ...]) -> io.BytesIO:
    """`rows` as the CSV that `COPY ... (FORMAT csv)` reads, columns in catalog order.

    Written by Arrow's CSV writer (C++; pandas' writer took ten times longer): every string
    is quoted, so an empty name stays an empty string, and a missing value is an unquoted
    empty field, PostgreSQL's NULL; doubles are written in their shortest form that reads
    back to the same double; timestamps are UTC instants (PySpark's Arrow type of each
    column's Spark type, as batch.core.session.arrow_to_pandas converts them).
    """
    schema = pa.schema([pa.field(column.name, to_arrow_type(column.type.spark)) for column in columns])
    table = pa.Table.from_pandas(rows[list(schema.names)], schema=schema, preserve_index=False)
    text = io.BytesIO()
    pa_csv.write_csv(table, text, pa_csv.WriteOptions(include_header=False))
    text.seek(0)
    return text


def write_staging(conn: psycopg2.extensions.connection, target: PostgresTarget, table: Table,
                  rows: pd.DataFrame, staging: str, deleted_keys: pd.DataFrame | None = None) -> None:
    """Write `rows` (`Table.rows`) into the staging table `staging` with one COPY; with
    `deleted_keys` (an incremental run's changed rows only), those keys into `staging`_deleted.

    Published tables are small (one row per group, rolled up in the driver): the job's own
    connection writes them, in one round trip per table.
    """
    _copy(conn, target, staging, rows, table.columns)
    if deleted_keys is not None:
        key_columns = tuple(column for column in table.columns if column.name in table.key)
        keys_table = f"{staging}{_DELETED_SUFFIX}"
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE UNLOGGED TABLE {} ({})").format(
                qualified(target.schema, keys_table),
                sql.SQL(", ").join(_column_definition(column, constraints=False) for column in key_columns)))
        _copy(conn, target, keys_table, deleted_keys, key_columns)
    conn.commit()


def _copy(conn: psycopg2.extensions.connection, target: PostgresTarget, name: str,
          rows: pd.DataFrame, columns: tuple[Column, ...]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        qualified(target.schema, name), sql.SQL(", ").join(sql.Identifier(column.name) for column in columns))
    with conn.cursor() as cursor:
        cursor.copy_expert(statement.as_string(conn), _copy_text(rows, columns))


class StagingWriter:
    """Fills the run's staging tables on one thread of its own while the driver computes the next
    tables: Arrow's CSV writer and PostgreSQL's COPY release the GIL, so the writes run beside
    pandas' roll-ups on the other core. The connection is the writer's alone until it closes.

    Used as a context manager: leaving it waits for the write in flight, then raises the first
    failed write's error; leaving it by an exception drops the writes still queued.
    """

    def __init__(self, conn: psycopg2.extensions.connection, target: PostgresTarget,
                 tables: Sequence[Table], run_id: int) -> None:
        prepare_staging(conn, target, tables, run_id)
        self._conn, self._target, self._run_id = conn, target, run_id
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="staging")
        self._writes: list[Future[None]] = []

    def write(self, table: Table, rows: pd.DataFrame, deleted_keys: pd.DataFrame | None = None) -> None:
        self._writes.append(self._thread.submit(
            write_staging, self._conn, self._target, table, rows, staging_table(table.name, self._run_id),
            deleted_keys))

    def __enter__(self) -> StagingWriter:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if error_type is not None:
            for write in self._writes:
                write.cancel()
        self._thread.shutdown(wait=True)
        if error_type is None:
            for write in self._writes:
                write.result()


def published_row_counts(conn: psycopg2.extensions.connection, target: PostgresTarget,
                         tables: Sequence[str]) -> dict[str, int]:
    """How many rows each of the published `tables` holds now (they exist: ensure_schema)."""
    counts = {}
    with conn.cursor() as cursor:
        for table in tables:
            cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(qualified(target.schema, table)))
            counts[table] = cursor.fetchone()[0]
    conn.commit()
    return counts


def swap_in(conn: psycopg2.extensions.connection, target: PostgresTarget, catalog: Catalog,
            evolution: Evolution, run_id: int, record: Mapping[str, Any],
            also: Callable[[Any], None] | None = None,
            changed_only: Mapping[str, int] | None = None) -> dict[str, int]:
    """Replace every published table by its staging table and record the run, in one transaction;
    `also(cursor)` writes in the same transaction (the incremental state: batch/analysis/state.py).
    `changed_only`: the tables whose staging table holds only their changed rows, with the keys
    to delete beside it (batch/analysis/delta.py), and how many rows each holds once swapped.

    Columns new in this release are added here, to the emptied table, so that readers never
    see them empty; columns are copied by name, whatever their order in the published table.
    """
    rows_written: dict[str, int] = {}
    try:
        with conn.cursor() as cursor:
            changed_only = changed_only or {}
            comments = _stored_comments(cursor, target.schema)
            for table in catalog.published_tables:
                published = qualified(target.schema, table.name)
                columns = sql.SQL(", ").join(map(sql.Identifier, table.column_names))
                if table.name in changed_only:
                    # Never with new columns: the job stages such a table whole.
                    cursor.execute(sql.SQL("DELETE FROM {} p USING {} k WHERE {}").format(
                        published, qualified(target.schema, deleted_keys_table(table.name, run_id)),
                        sql.SQL(" AND ").join(sql.SQL("p.{name} = k.{name}").format(name=sql.Identifier(name))
                                              for name in table.key)))
                else:
                    cursor.execute(sql.SQL("DELETE FROM {}").format(published))
                    for column in evolution.new_columns.get(table.name, ()):
                        log.info("adding column %s to %s.%s", column.name, target.schema, table.name)
                        cursor.execute(_add_column(target.schema, table.name, column))
                cursor.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                    published, columns, columns,
                    qualified(target.schema, staging_table(table.name, run_id))))
                rows_written[table.name] = changed_only.get(table.name, cursor.rowcount)
                _update_comments(cursor, target.schema, table, comments)
            for view in catalog.views:
                _recreate_view(cursor, target.schema, view)
            if also is not None:
                also(cursor)
            statement, values = runs.end_run_statement(target, run_id, "succeeded",
                                                        {**record, "rows_written": rows_written})
            cursor.execute(statement, values)
        conn.commit()
    except psycopg2.Error as error:
        conn.rollback()
        raise PublishError(f"publishing to {target.address} failed, previous results kept: "
                           f"{first_line(error)}") from None
    return rows_written


def _recreate_view(cursor: Any, schema: str, view: View) -> None:
    """CREATE OR REPLACE, else DROP and CREATE: a view can only gain columns at its end in place."""
    cursor.execute("SAVEPOINT recreate_view")
    try:
        for statement in _view_ddl(schema, view, replace=True):
            cursor.execute(statement)
    except psycopg2.errors.InvalidTableDefinition:
        # Its columns changed order (a table it selects * from gained columns): replace it
        # whole. A user's view on this view blocks the DROP, and the run says so.
        cursor.execute("ROLLBACK TO SAVEPOINT recreate_view")
        cursor.execute(sql.SQL("DROP VIEW {}").format(qualified(schema, view.name)))
        for statement in _view_ddl(schema, view, replace=False):
            cursor.execute(statement)
    cursor.execute("RELEASE SAVEPOINT recreate_view")
