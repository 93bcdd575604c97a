"""Aggregations against hand-worked values."""
from __future__ import annotations

import datetime as dt
import random
import statistics
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_type

from batch.analysis.catalog import build_catalog
from batch.analysis.partials import partial_statistics, with_group_keys
from batch.analysis.rollup import rollup_all, rollup_in_spark, validation_counts
from batch.analysis.statistics import GROUPINGS, group_keys, output_columns
from batch.core.contract import ANALYSIS_COLUMNS, METRIC_NAMES, canonical_schema
from batch.core.thresholds import Thresholds
from batch.core.validation import validate_readings
from tests.support.collect import collect_partials, collect_to_pandas

UTC = dt.timezone.utc
COLUMNS = ("DevEui", "institute", "classroom", "sendtime", "temperature", "humidity", "co2")


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def readings(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    """Readings with the given COLUMNS; every other analysed column null."""
    df = spark.createDataFrame(rows, canonical_schema(COLUMNS))
    schema = canonical_schema(ANALYSIS_COLUMNS)
    return df.select(*[df[c] if c in COLUMNS else F.lit(None).cast(schema[c].dataType).alias(c)
                       for c in ANALYSIS_COLUMNS])


def published(partials_df: DataFrame, table: str, thresholds: Thresholds = Thresholds()) -> pd.DataFrame:
    """The rows the analysis publishes as `table` from these partials, as batch.analysis.job
    builds them: collected, rolled up, then the catalog entry's build function."""
    partials = collect_partials(partials_df, group_keys(GROUPINGS))
    return build_catalog(thresholds, "UTC").table(table).rows(rollup_all(partials, GROUPINGS)[table])


def stats(readings_df: DataFrame, table: str, timezone: str = "UTC",
          thresholds: Thresholds = Thresholds(), drop_replays: bool = False) -> pd.DataFrame:
    partials_df = (readings_df.transform(validate_readings, METRIC_NAMES, drop_replays)
                   .transform(partial_statistics, timezone, thresholds))
    return published(partials_df, table, thresholds)


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as dicts of Python values, a missing value None."""
    return df.astype(object).where(df.notna(), None).to_dict("records")


def rows(df: pd.DataFrame, columns: Sequence[str]) -> list[tuple]:
    """The rows' `columns` as tuples, in sorted order (a table's rows have no order)."""
    return sorted(tuple(row[name] for name in columns) for row in records(df))


def test_iso_weeks_are_right_at_year_boundaries(spark: SparkSession) -> None:
    df = readings(spark, [
        ("A", "i1", "3A", at(2024, 12, 29, 12), 20.0, None, None),  # Sunday: 2024-W52
        ("A", "i1", "3A", at(2024, 12, 30, 8), 21.0, None, None),   # Monday: 2025-W01
        ("A", "i1", "3A", at(2025, 1, 5, 20), 23.0, None, None),    # Sunday: 2025-W01
        ("A", "i1", "3A", at(2021, 1, 3, 12), 19.0, None, None),    # Sunday: 2020-W53
        ("A", "i1", "3A", at(2021, 1, 4, 12), 18.0, None, None),    # Monday: 2021-W01
    ])
    actual = rows(stats(df, "weekly_stats"), ("iso_year", "iso_week", "week_start", "readings",
                                              "temperature_mean"))
    assert actual == [
        (2020, 53, dt.date(2020, 12, 28), 1, 19.0),
        (2021, 1, dt.date(2021, 1, 4), 1, 18.0),
        (2024, 52, dt.date(2024, 12, 23), 1, 20.0),
        (2025, 1, dt.date(2024, 12, 30), 2, 22.0),
    ]


def test_month_boundary_depends_on_the_time_zone(spark: SparkSession) -> None:
    # 23:30 UTC on 31 January is 00:30 on 1 February in Rome (UTC+1 in winter).
    df = readings(spark, [
        ("A", "i1", "3A", at(2025, 1, 31, 23, 30), 20.0, None, None),
        ("A", "i1", "3A", at(2025, 1, 31, 12, 0), 22.0, None, None),
    ])
    columns = ("year", "month", "month_start", "readings", "temperature_mean")
    assert rows(stats(df, "classroom_monthly_stats", "UTC"), columns) == [
        (2025, 1, dt.date(2025, 1, 1), 2, 21.0)]
    assert rows(stats(df, "classroom_monthly_stats", "Europe/Rome"), columns) == [
        (2025, 1, dt.date(2025, 1, 1), 1, 22.0), (2025, 2, dt.date(2025, 2, 1), 1, 20.0)]


def test_week_buckets_use_the_local_date(spark: SparkSession) -> None:
    # Sunday 23:30 UTC is already Monday in Rome: the next ISO week.
    df = readings(spark, [("A", "i1", "3A", at(2024, 12, 29, 23, 30), 20.0, None, None)])
    utc = rows(stats(df, "classroom_weekly_stats", "UTC"), ("iso_year", "iso_week"))
    rome = rows(stats(df, "classroom_weekly_stats", "Europe/Rome"), ("iso_year", "iso_week"))
    assert utc == [(2024, 52)]
    assert rome == [(2025, 1)]


def test_same_classroom_name_in_two_institutes_are_two_groups(spark: SparkSession) -> None:
    df = readings(spark, [
        ("A", "Liceo Galilei", "3A", at(2025, 3, 3, 9), 20.0, None, 800.0),
        ("B", "Istituto Sant'Anna", "3A", at(2025, 3, 3, 9), 24.0, None, 1200.0),
        ("B", "Istituto Sant'Anna", "3A", at(2025, 3, 3, 10), 26.0, None, 1400.0),
    ])
    columns = ("institute", "classroom", "readings", "devices", "temperature_mean", "co2_max")
    assert rows(stats(df, "classroom_stats"), columns) == [
        ("Istituto Sant'Anna", "3A", 2, 1, 25.0, 1400.0), ("Liceo Galilei", "3A", 1, 1, 20.0, 800.0)]


def test_single_reading_has_null_stddev_and_unmeasured_metric_is_null(spark: SparkSession) -> None:
    df = readings(spark, [("A", "i1", "3A", at(2025, 3, 3, 9), 21.5, None, None)])
    row = records(stats(df, "classroom_stats"))[0]
    assert (row["temperature_count"], row["temperature_mean"], row["temperature_min"],
            row["temperature_max"], row["temperature_stddev"]) == (1, 21.5, 21.5, 21.5, None)
    assert (row["humidity_count"], row["humidity_mean"], row["humidity_stddev"]) == (0, None, None)
    assert row["co2_share_above_high"] is None  # no CO2 measured: no share, not zero
    assert row["temperature_share_in_comfort"] == 1.0
    assert (row["readings"], row["devices"]) == (1, 1)
    assert (row["first_reading_at"], row["last_reading_at"]) == (at(2025, 3, 3, 9), at(2025, 3, 3, 9))


def test_stddev_and_mean_merge_across_devices_and_days(spark: SparkSession) -> None:
    # 20, 22 (device A, day 1) and 24 (device B, day 2): mean 22, sample sd 2.
    df = readings(spark, [
        ("A", "i1", "3A", at(2025, 3, 3, 9), 20.0, 40.0, None),
        ("A", "i1", "3A", at(2025, 3, 3, 10), 22.0, None, None),
        ("B", "i1", "3A", at(2025, 3, 4, 9), 24.0, 50.0, None),
    ])
    row = records(stats(df, "classroom_weekly_stats"))[0]
    assert row["temperature_mean"] == pytest.approx(22.0, rel=1e-12)
    assert row["temperature_stddev"] == pytest.approx(2.0, rel=1e-12)
    assert row["humidity_stddev"] == pytest.approx(7.0710678118654755, rel=1e-12)  # sd(40, 50)
    assert (row["readings"], row["devices"], row["temperature_min"], row["temperature_max"]) == (
        3, 2, 20.0, 24.0)


def test_threshold_shares_and_configurable_thresholds(spark: SparkSession) -> None:
    df = readings(spark, [
        ("A", "i1", "3A", at(2025, 3, 3, 9), 19.9, None, 900.0),
        ("A", "i1", "3A", at(2025, 3, 3, 10), 20.0, None, 1000.0),  # not above 1000
        ("A", "i1", "3A", at(2025, 3, 3, 11), 26.0, None, 1200.0),  # 26 is in the band
        ("A", "i1", "3A", at(2025, 3, 3, 12), 26.1, None, 1600.0),
        ("A", "i1", "3A", at(2025, 3, 3, 13), None, None, None),
    ])
    row = records(stats(df, "classroom_stats"))[0]
    assert (row["co2_share_above_high"], row["co2_share_above_very_high"],
            row["temperature_share_in_comfort"]) == (0.5, 0.25, 0.5)
    custom = Thresholds(co2_high_ppm=850, co2_very_high_ppm=1100, comfort_min_c=19, comfort_max_c=21)
    row = records(stats(df, "classroom_stats", thresholds=custom))[0]
    assert (row["co2_share_above_high"], row["co2_share_above_very_high"],
            row["temperature_share_in_comfort"]) == (1.0, 0.5, 0.5)


def test_out_of_range_values_are_nulled_for_that_metric_only(spark: SparkSession) -> None:
    df = readings(spark, [
        ("A", "i1", "3A", at(2025, 3, 3, 9), 21.0, 180.0, -5.0),        # humidity, co2 impossible
        ("A", "i1", "3A", at(2025, 3, 3, 10), float("nan"), 45.0, 600.0),  # NaN temperature
        ("A", "i1", "3A", at(2025, 3, 3, 11), 85.0, 100.0, 40000.0),    # range limits are valid
    ])
    row = records(stats(df, "classroom_stats"))[0]
    assert (row["readings"], row["temperature_count"], row["temperature_mean"]) == (3, 2, 53.0)
    assert (row["humidity_count"], row["humidity_min"], row["humidity_max"]) == (2, 45.0, 100.0)
    assert (row["co2_count"], row["co2_min"], row["co2_max"]) == (2, 600.0, 40000.0)
    partials = df.transform(validate_readings, METRIC_NAMES, False).transform(
        partial_statistics, "UTC", Thresholds())
    counts = validation_counts(collect_to_pandas(partials))
    assert (counts["temperature_out_of_range"], counts["humidity_out_of_range"],
            counts["co2_out_of_range"], counts["tvoc_out_of_range"]) == (1, 1, 1, 0)


def test_excluded_readings_are_counted_by_reason_not_aggregated(spark: SparkSession) -> None:
    df = readings(spark, [
        ("A", "i1", "3A", at(2025, 3, 3, 9), 21.0, None, None),
        ("A", "i1", "3A", None, 30.0, None, None),                 # no sendtime
        (None, "i1", "3A", at(2025, 3, 3, 9), 30.0, None, None),   # no device
        ("B", None, "3A", at(2025, 3, 3, 9), 30.0, None, None),    # unregistered
        ("C", "i1", None, at(2025, 3, 3, 9), 30.0, None, None),    # unregistered
        ("D", None, None, None, 30.0, None, None),                 # first reason wins
    ])
    partials = df.transform(validate_readings, METRIC_NAMES, False).transform(
        partial_statistics, "UTC", Thresholds())
    counts = validation_counts(collect_to_pandas(partials))
    assert {k: counts[k] for k in ("rows_read", "rows_used", "missing_sendtime", "missing_device",
                                   "unregistered_device", "replayed_reading")} == {
        "rows_read": 6, "rows_used": 1, "missing_sendtime": 2, "missing_device": 1,
        "unregistered_device": 2, "replayed_reading": 0}
    assert rows(published(partials, "classroom_stats"), ("institute", "readings", "temperature_max")) == [
        ("i1", 1, 21.0)]


def test_replays_are_dropped_only_when_asked(spark: SparkSession) -> None:
    reading = ("A", "i1", "3A", at(2025, 3, 3, 9), 21.0, None, None)
    df = readings(spark, [reading, reading, reading, ("A", "i1", "3A", at(2025, 3, 3, 10), 23.0, None, None),
                          ("A", "i1", "3A", None, 30.0, None, None), ("A", "i1", "3A", None, 30.0, None, None)])
    kept = records(stats(df, "classroom_stats"))[0]
    assert (kept["readings"], kept["temperature_mean"]) == (4, 21.5)
    deduplicated = records(stats(df, "classroom_stats", drop_replays=True))[0]
    assert (deduplicated["readings"], deduplicated["temperature_mean"]) == (2, 22.0)
    partials = df.transform(validate_readings, METRIC_NAMES, True).transform(
        partial_statistics, "UTC", Thresholds())
    counts = validation_counts(collect_to_pandas(partials))
    # Readings without sendtime are never replays of each other: both stay, both excluded.
    assert (counts["rows_read"], counts["replayed_reading"], counts["missing_sendtime"],
            counts["rows_used"]) == (6, 2, 2, 2)


def test_rolled_up_stddev_is_exact_against_a_direct_computation(spark: SparkSession) -> None:
    # Values with a large common offset, spread over many devices and days: a naive sum of
    # squares loses most digits here, Chan's merge must not.
    rng = random.Random(5)
    generated = [(f"D{rng.randrange(7)}", "i1", "3A",
             at(2025, 3, 1 + rng.randrange(20), rng.randrange(24)),
             None, None, 39_000.0 + rng.random() / 1000) for _ in range(400)]
    row = records(stats(readings(spark, generated), "classroom_stats"))[0]
    values = [r[6] for r in generated]
    assert row["co2_mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert row["co2_stddev"] == pytest.approx(statistics.stdev(values), rel=1e-9)


def test_output_columns_match_the_published_dataframes(spark: SparkSession) -> None:
    # The Arrow type of each published column is the one the sink's COPY declares for the
    # catalog column (batch.analysis.publish: PySpark's Arrow type of its Spark type).
    df = readings(spark, [("A", "i1", "3A", at(2025, 3, 3, 9), 21.0, None, None)])
    for grouping in GROUPINGS:
        table = stats(df, grouping.table)
        assert [(f.name, f.type) for f in pa.Schema.from_pandas(table, preserve_index=False)] == [
            (c.name, to_arrow_type(c.type.spark)) for c in output_columns(grouping, Thresholds())]


def test_spark_rollup_equals_the_driver_rollup(spark: SparkSession) -> None:
    # The scale path (batch.analysis.rollup.rollup_in_spark: the parts merged by Spark over
    # partials that never reach the driver) against the driver's roll-up of the same partials,
    # every grouping: ISO weeks across a year end, months, values missing, readings excluded.
    rng = random.Random(22)
    rows = []
    for _ in range(600):
        institute = rng.choice(["i1", "i2"])
        classroom = rng.choice(["1A", "2B", None])  # None: excluded (no classroom)
        sent = at(2024, 12, 20, 7) + dt.timedelta(minutes=rng.randrange(60 * 24 * 60))
        rows.append((f"{institute}-{classroom}-{rng.randrange(2)}", institute, classroom, sent,
                     rng.choice([None, rng.uniform(15, 28)]), rng.uniform(20, 70),
                     rng.choice([None, rng.uniform(400, 3000), 50_000.0])))  # 50,000: out of range
    partials_df = with_group_keys(
        readings(spark, rows).transform(validate_readings, METRIC_NAMES, False)
        .transform(partial_statistics, "Europe/Rome", Thresholds()), group_keys(GROUPINGS)).cache()
    driver = rollup_all(collect_to_pandas(partials_df), GROUPINGS)
    for grouping in GROUPINGS:
        keys = list(grouping.key_names)
        expected = driver[grouping.table].sort_values(keys).reset_index(drop=True)
        actual = rollup_in_spark(partials_df, grouping).sort_values(keys).reset_index(drop=True)
        assert list(actual.columns) == list(expected.columns) == [
            column.name for column in output_columns(grouping, Thresholds())]
        assert len(expected) > 1
        for name in expected.columns:
            left, right = expected[name], actual[name]
            if pd.api.types.is_datetime64_any_dtype(left):
                assert (pd.to_datetime(left, utc=True) == pd.to_datetime(right, utc=True)).all(), name
            elif pd.api.types.is_float_dtype(left):
                assert left.isna().equals(right.isna()), name
                assert right[left.notna()].to_numpy() == pytest.approx(left[left.notna()].to_numpy(),
                                                                      rel=1e-9), name
            else:
                assert left.astype(object).tolist() == right.astype(object).tolist(), name
    partials_df.unpersist()
