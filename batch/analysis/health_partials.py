"""Per-device sensor health (issue 23): the device-day partials, from the statistics' own scan.

They are extra aggregates of batch.analysis.statistics.partial_statistics, in the same groupBy
of one device and local day over the same validated readings, so the input is read once and
every column is a mergeable partial (a sum, a minimum, a maximum or a bitwise OR): a device that
moved classroom in the middle of a day has two partial rows that batch.analysis.health merges.

No sort and no array: the hours of the day with a reading are a bit mask (`bit_or(1 << hour)`
of the local wall-clock hour), and a metric stuck on one value is a day whose minimum equals its
maximum. Every expression is one Spark compiles into the aggregation (fixed-width buffers: no
string, no collect_list), which keeps it a hash aggregation with whole-stage code generation.
The count, minimum and maximum of a metric and its out-of-range sum are the statistics' own
partial columns (the job computes partials for every metric of the contract), read under their
names: the partials collected to the driver carry each once.
"""
from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from batch.analysis.partials import LOCAL_MICROS, MICROS_PER_DAY
from batch.analysis.statistics import COUNT_PART, MAX_PART, MIN_PART, partial_column
from batch.core.contract import METRIC_NAMES

MICROS_PER_HOUR = 3_600_000_000

# The metrics checked for a value stuck all day. Not the battery (flat for weeks on a healthy
# device), the light level (0 all day in a dark room over a holiday) nor TVOC (some sensors
# report their floor value all day in clean air): a constant day of theirs is no fault.
STUCK_METRICS: tuple[str, ...] = ("temperature", "humidity", "co2", "pressure")
# The metrics whose values nulled as out of range are counted per device-day.
CHECKED_METRICS: tuple[str, ...] = METRIC_NAMES

HOUR_MASK = "health_hour_mask"
BATTERY_MIN = "health_battery_min"
CO2_NIGHT_MIN = "health_co2_night_min"
# The columns health_partial_aggregates adds, in order.
HEALTH_COLUMNS = (HOUR_MASK, BATTERY_MIN, CO2_NIGHT_MIN)


def stuck_n(metric: str) -> str:
    return partial_column(metric, COUNT_PART)


def stuck_min(metric: str) -> str:
    return partial_column(metric, MIN_PART)


def stuck_max(metric: str) -> str:
    return partial_column(metric, MAX_PART)


def local_hour(local_micros: Column) -> Column:
    """The local wall-clock hour (0-23) of `local_micros` (statistics.with_local_time)."""
    return F.floor(F.pmod(local_micros, F.lit(MICROS_PER_DAY)) / F.lit(MICROS_PER_HOUR)).cast("int")


def health_partial_aggregates(night_end_hour: int) -> list[Column]:
    """Aggregate expressions over validated readings carrying `local_micros` (partial_statistics'
    groupBy of one device and local day), beside the partials of every metric of the contract.

    `night_end_hour`: the night, when a classroom is empty, is 00:00 to this local hour
    (HEALTH_NIGHT_END_HOUR); the day's lowest CO2 in it is the night minimum.
    """
    hour = local_hour(F.col(LOCAL_MICROS))
    return [
        # A long, though 24 bits would do: the mask is OR-ed on the driver with numpy int64.
        # PySpark's shiftleft takes a constant shift only; the SQL function takes a column.
        F.bit_or(F.call_function("shiftleft", F.lit(1).cast("long"), hour)).alias(HOUR_MASK),
        F.min(F.col("battery")).alias(BATTERY_MIN),
        F.min(F.when(hour < F.lit(night_end_hour), F.col("co2"))).alias(CO2_NIGHT_MIN),
    ]
