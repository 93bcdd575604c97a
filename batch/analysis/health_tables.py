"""The sensor-health tables and view as catalog entries (batch/analysis/catalog.py): columns with
types, units and comments, and the view's SQL; their rows come from batch.analysis.health."""
from __future__ import annotations

from typing import Callable

from psycopg2 import sql

from batch.analysis.health import (
    DAILY_HEALTH_TABLE,
    DEVICE_HEALTH_COLUMNS,
    DEVICE_HEALTH_TABLE,
    OFFLINE,
    OK,
    SPARSE,
    STATUSES,
    STUCK,
    USUAL,
)
from batch.analysis.health_settings import HealthSettings
from batch.analysis.health_partials import CHECKED_METRICS, STUCK_METRICS
from batch.core.contract import CLASSROOM, INSTITUTE, PROFILE, RAW_COLUMNS_BY_NAME
from batch.core.schema import BIGINT, BOOLEAN, DATE, DOUBLE, TEXT, TIMESTAMPTZ, Column, Table, View

ATTENTION_VIEW = "sensors_needing_attention"


def _place_columns() -> tuple[Column, ...]:
    return (
        Column(INSTITUTE, TEXT, "school the device is installed in, as named in the sensor registry",
               nullable=False),
        Column(CLASSROOM, TEXT, "classroom the device is in (names are unique per institute only); "
               "on a day it moved, that of its last reading; on a day without a reading, that of "
               "its last reading before", nullable=False),
        Column("dev_eui", TEXT, "device EUI (DevEui of the raw readings)", nullable=False),
        Column(PROFILE, TEXT, "device profile, e.g. AM319 (full indoor-air sensor), AM103 (basic), "
               "WS301 (door sensor); null when the readings carry none"),
    )


def _status_column(settings: HealthSettings, subject: str) -> Column:
    stuck = ", ".join(STUCK_METRICS)
    return Column(
        "status", TEXT,
        f"{subject}: '{OFFLINE}' (no reading), '{STUCK}' (one of {stuck} read the same value all "
        f"day over at least {settings.health_stuck_min_readings} readings, "
        f"HEALTH_STUCK_MIN_READINGS, or on the input's last date, observed for part of the day, "
        f"every value equal to the one it was stuck on the day before), '{SPARSE}' (fewer "
        "readings than "
        f"{settings.health_sparse_share:.0%} of usual_readings, HEALTH_SPARSE_SHARE), else "
        f"'{OK}', in that order of precedence; on the input's last local date, observed only until "
        "its newest reading, the usual readings are scaled to the elapsed share of the day, and a "
        "device without a reading yet is offline only when one was due or it was offline the day "
        "before", nullable=False,
        constraint="CHECK (status IN (" + ", ".join(f"'{status}'" for status in STATUSES) + "))")


def _usual_column(settings: HealthSettings) -> Column:
    return Column(USUAL, DOUBLE,
                  "the device's usual daily readings: the median over its last "
                  f"{settings.health_usual_days} days with readings before this date "
                  "(HEALTH_USUAL_DAYS); null before its first", unit="readings")


def _stuck_column() -> Column:
    return Column("stuck_metrics", TEXT,
                  f"the metrics among {', '.join(STUCK_METRICS)} stuck on one value all day, with "
                  "that value, e.g. 'temperature 21 °C'; null when none")


def _daily_columns(settings: HealthSettings, timezone: str) -> tuple[Column, ...]:
    night = settings.health_night_end_hour
    return (
        *_place_columns(),
        Column("local_date", DATE, f"local date ({timezone}, BATCH_TIMEZONE)", nullable=False),
        Column("readings", BIGINT, "readings the device sent that day (0: offline)",
               unit="readings", nullable=False),
        Column("hours_with_readings", BIGINT,
               "wall-clock hours (0-23) of the day with at least one reading (24 at most: the hour "
               "the clocks repeat counts once, the one they skip never); on the input's first and "
               "last date, among the hours the input covers", unit="hours", nullable=False),
        Column("longest_gap_hours", DOUBLE,
               "the longest run of whole wall-clock hours without a reading, in elapsed hours (the "
               "hour the clocks skip lasts 0, the one they repeat 2); on the input's first and last "
               "date, within the hours the input covers", unit="h", nullable=False),
        Column("values_out_of_range", BIGINT,
               "metric values outside their physical range that day, nulled as not measured "
               "(all metrics)", unit="values", nullable=False),
        *[Column(f"{metric}_out_of_range", BIGINT,
                 f"{RAW_COLUMNS_BY_NAME[metric].description} values outside their physical range "
                 "that day, nulled as not measured", unit="values", nullable=False)
          for metric in CHECKED_METRICS],
        Column("battery_min", DOUBLE, "lowest battery level of the day; null without one", unit="%"),
        Column("co2_night_min", DOUBLE,
               f"lowest CO2 between 00:00 and {night:02d}:00 local (HEALTH_NIGHT_END_HOUR), when the "
               "classroom is empty; null without a night CO2 reading", unit="ppm"),
        _stuck_column(),
        _usual_column(settings),
        _status_column(settings, "the device's state that day"),
    )


def _device_columns(settings: HealthSettings, outdoor_ppm: float) -> tuple[Column, ...]:
    above, below = settings.health_co2_drift_above_ppm, settings.health_co2_drift_below_ppm
    columns = {
        "as_of_date": Column("as_of_date", DATE, "the input's last local date: the row describes the "
                             "device as of that date", nullable=False),
        "last_reading_at": Column("last_reading_at", TIMESTAMPTZ, "time of the device's newest reading",
                                  nullable=False),
        "days_since_last_reading": Column("days_since_last_reading", BIGINT,
                                          "local dates from that of the newest reading to as_of_date "
                                          "(0: it sent today)", unit="days", nullable=False),
        "status": _status_column(settings, "the device's state on as_of_date"),
        "reasons": Column("reasons", TEXT, "what is wrong and what to do, in words a caretaker "
                          "understands (offline, stuck, sparse, CO2 drift, battery running out); "
                          "null when the device needs nothing"),
        "readings": Column("readings", BIGINT, "readings the device sent on as_of_date",
                           unit="readings", nullable=False),
        USUAL: _usual_column(settings),
        "stuck_metrics": _stuck_column(),
        "battery_level": Column("battery_level", DOUBLE, "lowest battery level of the device's latest "
                                "day with a battery value; null without one", unit="%"),
        "battery_days_left": Column(
            "battery_days_left", DOUBLE,
            f"days from as_of_date until the battery reaches {settings.health_battery_empty_pct:g} % "
            "(HEALTH_BATTERY_EMPTY_PCT) on a least-squares line over the daily battery minima of "
            f"the last {settings.health_battery_fit_days} days (HEALTH_BATTERY_FIT_DAYS), 0 when "
            "it is below already; null when the line does not fall or with fewer than "
            f"{settings.health_battery_min_days} days with a battery value (HEALTH_BATTERY_MIN_DAYS)",
            unit="days"),
        "co2_baseline_ppm": Column(
            "co2_baseline_ppm", DOUBLE,
            f"median of the last {settings.health_co2_baseline_nights} night CO2 minima "
            "(co2_night_min, HEALTH_CO2_BASELINE_NIGHTS): what the sensor reads in an empty room, "
            "outdoor air if it was aired; null with fewer nights", unit="ppm"),
        "co2_drift_suspected": Column(
            "co2_drift_suspected", BOOLEAN,
            f"the CO2 baseline as of each of the last {settings.health_co2_drift_nights} nights "
            f"with a night reading (HEALTH_CO2_DRIFT_NIGHTS) was more than {above:g} ppm above "
            f"outdoor CO2 ({outdoor_ppm:g} ppm, IAQ_OUTDOOR_CO2_PPM; HEALTH_CO2_DRIFT_ABOVE_PPM), "
            f"or each more than {below:g} ppm below it (HEALTH_CO2_DRIFT_BELOW_PPM): a sensor to "
            "recalibrate, or a room never aired", nullable=False),
    }
    places = {column.name: column for column in _place_columns()}
    return tuple(places.get(name) or columns[name] for name in DEVICE_HEALTH_COLUMNS)


def health_catalog_tables(settings: HealthSettings, outdoor_ppm: float, timezone: str) -> tuple[Table, ...]:
    """The two health tables; their rows are results[name] (batch.analysis.health.health_results)."""
    daily, device = _daily_columns(settings, timezone), _device_columns(settings, outdoor_ppm)
    note = ("from the readings the statistics use (excluded readings are counted in batch_runs); "
            "published by the nightly batch analysis, replaced as a whole by each successful run "
            "(see batch_runs.settings for the settings used)")
    return (
        Table(DAILY_HEALTH_TABLE,
              "Sensor health per device and local date, from the device's first reading to the "
              f"input's last local date ({timezone}, BATCH_TIMEZONE), days without a reading "
              f"included; {note}", key=("dev_eui", "local_date"), columns=daily),
        Table(DEVICE_HEALTH_TABLE,
              "Sensor health per device as of the input's last local date: last reading, status "
              f"and reasons, battery days left, CO2 baseline and drift; {note}", key=("dev_eui",),
              columns=device),
    )


def attention_view(settings: HealthSettings) -> View:
    def query(table: Callable[[str], sql.Composable]) -> sql.Composable:
        days = sql.Literal(settings.health_battery_attention_days)
        return sql.SQL(
            "SELECT institute, classroom, dev_eui, profile, status, reasons, last_reading_at, "
            "days_since_last_reading, battery_level, battery_days_left, co2_baseline_ppm, "
            "co2_drift_suspected FROM {health} "
            "WHERE status <> 'ok' OR battery_days_left < {days} OR co2_drift_suspected "
            "ORDER BY CASE WHEN status = 'offline' THEN 0 WHEN status = 'stuck' THEN 1 "
            "WHEN status = 'sparse' THEN 2 WHEN co2_drift_suspected THEN 3 ELSE 4 END, "
            "days_since_last_reading DESC, battery_days_left ASC NULLS LAST, institute, classroom, "
            "dev_eui"
        ).format(health=table(DEVICE_HEALTH_TABLE), days=days)
    return View(
        ATTENTION_VIEW,
        "The sensors a caretaker should visit, worst first: every device of device_health whose "
        "status is not 'ok', whose battery has fewer than "
        f"{settings.health_battery_attention_days} days left (HEALTH_BATTERY_ATTENTION_DAYS) or "
        "whose CO2 is suspected of drift; offline ones first (longest silent first), then stuck, "
        "sparse, CO2 drift, and battery running out (fewest days left first); with institute, "
        "classroom and the reasons in words",
        query, reads=(DEVICE_HEALTH_TABLE,), one_row_per="device needing a visit")
