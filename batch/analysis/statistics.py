"""Statistics per institute, classroom and time period.

The input is scanned once: validated readings are reduced to mergeable partial statistics
(count, sum, M2, min, max per metric) at the finest grain every grouping and the indoor-air
compliance tables share - one device, one local day - and each published grouping is
rolled up from those partials, in the driver.
Variances are merged with Chan's parallel formula, which stays exact where a sum of squares
would cancel. The lists of key columns, statistics and groupings below are data: the Spark
expressions here and the published columns of the catalog (batch/analysis/catalog.py) both derive
from them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch.core.contract import CLASSROOM, DEVICE, INSTITUTE, METRICS, SENDTIME, Metric
from batch.core.schema import BIGINT, DATE, DOUBLE, INTEGER, TEXT, TIMESTAMPTZ, Column as OutputColumn
from batch.core.schema import ColumnType
from batch.core.session import collect_to_pandas, session_conf
from batch.core.thresholds import Thresholds
from batch.core.validation import (
    EXCLUSION_REASON,
    EXCLUSION_REASONS,
    REPLAY_REASON,
    REPLAYS,
    out_of_range_flag,
)

READING_DATE = "reading_date"


# --- group keys -------------------------------------------------------------------------

def _week_start(date: Column) -> Column:
    # dayofweek: Sunday = 1 ... Saturday = 7; ISO weeks start on Monday.
    return F.date_sub(date, (F.dayofweek(date) + 5) % 7)


def _iso_thursday(date: Column) -> Column:
    # An ISO week belongs to the ISO year of its Thursday.
    return F.date_add(_week_start(date), 3)


@dataclass(frozen=True)
class GroupKey:
    column: OutputColumn
    # Derives the key from the partial statistics row (None: the column is carried as is).
    derive: Callable[[], Column] | None = None


def _key(name: str, column_type: ColumnType, comment: str,
         derive: Callable[[], Column] | None = None) -> GroupKey:
    return GroupKey(OutputColumn(name, column_type, comment, nullable=False), derive)


# "local" in these comments is BATCH_TIMEZONE; the catalog's table comments name the zone.
INSTITUTE_KEY = _key(INSTITUTE, TEXT, "school, as named in the sensor registry")
CLASSROOM_KEY = _key(CLASSROOM, TEXT,
                     "classroom inside the institute (names are unique per institute only)")
ISO_YEAR_KEY = _key("iso_year", INTEGER, "ISO-8601 week-numbering year",
                    lambda: F.year(_iso_thursday(F.col(READING_DATE))))
ISO_WEEK_KEY = _key("iso_week", INTEGER, "ISO-8601 week number (1-53) within iso_year",
                    lambda: F.floor((F.dayofyear(_iso_thursday(F.col(READING_DATE))) - 1) / 7)
                    .cast("int") + 1)
WEEK_START_KEY = _key("week_start", DATE, "Monday the ISO week starts on (local date)",
                      lambda: _week_start(F.col(READING_DATE)))
YEAR_KEY = _key("year", INTEGER, "calendar year (local time)",
                lambda: F.year(F.col(READING_DATE)))
MONTH_KEY = _key("month", INTEGER, "calendar month 1-12 (local time)",
                 lambda: F.month(F.col(READING_DATE)))
MONTH_START_KEY = _key("month_start", DATE, "first day of the month (local date)",
                       lambda: F.trunc(F.col(READING_DATE), "month"))

CLASSROOM_KEYS = (INSTITUTE_KEY, CLASSROOM_KEY)
WEEK_KEYS = (ISO_YEAR_KEY, ISO_WEEK_KEY, WEEK_START_KEY)
MONTH_KEYS = (YEAR_KEY, MONTH_KEY, MONTH_START_KEY)


@dataclass(frozen=True)
class Grouping:
    """One published table: the statistics of every group of readings sharing `keys`."""

    table: str
    keys: tuple[GroupKey, ...]
    description: str

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(key.column.name for key in self.keys)


GROUPINGS: tuple[Grouping, ...] = (
    Grouping("classroom_stats", CLASSROOM_KEYS,
             "Indoor-air statistics per classroom over the whole period of data"),
    Grouping("classroom_weekly_stats", CLASSROOM_KEYS + WEEK_KEYS,
             "Indoor-air statistics per classroom and ISO week"),
    Grouping("classroom_monthly_stats", CLASSROOM_KEYS + MONTH_KEYS,
             "Indoor-air statistics per classroom and calendar month"),
    Grouping("institute_weekly_stats", (INSTITUTE_KEY,) + WEEK_KEYS,
             "Indoor-air statistics per institute and ISO week (all its classrooms)"),
    Grouping("institute_monthly_stats", (INSTITUTE_KEY,) + MONTH_KEYS,
             "Indoor-air statistics per institute and calendar month (all its classrooms)"),
    Grouping("weekly_stats", WEEK_KEYS,
             "Indoor-air statistics of all institutes together per ISO week"),
)


# --- statistics -------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricStatistic:
    suffix: str
    column_type: ColumnType
    nullable: bool
    comment: str  # formatted with the metric's description and unit
    in_unit: bool = True  # False: a count, not a value in the metric's unit


METRIC_STATISTICS: tuple[MetricStatistic, ...] = (
    MetricStatistic("count", BIGINT, False,
                    "number of valid values of {description} (nulls and impossible values "
                    "excluded)", in_unit=False),
    MetricStatistic("mean", DOUBLE, True, "mean {description}, {unit}"),
    MetricStatistic("min", DOUBLE, True, "lowest {description}, {unit}"),
    MetricStatistic("max", DOUBLE, True, "highest {description}, {unit}"),
    MetricStatistic("stddev", DOUBLE, True,
                    "sample standard deviation of {description}, {unit} (null with fewer than 2 values)"),
)


@dataclass(frozen=True)
class Share:
    """The share (0-1) of a metric's valid values meeting a condition on the thresholds."""

    name: str
    metric: str
    condition: Callable[[Column, Thresholds], Column]
    describe: Callable[[Thresholds], str]


SHARES: tuple[Share, ...] = (
    Share("co2_share_above_high", "co2", lambda value, t: value > t.co2_high_ppm,
          lambda t: f"share (0-1) of CO2 values above {t.co2_high_ppm:g} ppm (CO2_HIGH_PPM); "
                    "null without CO2 values"),
    Share("co2_share_above_very_high", "co2", lambda value, t: value > t.co2_very_high_ppm,
          lambda t: f"share (0-1) of CO2 values above {t.co2_very_high_ppm:g} ppm "
                    "(CO2_VERY_HIGH_PPM); null without CO2 values"),
    Share("temperature_share_in_comfort", "temperature",
          lambda value, t: value.between(t.comfort_min_c, t.comfort_max_c),
          lambda t: f"share (0-1) of temperature values within {t.comfort_min_c:g}-"
                    f"{t.comfort_max_c:g} °C, bounds included (COMFORT_MIN_C, COMFORT_MAX_C); "
                    "null without temperature values"),
)


def metric_columns(metric: Metric) -> tuple[OutputColumn, ...]:
    return tuple(
        OutputColumn(f"{metric.name}_{stat.suffix}", stat.column_type,
                     stat.comment.format(description=metric.description, unit=metric.unit),
                     unit=metric.unit if stat.in_unit else "", nullable=stat.nullable)
        for stat in METRIC_STATISTICS)


def group_columns() -> tuple[OutputColumn, ...]:
    return (
        OutputColumn("readings", BIGINT,
                     "number of readings used (excluded readings are counted in batch_runs)",
                     nullable=False),
        OutputColumn("devices", BIGINT, "number of distinct devices (DevEui) that sent them",
                     nullable=False),
        OutputColumn("first_reading_at", TIMESTAMPTZ, "time of the first reading", nullable=False),
        OutputColumn("last_reading_at", TIMESTAMPTZ, "time of the last reading", nullable=False),
    )


def share_columns(thresholds: Thresholds, shares: tuple[Share, ...] = SHARES) -> tuple[OutputColumn, ...]:
    return tuple(OutputColumn(share.name, DOUBLE, share.describe(thresholds), unit="share 0-1")
                 for share in shares)


def output_columns(grouping: Grouping, thresholds: Thresholds,
                   metrics: tuple[Metric, ...] = METRICS,
                   shares: tuple[Share, ...] = SHARES) -> tuple[OutputColumn, ...]:
    """Every column of `grouping`'s table, in order."""
    return (
        tuple(key.column for key in grouping.keys)
        + group_columns()
        + tuple(column for metric in metrics for column in metric_columns(metric))
        + share_columns(thresholds, shares)
    )


# --- partial statistics at the finest grain ---------------------------------------------

_N, _SUM, _M2, _MIN, _MAX = "n", "sum", "m2", "min", "max"
_HITS = "hits"


def _partial(metric: str, part: str) -> str:
    return f"{metric}__{part}"


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


def partial_statistics(
    validated_df: DataFrame, timezone: str, thresholds: Thresholds,
    metrics: tuple[Metric, ...] = METRICS, shares: tuple[Share, ...] = SHARES,
    extra_aggregates: Sequence[Column] = (),
) -> DataFrame:
    """Reduce validated readings to one row per reason, institute, classroom, device and local day.

    `extra_aggregates` are computed in the same aggregation (the indoor-air compliance
    partials of batch.analysis.iaq), so that the input is scanned once; they may use `reading_date`.
    """
    aggregates = [
        F.count(F.lit(1)).alias("readings"),
        F.sum(REPLAYS).cast("long").alias(REPLAYS),
        F.min(SENDTIME).alias("first_reading_at"),
        F.max(SENDTIME).alias("last_reading_at"),
    ]
    for metric in metrics:
        value = F.col(metric.name)
        n = F.count(value)
        aggregates += [
            n.alias(_partial(metric.name, _N)),
            # The mean is sum / n, as Spark's avg computes it, without avg's own buffers.
            F.sum(value).alias(_partial(metric.name, _SUM)),
            # var_pop is Spark's stable central-moment aggregate; times n it is M2.
            (F.var_pop(value) * n).alias(_partial(metric.name, _M2)),
            F.min(value).alias(_partial(metric.name, _MIN)),
            F.max(value).alias(_partial(metric.name, _MAX)),
            F.sum(out_of_range_flag(metric.name)).cast("long").alias(out_of_range_flag(metric.name)),
        ]
    aggregates += [
        F.count(F.when(share.condition(F.col(share.metric), thresholds), 1))
        .alias(_partial(share.name, _HITS))
        for share in shares
    ]
    aggregates += extra_aggregates
    return (
        validated_df.transform(with_reading_date, timezone)
        .groupBy(EXCLUSION_REASON, INSTITUTE, CLASSROOM, DEVICE, READING_DATE)
        .agg(*aggregates)
    )


# --- roll-up of partials to every published grouping, on the driver ---------------------
#
# The partials are few (one row per device and local day: groups, not readings) and every
# published row is a sum, minimum or maximum over them: the roll-up runs in the driver on
# the partials collected once through Arrow, instead of as more distributed Spark stages
# and jobs whose fixed cost exceeded the work. Its memory is bounded by the number of
# partial rows - at most device-days of data x (1 + exclusion reasons), about 400,000 rows
# of ~70 columns (~300 MiB in pandas, the compliance sums included) for 1,000 devices over
# two school years - and does not grow with the number of readings.

def group_keys(groupings: tuple[Grouping, ...]) -> tuple[GroupKey, ...]:
    """Every key of `groupings`, once each."""
    keys: dict[str, GroupKey] = {}
    for grouping in groupings:
        for key in grouping.keys:
            keys.setdefault(key.column.name, key)
    return tuple(keys.values())


def with_group_keys(partials_df: DataFrame, keys: tuple[GroupKey, ...]) -> DataFrame:
    """Add every one of `keys` derived from the local date (ISO week, month...).

    Derived in Spark, where the key definitions live, before the partials leave it.
    """
    derived = {key.column.name: key for key in keys if key.derive is not None}
    return partials_df.select("*", *[key.derive().alias(name) for name, key in derived.items()])


def collect_partials(partials_df: DataFrame, keys: tuple[GroupKey, ...]) -> pd.DataFrame:
    """The partials with the group `keys` derived from their date, in the driver (Arrow)."""
    return collect_to_pandas(partials_df.transform(with_group_keys, keys))


def _values(partials: pd.DataFrame, name: str) -> np.ndarray:
    """A partial column as doubles, missing values (a metric without values) as 0."""
    return partials[name].to_numpy(dtype=float, na_value=0.0)


def _rollup_grouping(included: pd.DataFrame, grouping: Grouping, metrics: tuple[Metric, ...],
                     shares: tuple[Share, ...]) -> pd.DataFrame:
    """One grouping's statistics from the included partials: one row per group."""
    keys = list(grouping.key_names)
    codes = included.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    groups = int(codes.max()) + 1 if len(codes) else 0
    by_group = included.groupby(codes, sort=True)
    result = by_group[keys].first()
    result["readings"] = by_group["readings"].sum()
    result["devices"] = by_group[DEVICE].nunique()
    result["first_reading_at"] = by_group["first_reading_at"].min()
    result["last_reading_at"] = by_group["last_reading_at"].max()
    lowest = by_group[[_partial(metric.name, _MIN) for metric in metrics]].min()
    highest = by_group[[_partial(metric.name, _MAX) for metric in metrics]].max()
    totals = {name: np.bincount(codes, weights=_values(included, name), minlength=groups)
              for name in [_partial(share.name, _HITS) for share in shares]}
    for metric in metrics:
        n_i = _values(included, _partial(metric.name, _N))
        sum_i = _values(included, _partial(metric.name, _SUM))
        n = np.bincount(codes, weights=n_i, minlength=groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, np.bincount(codes, weights=sum_i, minlength=groups) / n, np.nan)
            # Chan et al.: M2 of a union = sum of the parts' M2 + n_i * (mean_i - mean)^2.
            spread = np.where(n_i > 0, _values(included, _partial(metric.name, _M2))
                              + n_i * (sum_i / n_i - mean[codes]) ** 2, 0.0)
            m2 = np.bincount(codes, weights=spread, minlength=groups)
            stddev = np.where(n > 1, np.sqrt(np.maximum(m2, 0.0) / (n - 1)), np.nan)
        result[f"{metric.name}_count"] = n.astype(np.int64)
        result[f"{metric.name}_mean"] = mean
        result[f"{metric.name}_min"] = lowest[_partial(metric.name, _MIN)]
        result[f"{metric.name}_max"] = highest[_partial(metric.name, _MAX)]
        result[f"{metric.name}_stddev"] = stddev
        totals[_partial(metric.name, _N)] = n
    for share in shares:
        n = totals[_partial(share.metric, _N)]
        with np.errstate(invalid="ignore", divide="ignore"):
            result[share.name] = np.where(n > 0, totals[_partial(share.name, _HITS)] / n, np.nan)
    return result.reset_index(drop=True)


def included_partials(partials: pd.DataFrame) -> pd.DataFrame:
    """The rows of `collect_partials`' frame that the statistics use (no exclusion reason)."""
    return partials[partials[EXCLUSION_REASON].isna()]


def rollup_all(partials: pd.DataFrame, groupings: tuple[Grouping, ...],
               metrics: tuple[Metric, ...] = METRICS,
               shares: tuple[Share, ...] = SHARES) -> dict[str, pd.DataFrame]:
    """The statistics of every grouping, by table name, from `collect_partials`' frame."""
    included = included_partials(partials)
    return {grouping.table: _rollup_grouping(included, grouping, metrics, shares)
            for grouping in groupings}


def grouping_table(all_stats: Mapping[str, pd.DataFrame], grouping: Grouping,
                   columns: tuple[OutputColumn, ...]) -> pd.DataFrame:
    """The published table of `grouping` (its catalog `columns`, in order), from `rollup_all`."""
    return all_stats[grouping.table][[column.name for column in columns]]


def rollup(partials_df: DataFrame, grouping: Grouping, thresholds: Thresholds,
           metrics: tuple[Metric, ...] = METRICS, shares: tuple[Share, ...] = SHARES) -> DataFrame:
    """The published statistics of one grouping, from the partials, as a Spark DataFrame."""
    columns = output_columns(grouping, thresholds, metrics, shares)
    table = grouping_table(rollup_all(collect_partials(partials_df, grouping.keys), (grouping,),
                                      metrics, shares), grouping, columns)
    schema = T.StructType([T.StructField(column.name, column.type.spark, True) for column in columns])
    spark = partials_df.sparkSession
    # Through Arrow, NaN (pandas' missing value) arrives as null.
    with session_conf(spark, {"spark.sql.execution.arrow.pyspark.enabled": "true"}):
        return spark.createDataFrame(table, schema)


# --- validation counts ------------------------------------------------------------------

def validation_counts(partials: pd.DataFrame, metrics: tuple[Metric, ...] = METRICS) -> dict[str, int]:
    """Readings read, kept, excluded per reason, replays dropped, values nulled per metric."""
    reason = partials[EXCLUSION_REASON]
    included = reason.isna()
    readings = partials["readings"].fillna(0)
    replays = int(partials[REPLAYS].fillna(0).sum())
    counts = {
        "rows_read": int(readings.sum()) + replays,
        "rows_used": int(readings[included].sum()),
        REPLAY_REASON: replays,
    }
    for name in EXCLUSION_REASONS:
        counts[name] = int(readings[reason == name].sum())
    for metric in metrics:
        flag = out_of_range_flag(metric.name)
        counts[flag] = int(partials.loc[included, flag].fillna(0).sum())
    return counts
