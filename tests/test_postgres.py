"""The sink's schema evolution, against a database published by release 0.1.0 (its DDL as a fixture).

A new release adds its new columns in place: grants, indexes and the users' own views on the
published tables stay; a changed type or a column that disappeared stops the run before
anything is written. The new columns here come from a test-only metric (battery_voltage, a
contract column the analysis does not summarise): adding a metric is the catalog and the
computation, nothing else.
"""
from __future__ import annotations

import datetime as dt
import math
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg2 import sql
from pyspark.sql import SparkSession

from batch.analysis.statistics import GROUPINGS
from batch.core.contract import METRICS, Metric
from batch.analysis.publish import SchemaChangeError
from batch.core.postgres import PostgresTarget
from tests import independent
from tests.test_analysis import analysis_settings, connect, run

FIXTURE = Path(__file__).parent / "fixtures" / "release_0_1_0_schema.sql"
BATTERY_VOLTAGE = Metric("battery_voltage", "V", "battery voltage")
STATISTICS = ("count", "mean", "min", "max", "stddev")
UTC = dt.timezone.utc


def create_release_0_1_0(target: PostgresTarget) -> None:
    with connect(target) as conn, conn.cursor() as cursor:
        cursor.execute(FIXTURE.read_text(encoding="utf-8").replace("release_0_1_0", target.schema))


def execute(target: PostgresTarget, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    schema = sql.Identifier(target.schema)
    with connect(target) as conn, conn.cursor() as cursor:
        cursor.execute(sql.SQL(statement).format(*args, schema=schema))
        return cursor.fetchall() if cursor.description else []


def insert_old_row(target: PostgresTarget, table: str) -> None:
    """A row as the previous release published it: every NOT NULL column filled."""
    placeholder = {"text": "Old", "bigint": 0, "integer": 1, "date": dt.date(2020, 1, 6),
                   "timestamp with time zone": dt.datetime(2020, 1, 6, tzinfo=UTC),
                   "double precision": 0.0}
    with connect(target) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT column_name, data_type FROM information_schema.columns "
                       "WHERE table_schema = %s AND table_name = %s AND is_nullable = 'NO'",
                       (target.schema, table))
        columns = cursor.fetchall()
        cursor.execute(sql.SQL("INSERT INTO {}.{} ({}) VALUES ({})").format(
            sql.Identifier(target.schema), sql.Identifier(table),
            sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns),
            sql.SQL(", ").join(sql.Literal(placeholder[kind]) for _, kind in columns)))


def raw_folder(tmp_path: Path) -> Path:
    at = lambda day, hour: dt.datetime(2025, 3, day, hour, tzinfo=UTC)  # noqa: E731
    folder = tmp_path / "raw"
    folder.mkdir()
    pq.write_table(pa.table({
        "DevEui": ["a1", "a1", "b2"],
        "institute": ["Liceo", "Liceo", "Liceo"],
        "classroom": ["3A", "3A", "3B"],
        "sendtime": pa.array([at(3, 9), at(3, 10), at(4, 9)], pa.timestamp("us", tz="UTC")),
        "co2": [800.0, 1200.0, 600.0],
        # 7.0 V is outside the contract's 0-5 V: nulled, counted in values_nulled.
        "battery_voltage": [3.0, 3.2, 7.0],
    }), folder / "part-0.parquet")
    return folder


def column_comments(target: PostgresTarget, table: str) -> dict[str, str]:
    rows = execute(target, "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a "
                           "WHERE a.attrelid = to_regclass({}) AND a.attnum > 0 AND NOT a.attisdropped",
                   sql.Literal(f"{target.schema}.{table}"))
    return dict(rows)


def test_a_database_of_release_0_1_0_takes_new_columns_and_keeps_grants_indexes_and_views(
        spark: SparkSession, make_target: Any, tmp_path: Path) -> None:
    target = make_target()
    create_release_0_1_0(target)
    reader = f"reader_{uuid.uuid4().hex[:8]}"
    execute(target, f"CREATE ROLE {reader} NOLOGIN")
    execute(target, f"GRANT USAGE ON SCHEMA {{schema}} TO {reader}")
    execute(target, f"GRANT SELECT ON {{schema}}.classroom_stats TO {reader}")
    execute(target, "CREATE INDEX classroom_stats_by_co2 ON {schema}.classroom_stats (co2_mean)")
    execute(target, "CREATE VIEW {schema}.my_classrooms AS SELECT institute, classroom, co2_mean "
                    "FROM {schema}.classroom_stats")
    insert_old_row(target, "classroom_stats")

    settings = analysis_settings(target, raw_folder(tmp_path))
    # This release, then one that summarises one more metric: the second adds its columns to
    # every table, and the view (whose own column ends it) is replaced whole.
    assert run(spark, settings).status == "succeeded"
    summary = run(spark, settings, metrics=METRICS + (BATTERY_VOLTAGE,))

    assert summary.status == "succeeded"
    assert summary.values_nulled["battery_voltage"] == 1
    # The grant, the index and the user's view survived, and the view reads the new rows.
    assert execute(target, "SELECT has_table_privilege({}, {}, 'SELECT')", sql.Literal(reader),
                   sql.Literal(f"{target.schema}.classroom_stats")) == [(True,)]
    assert execute(target, "SELECT to_regclass({}) IS NOT NULL",
                   sql.Literal(f"{target.schema}.classroom_stats_by_co2")) == [(True,)]
    assert execute(target, "SELECT institute, classroom, co2_mean FROM {schema}.my_classrooms "
                           "ORDER BY classroom") == [("Liceo", "3A", 1000.0), ("Liceo", "3B", 600.0)]
    # Every published table gained the metric's columns, commented with its unit.
    for grouping in GROUPINGS:
        comments = column_comments(target, grouping.table)
        for statistic in STATISTICS:
            assert "battery voltage" in comments[f"battery_voltage_{statistic}"]
        assert comments["battery_voltage_mean"].endswith(", V")
    with connect(target) as conn:
        rows = independent.published_table(conn, target.schema, "classroom_stats")
    by_room = {row["classroom"]: row for row in rows}
    assert set(by_room) == {"3A", "3B"}  # the old row is gone
    # 3A: 3.0 and 3.2 V -> mean 3.1, sample stddev sqrt((0.1^2 + 0.1^2) / 1) = 0.1414...
    three_a = by_room["3A"]
    assert (three_a["battery_voltage_count"], three_a["battery_voltage_min"],
            three_a["battery_voltage_max"]) == (2, 3.0, 3.2)
    assert three_a["battery_voltage_mean"] == pytest.approx(3.1, rel=1e-12)
    assert three_a["battery_voltage_stddev"] == pytest.approx(math.sqrt(0.02), rel=1e-9)
    assert (by_room["3B"]["battery_voltage_count"], by_room["3B"]["battery_voltage_mean"]) == (0, None)
    # The view was recreated with this release's columns.
    view_columns = [name for name, in execute(
        target, "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass({}) AND attnum > 0 "
                "ORDER BY attnum", sql.Literal(f"{target.schema}.latest_complete_week_by_classroom"))]
    assert view_columns[-1] == "weeks_behind_institute"
    assert "battery_voltage_mean" in view_columns


@pytest.mark.parametrize("change, expected_sql", [
    ("ALTER TABLE {schema}.classroom_stats ALTER COLUMN co2_mean TYPE real",
     "ALTER COLUMN co2_mean TYPE double precision USING co2_mean::double precision"),
    ("ALTER TABLE {schema}.weekly_stats ADD COLUMN my_note text",
     "ALTER TABLE {schema}.weekly_stats DROP COLUMN my_note"),
])
def test_a_changed_type_or_a_column_that_disappeared_stops_the_run_before_anything_is_written(
        spark: SparkSession, make_target: Any, tmp_path: Path, change: str, expected_sql: str) -> None:
    target = make_target()
    create_release_0_1_0(target)
    insert_old_row(target, "classroom_stats")
    execute(target, change)
    with connect(target) as conn:
        before = independent.published_table(conn, target.schema, "classroom_stats")

    with pytest.raises(SchemaChangeError) as raised:
        run(spark, analysis_settings(target, raw_folder(tmp_path)))

    assert raised.value.exit_code == 4
    assert expected_sql.format(schema=target.schema) in str(raised.value)
    with connect(target) as conn:
        assert independent.published_table(conn, target.schema, "classroom_stats") == before
    assert execute(target, "SELECT count(*) FROM {schema}.batch_runs") == [(0,)]


def test_the_latest_week_view_flags_a_classroom_behind_its_institute(
        spark: SparkSession, make_target: Any, tmp_path: Path) -> None:
    # 3A reports on the Mondays of ISO weeks 10-13 of 2025, 3B only in week 10. The newest
    # reading (Monday 24 March) completes week 12 (Monday 17 + 7 <= 24): 3A's latest complete
    # week is week 12; 3B's is week 10, two weeks behind the newest complete week of Liceo.
    # Scuola's only classroom is up to date with itself.
    mondays = [dt.datetime(2025, 3, day, 9, tzinfo=UTC) for day in (3, 10, 17, 24)]
    rows = [("a1", "Liceo", "3A", monday) for monday in mondays]
    rows += [("b2", "Liceo", "3B", mondays[0]), ("c3", "Scuola", "1C", mondays[0])]
    folder = tmp_path / "raw"
    folder.mkdir()
    pq.write_table(pa.table({
        "DevEui": [row[0] for row in rows], "institute": [row[1] for row in rows],
        "classroom": [row[2] for row in rows],
        "sendtime": pa.array([row[3] for row in rows], pa.timestamp("us", tz="UTC")),
        "co2": [700.0] * len(rows)}), folder / "part-0.parquet")
    target = make_target()
    run(spark, analysis_settings(target, folder))
    assert execute(target, "SELECT institute, classroom, week_start, weeks_behind_institute "
                           "FROM {schema}.latest_complete_week_by_classroom "
                           "ORDER BY institute, classroom") == [
        ("Liceo", "3A", dt.date(2025, 3, 17), 0),
        ("Liceo", "3B", dt.date(2025, 3, 3), 2),
        ("Scuola", "1C", dt.date(2025, 3, 3), 0),
    ]
