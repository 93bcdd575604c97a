"""Statistics per institute, classroom and time period.

The input is scanned once: validated readings are reduced to mergeable partial statistics
(count, mean, M2, min, max per metric) at the finest grain every grouping shares - one
device, one local day - and each published grouping is rolled up from those partials.
Variances are merged with Chan's parallel formula, which stays exact where a sum of squares
would cancel. The lists of key columns, statistics and groupings below are data: the Spark
expressions here and the published columns of the catalog (batch/catalog.py) both derive
from them.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from batch.contract import CLASSROOM, DEVICE, INSTITUTE, METRICS, SENDTIME, Metric
from batch.schema import BIGINT, DATE, DOUBLE, INTEGER, TEXT, TIMESTAMPTZ, Column as OutputColumn
from batch.schema import ColumnType
from batch.validation import (
    EXCLUSION_REASON,
    EXCLUSION_REASONS,
    REPLAY_REASON,
    REPLAYS,
    out_of_range_flag,
)

READING_DATE = "reading_date"


@dataclass(frozen=True)
class Thresholds:
    """Limits of the share statistics (configurable: CO2_HIGH_PPM, ...)."""

    co2_high_ppm: float = 1000.0
    co2_very_high_ppm: float = 1500.0
    comfort_min_c: float = 20.0
    comfort_max_c: float = 26.0


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

_N, _MEAN, _M2, _MIN, _MAX = "n", "mean", "m2", "min", "max"
_GROUP_MEAN = "group_mean"
_HITS = "hits"


def _partial(metric: str, part: str) -> str:
    return f"{metric}__{part}"


def with_reading_date(readings_df: DataFrame, timezone: str) -> DataFrame:
    """Add the local calendar date of each reading in `timezone`.

    Assumes the session time zone is UTC (batch.session sets it): from_utc_timestamp
    shifts the instant to local wall-clock time, to_date then reads that wall clock.
    """
    return readings_df.withColumn(
        READING_DATE, F.to_date(F.from_utc_timestamp(F.col(SENDTIME), timezone)))


def partial_statistics(
    validated_df: DataFrame, timezone: str, thresholds: Thresholds,
    metrics: tuple[Metric, ...] = METRICS, shares: tuple[Share, ...] = SHARES,
    extra_aggregates: Sequence[Column] = (),
) -> DataFrame:
    """Reduce validated readings to one row per reason, institute, classroom, device and local day.

    `extra_aggregates` are computed in the same aggregation (the indoor-air compliance
    partials of batch.iaq), so that the input is scanned once; they may use `reading_date`.
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
            F.avg(value).alias(_partial(metric.name, _MEAN)),
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


# --- roll-up of partials to a published grouping ----------------------------------------

def _ratio(numerator: Column, denominator: Column) -> Column:
    return F.when(denominator > 0, numerator / denominator)


def _metric_rollup(metric: str) -> list[Column]:
    n_i = F.col(_partial(metric, _N))
    mean_i = F.col(_partial(metric, _MEAN))
    n = F.sum(n_i)
    group_mean = F.col(_partial(metric, _GROUP_MEAN))
    # Chan et al.: M2 of a union = sum of the parts' M2 + n_i * (mean_i - mean)^2.
    m2 = F.sum(F.when(n_i > 0, F.col(_partial(metric, _M2)) + n_i * (mean_i - group_mean) ** 2))
    return [
        n.alias(f"{metric}_count"),
        # Computed once per group by _with_group_means_and_devices: the same in every row.
        F.max(group_mean).alias(f"{metric}_mean"),
        F.min(_partial(metric, _MIN)).alias(f"{metric}_min"),
        F.max(_partial(metric, _MAX)).alias(f"{metric}_max"),
        F.when(n > 1, F.sqrt(F.greatest(m2, F.lit(0.0)) / (n - 1))).alias(f"{metric}_stddev"),
    ]


def _with_group_means_and_devices(stacked_df: DataFrame, group_names: tuple[str, ...],
                                  metrics: tuple[Metric, ...]) -> DataFrame:
    """Add to each stacked partial its group's mean per metric and its number of devices.

    A first aggregation of a narrow projection computes them, joined back on the group keys
    (null-safe: unused keys are null). Cheaper than a window over the wide rows: no sort,
    and the join result goes straight into a code-generated hash aggregation.
    """
    # Per device first, then per group: the number of devices is the number of rows of the
    # second aggregation, without collect_set (whose aggregation Spark does not compile).
    per_device = [F.sum(_partial(metric.name, _N)).alias(_partial(metric.name, _N))
                  for metric in metrics]
    per_device += [F.sum(F.when(F.col(_partial(metric.name, _N)) > 0,
                                F.col(_partial(metric.name, _N)) * F.col(_partial(metric.name, _MEAN))))
                   .alias(_partial(metric.name, "weighted")) for metric in metrics]
    aggregates = [F.count(F.lit(1)).alias("devices")]
    for metric in metrics:
        aggregates.append(_ratio(F.sum(_partial(metric.name, "weighted")), F.sum(_partial(metric.name, _N)))
                          .alias(_partial(metric.name, _GROUP_MEAN)))
    group_df = (stacked_df.groupBy(*group_names, DEVICE).agg(*per_device)
                .groupBy(*group_names).agg(*aggregates))
    stacked = stacked_df.alias("stacked")
    # One row per published row: small enough to broadcast, and without the hint Spark would
    # first shuffle the wide stacked rows for a sort-merge join it then abandons.
    groups = F.broadcast(group_df).alias("groups")
    matches = [F.col(f"stacked.{name}").eqNullSafe(F.col(f"groups.{name}")) for name in group_names]
    return stacked.join(groups, matches).select(
        "stacked.*", *[F.col(f"groups.{name}") for name in groups.columns if name not in group_names])


GROUPING_ID = "grouping_id"
_GROUP = "group"


def _all_keys(groupings: tuple[Grouping, ...]) -> tuple[GroupKey, ...]:
    keys: dict[str, GroupKey] = {}
    for grouping in groupings:
        for key in grouping.keys:
            keys.setdefault(key.column.name, key)
    return tuple(keys.values())


def _stacked(partials_df: DataFrame, groupings: tuple[Grouping, ...],
             all_keys: tuple[GroupKey, ...], group_names: tuple[str, ...]) -> DataFrame:
    """Each included partial once per grouping, keyed by `grouping_id` and that grouping's keys.

    The keys a grouping does not use are null. One explode of an array of key structs, not a
    union of one projection per grouping: the partials are read once and the plan stays small.
    """
    key_names = {key.column.name for key in all_keys}
    derived = {key.column.name: key.derive() if key.derive is not None else F.col(key.column.name)
               for key in all_keys}
    groups = F.array(*[
        F.struct(F.lit(index).alias(GROUPING_ID),
                 *[(derived[key.column.name] if key.column.name in grouping.key_names
                    else F.lit(None).cast(key.column.type.spark)).alias(key.column.name)
                   for key in all_keys])
        for index, grouping in enumerate(groupings)])
    value_columns = [c for c in partials_df.columns if c not in key_names]
    return (partials_df.filter(F.col(EXCLUSION_REASON).isNull())
            .select(F.explode(groups).alias(_GROUP), *value_columns)
            .select(*[F.col(f"{_GROUP}.{name}").alias(name) for name in group_names],
                    *value_columns))


def rollup_all(partials_df: DataFrame, groupings: tuple[Grouping, ...],
               metrics: tuple[Metric, ...] = METRICS, shares: tuple[Share, ...] = SHARES) -> DataFrame:
    """The statistics of every grouping in one DataFrame, one row per (`grouping_id`, group).

    The included partials are stacked once per grouping, with the keys a grouping does not
    use set to null, so that the same few aggregations compute every table: a handful of
    Spark stages however many groupings there are. `grouping_table` selects one table.
    """
    all_keys = _all_keys(groupings)
    group_names = (GROUPING_ID,) + tuple(key.column.name for key in all_keys)
    aggregates = [
        F.sum("readings").alias("readings"),
        F.max("devices").alias("devices"),
        F.min("first_reading_at").alias("first_reading_at"),
        F.max("last_reading_at").alias("last_reading_at"),
    ]
    for metric in metrics:
        aggregates += _metric_rollup(metric.name)
    aggregates += [
        _ratio(F.sum(_partial(share.name, _HITS)), F.sum(_partial(share.metric, _N))).alias(share.name)
        for share in shares
    ]
    # Null keys group together, in the join (null-safe) as in the aggregations: within one
    # grouping an unused key is null in every row, so it never splits a group.
    return (_stacked(partials_df, groupings, all_keys, group_names)
            .transform(_with_group_means_and_devices, group_names, metrics)
            .groupBy(*group_names).agg(*aggregates))


def grouping_table(all_stats_df: DataFrame, groupings: tuple[Grouping, ...], grouping: Grouping,
                   columns: tuple[OutputColumn, ...]) -> DataFrame:
    """The published table of `grouping` (its catalog `columns`), from `rollup_all(partials, groupings)`."""
    return published_columns(
        all_stats_df.filter(F.col(GROUPING_ID) == groupings.index(grouping)), columns)


def published_columns(df: DataFrame, columns: tuple[OutputColumn, ...]) -> DataFrame:
    """`columns` of `df`, in the catalog's order and cast to the catalog's types."""
    # SQL text in one call: a Column per cast costs several Py4J round trips and a JSON type
    # parse each, about a second for the six tables, inside the publish phase.
    return df.selectExpr(*[
        f"CAST(`{column.name}` AS {column.type.spark.simpleString()}) AS `{column.name}`"
        for column in columns
    ])


def rollup(partials_df: DataFrame, grouping: Grouping, thresholds: Thresholds,
           metrics: tuple[Metric, ...] = METRICS, shares: tuple[Share, ...] = SHARES) -> DataFrame:
    """The published statistics of one grouping, from the partials."""
    return grouping_table(rollup_all(partials_df, (grouping,), metrics, shares), (grouping,), grouping,
                          output_columns(grouping, thresholds, metrics, shares))


# --- validation counts ------------------------------------------------------------------

def validation_counts(partials_df: DataFrame, metrics: tuple[Metric, ...] = METRICS) -> DataFrame:
    """One row: readings read, kept, excluded per reason, replays dropped, values nulled per metric."""
    included = F.col(EXCLUSION_REASON).isNull()
    counts = {
        "rows_read": F.sum("readings") + F.sum(REPLAYS),
        "rows_used": F.sum(F.when(included, F.col("readings")).otherwise(0)),
        REPLAY_REASON: F.sum(REPLAYS),
    }
    for reason in EXCLUSION_REASONS:
        counts[reason] = F.sum(F.when(F.col(EXCLUSION_REASON) == reason, F.col("readings")).otherwise(0))
    for metric in metrics:
        flag = out_of_range_flag(metric.name)
        counts[flag] = F.sum(F.when(included, F.col(flag)).otherwise(0))
    return partials_df.agg(*[F.coalesce(expr, F.lit(0)).cast("long").alias(name)
                             for name, expr in counts.items()])
