"""The statistics published per institute, classroom and time period, as data: group keys,
groupings and one Measure per published column, from which the partials (batch/analysis/
partials.py, Spark), their roll-up (batch/analysis/rollup.py; docs/analysis.md, "Aggregate")
and the catalog's published columns all derive."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyspark.sql import Column
from pyspark.sql import functions as F

from batch.core.contract import CLASSROOM, DEVICE, INSTITUTE, METRICS, SENDTIME, Metric
from batch.core.schema import BIGINT, DATE, DOUBLE, INTEGER, TEXT, TIMESTAMPTZ, ColumnType
from batch.core.schema import Column as OutputColumn
from batch.core.thresholds import Thresholds
from batch.core.validation import REPLAYS, out_of_range_flag

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


# --- statistics: one Measure per published column ---------------------------------------
#
# A Measure names the partial columns it is computed from (Parts: a Spark aggregate over the
# validated readings of a device-day, and a rule merging them across device-days) and how its
# value follows from their merged values (`finish`). partial_statistics (batch/analysis/
# partials.py) computes the parts, batch/analysis/rollup.py merges and finishes them (in the
# driver, or in Spark over the state), the catalog takes the published columns from here.

SUM, MIN, MAX, DISTINCT = "sum", "min", "max", "distinct"
COUNT_PART, SUM_PART, M2_PART, MIN_PART, MAX_PART = "n", "sum", "m2", "min", "max"
HITS_PART = "hits"  # a share's values meeting its condition


@dataclass(frozen=True)
class Variance:
    """The merge rule of a metric's M2 part: Chan et al.'s, M2 of a union = the parts' M2 +
    n_i * (mean_i - mean)^2, which needs the metric's count and sum parts and stays exact where
    a sum of squares would cancel."""

    count: str
    total: str


@dataclass(frozen=True)
class Part:
    """A column of the device-day partials. `aggregate`: its Spark aggregate over a device-day's
    validated readings, given its family's settings (Thresholds here, IaqRules for the
    compliance partials of batch/analysis/iaq_partials.py); None: a column that is not one (a
    group key, a day's flag). `merge`: SUM, MIN, MAX, DISTINCT (the number of distinct values of
    a key) or a Variance."""

    name: str
    aggregate: Callable[[Any], Column] | None
    merge: str | Variance


# Merged part values by part name, one per group (numpy arrays or pandas Series).
Merged = Mapping[str, Any]


@dataclass(frozen=True)
class Measure:
    """One published column: its name, type, comment (given the settings it names: Thresholds
    for the statistics tables, IaqSettings for the compliance tables), parts and finish."""

    name: str
    column_type: ColumnType
    describe: Callable[[Any], str]
    parts: tuple[Part, ...]
    finish: Callable[[Merged], Any]
    unit: str = ""
    nullable: bool = True

    def column(self, settings: Any) -> OutputColumn:
        return OutputColumn(self.name, self.column_type, self.describe(settings), unit=self.unit,
                            nullable=self.nullable)


def partial_column(statistic: str, part: str) -> str:
    """The partials' column holding `part` of a metric's or a share's statistic."""
    return f"{statistic}__{part}"


def ratio(numerator: Any, denominator: Any) -> np.ndarray:
    """numerator / denominator where the denominator is positive, else NaN."""
    denominator = np.asarray(denominator, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, np.asarray(numerator, dtype=float) / denominator, np.nan)


def _stddev(n: np.ndarray, m2: np.ndarray) -> np.ndarray:
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1, np.sqrt(np.maximum(np.asarray(m2, dtype=float), 0.0) / (n - 1)), np.nan)


def fixed(text: str) -> Callable[[Any], str]:
    return lambda _settings: text


def counted(part: Part) -> Callable[[Merged], Any]:
    return lambda merged: np.asarray(merged[part.name]).astype(np.int64)


def _as_is(part: Part) -> Callable[[Merged], Any]:
    return lambda merged: merged[part.name]


READINGS_PART = Part("readings", lambda _t: F.count(F.lit(1)), SUM)
DEVICES_PART = Part(DEVICE, None, DISTINCT)
FIRST_PART = Part("first_reading_at", lambda _t: F.min(SENDTIME), MIN)
LAST_PART = Part("last_reading_at", lambda _t: F.max(SENDTIME), MAX)
REPLAYS_PART = Part(REPLAYS, lambda _t: F.sum(REPLAYS).cast("long"), SUM)

GROUP_MEASURES = (
    Measure("readings", BIGINT, fixed("number of readings used (excluded readings are counted in "
                                       "batch_runs)"), (READINGS_PART,), counted(READINGS_PART), nullable=False),
    Measure("devices", BIGINT, fixed("number of distinct devices (DevEui) that sent them"), (DEVICES_PART,),
            counted(DEVICES_PART), nullable=False),
    Measure("first_reading_at", TIMESTAMPTZ, fixed("time of the first reading"), (FIRST_PART,),
            _as_is(FIRST_PART), nullable=False),
    Measure("last_reading_at", TIMESTAMPTZ, fixed("time of the last reading"), (LAST_PART,),
            _as_is(LAST_PART), nullable=False),
)


@dataclass(frozen=True)
class MetricParts:
    """A metric's parts: count, sum, M2, extremes, and its values nulled as out of range."""

    count: Part
    total: Part
    m2: Part
    low: Part
    high: Part
    out_of_range: Part

    @classmethod
    def of(cls, name: str) -> MetricParts:
        def column(part: str) -> str:
            return partial_column(name, part)

        count = Part(column(COUNT_PART), lambda _t: F.count(F.col(name)), SUM)
        # The mean is sum / n, as Spark's avg computes it, without avg's own buffers.
        total = Part(column(SUM_PART), lambda _t: F.sum(F.col(name)), SUM)
        # var_pop is Spark's stable central-moment aggregate; times n it is M2.
        m2 = Part(column(M2_PART), lambda _t: F.var_pop(F.col(name)) * F.count(F.col(name)),
                  Variance(count.name, total.name))
        flag = out_of_range_flag(name)
        return cls(count, total, m2, Part(column(MIN_PART), lambda _t: F.min(F.col(name)), MIN),
                   Part(column(MAX_PART), lambda _t: F.max(F.col(name)), MAX),
                   Part(flag, lambda _t: F.sum(flag).cast("long"), SUM))

    @property
    def all(self) -> tuple[Part, ...]:
        return (self.count, self.total, self.m2, self.low, self.high, self.out_of_range)


def metric_measures(metric: Metric) -> tuple[Measure, ...]:
    parts = MetricParts.of(metric.name)
    text = metric.description

    def in_unit(suffix: str, comment: str, used: tuple[Part, ...], finish: Callable[[Merged], Any]) -> Measure:
        return Measure(f"{metric.name}_{suffix}", DOUBLE, fixed(comment), used, finish, unit=metric.unit)

    n, total = parts.count, parts.total
    return (
        Measure(f"{metric.name}_count", BIGINT,
                fixed(f"number of valid values of {text} (nulls and impossible values excluded)"),
                (n,), counted(n), nullable=False),
        in_unit("mean", f"mean {text}, {metric.unit}", (n, total),
                lambda merged: ratio(merged[total.name], merged[n.name])),
        in_unit("min", f"lowest {text}, {metric.unit}", (parts.low,), _as_is(parts.low)),
        in_unit("max", f"highest {text}, {metric.unit}", (parts.high,), _as_is(parts.high)),
        in_unit("stddev", f"sample standard deviation of {text}, {metric.unit} (null with fewer than 2 "
                "values)", (n, total, parts.m2), lambda merged: _stddev(merged[n.name], merged[parts.m2.name])),
    )


def _share(name: str, metric: str, condition: Callable[[Column, Thresholds], Column],
           describe: Callable[[Thresholds], str]) -> Measure:
    """The share (0-1) of a metric's valid values meeting a condition on the thresholds."""
    hits = Part(partial_column(name, HITS_PART),
                lambda thresholds: F.count(F.when(condition(F.col(metric), thresholds), 1)), SUM)
    n = MetricParts.of(metric).count
    return Measure(name, DOUBLE, describe, (hits, n), lambda merged: ratio(merged[hits.name], merged[n.name]),
                   unit="share 0-1")


SHARE_MEASURES: tuple[Measure, ...] = (
    _share("co2_share_above_high", "co2", lambda value, t: value > t.co2_high_ppm,
           lambda t: f"share (0-1) of CO2 values above {t.co2_high_ppm:g} ppm (CO2_HIGH_PPM); "
                     "null without CO2 values"),
    _share("co2_share_above_very_high", "co2", lambda value, t: value > t.co2_very_high_ppm,
           lambda t: f"share (0-1) of CO2 values above {t.co2_very_high_ppm:g} ppm "
                     "(CO2_VERY_HIGH_PPM); null without CO2 values"),
    _share("temperature_share_in_comfort", "temperature",
           lambda value, t: value.between(t.comfort_min_c, t.comfort_max_c),
           lambda t: f"share (0-1) of temperature values within {t.comfort_min_c:g}-"
                     f"{t.comfort_max_c:g} °C, bounds included (COMFORT_MIN_C, COMFORT_MAX_C); "
                     "null without temperature values"),
)


def measures(metrics: tuple[Metric, ...] = METRICS) -> tuple[Measure, ...]:
    """The statistics tables' columns after their keys, in order."""
    return GROUP_MEASURES + tuple(m for metric in metrics for m in metric_measures(metric)) + SHARE_MEASURES


def partial_parts(metrics: tuple[Metric, ...]) -> tuple[Part, ...]:
    """Every column partial_statistics aggregates, in the partials' order (the state keeps
    them: batch/analysis/state.py): the measures' parts of `metrics`, the replays and the values
    nulled per metric (the validation counts), the shares' hits."""
    group = (READINGS_PART, REPLAYS_PART, FIRST_PART, LAST_PART)
    per_metric = tuple(part for metric in metrics for part in MetricParts.of(metric.name).all)
    hits = tuple(measure.parts[0] for measure in SHARE_MEASURES)
    return group + per_metric + hits


def output_columns(grouping: Grouping, thresholds: Thresholds,
                   metrics: tuple[Metric, ...] = METRICS) -> tuple[OutputColumn, ...]:
    return tuple(key.column for key in grouping.keys) + tuple(
        measure.column(thresholds) for measure in measures(metrics))


def group_keys(groupings: tuple[Grouping, ...]) -> tuple[GroupKey, ...]:
    """Every key of `groupings`, once each (the groupings share the key objects)."""
    return tuple({key.column.name: key for grouping in groupings for key in grouping.keys}.values())
