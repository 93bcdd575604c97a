"""The benchmark input of issue 22 (benchmark only): the `many_days` shape as a streaming sink.

    python -m tests.bench.sink_shapes --workdir W --rows 5000000 [--int96] [--append-days 1]

`many_days_sink`: the very readings of tests/bench/shapes.py's `many_days` (same generator, same
seed), laid out as a Structured Streaming file sink writes them: time-ordered (each month
sorted by `sendtime`, the months in order) and cut into at least MIN_MICRO_BATCHES small part
files, one per micro-batch (MICRO_BATCH_READINGS readings each beyond 5M), named as the sink
names them, with the `_spark_metadata/` log written by Spark's own FileStreamSinkLog class
(as devtools/demo.py does): Spark's default compaction every 10 batches, and the delta files
before a compaction deleted once 100 batches followed, as a long-running query leaves its log.
Timestamps are TIMESTAMP_MICROS (footer statistics usable), or INT96 with --int96 as Spark's
sink writes them by default (no usable statistics).

`append_day`: one more school day as a streaming job delivers it, DAY_MICRO_BATCHES micro-batches
holding about 1/730 of the history's readings, LATE_SHARE of them late readings of the last LATE_DAYS days
(arrived today, sent on a random earlier school day), in arrival order.

`plain_copy`: the same readings as a few files of a plain folder (the small-file cost).

A sink's log names its files by absolute path, so a sink cannot be moved or copied as a folder:
`copy_sink` copies the files and writes the log again for the copy (a benchmark repetition
starts from a fresh copy of the cached history).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from batch.core.readers import SINK_LOG_DIR
from batch.core.session import session_conf
from devtools.demo import CONTRACT_ARROW_TYPES
from tests.bench.shapes import SEED, _column, ensure_many_days, school_days

MIN_MICRO_BATCHES = 400
MICRO_BATCH_READINGS = 12_500
DAY_MICRO_BATCHES = 4
HISTORY_DAYS = 730  # two years: one more day is about 1/730 of the history
LATE_SHARE = 0.01
# Late readings were sent on one of the history's last LATE_DAYS days: uplinks a gateway
# buffered while offline, delivered when it reconnects (LoRaWAN network servers keep them for
# days, not years). Spread over the whole history, 1 % of a day's readings would touch a
# fifth of all days at 20M and make every night re-read half of the history.
LATE_DAYS = 10
# What the sink's files and log describe (hidden from Spark's reader and the package's).
MANIFEST = "_bench_sink.json"
# A long-running sink's log: Spark's default compaction (10) and retention (100 batches), the
# expired delta files deleted at once instead of 10 minutes later.
SINK_LOG_CONF = {"spark.sql.streaming.fileSink.log.cleanupDelay": "0"}
_SCHEMA = pa.schema([pa.field(name, arrow_type) for name, arrow_type in CONTRACT_ARROW_TYPES.items()])
_DEVICE_COLUMNS = ("DevEui", "institute", "classroom")


@dataclass(frozen=True)
class DayAppended:
    day: date
    micro_batches: tuple[int, ...]
    readings: int
    late_readings: int


def ensure_many_days_sink(spark: SparkSession, workdir: Path, readings: int,
                          int96: bool = False) -> Path:
    """The `many_days` readings as a sink folder under `workdir`, made once and kept."""
    folder = workdir / f"many_days_sink-{readings}{'-int96' if int96 else ''}"
    started = time.monotonic()
    if not (folder / MANIFEST).exists():
        monthly = ensure_many_days(workdir, readings)
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        batches = _write_history(monthly, staging, readings, int96)
        _write_sink_log(spark, staging, folder, batches)
        _write_manifest(staging, {"readings": readings, "seed": SEED, "int96": int96,
                                  "batches": batches, "days": [str(school_days()[-1])],
                                  "devices_from": str(monthly)})
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    manifest = _read_manifest(folder)
    print(f"input: {readings:,} readings as a streaming sink of {len(manifest['batches'])} "
          f"micro-batches at {folder} ({time.monotonic() - started:.0f} s to ensure)", flush=True)
    return folder


def copy_sink(spark: SparkSession, source: Path, destination: Path) -> Path:
    """A copy of the sink `source` at `destination` whose log names the copy's files."""
    manifest = _read_manifest(source)
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    for files in manifest["batches"]:
        for name in files:
            shutil.copy2(source / name, destination / name)  # keeps the modification time
    _write_sink_log(spark, destination, destination, manifest["batches"])
    _write_manifest(destination, manifest)
    return destination


def append_day(spark: SparkSession, sink: Path) -> DayAppended:
    """One more school day of micro-batches appended to `sink`, with late readings of older days."""
    manifest = _read_manifest(sink)
    days_so_far = [date.fromisoformat(day) for day in manifest["days"]]
    day = _next_school_day(days_so_far[-1])
    rng = np.random.default_rng([SEED, len(days_so_far)])
    count = max(DAY_MICRO_BATCHES, round(manifest["readings"] / HISTORY_DAYS))
    late = np.zeros(count, dtype=bool)
    late[rng.choice(count, round(count * LATE_SHARE), replace=False)] = True
    history = np.array([np.datetime64(d, "D") for d in school_days()] +
                       [np.datetime64(d, "D") for d in days_so_far[1:]])[-LATE_DAYS:]
    sent_day = np.where(late, history[rng.integers(0, len(history), count)], np.datetime64(day, "D"))
    seconds = rng.integers(7 * 3600, 17 * 3600, count)
    sendtime = sent_day.astype("datetime64[us]").astype(np.int64) + seconds * 1_000_000
    # Arrival order: today's readings by the time they were sent, late ones at random times.
    arrival = np.where(late, rng.integers(7 * 3600, 17 * 3600, count), seconds)
    order = np.argsort(arrival, kind="stable")
    devices = _devices(Path(manifest["devices_from"]))
    device = rng.integers(0, devices.num_rows, count)[order]
    columns = {"sendtime": pa.array(sendtime[order], pa.timestamp("us", tz="UTC"))}
    columns.update({name: devices[name].take(pa.array(device)) for name in _DEVICE_COLUMNS})
    table = _contract_table(columns, count, rng)
    first_batch = len(manifest["batches"])
    bounds = np.linspace(0, count, DAY_MICRO_BATCHES + 1).round().astype(int)
    new_batches = [[_write_part_file(sink, table.slice(start, end - start), manifest["int96"])]
                   for start, end in zip(bounds[:-1], bounds[1:])]
    _append_to_sink_log(spark, sink, sink, new_batches, first_batch)
    manifest["batches"] += new_batches
    manifest["days"].append(str(day))
    _write_manifest(sink, manifest)
    return DayAppended(day, tuple(range(first_batch, first_batch + len(new_batches))), count,
                       int(late.sum()))


def plain_copy(sink: Path, destination: Path, files: int) -> Path:
    """The sink's committed readings, in its order, as `files` Parquet files of a plain folder
    (no log, one file written at once as a batch job writes it): the same readings in few
    files, to measure what the sink's small files cost."""
    manifest = _read_manifest(sink)
    parts = [sink / name for batch in manifest["batches"] for name in batch]
    total = sum(pq.ParquetFile(part).metadata.num_rows for part in parts)
    bounds = np.linspace(0, total, files + 1).round().astype(int)[1:]
    staging = destination.with_name(destination.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    pending, written, index = [], 0, 0
    for part in parts:
        table = pq.read_table(part, coerce_int96_timestamp_unit="us").cast(_SCHEMA)
        while table.num_rows:
            size = min(table.num_rows, int(bounds[index]) - written)
            pending.append(table.slice(0, size))
            table, written = table.slice(size), written + size
            if written == bounds[index]:
                pq.write_table(pa.concat_tables(pending), staging / f"part-{index:05d}.snappy.parquet",
                               compression="snappy", use_deprecated_int96_timestamps=manifest["int96"])
                pending, index = [], index + 1
    assert written == total and index == files, (written, total, index)
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)
    return destination


def _write_history(monthly: Path, folder: Path, readings: int, int96: bool) -> list[list[str]]:
    """The monthly files' readings in time order, cut into micro-batches: [[part file name]]."""
    micro_batches = max(MIN_MICRO_BATCHES, -(-readings // MICRO_BATCH_READINGS))
    months = sorted(monthly.glob("*.parquet"))
    total = sum(pq.ParquetFile(month).metadata.num_rows for month in months)
    bounds = np.linspace(0, total, micro_batches + 1).round().astype(int)
    batches: list[list[str]] = []
    pending = _SCHEMA.empty_table()
    written = 0
    # The many_days files are calendar months, so sorting each month sorts the whole history.
    for month in months:
        pending = pa.concat_tables([pending, pq.read_table(month, schema=_SCHEMA).sort_by("sendtime")])
        while len(batches) < micro_batches and bounds[len(batches) + 1] - written <= pending.num_rows:
            size = int(bounds[len(batches) + 1] - bounds[len(batches)])
            batches.append([_write_part_file(folder, pending.slice(0, size), int96)])
            pending = pending.slice(size)
            written += size
    assert written == total and pending.num_rows == 0, (written, total)
    return batches


def _write_part_file(folder: Path, table: pa.Table, int96: bool) -> str:
    """One micro-batch's part file, named as Spark's file sink names it."""
    name = f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
    pq.write_table(table, folder / name, compression="snappy",
                   use_deprecated_int96_timestamps=int96)
    return name


def _contract_table(columns: dict[str, pa.Array], rows: int, rng: np.random.Generator) -> pa.Table:
    arrays = [columns[name].cast(arrow_type) if name in columns else _column(name, arrow_type, rows, rng)
              for name, arrow_type in CONTRACT_ARROW_TYPES.items()]
    return pa.Table.from_arrays(arrays, schema=_SCHEMA)


def _devices(monthly: Path) -> pa.Table:
    """The devices of the history (DevEui, institute, classroom), from its first file."""
    first = pq.read_table(sorted(monthly.glob("*.parquet"))[0], columns=list(_DEVICE_COLUMNS))
    devices = first.group_by(list(_DEVICE_COLUMNS)).aggregate([])
    return devices.take(pc.sort_indices(devices, [("DevEui", "ascending")]))


def _next_school_day(day: date) -> date:
    """The next weekday: the history ends on 30 June, and the night after it comes on 1 July,
    not after the summer (whose 60 days would add 60 offline health rows per device)."""
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _write_sink_log(spark: SparkSession, folder: Path, final: Path,
                    batches: Sequence[Sequence[str]]) -> None:
    """The `_spark_metadata/` log of `folder`'s micro-batches, naming the files at `final`."""
    shutil.rmtree(folder / SINK_LOG_DIR, ignore_errors=True)
    _append_to_sink_log(spark, folder, final, batches, 0)


def _append_to_sink_log(spark: SparkSession, folder: Path, final: Path,
                        batches: Sequence[Sequence[str]], first_batch: int) -> None:
    """Commits `batches` (part file names in `folder`) as batches first_batch, ..., written by
    Spark's own FileStreamSinkLog, so format, compaction and deletion are a query's."""
    jvm = spark.sparkContext._jvm
    streaming = jvm.org.apache.spark.sql.execution.streaming
    with session_conf(spark, SINK_LOG_CONF):
        sink_log = streaming.FileStreamSinkLog(
            streaming.FileStreamSinkLog.VERSION(), spark._jsparkSession,
            str(folder / SINK_LOG_DIR), jvm.scala.Option.empty())
    for batch_id, files in enumerate(batches, start=first_batch):
        statuses = spark.sparkContext._gateway.new_array(streaming.SinkFileStatus, len(files))
        for index, name in enumerate(files):
            stat = (folder / name).stat()
            uri = jvm.org.apache.hadoop.fs.Path(f"file:{final / name}").toUri().toString()
            statuses[index] = streaming.SinkFileStatus.apply(
                uri, stat.st_size, False, stat.st_mtime_ns // 1_000_000, 1, 32 * 1024 * 1024,
                streaming.FileStreamSinkLog.ADD_ACTION())
        if not sink_log.add(batch_id, statuses):
            raise RuntimeError(f"batch {batch_id} of the sink log in {folder} exists already")


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _read_manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--int96", action="store_true", help="timestamps as Spark's sink writes them")
    parser.add_argument("--append-days", type=int, default=0,
                        help="append this many days to a fresh copy of the history")
    args = parser.parse_args(argv)
    spark = (SparkSession.builder.master("local[1]").appName("bench-sink-shapes")
             .config("spark.ui.enabled", "false").getOrCreate())
    try:
        history = ensure_many_days_sink(spark, args.workdir, args.rows, args.int96)
        if args.append_days:
            copy = copy_sink(spark, history, history.with_name(history.name + "-appended"))
            for _ in range(args.append_days):
                print(append_day(spark, copy), flush=True)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
