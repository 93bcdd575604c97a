"""The statistics published per institute, classroom and time period, as data: group keys,
statistics, shares and groupings, from which the partials (batch/analysis/partials.py, Spark),
their roll-up in the driver (batch/analysis/rollup.py; docs/analysis.md, "Aggregate") and the
catalog's published columns all derive."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

from batch.core.contract import CLASSROOM, INSTITUTE, METRICS, Metric
from batch.core.schema import BIGINT, DATE, DOUBLE, INTEGER, TEXT, TIMESTAMPTZ, ColumnType
from batch.core.schema import Column as OutputColumn
from batch.core.thresholds import Thresholds

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


GROUP_COLUMNS = (
    OutputColumn("readings", BIGINT, "number of readings used (excluded readings are counted in "
                 "batch_runs)", nullable=False),
    OutputColumn("devices", BIGINT, "number of distinct devices (DevEui) that sent them", nullable=False),
    OutputColumn("first_reading_at", TIMESTAMPTZ, "time of the first reading", nullable=False),
    OutputColumn("last_reading_at", TIMESTAMPTZ, "time of the last reading", nullable=False),
)


def output_columns(grouping: Grouping, thresholds: Thresholds,
                   metrics: tuple[Metric, ...] = METRICS) -> tuple[OutputColumn, ...]:
    return (
        tuple(key.column for key in grouping.keys) + GROUP_COLUMNS
        + tuple(OutputColumn(f"{metric.name}_{stat.suffix}", stat.column_type,
                             stat.comment.format(description=metric.description, unit=metric.unit),
                             unit=metric.unit if stat.in_unit else "", nullable=stat.nullable)
                for metric in metrics for stat in METRIC_STATISTICS)
        + tuple(OutputColumn(share.name, DOUBLE, share.describe(thresholds), unit="share 0-1")
                for share in SHARES)
    )


def group_keys(groupings: tuple[Grouping, ...]) -> tuple[GroupKey, ...]:
    """Every key of `groupings`, once each (the groupings share the key objects)."""
    return tuple({key.column.name: key for grouping in groupings for key in grouping.keys}.values())


# --- the columns of the partial statistics ------------------------------------------------
#
# One column per part of a statistic at the finest grain: batch/analysis/partials.py computes
# them, batch/analysis/rollup.py merges them.

COUNT_PART, SUM_PART, M2_PART, MIN_PART, MAX_PART = "n", "sum", "m2", "min", "max"
HITS_PART = "hits"  # a share's values meeting its condition


def partial_column(statistic: str, part: str) -> str:
    """The partials' column holding `part` of a metric's or a share's statistic."""
    return f"{statistic}__{part}"
