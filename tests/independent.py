"""The published statistics computed another way: plain SQL in PostgreSQL over the raw rows.

Nothing here comes from the package: the ranges are the contract's, local dates come from
PostgreSQL's AT TIME ZONE, ISO weeks from extract(isoyear/week), statistics from its own
avg/stddev_samp.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg2 import sql

from tests.rawdata import METRICS, RANGES

RAW_COLUMNS = ("DevEui", "sendtime", "institute", "classroom") + METRICS
KEYS = {
    "institute": "institute", "classroom": "classroom",
    "iso_year": "extract(isoyear FROM d)::int", "iso_week": "extract(week FROM d)::int",
    "week_start": "date_trunc('week', d)::date",
    "year": "extract(year FROM d)::int", "month": "extract(month FROM d)::int",
    "month_start": "date_trunc('month', d)::date",
}
TABLE_KEYS = {
    "classroom_stats": ("institute", "classroom"),
    "classroom_weekly_stats": ("institute", "classroom", "iso_year", "iso_week", "week_start"),
    "classroom_monthly_stats": ("institute", "classroom", "year", "month", "month_start"),
    "institute_weekly_stats": ("institute", "iso_year", "iso_week", "week_start"),
    "institute_monthly_stats": ("institute", "year", "month", "month_start"),
    "weekly_stats": ("iso_year", "iso_week", "week_start"),
}


def load_raw(conn: Any, schema: str, rows: Iterable[dict[str, Any]]) -> None:
    """COPY the raw rows into `schema`.raw_readings."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cursor.execute(sql.SQL(
            "CREATE TABLE {}.raw_readings (dev_eui text, sendtime timestamptz, institute text, "
            "classroom text, {})").format(
            sql.Identifier(schema),
            sql.SQL(", ").join(sql.SQL("{} float8").format(sql.Identifier(m)) for m in METRICS)))
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in rows:
            writer.writerow([_csv_value(row[column]) for column in RAW_COLUMNS])
        buffer.seek(0)
        cursor.copy_expert(sql.SQL("COPY {}.raw_readings FROM STDIN WITH (FORMAT csv, NULL '\\N')")
                           .format(sql.Identifier(schema)).as_string(conn), buffer)
    conn.commit()


def _csv_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _in_range(metric: str) -> str:
    low, high = RANGES[metric]
    # NaN sorts above every number in PostgreSQL, so an upper bound rejects it too.
    upper = f"{metric} <= {high}" if high is not None else f"{metric} <> 'NaN'"
    return f"({metric} >= {low} AND {upper})"


def _readings(schema: str, drop_replays: bool) -> str:
    raw = f'"{schema}".raw_readings'
    if not drop_replays:
        return raw
    return (f"(SELECT DISTINCT ON (dev_eui, sendtime) * FROM {raw} "
            "WHERE dev_eui IS NOT NULL AND sendtime IS NOT NULL "
            f"UNION ALL SELECT * FROM {raw} WHERE dev_eui IS NULL OR sendtime IS NULL) kept")


_INCLUDED = ("sendtime IS NOT NULL AND dev_eui IS NOT NULL AND institute IS NOT NULL "
             "AND classroom IS NOT NULL")


def validated_sql(schema: str, timezone: str, drop_replays: bool) -> str:
    return (
        f"SELECT dev_eui, sendtime, institute, classroom, "
        f"(sendtime AT TIME ZONE '{timezone}')::date AS d, "
        + ", ".join(f"CASE WHEN {_in_range(m)} THEN {m} END AS {m}" for m in METRICS)
        + f" FROM {_readings(schema, drop_replays)} WHERE {_INCLUDED}"
    )


def expected_table(conn: Any, schema: str, table: str, timezone: str, drop_replays: bool,
                   co2_high: float = 1000, co2_very_high: float = 1500,
                   comfort: tuple[float, float] = (20, 26)) -> list[dict[str, Any]]:
    keys = TABLE_KEYS[table]
    metric_stats = ", ".join(
        f"count({m}) AS {m}_count, avg({m}) AS {m}_mean, min({m}) AS {m}_min, "
        f"max({m}) AS {m}_max, stddev_samp({m}) AS {m}_stddev" for m in METRICS)
    query = (
        "SELECT " + ", ".join(f"{KEYS[k]} AS {k}" for k in keys) +
        ", count(*) AS readings, count(DISTINCT dev_eui) AS devices, "
        "min(sendtime) AS first_reading_at, max(sendtime) AS last_reading_at, "
        + metric_stats +
        f", count(*) FILTER (WHERE co2 > {co2_high})::float8 / NULLIF(count(co2), 0) AS co2_share_above_high"
        f", count(*) FILTER (WHERE co2 > {co2_very_high})::float8 / NULLIF(count(co2), 0) AS co2_share_above_very_high"
        f", count(*) FILTER (WHERE temperature BETWEEN {comfort[0]} AND {comfort[1]})::float8 "
        "/ NULLIF(count(temperature), 0) AS temperature_share_in_comfort"
        f" FROM ({validated_sql(schema, timezone, drop_replays)}) v GROUP BY "
        + ", ".join(KEYS[k] for k in keys)
    )
    return fetch_dicts(conn, query + " ORDER BY " + ", ".join(str(i + 1) for i in range(len(keys))))


def expected_counts(conn: Any, schema: str, drop_replays: bool) -> dict[str, Any]:
    """rows_read, readings excluded per reason, replays dropped, values nulled per metric."""
    raw = f'"{schema}".raw_readings'
    readings = _readings(schema, drop_replays)
    counts = fetch_dicts(conn, (
        f"SELECT (SELECT count(*) FROM {raw}) AS rows_read, "
        f"(SELECT count(*) FROM {raw}) - count(*) AS replayed_reading, "
        "count(*) FILTER (WHERE sendtime IS NULL) AS missing_sendtime, "
        "count(*) FILTER (WHERE sendtime IS NOT NULL AND dev_eui IS NULL) AS missing_device, "
        "count(*) FILTER (WHERE sendtime IS NOT NULL AND dev_eui IS NOT NULL "
        "AND (institute IS NULL OR classroom IS NULL)) AS unregistered_device, "
        f"count(*) FILTER (WHERE {_INCLUDED}) AS rows_used FROM {readings}"))[0]
    if not drop_replays:
        counts["replayed_reading"] = None  # not looked for: reported as not checked, never 0
    counts["values_nulled"] = fetch_dicts(conn, "SELECT " + ", ".join(
        f"count(*) FILTER (WHERE {m} IS NOT NULL AND NOT {_in_range(m)}) AS {m}" for m in METRICS)
        + f" FROM {readings} WHERE {_INCLUDED}")[0]
    return counts


def fetch_dicts(conn: Any, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def published_table(conn: Any, schema: str, table: str) -> list[dict[str, Any]]:
    keys = TABLE_KEYS[table]
    return fetch_dicts(conn, f'SELECT * FROM "{schema}"."{table}" ORDER BY '
                       + ", ".join(f'"{k}"' for k in keys))


def assert_rows_close(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Equal row for row; floats to a relative 1e-9 (and 1e-9 absolute around zero)."""
    assert len(actual) == len(expected), f"{len(actual)} rows published, {len(expected)} expected"
    for index, (got, want) in enumerate(zip(actual, expected)):
        assert set(got) == set(want), f"columns differ: {set(got) ^ set(want)}"
        for column, value in want.items():
            published = got[column]
            if isinstance(value, float) or isinstance(published, float):
                assert value is not None and published is not None and math.isclose(
                    published, float(value), rel_tol=1e-9, abs_tol=1e-9), (
                    f"row {index} ({[want[k] for k in list(want)[:3]]}) column {column}: "
                    f"published {published}, expected {value}")
            else:
                assert published == value, (
                    f"row {index} column {column}: published {published!r}, expected {value!r}")
