"""The partial statistics, in Spark: validated readings reduced to one row per exclusion reason,
institute, classroom, device and local day (the specs: batch/analysis/statistics.py), and
collected to the driver, where batch/analysis/rollup.py rolls them up."""
from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from batch.analysis.statistics import READING_DATE, GroupKey, Thresholds, partial_parts
from batch.core.contract import CLASSROOM, DEVICE, INSTITUTE, METRICS, SENDTIME, Metric
from batch.core.validation import EXCLUSION_REASON

LOCAL_MICROS = "local_micros"
MICROS_PER_DAY = 86_400_000_000


def with_local_time(readings_df: DataFrame, timezone: str) -> DataFrame:
    """Add `local_micros`: each reading's wall-clock time in `timezone`, as µs since 1970-01-01
    00:00 of that wall clock (unchanged if the column is there).

    The zone conversion is the costly step of every local key (date, weekday, time of day):
    done here once per reading, every key then derives from this column with integer
    arithmetic (`local_days`). Spark does not share a conversion repeated across the
    conditions of a CASE or through a filter it pushes down: the timetable's expression
    evaluated it up to 78 times per reading.
    Assumes the session time zone is UTC (batch.core.session sets it): from_utc_timestamp shifts
    the instant to local wall-clock time.
    """
    if LOCAL_MICROS in readings_df.columns:
        return readings_df
    return readings_df.withColumn(
        LOCAL_MICROS, F.unix_micros(F.from_utc_timestamp(F.col(SENDTIME), timezone)))


def local_days(local_micros: Column) -> Column:
    """Whole local days since 1970-01-01 (floor: exact below 2^53 µs, ~285 years)."""
    return F.floor(local_micros / F.lit(MICROS_PER_DAY))


def with_reading_date(readings_df: DataFrame, timezone: str) -> DataFrame:
    """Add `reading_date`, the local calendar date of each reading in `timezone`."""
    with_local = readings_df.transform(with_local_time, timezone)
    return with_local.withColumn(
        READING_DATE, F.date_from_unix_date(local_days(F.col(LOCAL_MICROS)).cast("int")))


def partial_statistics(validated_df: DataFrame, timezone: str, thresholds: Thresholds,
                       metrics: tuple[Metric, ...] = METRICS, extra_aggregates: Sequence[Column] = (),
                       extra_keys: Sequence[str] = ()) -> DataFrame:
    """Reduce validated readings to one row per reason, institute, classroom, device and local day.

    `extra_aggregates` are computed in the same aggregation (the indoor-air compliance
    partials of batch.analysis.iaq_partials, the sensor health's of
    batch.analysis.health_partials), so that the input is scanned once; they may use
    `reading_date`. `extra_keys` are columns constant per device and day carried as group keys
    (the device `profile`: a string aggregate would turn the hash aggregation into a sort-based
    one).
    """
    aggregates = [part.aggregate(thresholds).alias(part.name) for part in partial_parts(metrics)]
    aggregates += extra_aggregates
    return (
        validated_df.transform(with_reading_date, timezone)
        .groupBy(EXCLUSION_REASON, INSTITUTE, CLASSROOM, DEVICE, READING_DATE, *extra_keys)
        .agg(*aggregates)
    )


def with_group_keys(partials_df: DataFrame, keys: tuple[GroupKey, ...]) -> DataFrame:
    """The partials with every one of `keys` derived from the local date (ISO week, month...):
    derived in Spark, where the key definitions live."""
    derived = {key.column.name: key for key in keys if key.derive is not None}
    return partials_df.select("*", *[key.derive().alias(name) for name, key in derived.items()])
