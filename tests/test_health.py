"""Sensor health (issue 23) end to end: hand-worked device histories through a real Spark and a
real PostgreSQL, read back from device_daily_health, device_health and sensors_needing_attention.

Every expected value below is worked by hand from the histories (the comments show the work), or
counted in plain Python from the rows written (readings and hours per local day); none comes
from batch.analysis.health. The last test compares health's two derivations (the whole one,
checked by hand here, and an incremental run's from a date on) on random histories.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import random

import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batch.analysis.health import health_results
from batch.analysis.health_partials import (BATTERY_MIN, CHECKED_METRICS, CO2_NIGHT_MIN, HOUR_MASK, STUCK_METRICS,
                                            stuck_max, stuck_min, stuck_n)
from batch.analysis.health_settings import HealthSettings
from batch.analysis.statistics import READING_DATE
from batch.core.postgres import PostgresTarget
from batch.core.validation import EXCLUSION_REASON, out_of_range_flag
from tests import independent
from tests.test_analysis import analysis_settings, connect, last_run, run, write_rows

ROME = ZoneInfo("Europe/Rome")
UTC = dt.timezone.utc
INSTITUTE = "Liceo Galilei"


def local_instants(day: dt.date, hours: Iterator[int] | range | list[int],
                   minute: int = 30) -> list[dt.datetime]:
    """The UTC instants of the wall-clock times hh:mm of `day` in Rome: none for a time the
    clocks skip, both for a time they repeat."""
    instants = []
    for hour in hours:
        for fold in (0, 1):
            local = dt.datetime.combine(day, dt.time(hour, minute, fold=fold)).replace(tzinfo=ROME)
            instant = local.astimezone(UTC)
            if instant.astimezone(ROME).replace(tzinfo=None) != local.replace(tzinfo=None):
                continue  # skipped: the clocks jump over it
            if instant not in instants:
                instants.append(instant)
    return instants


def dates(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def reading(device: str, classroom: str, at: dt.datetime, **values: Any) -> dict[str, Any]:
    hour = at.astimezone(ROME).hour
    row = {"DevEui": device, "sendtime": at, "institute": INSTITUTE, "classroom": classroom,
           "profile": "AM319", "temperature": 20 + (hour % 5) * 0.5, "humidity": 40.0 + hour % 3,
           "co2": 420.0 if hour < 5 else 600.0 + 10 * hour, "pressure": 1010 + (hour % 4) * 0.1,
           "battery": 90.0}
    row.update(values)
    return row


def write_readings(folder: Path, rows: list[dict[str, Any]]) -> Path:
    columns = ("DevEui", "institute", "classroom", "profile")
    metrics = ("temperature", "humidity", "co2", "pressure", "battery")
    return write_rows(folder / "part-0.parquet", {
        **{name: pa.array([row[name] for row in rows], pa.string()) for name in columns},
        "sendtime": pa.array([row["sendtime"] for row in rows], pa.timestamp("us", tz="UTC")),
        **{name: pa.array([row.get(name) for row in rows], pa.float64()) for name in metrics},
    })


# --- spring: 1 March - 4 April 2025, the clocks go forward on 30 March (a 23-hour day) -------

FIRST, LAST = dt.date(2025, 3, 1), dt.date(2025, 4, 4)
# The input starts at 06:30 local on 1 March and ends at 12:30 local on 4 April (10:30 UTC).
END_HOUR = 12


def hourly(day: dt.date) -> list[int]:
    if day == FIRST:
        return list(range(6, 24))
    if day == LAST:
        return list(range(0, END_HOUR + 1))
    return list(range(24))


def spring_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(device: str, classroom: str, days: list[dt.date], hours: Callable[[dt.date], list[int]],
            **values: Callable[[dt.date, int], Any]) -> None:
        for day in days:
            for at in local_instants(day, hours(day)):
                hour = at.astimezone(ROME).hour
                rows.append(reading(device, classroom, at,
                                    **{name: value(day, hour) for name, value in values.items()}))

    every_day = dates(FIRST, LAST)
    # OK: hourly all along; one humidity and one CO2 value out of range on 5 March.
    add("ok", "1A", every_day, hourly)
    bad = [row for row in rows if row["sendtime"].astimezone(ROME).date() == dt.date(2025, 3, 5)]
    bad[1]["humidity"], bad[2]["co2"] = 180.0, -5.0
    # SILENT: hourly, its last reading at 23:30 on 1 April; nothing on 2, 3 and 4 April.
    add("silent", "1B", dates(FIRST, dt.date(2025, 4, 1)), hourly)
    # HALF: hourly until 20 March, then every 2 hours (half as often).
    add("half", "2A", every_day,
        lambda day: hourly(day) if day <= dt.date(2025, 3, 20) else [h for h in hourly(day) if h % 2 == 0])
    # SPARSE: hourly until 25 March, then every 3 hours.
    add("sparse", "2C", every_day,
        lambda day: hourly(day) if day <= dt.date(2025, 3, 25) else [h for h in hourly(day) if h % 3 == 0])
    # STUCK: temperature 21.0 all day on 15 March, 3 and 4 April.
    stuck_days = {dt.date(2025, 3, 15), dt.date(2025, 4, 3), dt.date(2025, 4, 4)}
    add("stuck", "2B", every_day, hourly,
        temperature=lambda day, hour: 21.0 if day in stuck_days else 20 + (hour % 5) * 0.5)
    # STUCK2: as stuck on 3 April; on 4 April three readings (00:30-02:30), all 21.0, then silent.
    add("stuck2", "2D", dates(FIRST, dt.date(2025, 4, 3)), hourly,
        temperature=lambda day, hour: 21.0 if day == dt.date(2025, 4, 3) else 20 + (hour % 5) * 0.5)
    add("stuck2", "2D", [LAST], lambda day: [0, 1, 2], temperature=lambda day, hour: 21.0)
    # DRIFT: night CO2 (00:00-05:00) 420 until 20 March, climbing 28 ppm a night over the 10
    # nights 21-30 March to 700, then 700.
    def night_co2(day: dt.date, hour: int) -> float:
        if hour >= 5:
            return 600.0 + 10 * hour
        climbed = min(max((day - dt.date(2025, 3, 20)).days, 0), 10)
        return 420.0 + 28 * climbed
    add("drift", "3A", every_day, hourly, co2=night_co2)
    # BATTERY: falls 1 % a day, 60 % on 1 March ... 26 % on 4 April.
    add("battery", "3B", every_day, hourly,
        battery=lambda day, hour: 60.0 - (day - FIRST).days)
    # MOVED: 4A until 14:30 on 18 March, 4B from 15:30.
    add("moved", "4A", dates(FIRST, dt.date(2025, 3, 17)), hourly)
    add("moved", "4A", [dt.date(2025, 3, 18)], lambda day: list(range(0, 15)))
    add("moved", "4B", [dt.date(2025, 3, 18)], lambda day: list(range(15, 24)))
    add("moved", "4B", dates(dt.date(2025, 3, 19), LAST), hourly)
    # NIGHT: only 00:30-04:30 from 25 March, CO2 430; a battery only from 30 March, falling
    # 2 % a day (6 days: too few for the days left).
    add("night", "4C", dates(dt.date(2025, 3, 25), LAST), lambda day: list(range(5)),
        co2=lambda day, hour: 430.0,
        battery=lambda day, hour: None if day < dt.date(2025, 3, 30)
        else 50.0 - 2 * (day - dt.date(2025, 3, 30)).days)
    # DAILY: one reading a day at 18:30, up to 3 April.
    add("daily", "4D", dates(FIRST, dt.date(2025, 4, 3)), lambda day: [18])
    return rows


def plain_counts(rows: list[dict[str, Any]]) -> tuple[Counter, dict[tuple[str, dt.date], set[int]]]:
    """Readings and the wall-clock hours with one, per device and Rome date, in plain Python."""
    counts: Counter = Counter()
    hours: dict[tuple[str, dt.date], set[int]] = defaultdict(set)
    for row in rows:
        local = row["sendtime"].astimezone(ROME)
        counts[row["DevEui"], local.date()] += 1
        hours[row["DevEui"], local.date()].add(local.hour)
    return counts, hours


@pytest.fixture(scope="module")
def spring(spark: SparkSession, postgres_server: Any, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, Any]:
    """One analysis of the spring histories (module-scoped: every test reads its results)."""
    folder = tmp_path_factory.mktemp("health")
    rows = spring_rows()
    # Excluded readings (no sendtime; no classroom) are no device's readings: their partial rows,
    # whose health aggregates are null, stay out of the tables.
    at = local_instants(dt.date(2025, 3, 10), [9])[0]
    excluded = [{**reading("ok", "1A", at), "sendtime": None}, reading("ok", None, at)]
    raw = write_readings(folder / "raw", rows + excluded)
    target = PostgresTarget(host=postgres_server.host, port=postgres_server.port,
                            database=postgres_server.database, user=postgres_server.user,
                            password=_password(postgres_server), schema="t_health_spring",
                            connect_attempts=2, lock_timeout_s=5.0)
    summary = run(spark, analysis_settings(target, raw, BATCH_TIMEZONE="Europe/Rome",
                                           REPORT_DIR=str(folder / "reports")))
    with connect(target) as conn:
        daily = independent.fetch_dicts(
            conn, 'SELECT * FROM "t_health_spring".device_daily_health ORDER BY dev_eui, local_date')
        devices = independent.fetch_dicts(
            conn, 'SELECT * FROM "t_health_spring".device_health ORDER BY dev_eui')
        attention = independent.fetch_dicts(
            conn, 'SELECT * FROM "t_health_spring".sensors_needing_attention')
    return {"rows": rows, "raw": raw, "daily": daily, "devices": {row["dev_eui"]: row for row in devices},
            "attention": attention, "target": target,
            "report": Path(summary.report_path).read_text(encoding="utf-8")}


def _password(server: Any) -> Any:
    from batch.core.config import Secret
    return Secret(server.password())


def _day(spring: dict[str, Any], device: str, day: dt.date) -> dict[str, Any]:
    return next(row for row in spring["daily"] if row["dev_eui"] == device and row["local_date"] == day)


def test_every_device_has_a_row_per_date_from_its_first_reading_to_the_inputs_last(
        spring: dict[str, Any]) -> None:
    first_dates = {"night": dt.date(2025, 3, 25)}
    by_device: dict[str, list[dt.date]] = defaultdict(list)
    for row in spring["daily"]:
        by_device[row["dev_eui"]].append(row["local_date"])
    assert sorted(by_device) == sorted(
        ["ok", "silent", "half", "sparse", "stuck", "stuck2", "drift", "battery", "moved", "night",
         "daily"])
    for device, days in by_device.items():
        assert days == dates(first_dates.get(device, FIRST), LAST), device


def test_readings_and_hours_per_day_match_a_plain_count(spring: dict[str, Any]) -> None:
    counts, hours = plain_counts(spring["rows"])
    for row in spring["daily"]:
        key = (row["dev_eui"], row["local_date"])
        assert (row["readings"], row["hours_with_readings"]) == (counts[key], len(hours[key])), key


def test_statuses_worked_by_hand(spring: dict[str, Any]) -> None:
    # silent: nothing from 2 April; on 4 April one was due (24 usual x 12.5/24 of the day).
    # half: 12 readings a day from 21 March is not fewer than half of 24; on 30 March (23 hours)
    # it sent 11, against a usual 24 (median of 2-29 March: 19 days of 24, 9 of 12).
    # sparse: 8 a day from 26 March against a usual 24; on 4 April 5 by 12:30, fewer than half
    # of 24 x 12.5/24 = 12.5 due (the median of 7 March - 3 April: 19 days of 24, 9 of 8).
    # stuck: temperature 21.0 all day (24 readings; 13 by 12:30 on 4 April, still >= 12).
    # stuck2: 3 readings on 4 April, fewer than half of the 12.5 due, but all on the 21.0 it was
    # stuck on the day before: stuck comes before sparse.
    # daily: no reading on 4 April by 12:30, but 1 x 12.5/24 < 1 was due and it sent on 3 April.
    sparse_days = dates(dt.date(2025, 3, 26), LAST)
    expected = {
        ("silent", dt.date(2025, 4, 2)): "offline", ("silent", dt.date(2025, 4, 3)): "offline",
        ("silent", LAST): "offline", ("half", dt.date(2025, 3, 30)): "sparse",
        **{("sparse", day): "sparse" for day in sparse_days},
        ("stuck", dt.date(2025, 3, 15)): "stuck", ("stuck", dt.date(2025, 4, 3)): "stuck",
        ("stuck", LAST): "stuck", ("stuck2", dt.date(2025, 4, 3)): "stuck", ("stuck2", LAST): "stuck",
    }
    actual = {(row["dev_eui"], row["local_date"]): row["status"] for row in spring["daily"]
              if row["status"] != "ok"}
    assert actual == expected


def test_hours_gaps_and_daily_measures_worked_by_hand(spring: dict[str, Any]) -> None:
    march_30 = dt.date(2025, 3, 30)  # 23 hours: 02:00-02:59 does not exist
    fields = ("classroom", "readings", "hours_with_readings", "longest_gap_hours", "usual_readings",
              "status")
    expected = {
        # The input's first date starts at 06:30: hours 0-5 are not counted as a gap.
        ("ok", FIRST): ("1A", 18, 18, 0.0, None, "ok"),
        ("ok", march_30): ("1A", 23, 23, 0.0, 24.0, "ok"),
        # The input's last date ends at 12:30: hours 13-23 are not counted as a gap.
        ("ok", LAST): ("1A", 13, 13, 0.0, 24.0, "ok"),
        # Offline days: the classroom of the last reading, the whole day (or the input's part) a gap.
        ("silent", dt.date(2025, 4, 2)): ("1B", 0, 0, 24.0, 24.0, "offline"),
        ("silent", LAST): ("1B", 0, 0, 13.0, 24.0, "offline"),
        # Moved at 15:00 on 18 March: one row, the new classroom, the hours of both merged.
        ("moved", dt.date(2025, 3, 17)): ("4A", 24, 24, 0.0, 24.0, "ok"),
        ("moved", dt.date(2025, 3, 18)): ("4B", 24, 24, 0.0, 24.0, "ok"),
        ("moved", dt.date(2025, 3, 19)): ("4B", 24, 24, 0.0, 24.0, "ok"),
        # Night only: 00:30-04:30, a gap of hours 5-23; on 30 March hour 2 does not exist and
        # does not break the hours 0-4; on 4 April the gap is hours 5-12.
        ("night", dt.date(2025, 3, 25)): ("4C", 5, 5, 19.0, None, "ok"),
        ("night", march_30): ("4C", 4, 4, 19.0, 5.0, "ok"),
        ("night", LAST): ("4C", 5, 5, 8.0, 5.0, "ok"),
        # One reading at 18:30: hours 0-17 empty, 17 elapsed hours on 30 March.
        ("daily", dt.date(2025, 3, 29)): ("4D", 1, 1, 18.0, 1.0, "ok"),
        ("daily", march_30): ("4D", 1, 1, 17.0, 1.0, "ok"),
        ("daily", LAST): ("4D", 0, 0, 13.0, 1.0, "ok"),
        # half on 4 April: 7 readings (0:30, 2:30 ... 12:30); usual: median of 7 March - 3 April,
        # 14 days of 24 and 13 of 12 and one of 11 (30 March): (12 + 24) / 2 = 18.
        ("half", LAST): ("2A", 7, 7, 1.0, 18.0, "ok"),
    }
    actual = {key: tuple(_day(spring, *key)[field] for field in fields) for key in expected}
    assert actual == expected

    out_of_range = _day(spring, "ok", dt.date(2025, 3, 5))
    assert {name: out_of_range[name] for name in
            ("values_out_of_range", "humidity_out_of_range", "co2_out_of_range",
             "temperature_out_of_range", "co2_night_min")} == {
        "values_out_of_range": 2, "humidity_out_of_range": 1, "co2_out_of_range": 1,
        "temperature_out_of_range": 0, "co2_night_min": 420.0}
    # 28 ppm a night from 21 March: the 9th night, 29 March, 672; the 10th, 30 March, 700.
    assert [_day(spring, "drift", day)["co2_night_min"] for day in
            (dt.date(2025, 3, 20), dt.date(2025, 3, 21), dt.date(2025, 3, 29), march_30)] == [
        420.0, 448.0, 672.0, 700.0]
    assert _day(spring, "battery", LAST)["battery_min"] == 26.0
    assert _day(spring, "stuck", LAST)["stuck_metrics"] == "temperature 21 °C"
    assert _day(spring, "daily", LAST)["battery_min"] is None


def test_device_health_worked_by_hand(spring: dict[str, Any]) -> None:
    end = dt.datetime(2025, 4, 4, 10, 30, tzinfo=UTC)  # 12:30 in Rome (summer time)
    fields = ("classroom", "last_reading_at", "days_since_last_reading", "status", "readings",
              "usual_readings", "battery_level", "co2_baseline_ppm", "co2_drift_suspected")
    expected = {
        "ok": ("1A", end, 0, "ok", 13, 24.0, 90.0, 420.0, False),
        "silent": ("1B", dt.datetime(2025, 4, 1, 21, 30, tzinfo=UTC), 3, "offline", 0, 24.0, 90.0,
                   420.0, False),
        "half": ("2A", end, 0, "ok", 7, 18.0, 90.0, 420.0, False),
        "sparse": ("2C", end, 0, "sparse", 5, 24.0, 90.0, 420.0, False),
        "stuck": ("2B", end, 0, "stuck", 13, 24.0, 90.0, 420.0, False),
        "stuck2": ("2D", dt.datetime(2025, 4, 4, 0, 30, tzinfo=UTC), 0, "stuck", 3, 24.0, 90.0,
                   420.0, False),
        # Night minima 420 ... 448 (21 March) ... 700 (30 March on): the median of 7 nights
        # rising is the 4th; the baseline as of each night of 29 March - 4 April is the minimum
        # of 26 March (588) or later, above 400 + 150: drift; today's median 700.
        "drift": ("3A", end, 0, "ok", 13, 24.0, 90.0, 700.0, True),
        "battery": ("3B", end, 0, "ok", 13, 24.0, 26.0, 420.0, False),
        "moved": ("4B", end, 0, "ok", 13, 24.0, 90.0, 420.0, False),
        "night": ("4C", dt.datetime(2025, 4, 4, 2, 30, tzinfo=UTC), 0, "ok", 5, 5.0, 40.0, 430.0,
                  False),  # 04:30 in Rome
        "daily": ("4D", dt.datetime(2025, 4, 3, 16, 30, tzinfo=UTC), 1, "ok", 0, 1.0, 90.0, None,
                  False),
    }
    actual = {device: tuple(row[field] for field in fields)
              for device, row in spring["devices"].items()}
    assert actual == expected
    # Battery: 26 + x on x = -29 ... 0 (6 March - 4 April), slope -1: 16 days to 10 %. Constant
    # batteries do not fall (NULL); night's falls over 6 days only (NULL).
    days_left = {device: row["battery_days_left"] for device, row in spring["devices"].items()}
    assert days_left.pop("battery") == pytest.approx(16.0)
    assert set(days_left.values()) == {None}
    assert {row["as_of_date"] for row in spring["devices"].values()} == {LAST}
    assert {row["profile"] for row in spring["devices"].values()} == {"AM319"}


def test_sensors_needing_attention_worst_first_in_words(spring: dict[str, Any]) -> None:
    assert [(row["dev_eui"], row["institute"], row["classroom"], row["reasons"])
            for row in spring["attention"]] == [
        ("silent", INSTITUTE, "1B", "no reading for 3 days (last on 2025-04-01 23:30): check its "
                                    "battery and that its gateway is on"),
        ("stuck", INSTITUTE, "2B", "stuck on one value all day on 2025-04-04 (temperature 21 °C): "
                                   "the sensor may be faulty or covered"),
        ("stuck2", INSTITUTE, "2D", "stuck on one value all day on 2025-04-04 (temperature 21 °C): "
                                    "the sensor may be faulty or covered"),
        ("sparse", INSTITUTE, "2C", "only 5 readings on 2025-04-04 where it usually sends 24 a "
                                    "day: a weak radio link to the gateway, or a failing battery"),
        ("drift", INSTITUTE, "3A", "CO2 at night stays around 700 ppm, 300 ppm above outdoor air "
                                   "(400 ppm): the sensor needs recalibrating, or the room is "
                                   "never aired at night"),
        ("battery", INSTITUTE, "3B", "battery at 26 %, about 16 days left before 10 %: replace it"),
    ]
    assert {row["dev_eui"]: row["reasons"] for row in spring["devices"].values()
            if row["dev_eui"] in ("ok", "half", "moved", "night", "daily")} == dict.fromkeys(
        ("ok", "half", "moved", "night", "daily"))


def test_the_health_settings_are_recorded_with_the_run(spring: dict[str, Any]) -> None:
    settings = last_run(spring["target"])["settings"]
    assert {name: settings[name] for name in settings if name.startswith("health_")} == {
        "health_night_end_hour": 5, "health_stuck_min_readings": 12, "health_sparse_share": 0.5,
        "health_usual_days": 28, "health_battery_fit_days": 30, "health_battery_min_days": 7,
        "health_battery_empty_pct": 10.0, "health_battery_attention_days": 30,
        "health_co2_baseline_nights": 7, "health_co2_drift_above_ppm": 150.0,
        "health_co2_drift_below_ppm": 50.0, "health_co2_drift_nights": 7}


# --- autumn: the clocks go back on 26 October 2025 (a 25-hour day) ---------------------------

def test_the_day_the_clocks_go_back_has_25_hours(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    first, change, last = dt.date(2025, 10, 20), dt.date(2025, 10, 26), dt.date(2025, 10, 27)
    rows = []
    for day in dates(first, last):
        hours = list(range(24)) if day < last else list(range(9))  # the input ends at 08:30
        for at in local_instants(day, hours):
            rows.append(reading("hourly", "1A", at))
            # gap: nothing from 00:00 to 04:00 on the 26th (hours 0, 1, 2 twice, 3).
            if not (day == change and at.astimezone(ROME).hour < 4):
                rows.append(reading("gap", "1B", at))
            # quiet: silent all the 26th.
            if day != change:
                rows.append(reading("quiet", "1C", at))
    target = make_target()
    summary = run(spark, analysis_settings(target, write_readings(tmp_path / "raw", rows),
                                           BATCH_TIMEZONE="Europe/Rome",
                                           REPORT_DIR=str(tmp_path / "reports")))
    with connect(target) as conn:
        daily = independent.fetch_dicts(
            conn, f'SELECT dev_eui, local_date, readings, hours_with_readings, longest_gap_hours, '
                  f'status FROM "{target.schema}".device_daily_health WHERE local_date = %s '
                  'ORDER BY dev_eui', (change,))
    assert daily == [
        # 20 readings (hours 4-23), 20 hours; the gap is hours 0, 1, 2 (twice) and 3: 5 hours.
        {"dev_eui": "gap", "local_date": change, "readings": 20, "hours_with_readings": 20,
         "longest_gap_hours": 5.0, "status": "ok"},
        # 25 readings, 24 wall-clock hours (02:30 twice), no gap.
        {"dev_eui": "hourly", "local_date": change, "readings": 25, "hours_with_readings": 24,
         "longest_gap_hours": 0.0, "status": "ok"},
        {"dev_eui": "quiet", "local_date": change, "readings": 0, "hours_with_readings": 0,
         "longest_gap_hours": 25.0, "status": "offline"},
    ]
    # Every device sent on the input's last day and none is stuck, sparse or drifting.
    page = Path(summary.report_path).read_text(encoding="utf-8")
    assert "3 devices as of the input's last day: 3 ok / 0 sparse / 0 offline / 0 stuck / 0 drift" in page
    assert page.count("All sensors reported normally.") == 1


def test_the_report_lists_each_institutes_sensors_needing_attention(spring: dict[str, Any]) -> None:
    page = spring["report"]
    # ok: ok, half, drift, battery, moved, night, daily; sparse, offline: 1; stuck: 2; drift: 1.
    assert ("11 devices as of the input's last day: 7 ok / 1 sparse / 1 offline / 2 stuck / "
            "1 drift") in page
    table = page[page.index('<table class="sensors-needing-attention">'):]
    table = table[:table.index("</table>")]
    assert [line.split("</td><td>")[:3] for line in table.splitlines() if line.strip().startswith("<tr><td")] == [
        ['      <tr><td class="name">1B', "silent", "offline"],
        ['      <tr><td class="name">2B', "stuck", "stuck"],
        ['      <tr><td class="name">2D', "stuck2", "stuck"],
        ['      <tr><td class="name">2C', "sparse", "sparse"],
        ['      <tr><td class="name">3A', "drift", "ok"],
        ['      <tr><td class="name">3B', "battery", "ok"]]
    assert "All sensors reported normally." not in page


def test_summarising_fewer_metrics_leaves_the_health_tables_as_they_are(
        spark: SparkSession, spring: dict[str, Any]) -> None:
    # The health reads every metric's partials (stuck humidity and pressure, the out-of-range
    # counts) whatever the statistics summarise: with CO2 and temperature alone (those the
    # shares need), the same rows.
    from batch.core.contract import METRICS
    target = dataclasses.replace(spring["target"], schema="t_health_co2_only")
    run(spark, analysis_settings(target, spring["raw"], BATCH_TIMEZONE="Europe/Rome"),
        metrics=tuple(metric for metric in METRICS if metric.name in ("co2", "temperature")))
    with connect(target) as conn:
        daily = independent.fetch_dicts(
            conn, 'SELECT * FROM "t_health_co2_only".device_daily_health ORDER BY dev_eui, local_date')
        devices = independent.fetch_dicts(
            conn, 'SELECT * FROM "t_health_co2_only".device_health ORDER BY dev_eui')
    assert daily == spring["daily"]
    assert {row["dev_eui"]: row for row in devices} == spring["devices"]


def test_the_health_aggregates_keep_the_aggregation_a_compiled_hash_aggregation(
        spark: SparkSession, tmp_path: Path) -> None:
    # A string or collecting aggregate would make Spark fall back to a sort-based or object hash
    # aggregation (batch/analysis/health_partials.py): the device profile is a group key instead.
    from batch.analysis.health_partials import health_partial_aggregates
    from batch.analysis.partials import partial_statistics
    from batch.core.thresholds import Thresholds
    from batch.core.contract import METRIC_NAMES, RAW_COLUMNS_BY_NAME
    from batch.core.validation import validate_readings

    raw = write_readings(tmp_path / "raw", [reading("ok", "1A", dt.datetime(2025, 3, 3, 9, tzinfo=UTC)),
                                            reading("ok", "1A", dt.datetime(2025, 3, 3, 9, 30, tzinfo=UTC),
                                                    co2=-5.0)])
    readings_df = spark.read.parquet(str(raw))
    for name in METRIC_NAMES + ("pir",):
        if name not in readings_df.columns:
            readings_df = readings_df.withColumn(
                name, F.lit(None).cast(RAW_COLUMNS_BY_NAME[name].spark_type))
    partials_df = readings_df.transform(validate_readings, METRIC_NAMES, False).transform(
        partial_statistics, "Europe/Rome", Thresholds(),
        extra_aggregates=health_partial_aggregates(5), extra_keys=("profile",))
    plan = partials_df._jdf.queryExecution().executedPlan().toString()
    assert "HashAggregate" in plan
    assert "SortAggregate" not in plan and "ObjectHashAggregate" not in plan
    row = partials_df.collect()[0]
    assert (row["profile"], row["health_hour_mask"], row["health_co2_night_min"]) == (
        "AM319", 1 << 10, None)  # 09:00 UTC is 10:00 in Rome: no night reading
    # The counts, extremes and out-of-range sums the health reads, from the statistics' partials:
    # both readings at 10:xx in Rome (20.0 °C), the second one's CO2 (-5 ppm) nulled as out of range.
    assert (row["temperature__n"], row["temperature__min"], row["temperature__max"], row["co2__n"],
            row["co2__min"], row["co2_out_of_range"]) == (2, 20.0, 20.0, 1, 700.0, 1)


def random_partials(seed: int) -> pd.DataFrame:
    """Device-day partials (the columns batch.analysis.health reads) of eight devices over 150
    days, each with its own density of days with readings, nights with a night reading and
    battery readings, some days stuck: histories whose look-backs reach far back."""
    rng = random.Random(seed)
    rows = []
    first = dt.date(2025, 1, 6)
    for number in range(8):
        # Some devices never see a night, or report their battery rarely: each look-back is the
        # furthest for some device.
        density = rng.uniform(0.15, 1)
        nights = rng.choice((0.0, rng.uniform(0.02, 0.1), rng.uniform(0.3, 0.6)))
        batteries = rng.choice((rng.uniform(0.01, 0.05), rng.uniform(0.3, 0.9)))
        level = 100.0
        for day in dates(first + dt.timedelta(days=rng.randrange(20)), first + dt.timedelta(days=149)):
            if rng.random() > density:
                continue
            level -= rng.uniform(0, 1.5)
            start = dt.datetime.combine(day, dt.time(rng.randrange(0, 10)), tzinfo=ROME).astimezone(UTC)
            row = {EXCLUSION_REASON: None, "DevEui": f"dev-{number}", READING_DATE: day,
                   "institute": INSTITUTE, "classroom": f"room-{number % 2}", "profile": "AM319",
                   "first_reading_at": start, "last_reading_at": start + dt.timedelta(hours=rng.randrange(1, 14)),
                   "readings": rng.randrange(1, 150), HOUR_MASK: rng.getrandbits(24),
                   BATTERY_MIN: level if rng.random() < batteries else None,
                   CO2_NIGHT_MIN: rng.uniform(380, 800) if rng.random() < nights else None}
            for metric in STUCK_METRICS:
                low = rng.choice((21.0, 20.0 + rng.random()))
                row.update({stuck_n(metric): rng.randrange(0, 40), stuck_min(metric): low,
                            stuck_max(metric): low if rng.random() < 0.3 else low + 1})
            row.update({out_of_range_flag(metric): rng.randrange(0, 2) for metric in CHECKED_METRICS})
            rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("first_reading_at", "last_reading_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("usual_days", (28, 2))
def test_the_rows_derived_from_a_date_on_are_the_whole_derivations(seed: int, usual_days: int) -> None:
    """An incremental run derives device_daily_health from its first changed date on, from the
    device-days those rows and device_health depend on only: the same rows as the whole
    derivation's (itself checked by hand above), whatever the date. With a short usual window,
    the battery's and the CO2 baseline's look-backs reach further than the usual readings'."""
    partials = random_partials(seed)
    rules = dataclasses.replace(HealthSettings().rules(400.0), usual_days=usual_days)
    whole = health_results(partials, rules, "Europe/Rome")
    daily = whole["device_daily_health"]
    assert daily["co2_night_min"].notna().any() and daily["status"].eq("stuck").any()
    last = daily["local_date"].max()
    for back in (0, 1, 9, 45, 120):
        first_date = last - dt.timedelta(days=back)
        part = health_results(partials, rules, "Europe/Rome", first_date)
        expected = daily[daily["local_date"] >= first_date].reset_index(drop=True)
        pd.testing.assert_frame_equal(part["device_daily_health"], expected)
        pd.testing.assert_frame_equal(part["device_health"], whole["device_health"])
