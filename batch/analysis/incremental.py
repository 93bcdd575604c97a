"""An incremental run (issue 22): which readings it reads again and which stored device-days
they replace, so that the state it leaves equals what a full run computes from the same input.

The unit of recomputation is the device-day (a device and a local date in BATCH_TIMEZONE):
every partial, episode and health measure is a function of one device-day's readings (replays
share a device and an instant, so a day), hence a device-day is recomputed from all its
readings or not at all. What the input's changes touch:
- a new or changed file: the device-days of its readings (read from it: footers of Spark's
  INT96 timestamps bound nothing);
- a removed or changed file: every device-day of the local dates its stored [min, max]
  `sendtime` spans, one day wider either side (Java's and Python's zone rules may differ on
  old dates; recomputing more is exact, only slower);
- a reading without a device or an instant has no device-day: it is kept per input file
  (`source_file`) and replaced with its file.
Those device-days are read again from the new files and from the older files whose stored
[min, max] `sendtime` comes within an hour of them; every other file stays unread.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from hashlib import sha256
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch.analysis.partials import with_reading_date
from batch.analysis.state import STATE_FORMAT_VERSION, IndexedFile, StoredMeta
from batch.analysis.statistics import READING_DATE
from batch.core.contract import DEVICE, SENDTIME, Metric
from batch.core.input_index import InputEntry
from batch.core.readers import hadoop_path, same_file
from batch.core.session import collect_to_arrow

SOURCE_FILE = "source_file"
FULL, INCREMENTAL = "full", "incremental"
# Settings the stored partials depend on (every IAQ_ option is added by `fingerprint`); the
# other HEALTH_ options only judge the stored partials, and are applied to them every run.
_PARTIAL_OPTIONS = ("RAW_DATA_PATH", "BATCH_TIMEZONE", "DROP_REPLAYS", "CO2_HIGH_PPM",
                    "CO2_VERY_HIGH_PPM", "COMFORT_MIN_C", "COMFORT_MAX_C", "HEALTH_NIGHT_END_HOUR")
_FILE_OPTIONS = ("IAQ_TIMETABLE_FILE", "IAQ_CLOSURES_FILE")
# How a change of the fingerprint's other entries is named in `mode_reason`.
_CHANGED = {"metrics": "the set of metrics", "statistics": "the partial statistics computed (a new release's)"}
# How far a file's stored sendtime range may be from a recomputed day and still be read.
_OVERLAP_MARGIN = timedelta(hours=1)


def fingerprint(settings: Mapping[str, Any], metrics: tuple[Metric, ...],
                partial_columns: Iterable[str]) -> dict[str, Any]:
    """What the stored partials depend on, by option name: a file option by its contents; the
    metrics and the partial columns computed (a release adding a statistic adds a column: its
    state is rebuilt, without anyone having to remember a format version)."""
    names = _PARTIAL_OPTIONS + tuple(sorted(name.upper() for name in settings
                                            if name.upper().startswith("IAQ_")))
    values: dict[str, Any] = {}
    for name in names:
        value = settings[name.lower()]
        if name in _FILE_OPTIONS and value:
            value = {"path": value, "sha256": sha256(Path(value).read_bytes()).hexdigest()}
        values[name] = value if isinstance(value, (bool, int, float, str, dict)) else str(value)
    values["metrics"] = [metric.name for metric in metrics]
    values["statistics"] = list(partial_columns)
    return values


def choose_mode(meta: StoredMeta | None, current: Mapping[str, Any], full_requested: bool,
                edited: Mapping[str, tuple[int, int]] | None = None) -> tuple[str, str]:
    """(mode, reason): full without a state, when asked, when the state is of other settings, or
    when a published table was `edited` outside the job (its row count is not the one its stored
    digests describe: batch/analysis/device_days.py): its rows are no longer the state's."""
    if full_requested:
        return FULL, "FULL_REBUILD (--full) given"
    if meta is None:
        return FULL, "no state from a previous run in this schema"
    if meta.format_version != STATE_FORMAT_VERSION:
        return FULL, f"the state's format changed (version {meta.format_version}, now {STATE_FORMAT_VERSION})"
    changed = sorted(name for name in set(current) | set(meta.fingerprint)
                     if current.get(name) != meta.fingerprint.get(name))
    if changed:
        return FULL, ", ".join(_CHANGED.get(name, name) for name in changed) + " changed since the state was written"
    if edited:
        return FULL, "; ".join(f"{table} holds {held} rows where the previous run published {published}"
                               for table, (held, published) in sorted(edited.items())) \
            + " (changed outside the job)"
    return INCREMENTAL, "the state of the previous run has the same settings"


def with_source_file(readings_df: DataFrame) -> DataFrame:
    """Add `source_file`: the file of a reading without a device-day (no device or no instant),
    null for every other. Taken where the file is scanned (input_file_name is empty after a
    shuffle)."""
    return readings_df.withColumn(
        SOURCE_FILE, F.when(F.col(DEVICE).isNull() | F.col(SENDTIME).isNull(), F.input_file_name()))


@dataclass(frozen=True)
class FileFacts:
    """A file's readings and [min, max] sendtime, as read by Spark (the spelling Spark gives it)."""

    spark_name: str
    readings: int
    min_sendtime: datetime | None
    max_sendtime: datetime | None


def file_facts(readings_df: DataFrame) -> dict[str, FileFacts]:
    """Per file read (by `same_file` key): its readings and sendtime range; one Spark job."""
    facts = collect_to_arrow(readings_df.groupBy(F.input_file_name().alias("file")).agg(
        F.count(F.lit(1)).alias("readings"), F.min(SENDTIME).alias("low"),
        F.max(SENDTIME).alias("high")))
    return _facts_by_file(facts)


def _facts_by_file(facts: pa.Table) -> dict[str, FileFacts]:
    return {same_file(hadoop_path(row["file"])): FileFacts(row["file"], row["readings"], row["low"], row["high"])
            for row in facts.to_pylist()}


def new_files_facts(readings_df: DataFrame, timezone_name: str) -> tuple[dict[str, FileFacts], pa.Table]:
    """`file_facts` of the new files, and the distinct (device, local date) of their readings
    that have both, from one Spark job (the new files are small)."""
    per_day = collect_to_arrow(
        readings_df.transform(with_reading_date, timezone_name)
        .groupBy(F.input_file_name().alias("file"), DEVICE, READING_DATE)
        .agg(F.count(F.lit(1)).alias("readings"), F.min(SENDTIME).alias("low"),
             F.max(SENDTIME).alias("high")))
    facts = per_day.group_by("file").aggregate([("readings", "sum"), ("low", "min"), ("high", "max")])
    facts = facts.rename_columns([{"readings_sum": "readings", "low_min": "low", "high_max": "high"}.get(name, name)
                                  for name in facts.column_names])
    return _facts_by_file(facts), keyed_device_days(per_day)


def keyed_device_days(table: pa.Table) -> pa.Table:
    """The distinct (device, local date) of `table`'s rows that have both."""
    keys = table.select([DEVICE, READING_DATE])
    keyed = keys.filter(pc.and_(pc.is_valid(keys[DEVICE]), pc.is_valid(keys[READING_DATE])))
    return keyed.group_by([DEVICE, READING_DATE]).aggregate([])


def indexed(entries: Iterable[InputEntry], facts: Mapping[str, FileFacts]) -> list[IndexedFile]:
    """Index rows of the files read (a file Spark read no row of has 0 readings)."""
    rows = []
    for entry in entries:
        fact = facts.get(same_file(entry.path))
        rows.append(IndexedFile(entry, fact.readings, fact.min_sendtime, fact.max_sendtime) if fact
                    else IndexedFile(entry, 0, None, None))
    return rows


@dataclass(frozen=True)
class Touched:
    """What an incremental run recomputes: device-days by (device, local date), whole local
    dates (every device), and the files whose readings without a device-day are replaced."""

    pairs: pa.Table  # DevEui, reading_date
    dates: frozenset[date]
    files: frozenset[str]  # same_file keys

    @property
    def changes_anything(self) -> bool:
        return bool(self.pairs.num_rows or self.dates or self.files)

    def device_days_df(self, spark: SparkSession) -> DataFrame:
        """The pairs, and each whole date with a null device."""
        rows = [(row[DEVICE], row[READING_DATE]) for row in self.pairs.to_pylist()]
        rows += [(None, day) for day in sorted(self.dates)]
        schema = T.StructType([T.StructField(DEVICE, T.StringType()),
                               T.StructField(READING_DATE, T.DateType())])
        return spark.createDataFrame(rows, schema)


@dataclass(frozen=True)
class Changed:
    """What an incremental run changed in the state: the local dates of the device-days it
    replaced, added or removed, and each institute's last date with an included reading
    before and after (the compliance weeks' completeness follows it). Published rows of other
    dates come from unchanged device-days: batch/analysis/job.py keeps them as they are."""

    dates: frozenset[date]
    data_through_before: Mapping[str, date]
    data_through_after: Mapping[str, date]


def local_dates_spanned(low: datetime, high: datetime, zone: str) -> set[date]:
    """Every local date from `low`'s to `high`'s, one more either side."""
    tz = ZoneInfo(zone)
    first = low.astimezone(tz).date() - timedelta(days=1)
    last = high.astimezone(tz).date() + timedelta(days=1)
    return {first + timedelta(days=offset) for offset in range((last - first).days + 1)}


def day_bounds(day: date, zone: str) -> tuple[datetime, datetime]:
    """The UTC instants a local date spans, widened by the overlap margin."""
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(timezone.utc)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(timezone.utc)
    return start - _OVERLAP_MARGIN, end + _OVERLAP_MARGIN


def overlapping(files: Iterable[IndexedFile], days: Iterable[date], zone: str) -> list[IndexedFile]:
    """The `files` whose stored sendtime range meets one of `days` (a file with no sendtime
    holds no device-day)."""
    spans = sorted(day_bounds(day, zone) for day in set(days))
    chosen = []
    for file in files:
        if file.min_sendtime is None or file.max_sendtime is None:
            continue
        if any(start <= file.max_sendtime and file.min_sendtime <= end for start, end in spans):
            chosen.append(file)
    return chosen


def readings_to_recompute(readings_df: DataFrame, touched: Touched, spark_names: Iterable[str],
                          timezone_name: str, spark: SparkSession) -> DataFrame:
    """The readings of the touched device-days, and those without a device-day of the files
    Spark names `spark_names` (the new and changed ones); `readings_df` has `source_file`."""
    touched_df = F.broadcast(touched.device_days_df(spark)).alias("t")
    dated = readings_df.filter(F.col(DEVICE).isNotNull() & F.col(SENDTIME).isNotNull()).transform(
        with_reading_date, timezone_name).alias("r")
    # On the date (a hash join), then the device unless the whole date is recomputed.
    match = (F.col(f"r.{READING_DATE}") == F.col(f"t.{READING_DATE}")) & (
        F.col(f"t.{DEVICE}").isNull() | (F.col(f"r.{DEVICE}") == F.col(f"t.{DEVICE}")))
    keyed = dated.join(touched_df, match, "left_semi").select(*readings_df.columns)
    names = sorted(set(spark_names))
    if not names:
        return keyed
    return keyed.unionByName(readings_df.filter(F.col(SOURCE_FILE).isin(names)))


def replaced_mask(stored: pa.Table, touched: Touched) -> pa.ChunkedArray:
    """Which stored rows the recomputation replaces."""
    device, day = stored[DEVICE], stored[READING_DATE]
    keyed = pc.and_(pc.is_valid(device), pc.is_valid(day))
    key = pc.binary_join_element_wise(device, pc.cast(day, pa.string()), "\x1f")
    pair_keys = pc.binary_join_element_wise(touched.pairs[DEVICE], pc.cast(touched.pairs[READING_DATE], pa.string()),
                                            "\x1f")
    if isinstance(pair_keys, pa.ChunkedArray):
        pair_keys = pair_keys.combine_chunks()
    in_pairs = pc.is_in(key, value_set=pair_keys)
    in_dates = pc.is_in(day, value_set=pa.array(sorted(touched.dates), pa.date32()))
    keyed_replaced = pc.and_(keyed, pc.or_(pc.fill_null(in_pairs, False), pc.fill_null(in_dates, False)))
    if SOURCE_FILE not in stored.column_names:
        return keyed_replaced
    sources = stored[SOURCE_FILE]
    gone = [name for name in pc.unique(sources).drop_null().to_pylist()
            if same_file(hadoop_path(name)) in touched.files]
    in_gone = pc.fill_null(pc.is_in(sources, value_set=pa.array(gone, pa.string())), False)
    unkeyed_replaced = pc.and_(pc.invert(keyed), in_gone)
    return pc.or_(keyed_replaced, unkeyed_replaced)
