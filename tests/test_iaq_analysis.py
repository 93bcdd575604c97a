"""The indoor-air compliance tables end to end: the analysis on the demo data, published to a
real PostgreSQL, against the independent DuckDB computation over the same Parquet files."""
from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from batch.postgres import PostgresTarget
from devtools.demo import generate_demo_dataset, holiday_closures_csv
from tests import independent, independent_iaq
from tests.test_analysis import analysis_settings, connect, last_run, run

# A week around the end of winter time (30 March 2025), dense enough for episodes above the
# peak: 100,000 readings of 104 devices over 8 days is one reading per device every ~12 min.
DEMO_START, DEMO_DAYS, DEMO_READINGS = dt.date(2025, 3, 26), 8, 100_000
VOLTAIRE_TIMETABLE = "Mon-Fri 08:30-12:00,13:30-16:30"
KEYS = {"classroom_daily_iaq": ("institute", "classroom", "local_date"),
        "classroom_weekly_iaq": ("institute", "classroom", "week_start"),
        "classroom_iaq": ("institute", "classroom")}
REFERENCE = {"classroom_daily_iaq": "daily", "classroom_weekly_iaq": "weekly", "classroom_iaq": "period"}
# The same timetables as the reference's plain rows: (institute, ISO weekday, start, end minute).
REFERENCE_TIMETABLE = (
    [(None, day, 8 * 60, 14 * 60) for day in range(1, 6)]
    + [("École Voltaire", day, start, end) for day in range(1, 6)
       for start, end in ((8 * 60 + 30, 12 * 60), (13 * 60 + 30, 16 * 60 + 30))])


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Rome"])
def test_iaq_tables_equal_an_independent_computation_on_the_demo_data(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path,
        timezone: str) -> None:
    demo = generate_demo_dataset(tmp_path / "raw", readings=DEMO_READINGS, start=DEMO_START,
                                 days=DEMO_DAYS)
    closures_text = (holiday_closures_csv(DEMO_START, DEMO_DAYS)
                     + "Liceo Galilei,2025-03-27,2025-03-27,open day\n")
    closures = tmp_path / "closures.csv"
    closures.write_text(closures_text, encoding="utf-8")
    timetables = tmp_path / "timetables.csv"
    timetables.write_text(f'institute,timetable\nÉcole Voltaire,"{VOLTAIRE_TIMETABLE}"\n',
                          encoding="utf-8")
    target = make_target()
    summary = run(spark, analysis_settings(
        target, demo.path, BATCH_TIMEZONE=timezone, IAQ_CLOSURES_FILE=str(closures),
        IAQ_TIMETABLE_FILE=str(timetables), REPORT_DIR=str(tmp_path / "reports")))

    con = independent_iaq.connect()
    independent_iaq.load_parquet(con, str(demo.path))
    reference_closures = [(row["institute"], dt.date.fromisoformat(row["first_date"]),
                           dt.date.fromisoformat(row["last_date"]))
                          for row in csv.DictReader(io.StringIO(closures_text))]
    independent_iaq.compute(con, timezone, REFERENCE_TIMETABLE, reference_closures)
    with connect(target) as conn:
        for table, keys in KEYS.items():
            order = ", ".join(keys)
            independent_iaq.assert_rows_match(
                independent.fetch_dicts(conn, f'SELECT * FROM "{target.schema}".{table} ORDER BY {order}'),
                independent_iaq.fetch(con, REFERENCE[table], order), table)
        latest = independent.fetch_dicts(conn, (
            "SELECT institute, classroom, week_start FROM "
            f'"{target.schema}".latest_complete_week_iaq_by_classroom'))
    assert latest == [{key: row[key] for key in ("institute", "classroom", "week_start")}
                      for row in independent_iaq.fetch(con, "latest", "position")]

    record = last_run(target)
    # The run's report charts every phase recorded before it was written; its own is recorded after.
    assert sorted(record["phase_seconds"]) == sorted(["read", "aggregate", "publish", "report"])
    page = Path(summary.report_path).read_text(encoding="utf-8")
    phases = page[page.index('data-chart="phases"'):]
    phases = phases[:phases.index("</svg>")]
    assert [phase for phase in ("read", "aggregate", "publish", "report") if f">{phase}<" in phases] == [
        "read", "aggregate", "publish"]
    expected_counts = {table: len(independent_iaq.fetch(con, REFERENCE[table], "1")) for table in KEYS}
    assert {table: record["rows_written"][table] for table in KEYS} == expected_counts
    assert {table: summary.rows_written[table] for table in KEYS} == expected_counts
    settings = record["settings"]
    assert (settings["iaq_timetable"], settings["iaq_closures_file"], settings["iaq_timetable_file"],
            settings["iaq_bb101_mean_co2_ppm"], settings["iaq_bb101_peak_co2_ppm"],
            settings["iaq_en16798_co2_excess_ppm"]) == (
        "Mon-Fri 08:00-14:00", str(closures), str(timetables), 1500.0, 2000.0, [550.0, 800.0, 1350.0])

    # The demo tells a story: classrooms passing and failing BB101, episodes above the peak,
    # the open day and the weekend left out.
    daily = independent_iaq.fetch(con, "daily", "local_date")
    assert {row["bb101_mean_met"] for row in daily} >= {True, False}
    assert {row["bb101_peak_met"] for row in daily} >= {True, False}
    assert not [row for row in daily if row["institute"] == "Liceo Galilei"
                and row["local_date"] == dt.date(2025, 3, 27)]
    assert all(row["local_date"].isoweekday() <= 5 for row in daily)
    assert 0 < sum(row["week_complete"] for row in independent_iaq.fetch(con, "weekly", "1")) < len(
        independent_iaq.fetch(con, "weekly", "1"))
