"""The PostgreSQL sink: explicit DDL derived from the groupings, atomic publication, run records.

Spark writes each table's rows through its JDBC data source into an unlogged staging table;
one PostgreSQL transaction then replaces the published rows by the staged ones (DELETE +
INSERT, which is MVCC-safe: a reader sees the complete previous results or the complete new
ones) and marks the run succeeded. Published tables are never dropped, so their indexes,
grants and dependent views stay. A session-level advisory lock keeps two runs against the
same schema from interleaving; it lives as long as the job's connection, so a run that loses
that connection (a PostgreSQL restart) fails rather than publish without it, and its staging
tables carry its run id so that nothing it still writes can reach another run's.
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
from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from batch.aggregations import Grouping, OutputColumn, Thresholds, output_columns
from batch.config import Secret, parse_identifier
from batch.errors import ConfigurationError, PublishError
from batch.spark_errors import spark_error_lines

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

    def __post_init__(self) -> None:
        # Every statement quotes the schema, but a name that needs quoting is refused anyway:
        # it is a configuration mistake (or an attack), better reported before anything runs.
        try:
            parse_identifier(self.schema)
        except ValueError as error:
            raise ConfigurationError(f"POSTGRES_SCHEMA: {error}") from None

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


def _first_line(error: object) -> str:
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
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
            conn.commit()
        except psycopg2.Error as error:
            # The session is gone, and the lock with it; the error that ended the run matters more.
            log.warning("cannot release the publish lock (%s); it ended with the session",
                        _first_line(error))


@contextmanager
def database_errors(target: PostgresTarget) -> Iterator[None]:
    """Report any psycopg2 error in the block (a lost connection included) as a PublishError."""
    try:
        yield
    except psycopg2.Error as error:
        raise PublishError(f"PostgreSQL at {target.address} failed: {_first_line(error)}; "
                           "previous results kept") from None


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
        # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists,
        # which a role that only owns its schema does not have.
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (target.schema,))
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(target.schema)))
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
    values = tuple(json.dumps(value, sort_keys=True) if isinstance(value, (dict, list))
                   else _storable(value) if isinstance(value, str) else value
                   for value in record.values())
    return statement, (status, *values, run_id)


def _storable(text: str) -> str:
    # An error message can quote input data, and PostgreSQL text cannot hold a NUL character.
    return text.replace("\x00", "\\x00")


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


def record_failure(conn: psycopg2.extensions.connection, target: PostgresTarget,
                   tables: Sequence[str], run_id: int, record: Mapping[str, Any]) -> None:
    """Drop the run's staging tables and mark it failed, over a new connection if `conn` was lost.

    Best effort: when PostgreSQL stays unreachable the run is left 'running', and the next
    run marks it abandoned.
    """
    try:
        drop_staging(conn, target, tables, run_id)
        fail_run(conn, target, run_id, record)
        return
    except psycopg2.Error as error:
        log.warning("lost the connection to PostgreSQL at %s (%s); reconnecting to record "
                    "the failure of run %d", target.address, _first_line(error), run_id)
    try:
        fresh = connect(target)
    except PublishError as error:
        log.warning("cannot record the failure of run %d: %s; the next run marks it abandoned",
                    run_id, error)
        return
    try:
        # The staging tables are this run's own (named by run id): no lock is needed to drop them.
        drop_staging(fresh, target, tables, run_id)
        fail_run(fresh, target, run_id, record)
    except psycopg2.Error as error:
        log.warning("cannot record the failure of run %d: %s; the next run marks it abandoned",
                    run_id, _first_line(error))
    finally:
        fresh.close()


# --- publication -----------------------------------------------------------------------------

def staging_table(table: str, run_id: int) -> str:
    return f"{STAGING_PREFIX}{run_id}_{table}"


def prepare_staging(conn: psycopg2.extensions.connection, target: PostgresTarget,
                    tables: Sequence[str], run_id: int) -> None:
    """Fresh, empty staging tables shaped like the published ones (without their constraints).

    Staging tables left by runs that died are dropped first: the caller holds the publish
    lock, so no live run owns them.
    """
    with conn.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s "
                       "AND starts_with(tablename, %s) ORDER BY tablename",
                       (target.schema, STAGING_PREFIX))
        for (leftover,) in cursor.fetchall():
            log.info("dropping %s.%s, left by a run that died", target.schema, leftover)
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_ident(target.schema, leftover)))
        for table in tables:
            cursor.execute(sql.SQL("CREATE UNLOGGED TABLE {} (LIKE {})").format(
                _ident(target.schema, staging_table(table, run_id)), _ident(target.schema, table)))
    conn.commit()


def drop_staging(conn: psycopg2.extensions.connection, target: PostgresTarget,
                 tables: Sequence[str], run_id: int) -> None:
    conn.rollback()
    with conn.cursor() as cursor:
        for table in tables:
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(
                _ident(target.schema, staging_table(table, run_id))))
    conn.commit()


def tidy_up(conn: psycopg2.extensions.connection, target: PostgresTarget, tables: Sequence[str],
            run_id: int, phase_seconds: Mapping[str, float]) -> None:
    """After a successful swap: drop the staging tables and complete the timings, best effort.

    The results are published and the run recorded as succeeded by then, so a failure here
    (a lost connection) is only reported; the next run drops the leftover staging tables.
    """
    try:
        drop_staging(conn, target, tables, run_id)
        record_phases(conn, target, run_id, phase_seconds)
    except psycopg2.Error as error:
        log.warning("run %d is published, but tidying up after it failed: %s", run_id,
                    _first_line(error))


def _quoted_name(schema: str, table: str) -> str:
    """`"schema"."table"` for Spark's dbtable option, quoted as sql.Identifier quotes."""
    return ".".join('"' + name.replace('"', '""') + '"' for name in (schema, table))


def write_staging(stats_df: DataFrame, target: PostgresTarget, staging: str) -> None:
    """Append `stats_df` to the staging table `staging` (see `staging_table`) through Spark's JDBC data source."""
    try:
        (stats_df.write.format("jdbc")
         .option("url", target.jdbc_url)
         .option("driver", JDBC_DRIVER_CLASS)
         .option("dbtable", _quoted_name(target.schema, staging))
         .option("user", target.user)
         .option("password", target.password.reveal())
         .option("batchsize", "10000")
         .mode("append")
         .save())
    except (Py4JJavaError, CapturedException) as error:
        # The root cause says what PostgreSQL refused; the error around it quotes every value.
        _, cause = spark_error_lines(error)
        raise PublishError(f"writing {target.schema}.{staging} at {target.address} failed: "
                           f"{cause}; previous results kept") from None


def swap_in(conn: psycopg2.extensions.connection, target: PostgresTarget,
            groupings: Sequence[Grouping], thresholds: Thresholds, timezone: str, run_id: int,
            record: Mapping[str, Any]) -> dict[str, int]:
    """Replace every published table by its staging table and record the run, in one transaction."""
    rows_written: dict[str, int] = {}
    try:
        with conn.cursor() as cursor:
            for grouping in groupings:
                table = _ident(target.schema, grouping.table)
                staging = _ident(target.schema, staging_table(grouping.table, run_id))
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
