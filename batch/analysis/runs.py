"""The run table, batch_runs: a run recorded as running when it starts, its settings completed
once its data is read, its end recorded (failed here, succeeded by the swap that publishes its
results, batch/analysis/publish.py), its timings completed after.

Statements are composed from {column: value} mappings named as the catalog names the columns
(batch/analysis/catalog.py RUNS); a name that is not one of them is refused.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import psycopg2
from psycopg2 import sql

from batch.analysis.catalog import RUNS
from batch.core.postgres import PostgresTarget, qualified

ABANDONED_MESSAGE = "the process ended without recording a result"


def _runs(target: PostgresTarget) -> sql.Composed:
    return qualified(target.schema, RUNS.name)


def _storable(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    # An error message can quote input data, and PostgreSQL text cannot hold a NUL character.
    return value.replace("\x00", "\\x00") if isinstance(value, str) else value


def _columns(record: Mapping[str, Any]) -> tuple[list[sql.Identifier], tuple[Any, ...]]:
    """The columns of `record` and their values as PostgreSQL stores them (JSON as text)."""
    unknown = sorted(set(record) - set(RUNS.column_names))
    if unknown:
        raise ValueError(f"{RUNS.name} has no column {', '.join(unknown)}")
    return [sql.Identifier(name) for name in record], tuple(map(_storable, record.values()))


def _assignments(record: Mapping[str, Any]) -> tuple[sql.Composable, tuple[Any, ...]]:
    """`column = %s, ...` for the columns of `record`, and their values."""
    columns, values = _columns(record)
    return sql.SQL(", ").join(sql.SQL("{} = %s").format(column) for column in columns), values


def start_run(conn: psycopg2.extensions.connection, target: PostgresTarget, job: str,
              input_path: str, settings: Mapping[str, Any]) -> int:
    """Record a running run; runs left 'running' by a dead process are marked abandoned."""
    abandoned, abandoned_values = _assignments({"error_message": ABANDONED_MESSAGE})
    columns, values = _columns({"job": job, "input_path": input_path, "settings": settings})
    with conn.cursor() as cursor:
        # The caller holds the publish lock, so no other run of this schema is alive.
        cursor.execute(sql.SQL("UPDATE {} SET status = 'abandoned', finished_at = now(), {} "
                               "WHERE status = 'running'").format(_runs(target), abandoned),
                       abandoned_values)
        cursor.execute(sql.SQL("INSERT INTO {} (status, started_at, {}) VALUES ('running', now(), {}) "
                               "RETURNING run_id").format(
            _runs(target), sql.SQL(", ").join(columns), sql.SQL(", ").join(sql.Placeholder() * len(values))),
            values)
        run_id = cursor.fetchone()[0]
    conn.commit()
    return run_id


def add_run_settings(conn: psycopg2.extensions.connection, target: PostgresTarget, run_id: int,
                     settings: Mapping[str, Any]) -> None:
    """Add entries to a run's recorded settings: what its settings meant for its data (the
    public holidays of the data's dates), known once the data is read."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("UPDATE {} SET settings = settings || %s::jsonb WHERE run_id = %s").format(
            _runs(target)), (_storable(dict(settings)), run_id))
    conn.commit()


def end_run_statement(target: PostgresTarget, run_id: int, status: str,
                      record: Mapping[str, Any]) -> tuple[sql.Composable, tuple[Any, ...]]:
    """The UPDATE that ends run `run_id` with `status`, and the columns of `record` (its run
    record: RunSummary.run_record, with rows_written when it succeeded), and its values."""
    assignments, values = _assignments(record)
    statement = sql.SQL("UPDATE {} SET status = %s, finished_at = now(), {} WHERE run_id = %s").format(
        _runs(target), assignments)
    return statement, (status, *values, run_id)


def record_phases(conn: psycopg2.extensions.connection, target: PostgresTarget, run_id: int,
                  phase_seconds: Mapping[str, float]) -> None:
    """Complete the timings of a finished run (the publish phase ends after its commit)."""
    assignments, values = _assignments({"phase_seconds": dict(phase_seconds)})
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("UPDATE {} SET {} WHERE run_id = %s").format(_runs(target), assignments),
                       (*values, run_id))
    conn.commit()


def fail_run(conn: psycopg2.extensions.connection, target: PostgresTarget, run_id: int,
             record: Mapping[str, Any]) -> None:
    conn.rollback()
    statement, values = end_run_statement(target, run_id, "failed", record)
    with conn.cursor() as cursor:
        cursor.execute(statement, values)
    conn.commit()
