"""The PostgreSQL sink: explicit DDL derived from the groupings, atomic publication, run records.

Spark writes each table's rows through its JDBC data source into an unlogged staging table;
one PostgreSQL transaction then replaces the published rows by the staged ones (DELETE +
INSERT, which is MVCC-safe: a reader sees the complete previous results or the complete new
ones) and marks the run succeeded. Published tables are never dropped, so their indexes,
grants and dependent views stay. A session-level advisory lock keeps two runs against the
same schema from interleaving.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from batch.aggregations import Grouping, OutputColumn, Thresholds, output_columns
from batch.config import Secret
from batch.errors import PublishError

log = logging.getLogger(__name__)

JDBC_DRIVER_CLASS = "org.postgresql.Driver"
RUNS_TABLE = "batch_runs"
STAGING_PREFIX = "_staging_"
LATEST_WEEK_VIEW = "latest_complete_week_by_classroom"

_SQL_TYPES: dict[type, str] = {
    T.StringType: "text",
    T.IntegerType: "integer",
    T.LongType: "bigint",
    T.DoubleType: "double precision",
    T.DateType: "date",
    T.TimestampType: "timestamp with time zone",
}


@dataclass(frozen=True)
class PostgresTarget:
    """Where results are published. The password is only revealed to the drivers."""

    host: str
    port: int
    database: str
    user: str
    password: Secret
    schema: str
    connect_attempts: int = 5
    lock_timeout_s: float = 600.0

    @property
    def jdbc_url(self) -> str:
        # Batched inserts are rewritten into multi-row INSERTs: far fewer round trips.
        return (f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"
                "?reWriteBatchedInserts=true")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}/{self.database} as {self.user}"


def sql_type(spark_type: T.DataType) -> str:
    return _SQL_TYPES[type(spark_type)]


# --- connections ---------------------------------------------------------------------------

def connect(target: PostgresTarget) -> psycopg2.extensions.connection:
    """Connect with bounded retries and exponential backoff; errors name the host, never the password."""
    delay = 0.5
    for attempt in range(1, target.connect_attempts + 1):
        try:
            return psycopg2.connect(
                host=target.host, port=target.port, dbname=target.database, user=target.user,
                password=target.password.reveal(), connect_timeout=10,
                application_name="indoor-air-batch")
        except psycopg2.OperationalError as error:
            reason = _first_line(error)
            if attempt == target.connect_attempts or "password authentication failed" in reason:
                raise PublishError(
                    f"cannot connect to PostgreSQL at {target.address} after {attempt} "
                    f"attempt(s): {reason}") from None
            log.warning("PostgreSQL at %s:%s not reachable (attempt %d/%d): %s; retrying in %.1fs",
                        target.host, target.port, attempt, target.connect_attempts, reason, delay)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextmanager
def publish_lock(conn: psycopg2.extensions.connection, target: PostgresTarget) -> Iterator[None]:
    """Hold the schema's advisory lock for the block; wait at most `lock_timeout_s` for it."""
    key = f"indoor-air-batch:{target.schema}"
    deadline = time.monotonic() + target.lock_timeout_s
    with conn.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,))
            conn.commit()
            if cursor.fetchone()[0]:
                break
            if time.monotonic() >= deadline:
                raise PublishError(
                    f"another run is publishing to schema {target.schema} at {target.address}; "
                    f"gave up after waiting {target.lock_timeout_s:g}s")
            log.warning("another run holds the publish lock of schema %s; waiting", target.schema)
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    try:
        yield
    finally:
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
        conn.commit()


# --- DDL -----------------------------------------------------------------------------------

def _ident(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def grouping_ddl(schema: str, grouping: Grouping, thresholds: Thresholds) -> list[sql.Composable]:
    columns = output_columns(grouping, thresholds)
    table = _ident(schema, grouping.table)
    definitions = [
        sql.SQL("{} {}{}").format(sql.Identifier(column.name), sql.SQL(sql_type(column.spark_type)),
                                  sql.SQL("" if column.nullable else " NOT NULL"))
        for column in columns
    ]
    definitions.append(sql.SQL("PRIMARY KEY ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, grouping.key_names))))
    return [sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
        table, sql.SQL(", ").join(definitions))]


def grouping_comments(schema: str, grouping: Grouping, thresholds: Thresholds) -> list[sql.Composable]:
    return _comments(schema, grouping.table, grouping.description + "; published by the nightly "
                     "batch analysis, replaced as a whole by each successful run (see batch_runs)",
                     output_columns(grouping, thresholds))


def _comments(schema: str, table: str, description: str,
              columns: Sequence[OutputColumn]) -> list[sql.Composable]:
    statements: list[sql.Composable] = [sql.SQL("COMMENT ON TABLE {} IS {}").format(
        _ident(schema, table), sql.Literal(description))]
    statements += [
        sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
            _ident(schema, table), sql.Identifier(column.name), sql.Literal(column.comment))
        for column in columns
    ]
    return statements


RUN_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("run_id", "bigserial PRIMARY KEY", "identifier of the run"),
    ("job", "text NOT NULL", "job that ran (analysis)"),
    ("status", "text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned'))",
     "running, succeeded, failed, or abandoned (the process died; found by a later run)"),
    ("started_at", "timestamp with time zone NOT NULL", "when the run started"),
    ("finished_at", "timestamp with time zone", "when the run ended (null while running)"),
    ("input_path", "text NOT NULL", "raw Parquet input that was read"),
    ("input_files", "integer", "number of Parquet files read"),
    ("skipped_files", "jsonb", "unreadable files skipped (SKIP_CORRUPT_FILES), as a JSON array"),
    ("rows_read", "bigint", "readings read from the input"),
    ("rows_used", "bigint", "readings that entered the statistics"),
    ("rows_excluded", "jsonb", "readings excluded from the statistics, per reason (JSON object)"),
    ("values_nulled", "jsonb",
     "metric values outside the physical range, treated as not measured, per metric (JSON object)"),
    ("rows_written", "jsonb", "rows published per table (JSON object)"),
    ("phase_seconds", "jsonb", "wall time per phase of the run, seconds (JSON object)"),
    ("settings", "jsonb", "settings of the run (time zone, thresholds...; never the password)"),
    ("error_message", "text", "why the run failed (null on success)"),
)


def runs_ddl(schema: str) -> list[sql.Composable]:
    definitions = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(definition))
        for name, definition, _ in RUN_COLUMNS)
    table = _ident(schema, RUNS_TABLE)
    statements: list[sql.Composable] = [
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table, definitions),
        sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(
            "One row per run of the batch jobs: what was read, excluded, nulled and published")),
    ]
    statements += [
        sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(table, sql.Identifier(name), sql.Literal(comment))
        for name, _, comment in RUN_COLUMNS
    ]
    return statements


def views_ddl(schema: str, timezone: str) -> list[sql.Composable]:
    view = _ident(schema, LATEST_WEEK_VIEW)
    weekly = _ident(schema, "classroom_weekly_stats")
    # A week is complete once data newer than its Sunday has arrived: judged against the
    # newest reading overall, so a classroom whose sensors went silent keeps its last full week.
    return [
        sql.SQL(
            "CREATE OR REPLACE VIEW {view} AS "
            "WITH cutoff AS (SELECT (max(last_reading_at) AT TIME ZONE {tz})::date AS data_until "
            "FROM {weekly}) "
            "SELECT DISTINCT ON (w.institute, w.classroom) w.* FROM {weekly} w, cutoff "
            "WHERE w.week_start + 7 <= cutoff.data_until "
            "ORDER BY w.institute, w.classroom, w.week_start DESC"
        ).format(view=view, weekly=weekly, tz=sql.Literal(timezone)),
        sql.SQL("COMMENT ON VIEW {} IS {}").format(view, sql.Literal(
            "For each classroom, the statistics of its latest complete ISO week (a week whose "
            f"Sunday, in {timezone}, is before the day of the newest reading); same columns "
            "as classroom_weekly_stats")),
    ]


def ensure_schema(conn: psycopg2.extensions.connection, target: PostgresTarget,
                  groupings: Sequence[Grouping], thresholds: Thresholds) -> None:
    """Create the schema, the run table and every published table that does not exist yet."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(target.schema)))
        for statement in runs_ddl(target.schema):
            cursor.execute(statement)
        for grouping in groupings:
            for statement in grouping_ddl(target.schema, grouping, thresholds):
                cursor.execute(statement)
            _check_columns(cursor, target.schema, grouping, thresholds)
    conn.commit()


def _check_columns(cursor: Any, schema: str, grouping: Grouping, thresholds: Thresholds) -> None:
    cursor.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(format('%%I.%%I', %s, %s)) AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum",
        (schema, grouping.table))
    found = [(name, kind) for name, kind in cursor.fetchall()]
    expected = [(c.name, sql_type(c.spark_type)) for c in output_columns(grouping, thresholds)]
    if found != expected:
        raise PublishError(
            f"table {schema}.{grouping.table} exists with columns {found}, but this version "
            f"publishes {expected}; migrate or drop the table (no data was changed)")


# --- runs ----------------------------------------------------------------------------------

def start_run(conn: psycopg2.extensions.connection, target: PostgresTarget, job: str,
              input_path: str, settings: Mapping[str, Any]) -> int:
    """Record a running run; runs left 'running' by a dead process are marked abandoned."""
    runs = _ident(target.schema, RUNS_TABLE)
    with conn.cursor() as cursor:
        # The caller holds the publish lock, so no other run of this schema is alive.
        cursor.execute(sql.SQL(
            "UPDATE {} SET status = 'abandoned', finished_at = now(), error_message = "
            "'the process ended without recording a result' WHERE status = 'running'").format(runs))
        cursor.execute(sql.SQL(
            "INSERT INTO {} (job, status, started_at, input_path, settings) "
            "VALUES (%s, 'running', now(), %s, %s) RETURNING run_id").format(runs),
            (job, input_path, json.dumps(settings, sort_keys=True, default=str)))
        run_id = cursor.fetchone()[0]
    conn.commit()
    return run_id


def _run_update(target: PostgresTarget, run_id: int, status: str,
                record: Mapping[str, Any]) -> tuple[sql.Composable, tuple[Any, ...]]:
    columns = [name for name in record]
    statement = sql.SQL("UPDATE {} SET status = %s, finished_at = now(), {} WHERE run_id = %s").format(
        _ident(target.schema, RUNS_TABLE),
        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in columns))
    values = tuple(json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
                   for value in record.values())
    return statement, (status, *values, run_id)


def record_phases(conn: psycopg2.extensions.connection, target: PostgresTarget, run_id: int,
                  phase_seconds: Mapping[str, float]) -> None:
    """Complete the timings of a finished run (the publish phase ends after its commit)."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("UPDATE {} SET phase_seconds = %s WHERE run_id = %s").format(
            _ident(target.schema, RUNS_TABLE)), (json.dumps(phase_seconds, sort_keys=True), run_id))
    conn.commit()


def fail_run(conn: psycopg2.extensions.connection, target: PostgresTarget, run_id: int,
             record: Mapping[str, Any]) -> None:
    conn.rollback()
    statement, values = _run_update(target, run_id, "failed", record)
    with conn.cursor() as cursor:
        cursor.execute(statement, values)
    conn.commit()


# --- publication -----------------------------------------------------------------------------

def staging_table(table: str) -> str:
    return STAGING_PREFIX + table


def prepare_staging(conn: psycopg2.extensions.connection, target: PostgresTarget,
                    tables: Sequence[str]) -> None:
    """Fresh, empty staging tables shaped like the published ones (without their constraints)."""
    with conn.cursor() as cursor:
        for table in tables:
            staging = _ident(target.schema, staging_table(table))
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging))
            cursor.execute(sql.SQL("CREATE UNLOGGED TABLE {} (LIKE {})").format(
                staging, _ident(target.schema, table)))
    conn.commit()


def drop_staging(conn: psycopg2.extensions.connection, target: PostgresTarget,
                 tables: Sequence[str]) -> None:
    conn.rollback()
    with conn.cursor() as cursor:
        for table in tables:
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(
                _ident(target.schema, staging_table(table))))
    conn.commit()


def write_staging(stats_df: DataFrame, target: PostgresTarget, table: str) -> None:
    """Append `stats_df` to the table's staging table through Spark's JDBC data source."""
    (stats_df.write.format("jdbc")
     .option("url", target.jdbc_url)
     .option("driver", JDBC_DRIVER_CLASS)
     .option("dbtable", f'"{target.schema}"."{staging_table(table)}"')
     .option("user", target.user)
     .option("password", target.password.reveal())
     .option("batchsize", "10000")
     .mode("append")
     .save())


def swap_in(conn: psycopg2.extensions.connection, target: PostgresTarget,
            groupings: Sequence[Grouping], thresholds: Thresholds, timezone: str, run_id: int,
            record: Mapping[str, Any]) -> dict[str, int]:
    """Replace every published table by its staging table and record the run, in one transaction."""
    rows_written: dict[str, int] = {}
    try:
        with conn.cursor() as cursor:
            for grouping in groupings:
                table = _ident(target.schema, grouping.table)
                staging = _ident(target.schema, staging_table(grouping.table))
                cursor.execute(sql.SQL("DELETE FROM {}").format(table))
                cursor.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(table, staging))
                rows_written[grouping.table] = cursor.rowcount
                for statement in grouping_comments(target.schema, grouping, thresholds):
                    cursor.execute(statement)
            for statement in views_ddl(target.schema, timezone):
                cursor.execute(statement)
            statement, values = _run_update(target, run_id, "succeeded",
                                            {**record, "rows_written": rows_written})
            cursor.execute(statement, values)
        conn.commit()
    except psycopg2.Error as error:
        conn.rollback()
        raise PublishError(f"publishing to {target.address} failed, previous results kept: "
                           f"{_first_line(error)}") from None
    return rows_written
