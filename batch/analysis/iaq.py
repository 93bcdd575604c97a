"""Indoor-air compliance while pupils are in the room (issue 13): UK BB101 and EN 16798-1.

Only occupied readings count: a reading whose local time (BATCH_TIMEZONE) falls on an
occupied day, inside an occupied range `[start, end)` of its institute's timetable, not on
a closed date of its institute: a date of IAQ_CLOSURES_FILE or a public holiday of its
calendar (IAQ_PUBLIC_HOLIDAYS; batch/analysis/timetable.py).

The occupied counts and sums hang off the per-device-and-local-day aggregation of
batch.analysis.partials.partial_statistics (`iaq_partial_aggregates` are extra expressions of the
same groupBy over the same validated readings). The longest episode above the BB101 peak
and the time a device's readings cover (a day is judged only when they cover
IAQ_MIN_DAY_COVERAGE of its occupied time) need the readings in time order:
`device_day_episodes` collects each device-day's occupied CO2 readings as a small array of
(sendtime, co2, range end), sorted and folded once with Spark's higher-order functions (no
Python UDF) into both numbers, in a narrow aggregation of its own. Memory bound:
per device and local day, the occupied readings with a CO2 value only (about 70 at one
reading every 5 minutes over a 6-hour school day, 24 bytes each); the array is reduced to
two numbers per device-day. Everything after that is a small roll-up, in the driver
(pandas), of one row per device and day.

Why apart: collect_list makes an aggregation an ObjectHashAggregate, which Spark does not
compile to Java (whole-stage code generation). Inside the wide per-device-day aggregation it
made that whole aggregation ~3x slower (1,000,000 readings of 1,000 devices, local[2]: 12.1
s against 4.8 s); on its own, over three narrow columns of the occupied readings, it costs
a second scan of those columns and a small aggregation (see docs/performance.md).

Air temperature stands in for the operative temperature of EN 16798-1: the sensors
measure air temperature only.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from functools import reduce
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

import pandas as pd
from psycopg2 import sql
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from batch.analysis.partials import LOCAL_MICROS, MICROS_PER_DAY, local_days, with_local_time, with_reading_date
from batch.analysis.rollup import included_partials
from batch.analysis.statistics import (
    CLASSROOM_KEY,
    INSTITUTE_KEY,
    ISO_WEEK_KEY,
    ISO_YEAR_KEY,
    READING_DATE,
    WEEK_START_KEY,
)
from batch.core.config import Option, finite_number, number, settings_type
from batch.core.contract import CLASSROOM, DEVICE, INSTITUTE, METRIC_NAMES, RAW_COLUMNS_BY_NAME, SENDTIME
from batch.core.errors import ConfigurationError
from batch.core.schema import BIGINT, BOOLEAN, DATE, DOUBLE, INTEGER, TEXT, Results, Table, View
from batch.core.schema import Column as PublishedColumn
from batch.core.session import collect_to_pandas
from batch.analysis.timetable import (
    ALL_INSTITUTES,
    NO_HOLIDAYS,
    Occupancy,
    Timetable,
    checked_month_day,
    checked_optional_file,
    checked_timetable,
    load_occupancy,
    parse_holiday_calendar,
    parse_month_day,
    public_holiday_dates,
    public_holidays_applied,
)
from batch.core.validation import EXCLUSION_REASON

# The metrics validate_readings must check for the IAQ tables (pir on top of the statistics').
IAQ_VALIDATED_METRICS: tuple[str, ...] = METRIC_NAMES + ("pir",)

MICROS_PER_MINUTE = 60_000_000
DAILY_TABLE = "classroom_daily_iaq"
WEEKLY_TABLE = "classroom_weekly_iaq"
PERIOD_TABLE = "classroom_iaq"
LATEST_WEEK_VIEW = "latest_complete_week_iaq_by_classroom"
LOCAL_DATE = "local_date"
DATA_THROUGH = "data_through"


# --- settings ---------------------------------------------------------------------------

# Within the contract's CO2 range, as the analysis' CO2 thresholds are.
parse_ppm = number(0, RAW_COLUMNS_BY_NAME["co2"].upper, above_low=True)
# Outdoor air: about 420 ppm today (NOAA's global mean, 2024), a little more beside traffic;
# 280 before industry. Outside 300-600 ppm the value is an indoor one or a typo, and would
# shift every EN 16798-1 category.
parse_outdoor_ppm = number(300, 600)
parse_minutes = number(0, 24 * 60, above_low=True)
parse_share = number(0, 1, above_low=True)


def parse_co2_excess_limits(text: str) -> tuple[float, float, float]:
    """`550,800,1350`: the upper CO2 excesses of EN 16798-1 categories I, II, III."""
    parts = text.split(",")
    if len(parts) != 3:
        raise ValueError(f"expected three excesses over outdoor CO2 (I,II,III), got {text!r}")
    limits = tuple(finite_number(part) for part in parts)
    if not 0 < limits[0] < limits[1] < limits[2]:
        raise ValueError(f"the excesses must be positive and increasing (I < II < III), got {text!r}")
    return limits  # type: ignore[return-value]


def parse_temperature_band(text: str) -> tuple[float, float]:
    """`20-24` (°C, inclusive; a negative bound written with its sign, e.g. `-5-10`)."""
    head, separator, tail = text.strip()[1:].partition("-")
    if not separator:
        raise ValueError(f"expected a band LOW-HIGH in °C, e.g. 20-24, got {text!r}")
    low, high = finite_number(text.strip()[0] + head), finite_number(tail)
    if not -40 <= low < high <= 85:
        raise ValueError(f"expected LOW below HIGH, both within -40..85 °C, got {text!r}")
    return low, high


IAQ_OPTIONS: tuple[Option, ...] = (
    Option("IAQ_TIMETABLE", "Mon-Fri 08:00-14:00",
           "school timetable in local time: 'DAYS RANGES; ...', e.g. "
           "'Mon-Fri 08:00-13:00,14:00-16:00; Sat 08:00-12:00'", checked_timetable),
    Option("IAQ_TIMETABLE_FILE", "",
           "CSV 'institute,timetable,holidays' of institutes with their own timetable and "
           "optionally public-holiday calendar (others: IAQ_TIMETABLE, IAQ_PUBLIC_HOLIDAYS)",
           checked_optional_file, path=True),
    Option("IAQ_CLOSURES_FILE", "",
           "CSV 'institute,first_date,last_date,reason' of closed dates, inclusive; "
           "institute * = all", checked_optional_file, path=True),
    Option("IAQ_PUBLIC_HOLIDAYS", "IT",
           "public holidays (closed dates) of the holidays library: country CC or CC-SUBDIVISION "
           "(e.g. IT, IT-BZ), or none", parse_holiday_calendar),
    Option("IAQ_HEATING_SEASON_START", "10-15",
           "first day MM-DD of the heating season (EN 16798-1 temperature band)", checked_month_day),
    Option("IAQ_HEATING_SEASON_END", "04-15",
           "last day MM-DD of the heating season, inclusive", checked_month_day),
    Option("IAQ_OUTDOOR_CO2_PPM", "400",
           "outdoor CO2 of the EN 16798-1 excess, ppm (a plausible outdoor value: 300 to 600)",
           parse_outdoor_ppm),
    Option("IAQ_BB101_MEAN_CO2_PPM", "1500",
           "BB101: a school day's occupied CO2 mean must be below this, ppm "
           "(1000 for mechanical ventilation)", parse_ppm),
    Option("IAQ_BB101_PEAK_CO2_PPM", "2000", "BB101 peak: CO2 above this, ppm ...", parse_ppm),
    Option("IAQ_BB101_PEAK_MINUTES", "20",
           "... for at most this many consecutive minutes", parse_minutes),
    Option("IAQ_READING_MAX_MINUTES", "15",
           "the longest time a reading may stand for; a longer gap ends an episode", parse_minutes),
    Option("IAQ_EN16798_CO2_EXCESS_PPM", "550,800,1350",
           "EN 16798-1 upper CO2 excess over outdoor of categories I,II,III, ppm",
           parse_co2_excess_limits),
    Option("IAQ_TEMPERATURE_HEATING_C", "20-24",
           "EN 16798-1 category II temperature band in the heating season, °C", parse_temperature_band),
    Option("IAQ_TEMPERATURE_NON_HEATING_C", "23-26",
           "EN 16798-1 category II temperature band outside the heating season, °C",
           parse_temperature_band),
    Option("IAQ_COMPLIANCE_SHARE", "0.95",
           "share of occupied readings a category must cover to be met", parse_share),
    Option("IAQ_MIN_DAY_COVERAGE", "0.5",
           "share of a school day's occupied time its CO2 readings must cover for the day to "
           "be judged against BB101 (each reading standing for at most IAQ_READING_MAX_MINUTES)",
           parse_share),
)


class IaqSettings(settings_type("IaqSettings", IAQ_OPTIONS, with_defaults=True)):  # type: ignore[misc]
    """The IAQ options, parsed (field names are the options' lower-case names; defaults theirs)."""

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> IaqSettings:
        """From resolved option values (batch.core.config.resolve_options); others are ignored."""
        return cls(**{option.field: values[option.field] for option in IAQ_OPTIONS
                      if option.field in values})

    def check(self) -> None:
        """Rules across options (each option checked its own value when parsed)."""
        if self.iaq_bb101_mean_co2_ppm > self.iaq_bb101_peak_co2_ppm:
            raise ConfigurationError(
                "IAQ_BB101_MEAN_CO2_PPM must not be above IAQ_BB101_PEAK_CO2_PPM "
                f"({self.iaq_bb101_mean_co2_ppm:g} > {self.iaq_bb101_peak_co2_ppm:g})")
        if self.iaq_heating_season_start == self.iaq_heating_season_end:
            raise ConfigurationError(
                "IAQ_HEATING_SEASON_START and IAQ_HEATING_SEASON_END are the same day: "
                "a one-day heating season is surely a mistake")

    def rules(self) -> IaqRules:
        """The rules the transformations apply, with the timetable and closure files read."""
        self.check()
        return IaqRules(
            occupancy=load_occupancy(self.iaq_timetable, self.iaq_timetable_file,
                                     self.iaq_closures_file, self.iaq_public_holidays),
            heating_season=(parse_month_day(self.iaq_heating_season_start),
                            parse_month_day(self.iaq_heating_season_end)),
            outdoor_co2_ppm=self.iaq_outdoor_co2_ppm,
            bb101_mean_co2_ppm=self.iaq_bb101_mean_co2_ppm,
            bb101_peak_co2_ppm=self.iaq_bb101_peak_co2_ppm,
            bb101_peak_minutes=self.iaq_bb101_peak_minutes,
            reading_max_minutes=self.iaq_reading_max_minutes,
            co2_excess_limits=self.iaq_en16798_co2_excess_ppm,
            temperature_heating_c=self.iaq_temperature_heating_c,
            temperature_non_heating_c=self.iaq_temperature_non_heating_c,
            compliance_share=self.iaq_compliance_share,
            min_day_coverage=self.iaq_min_day_coverage,
        )


@dataclass(frozen=True)
class IaqRules:
    """Everything the IAQ transformations need, explicit (built by IaqSettings.rules)."""

    occupancy: Occupancy
    heating_season: tuple[tuple[int, int], tuple[int, int]]
    outdoor_co2_ppm: float
    bb101_mean_co2_ppm: float
    bb101_peak_co2_ppm: float
    bb101_peak_minutes: float
    reading_max_minutes: float
    co2_excess_limits: tuple[float, float, float]
    temperature_heating_c: tuple[float, float]
    temperature_non_heating_c: tuple[float, float]
    compliance_share: float
    min_day_coverage: float

    @property
    def reading_max_us(self) -> int:
        return round(self.reading_max_minutes * MICROS_PER_MINUTE)

    @property
    def bb101_peak_us(self) -> int:
        return round(self.bb101_peak_minutes * MICROS_PER_MINUTE)


# --- occupied readings ------------------------------------------------------------------

OCCUPIED_RANGE_END = "occupied_range_end_us"
_END_SECONDS = "_occupied_range_end_seconds"


def _range_end_seconds(timetable: Timetable, weekday: Column, of_day_us: Column) -> Column:
    """Seconds after local midnight at which the occupied range holding the reading ends."""
    end: Column | None = None
    for day, ranges in enumerate(timetable.ranges):
        for start, stop in ranges:
            inside = (weekday == day) & (of_day_us >= start * 1_000_000) & (of_day_us < stop * 1_000_000)
            end = F.when(inside, F.lit(stop)) if end is None else end.when(inside, F.lit(stop))
    return end if end is not None else F.lit(None).cast("int")


def _public_holiday(calendar: str, local_date: Column) -> Column:
    dates = list(public_holiday_dates(calendar))
    # One set membership test (Spark's InSet), not one comparison per date.
    return local_date.isin(dates) if dates else F.lit(False)


def _closed(occupancy: Occupancy, local_date: Column) -> Column:
    conditions = [
        local_date.between(F.lit(closure.first_date), F.lit(closure.last_date))
        & (F.lit(True) if closure.institute == ALL_INSTITUTES else F.col(INSTITUTE) == closure.institute)
        for closure in occupancy.closures]
    holiday = _public_holiday(occupancy.public_holidays, local_date)
    for institute, calendar in reversed(occupancy.institute_public_holidays):
        holiday = F.when(F.col(INSTITUTE) == institute,
                         _public_holiday(calendar, local_date)).otherwise(holiday)
    return reduce(lambda a, b: a | b, conditions, holiday)


def with_occupied_range(validated_df: DataFrame, timezone: str, occupancy: Occupancy) -> DataFrame:
    """Add `occupied_range_end_us`: for an occupied reading, the UTC instant (µs since the
    epoch) its occupied range ends; null for a reading outside the occupied time or excluded.

    Local wall-clock time is batch.analysis.partials.with_local_time's, converted once per
    reading. The range end is a local time of the reading's date turned back into an
    instant, so a range on a daylight-saving change day lasts what the clocks on the wall
    say it lasts.
    """
    with_local = validated_df.transform(with_local_time, timezone)
    local_micros = F.col(LOCAL_MICROS)
    days = local_days(local_micros)
    local_date = F.date_from_unix_date(days.cast("int"))
    midnight_us = days * MICROS_PER_DAY
    of_day_us = local_micros - midnight_us
    weekday = F.pmod(days + 3, F.lit(7))  # 0 = Monday, as Timetable.ranges (1970-01-01: a Thursday)
    end_seconds = _range_end_seconds(occupancy.default_timetable, weekday, of_day_us)
    for institute, timetable in reversed(occupancy.institute_timetables):
        end_seconds = F.when(F.col(INSTITUTE) == institute,
                             _range_end_seconds(timetable, weekday, of_day_us)).otherwise(end_seconds)
    end_instant = F.to_utc_timestamp(
        F.timestamp_micros(midnight_us + F.col(_END_SECONDS).cast("long") * 1_000_000), timezone)
    occupied = F.col(EXCLUSION_REASON).isNull() & F.col(_END_SECONDS).isNotNull() \
        & ~_closed(occupancy, local_date)
    # The range end in a column of its own: the timetable's CASE is evaluated once.
    return (with_local.withColumn(_END_SECONDS, end_seconds)
            .withColumn(OCCUPIED_RANGE_END, F.when(occupied, F.unix_micros(end_instant)))
            .drop(_END_SECONDS))


# --- per device and local day: extra aggregates of partial_statistics -------------------

_CO2_N, _CO2_SUM, _CO2_MAX = "iaq_co2_n", "iaq_co2_sum", "iaq_co2_max"
_CATEGORIES = ("i", "ii", "iii", "iv")
_CATEGORY_N = tuple(f"iaq_co2_category_{name}_n" for name in _CATEGORIES)
_TEMPERATURE_N, _TEMPERATURE_SUM, _TEMPERATURE_IN_BAND = (
    "iaq_temperature_n", "iaq_temperature_sum", "iaq_temperature_in_band_n")
_PIR_N, _PIR_MOTION = "iaq_pir_n", "iaq_pir_motion_n"
_LONGEST_US = "iaq_longest_episode_us"
_COVERED_US = "iaq_covered_us"


def _in_heating_season(date: Column, season: tuple[tuple[int, int], tuple[int, int]]) -> Column:
    (first_month, first_day), (last_month, last_day) = season
    month_day = F.month(date) * 100 + F.dayofmonth(date)
    first, last = first_month * 100 + first_day, last_month * 100 + last_day
    if first <= last:
        return month_day.between(first, last)
    return (month_day >= first) | (month_day <= last)  # the season spans the new year


def _co2_category(excess: Column, limits: tuple[float, float, float]) -> Column:
    """EN 16798-1 category (1-4) of a CO2 excess over outdoor: I if <= 550, ... IV above 1350."""
    return (F.when(excess <= limits[0], 1).when(excess <= limits[1], 2)
            .when(excess <= limits[2], 3).otherwise(4))


def _longest_episode_and_covered_us(readings: Column, peak_ppm: float, max_us: int) -> Column:
    """(`longest`, `covered`), µs, of an array of (t, co2, end) sorted by t: the longest
    episode above `peak_ppm` and the time the readings cover, in one fold.

    Each reading stands for the time until the earliest of: the next reading of the same
    range, t + `max_us`, the end of its range. An episode is a run of consecutive readings
    above the peak of one range, each at most `max_us` after the previous one. The covered
    time is what all the readings stand for.
    """
    def stands_for(reading: Column, index: Column) -> Column:
        following = F.get(readings, index + 1)  # null after the last reading
        until = F.least(F.when(following["end"] == reading["end"], following["t"]),
                        reading["t"] + F.lit(max_us), reading["end"])  # least skips nulls
        return F.struct(reading["t"].alias("t"), reading["co2"].alias("co2"),
                        reading["end"].alias("end"), (until - reading["t"]).alias("stands_us"))

    def step(state: Column, reading: Column) -> Column:
        high = F.coalesce(reading["co2"] > F.lit(peak_ppm), F.lit(False))
        follows = F.coalesce(state["high"] & (reading["end"] == state["end"])
                             & (reading["t"] - state["t"] <= F.lit(max_us)), F.lit(False))
        run = F.when(high & follows, state["run"] + reading["stands_us"]) \
            .when(high, reading["stands_us"]).otherwise(F.lit(0).cast("long"))
        return F.struct(reading["t"].alias("t"), reading["end"].alias("end"), high.alias("high"),
                        run.alias("run"), F.greatest(state["best"], run).alias("best"),
                        (state["covered"] + reading["stands_us"]).alias("covered"))

    start = F.struct(F.lit(None).cast("long").alias("t"), F.lit(None).cast("long").alias("end"),
                     F.lit(False).alias("high"), F.lit(0).cast("long").alias("run"),
                     F.lit(0).cast("long").alias("best"), F.lit(0).cast("long").alias("covered"))
    return F.aggregate(F.transform(readings, stands_for), start, step,
                       lambda state: F.struct(state["best"].alias("longest"),
                                              state["covered"].alias("covered")))


def iaq_partial_aggregates(rules: IaqRules) -> list[Column]:
    """Aggregate expressions over readings carrying `occupied_range_end_us` and `reading_date`
    (partial_statistics' groupBy of one device and local day): occupied counts and sums,
    category counts; compiled by Spark, as the statistics' own aggregates."""
    occupied = F.col(OCCUPIED_RANGE_END).isNotNull()
    co2 = F.when(occupied, F.col("co2"))
    temperature = F.when(occupied, F.col("temperature"))
    pir = F.when(occupied, F.col("pir"))
    category = _co2_category(co2 - F.lit(rules.outdoor_co2_ppm), rules.co2_excess_limits)
    heating = _in_heating_season(F.col(READING_DATE), rules.heating_season)
    (heating_low, heating_high), (other_low, other_high) = (rules.temperature_heating_c,
                                                            rules.temperature_non_heating_c)
    in_band = F.when(heating, temperature.between(heating_low, heating_high)) \
        .otherwise(temperature.between(other_low, other_high))
    return [
        F.count(co2).alias(_CO2_N),
        F.sum(co2).alias(_CO2_SUM),
        F.max(co2).alias(_CO2_MAX),
        *[F.count(F.when(co2.isNotNull() & (category == number), 1)).alias(name)
          for number, name in enumerate(_CATEGORY_N, start=1)],
        F.count(temperature).alias(_TEMPERATURE_N),
        F.sum(temperature).alias(_TEMPERATURE_SUM),
        F.count(F.when(in_band, 1)).alias(_TEMPERATURE_IN_BAND),
        F.count(pir).alias(_PIR_N),
        F.count(F.when(pir == 1, 1)).alias(_PIR_MOTION),
    ]


_EPISODE_KEYS = (INSTITUTE, CLASSROOM, DEVICE, READING_DATE)


def device_day_episodes(validated_df: DataFrame, timezone: str, rules: IaqRules) -> DataFrame:
    """One row per device-day with an occupied CO2 reading: `iaq_longest_episode_us`, the
    day's longest episode above the BB101 peak, and `iaq_covered_us`, the occupied time its
    readings cover (IAQ_MIN_DAY_COVERAGE), from validated readings, in one sort and one fold.

    Every device-day with an occupied CO2 reading needs its readings in time order for the
    coverage, so no day is left out before the sort (a day below the peak still covers time).
    """
    reading = F.struct(F.unix_micros(F.col(SENDTIME)).alias("t"), F.col("co2").alias("co2"),
                       F.col(OCCUPIED_RANGE_END).alias("end"))
    # The occupied test sits in the aggregate (collect_list skips nulls), not in a filter:
    # Spark would push a filter below with_occupied_range's projection and evaluate the
    # timetable twice.
    readings = F.collect_list(F.when(F.col(OCCUPIED_RANGE_END).isNotNull(), reading))
    folded = "_folded"
    return (validated_df.filter(F.col("co2").isNotNull())
            .transform(with_reading_date, timezone)
            .transform(with_occupied_range, timezone, rules.occupancy)
            .groupBy(*_EPISODE_KEYS)
            # Sorted by (t, co2): ties of sendtime are ordered by value, as in the reference.
            .agg(_longest_episode_and_covered_us(F.array_sort(readings), rules.bb101_peak_co2_ppm,
                                                 rules.reading_max_us).alias(folded))
            # A day with an occupied reading covers some time (its last reading stands for
            # more than nothing): the others are the nights and weekends.
            .filter(F.col(f"{folded}.covered") > 0)
            .select(*_EPISODE_KEYS, F.col(f"{folded}.longest").alias(_LONGEST_US),
                    F.col(f"{folded}.covered").alias(_COVERED_US)))


def collect_device_day_episodes(validated_df: DataFrame, timezone: str, rules: IaqRules,
                                partials: pd.DataFrame) -> pd.DataFrame:
    """`device_day_episodes` in the driver (a row per device-day at most, the partials'
    bound); no Spark job when the partials have no occupied CO2 reading."""
    included = included_partials(partials)
    if not (included[_CO2_N] > 0).any():
        return included.loc[[], list(_EPISODE_KEYS)].assign(
            **{_LONGEST_US: pd.Series(dtype="int64"), _COVERED_US: pd.Series(dtype="int64")})
    return collect_to_pandas(validated_df.transform(device_day_episodes, timezone, rules))


# --- roll-ups, in the driver -------------------------------------------------------------
#
# From the per-device-day partials and episodes collected to the driver (pandas; one row per
# device and local day, as the statistics' roll-up in batch.analysis.rollup: the same bound).
# The three tables are small sums over them; as Spark jobs they cost more in fixed overhead
# than in work.

_SCHOOL_DAY, _JUDGED = "iaq_school_day", "iaq_judged"
_OCCUPIED_US = "iaq_occupied_us"
_COVERAGE, _NOT_JUDGED_REASON = "occupied_coverage", "not_judged_reason"
_BB101_MEAN_MET, _BB101_PEAK_MET = "bb101_mean_met", "bb101_peak_met"
_SUMMED = (_CO2_N, _CO2_SUM, *_CATEGORY_N, _TEMPERATURE_N, _TEMPERATURE_SUM, _TEMPERATURE_IN_BAND,
           _PIR_N, _PIR_MOTION)
# The keys the collected partials must carry for these tables (batch.analysis.partials.collect_partials).
IAQ_GROUP_KEYS = (ISO_YEAR_KEY, ISO_WEEK_KEY, WEEK_START_KEY)
_WEEK_KEYS = tuple(key.column.name for key in IAQ_GROUP_KEYS)
_CLASSROOM_KEYS = [INSTITUTE, CLASSROOM]


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    # A share or mean over no reading is NULL, never 0 and never an error.
    return (numerator / denominator.where(denominator > 0)).astype(float)


def _nullable_flag(condition: pd.Series, applies: pd.Series) -> pd.Series:
    """`condition` where `applies`, else null (a BOOLEAN column's NULL)."""
    return condition.astype(object).where(applies, None)


def _instant_us(day: dt.date, seconds: int, zone: ZoneInfo) -> int:
    """The instant, µs since the epoch, of local time `seconds` after midnight of `day`,
    resolved as with_occupied_range's Spark resolves it: a time the clocks skip is read
    with the offset before the change, a repeated one as its first occurrence (fold 0)."""
    local = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=seconds)
    return round(local.replace(tzinfo=zone).timestamp() * 1_000_000)


def _timetable_of(occupancy: Occupancy, institute: str) -> Timetable:
    return dict(occupancy.institute_timetables).get(institute, occupancy.default_timetable)


def occupied_us(institute: str, day: dt.date, occupancy: Occupancy, timezone: str) -> int:
    """The occupied time of an institute's day, µs: the lengths of its timetable ranges that
    day as instants (on a clock-change day a range lasts what the wall clock says).

    Only asked for days with an occupied reading, which are therefore not closed.
    """
    zone = ZoneInfo(timezone)
    return sum(_instant_us(day, end, zone) - _instant_us(day, start, zone)
               for start, end in _timetable_of(occupancy, institute).ranges[day.weekday()])


def _not_judged_reason(coverage: float, school_day: bool, rules: IaqRules) -> str | None:
    if not school_day:
        return "no occupied CO2 reading"
    if coverage >= rules.min_day_coverage:
        return None
    # Rounded down: a day just below the minimum never reads as reaching it.
    covered = math.floor(coverage * 1000) / 10
    return (f"too little data: {covered:g} % of the occupied time covered "
            f"(IAQ_MIN_DAY_COVERAGE {rules.min_day_coverage * 100:g} %)")


def classroom_day_totals(partials: pd.DataFrame, episodes: pd.DataFrame, rules: IaqRules,
                         timezone: str) -> pd.DataFrame:
    """One row per classroom and local date with an occupied CO2 or temperature value:
    the occupied sums over its devices, the longest episode and the covered time of its
    best-covered CO2 device (`device_day_episodes`), the day's coverage, BB101 flags on
    the days covered enough to be judged.

    `partials`: partial_statistics with `iaq_partial_aggregates` and the ISO week keys
    (batch.analysis.partials.collect_partials); `episodes`: `collect_device_day_episodes`.
    """
    keys = [*_CLASSROOM_KEYS, READING_DATE]
    included = included_partials(partials)
    by_day = included.groupby(keys, sort=False)
    days = by_day[list(_SUMMED)].sum()
    days[_CO2_MAX] = by_day[_CO2_MAX].max()
    days[list(_WEEK_KEYS)] = by_day[list(_WEEK_KEYS)].first()
    days = days[(days[_CO2_N] + days[_TEMPERATURE_N]) > 0]
    # The classroom's longest episode and covered time are those of its best device, not a
    # sum: two sensors in one room measure the same air at the same time.
    by_device_day = episodes.groupby(keys, sort=False)
    days = days.join(by_device_day[[_LONGEST_US, _COVERED_US]].max(), how="left").reset_index()
    school_day = days[_CO2_N] > 0
    days[[_LONGEST_US, _COVERED_US]] = days[[_LONGEST_US, _COVERED_US]].fillna(0).astype("int64")
    occupied = {(institute, day): occupied_us(institute, day, rules.occupancy, timezone)
                for institute, day in set(zip(days[INSTITUTE], days[READING_DATE]))}
    days[_OCCUPIED_US] = [occupied[key] for key in zip(days[INSTITUTE], days[READING_DATE])]
    days[_COVERAGE] = _ratio(days[_COVERED_US], days[_OCCUPIED_US])
    judged = school_day & (days[_COVERAGE] >= rules.min_day_coverage)
    days[_SCHOOL_DAY] = school_day
    days[_JUDGED] = judged
    days[_NOT_JUDGED_REASON] = [_not_judged_reason(coverage, school, rules)
                                for coverage, school in zip(days[_COVERAGE], school_day)]
    days[_BB101_MEAN_MET] = _nullable_flag(
        days[_CO2_SUM] / days[_CO2_N].where(school_day) < rules.bb101_mean_co2_ppm, judged)
    days[_BB101_PEAK_MET] = _nullable_flag(days[_LONGEST_US] <= rules.bb101_peak_us, judged)
    return days


def _occupied_statistics(totals: pd.DataFrame) -> dict[str, pd.Series]:
    co2_n, temperature_n = totals[_CO2_N], totals[_TEMPERATURE_N]
    return {
        "co2_occupied_readings": co2_n.astype("int64"),
        "co2_occupied_mean": _ratio(totals[_CO2_SUM], co2_n),
        "co2_occupied_max": totals[_CO2_MAX].astype(float),
        **{f"en16798_co2_share_{name}": _ratio(totals[n], co2_n)
           for n, name in zip(_CATEGORY_N, _CATEGORIES)},
        "temperature_occupied_readings": temperature_n.astype("int64"),
        "temperature_occupied_mean": _ratio(totals[_TEMPERATURE_SUM], temperature_n),
        "temperature_share_in_band": _ratio(totals[_TEMPERATURE_IN_BAND], temperature_n),
    }


def classroom_daily_iaq(day_totals: pd.DataFrame) -> pd.DataFrame:
    """The `classroom_daily_iaq` table from `classroom_day_totals`."""
    school_day = day_totals[_SCHOOL_DAY]
    return pd.DataFrame({
        INSTITUTE: day_totals[INSTITUTE], CLASSROOM: day_totals[CLASSROOM],
        LOCAL_DATE: day_totals[READING_DATE], **{key: day_totals[key] for key in _WEEK_KEYS},
        **_occupied_statistics(day_totals),
        "longest_peak_episode_minutes": (day_totals[_LONGEST_US] / MICROS_PER_MINUTE).where(school_day),
        _COVERAGE: day_totals[_COVERAGE], _NOT_JUDGED_REASON: day_totals[_NOT_JUDGED_REASON],
        _BB101_MEAN_MET: day_totals[_BB101_MEAN_MET], _BB101_PEAK_MET: day_totals[_BB101_PEAK_MET],
        "pir_share_motion": _ratio(day_totals[_PIR_MOTION], day_totals[_PIR_N]),
    })


def _category(totals: pd.DataFrame, rules: IaqRules) -> pd.Series:
    """The EN 16798-1 category of a roll-up: the best category whose readings, with those of
    better categories, make at least IAQ_COMPLIANCE_SHARE of its occupied CO2 readings."""
    co2_n = totals[_CO2_N]
    required = co2_n * rules.compliance_share
    covered = totals[list(_CATEGORY_N[:3])].cumsum(axis=1)
    category = pd.Series(4.0, index=totals.index)
    for rank, name in reversed(list(enumerate(_CATEGORY_N[:3], start=1))):
        category = category.mask(covered[name] >= required, float(rank))
    return category.where(co2_n > 0)


def _rolled_up(day_totals: pd.DataFrame, keys: list[str], rules: IaqRules) -> pd.DataFrame:
    """Day counts, occupied statistics and the EN 16798-1 category per group of `keys`."""
    mean_met = day_totals[_BB101_MEAN_MET].eq(True)
    peak_met = day_totals[_BB101_PEAK_MET].eq(True)
    # The flags are null on the days not judged: the BB101 counts are over judged days.
    counted = day_totals.assign(school_days=day_totals[_SCHOOL_DAY].astype("int64"),
                                judged_days=day_totals[_JUDGED].astype("int64"),
                                days_with_too_little_data=(day_totals[_SCHOOL_DAY]
                                                           & ~day_totals[_JUDGED]).astype("int64"),
                                bb101_mean_days_met=mean_met.astype("int64"),
                                bb101_peak_days_met=peak_met.astype("int64"),
                                bb101_days_met=(mean_met & peak_met).astype("int64"))
    by_group = counted.groupby(keys, sort=False)
    day_counts = ["school_days", "judged_days", "days_with_too_little_data", "bb101_mean_days_met",
                  "bb101_peak_days_met", "bb101_days_met"]
    totals = by_group[list(_SUMMED) + day_counts].sum()
    totals[_CO2_MAX] = by_group[_CO2_MAX].max()
    totals = totals.reset_index()
    return pd.DataFrame({
        **{key: totals[key] for key in keys}, **{name: totals[name] for name in day_counts},
        **_occupied_statistics(totals),
        "en16798_co2_category": _category(totals, rules),
    })


def classroom_weekly_iaq(day_totals: pd.DataFrame, data_through: Mapping[str, dt.date],
                         rules: IaqRules) -> pd.DataFrame:
    """The `classroom_weekly_iaq` table: per classroom and ISO week, over its occupied readings.

    `week_complete`: data of the classroom's institute newer than the week's Sunday have
    arrived (`data_through`: per institute, the local date of its newest reading): the
    institute's own data, so that an institute whose uplink stopped does not see its last
    week as complete because another institute's data moved on.
    """
    weekly = _rolled_up(day_totals, [*_CLASSROOM_KEYS, *_WEEK_KEYS], rules)
    weekly["week_complete"] = [start + dt.timedelta(days=7) <= data_through[institute]
                               for institute, start in zip(weekly[INSTITUTE], weekly["week_start"])]
    return weekly


def classroom_iaq(day_totals: pd.DataFrame, rules: IaqRules) -> pd.DataFrame:
    """The `classroom_iaq` table: per classroom over the whole period of data."""
    return _rolled_up(day_totals, _CLASSROOM_KEYS, rules)


@dataclass(frozen=True)
class IaqTables:
    daily: pd.DataFrame
    weekly: pd.DataFrame
    period: pd.DataFrame


def iaq_tables(partials: pd.DataFrame, episodes: pd.DataFrame, rules: IaqRules,
               timezone: str) -> IaqTables:
    """The three IAQ tables from the collected partials (with `iaq_partial_aggregates` and the
    ISO week keys) and the collected `device_day_episodes`; `timezone`: BATCH_TIMEZONE."""
    day_totals = classroom_day_totals(partials, episodes, rules, timezone)
    data_through = included_partials(partials).groupby(INSTITUTE)[READING_DATE].max().to_dict()
    return IaqTables(daily=classroom_daily_iaq(day_totals),
                     weekly=classroom_weekly_iaq(day_totals, data_through, rules),
                     period=classroom_iaq(day_totals, rules))


# --- the catalog entries (batch/analysis/catalog.py) -------------------------------------------------

def _occupied_note(settings: IaqSettings, timezone: str) -> str:
    files = "".join(
        f", {label} {path}" for label, path in (("IAQ_TIMETABLE_FILE", settings.iaq_timetable_file),
                                                ("IAQ_CLOSURES_FILE", settings.iaq_closures_file))
        if path)
    own = " or the institute's own in IAQ_TIMETABLE_FILE" if settings.iaq_timetable_file else ""
    holidays = (f"nor on a public holiday of the calendar {settings.iaq_public_holidays}{own} "
                "(IAQ_PUBLIC_HOLIDAYS, from the holidays library; the dates used are in "
                "batch_runs.settings)" if settings.iaq_public_holidays != NO_HOLIDAYS
                else "public holidays not closed (IAQ_PUBLIC_HOLIDAYS=none"
                + (", except an institute's own calendar in IAQ_TIMETABLE_FILE)"
                   if settings.iaq_timetable_file else ")"))
    return (f"occupied readings only: local time in {timezone} (BATCH_TIMEZONE) inside a range "
            f"[start, end) of the timetable '{settings.iaq_timetable}' (IAQ_TIMETABLE{files}), "
            f"not on a closed date of the institute, {holidays}")


def _statistic_columns(settings: IaqSettings) -> tuple[PublishedColumn, ...]:
    outdoor = settings.iaq_outdoor_co2_ppm
    limits = settings.iaq_en16798_co2_excess_ppm
    bounds = (f"at most {limits[0]:g}", f"above {limits[0]:g} and at most {limits[1]:g}",
              f"above {limits[1]:g} and at most {limits[2]:g}", f"above {limits[2]:g}")
    season = f"{settings.iaq_heating_season_start}..{settings.iaq_heating_season_end}"
    heating, other = settings.iaq_temperature_heating_c, settings.iaq_temperature_non_heating_c
    return (
        PublishedColumn("co2_occupied_readings", BIGINT, "number of occupied readings with a valid CO2 value",
                        unit="readings", nullable=False),
        PublishedColumn("co2_occupied_mean", DOUBLE, "mean CO2 over the occupied readings (not a mean of "
                        "daily means); null without CO2", unit="ppm"),
        PublishedColumn("co2_occupied_max", DOUBLE, "highest occupied CO2; null without CO2", unit="ppm"),
        *[PublishedColumn(
            f"en16798_co2_share_{name}", DOUBLE,
            f"EN 16798-1:2019 category {name.upper()}: share of the occupied CO2 readings whose "
            f"excess over outdoor CO2 ({outdoor:g} ppm, IAQ_OUTDOOR_CO2_PPM) is {bound} ppm "
            "(IAQ_EN16798_CO2_EXCESS_PPM); null without CO2", unit="share 0-1")
          for name, bound in zip(_CATEGORIES, bounds)],
        PublishedColumn("temperature_occupied_readings", BIGINT,
                        "number of occupied readings with a valid air temperature",
                        unit="readings", nullable=False),
        PublishedColumn("temperature_occupied_mean", DOUBLE,
                        "mean air temperature over the occupied readings; null without temperature",
                        unit="°C"),
        PublishedColumn(
            "temperature_share_in_band", DOUBLE,
            "EN 16798-1:2019 category II: share of the occupied temperature readings within "
            f"{heating[0]:g}-{heating[1]:g} °C on dates of the heating season {season} "
            "(IAQ_HEATING_SEASON_START/END, IAQ_TEMPERATURE_HEATING_C), "
            f"{other[0]:g}-{other[1]:g} °C on other dates (IAQ_TEMPERATURE_NON_HEATING_C), bounds "
            "included; the air temperature stands in for the standard's operative temperature "
            "(the sensors measure no radiant temperature); null without temperature",
            unit="share 0-1"),
    )


def _coverage_rule(settings: IaqSettings) -> str:
    return (f"judged: its occupied CO2 readings cover at least {settings.iaq_min_day_coverage:.0%} "
            "(IAQ_MIN_DAY_COVERAGE) of its occupied time (occupied_coverage of classroom_daily_iaq)")


def _day_count_columns(settings: IaqSettings) -> tuple[PublishedColumn, ...]:
    mean, peak = settings.iaq_bb101_mean_co2_ppm, settings.iaq_bb101_peak_co2_ppm
    minutes = settings.iaq_bb101_peak_minutes
    return (
        PublishedColumn("school_days", BIGINT,
                        "school days: local dates with at least one occupied CO2 reading",
                        unit="days", nullable=False),
        PublishedColumn("judged_days", BIGINT,
                        f"school days judged against BB101, {_coverage_rule(settings)}",
                        unit="days", nullable=False),
        PublishedColumn("days_with_too_little_data", BIGINT,
                        "school days not judged against BB101: their occupied CO2 readings cover "
                        f"less than {settings.iaq_min_day_coverage:.0%} (IAQ_MIN_DAY_COVERAGE) "
                        "of their occupied time (school_days - judged_days)",
                        unit="days", nullable=False),
        PublishedColumn("bb101_mean_days_met", BIGINT,
                        f"judged days meeting the BB101 (2018) mean: occupied CO2 mean below "
                        f"{mean:g} ppm (IAQ_BB101_MEAN_CO2_PPM)", unit="days", nullable=False),
        PublishedColumn("bb101_peak_days_met", BIGINT,
                        f"judged days meeting the BB101 (2018) peak: CO2 above {peak:g} ppm "
                        f"(IAQ_BB101_PEAK_CO2_PPM) for at most {minutes:g} consecutive minutes "
                        "(IAQ_BB101_PEAK_MINUTES)", unit="days", nullable=False),
        PublishedColumn("bb101_days_met", BIGINT, "judged days meeting both the BB101 mean and peak",
                        unit="days", nullable=False),
    )


def _category_column(settings: IaqSettings) -> PublishedColumn:
    return PublishedColumn(
        "en16798_co2_category", INTEGER,
        "EN 16798-1:2019 CO2 category met: the best category (1 = I ... 4 = IV) whose occupied "
        "CO2 readings, with those of the better categories, make at least "
        f"{settings.iaq_compliance_share:.0%} (IAQ_COMPLIANCE_SHARE) of the occupied CO2 "
        "readings; null without CO2", unit="category 1-4")


def _daily_columns(settings: IaqSettings) -> tuple[PublishedColumn, ...]:
    mean, peak = settings.iaq_bb101_mean_co2_ppm, settings.iaq_bb101_peak_co2_ppm
    return (
        INSTITUTE_KEY.column, CLASSROOM_KEY.column,
        PublishedColumn(LOCAL_DATE, DATE, "local date (BATCH_TIMEZONE)", nullable=False),
        ISO_YEAR_KEY.column, ISO_WEEK_KEY.column, WEEK_START_KEY.column,
        *_statistic_columns(settings),
        PublishedColumn(
            "longest_peak_episode_minutes", DOUBLE,
            f"BB101 peak: the longest episode above {peak:g} ppm (IAQ_BB101_PEAK_CO2_PPM) of any "
            "CO2 device of the classroom; each occupied reading stands for the time until the "
            "earliest of its device's next reading in the same occupied range, "
            f"{settings.iaq_reading_max_minutes:g} minutes (IAQ_READING_MAX_MINUTES) and the "
            "range's end, and a longer gap between readings ends an episode; 0 on a school day "
            "without one, null without CO2", unit="min"),
        PublishedColumn(
            _COVERAGE, DOUBLE,
            "share of the day's occupied time (the institute's timetable ranges that day, as "
            "instants: a range on a clock-change day lasts what the wall clock says) that the "
            "occupied CO2 readings of the classroom's best-covered CO2 device stand for, each "
            "reading standing for the time until the earliest of its device's next reading in "
            f"the same range, {settings.iaq_reading_max_minutes:g} minutes "
            "(IAQ_READING_MAX_MINUTES) and the range's end; 0 without CO2", unit="share 0-1"),
        PublishedColumn(
            _NOT_JUDGED_REASON, TEXT,
            "why the day is not judged against BB101 (its bb101_* flags null): 'no occupied CO2 "
            "reading', or 'too little data: N % of the occupied time covered' when "
            f"occupied_coverage is below {settings.iaq_min_day_coverage:.0%} "
            "(IAQ_MIN_DAY_COVERAGE); null on a judged day"),
        PublishedColumn("bb101_mean_met", BOOLEAN,
                        f"UK Building Bulletin 101 (2018): occupied CO2 mean below {mean:g} ppm "
                        "(IAQ_BB101_MEAN_CO2_PPM); null on a day not judged (not_judged_reason)"),
        PublishedColumn("bb101_peak_met", BOOLEAN,
                        f"UK Building Bulletin 101 (2018): CO2 above {peak:g} ppm for at most "
                        f"{settings.iaq_bb101_peak_minutes:g} consecutive minutes "
                        "(longest_peak_episode_minutes, IAQ_BB101_PEAK_MINUTES); null on a day "
                        "not judged (not_judged_reason)"),
        PublishedColumn("pir_share_motion", DOUBLE,
                        "share of the occupied readings with a PIR value that detected motion "
                        "(pir = 1); null without PIR", unit="share 0-1"),
    )


def _weekly_columns(settings: IaqSettings) -> tuple[PublishedColumn, ...]:
    return (
        INSTITUTE_KEY.column, CLASSROOM_KEY.column,
        ISO_YEAR_KEY.column, ISO_WEEK_KEY.column, WEEK_START_KEY.column,
        *_day_count_columns(settings), *_statistic_columns(settings), _category_column(settings),
        PublishedColumn("week_complete", BOOLEAN,
                        "data of the classroom's institute newer than the week's Sunday have "
                        "arrived: the week can no longer change", nullable=False),
    )


def _period_columns(settings: IaqSettings) -> tuple[PublishedColumn, ...]:
    return (INSTITUTE_KEY.column, CLASSROOM_KEY.column, *_day_count_columns(settings),
            *_statistic_columns(settings), _category_column(settings))


def _published(name: str, columns: tuple[PublishedColumn, ...]) -> Callable[[Results], pd.DataFrame]:
    return lambda results: results[name][[column.name for column in columns]]


def iaq_catalog_tables(settings: IaqSettings, timezone: str) -> tuple[Table, ...]:
    """The three IAQ tables as catalog entries; their rows are results[name] (`iaq_results`)."""
    note = _occupied_note(settings, timezone)
    specs = (
        (DAILY_TABLE, "Indoor-air compliance per classroom and local date with an occupied CO2 "
                      "or temperature reading (UK BB101 2018, EN 16798-1:2019)",
         (INSTITUTE, CLASSROOM, LOCAL_DATE), _daily_columns(settings)),
        (WEEKLY_TABLE, "Indoor-air compliance per classroom and ISO week (UK BB101 2018, "
                       "EN 16798-1:2019)",
         (INSTITUTE, CLASSROOM, "iso_year", "iso_week", "week_start"), _weekly_columns(settings)),
        (PERIOD_TABLE, "Indoor-air compliance per classroom over the whole period of data "
                       "(UK BB101 2018, EN 16798-1:2019)",
         (INSTITUTE, CLASSROOM), _period_columns(settings)),
    )
    return tuple(
        Table(name, f"{description}; {note}; published by the nightly batch analysis, replaced "
              "as a whole by each successful run (see batch_runs.settings for the settings used)",
              key=key, columns=columns, build=_published(name, columns))
        for name, description, key, columns in specs)


def latest_week_view() -> View:
    def query(table: Callable[[str], sql.Composable]) -> sql.Composable:
        # weeks_behind_institute as the statistics' latest_complete_week_by_classroom has it
        # (batch/analysis/catalog.py). Stale classrooms come after the current ones, unranked: a
        # classroom silent for a month is not compared with this week's.
        current = sql.SQL("CASE WHEN weeks_behind_institute = 0 THEN {} END")
        ranking = [sql.SQL("bb101_days_met::float8 / NULLIF(judged_days, 0)"),
                   sql.SQL("en16798_co2_category"), sql.SQL("co2_occupied_mean")]
        return sql.SQL(
            "SELECT * FROM (SELECT latest.*, (max(latest.week_start) OVER (PARTITION BY "
            "latest.institute) - latest.week_start) / 7 AS weeks_behind_institute "
            "FROM (SELECT DISTINCT ON (institute, classroom) * FROM {weekly} "
            "WHERE week_complete ORDER BY institute, classroom, week_start DESC) latest) ranked "
            "ORDER BY weeks_behind_institute > 0, {share} ASC NULLS LAST, {category} DESC NULLS LAST, "
            "{mean} DESC NULLS LAST, institute, classroom"
        ).format(weekly=table(WEEKLY_TABLE),
                 **{name: current.format(expression)
                    for name, expression in zip(("share", "category", "mean"), ranking)})
    return View(
        LATEST_WEEK_VIEW,
        "For each classroom, the indoor-air compliance of its latest complete ISO week "
        "(week_complete); same columns as classroom_weekly_iaq, then weeks_behind_institute: how "
        "many weeks that week is older than the newest such week of any classroom of the same "
        "institute (0: current; more: stale, the classroom's sensors stopped sending). Current "
        "classrooms first, worst first: the smallest share of judged days meeting BB101 "
        "(bb101_days_met / judged_days), then the worst EN 16798-1 CO2 category, then the "
        "highest occupied CO2 mean; then the stale ones, by institute and classroom, not ranked",
        query, reads=(WEEKLY_TABLE,), one_row_per="classroom: its latest complete ISO week of compliance")


def public_holidays_in_data(partials: pd.DataFrame, rules: IaqRules) -> dict[str, Any]:
    """The public holidays of the data's local dates (`public_holidays_applied`), from the
    collected partials (some included reading needed)."""
    dates = included_partials(partials)[READING_DATE]
    return public_holidays_applied(rules.occupancy, dates.min(), dates.max())


def iaq_results(partials: pd.DataFrame, episodes: pd.DataFrame, rules: IaqRules,
                timezone: str) -> dict[str, pd.DataFrame]:
    """The IAQ tables' rows by table name, for the catalog's build functions."""
    tables = iaq_tables(partials, episodes, rules, timezone)
    return {DAILY_TABLE: tables.daily, WEEKLY_TABLE: tables.weekly, PERIOD_TABLE: tables.period}


__all__ = [
    "IAQ_GROUP_KEYS", "IAQ_OPTIONS", "IAQ_VALIDATED_METRICS", "IaqRules", "IaqSettings", "IaqTables",
    "iaq_partial_aggregates", "iaq_tables", "collect_device_day_episodes", "device_day_episodes",
    "occupied_us", "public_holidays_in_data", "with_occupied_range",
]
