"""Validation of raw readings: nothing is dropped silently.

A reading that cannot be attributed (no instant, no device, no registered classroom) is
flagged with the reason it is excluded from the statistics; an impossible metric value is
nulled ("not measured") for that metric only and flagged; exact replays of an uplink may be
collapsed. The flags travel with the rows so that the aggregation counts them in the same
pass over the input.
"""
from __future__ import annotations

from typing import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from batch.core.contract import CLASSROOM, DEVICE, INSTITUTE, RAW_COLUMNS_BY_NAME, SENDTIME

EXCLUSION_REASON = "exclusion_reason"
REPLAYS = "replays"

# Ordered: a reading with several defects is counted under the first that applies, so the
# counts per reason add up to the number of excluded readings.
# Conditions are built lazily: Column objects need an active SparkContext.
EXCLUSION_RULES: tuple[tuple[str, Callable[[], Column]], ...] = (
    ("missing_sendtime", lambda: F.col(SENDTIME).isNull()),
    ("missing_device", lambda: F.col(DEVICE).isNull()),
    ("unregistered_device", lambda: F.col(INSTITUTE).isNull() | F.col(CLASSROOM).isNull()),
)
EXCLUSION_REASONS: tuple[str, ...] = tuple(reason for reason, _ in EXCLUSION_RULES)
REPLAY_REASON = "replayed_reading"


def out_of_range_flag(metric: str) -> str:
    return f"{metric}_out_of_range"


def flag_exclusions(readings_df: DataFrame) -> DataFrame:
    """Add `exclusion_reason`: null for a reading the statistics use, else why it is excluded."""
    reasons = [F.when(condition(), F.lit(name)) for name, condition in EXCLUSION_RULES]
    return readings_df.withColumn(EXCLUSION_REASON, F.coalesce(*reasons))


def drop_replays(readings_df: DataFrame) -> DataFrame:
    """Keep one reading per (`DevEui`, `sendtime`); `replays` counts the copies dropped.

    Readings lacking either key are never collapsed: they are not replays of one another.
    The kept copy is the smallest row, so reruns keep the same one.
    """
    data_columns = [c for c in readings_df.columns if c != REPLAYS]
    incomplete_key = F.col(DEVICE).isNull() | F.col(SENDTIME).isNull()
    keyed_df = readings_df.withColumn(
        "_unkeyed_row", F.when(incomplete_key, F.monotonically_increasing_id()))
    return (
        keyed_df.groupBy(DEVICE, SENDTIME, "_unkeyed_row")
        .agg(F.min(F.struct(*[F.col(c).alias(c) for c in data_columns])).alias("_kept"),
             (F.count(F.lit(1)) - 1).alias(REPLAYS))
        .select(*[F.col(f"_kept.{c}").alias(c) for c in data_columns], REPLAYS)
    )


def null_out_of_range(readings_df: DataFrame, metrics: tuple[str, ...]) -> DataFrame:
    """Null every metric value outside the contract's physical range (NaN included), flagging it."""
    df = readings_df
    for metric in metrics:
        valid = _within_range(metric)
        value = F.col(metric)
        df = df.withColumn(out_of_range_flag(metric),
                           F.when(value.isNotNull() & ~valid, 1).otherwise(0))
        df = df.withColumn(metric, F.when(valid, value))
    return df


def _within_range(metric: str) -> Column:
    spec = RAW_COLUMNS_BY_NAME[metric]
    value = F.col(metric)
    # NaN compares greater than every number in Spark, so it is rejected explicitly.
    condition = ~F.isnan(value) if spec.spark_type.typeName() == "double" else F.lit(True)
    if spec.lower is not None:
        condition = condition & (value >= F.lit(spec.lower))
    if spec.upper is not None:
        condition = condition & (value <= F.lit(spec.upper))
    return condition


def validate_readings(
    readings_df: DataFrame, metrics: tuple[str, ...], drop_replayed: bool
) -> DataFrame:
    """Flag exclusions, optionally collapse replays, null impossible values."""
    df = readings_df.transform(flag_exclusions)
    df = df.transform(drop_replays) if drop_replayed else df.withColumn(REPLAYS, F.lit(0))
    return df.transform(null_out_of_range, metrics)
