"""DuckDB computing the analysis' statistics on the same Parquet (benchmark only).

    python duckdb_reference.py RAW_PATH TIMEZONE

The single-machine reference a user might pick instead of Spark: the same validation
(contract ranges, exclusions) and the six groupings with every statistic, materialised
as DuckDB tables in memory.
"""
from __future__ import annotations

import sys

import duckdb

METRICS = {"temperature": (-40, 85), "humidity": (0, 100), "co2": (0, 40000), "tvoc": (0, 60000),
           "pressure": (300, 1100), "light_level": (0, None), "battery": (0, 100)}
KEYS = {"institute": "institute", "classroom": "classroom", "iso_year": "isoyear(d)",
        "iso_week": "week(d)", "week_start": "date_trunc('week', d)", "year": "year(d)",
        "month": "month(d)", "month_start": "date_trunc('month', d)"}
GROUPINGS = {
    "classroom_stats": ("institute", "classroom"),
    "classroom_weekly_stats": ("institute", "classroom", "iso_year", "iso_week", "week_start"),
    "classroom_monthly_stats": ("institute", "classroom", "year", "month", "month_start"),
    "institute_weekly_stats": ("institute", "iso_year", "iso_week", "week_start"),
    "institute_monthly_stats": ("institute", "year", "month", "month_start"),
    "weekly_stats": ("iso_year", "iso_week", "week_start"),
}


def _valid(metric: str) -> str:
    low, high = METRICS[metric]
    upper = f" AND {metric} <= {high}" if high is not None else ""
    return f"CASE WHEN {metric} >= {low}{upper} AND NOT isnan({metric}) THEN {metric} END AS {metric}"


def main(raw_path: str, timezone: str) -> None:
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute(
        "CREATE TEMP TABLE readings AS SELECT \"DevEui\" AS dev_eui, sendtime, institute, classroom, "
        f"CAST(timezone('{timezone}', sendtime) AS DATE) AS d, "
        + ", ".join(_valid(m) for m in METRICS)
        + " FROM (SELECT \"DevEui\", sendtime, institute, classroom, "
        + ", ".join(f"CAST({m} AS DOUBLE) AS {m}" for m in METRICS)
        + f" FROM read_parquet('{raw_path}/**/*.parquet', union_by_name = true)) "
        "WHERE sendtime IS NOT NULL AND \"DevEui\" IS NOT NULL AND institute IS NOT NULL "
        "AND classroom IS NOT NULL")
    statistics = ", ".join(
        f"count({m}) AS {m}_count, avg({m}) AS {m}_mean, min({m}) AS {m}_min, "
        f"max({m}) AS {m}_max, stddev_samp({m}) AS {m}_stddev" for m in METRICS)
    for table, keys in GROUPINGS.items():
        con.execute(
            f"CREATE TEMP TABLE {table} AS SELECT "
            + ", ".join(f"{KEYS[k]} AS {k}" for k in keys)
            + ", count(*) AS readings, count(DISTINCT dev_eui) AS devices, "
            "min(sendtime) AS first_reading_at, max(sendtime) AS last_reading_at, " + statistics
            + ", count(*) FILTER (WHERE co2 > 1000) / count(co2) AS co2_share_above_high"
            + ", count(*) FILTER (WHERE co2 > 1500) / count(co2) AS co2_share_above_very_high"
            + ", count(*) FILTER (WHERE temperature BETWEEN 20 AND 26) / count(temperature) "
            "AS temperature_share_in_comfort FROM readings GROUP BY ALL")
    rows = {table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in GROUPINGS}
    print(f"duckdb rows: {rows}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
