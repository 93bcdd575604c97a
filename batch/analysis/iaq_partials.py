"""Indoor-air compliance while pupils are in the room (issue 13), the Spark side: which
readings are occupied, and their per-device-and-local-day partials. Which readings are
occupied: docs/compliance.md.

The occupied counts and sums are extra expressions (`iaq_partial_aggregates`) of the same
groupBy as batch.analysis.partials.partial_statistics. The longest episode above the BB101
peak and the time a device's readings cover need the readings in time order:
`device_day_episodes` collects each device-day's occupied CO2 readings (about 70 a school day,
24 bytes each) and folds them, sorted, into those two numbers with Spark's higher-order
functions (no Python UDF), in a narrow aggregation of its own. Why apart: collect_list makes
an aggregation an ObjectHashAggregate, which Spark does not compile to Java; inside the wide
aggregation it made that whole aggregation ~3x slower (docs/performance.md, "Episodes out of
the main aggregation"). The small roll-up after that is batch/analysis/iaq_rollup.py's.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import reduce

import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema

from batch.analysis.iaq_settings import CATEGORIES, IaqRules
from batch.analysis.partials import LOCAL_MICROS, MICROS_PER_DAY, local_days, with_local_time, with_reading_date
from batch.analysis.statistics import MAX, READING_DATE, SUM, Part
from batch.analysis.timetable import ALL_INSTITUTES, Occupancy, Timetable, public_holiday_dates
from batch.core.contract import CLASSROOM, DEVICE, INSTITUTE, METRIC_NAMES, SENDTIME
from batch.core.session import collect_to_arrow
from batch.core.validation import EXCLUSION_REASON

_EPOCH_DATE = dt.date(1970, 1, 1)
# The metrics validate_readings must check for the IAQ tables (pir on top of the statistics').
IAQ_VALIDATED_METRICS: tuple[str, ...] = METRIC_NAMES + ("pir",)

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


def _public_holiday(calendar: str) -> Column:
    """Whether a reading's local date (from `local_micros`) is a public holiday of `calendar`."""
    days = sorted((day - _EPOCH_DATE).days for day in public_holiday_dates(calendar))
    if not days:
        return F.lit(False)
    # One SQL text, parsed by the JVM in one call: a Column per date literal cost one Py4J
    # round trip each, ~1,200 dates per calendar (HOLIDAY_YEARS), over a second per run.
    # Spark turns an IN of constants into one set membership test (InSet).
    return F.expr(f"CAST(FLOOR(`{LOCAL_MICROS}` / {MICROS_PER_DAY}) AS INT) IN ({', '.join(map(str, days))})")


def _closed(occupancy: Occupancy, local_date: Column) -> Column:
    conditions = [
        local_date.between(F.lit(closure.first_date), F.lit(closure.last_date))
        & (F.lit(True) if closure.institute == ALL_INSTITUTES else F.col(INSTITUTE) == closure.institute)
        for closure in occupancy.closures]
    holiday = _public_holiday(occupancy.public_holidays)
    for institute, calendar in reversed(occupancy.institute_public_holidays):
        holiday = F.when(F.col(INSTITUTE) == institute,
                         _public_holiday(calendar)).otherwise(holiday)
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

# The partials' columns, which batch/analysis/iaq_rollup.py rolls up.
CO2_N, CO2_SUM, CO2_MAX = "iaq_co2_n", "iaq_co2_sum", "iaq_co2_max"
CATEGORY_N = tuple(f"iaq_co2_category_{name}_n" for name in CATEGORIES)
TEMPERATURE_N, TEMPERATURE_SUM, TEMPERATURE_IN_BAND = (
    "iaq_temperature_n", "iaq_temperature_sum", "iaq_temperature_in_band_n")
PIR_N, PIR_MOTION = "iaq_pir_n", "iaq_pir_motion_n"
LONGEST_US = "iaq_longest_episode_us"
COVERED_US = "iaq_covered_us"


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


def _occupied(metric: str) -> Column:
    """The metric's value of an occupied reading, null otherwise."""
    return F.when(F.col(OCCUPIED_RANGE_END).isNotNull(), F.col(metric))


def _in_category(number: int) -> Callable[[IaqRules], Column]:
    def aggregate(rules: IaqRules) -> Column:
        co2 = _occupied("co2")
        category = _co2_category(co2 - F.lit(rules.outdoor_co2_ppm), rules.en16798_co2_excess_ppm)
        return F.count(F.when(co2.isNotNull() & (category == number), 1))
    return aggregate


def _in_band(rules: IaqRules) -> Column:
    temperature = _occupied("temperature")
    (heating_low, heating_high), (other_low, other_high) = (rules.temperature_heating_c,
                                                            rules.temperature_non_heating_c)
    in_band = F.when(_in_heating_season(F.col(READING_DATE), rules.heating_season),
                     temperature.between(heating_low, heating_high)) \
        .otherwise(temperature.between(other_low, other_high))
    return F.count(F.when(in_band, 1))


# The compliance partials, as the statistics' (batch/analysis/statistics.py Part): each an
# aggregate over a device-day's readings carrying `occupied_range_end_us` and `reading_date`
# (given the IaqRules), merged over a classroom's devices and days by its rule.
IAQ_PARTS: tuple[Part, ...] = (
    Part(CO2_N, lambda _rules: F.count(_occupied("co2")), SUM),
    Part(CO2_SUM, lambda _rules: F.sum(_occupied("co2")), SUM),
    Part(CO2_MAX, lambda _rules: F.max(_occupied("co2")), MAX),
    *[Part(name, _in_category(number), SUM) for number, name in enumerate(CATEGORY_N, start=1)],
    Part(TEMPERATURE_N, lambda _rules: F.count(_occupied("temperature")), SUM),
    Part(TEMPERATURE_SUM, lambda _rules: F.sum(_occupied("temperature")), SUM),
    Part(TEMPERATURE_IN_BAND, _in_band, SUM),
    Part(PIR_N, lambda _rules: F.count(_occupied("pir")), SUM),
    Part(PIR_MOTION, lambda _rules: F.count(F.when(_occupied("pir") == 1, 1)), SUM),
)
IAQ_PART_BY_NAME = {part.name: part for part in IAQ_PARTS}


def iaq_partial_aggregates(rules: IaqRules) -> list[Column]:
    """IAQ_PARTS' aggregate expressions, for partial_statistics' groupBy of one device and local
    day: compiled by Spark, as the statistics' own aggregates."""
    return [part.aggregate(rules).alias(part.name) for part in IAQ_PARTS]


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
            .select(*_EPISODE_KEYS, F.col(f"{folded}.longest").alias(LONGEST_US),
                    F.col(f"{folded}.covered").alias(COVERED_US)))


def device_day_episodes_table(validated_df: DataFrame, timezone: str, rules: IaqRules,
                              any_occupied_co2: bool) -> pa.Table:
    """`device_day_episodes` in the driver (a row per device-day at most, the partials'
    bound); no Spark job when the partials say no reading is an occupied CO2 one."""
    episodes_df = validated_df.transform(device_day_episodes, timezone, rules)
    if not any_occupied_co2:
        return to_arrow_schema(episodes_df.schema).empty_table()
    return collect_to_arrow(episodes_df)
