"""The indoor-air compliance tables end to end: the analysis on the demo data, published to a
real PostgreSQL, against the independent DuckDB computation over the same Parquet files."""
from __future__ import annotations

import csv
import datetime as dt
import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from batch.analysis.publish import PostgresTarget
from devtools.demo import generate_demo_dataset, holiday_closures_csv
from tests import independent, independent_iaq
from tests.test_analysis import analysis_settings, connect, last_run, run, write_rows

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


def test_a_run_warns_about_utc_and_records_the_public_holidays_it_applied(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    utc = dt.timezone.utc
    days = {"Liceo": (dt.date(2025, 4, 17), dt.date(2025, 4, 21), dt.date(2025, 4, 22),
                      dt.date(2025, 4, 25), dt.date(2025, 6, 9)),
            "Liceo Bolzano": (dt.date(2025, 6, 9), dt.date(2025, 6, 10))}
    readings = [(institute, dt.datetime.combine(day, dt.time(9), utc))
                for institute, dates in days.items() for day in dates]
    raw = write_rows(tmp_path / "raw" / "part-0.parquet", {
        "DevEui": pa.array([institute[:5] for institute, _ in readings]),
        "sendtime": pa.array([at for _, at in readings], pa.timestamp("us", tz="UTC")),
        "institute": pa.array([institute for institute, _ in readings]),
        "classroom": pa.array(["3A"] * len(readings)),
        "co2": pa.array([900.0] * len(readings)),
    })
    timetables = tmp_path / "timetables.csv"
    timetables.write_text("institute,timetable,holidays\nLiceo Bolzano,Mon-Fri 08:00-14:00,IT-BZ\n",
                          encoding="utf-8")
    target = make_target()

    def run_in(timezone: str) -> tuple[Any, dict[str, Any], str]:
        summary = run(spark, analysis_settings(target, raw, BATCH_TIMEZONE=timezone,
                                               IAQ_TIMETABLE_FILE=str(timetables),
                                               REPORT_DIR=str(tmp_path / "reports")))
        page = html.unescape(Path(summary.report_path).read_text(encoding="utf-8"))
        quality = page[page.index('<section id="data-quality">'):]
        return summary, last_run(target), quality[:quality.index("</section>")]

    summary, record, quality = run_in("UTC")
    assert len(summary.warnings) == 1
    assert summary.warnings[0].startswith("occupied hours are evaluated in UTC (BATCH_TIMEZONE=UTC)")
    assert record["warnings"] == summary.warnings
    assert f"<strong>Warning:</strong> {summary.warnings[0]}</p>" in quality
    # Closed: Easter Monday and 25 April everywhere (IT), Whit Monday in Bolzano (IT-BZ) only.
    with connect(target) as conn:
        school_days = [(row["institute"], row["local_date"]) for row in independent.fetch_dicts(
            conn, f'SELECT institute, local_date FROM "{target.schema}".classroom_daily_iaq '
                  "ORDER BY institute, local_date")]
    assert school_days == [("Liceo", dt.date(2025, 4, 17)), ("Liceo", dt.date(2025, 4, 22)),
                           ("Liceo", dt.date(2025, 6, 9)), ("Liceo Bolzano", dt.date(2025, 6, 10))]
    # The data's dates run from 17 April to 10 June 2025: the holidays of each calendar
    # between them, as the holidays library names them.
    national = {"2025-04-20": "Easter Sunday", "2025-04-21": "Easter Monday",
                "2025-04-25": "Liberation Day", "2025-05-01": "Labor Day", "2025-06-02": "Republic Day"}
    assert record["settings"]["iaq_public_holidays"] == "IT"
    assert record["settings"]["iaq_public_holidays_applied"] == {
        "first_date": "2025-04-17", "last_date": "2025-06-10",
        "calendars": {"*": "IT", "Liceo Bolzano": "IT-BZ"},
        "holidays": {"IT": national, "IT-BZ": {**national, "2025-06-09": "Pentecost Monday"}}}

    # Europe/Rome, set explicitly: no warning, in the summary, batch_runs or the report.
    summary, record, quality = run_in("Europe/Rome")
    assert summary.warnings == [] and record["warnings"] == []
    assert "Warning:" not in quality and "<dt>warnings</dt><dd>none</dd>" in quality
