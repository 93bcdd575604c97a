"""Per-device sensor health (issue 23): `device_daily_health` and `device_health`, in the driver.

From the partials collected once (one row per device and local day, with the health aggregates
of batch.analysis.health_partials), numpy derives one row per device and local date from its
first reading to the input's last local date (days without a reading included), then one row
per device as of that date. Both follow device-days, not readings, like the statistics' roll-up.
The rules (status and its precedence, the input's partial last date, battery, CO2 drift):
docs/health.md.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Mapping
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from batch.analysis.health_partials import (
    BATTERY_MIN,
    CHECKED_METRICS,
    CO2_NIGHT_MIN,
    HOUR_MASK,
    STUCK_METRICS,
    stuck_max,
    stuck_min,
    stuck_n,
)
from batch.analysis.health_settings import HealthRules
from batch.analysis.statistics import READING_DATE
from batch.core.contract import CLASSROOM, DEVICE, INSTITUTE, METRICS, PROFILE
from batch.core.validation import EXCLUSION_REASON, out_of_range_flag

DAILY_HEALTH_TABLE = "device_daily_health"
DEVICE_HEALTH_TABLE = "device_health"
OFFLINE, STUCK, SPARSE, OK = "offline", "stuck", "sparse", "ok"
STATUSES = (OFFLINE, STUCK, SPARSE, OK)


# --- the hours of a local day ------------------------------------------------------------

_QUARTER = dt.timedelta(minutes=15)


def hour_weights(day: dt.date, zone: ZoneInfo) -> tuple[np.ndarray, dt.datetime]:
    """How long each wall-clock hour 0-23 of `day` lasts, hours (0 for the hour the clocks skip,
    2 for the one they repeat), and the UTC instant of the day's local midnight."""
    weights = np.zeros(24)
    first = dt.datetime.combine(day, dt.time()).replace(tzinfo=zone).astimezone(dt.timezone.utc)
    midnight = None
    # Quarter-hour steps from 3 hours before: every zone's offsets and changes are whole quarters.
    for step in range((24 + 6) * 4):
        instant = first + (step - 12) * _QUARTER
        local = instant.astimezone(zone)
        if local.date() == day:
            midnight = midnight or instant
            weights[local.hour] += 0.25
    assert midnight is not None
    return weights, midnight


def _runs_and_hours(masks: np.ndarray, weights_of_dates: np.ndarray,
                    date_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: wall-clock hours with a reading among those weighed (> 0; row i's weights are
    `weights_of_dates[date_index[i]]`), and the longest run of hours without one, in elapsed
    hours (an hour of weight 0 neither counts nor breaks it)."""
    run = np.zeros(len(masks))
    longest = np.zeros(len(masks))
    hours = np.zeros(len(masks), dtype=np.int64)
    # One hour's weights at a time: a row-by-hour table would be 24 doubles per device-day.
    for hour in range(24):
        weight = weights_of_dates[:, hour][date_index]
        counted = (((masks >> hour) & 1) == 1) & (weight > 0)
        run += weight  # an hour of weight 0 adds nothing: the run goes on through it
        run *= ~counted
        np.maximum(longest, run, out=longest)
        hours += counted
    return hours, longest


# --- device-days ---------------------------------------------------------------------------

_SUMMED = ("readings", *(stuck_n(m) for m in STUCK_METRICS), *(out_of_range_flag(m) for m in CHECKED_METRICS))
_LOWEST = (BATTERY_MIN, CO2_NIGHT_MIN, *(stuck_min(m) for m in STUCK_METRICS))
_HIGHEST = tuple(stuck_max(m) for m in STUCK_METRICS)
_PLACE = (INSTITUTE, CLASSROOM, PROFILE)
USUAL = "usual_readings"
DEVICE_CODE = "_device_code"
DAY_NUMBER = "_day_number"
# The device-days' columns are numpy arrays in a dict, not a DataFrame: the derivation runs on
# ~10^6 device-days in the driver, where pandas' block copies and Timestamp objects cost more
# than the arithmetic.
Columns = dict[str, np.ndarray]


def _microseconds(instants: pd.Series) -> np.ndarray:
    """UTC instants (tz-aware, as collected) as int64 microseconds: no Timestamp objects."""
    return instants.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]").astype(np.int64)


def _instant(microseconds: int) -> dt.datetime:
    return pd.Timestamp(int(microseconds), unit="us", tz="UTC").to_pydatetime()


def _day_numbers(dates: np.ndarray) -> np.ndarray:
    """datetime.date values as days since 1970-01-01 (converted once per distinct date)."""
    codes, distinct = pd.factorize(dates)
    return np.array(list(distinct), dtype="datetime64[D]").astype(np.int64)[codes]


@dataclass(frozen=True)
class DeviceDays:
    """One row per device and local date with a used reading (sorted by device and date); the
    devices by code (sorted), each one's newest reading (µs), and the input's span."""

    columns: Columns
    devices: np.ndarray
    last_reading_us: np.ndarray
    span: InputSpan


def device_days(partials: pd.DataFrame, zone: ZoneInfo) -> DeviceDays:
    """The rows of the collected partials (batch/analysis/device_days.py) the statistics use,
    merged per device and local date (a device that moved classroom that day has one per
    classroom); the place is that of its newest reading."""
    used = partials[EXCLUSION_REASON].isna().to_numpy()

    def column(name: str) -> np.ndarray:
        return partials[name].to_numpy()[used]

    codes, devices = pd.factorize(column(DEVICE), sort=True)
    day_numbers = _day_numbers(column(READING_DATE))
    first_us = _microseconds(partials["first_reading_at"][used])
    last_us = _microseconds(partials["last_reading_at"][used])
    order = np.lexsort((last_us, day_numbers, codes))
    codes, day_numbers = codes[order], day_numbers[order]
    starts = np.flatnonzero(np.concatenate(
        [[True], (codes[1:] != codes[:-1]) | (day_numbers[1:] != day_numbers[:-1])]))
    ends = np.append(starts[1:], len(order)) - 1
    days: Columns = {DEVICE_CODE: codes[starts], DAY_NUMBER: day_numbers[starts]}
    # Counts and masks are whole numbers on the used rows; the frame holds them as floats when
    # an excluded row's are null.
    merges = ((_SUMMED, np.add, np.int64), (_LOWEST, np.fmin, float), (_HIGHEST, np.fmax, float),
              ((HOUR_MASK,), np.bitwise_or, np.int64))
    for names, merge, dtype in merges:
        for name in names:
            days[name] = merge.reduceat(column(name)[order].astype(dtype), starts)
    # Without the profile key (code that calls partial_statistics without it), no profile.
    for name in _PLACE:
        days[name] = column(name)[order][ends] if name in partials else np.full(len(starts), None)
    newest = np.full(len(devices), np.iinfo(np.int64).min)
    np.maximum.at(newest, codes, last_us[order])
    span = InputSpan.between(_instant(first_us.min()), _instant(last_us.max()), zone)
    return DeviceDays(days, np.asarray(devices, dtype=object), newest, span)


def _day_number(day: dt.date) -> int:
    return int(np.datetime64(day, "D").astype(np.int64))


_DAYS_PER_CODE = 1 << 32  # day numbers of a device's rows stay within one code's span


def _first_at_or_after(codes: np.ndarray, day_numbers: np.ndarray, day: int) -> np.ndarray:
    """Per device (by code): the position of its first row dated `day` or later, in rows sorted by
    device and date (the position after its last row when none is)."""
    devices = np.arange(int(codes.max()) + 1)
    return np.searchsorted(codes * _DAYS_PER_CODE + day_numbers, devices * _DAYS_PER_CODE + day)


def _needed_from(merged: DeviceDays, first_day: int, last_date: int, rules: HealthRules) -> DeviceDays:
    """`merged` without the device-days that neither a `device_daily_health` row dated
    `first_day` (a day number) or later nor a `device_health` row depends on: each device's
    rows from the earliest of its last HEALTH_USUAL_DAYS + 1 days with readings before
    `first_day` (the usual readings, the day before), its last HEALTH_CO2_BASELINE_NIGHTS +
    HEALTH_CO2_DRIFT_NIGHTS - 1 nights with a night reading, its last battery reading and its
    days in the battery fit's window. The input's span is the whole input's."""
    columns = merged.columns
    codes, day_numbers = columns[DEVICE_CODE], columns[DAY_NUMBER]
    rows = np.arange(len(codes))
    device_start = np.searchsorted(codes, np.arange(int(codes.max()) + 1))
    cut = np.maximum(device_start, _first_at_or_after(codes, day_numbers, first_day) - (rules.usual_days + 1))
    cut = np.minimum(cut, _first_at_or_after(codes, day_numbers, last_date - rules.battery_fit_days + 1))
    for name, count in ((BATTERY_MIN, 1), (CO2_NIGHT_MIN, rules.co2_baseline_nights + rules.co2_drift_nights - 1)):
        measured = rows[~np.isnan(columns[name])]
        # The `count` last measured rows of each device: a measured row is among them when
        # fewer than `count` measured rows of its device follow it.
        following = np.searchsorted(measured, np.searchsorted(codes, codes[measured], side="right")) \
            - np.arange(len(measured)) - 1
        among = measured[following < count]
        np.minimum.at(cut, codes[among], among)
    kept = rows >= cut[codes]
    return DeviceDays({name: values[kept] for name, values in columns.items()}, merged.devices,
                      merged.last_reading_us, merged.span)


def _calendar(days: Columns, last_date: int) -> Columns:
    """Every device's dates from its first reading through `last_date` (a day number), sorted by
    device and date, its days placed at their dates (positions computed, not joined)."""
    codes, day_numbers = days[DEVICE_CODE], days[DAY_NUMBER]
    device_count = int(codes.max()) + 1
    first = np.full(device_count, np.iinfo(np.int64).max)
    np.minimum.at(first, codes, day_numbers)
    lengths = last_date - first + 1
    starts = np.cumsum(lengths) - lengths
    total = int(lengths.sum())
    positions = starts[codes] + day_numbers - first[codes]
    calendar_codes = np.repeat(np.arange(device_count), lengths)
    calendar: Columns = {DEVICE_CODE: calendar_codes,
                         DAY_NUMBER: first[calendar_codes] + np.arange(total) - starts[calendar_codes]}
    for name, values in days.items():
        if name in calendar:
            continue
        if values.dtype.kind in "iu":
            column = np.zeros(total, dtype=np.int64)
        elif values.dtype.kind == "f":
            column = np.full(total, np.nan)
        else:
            column = np.full(total, None, dtype=object)
        column[positions] = values
        calendar[name] = column
    # A day without a reading keeps the place of the device's last one: every device's first
    # date has a reading, so carrying the last row with one forward never crosses devices.
    with_reading = np.zeros(total, dtype=bool)
    with_reading[positions] = True
    last_with_reading = np.maximum.accumulate(np.where(with_reading, np.arange(total), 0))
    for name in _PLACE:
        calendar[name] = calendar[name][last_with_reading]
    return calendar


def _follows_same_device(codes: np.ndarray) -> np.ndarray:
    """Per row of rows sorted by device and date: whether the row before is the same device's."""
    return np.concatenate([[False], codes[1:] == codes[:-1]])


def _usual_readings(readings: np.ndarray, codes: np.ndarray, usual_days: int) -> np.ndarray:
    """Per row (sorted by device and date): the median readings of the device's last
    `usual_days` days with readings before that date (NaN before its first)."""
    with_readings = readings > 0
    counts, device_of = readings[with_readings].astype(float), codes[with_readings]
    # One rolling median over every device's days with readings, each device's preceded by
    # usual_days - 1 NaNs, which the median skips: no window reaches into the device before.
    device_starts = np.flatnonzero(~_follows_same_device(device_of))
    shifted = np.arange(len(counts)) + (usual_days - 1) * np.searchsorted(
        device_starts, np.arange(len(counts)), side="right")
    padded = np.full(len(counts) + (usual_days - 1) * len(device_starts), np.nan)
    padded[shifted] = counts
    through = np.full(len(readings), np.nan)
    through[with_readings] = pd.Series(padded).rolling(usual_days, min_periods=1).median() \
        .to_numpy()[shifted]
    # Each date takes the median through the latest day with readings before it.
    follows = _follows_same_device(codes)
    previous = np.where(follows, np.concatenate([[np.nan], through[:-1]]), np.nan)
    rows = np.arange(len(readings))
    device_start = np.maximum.accumulate(np.where(follows, 0, rows))
    latest = np.maximum.accumulate(np.where(np.isnan(previous), -1, rows))
    return np.where(latest >= device_start, previous[np.maximum(latest, 0)], np.nan)


_UNITS = {metric.name: metric.unit for metric in METRICS}


def _stuck_metrics(days: Columns, min_readings: int, last_day: np.ndarray) -> np.ndarray:
    """Per row (sorted by device and date), the metrics stuck on one value all day with that
    value ('temperature 21 °C'), or None.

    On the input's last date, observed for a few hours only, a metric also stays stuck when its
    every value equals the one it was stuck on the day before.
    """
    same_device = _follows_same_device(days[DEVICE_CODE])
    stuck = {}
    for metric in STUCK_METRICS:
        n, low, high = (days[name(metric)] for name in (stuck_n, stuck_min, stuck_max))
        full_day = (n >= min_readings) & (low == high)
        before = np.concatenate([[False], full_day[:-1]]) & same_device
        low_before = np.concatenate([[np.nan], low[:-1]])
        stuck[metric] = full_day | (last_day & before & (n > 0) & (low == high) & (low == low_before))
    texts = np.full(len(same_device), None, dtype=object)
    for position in np.flatnonzero(np.logical_or.reduce(list(stuck.values()))):
        texts[position] = ", ".join(
            f"{metric} {days[stuck_min(metric)][position]:g} {_UNITS[metric]}"
            for metric in STUCK_METRICS if stuck[metric][position])
    return texts


@dataclass(frozen=True)
class InputSpan:
    """The input's first and newest reading (UTC) and their local dates."""

    first_at: dt.datetime
    last_at: dt.datetime
    first_date: dt.date
    last_date: dt.date

    @classmethod
    def between(cls, first_at: dt.datetime, last_at: dt.datetime, zone: ZoneInfo) -> InputSpan:
        return cls(first_at, last_at, first_at.astimezone(zone).date(), last_at.astimezone(zone).date())


def _day_weights(dates: np.ndarray, span: InputSpan, zone: ZoneInfo) -> tuple[np.ndarray, float]:
    """The hour weights of each of the distinct `dates` (hours outside the input on its first and
    last dates weigh 0), and the elapsed share of the input's last date by its newest reading."""
    table = np.zeros((len(dates), 24))
    last_share = 1.0
    for row, day in enumerate(dates):
        weights, midnight = hour_weights(day, zone)
        if day == span.last_date:
            last_share = (span.last_at - midnight).total_seconds() / 3600 / weights.sum()
            weights[span.last_at.astimezone(zone).hour + 1:] = 0
        if day == span.first_date:
            weights[:span.first_at.astimezone(zone).hour] = 0
        table[row] = weights
    return table, last_share


def daily_health(merged: DeviceDays, rules: HealthRules, zone: ZoneInfo) -> pd.DataFrame:
    """The `device_daily_health` rows (published names) from `device_days`, which hold a used
    reading (the job stops before this without one)."""
    span = merged.span
    last_date = _day_number(span.last_date)
    days = _calendar(merged.columns, last_date)
    codes, readings = days[DEVICE_CODE], days["readings"]
    # Each row's date as an index into the distinct dates, each converted once.
    distinct_days, day_index = np.unique(days[DAY_NUMBER], return_inverse=True)
    day_index = day_index.reshape(-1)
    dates = np.array([day.item() for day in distinct_days.astype("datetime64[D]")], dtype=object)
    weights_of_dates, last_share = _day_weights(dates, span, zone)
    hours, longest_gap = _runs_and_hours(days[HOUR_MASK], weights_of_dates, day_index)
    usual = _usual_readings(readings, codes, rules.usual_days)
    last_day = days[DAY_NUMBER] == last_date
    due = usual * np.where(last_day, last_share, 1.0)
    stuck_metrics = _stuck_metrics(days, rules.stuck_min_readings, last_day)
    status = np.where(readings == 0, OFFLINE,
                      np.where(pd.notna(stuck_metrics), STUCK,
                               np.where(readings < rules.sparse_share * due, SPARSE, OK)))
    # The last date is observed until the newest reading only: no reading yet is offline when
    # one was due by then, or when the device was offline the day before.
    offline_before = np.concatenate([[False], status[:-1] == OFFLINE]) & _follows_same_device(codes)
    not_yet = last_day & (readings == 0) & ~(due >= 1) & ~offline_before
    out_of_range_columns = {f"{metric}_out_of_range": days[out_of_range_flag(metric)]
                            for metric in CHECKED_METRICS}
    return pd.DataFrame({
        INSTITUTE: days[INSTITUTE], CLASSROOM: days[CLASSROOM],
        "dev_eui": merged.devices[codes], PROFILE: days[PROFILE],
        "local_date": dates[day_index], "readings": readings,
        "hours_with_readings": hours, "longest_gap_hours": longest_gap,
        "values_out_of_range": np.sum(list(out_of_range_columns.values()), axis=0),
        **out_of_range_columns,
        "battery_min": days[BATTERY_MIN], "co2_night_min": days[CO2_NIGHT_MIN],
        "stuck_metrics": stuck_metrics, USUAL: usual,
        "status": np.where(not_yet, OK, status),
    })


# --- one row per device, as of the input's last local date ---------------------------------

def _battery_days_left(daily: pd.DataFrame, as_of: dt.date, rules: HealthRules) -> pd.Series:
    """Per device: days until the least-squares line over its daily battery minima of the last
    HEALTH_BATTERY_FIT_DAYS days reaches HEALTH_BATTERY_EMPTY_PCT, counted from `as_of` (0 when
    the line is below it already); NaN when the line does not fall or with fewer than
    HEALTH_BATTERY_MIN_DAYS days."""
    since = as_of - dt.timedelta(days=rules.battery_fit_days)
    window = daily[(daily["local_date"] > since) & daily["battery_min"].notna()]
    x = np.array([(day - as_of).days for day in window["local_date"]], dtype=float)
    y = window["battery_min"].to_numpy(dtype=float)
    sums = pd.DataFrame({"dev_eui": window["dev_eui"].to_numpy(), "n": 1.0, "x": x, "y": y,
                         "xx": x * x, "xy": x * y}).groupby("dev_eui").sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = ((sums["n"] * sums["xy"] - sums["x"] * sums["y"])
                 / (sums["n"] * sums["xx"] - sums["x"] ** 2))
        level = (sums["y"] - slope * sums["x"]) / sums["n"]  # the line's value at `as_of`
        left = ((level - rules.battery_empty_pct) / -slope).clip(lower=0)
    return left.where((slope < 0) & (sums["n"] >= rules.battery_min_days))


def _co2_baseline(daily: pd.DataFrame, rules: HealthRules) -> tuple[pd.Series, pd.Series]:
    """Per device: the CO2 baseline (median of its last HEALTH_CO2_BASELINE_NIGHTS night minima,
    NaN with fewer nights) and whether drift is suspected: the baseline as of each of its last
    HEALTH_CO2_DRIFT_NIGHTS nights with a night reading lay above outdoor + the limit above, or
    each below outdoor - the limit below."""
    nights = daily[daily["co2_night_min"].notna()]
    baseline = (nights.groupby("dev_eui")["co2_night_min"]
                .rolling(rules.co2_baseline_nights, min_periods=rules.co2_baseline_nights)
                .median().droplevel(0))
    nights = nights.assign(baseline=baseline)
    last = nights.groupby("dev_eui", sort=False).tail(rules.co2_drift_nights)
    last = last.assign(above=last["baseline"] > rules.outdoor_co2_ppm + rules.co2_drift_above_ppm,
                       below=last["baseline"] < rules.outdoor_co2_ppm - rules.co2_drift_below_ppm)
    by_device = last.groupby("dev_eui")
    drift = (by_device.size() >= rules.co2_drift_nights) & (by_device["above"].all()
                                                            | by_device["below"].all())
    return nights.groupby("dev_eui")["baseline"].last(), drift


def _days(count: float) -> str:
    return f"{count:g} day" + ("" if count == 1 else "s")


def reasons(row: Mapping[str, Any], rules: HealthRules, zone: ZoneInfo) -> str | None:
    """What a caretaker should know about a device_health row, in words; None when nothing."""
    said = []
    if row["status"] == OFFLINE:
        since = row["last_reading_at"].astimezone(zone).strftime("%Y-%m-%d %H:%M")
        said.append(f"no reading for {_days(row['days_since_last_reading'])} (last on {since}): "
                    "check its battery and that its gateway is on")
    elif row["status"] == STUCK:
        said.append(f"stuck on one value all day on {row['as_of_date']} ({row['stuck_metrics']}): "
                    "the sensor may be faulty or covered")
    elif row["status"] == SPARSE:
        said.append(f"only {row['readings']} readings on {row['as_of_date']} where it usually sends "
                    f"{row[USUAL]:g} a day: a weak radio link to the gateway, or a failing battery")
    if row["co2_drift_suspected"]:
        excess = row["co2_baseline_ppm"] - rules.outdoor_co2_ppm
        where = (f"{excess:.0f} ppm above outdoor air ({rules.outdoor_co2_ppm:g} ppm): the sensor "
                 "needs recalibrating, or the room is never aired at night" if excess > 0 else
                 f"{-excess:.0f} ppm below outdoor air ({rules.outdoor_co2_ppm:g} ppm), which is "
                 "impossible: the sensor needs recalibrating")
        said.append(f"CO2 at night stays around {row['co2_baseline_ppm']:.0f} ppm, {where}")
    left = row["battery_days_left"]
    if left is not None and not math.isnan(left) and left < rules.battery_attention_days:
        said.append(f"battery at {row['battery_level']:g} %, about {_days(math.floor(left))} "
                    f"left before {rules.battery_empty_pct:g} %: replace it")
    return "; ".join(said) or None


def device_health(daily: pd.DataFrame, last_reading_at: pd.Series, rules: HealthRules,
                  timezone: str) -> pd.DataFrame:
    """The `device_health` rows from the `device_daily_health` rows (`daily_health`) and each
    device's newest reading (`last_reading_at`, by DevEui)."""
    zone = ZoneInfo(timezone)
    daily = daily.sort_values(["dev_eui", "local_date"], kind="stable")
    as_of = daily["local_date"].max()
    # Every device's calendar runs through `as_of`: its last row is that date's.
    latest = daily.groupby("dev_eui", sort=True).nth(-1).set_index("dev_eui")
    by_device = daily.groupby("dev_eui", sort=True)
    baseline, drift = _co2_baseline(daily, rules)
    last_at = last_reading_at.reindex(latest.index)
    last_date = pd.to_datetime(last_at, utc=True).dt.tz_convert(zone).dt.date
    health = pd.DataFrame({
        INSTITUTE: latest[INSTITUTE], CLASSROOM: latest[CLASSROOM], "dev_eui": latest.index,
        PROFILE: latest[PROFILE], "as_of_date": as_of, "last_reading_at": last_at,
        "days_since_last_reading": [(as_of - day).days for day in last_date],
        "status": latest["status"], "readings": latest["readings"], USUAL: latest[USUAL],
        "stuck_metrics": latest["stuck_metrics"],
        "battery_level": by_device["battery_min"].last().reindex(latest.index),
        "battery_days_left": _battery_days_left(daily, as_of, rules).reindex(latest.index),
        "co2_baseline_ppm": baseline.reindex(latest.index),
        "co2_drift_suspected": drift.reindex(latest.index, fill_value=False).astype(bool),
    })
    health["reasons"] = [reasons(row, rules, zone) for row in health.to_dict("records")]
    return health[list(DEVICE_HEALTH_COLUMNS)].reset_index(drop=True)


DEVICE_HEALTH_COLUMNS = (INSTITUTE, CLASSROOM, "dev_eui", PROFILE, "as_of_date", "last_reading_at",
                         "days_since_last_reading", "status", "reasons", "readings", USUAL,
                         "stuck_metrics", "battery_level", "battery_days_left", "co2_baseline_ppm",
                         "co2_drift_suspected")


def health_results(partials: pd.DataFrame, rules: HealthRules, timezone: str,
                   first_date: dt.date | None = None) -> dict[str, pd.DataFrame]:
    """The two health tables' rows by table name, for the catalog's build functions; with
    `first_date`, the device_daily_health rows of that date and later only (an incremental run
    derives them from the device-days they depend on: `_needed_from`)."""
    zone = ZoneInfo(timezone)
    days = device_days(partials, zone)
    if first_date is not None:
        days = _needed_from(days, _day_number(first_date), _day_number(days.span.last_date), rules)
    daily = daily_health(days, rules, zone)
    last_reading_at = pd.Series(days.last_reading_us.astype("datetime64[us]"),
                                index=days.devices).dt.tz_localize("UTC")
    health = device_health(daily, last_reading_at, rules, timezone)
    if first_date is not None:
        daily = daily[(daily["local_date"] >= first_date).to_numpy()].reset_index(drop=True)
    return {DAILY_HEALTH_TABLE: daily, DEVICE_HEALTH_TABLE: health}
