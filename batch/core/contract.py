"""The raw-data contract (shared/DATA_CONTRACT.md) as data.

Every other module derives what it needs from these tuples: the reader the columns to
select and their canonical Spark types, validation the physical ranges, aggregations and
the SQL DDL the list of metrics with their units.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import types as T


@dataclass(frozen=True)
class RawColumn:
    """One column of the raw Parquet readings."""

    name: str
    spark_type: T.DataType
    description: str
    lower: float | None = None
    upper: float | None = None

    @property
    def has_range(self) -> bool:
        return self.lower is not None or self.upper is not None


@dataclass(frozen=True)
class Metric:
    """A measured quantity the analysis summarises (count, mean, min, max, stddev)."""

    name: str
    unit: str
    description: str


RAW_COLUMNS: tuple[RawColumn, ...] = (
    RawColumn("DevEui", T.StringType(), "device EUI, 16 hex characters"),
    RawColumn("deviceName", T.StringType(), "device name in the network server"),
    RawColumn("gwname", T.StringType(), "gateway that received the uplink"),
    RawColumn("sendtime", T.TimestampType(), "instant the reading was sent (UTC)"),
    RawColumn("temperature", T.DoubleType(), "temperature, °C", -40.0, 85.0),
    RawColumn("humidity", T.DoubleType(), "relative humidity, %", 0.0, 100.0),
    RawColumn("battery", T.DoubleType(), "battery level, %", 0.0, 100.0),
    RawColumn("co2", T.DoubleType(), "CO2 concentration, ppm", 0.0, 40000.0),
    RawColumn("tvoc", T.DoubleType(), "total volatile organic compounds, ppb", 0.0, 60000.0),
    RawColumn("pressure", T.DoubleType(), "barometric pressure, hPa", 300.0, 1100.0),
    RawColumn("light_level", T.DoubleType(), "light level reported by the device (fraction kept)",
              0.0, None),
    RawColumn("pir", T.IntegerType(), "1 = motion detected, 0 = idle", 0.0, 1.0),
    RawColumn("battery_voltage", T.DoubleType(), "battery voltage, V", 0.0, 5.0),
    RawColumn("door_status", T.IntegerType(), "1 = door open, 0 = closed", 0.0, 1.0),
    RawColumn("door_open_times", T.LongType(), "door openings counted by the device", 0.0, None),
    RawColumn("last_open_minutes", T.LongType(), "minutes the door was last open", 0.0, None),
    RawColumn("alarm", T.IntegerType(), "device alarm flag", 0.0, 1.0),
    RawColumn("institute", T.StringType(), "school the device is installed in (registry)"),
    RawColumn("classroom", T.StringType(), "classroom inside the institute (registry)"),
    RawColumn("profile", T.StringType(), "device profile, e.g. AM319, AM103, WS301"),
)

RAW_COLUMNS_BY_NAME: dict[str, RawColumn] = {column.name: column for column in RAW_COLUMNS}

DEVICE = "DevEui"
SENDTIME = "sendtime"
INSTITUTE = "institute"
CLASSROOM = "classroom"
PROFILE = "profile"

# A reading cannot be attributed to a device, an instant or a classroom without these;
# a file set lacking one of them entirely cannot be analysed at all.
REQUIRED_COLUMNS: tuple[str, ...] = (SENDTIME, DEVICE, INSTITUTE, CLASSROOM)

METRICS: tuple[Metric, ...] = (
    Metric("temperature", "°C", "air temperature"),
    Metric("humidity", "% RH", "relative humidity"),
    Metric("co2", "ppm", "CO2 concentration"),
    Metric("tvoc", "ppb", "total volatile organic compounds"),
    Metric("pressure", "hPa", "barometric pressure"),
    Metric("light_level", "device units (stored as an integer or a fraction; the fraction is kept)",
           "light level reported by the device"),
    Metric("battery", "%", "battery level"),
)

METRIC_NAMES: tuple[str, ...] = tuple(metric.name for metric in METRICS)

# The columns the analysis reads; nothing else is scanned. `pir` (motion) only feeds the
# indoor-air compliance tables (batch/analysis/iaq_rollup.py): the share of occupied readings with motion.
ANALYSIS_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + METRIC_NAMES + ("pir",)


def canonical_schema(columns: tuple[str, ...]) -> T.StructType:
    """The Spark schema every reader returns for `columns`, whatever the files stored."""
    return T.StructType(
        [T.StructField(name, RAW_COLUMNS_BY_NAME[name].spark_type, True) for name in columns]
    )
