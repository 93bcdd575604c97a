"""Indoor-air compliance (batch/analysis/iaq_settings.py, iaq_partials.py, iaq_rollup.py,
iaq_tables.py) against hand-worked values.

Dates: 2025-03-03 is a Monday (heating season: band 20-24 °C). Unless a test says
otherwise the timetable is the default, Monday to Friday 08:00-14:00, in UTC. The tests of
the BB101 rules themselves use a few readings a day and judge every day (EVERY_DAY_JUDGED);
the minimum coverage of a day has tests of its own.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from psycopg2 import sql
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch.analysis import publish
from batch.analysis.catalog import Catalog
from batch.analysis.iaq_partials import (
    IAQ_VALIDATED_METRICS,
    iaq_partial_aggregates,
    with_occupied_range,
)
from batch.analysis.iaq_rollup import IAQ_GROUP_KEYS, IaqTables, iaq_tables, occupied_us
from batch.analysis.iaq_settings import IAQ_OPTIONS, IaqRules, IaqSettings
from batch.analysis.iaq_tables import WEEKLY_TABLE, iaq_catalog_tables, latest_week_view
from batch.analysis.partials import partial_statistics
from batch.analysis.publish import PostgresTarget
from batch.core.thresholds import Thresholds
from batch.analysis.timetable import Occupancy, parse_timetable, public_holidays_applied
from batch.core.config import resolve_options, settings_from
from batch.core.contract import ANALYSIS_COLUMNS, canonical_schema
from batch.core.errors import ConfigurationError
from batch.core.validation import validate_readings
from tests import independent_iaq
from tests.support.collect import collect_device_day_episodes, collect_partials

COLUMNS = ("DevEui", "institute", "classroom", "sendtime", "co2", "temperature", "pir")
# The references' defaults (IAQ_OPTIONS), with the default timetable.
DEFAULT_RULES = IaqSettings().rules()
# A day is judged from 0.1 % of its occupied time covered (21.6 s of 6 hours): every day with
# a reading, for the tests of what a judged day's flags are.
EVERY_DAY_JUDGED = replace(DEFAULT_RULES, min_day_coverage=0.001)


def rules_with(timetable: str) -> IaqRules:
    return replace(EVERY_DAY_JUDGED, occupancy=Occupancy(parse_timetable(timetable)))


def at(day: dt.date, clock: str, timezone: str = "UTC") -> dt.datetime:
    """The UTC instant of local wall-clock time `clock` (HH:MM) on `day` in `timezone`."""
    hours, minutes = map(int, clock.split(":"))
    local = dt.datetime(day.year, day.month, day.day, hours, minutes, tzinfo=ZoneInfo(timezone))
    return local.astimezone(dt.timezone.utc)


def readings(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    """Readings with the given COLUMNS; every other analysed column null."""
    df = spark.createDataFrame(rows, canonical_schema(COLUMNS))
    schema = canonical_schema(ANALYSIS_COLUMNS)
    return df.select(*[df[c] if c in COLUMNS else F.lit(None).cast(schema[c].dataType).alias(c)
                       for c in ANALYSIS_COLUMNS])


def compute(readings_df: DataFrame, rules: IaqRules = EVERY_DAY_JUDGED,
            timezone: str = "UTC") -> IaqTables:
    validated = readings_df.transform(validate_readings, IAQ_VALIDATED_METRICS, False)
    partials = collect_partials(
        validated.transform(with_occupied_range, timezone, rules.occupancy)
        .transform(partial_statistics, timezone, Thresholds(), extra_aggregates=iaq_partial_aggregates(rules)),
        IAQ_GROUP_KEYS)
    episodes = collect_device_day_episodes(validated, timezone, rules, partials)
    return iaq_tables(partials, episodes, rules, timezone)


def records(df: pd.DataFrame, order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The rows as dicts of Python values, a missing value None."""
    ordered = df.sort_values(list(order), kind="stable") if order else df
    return ordered.astype(object).where(ordered.notna(), None).to_dict("records")


def latest_complete_weeks(target: PostgresTarget, weekly: pd.DataFrame, columns: str) -> list[tuple]:
    """`columns` of the published view latest_complete_week_iaq_by_classroom, in its own order,
    over `weekly` published as classroom_weekly_iaq in a real PostgreSQL (the catalog's DDL and
    the sink's COPY), rolled back after."""
    weekly_table = next(table for table in iaq_catalog_tables(IaqSettings(), "UTC")
                        if table.name == WEEKLY_TABLE)
    with contextlib.closing(publish.connect(target)) as conn:
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(target.schema)))
            for statement in publish.catalog_ddl(target.schema, Catalog((weekly_table,), (latest_week_view(),))):
                cursor.execute(statement)
        publish.write_staging(conn, target, weekly_table, weekly_table.rows(weekly),
                               weekly_table.name)
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("SELECT {} FROM {}.latest_complete_week_iaq_by_classroom")
                           .format(sql.SQL(columns), sql.Identifier(target.schema)))
            view = cursor.fetchall()
        conn.rollback()
    return view


def by_classroom_day(df: pd.DataFrame) -> dict[tuple[str, dt.date], dict[str, Any]]:
    return {(row["classroom"], row["local_date"]): row for row in records(df)}


def series(device: str, classroom: str, day: dt.date, values: list[tuple[str, float | None]],
           timezone: str = "UTC", temperature: float | None = None,
           institute: str = "Liceo") -> list[tuple]:
    return [(device, institute, classroom, at(day, clock, timezone), co2, temperature, None)
            for clock, co2 in values]


MONDAY = dt.date(2025, 3, 3)
TUESDAY = dt.date(2025, 3, 4)


def test_episodes_gaps_devices_and_missing_metrics(spark: SparkSession) -> None:
    rows = (
        # 3A: an episode split by a gap over 15 minutes. Each reading stands for the time to
        # the next one, at most 15 minutes: 09:00 -> 5, 09:05 -> 5, 09:10 -> min(16, 15) = 15,
        # 09:26 -> 5, 09:31 -> 5, 09:36 -> 15 (last reading; not high).
        # Episodes: 09:00-09:10 = 5 + 5 + 15 = 25; the 16-minute gap ends it; 09:26-09:31 = 10.
        # Longest 25 > 20: peak failed. Mean (2100+2200+2300+2100+2050+1800)/6 = 12550/6.
        series("A", "3A", MONDAY, [("09:00", 2100.0), ("09:05", 2200.0), ("09:10", 2300.0),
                                   ("09:26", 2100.0), ("09:31", 2050.0), ("09:36", 1800.0)],
               temperature=22.0)
        # 3B: a gap of 20 minutes inside a run of high readings: 10:00 -> 5, 10:05 -> 15,
        # 10:25 -> 5, 10:30 -> 5. Episodes 20 and 10 (not 30): longest 20 <= 20, peak met.
        # Mean (4 * 2500 + 900) / 5 = 2180: mean failed. Excess 2100 -> IV (4), 500 -> I (1).
        + series("B", "3B", MONDAY, [("10:00", 2500.0), ("10:05", 2500.0), ("10:25", 2500.0),
                                     ("10:30", 2500.0), ("10:35", 900.0)])
        # 2A: two CO2 devices, episodes per device. Device C: 10:00, 10:10, 10:20 high, each
        # standing for 10 minutes (next reading 10 minutes later) = 30; 10:30 low. Device D:
        # 10:05 high stands for min(10 to 10:15, 15) = 10; 10:15 low. Interleaved as one
        # sequence they would make shorter episodes; the longest of the devices is 30.
        # Mean over both devices' readings: (3 * 2600 + 500 + 2100 + 1000) / 6 = 11400/6 = 1900.
        # No temperature at all: a day with CO2 but no temperature.
        + series("C", "2A", MONDAY, [("10:00", 2600.0), ("10:10", 2600.0), ("10:20", 2600.0),
                                     ("10:30", 500.0)])
        + series("D", "2A", MONDAY, [("10:05", 2100.0), ("10:15", 1000.0)])
        # 4A: temperature but no CO2 (and a reading at 07:59, before the day starts, and one
        # at 14:00, after it ends [start, end)): occupied temperatures 19.5 and 24.0.
        + [("E", "Liceo", "4A", at(MONDAY, clock), None, temperature, None)
           for clock, temperature in (("07:59", 30.0), ("08:00", 19.5), ("13:59", 24.0),
                                      ("14:00", 30.0))]
        # Door-only room: no CO2, no temperature, no PIR: no IAQ row and no error.
        + [("F", "Liceo", "Ingresso", at(MONDAY, "09:00"), None, None, None)]
        # 5A: PIR share: 2 occupied readings with PIR, 1 with motion; the night one is not occupied.
        + [("G", "Liceo", "5A", at(MONDAY, "09:00"), 800.0, 21.0, 1),
           ("G", "Liceo", "5A", at(MONDAY, "09:10"), 800.0, 21.0, 0),
           ("G", "Liceo", "5A", at(MONDAY, "22:00"), 800.0, 21.0, 1)]
    )
    daily = by_classroom_day(compute(readings(spark, rows)).daily)
    assert set(daily) == {("3A", MONDAY), ("3B", MONDAY), ("2A", MONDAY), ("4A", MONDAY),
                          ("5A", MONDAY)}

    split = daily[("3A", MONDAY)]
    assert (split["co2_occupied_readings"], split["longest_peak_episode_minutes"], split["co2_occupied_max"],
            split["bb101_mean_met"], split["bb101_peak_met"]) == (6, 25.0, 2300.0, False, False)
    assert split["co2_occupied_mean"] == pytest.approx(12550 / 6, rel=1e-12)
    assert (split["temperature_occupied_readings"], split["temperature_occupied_mean"],
            split["temperature_share_in_band"], split["pir_share_motion"]) == (6, 22.0, 1.0, None)

    gap = daily[("3B", MONDAY)]
    assert (gap["longest_peak_episode_minutes"], gap["bb101_peak_met"], gap["co2_occupied_mean"],
            gap["bb101_mean_met"]) == (20.0, True, 2180.0, False)
    assert (gap["en16798_co2_share_i"], gap["en16798_co2_share_ii"], gap["en16798_co2_share_iii"],
            gap["en16798_co2_share_iv"]) == (0.2, 0.0, 0.0, 0.8)

    two_devices = daily[("2A", MONDAY)]
    assert (two_devices["co2_occupied_readings"], two_devices["co2_occupied_mean"],
            two_devices["longest_peak_episode_minutes"], two_devices["bb101_mean_met"],
            two_devices["bb101_peak_met"]) == (6, 1900.0, 30.0, False, False)
    assert (two_devices["temperature_occupied_readings"], two_devices["temperature_occupied_mean"],
            two_devices["temperature_share_in_band"]) == (0, None, None)

    no_co2 = daily[("4A", MONDAY)]
    assert (no_co2["co2_occupied_readings"], no_co2["co2_occupied_mean"], no_co2["co2_occupied_max"],
            no_co2["longest_peak_episode_minutes"], no_co2["bb101_mean_met"],
            no_co2["bb101_peak_met"], no_co2["en16798_co2_share_i"]) == (0, None, None, None, None,
                                                                       None, None)
    # 19.5 is outside the heating-season band 20-24, 24.0 inside (inclusive): share 1/2.
    assert (no_co2["temperature_occupied_readings"], no_co2["temperature_occupied_mean"],
            no_co2["temperature_share_in_band"]) == (2, 21.75, 0.5)

    assert daily[("5A", MONDAY)]["pir_share_motion"] == 0.5
    assert daily[("5A", MONDAY)]["longest_peak_episode_minutes"] == 0.0  # a school day without one


def test_range_ends_and_lunch_break(spark: SparkSession) -> None:
    rules = rules_with("Mon 08:00-10:00,10:00-12:00; Tue 08:00-13:00,14:00-16:00")
    rows = (
        # Monday, 3A: an episode crossing a range end. Adjacent ranges 08:00-10:00 and
        # 10:00-12:00 are separate ranges: 09:50 -> 5, 09:55 -> min(the range end 10:00) = 5
        # (its next reading belongs to the next range); 10:05 -> 5, 10:10 -> 5; 10:15 low.
        # Episodes 10 and 10 (as one range it would be 30): longest 10.
        series("A", "3A", MONDAY, [("09:50", 2500.0), ("09:55", 2500.0), ("10:05", 2500.0),
                                   ("10:10", 2500.0), ("10:15", 900.0)])
        # Tuesday, 3A: a lunch break between ranges. 12:50 -> 5 and 12:55 -> 5 (the range
        # ends at 13:00): episode 10. 13:00 and 13:30 are in the break: not occupied.
        # 14:00 (a range starts) -> 5, 14:05 -> min(15, 16:00) = 15: episode 20.
        # Occupied CO2: 2500, 2500, 2500, 2500 -> mean 2500; 3000 in the break is not counted.
        + series("A", "3A", TUESDAY, [("12:50", 2500.0), ("12:55", 2500.0), ("13:00", 3000.0),
                                      ("13:30", 3000.0), ("14:00", 2500.0), ("14:05", 2500.0)])
    )
    daily = by_classroom_day(compute(readings(spark, rows), rules).daily)
    monday, tuesday = daily[("3A", MONDAY)], daily[("3A", TUESDAY)]
    assert (monday["co2_occupied_readings"], monday["longest_peak_episode_minutes"],
            monday["bb101_peak_met"]) == (5, 10.0, True)
    assert (tuesday["co2_occupied_readings"], tuesday["co2_occupied_mean"], tuesday["co2_occupied_max"],
            tuesday["longest_peak_episode_minutes"], tuesday["bb101_peak_met"]) == (
        4, 2500.0, 2500.0, 20.0, True)


def test_days_that_never_pass_the_peak_have_a_longest_episode_of_zero(spark: SparkSession) -> None:
    """A day at or below the peak has a longest episode of 0; without an occupied CO2
    reading at all no Spark job looks for episodes."""
    # 2000 ppm is the peak itself, not above it.
    below = series("A", "1A", MONDAY, [("09:00", 1900.0), ("09:05", 2000.0)])
    # Beside a day past it: 2B's 09:00 reading stands for 5 minutes (the next one).
    both = by_classroom_day(compute(readings(spark, below + series(
        "B", "2B", MONDAY, [("09:00", 2100.0), ("09:05", 1000.0)]))).daily)
    assert [(both[(room, MONDAY)]["longest_peak_episode_minutes"], both[(room, MONDAY)]["bb101_peak_met"])
            for room in ("1A", "2B")] == [(0.0, True), (5.0, True)]

    night = series("A", "1A", MONDAY, [("22:00", 2500.0)])
    validated = readings(spark, night).transform(validate_readings, IAQ_VALIDATED_METRICS, False)
    partials = collect_partials(
        validated.transform(with_occupied_range, "UTC", DEFAULT_RULES.occupancy)
        .transform(partial_statistics, "UTC", Thresholds(), extra_aggregates=iaq_partial_aggregates(DEFAULT_RULES)),
        IAQ_GROUP_KEYS)
    tracker = spark.sparkContext.statusTracker()
    jobs = set(tracker.getJobIdsForGroup())
    episodes = collect_device_day_episodes(validated, "UTC", DEFAULT_RULES, partials)
    assert episodes.empty and set(tracker.getJobIdsForGroup()) == jobs
    assert iaq_tables(partials, episodes, DEFAULT_RULES, "UTC").daily.empty


def test_daylight_saving_change_days_in_rome(spark: SparkSession) -> None:
    rome = "Europe/Rome"
    rules = rules_with("Sun 01:00-04:00")
    spring, autumn = dt.date(2025, 3, 30), dt.date(2025, 10, 26)
    utc = dt.timezone.utc
    rows = [
        # 30 March: clocks jump 02:00 CET -> 03:00 CEST. The range 01:00-04:00 is
        # 00:00-02:00 UTC. UTC 00:50 (01:50 CET) -> 10 (next at 01:00 UTC = 03:00 CEST,
        # ten minutes later although the wall clock moved 70), 01:00 -> 10, 01:10 -> 15
        # (next 45 minutes later): episode 35; 01:55 -> min(15, range end 02:00 UTC) = 5.
        *[("A", "Liceo", "3A", dt.datetime(2025, 3, 30, h, m, tzinfo=utc), 2500.0, 21.0, None)
          for h, m in ((0, 50), (1, 0), (1, 10), (1, 55))],
        # 26 October: clocks fall back 03:00 CEST -> 02:00 CET. The range is 23:00 UTC
        # (25th) to 03:00 UTC. 23:10 UTC on the 25th is 01:10 CEST on the 26th: occupied,
        # low. UTC 00:50 (02:50 CEST) -> 10 (next at 01:00 UTC = 02:00 CET: ten minutes
        # later, the wall clock went back 50), 01:00 -> 15: episode 25; 02:58 UTC (03:58
        # CET) -> min(15, range end 03:00 UTC) = 2.
        ("A", "Liceo", "3A", dt.datetime(2025, 10, 25, 23, 10, tzinfo=utc), 800.0, 23.0, None),
        *[("A", "Liceo", "3A", dt.datetime(2025, 10, 26, h, m, tzinfo=utc), 2500.0, 25.0, None)
          for h, m in ((0, 50), (1, 0), (2, 58))],
    ]
    daily = by_classroom_day(compute(readings(spark, rows), rules, rome).daily)
    assert set(daily) == {("3A", spring), ("3A", autumn)}
    assert (daily[("3A", spring)]["co2_occupied_readings"],
            daily[("3A", spring)]["longest_peak_episode_minutes"]) == (4, 35.0)
    assert (daily[("3A", autumn)]["co2_occupied_readings"],
            daily[("3A", autumn)]["longest_peak_episode_minutes"]) == (4, 25.0)
    # 26 October is in the heating season (15 October - 15 April): band 20-24; 23 in, 25 out.
    assert daily[("3A", autumn)]["temperature_share_in_band"] == 0.25
    # In UTC the same instants are 30 March 00:50-01:55 (inside 01:00-04:00: three of them)
    # and the 25 October reading is a Saturday: not occupied.
    in_utc = by_classroom_day(compute(readings(spark, rows), rules, "UTC").daily)
    assert in_utc[("3A", spring)]["co2_occupied_readings"] == 3


def test_closed_dates_and_institute_timetables(spark: SparkSession, tmp_path: Path) -> None:
    closures = tmp_path / "closures.csv"
    closures.write_text("institute,first_date,last_date,reason\n"
                        "*,2025-03-04,2025-03-04,strike\n"
                        "Liceo,2025-03-05,2025-03-06,elections\n", encoding="utf-8")
    timetables = tmp_path / "timetables.csv"
    timetables.write_text('institute,timetable\nScuola Serale,"Mon-Fri 18:00-22:00"\n',
                          encoding="utf-8")
    rules = replace(IaqSettings(iaq_closures_file=str(closures), iaq_timetable_file=str(timetables)).rules(),
                    min_day_coverage=EVERY_DAY_JUDGED.min_day_coverage)
    rows = [
        (device, institute, "3A", at(day, clock), 1000.0, 21.0, None)
        for device, institute in (("A", "Liceo"), ("B", "Istituto"), ("C", "Scuola Serale"))
        for day in (MONDAY, TUESDAY, dt.date(2025, 3, 5))
        for clock in ("09:00", "19:00")
    ]
    daily = compute(readings(spark, rows), rules).daily
    got = sorted((r["institute"], r["local_date"].isoformat(), r["co2_occupied_readings"])
                 for r in records(daily))
    # Tuesday is closed for all; Wednesday for Liceo only. Scuola Serale counts 19:00 only.
    assert got == [("Istituto", "2025-03-03", 1), ("Istituto", "2025-03-05", 1),
                   ("Liceo", "2025-03-03", 1),
                   ("Scuola Serale", "2025-03-03", 1), ("Scuola Serale", "2025-03-05", 1)]


def test_weekly_means_categories_and_latest_complete_week(
        spark: SparkSession, make_target: Callable[..., PostgresTarget]) -> None:
    next_monday = dt.date(2025, 3, 10)
    rows = (
        # 3A, week 10: Monday 700, 700, 700 (excess 300: I); Tuesday 1300 (excess 900: III).
        # Weekly mean over readings (2100 + 1300) / 4 = 850, not the mean of daily means 1000.
        # I: 3/4 = 0.75 < 0.95; I+II: 0.75; I+II+III: 1 >= 0.95: category 3. Both days meet
        # BB101 (means 700 and 1300 < 1500, no episode).
        series("A", "3A", MONDAY, [("09:00", 700.0), ("09:05", 700.0), ("09:10", 700.0)])
        + series("A", "3A", TUESDAY, [("09:00", 1300.0)])
        # 3B, week 10: category boundaries, inclusive: excess 550 -> I, 800 -> II, 1350 -> III,
        # 1351 -> IV on Monday, mean (950 + 1200 + 1750 + 1751)/4 = 1412.75 < 1500: met;
        # Tuesday 1500 (excess 1100 -> III), a mean of exactly 1500: not met. Week shares of
        # 5 readings: I 1/5, II 1/5, III 2/5, IV 1/5; cumulative 0.2, 0.4, 0.8 < 0.95: IV.
        + series("B", "3B", MONDAY, [("09:00", 950.0), ("09:20", 1200.0), ("09:40", 1750.0),
                                     ("10:00", 1751.0)])
        + series("B", "3B", TUESDAY, [("09:00", 1500.0)])
        # 3B, week 11: one reading on Monday the 10th: week 11 is incomplete, week 10 complete
        # (data newer than its Sunday, 9 March, have arrived).
        + series("B", "3B", next_monday, [("09:00", 600.0)])
    )
    tables = compute(readings(spark, rows))
    weekly = {(r["classroom"], r["iso_week"]): r for r in records(tables.weekly)}
    assert set(weekly) == {("3A", 10), ("3B", 10), ("3B", 11)}
    a = weekly[("3A", 10)]
    assert (a["school_days"], a["bb101_mean_days_met"], a["bb101_peak_days_met"],
            a["bb101_days_met"], a["co2_occupied_readings"], a["co2_occupied_mean"], a["en16798_co2_category"],
            a["week_complete"]) == (2, 2, 2, 2, 4, 850.0, 3, True)
    b = weekly[("3B", 10)]
    assert (b["school_days"], b["bb101_mean_days_met"], b["bb101_days_met"],
            b["en16798_co2_share_i"], b["en16798_co2_share_ii"], b["en16798_co2_share_iii"],
            b["en16798_co2_share_iv"], b["en16798_co2_category"]) == (
        2, 1, 1, 0.2, 0.2, 0.4, 0.2, 4)
    assert weekly[("3B", 11)]["week_complete"] is False
    period = {r["classroom"]: r for r in records(tables.period)}
    # 3B whole period: 6 readings, 950 + 1200 + 1750 + 1751 + 1500 + 600 = 7751.
    assert (period["3B"]["school_days"], period["3B"]["co2_occupied_readings"]) == (3, 6)
    assert period["3B"]["co2_occupied_mean"] == pytest.approx(7751 / 6, rel=1e-12)
    # Latest complete week of each classroom, worst first, as the published view lists them:
    # 3B met BB101 on 1 of 2 days, 3A on 2 of 2.
    assert latest_complete_weeks(make_target(), tables.weekly, "classroom, iso_week") == [
        ("3B", 10), ("3A", 10)]


# --- minimum coverage of a school day (IAQ_MIN_DAY_COVERAGE, default 0.5) -----------------

def every_15_minutes(first: str, count: int) -> list[str]:
    hours, minutes = map(int, first.split(":"))
    start = hours * 60 + minutes
    return [f"{(start + 15 * k) // 60:02d}:{(start + 15 * k) % 60:02d}" for k in range(count)]


WEDNESDAY = dt.date(2025, 3, 5)


def test_a_day_is_judged_only_when_its_readings_cover_half_its_occupied_time(spark: SparkSession) -> None:
    """08:00-14:00 is 360 minutes; a reading stands for at most 15 of them."""
    rows = (
        # 3A Monday: the sensor comes online at 13:55: one reading standing for 5 minutes
        # (the range ends at 14:00): 5 / 360 = 1.39 %, not judged although its mean (2400)
        # would fail BB101.
        series("A", "3A", MONDAY, [("13:55", 2400.0)])
        # 3A Tuesday: 12 readings 15 minutes apart from 08:00: 12 x 15 = 180 of 360 minutes,
        # exactly 50 %: judged; mean 800 < 1500 and no episode: met.
        + series("A", "3A", TUESDAY, [(clock, 800.0) for clock in every_15_minutes("08:00", 12)])
        # 3A Wednesday: 11 of them: 165 / 360 = 45.83 %: not judged.
        + series("A", "3A", WEDNESDAY, [(clock, 800.0) for clock in every_15_minutes("08:00", 11)])
        # 2B Monday: two devices, A 08:00-10:00 and B 10:00-12:00, 8 readings each: 120 minutes
        # each. The classroom's coverage is its best device's, 120 / 360 = 1/3 (not the sum,
        # 2/3): not judged.
        + series("C", "2B", MONDAY, [(clock, 900.0) for clock in every_15_minutes("08:00", 8)])
        + series("D", "2B", MONDAY, [(clock, 900.0) for clock in every_15_minutes("10:00", 8)])
        # 4A Monday: temperature only: no CO2 reading, not a school day.
        + [("E", "Liceo", "4A", at(MONDAY, "09:00"), None, 21.0, None)]
    )
    tables = compute(readings(spark, rows), DEFAULT_RULES)
    daily = by_classroom_day(tables.daily)
    judged = ("co2_occupied_readings", "co2_occupied_mean", "occupied_coverage", "not_judged_reason",
              "bb101_mean_met", "bb101_peak_met")
    assert {key: tuple(daily[key][name] for name in judged) for key in daily} == {
        ("3A", MONDAY): (1, 2400.0, pytest.approx(5 / 360, rel=1e-12),
                         "too little data: 1.3 % of the occupied time covered (IAQ_MIN_DAY_COVERAGE 50 %)",
                         None, None),
        ("3A", TUESDAY): (12, 800.0, 0.5, None, True, True),
        ("3A", WEDNESDAY): (11, 800.0, pytest.approx(165 / 360, rel=1e-12),
                            "too little data: 45.8 % of the occupied time covered "
                            "(IAQ_MIN_DAY_COVERAGE 50 %)", None, None),
        ("2B", MONDAY): (16, 900.0, pytest.approx(1 / 3, rel=1e-12),
                         "too little data: 33.3 % of the occupied time covered (IAQ_MIN_DAY_COVERAGE 50 %)",
                         None, None),
        ("4A", MONDAY): (0, None, 0.0, "no occupied CO2 reading", None, None),
    }
    counts = ("school_days", "judged_days", "days_with_too_little_data", "bb101_mean_days_met",
              "bb101_peak_days_met", "bb101_days_met", "co2_occupied_readings")
    weekly = {r["classroom"]: tuple(r[name] for name in counts) for r in records(tables.weekly)}
    # The means keep every day's readings: 3A's week has 24 readings; only Tuesday is judged.
    assert weekly == {"3A": (3, 1, 2, 1, 1, 1, 24), "2B": (1, 0, 1, 0, 0, 0, 16),
                      "4A": (0, 0, 0, 0, 0, 0, 0)}
    assert {r["classroom"]: tuple(r[name] for name in counts) for r in records(tables.period)} == weekly
    # With a lower minimum, 2B's third of the day is enough.
    lower = by_classroom_day(compute(readings(spark, rows), replace(DEFAULT_RULES, min_day_coverage=0.3)).daily)
    assert (lower[("2B", MONDAY)]["not_judged_reason"], lower[("2B", MONDAY)]["bb101_mean_met"]) == (None, True)


def test_occupied_time_of_clock_change_days_is_what_the_wall_clock_says() -> None:
    occupancy = Occupancy(parse_timetable("Sun 01:00-04:00; Mon 08:00-14:00"))
    hour = 3_600_000_000
    # 30 March 2025: 02:00 -> 03:00, the range lasts 2 hours; 26 October: 03:00 -> 02:00, 4.
    assert [occupied_us("Liceo", day, occupancy, "Europe/Rome")
            for day in (dt.date(2025, 3, 30), dt.date(2025, 10, 26), dt.date(2025, 10, 27))] == [
        2 * hour, 4 * hour, 6 * hour]
    assert occupied_us("Liceo", dt.date(2025, 3, 30), occupancy, "UTC") == 3 * hour


# --- the published view, in PostgreSQL ---------------------------------------------------------

def full_day(device: str, classroom: str, day: dt.date, co2: float, institute: str) -> list[tuple]:
    """08:00-14:00 covered: 24 readings 15 minutes apart."""
    return series(device, classroom, day, [(clock, co2) for clock in every_15_minutes("08:00", 24)],
                  institute=institute)


def test_the_view_ranks_current_classrooms_and_lists_stale_ones_after_them(
        spark: SparkSession, make_target: Callable[..., PostgresTarget]) -> None:
    w10, w11, w12, w13 = (MONDAY + dt.timedelta(weeks=k) for k in range(4))
    rows = (
        # Liceo: 1A sends every week through Monday of week 13, so weeks 10-12 are complete;
        # week 12 fails BB101 (mean 1600). 2B stopped after week 10, which it failed (mean
        # 2400): stale, two weeks behind 1A, listed after the current classrooms, not first.
        full_day("A", "1A", w10, 700.0, "Liceo") + full_day("A", "1A", w11, 700.0, "Liceo")
        + full_day("A", "1A", w12, 1600.0, "Liceo") + full_day("A", "1A", w13, 700.0, "Liceo")
        + full_day("B", "2B", w10, 2400.0, "Liceo")
        # Istituto: data through Wednesday of week 11 only: its week 11 is not complete,
        # although Liceo's data reach week 13. 3C's week 10 meets BB101.
        + full_day("C", "3C", w10, 900.0, "Istituto")
        + full_day("C", "3C", w11 + dt.timedelta(days=2), 900.0, "Istituto")
    )
    tables = compute(readings(spark, rows), DEFAULT_RULES)
    complete = {(r["classroom"], r["iso_week"]): r["week_complete"] for r in records(tables.weekly)}
    assert complete == {("1A", 10): True, ("1A", 11): True, ("1A", 12): True, ("1A", 13): False,
                        ("2B", 10): True, ("3C", 10): True, ("3C", 11): False}

    view = latest_complete_weeks(make_target(), tables.weekly, "institute, classroom, iso_week, judged_days, "
                                 "bb101_days_met, weeks_behind_institute")
    # 1A (0 of 1 judged days met) before 3C (1 of 1); then stale 2B, not ranked among them.
    assert view == [("Liceo", "1A", 12, 1, 0, 0), ("Istituto", "3C", 10, 1, 1, 0),
                    ("Liceo", "2B", 10, 1, 0, 2)]


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("IAQ_COMPLIANCE_SHARE", "1.5", "IAQ_COMPLIANCE_SHARE"),
    ("IAQ_OUTDOOR_CO2_PPM", "nan", "IAQ_OUTDOOR_CO2_PPM: expected a number from 300 to 600, got 'nan'"),
    ("IAQ_BB101_PEAK_MINUTES", "-1", "IAQ_BB101_PEAK_MINUTES"),
    ("IAQ_EN16798_CO2_EXCESS_PPM", "800,550,1350", "increasing"),
    ("IAQ_TEMPERATURE_HEATING_C", "24-20", "IAQ_TEMPERATURE_HEATING_C"),
    ("IAQ_TIMETABLE", "Mon-Fri 08:00-13:00,12:00-14:00", "overlap"),
    ("IAQ_TIMETABLE", "Fri-Mon 08:00-13:00", "backwards"),
    ("IAQ_TIMETABLE", "Mon-Fri 8-13", "HH:MM"),
    ("IAQ_HEATING_SEASON_START", "02-30", "IAQ_HEATING_SEASON_START"),
    ("IAQ_CLOSURES_FILE", "/nonexistent/closures.csv", "IAQ_CLOSURES_FILE"),
])
def test_each_option_is_validated_with_its_name(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        resolve_options(IAQ_OPTIONS, {}, {variable: value}, None)
    assert variable in str(raised.value)


def test_defaults_and_cross_option_rules(tmp_path: Path) -> None:
    settings = settings_from(IaqSettings, resolve_options(IAQ_OPTIONS, {}, {}, None))
    assert settings == IaqSettings()
    rules = settings.rules()
    assert rules.occupancy.default_timetable.text == "Mon 08:00-14:00; Tue 08:00-14:00; " \
        "Wed 08:00-14:00; Thu 08:00-14:00; Fri 08:00-14:00"
    with pytest.raises(ConfigurationError, match="IAQ_BB101_MEAN_CO2_PPM must not be above"):
        IaqSettings(iaq_bb101_mean_co2_ppm=2500).rules()
    bad = tmp_path / "closures.csv"
    bad.write_text("institute,first_date,last_date,reason\n*,2025-03-05,2025-03-04,x\n",
                   encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"closures.csv line 2: last_date 2025-03-04"):
        IaqSettings(iaq_closures_file=str(bad)).rules()
    bad.write_text("institute,timetable\nLiceo,Mon 08:00\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"IAQ_TIMETABLE_FILE .* line 2"):
        IaqSettings(iaq_timetable_file=str(bad)).rules()


# --- against an independent computation: SQL in DuckDB over the same raw rows -----------

GENERATED_DEFAULT_TIMETABLE = "Mon-Fri 08:00-13:00,14:00-16:00"
GENERATED_INSTITUTE_TIMETABLES = 'institute,timetable\nScuola Serale,"Mon-Fri 17:00-21:00; Sun 00:30-04:30"\n'
GENERATED_CLOSURES = ("institute,first_date,last_date,reason\n*,2024-10-16,2024-10-16,strike\n"
                      "Liceo,2024-10-25,2024-10-25,elections\n")
# The same, as the reference's plain tables: (institute, ISO weekday, start, end minute).
REFERENCE_TIMETABLE = (
    [(None, day, 8 * 60, 13 * 60) for day in range(1, 6)]
    + [(None, day, 14 * 60, 16 * 60) for day in range(1, 6)]
    + [("Scuola Serale", day, 17 * 60, 21 * 60) for day in range(1, 6)]
    + [("Scuola Serale", 7, 30, 4 * 60 + 30)])
REFERENCE_CLOSURES = [("*", dt.date(2024, 10, 16), dt.date(2024, 10, 16)),
                      ("Liceo", dt.date(2024, 10, 25), dt.date(2024, 10, 25))]
GENERATED_DEVICES = (
    ("A1", "Liceo", "3A", ("co2", "temperature", "pir")),
    ("A2", "Liceo", "3A", ("co2", "temperature")),  # a second CO2 device in 3A
    ("B1", "Liceo", "4B", ("co2", "temperature", "pir")),
    ("C1", "Scuola Serale", "1A", ("co2", "temperature", "pir")),
    ("D1", "Scuola Serale", "2B", ("co2",)),
    ("T1", "Liceo", "Palestra", ("temperature",)),
    ("W1", "Liceo", "Ingresso", ()),  # a door sensor
    ("U1", None, None, ("co2", "temperature")),  # not in the registry
    ("S1", "Liceo", "5C", ("co2",)),  # sparse: some days covered enough to be judged, some not
)
# Devices reporting five times less often (gaps of 15-45 minutes: coverage below 50 %) on
# odd days of the month.
SPARSE_DEVICES = {"S1"}


def generated_rows(seed: int) -> list[dict[str, Any]]:
    """Readings every 3-9 minutes with occasional 15-25 minute gaps, CO2 wandering across
    the peak, around the start of the heating season (15 October 2024) and the end of
    summer time (27 October 2024), with the contract's dirty cases."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    windows = ((dt.datetime(2024, 10, 13, tzinfo=dt.timezone.utc), 5),
               (dt.datetime(2024, 10, 24, tzinfo=dt.timezone.utc), 6))
    for device, institute, classroom, metrics in GENERATED_DEVICES:
        level = 600.0
        for start, days in windows:
            sendtime = start + dt.timedelta(minutes=rng.uniform(0, 5))
            while sendtime < start + dt.timedelta(days=days):
                level = min(3000.0, max(380.0, level + rng.gauss(0, 160)))
                co2 = rng.choice((2000.0, 950.0)) if rng.random() < 0.02 else float(round(level))
                row = {"DevEui": device, "institute": institute, "classroom": classroom,
                       "sendtime": sendtime,
                       "co2": co2 if "co2" in metrics else None,
                       "temperature": round(rng.uniform(18, 27), 1) if "temperature" in metrics else None,
                       "pir": rng.choice((0, 1, 1, None)) if "pir" in metrics else None}
                dirt = rng.random()
                if dirt < 0.01 and row["co2"] is not None:
                    row["co2"] = -5.0
                elif dirt < 0.02 and row["temperature"] is not None:
                    row["temperature"] = float("nan")
                elif dirt < 0.025:
                    row["sendtime"] = None
                elif dirt < 0.03 and row["pir"] is not None:
                    row["pir"] = 3
                rows.append(row)
                if rng.random() < 0.01:
                    rows.append(dict(row))  # a replay, kept (DROP_REPLAYS is off)
                gap = rng.uniform(15, 25) if rng.random() < 0.08 else rng.uniform(3, 9)
                gap *= 5 if device in SPARSE_DEVICES and sendtime.day % 2 else 1
                sendtime += dt.timedelta(milliseconds=round(gap * 60_000))
    return rows


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Rome"])
def test_tables_equal_an_independent_duckdb_computation(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path, timezone: str) -> None:
    (tmp_path / "timetables.csv").write_text(GENERATED_INSTITUTE_TIMETABLES, encoding="utf-8")
    (tmp_path / "closures.csv").write_text(GENERATED_CLOSURES, encoding="utf-8")
    rules = IaqSettings(iaq_timetable=GENERATED_DEFAULT_TIMETABLE,
                        iaq_timetable_file=str(tmp_path / "timetables.csv"),
                        iaq_closures_file=str(tmp_path / "closures.csv")).rules()
    rows = generated_rows(13)
    tables = compute(readings(spark, [tuple(row[c] for c in COLUMNS) for row in rows]), rules, timezone)

    con = independent_iaq.connect()
    independent_iaq.load_rows(con, rows)
    independent_iaq.compute(con, timezone, REFERENCE_TIMETABLE, REFERENCE_CLOSURES)
    keys = {"daily": ("institute", "classroom", "local_date"),
            "weekly": ("institute", "classroom", "week_start"), "period": ("institute", "classroom")}
    for name, df in (("daily", tables.daily), ("weekly", tables.weekly), ("period", tables.period)):
        expected = independent_iaq.fetch(con, name, ", ".join(keys[name]))
        actual = records(df, keys[name])
        independent_iaq.assert_rows_match(actual, expected, name)
    # The data must exercise what is compared: failed and met days, episodes, both devices,
    # days judged and days with too little data in the sparse classroom, temperature-only days.
    daily = independent_iaq.fetch(con, "daily", "local_date")
    assert {row["bb101_peak_met"] for row in daily} == {True, False, None}
    assert {row["bb101_mean_met"] for row in daily} >= {True, False}
    sparse = [row["not_judged_reason"] is None for row in daily if row["classroom"] == "5C"]
    assert True in sparse and False in sparse
    assert "no occupied CO2 reading" in {row["not_judged_reason"] for row in daily}
    # The published view over these weekly rows: the reference's latest complete weeks, in its
    # order; one per classroom with occupied readings (3A, 4B, 5C, Palestra, 1A, 2B; not the
    # door sensor's Ingresso).
    latest = latest_complete_weeks(make_target(), tables.weekly, "institute, classroom, week_start")
    assert latest == [(r["institute"], r["classroom"], r["week_start"])
                      for r in independent_iaq.fetch(con, "latest", "position")]
    assert len(latest) == 6


# --- public holidays (IAQ_PUBLIC_HOLIDAYS, the holidays column of IAQ_TIMETABLE_FILE) ------

EASTER_MONDAY, LIBERATION_DAY = dt.date(2025, 4, 21), dt.date(2025, 4, 25)  # a Monday, a Friday
WHIT_MONDAY = dt.date(2025, 6, 9)  # a public holiday in South Tyrol (IT-BZ) only
ROME_PATRONS = dt.date(2026, 6, 29)  # Saints Peter and Paul, Rome's (IT-RM) only; a Monday


def school_dates(daily: pd.DataFrame) -> dict[str, list[dt.date]]:
    """The local dates of classroom_daily_iaq rows per institute."""
    dates: dict[str, list[dt.date]] = {}
    for row in records(daily, ("institute", "local_date")):
        dates.setdefault(row["institute"], []).append(row["local_date"])
    return dates


def test_public_holidays_are_closed_days_in_italy_by_default(spark: SparkSession) -> None:
    thursday, tuesday = dt.date(2025, 4, 17), dt.date(2025, 4, 22)
    rows = [("A", "Liceo", "3A", at(day, "09:00"), 800.0, 21.0, None)
            for day in (thursday, EASTER_MONDAY, tuesday, LIBERATION_DAY)]
    # The default calendar IT: Easter Monday and 25 April (Liberation Day) are closed, the
    # Thursday and Tuesday are school days.
    assert DEFAULT_RULES.occupancy.public_holidays == "IT"
    tables = compute(readings(spark, rows))
    assert school_dates(tables.daily) == {"Liceo": [thursday, tuesday]}
    # ISO week 17 (21-27 April): one school day of three readings' days.
    weekly = {r["iso_week"]: r for r in records(tables.weekly)}
    assert (weekly[16]["school_days"], weekly[17]["school_days"], weekly[17]["co2_occupied_readings"]) == (1, 1, 1)

    # none: every weekday of the timetable is a school day again.
    tables = compute(readings(spark, rows), IaqSettings(iaq_public_holidays="none").rules())
    assert school_dates(tables.daily) == {"Liceo": [thursday, EASTER_MONDAY, tuesday, LIBERATION_DAY]}
    assert {r["iso_week"]: r["school_days"] for r in records(tables.weekly)} == {16: 1, 17: 3}


def test_an_institute_calendar_applies_to_that_institute_only(spark: SparkSession, tmp_path: Path) -> None:
    timetables = tmp_path / "timetables.csv"
    timetables.write_text(
        "institute,timetable,holidays\n"
        "Liceo Bolzano,Mon-Fri 08:00-14:00,IT-BZ\n"
        "Liceo Roma,Mon-Fri 08:00-14:00,it-rm\n"  # case does not matter
        "Scuola Senza,Mon-Fri 08:00-14:00,none\n"
        "Istituto,Mon-Fri 08:00-14:00,\n",  # empty: IAQ_PUBLIC_HOLIDAYS
        encoding="utf-8")
    rules = IaqSettings(iaq_timetable_file=str(timetables)).rules()
    assert rules.occupancy.calendars() == {"*": "IT", "Liceo Bolzano": "IT-BZ", "Liceo Roma": "IT-RM",
                                           "Scuola Senza": "none"}
    ordinary = dt.date(2025, 6, 10)  # a Tuesday, no holiday anywhere
    days = (EASTER_MONDAY, WHIT_MONDAY, ordinary, ROME_PATRONS)
    rows = [(institute[:3], institute, "3A", at(day, "09:00"), 800.0, 21.0, None)
            for institute in ("Liceo Bolzano", "Liceo Roma", "Scuola Senza", "Istituto", "Liceo")
            for day in days]
    # Easter Monday is national: closed everywhere but where the calendar is none; Whit Monday
    # in Bolzano only; 29 June in Rome only; Istituto (empty cell) and Liceo (not in the
    # file) follow the default IT.
    assert school_dates(compute(readings(spark, rows), rules).daily) == {
        "Istituto": [WHIT_MONDAY, ordinary, ROME_PATRONS],
        "Liceo": [WHIT_MONDAY, ordinary, ROME_PATRONS],
        "Liceo Bolzano": [ordinary, ROME_PATRONS],
        "Liceo Roma": [WHIT_MONDAY, ordinary],
        "Scuola Senza": [EASTER_MONDAY, WHIT_MONDAY, ordinary, ROME_PATRONS],
    }

    # The header of the older release (no holidays column) is still read: default calendar.
    timetables.write_text('institute,timetable\nLiceo Bolzano,"Mon-Fri 08:00-14:00"\n', encoding="utf-8")
    rules = IaqSettings(iaq_timetable_file=str(timetables), iaq_public_holidays="IT-BZ").rules()
    bolzano = [row for row in rows if row[1] == "Liceo Bolzano"]
    assert school_dates(compute(readings(spark, bolzano), rules).daily) == {
        "Liceo Bolzano": [ordinary, ROME_PATRONS]}


def test_the_public_holidays_applied_are_those_of_the_data_dates(tmp_path: Path) -> None:
    timetables = tmp_path / "timetables.csv"
    timetables.write_text("institute,timetable,holidays\nLiceo Bolzano,Mon-Fri 08:00-14:00,IT-BZ\n"
                          "Scuola Senza,Mon-Fri 08:00-14:00,none\n", encoding="utf-8")
    occupancy = IaqSettings(iaq_timetable_file=str(timetables)).rules().occupancy
    # From 20 April to 9 June 2025: Easter Sunday and Monday, 25 April, 1 May, 2 June; and
    # Whit Monday in South Tyrol. The names are the library's (English by default).
    national = {"2025-04-20": "Easter Sunday", "2025-04-21": "Easter Monday",
                "2025-04-25": "Liberation Day", "2025-05-01": "Labor Day", "2025-06-02": "Republic Day"}
    assert public_holidays_applied(occupancy, dt.date(2025, 4, 20), WHIT_MONDAY) == {
        "first_date": "2025-04-20", "last_date": "2025-06-09",
        "calendars": {"*": "IT", "Liceo Bolzano": "IT-BZ", "Scuola Senza": "none"},
        "holidays": {"IT": national, "IT-BZ": {**national, "2025-06-09": "Pentecost Monday"}},
    }


@pytest.mark.parametrize(("text", "message"), [
    ("XX", "'XX' is not a public-holiday calendar of the holidays library"),
    ("IT-ZZ", "'ZZ' is not a subdivision of IT in the holidays library"),
    ("IT-", "'' is not a subdivision of IT"),
    ("Italy", "'Italy' is not a public-holiday calendar"),
])
def test_an_unknown_holiday_calendar_is_refused_with_its_name(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=f"IAQ_PUBLIC_HOLIDAYS: .*{message}"):
        resolve_options(IAQ_OPTIONS, {}, {"IAQ_PUBLIC_HOLIDAYS": text}, None)
    timetables = tmp_path / "timetables.csv"
    timetables.write_text(f"institute,timetable,holidays\nLiceo,Mon-Fri 08:00-14:00,{text}\n",
                          encoding="utf-8")
    with pytest.raises(ConfigurationError, match=f"IAQ_TIMETABLE_FILE .* line 2: holidays: .*{message}"):
        IaqSettings(iaq_timetable_file=str(timetables)).rules()


def test_holiday_calendars_are_normalised_and_the_header_checked(tmp_path: Path) -> None:
    values = resolve_options(IAQ_OPTIONS, {}, {"IAQ_PUBLIC_HOLIDAYS": " it-bz "}, None)
    assert values["iaq_public_holidays"] == "IT-BZ"
    assert resolve_options(IAQ_OPTIONS, {}, {"IAQ_PUBLIC_HOLIDAYS": "None"}, None)[
        "iaq_public_holidays"] == "none"
    timetables = tmp_path / "timetables.csv"
    timetables.write_text("institute,holidays\nLiceo,IT\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="the first line must be the header "
                       "institute,timetable,holidays \\(or institute,timetable\\)"):
        IaqSettings(iaq_timetable_file=str(timetables)).rules()
    timetables.write_text("institute,timetable,holidays\nLiceo,Mon-Fri 08:00-14:00\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="line 2: expected 3 fields"):
        IaqSettings(iaq_timetable_file=str(timetables)).rules()


def test_the_catalog_comments_name_the_holiday_calendar() -> None:
    def daily_comment(settings: IaqSettings) -> str:
        return next(table.description for table in iaq_catalog_tables(settings, "Europe/Rome")
                    if table.name == "classroom_daily_iaq")
    assert "public holiday of the calendar IT (IAQ_PUBLIC_HOLIDAYS, from the holidays library" in (
        daily_comment(IaqSettings()))
    assert "public holidays not closed (IAQ_PUBLIC_HOLIDAYS=none)" in daily_comment(
        IaqSettings(iaq_public_holidays="none"))


# --- the clock changes of Europe/Rome in the compliance tables -----------------------------

def every_quarter_hour(first_utc: dt.datetime, count: int, co2_at: Any) -> list[tuple]:
    """Device A of Liceo 3A: `count` readings 15 minutes apart from `first_utc`, CO2
    `co2_at(instant)`, 21 °C."""
    instants = [first_utc + dt.timedelta(minutes=15 * k) for k in range(count)]
    return [("A", "Liceo", "3A", instant, co2_at(instant), 21.0, None) for instant in instants]


def test_the_clock_changes_in_the_compliance_tables(spark: SparkSession) -> None:
    rome = "Europe/Rome"
    rules = rules_with("Sun 08:00-14:00")  # both changes fall on a Sunday
    utc = dt.timezone.utc
    autumn, spring = dt.date(2025, 10, 26), dt.date(2025, 3, 30)

    # 26 October 2025 lasts 25 hours: local midnight is 22:00 UTC on the 25th (CEST, +2),
    # at 01:00 UTC the clocks go back from 03:00 CEST to 02:00 CET (+1), and the next
    # midnight is 23:00 UTC. 25 h / 15 min = 100 readings, 22:00 UTC to 22:45 UTC, every one
    # on the local date of the 26th. The hour 02:00-03:00 happens twice (00:00-00:45 and
    # 01:00-01:45 UTC, 8 readings, 3000 ppm): inside no timetable. 08:00-14:00 CET is
    # 07:00-13:00 UTC: readings 07:00 ... 12:45, (13:00 - 07:00) / 15 min = 24 occupied.
    # 06:00-06:45 UTC (07:00-07:45 CET; 08:00-08:45 with the summer offset) read 2600: not occupied.
    # Occupied: 1200, except 09:00 and 09:15 UTC (10:00, 10:15 CET) at 2400.
    def autumn_co2(instant: dt.datetime) -> float:
        hour, minute = instant.hour, instant.minute
        if instant.date() == autumn and hour in (0, 1):
            return 3000.0
        if instant.date() == autumn and hour == 6:
            return 2600.0
        if instant.date() == autumn and (hour, minute) in ((9, 0), (9, 15)):
            return 2400.0
        if instant.date() == autumn and 7 <= hour < 13:
            return 1200.0
        return 500.0

    # 30 March 2025 lasts 23 hours: local midnight is 23:00 UTC on the 29th (CET, +1), at
    # 01:00 UTC the clocks jump from 02:00 CET to 03:00 CEST (+2), the next midnight is
    # 22:00 UTC: 92 readings, 23:00 UTC to 21:45 UTC. 08:00-14:00 CEST is 06:00-12:00 UTC:
    # 24 occupied readings, 06:00 ... 11:45. 12:00-12:45 UTC (14:00-14:45 CEST; 13:00-13:45
    # with the winter offset) read 2600: not occupied. Occupied: 1600, except 10:30 UTC
    # (12:30 CEST) at 2200.
    def spring_co2(instant: dt.datetime) -> float:
        hour, minute = instant.hour, instant.minute
        if instant.date() == spring and hour == 12:
            return 2600.0
        if instant.date() == spring and (hour, minute) == (10, 30):
            return 2200.0
        if instant.date() == spring and 6 <= hour < 12:
            return 1600.0
        return 500.0

    rows = (every_quarter_hour(dt.datetime(2025, 10, 25, 22, tzinfo=utc), 100, autumn_co2)
            + every_quarter_hour(dt.datetime(2025, 3, 29, 23, tzinfo=utc), 92, spring_co2))
    tables = compute(readings(spark, rows), rules, rome)
    daily = by_classroom_day(tables.daily)
    assert set(daily) == {("3A", autumn), ("3A", spring)}

    day = daily[("3A", autumn)]
    # Mean (22 * 1200 + 2 * 2400) / 24 = 31200 / 24 = 1300 < 1500: met. The episode: 09:00
    # and 09:15 stand for 15 minutes each (the next reading) = 30 > 20: the peak is failed.
    assert (day["co2_occupied_readings"], day["co2_occupied_mean"], day["co2_occupied_max"],
            day["longest_peak_episode_minutes"], day["bb101_mean_met"], day["bb101_peak_met"],
            day["temperature_occupied_readings"]) == (24, 1300.0, 2400.0, 30.0, True, False, 24)

    day = daily[("3A", spring)]
    # Mean (23 * 1600 + 2200) / 24 = 39000 / 24 = 1625 >= 1500: failed. The episode: 10:30
    # alone, standing for 15 minutes <= 20: the peak is met.
    assert (day["co2_occupied_readings"], day["co2_occupied_mean"], day["co2_occupied_max"],
            day["longest_peak_episode_minutes"], day["bb101_mean_met"], day["bb101_peak_met"],
            day["temperature_occupied_readings"]) == (24, 1625.0, 2200.0, 15.0, False, True, 24)

    # ISO weeks 2025-W13 (24-30 March) and 2025-W43 (20-26 October): one school day each.
    weekly = {r["iso_week"]: r for r in records(tables.weekly)}
    assert {week: (r["week_start"], r["school_days"], r["bb101_mean_days_met"], r["bb101_peak_days_met"],
                   r["bb101_days_met"]) for week, r in weekly.items()} == {
        13: (dt.date(2025, 3, 24), 1, 0, 1, 0), 43: (dt.date(2025, 10, 20), 1, 1, 0, 0)}

    # The same rows computed independently give the same tables.
    con = independent_iaq.connect()
    independent_iaq.load_rows(con, [dict(zip(COLUMNS, row)) for row in rows])
    independent_iaq.compute(con, rome, [(None, 7, 8 * 60, 14 * 60)])
    independent_iaq.assert_rows_match(records(tables.daily, ("local_date",)),
                                      independent_iaq.fetch(con, "daily", "local_date"), "daily")
