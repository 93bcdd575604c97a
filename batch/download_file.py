"""The raw-data download: filters, a total order, and one file assembled from Spark's parts.

The download is training data for machine learning, so the file must be exactly right and
reproducible. One pass over `sendtime` (and the filter columns) finds the instants that cut
the selection into parts of about equal size; Spark sends each reading to its part, sorts
every part on its own, in parallel, and writes it into a staging folder; the parts are then
concatenated, in order and behind a single header, into a temporary file beside the target,
which is renamed over the target at the very end. CSV parts on the local disk are copied
by the kernel (copy_file_range), parts elsewhere (HDFS) stream through the Hadoop FileSystem
API inside the driver's JVM; Parquet parts are joined row group by row group, undecoded.
Neither the Python driver nor the JVM heap ever holds more than a copy buffer, whatever the
size of the download; nothing is collected to the driver.

CSV dialect (RFC 4180, UTF-8, no byte-order mark):
- one header line with the column names; records end with LF (Spark's CSV writer cannot
  emit CRLF; every CSV reader accepts LF);
- a field is quoted when it holds a comma, a quote, CR or LF (or starts with `#`), and a
  quote inside a field is doubled - Spark's default escape is a backslash, which is not
  RFC 4180, hence `escape='"'`; leading and trailing spaces are kept (Spark strips them
  by default);
- null is an empty field; an empty string is `""`, so the two stay distinguishable for a
  reader that looks at quoting (Python's csv module and pandas read both as empty);
- timestamps are ISO-8601 with microseconds and the UTC offset of the instant in
  BATCH_TIMEZONE (`2024-10-01T08:00:00.000000+02:00`; `Z` when the offset is zero);
- floating-point values are written by Java's `Double.toString`, which always reads back
  as the same double (`0.1`, `1.0E-7`, `1.23456789123E8`; `NaN`, `Infinity`); a value
  stored as a 32-bit float is downloaded as the exact double of that float (the reader
  widens it), e.g. a float 21.3 is `21.299999237060547`.
"""
from __future__ import annotations

import csv
import errno
import gzip
import io
import logging
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from py4j.protocol import Py4JError, Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from batch.contract import (
    CLASSROOM,
    DEVICE,
    INSTITUTE,
    PROFILE,
    RAW_COLUMNS,
    RAW_COLUMNS_BY_NAME,
    SENDTIME,
)
from batch.errors import ConfigurationError, EmptyInputError, DownloadError
from batch.readers import undecodable_file
from batch.session import session_conf
from batch.spark_errors import java_causes
from batch.validation import (
    EXCLUSION_REASON,
    EXCLUSION_REASONS,
    REPLAY_REASON,
    REPLAYS,
    out_of_range_flag,
)

log = logging.getLogger(__name__)

CSV = "csv"
PARQUET = "parquet"
FORMATS: tuple[str, ...] = (CSV, PARQUET)

# The download is ordered by instant, then device; the other downloaded columns only break ties
# (replays of one uplink), so that two runs over the same input write the same bytes.
ORDER_KEYS: tuple[str, ...] = (SENDTIME, DEVICE)

TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"
COPY_BUFFER_BYTES = 1 << 20

# The columns whose values a value filter (profile, institute, classroom) selects on.
_VALUE_FILTER_COLUMNS: tuple[str, ...] = (PROFILE, INSTITUTE, CLASSROOM)
_PART_INDEX = re.compile(r"^part-(\d+)")
_PART_FILE_COUNTER = re.compile(r"-c(\d+)\.")
_ROUTE = "_download_part_route"
_SPLIT_ACCURACY = 1000  # relative error 1/1000 of the rank: parts within a few % of each other
# Opening a footer costs a few round trips through Py4J: beyond this many files a pass over
# `sendtime` is cheaper than reading their statistics.
_FOOTER_PLAN_MAX_FILES = 1000
# Each part is sorted in the heap of one task: bounded parts bound the driver's memory in local
# mode (5M readings in 10 parts rather than 4: peak JVM RSS 1.1 instead of 1.6 GiB, same time).
_ROWS_PER_PART = 500_000
_FOOTER_READ_THREADS = 8
_MICROS_PER_UNIT: dict[str, Callable[[int], int]] = {
    "MILLIS": lambda value: value * 1000, "MICROS": lambda value: value,
    "NANOS": lambda value: value // 1000}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class UnknownFilterValueError(ConfigurationError):
    """A --profile, --institute or --classroom value that no reading in the input has."""


class NoMatchingReadingsError(EmptyInputError):
    """The filters select no reading: nothing is written and the previous file is kept."""


# --- filters --------------------------------------------------------------------------------

@dataclass(frozen=True)
class DownloadFilter:
    """Which readings to download; every part is optional and they combine with AND.

    `since` and `until` are instants (timezone-aware); since is inclusive, until exclusive.
    Several values of one column select any of them.
    """

    profiles: tuple[str, ...] = ()
    institutes: tuple[str, ...] = ()
    classrooms: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            instant = getattr(self, name)
            if instant is not None and instant.utcoffset() is None:
                # PySpark would read a naive datetime in the Python process's local zone.
                raise ValueError(f"{name} must be a timezone-aware instant, got {instant!r}")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ConfigurationError(
                f"--since {self.since.isoformat()} is not before --until {self.until.isoformat()}: "
                "the window is empty")

    @property
    def values_by_column(self) -> dict[str, tuple[str, ...]]:
        return {PROFILE: self.profiles, INSTITUTE: self.institutes, CLASSROOM: self.classrooms}

    @property
    def has_value_filters(self) -> bool:
        return any(self.values_by_column.values())

    @property
    def columns(self) -> tuple[str, ...]:
        """The input columns the filter reads."""
        used = [name for name, values in self.values_by_column.items() if values]
        if self.since is not None or self.until is not None:
            used.append(SENDTIME)
        return tuple(used)


def parse_local_instant(text: str, timezone_name: str) -> datetime:
    """The UTC instant of an ISO date or date-time; without an offset it is local to `timezone_name`.

    A date means its local midnight. A local time that does not exist (the hour skipped when
    clocks go forward) or exists twice (clocks go back) is refused: the caller must say
    which instant is meant by adding an offset.
    """
    cleaned = text.strip()
    if cleaned[-1:] in ("Z", "z"):
        cleaned = cleaned[:-1] + "+00:00"  # fromisoformat accepts Z only from Python 3.11
    try:
        parsed = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO date or date-time (e.g. 2024-10-01, 2024-10-01T08:30, "
            "2024-10-01T08:30:00+02:00)") from None
    if parsed.tzinfo is not None:
        return parsed.astimezone(timezone.utc)
    zone = ZoneInfo(timezone_name)
    earlier = parsed.replace(tzinfo=zone, fold=0)
    later = parsed.replace(tzinfo=zone, fold=1)
    if earlier.utcoffset() != later.utcoffset():
        offsets = sorted({_offset_text(earlier), _offset_text(later)})
        round_trip = earlier.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None)
        why = ("does not exist in" if round_trip != parsed else "happens twice in")
        raise ValueError(
            f"{text!r} {why} {timezone_name} (a daylight-saving change): add the offset "
            f"meant, e.g. {parsed.isoformat()}{offsets[0]} or {parsed.isoformat()}{offsets[-1]}")
    return earlier.astimezone(timezone.utc)


def _offset_text(instant: datetime) -> str:
    offset = instant.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def filter_readings(readings_df: DataFrame, download_filter: DownloadFilter) -> DataFrame:
    """The readings `download_filter` selects; a time window excludes readings without `sendtime`."""
    return readings_df.where(_filter_condition(download_filter))


def _filter_condition(download_filter: DownloadFilter) -> Column:
    condition = F.lit(True)
    for column, values in download_filter.values_by_column.items():
        if values:
            condition = condition & F.col(column).isin(list(values))
    # Aware datetimes become exact instants whatever the Python process's local time zone.
    if download_filter.since is not None:
        condition = condition & (F.col(SENDTIME) >= F.lit(download_filter.since))
    if download_filter.until is not None:
        condition = condition & (F.col(SENDTIME) < F.lit(download_filter.until))
    return condition


def value_inventory(readings_df: DataFrame) -> DataFrame:
    """Readings per (profile, institute, classroom): what the value filters can select."""
    return readings_df.groupBy(*_VALUE_FILTER_COLUMNS).agg(F.count(F.lit(1)).alias("rows"))


def check_filter_values(
    download_filter: DownloadFilter, inventory: Iterable[Mapping[str, Any]], input_path: str
) -> None:
    """Refuse a profile, institute or classroom that no reading has, listing those that exist."""
    rows = list(inventory)
    for column, wanted in download_filter.values_by_column.items():
        if not wanted:
            continue
        scope = rows
        if column == CLASSROOM and download_filter.institutes:
            # Classrooms are named per institute: look only inside the institutes asked for.
            scope = [row for row in rows if row[INSTITUTE] in download_filter.institutes]
        counts: dict[str, int] = {}
        without = 0
        for row in scope:
            if row[column] is None:
                without += row["rows"]
            else:
                counts[row[column]] = counts.get(row[column], 0) + row["rows"]
        unknown = [value for value in wanted if value not in counts]
        if unknown:
            raise UnknownFilterValueError(
                _unknown_message(column, unknown, counts, without, input_path,
                                 download_filter.institutes if column == CLASSROOM else ()))


def _unknown_message(column: str, unknown: Sequence[str], counts: Mapping[str, int],
                     without: int, input_path: str, institutes: Sequence[str]) -> str:
    names = ", ".join(f"`{value}`" for value in unknown)
    where = input_path
    if institutes:
        where = f"{', '.join(institutes)} ({input_path})"
    existing = ", ".join(f"{value} ({count:,} rows)" for value, count in sorted(counts.items()))
    message = (f"unknown {column} {names}; {column}s in {where}: {existing or 'none'}")
    if without:
        message += f"; {without:,} rows have no {column}"
    return message


# --- order and parts ------------------------------------------------------------------------

@dataclass(frozen=True)
class PartPlan:
    """What one pass over the filter columns and `sendtime` tells before the download is written.

    `split_points`: the `sendtime`s (epoch microseconds) cutting the selected readings into
    parts of about equal size; `rows_per_value`: readings with each --profile, --institute or
    --classroom value asked for, in the whole input (classrooms within the institutes asked for).
    """

    split_points: tuple[int, ...]
    rows_per_value: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def missing_values(self) -> list[tuple[str, str]]:
        return [key for key, rows in self.rows_per_value.items() if rows == 0]


def plan_parts(readings_df: DataFrame, download_filter: DownloadFilter, parts: int) -> PartPlan:
    """Split points for `parts` parts and the rows of each filter value, in one aggregation.

    It reads only `sendtime` and the filter columns: cheaper than the sampling pass of a
    range-partitioned sort, which reads every downloaded column.
    """
    presence = _value_presence_columns(download_filter)
    aggregates = list(presence.values())
    if parts > 1:
        selected_micros = F.when(_filter_condition(download_filter), F.unix_micros(F.col(SENDTIME)))
        fractions = [index / parts for index in range(1, parts)]
        aggregates.append(F.percentile_approx(selected_micros, fractions, _SPLIT_ACCURACY))
    if not aggregates:
        return PartPlan(split_points=())
    row = readings_df.agg(*aggregates).first()
    counts = {key: int(row[index]) for index, key in enumerate(presence)}
    # No selected reading: no split point (percentile_approx is null).
    points = tuple(row[len(presence)] or ()) if parts > 1 else ()
    return PartPlan(split_points=points, rows_per_value=counts)


@dataclass(frozen=True)
class SendtimeRange:
    """The `sendtime` statistics of one Parquet row group: epoch microseconds, both ends included."""

    low: int
    high: int
    rows: int  # readings with a sendtime


def plan_from_footers(spark: SparkSession, files: Sequence[str], download_filter: DownloadFilter,
                      parts: int) -> PartPlan | None:
    """Split points estimated from the `sendtime` statistics in the footers: no pass over the data.

    None when a pass is needed after all: value filters (whose presence the pass counts),
    more files than are worth opening one by one, or footers without usable statistics
    (INT96 timestamps, which Parquet writers give no statistics). Split points only balance
    the parts; any split points give the same file.
    """
    if parts <= 1:
        return PartPlan(split_points=())
    if download_filter.has_value_filters or len(files) > _FOOTER_PLAN_MAX_FILES:
        return None
    ranges = sendtime_row_groups(spark, files)
    if ranges is None:
        return None
    since, until = (None if instant is None else _epoch_micros(instant)
                    for instant in (download_filter.since, download_filter.until))
    return PartPlan(split_points=split_points_of_ranges(ranges, parts, since, until,
                                                        rows_per_part=_ROWS_PER_PART))


def _epoch_micros(instant: datetime) -> int:
    return (instant - _EPOCH) // timedelta(microseconds=1)


def sendtime_row_groups(spark: SparkSession, files: Sequence[str]) -> list[SendtimeRange] | None:
    """The `sendtime` range and count of every row group of `files`; None if a footer lacks them."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()

    def file_ranges(file: str) -> list[SendtimeRange] | None:
        try:
            reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(
                jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(
                    jvm.org.apache.hadoop.fs.Path(file), conf))
            try:
                return _footer_ranges(reader.getFooter())
            finally:
                reader.close()
        except Py4JError:
            return None  # the write names a damaged file; here it only means "no statistics"

    # Footers are read on the driver; threads overlap the round trips to the file system.
    with ThreadPoolExecutor(max_workers=_FOOTER_READ_THREADS) as pool:
        found = list(pool.map(file_ranges, files))
    if any(ranges is None for ranges in found):
        return None
    return [sendtime_range for ranges in found for sendtime_range in ranges or ()]


def _footer_ranges(footer: Any) -> list[SendtimeRange] | None:
    schema = footer.getFileMetaData().getSchema()
    if not schema.containsField(SENDTIME):
        return []  # the reader gives these readings no sendtime: the last part
    field_type = schema.getType(SENDTIME)
    if not field_type.isPrimitive() or field_type.asPrimitiveType().getPrimitiveTypeName().name() != "INT64":
        return None  # INT96 (no statistics) or not a timestamp
    annotation = field_type.getLogicalTypeAnnotation()
    if annotation is None or annotation.getClass().getSimpleName() != "TimestampLogicalTypeAnnotation":
        return None
    unit = annotation.getUnit().name()
    index = schema.getFieldIndex(SENDTIME)
    ranges = []
    for block in footer.getBlocks():
        chunk = block.getColumns().get(index)
        if chunk.getPath().toDotString() != SENDTIME:
            return None  # nested columns before it: the chunk index is not the field index
        statistics = chunk.getStatistics()
        with_sendtime = block.getRowCount() - max(0, statistics.getNumNulls())
        if with_sendtime <= 0:
            continue
        if statistics.isEmpty() or not statistics.hasNonNullValue():
            return None
        low, high = (_MICROS_PER_UNIT[unit](int(value))
                     for value in (statistics.genericGetMin(), statistics.genericGetMax()))
        ranges.append(SendtimeRange(low=low, high=high, rows=with_sendtime))
    return ranges


def split_points_of_ranges(ranges: Sequence[SendtimeRange], parts: int, since: int | None = None,
                           until: int | None = None, rows_per_part: int | None = None) -> tuple[int, ...]:
    """The instants cutting `ranges` into `parts` parts of about equal rows (more parts if one
    would hold more than `rows_per_part`).

    Each range's readings are taken as spread evenly between its ends; a window
    [since, until) keeps the share of each range inside it.
    """
    kept: list[SendtimeRange] = []
    for piece in ranges:
        low = piece.low if since is None else max(piece.low, since)
        high = piece.high if until is None else min(piece.high, until - 1)
        if low > high:
            continue
        span = piece.high - piece.low + 1
        kept.append(SendtimeRange(low, high, piece.rows * (high - low + 1) / span))
    total = sum(piece.rows for piece in kept)
    if total <= 0:
        return ()
    if rows_per_part:
        parts = max(parts, math.ceil(total / rows_per_part))
    # The cumulative count is piecewise linear: each range adds rows / (high + 1 - low) per
    # microsecond over [low, high + 1).
    changes: dict[int, float] = {}
    for piece in kept:
        density = piece.rows / (piece.high + 1 - piece.low)
        changes[piece.low] = changes.get(piece.low, 0.0) + density
        changes[piece.high + 1] = changes.get(piece.high + 1, 0.0) - density
    targets = [total * index / parts for index in range(1, parts)]
    points: list[int] = []
    below, density, previous = 0.0, 0.0, None
    for instant in sorted(changes):
        if previous is not None and density > 0:
            reached = below + density * (instant - previous)
            while targets and targets[0] <= reached:
                points.append(previous + round((targets.pop(0) - below) / density))
            below = reached
        density += changes[instant]
        previous = instant
    return tuple(points)


def _value_presence_columns(download_filter: DownloadFilter) -> dict[tuple[str, str], Column]:
    columns: dict[tuple[str, str], Column] = {}
    for column, values in download_filter.values_by_column.items():
        for value in values:
            condition = F.col(column) == value
            if column == CLASSROOM and download_filter.institutes:
                # Classrooms are named per institute: look only inside the institutes asked for.
                condition = condition & F.col(INSTITUTE).isin(list(download_filter.institutes))
            columns[(column, value)] = F.count(F.when(condition, 1))
    return columns


def sort_into_parts(readings_df: DataFrame, columns: Sequence[str],
                    split_points: Sequence[int] = ()) -> DataFrame:
    """The readings (every column kept) in download order, in len(split_points) + 1 partitions.

    The order is `sendtime`, then `DevEui`, nulls last; the other downloaded `columns` break
    ties, so the order is total on what is written. Partition i holds the readings with
    split_points[i-1] <= sendtime < split_points[i] (microseconds), the last one also those
    without sendtime; each is sorted on its own. Unlike `orderBy`, whose range partitioning
    samples the whole input in a pass of its own, the bounds are given.
    """
    tie_breakers = [name for name in columns if name not in ORDER_KEYS]
    order = [F.col(name).asc_nulls_last() for name in (*ORDER_KEYS, *tie_breakers)]
    parts = len(split_points) + 1
    if parts == 1:
        return readings_df.coalesce(1).sortWithinPartitions(*order)
    micros = F.unix_micros(F.col(SENDTIME))
    part = sum((F.when(micros >= point, 1).otherwise(0) for point in split_points), F.lit(0))
    part = F.when(F.col(SENDTIME).isNull(), parts - 1).otherwise(part)
    # Hash partitioning sends key k to partition pmod(hash(k), parts): route part i through a
    # key that hashes to i, so that partition i (and the part file it writes) is part i.
    keys = routing_keys(parts)
    route = F.element_at(F.array(*[F.lit(key) for key in keys]), part + 1)
    return (readings_df.withColumn(_ROUTE, route).repartition(parts, _ROUTE)
            .sortWithinPartitions(*order).drop(_ROUTE))


def routing_keys(parts: int) -> list[int]:
    """keys[i]: an int that Spark's hash partitioning into `parts` partitions sends to partition i."""
    found: dict[int, int] = {}
    key = 0
    while len(found) < parts:
        found.setdefault(_spark_hash_int(key) % parts, key)  # Python's % is Spark's pmod
        key += 1
    return [found[index] for index in range(parts)]


def _spark_hash_int(value: int, seed: int = 42) -> int:
    """Spark's `hash()` of one int column (Murmur3 x86 32-bit, seed 42), as HashPartitioning uses it."""
    mask = 0xFFFFFFFF

    def rotate_left(bits: int, shift: int) -> int:
        return ((bits << shift) | (bits >> (32 - shift))) & mask

    k1 = rotate_left(value * 0xCC9E2D51 & mask, 15) * 0x1B873593 & mask
    h1 = (rotate_left(seed ^ k1, 13) * 5 + 0xE6546B64) & mask
    h1 ^= 4  # the length in bytes
    h1 ^= h1 >> 16
    h1 = h1 * 0x85EBCA6B & mask
    h1 ^= h1 >> 13
    h1 = h1 * 0xC2B2AE35 & mask
    h1 ^= h1 >> 16
    return h1 - (1 << 32) if h1 & 0x80000000 else h1


def order_for_download(readings_df: DataFrame, columns: Sequence[str],
                       split_points: Sequence[int] = ()) -> DataFrame:
    """`columns` of the readings, in download order (see sort_into_parts)."""
    return readings_df.transform(sort_into_parts, columns, split_points).select(*columns)


def columns_to_read(
    columns: Sequence[str], download_filter: DownloadFilter, clean: bool
) -> tuple[str, ...]:
    """Every input column the download needs, in contract order: no other column is scanned."""
    needed = set(columns) | set(ORDER_KEYS) | set(download_filter.columns)
    if download_filter.has_value_filters:
        needed |= set(_VALUE_FILTER_COLUMNS)  # value_inventory lists all three when a value is unknown
    if clean:
        needed |= {SENDTIME, DEVICE, INSTITUTE, CLASSROOM}  # the exclusion rules read them
    return tuple(column.name for column in RAW_COLUMNS if column.name in needed)


def range_checked_columns(columns: Sequence[str]) -> tuple[str, ...]:
    """The downloaded columns with a physical range in the contract: --clean nulls their impossible values."""
    return tuple(name for name in columns if RAW_COLUMNS_BY_NAME[name].has_range)


# --- counts ---------------------------------------------------------------------------------

def clean_counts(validated_df: DataFrame, checked_columns: Sequence[str]) -> DataFrame:
    """One row from validated readings: selected, downloaded, excluded per reason, values nulled."""
    return validated_df.agg(*clean_count_columns(checked_columns))


def clean_count_columns(checked_columns: Sequence[str]) -> list[Column]:
    """The aggregates of clean_counts, also usable with DataFrame.observe."""
    included = F.col(EXCLUSION_REASON).isNull()
    counts: dict[str, Column] = {
        "rows_selected": F.count(F.lit(1)) + F.sum(REPLAYS),
        "rows_downloaded": F.sum(F.when(included, 1).otherwise(0)),
        REPLAY_REASON: F.sum(REPLAYS),
    }
    for reason in EXCLUSION_REASONS:
        counts[reason] = F.sum(F.when(F.col(EXCLUSION_REASON) == reason, 1).otherwise(0))
    for column in checked_columns:
        counts[out_of_range_flag(column)] = F.sum(
            F.when(included, F.col(out_of_range_flag(column))).otherwise(0))
    return [F.coalesce(expr, F.lit(0)).cast("long").alias(name) for name, expr in counts.items()]


def usable_readings(validated_df: DataFrame, columns: Sequence[str]) -> DataFrame:
    """The validated readings that are not excluded, without the validation flags."""
    return validated_df.where(F.col(EXCLUSION_REASON).isNull()).select(*columns)


# --- the single-file writer -----------------------------------------------------------------

@dataclass(frozen=True)
class DownloadedFile:
    """A published download file."""

    path: Path
    size_bytes: int
    parts: int
    rows: int  # counted by Spark while writing the parts
    step_seconds: dict[str, float] = field(default_factory=dict)  # parts, assemble, sync
    leftovers_removed: tuple[str, ...] = ()  # of killed earlier downloads of the same target


def csv_write_options(timezone_name: str, compress: bool) -> dict[str, str]:
    """Spark CSV writer options giving the dialect described in the module docstring."""
    return {
        "header": "false",  # the assembly writes one header, not one per part
        "sep": ",",
        "quote": '"',
        "escape": '"',  # RFC 4180 doubles a quote inside a field; Spark's default is a backslash
        "escapeQuotes": "true",
        "quoteAll": "false",
        "nullValue": "",
        "emptyValue": '""',
        # Spark strips leading and trailing spaces on write by default: names would change.
        "ignoreLeadingWhiteSpace": "false",
        "ignoreTrailingWhiteSpace": "false",
        "encoding": "UTF-8",
        "lineSep": "\n",
        "timestampFormat": TIMESTAMP_FORMAT,
        "timeZone": timezone_name,
        # Gzip members can be concatenated (RFC 1952): each part compresses in parallel.
        "compression": "gzip" if compress else "none",
    }


def csv_header(columns: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(columns)
    return buffer.getvalue().encode("utf-8")


# Parquet timestamps as INT64 microseconds marked as UTC instants, which every reader maps to a
# timestamp with time zone; Spark's default INT96 is deprecated and read back as naive nanoseconds.
_PARQUET_WRITE_CONF: dict[str, str] = {"spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}


def write_single_file(
    download_df: DataFrame,
    target: Path,
    file_format: str,
    compress: bool,
    timezone_name: str,
    staging_root: str = "",
    expected_rows: int | None = None,
    on_written: Callable[[int], None] | None = None,
) -> DownloadedFile:
    """Write `download_df` in its order as the single file `target`, replacing it atomically.

    Spark writes the ordered parts into a staging folder (`staging_root`, a URI Spark and the
    Hadoop FileSystem API both reach; empty: beside the target on the local disk); they are
    concatenated into a temporary file beside the target, which is renamed over it. On any
    failure or interruption the temporary file and the parts are removed and the previous
    target is left as it was. The rows are counted as Spark writes them (and again from the
    footer of an assembled Parquet file); a count other than `expected_rows` fails the download.
    `on_written(rows)` is called once the parts are written, before anything is assembled:
    what it raises fails the download, the target untouched.
    """
    if file_format not in FORMATS:
        raise ConfigurationError(f"unknown download format {file_format!r}; expected one of {FORMATS}")
    if compress and file_format != CSV:
        raise ConfigurationError("gzip compression applies to CSV; Parquet is compressed inside")
    spark = download_df.sparkSession
    target = Path(target).absolute()
    if target.is_dir():
        raise DownloadError(f"the download target {target} is a directory; give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"cannot create the folder of {target}: {error.strerror}") from None
    swept = sweep_leftovers(target)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    safe_name = _safe_name(target.name)
    temporary = target.with_name(f".{safe_name}.{token}.tmp")
    staging = _staging_uri(staging_root, target, safe_name, token)
    steps = _StepTimer()
    try:
        # Counted in the write itself, after the sort: no extra pass over the data.
        written = Observation(f"download-{token}")
        parts = _write_parts(download_df.observe(written, F.count(F.lit(1)).alias("rows")),
                             staging, file_format, compress, timezone_name)
        rows = int(written.get["rows"])
        _check_row_count(rows, expected_rows, "Spark wrote", target)
        if on_written is not None:
            on_written(rows)
        steps.done("parts")
        if file_format == CSV:
            header = csv_header(download_df.columns)
            _concatenate(spark, parts, gzip.compress(header, mtime=0) if compress else header,
                         temporary)
        else:
            merged_rows = _merge_parquet(spark, parts, temporary)
            _check_row_count(merged_rows, rows, "the assembled Parquet file holds", target)
        size = temporary.stat().st_size
        steps.done("assemble")
        _publish(temporary, target)
        steps.done("sync")
    except KeyboardInterrupt:
        _cancel_jobs(spark)  # so that no task keeps writing parts while they are deleted
        raise
    finally:
        _remove_quietly(temporary)
        _delete_staging(spark, staging)
    return DownloadedFile(path=target, size_bytes=size, parts=len(parts), rows=rows,
                          step_seconds=steps.seconds, leftovers_removed=swept)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def sweep_leftovers(target: Path) -> tuple[str, ...]:
    """Remove what killed earlier downloads of `target` left beside it; the names removed.

    Only this module's own names count: the temporary file `.NAME.<pid>-<12 hex>.tmp` and
    the parts folder `.NAME.parts-<pid>-<12 hex>` of a process that no longer runs (a
    download still running, or any process with that pid, keeps them). A SIGKILL leaves
    them: no `finally` runs. Nothing else is ever deleted.
    """
    name = re.escape(_safe_name(target.name))
    temporary = re.compile(rf"\.{name}\.(\d+)-[0-9a-f]{{12}}\.tmp")
    parts = re.compile(rf"\.{name}\.parts-(\d+)-[0-9a-f]{{12}}")
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return ()
    for entry in entries:
        for pattern, is_kind in ((temporary, entry.is_file), (parts, entry.is_dir)):
            match = pattern.fullmatch(entry.name)
            if match is None or not is_kind(follow_symlinks=False) \
                    or _process_exists(int(match.group(1))):
                continue
            try:
                if pattern is parts:
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError as error:
                log.warning("cannot remove %s, left by a killed download: %s", entry.path,
                            error.strerror)
                continue
            log.info("removed %s, left by a killed download (pid %s)", entry.path, match.group(1))
            removed.append(entry.name)
    return tuple(sorted(removed))


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


class _StepTimer:
    """Seconds spent in each consecutive step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def done(self, step: str) -> None:
        now = time.monotonic()
        self.seconds[step] = round(now - self._last, 3)
        self._last = now


def _check_row_count(rows: int, expected: int | None, what: str, target: Path) -> None:
    if expected is not None and rows != expected:
        raise DownloadError(f"{what} {rows:,} rows where {expected:,} were expected (did the input "
                          f"change during the download?); {target} left as it was")


def _staging_uri(staging_root: str, target: Path, safe_name: str, token: str) -> str:
    if not staging_root:
        # A dot-folder: readers and listings skip it like any temporary file.
        return f"file://{target.parent}/.{safe_name}.parts-{token}"
    return f"{staging_root.rstrip('/')}/{safe_name}.parts-{token}"


def _write_parts(download_df: DataFrame, staging: str, file_format: str, compress: bool,
                 timezone_name: str) -> list[str]:
    spark = download_df.sparkSession
    try:
        if file_format == CSV:
            download_df.write.mode("errorifexists").options(
                **csv_write_options(timezone_name, compress)).csv(staging)
        else:
            with session_conf(spark, _PARQUET_WRITE_CONF):
                download_df.write.mode("errorifexists").parquet(staging)
    except (CapturedException, Py4JJavaError) as error:
        java_error = getattr(error, "_origin", None) or getattr(error, "java_exception", None)
        if undecodable_file(str(java_error.toString()) if java_error is not None else str(error)):
            raise  # a damaged input file, not a write failure: the job names or skips it
        reason = _root_reason(java_error) if java_error is not None else _first_line(str(error))
        local = _local_path(staging)
        if local is not None:
            # Hadoop's local file system says "Mkdirs failed" without the reason: ask the OS.
            reason = _local_write_problem(local) or reason
        raise DownloadError(f"cannot write the download parts to {_display(staging)}: {reason}; "
                            "the previous file is left as it was") from None
    return list_parts(spark, staging)


def _local_write_problem(folder: Path) -> str | None:
    """Why a file cannot be written into `folder` (the path and the OS's reason), or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".write-probe", "wb") as probe:
            probe.write(b"x")
            os.fsync(probe.fileno())
    except OSError as error:
        return f"{error.filename}: {error.strerror}" if error.filename else str(error.strerror)
    return None


def list_parts(spark: SparkSession, folder: str) -> list[str]:
    """The part files Spark wrote into `folder`, in the order of the data they hold."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(folder)
    try:
        fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        names = [(status.getPath().getName(), status.getPath().toString())
                 for status in fs.listStatus(path) if status.isFile()]
    except Py4JJavaError as error:
        raise DownloadError(f"cannot list the download parts in {folder}: {_java_message(error)}") from None
    parts = [(name, uri) for name, uri in names if name.startswith("part-")]
    if not parts:
        raise DownloadError(f"Spark wrote no part file into {folder}")
    return [uri for _, uri in sorted(parts, key=lambda part: part_sort_key(part[0]))]


def part_sort_key(name: str) -> tuple[int, int, str]:
    """(partition, file counter, name) of `part-00007-<uuid>-c000.csv`: numeric, so part 100000 follows 99999."""
    index = _PART_INDEX.match(name)
    if index is None:
        raise DownloadError(f"unexpected file name {name!r} among the download parts")
    counter = _PART_FILE_COUNTER.search(name)
    return int(index.group(1)), int(counter.group(1)) if counter else 0, name


def _local_path(uri: str) -> Path | None:
    """The local path of a `file:` URI as Hadoop prints it; None for any other file system."""
    match = re.match(r"^file:(?://)?(/.*)$", uri)
    return Path(match.group(1)) if match else None


def _concatenate(spark: SparkSession, parts: Sequence[str], header: bytes, temporary: Path) -> None:
    """Write `header` and then every part, in order, into `temporary`; bytes copied, never parsed."""
    local_parts = [_local_path(part) for part in parts]
    if all(path is not None for path in local_parts):
        _join_local_files(header, [path for path in local_parts if path is not None], temporary)
    else:
        _join_through_hadoop(spark, parts, header, temporary)


def _join_local_files(header: bytes, parts: Sequence[Path], temporary: Path) -> None:
    """Parts on this machine's disk: copied by the kernel (copy_file_range), not through a buffer.

    Reading them through Hadoop's local file system also checks their CRC files and copies
    every byte through the JVM: ten times slower (1.2 s against 0.12 s for 205 MiB).
    """
    try:
        out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            os.write(out, header)  # a few bytes: written whole
            for part in parts:
                with open(part, "rb") as source:
                    _copy_file(source.fileno(), out)
        finally:
            os.close(out)
    except OSError as error:
        raise DownloadError(f"assembling {temporary} from the parts failed: "
                            f"{error.filename or temporary}: {error.strerror}") from None


def _copy_file(source: int, out: int) -> None:
    """Append the whole of `source` at the position of `out`."""
    remaining = os.fstat(source).st_size
    try:
        while remaining > 0:
            copied = os.copy_file_range(source, out, remaining)
            if copied == 0:
                break
            remaining -= copied
    except OSError as error:
        # Another file system than the target's on an old kernel, or one without support:
        # the positions have moved past what was copied, so a plain copy goes on from there.
        if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while remaining > 0 and (chunk := os.read(source, min(remaining, COPY_BUFFER_BYTES))):
        remaining -= len(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(out, view):]
    if remaining > 0:
        raise OSError(errno.EIO, f"a part ended {remaining:,} bytes short of its size")


def _join_through_hadoop(spark: SparkSession, parts: Sequence[str], header: bytes,
                         temporary: Path) -> None:
    """Parts on another file system (HDFS): streamed through the Hadoop FileSystem API in the JVM.

    Only a copy buffer is in memory, whatever the size of the download.
    """
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    copy_bytes = jvm.org.apache.hadoop.io.IOUtils.copyBytes
    try:
        out = _local_raw_fs(spark).create(jvm.org.apache.hadoop.fs.Path(f"file://{temporary}"), False)
        try:
            out.write(bytearray(header))
            for part in parts:
                part_path = jvm.org.apache.hadoop.fs.Path(part)
                stream = part_path.getFileSystem(conf).open(part_path)
                try:
                    copy_bytes(stream, out, COPY_BUFFER_BYTES, False)
                finally:
                    stream.close()
        finally:
            out.close()
    except Py4JJavaError as error:
        raise DownloadError(f"assembling {temporary} from the parts failed: "
                          f"{_java_message(error)}") from None


def _merge_parquet(spark: SparkSession, parts: Sequence[str], temporary: Path) -> int:
    """Append the row groups of every part, undecoded, into one Parquet file; its row count."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop_path = jvm.org.apache.hadoop.fs.Path
    parquet = jvm.org.apache.parquet.hadoop
    try:
        inputs = [parquet.util.HadoopInputFile.fromPath(hadoop_path(part), conf) for part in parts]
        first = parquet.ParquetFileReader.open(inputs[0])
        try:
            metadata = first.getFooter().getFileMetaData()
            schema, key_values = metadata.getSchema(), metadata.getKeyValueMetaData()
        finally:
            first.close()
        output = parquet.util.HadoopOutputFile.fromPath(
            hadoop_path(f"file://{temporary}"), _raw_local_conf(spark))
        writer = parquet.ParquetFileWriter(output, schema, parquet.ParquetFileWriter.Mode.CREATE,
                                           parquet.ParquetWriter.DEFAULT_BLOCK_SIZE, 0)
        writer.start()
        for input_file in inputs:
            writer.appendFile(input_file)
        # Spark's schema travels in the key-value metadata: Spark reads the file back as written.
        writer.end(key_values)
        merged = parquet.ParquetFileReader.open(
            parquet.util.HadoopInputFile.fromPath(hadoop_path(f"file://{temporary}"), conf))
        try:
            return int(merged.getRecordCount())
        finally:
            merged.close()
    except Py4JJavaError as error:
        raise DownloadError(f"assembling {temporary} from the Parquet parts failed: "
                          f"{_java_message(error)}") from None


def _raw_local_conf(spark: SparkSession) -> Any:
    # The checksummed local file system would leave a `.name.crc` file beside the target.
    jvm = spark.sparkContext._jvm
    conf = jvm.org.apache.hadoop.conf.Configuration(spark.sparkContext._jsc.hadoopConfiguration())
    conf.set("fs.file.impl", "org.apache.hadoop.fs.RawLocalFileSystem")
    conf.setBoolean("fs.file.impl.disable.cache", True)
    return conf


def _local_raw_fs(spark: SparkSession) -> Any:
    jvm = spark.sparkContext._jvm
    return jvm.org.apache.hadoop.fs.FileSystem.getLocal(
        spark.sparkContext._jsc.hadoopConfiguration()).getRawFileSystem()


def _publish(temporary: Path, target: Path) -> None:
    """Make the complete temporary file durable, then rename it over the target."""
    try:
        _fsync(temporary)
        os.replace(temporary, target)
        _fsync(target.parent)
    except OSError as error:
        raise DownloadError(f"cannot move the finished download to {target}: {error.strerror or error}; "
                          "the previous file is left as it was") from None


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("cannot remove the temporary file %s: %s", path, error.strerror)


# How long an interrupted download waits for its cancelled tasks to stop before it deletes
# their parts folder anyway (a task ends at its next row once told to; this bounds the wait).
_CANCELLED_TASKS_WAIT_S = 30.0


def _cancel_jobs(spark: SparkSession) -> None:
    """Cancel the running jobs and wait until their tasks have stopped (bounded).

    Cancelling only asks the tasks to stop: a task still running would create its attempt
    folder again, and with it the parts folder, after the parts are deleted.
    """
    try:
        context = spark.sparkContext
        context.cancelAllJobs()
        tracker = context._jsc.sc().statusTracker()
        deadline = time.monotonic() + _CANCELLED_TASKS_WAIT_S
        while (any(executor.numRunningTasks() for executor in tracker.getExecutorInfos())
               and time.monotonic() < deadline):
            time.sleep(0.05)
    except Py4JError as error:
        log.warning("cannot cancel the running Spark jobs: %s", error)


def _delete_staging(spark: SparkSession, staging: str) -> None:
    local = _local_path(staging)
    if local is not None:
        # Without the JVM: after a kill of spark-submit the gateway is already gone.
        shutil.rmtree(local, ignore_errors=True)
        return
    # Best effort: after an interruption the JVM may already be gone.
    try:
        path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(staging)
        path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)
    except (Py4JError, AttributeError) as error:
        log.warning("cannot remove the download parts in %s: %s", staging, error)


def _java_message(error: Py4JJavaError) -> str:
    """The root cause of a Java exception, in one line (Spark wraps a task's failure in a job's)."""
    return _root_reason(error.java_exception)


def _root_reason(exception: Any) -> str:
    # The innermost cause says what happened (an IOException's message names the path and the
    # OS reason); the outer ones only say which stage and task failed.
    *_, root = java_causes(exception)
    message = root.getMessage()
    return _first_line(str(message)) if message else str(root.getClass().getSimpleName())


def _display(uri: str) -> str:
    local = _local_path(uri)
    return str(local) if local is not None else uri


def _first_line(message: str) -> str:
    # Spark's messages go on with the JVM stack trace; the first line says what happened.
    return message.strip().splitlines()[0] if message.strip() else message
