"""batch/core/input_index.py: the input listed from a real streaming sink's log or a plain folder,
compared with a stored index.

Expected values come from the file system (os.stat, which files appear after each micro-batch)
and from Spark's own reader of the sink folder.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from batch.core.input_index import (
    InputChanges,
    InputEntry,
    InputListing,
    SinkLogError,
    compare_input,
    list_input,
    orphan_part_files,
)
from tests.rawdata import build_rows
from tests.support.hdfs import (
    MiniDfs,
    configure_spark_for_hdfs,
    copy_local_dir_to_hdfs,
    minidfs_unavailable_reason,
)
from tests.support.sink import HOSTILE_CLASSROOM, MicroBatchSink, write_streaming_sink

UTC = dt.timezone.utc
COMPACT_INTERVAL = 3
# A small log: compaction every 3 batches, and the delta files before a compaction deleted as
# soon as 2 batches follow it (Spark keeps 100 by default and waits 10 minutes), as a
# long-running sink's log looks: only the latest compaction and a few deltas left.
SINK_CONF = {
    "spark.sql.streaming.fileSink.log.compactInterval": str(COMPACT_INTERVAL),
    "spark.sql.streaming.minBatchesToRetain": "2",
    "spark.sql.streaming.fileSink.log.cleanupDelay": "0",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}
SOURCE_SCHEMA = T.StructType([T.StructField("DevEui", T.StringType()),
                              T.StructField("sendtime", T.TimestampType()),
                              T.StructField("co2", T.DoubleType())])
START = dt.datetime(2024, 3, 4, 7, 0, tzinfo=UTC)


class Sink(MicroBatchSink):
    """One device's readings a day per micro-batch, one a minute from START + batch days."""

    def run_batch(self, readings: int) -> int:
        batch = len(self.files_by_batch)
        sendtimes = [START + dt.timedelta(days=batch, minutes=minute) for minute in range(readings)]
        return self.append_batch(lambda path: pq.write_table(pa.table({
            "DevEui": [f"A84041000000{batch:04X}"] * readings,
            "sendtime": pa.array(sendtimes, pa.timestamp("us", tz="UTC")),
            "co2": [400.0 + minute for minute in range(readings)],
        }), path))


def stat_entry(path: str, sink_batch_id: int | None = None) -> InputEntry:
    """The entry a file should have, from the file system (Hadoop's local paths are file:/...)."""
    stat = os.stat(path)
    return InputEntry(f"file:{path}", stat.st_size, stat.st_mtime_ns // 1_000_000, sink_batch_id)


def spark_read_files(spark: SparkSession, folder: Path) -> set[str]:
    """The files Spark's own batch reader reads from `folder`, as local paths."""
    uris = spark.read.schema(SOURCE_SCHEMA).parquet(str(folder)).inputFiles()
    return {unquote(urlparse(uri).path) for uri in uris}


def last_compaction(batch: int) -> int:
    """The latest compaction batch at or before `batch` (Spark: (id + 1) % interval == 0)."""
    return (batch + 1) // COMPACT_INTERVAL * COMPACT_INTERVAL - 1


@pytest.fixture
def sink(spark: SparkSession, tmp_path: Path) -> Iterator[Sink]:
    yield Sink(spark, tmp_path, SOURCE_SCHEMA, SINK_CONF)


def test_a_sink_is_listed_from_its_log_and_a_state_reads_only_the_batches_after_it(
        spark: SparkSession, sink: Sink) -> None:
    for readings in (3, 4, 2, 5, 3):
        sink.run_batch(readings)
    # Batch 2 was a compaction; the deltas 0 and 1 it merged are deleted.
    assert sink.log_names() == {"2.compact", "3", "4"}

    first = list_input(spark, str(sink.folder))

    every_file = [file for batch in range(5) for file in sink.files_by_batch[batch]]
    assert {same_local(entry.path) for entry in first.entries} == spark_read_files(spark, sink.folder)
    # A batch's id is known where its own delta file names it; the compaction does not say.
    assert sorted(first.entries, key=lambda e: e.path) == sorted(
        (stat_entry(file, batch if batch > last_compaction(4) else None)
         for batch in range(5) for file in sink.files_by_batch[batch]), key=lambda e: e.path)
    assert len(first.entries) == len(every_file)
    assert (first.is_sink, first.complete, first.latest_batch_id) == (True, True, 4)

    # Batch 5 is a compaction: it merges batches 3 and 4, the state's, with its own, without ids.
    sink.run_batch(2)
    sink.run_batch(6)
    assert sink.log_names() == {"2.compact", "3", "4", "5.compact", "6"}
    after_compaction = list_input(spark, str(sink.folder), after_batch_id=4)
    changes = compare_input(first.entries, after_compaction)
    assert after_compaction.complete
    assert sorted(changes.new, key=lambda e: e.path) == sorted(
        [stat_entry(file, None) for file in sink.files_by_batch[5]]
        + [stat_entry(file, 6) for file in sink.files_by_batch[6]], key=lambda e: e.path)
    assert (changes.changed, changes.removed, changes.latest_batch_id) == ((), (), 6)

    # No compaction since the state's batch 6: only delta 7 is read.
    sink.run_batch(4)
    shutil.copy(sink.folder / "_spark_metadata" / "5.compact", sink.work / "5.compact.kept")
    os.remove(sink.folder / "_spark_metadata" / "5.compact")  # proves the compaction is not read
    only_new = list_input(spark, str(sink.folder), after_batch_id=6)
    assert (only_new.complete, only_new.after_batch_id, only_new.latest_batch_id) == (False, 6, 7)
    assert only_new.entries == tuple(stat_entry(file, 7) for file in sink.files_by_batch[7])
    changes = compare_input(first.entries + after_compaction.entries, only_new)
    assert changes.new == only_new.entries
    assert (changes.changed, changes.removed, changes.latest_batch_id) == ((), (), 7)
    shutil.copy(sink.work / "5.compact.kept", sink.folder / "_spark_metadata" / "5.compact")

    nothing_new = list_input(spark, str(sink.folder), after_batch_id=7)
    assert nothing_new.entries == () and not nothing_new.complete
    assert compare_input(first.entries, nothing_new).unchanged

    # The whole history, as Spark's reader sees it, from 5.compact plus the deltas 6 and 7.
    whole = list_input(spark, str(sink.folder))
    assert {same_local(entry.path) for entry in whole.entries} == spark_read_files(spark, sink.folder)
    assert len(whole.entries) == sum(len(files) for files in sink.files_by_batch.values())


def test_a_sink_recreated_under_the_same_path_is_listed_whole(
        spark: SparkSession, sink: Sink) -> None:
    sink.run_batch(3)
    sink.run_batch(2)
    stored = list_input(spark, str(sink.folder)).entries
    # The query is started again from scratch: a new checkpoint, a new log from batch 0.
    shutil.rmtree(sink.folder)
    shutil.rmtree(sink.work / "checkpoint")
    shutil.rmtree(sink.work / "source")
    sink.files_by_batch.clear()
    sink.run_batch(4)

    listing = list_input(spark, str(sink.folder), after_batch_id=1)
    changes = compare_input(stored, listing)

    assert (listing.complete, listing.latest_batch_id) == (True, 0)
    assert changes.new == tuple(stat_entry(file, 0) for file in sink.files_by_batch[0])
    assert changes.removed == stored and changes.changed == ()


def test_compare_input_matches_files_by_path_and_sees_removals_only_in_a_complete_listing() -> None:
    stored = [InputEntry("hdfs://nn:8020/raw/a", 10, 1000, 3),
              InputEntry("hdfs://nn:8020/raw/b", 20, 2000, 4),
              InputEntry("hdfs://nn:8020/raw/c", 30, 3000, 5)]
    current = (InputEntry("hdfs://10.0.0.1:8020/raw/a", 10, 1000, 3),  # another spelling: unchanged
               InputEntry("hdfs://nn:8020/raw/b", 20, 2001, 4),  # a later modification time
               InputEntry("hdfs://nn:8020/raw/d", 40, 4000, 6))
    complete = InputListing(root="hdfs://nn:8020/raw", is_sink=True, entries=current, complete=True,
                            latest_batch_id=7)
    partial = InputListing(root="hdfs://nn:8020/raw", is_sink=True, entries=current[2:], complete=False,
                           latest_batch_id=7, after_batch_id=5)

    assert compare_input(stored, complete) == InputChanges(
        new=(current[2],), changed=(current[1],), removed=(stored[2],), latest_batch_id=7)
    assert compare_input(stored, partial) == InputChanges(
        new=(current[2],), changed=(), removed=(), latest_batch_id=7)


def test_orphan_part_files_are_not_input_and_are_found_by_a_full_listing(
        spark: SparkSession, sink: Sink) -> None:
    sink.run_batch(3)
    sink.run_batch(2)
    # What a micro-batch that died before its commit leaves: a part file the log never names.
    orphan = sink.folder / f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
    shutil.copy(sink.files_by_batch[1][0], orphan)

    listing = list_input(spark, str(sink.folder))

    committed = {str(Path(file)) for files in sink.files_by_batch.values() for file in files}
    assert {same_local(entry.path) for entry in listing.entries} == committed
    assert spark_read_files(spark, sink.folder) == committed
    assert orphan_part_files(spark, listing) == (f"file:{orphan}",)


def test_a_log_lacking_a_batch_is_refused_as_spark_refuses_it(spark: SparkSession, sink: Sink) -> None:
    for readings in (1, 1, 1, 1, 1):
        sink.run_batch(readings)
    os.remove(sink.folder / "_spark_metadata" / "3")

    with pytest.raises(SinkLogError, match="lacks batch 3"):
        list_input(spark, str(sink.folder))


def test_a_log_file_of_another_format_is_refused(spark: SparkSession, sink: Sink) -> None:
    sink.run_batch(2)
    (sink.folder / "_spark_metadata" / "0").write_text('v2\n{"path":"x"}')
    (sink.folder / "_spark_metadata" / ".0.crc").unlink()  # the local file system's checksum

    with pytest.raises(SinkLogError, match="not 'v1'"):
        list_input(spark, str(sink.folder))


def test_a_plain_folder_shows_files_added_rewritten_touched_and_removed(
        spark: SparkSession, tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    data = {"a.parquet": 3, "school/b.parquet": 2, "year=2024/c.parquet": 4,
            # Hidden names (Spark's index skips them), inside a key=value folder too.
            "_SUCCESS": 0, ".a.parquet.crc": 0, "_temporary/0/d.parquet": 2,
            "year=2024/_e.parquet": 1, "f.parquet._COPYING_": 1}
    for name, rows in data.items():
        write_readings(folder / name, rows)
    first = list_input(spark, str(folder))
    visible = ["a.parquet", "school/b.parquet", "year=2024/c.parquet"]
    assert first.entries == tuple(stat_entry(str(folder / name)) for name in visible)
    assert (first.is_sink, first.complete, first.latest_batch_id) == (False, True, None)

    write_readings(folder / "school" / "g.parquet", 5)  # added
    write_readings(folder / "a.parquet", 7)  # rewritten: another size
    touched = folder / "school" / "b.parquet"  # the same bytes, a later modification time
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 5_000_000_000))
    os.remove(folder / "year=2024" / "c.parquet")
    changes = compare_input(first.entries, list_input(spark, str(folder)))

    assert changes.new == (stat_entry(str(folder / "school" / "g.parquet")),)
    assert changes.changed == (stat_entry(str(folder / "a.parquet")), stat_entry(str(touched)))
    assert changes.removed == (first.entries[2],)
    assert changes.latest_batch_id is None


def test_the_same_file_spelled_with_an_empty_authority_is_unchanged(
        spark: SparkSession, tmp_path: Path) -> None:
    write_readings(tmp_path / "raw" / "a.parquet", 2)
    listing = list_input(spark, str(tmp_path / "raw"))
    stored = [InputEntry(entry.path.replace("file:/", "file:///", 1), entry.size,
                         entry.modification_time) for entry in listing.entries]

    assert compare_input(stored, listing).unchanged


def write_readings(path: Path, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sendtimes = [START + dt.timedelta(minutes=minute) for minute in range(rows)]
    pq.write_table(pa.table({"sendtime": pa.array(sendtimes, pa.timestamp("us", tz="UTC")),
                             "co2": [400.0] * rows}), path)


def same_local(path: str) -> str:
    assert path.startswith("file:/"), path
    return path[len("file:"):]


def test_a_sink_and_a_plain_folder_on_hdfs(spark: SparkSession, tmp_path: Path) -> None:
    reason = minidfs_unavailable_reason()
    if reason:
        pytest.skip(f"no MiniDFSCluster: {reason}")
    rows = build_rows(23, 8)
    for row in rows:
        if row["classroom"] == "4B":
            row["classroom"] = HOSTILE_CLASSROOM  # URL-escaped in the log
    quarter = len(rows) // 4
    batches = [rows[:quarter], rows[quarter:2 * quarter], rows[2 * quarter:3 * quarter],
               rows[3 * quarter:]]
    plain = tmp_path / "plain"
    write_readings(plain / "a.parquet", 2)
    write_readings(plain / "school" / "b.parquet", 3)
    (plain / "_SUCCESS").write_text("")
    with MiniDfs(tmp_path / "minidfs") as dfs:
        configure_spark_for_hdfs(spark)
        sink = write_streaming_sink(spark, tmp_path / "stream", batches,
                                    sink_uri=f"{dfs.uri}/iot-lorawan/raw/indoor_sensor_data")
        copy_local_dir_to_hdfs(spark, plain, f"{dfs.uri}/plain")

        listing = list_input(spark, sink.folder)
        folder_listing = list_input(spark, f"{dfs.uri}/plain")

        read_by_spark = {unquote(uri) for uri in spark.read.parquet(sink.folder).inputFiles()}
        assert {entry.path for entry in listing.entries} == read_by_spark
        assert [(entry.size, entry.modification_time) for entry in listing.entries] == \
            [hdfs_size_and_time(spark, entry.path) for entry in listing.entries]
        assert (listing.complete, listing.latest_batch_id) == (True, len(batches) - 1)
        assert set(orphan_part_files(spark, listing)) == set(sink.uncommitted)

        assert [(entry.path, entry.size) for entry in folder_listing.entries] == [
            (f"{dfs.uri}/plain/{name}", (plain / name).stat().st_size)
            for name in ("a.parquet", "school/b.parquet")]


def hdfs_size_and_time(spark: SparkSession, path: str) -> tuple[int, int]:
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    status = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()) \
        .getFileStatus(hadoop_path)
    return status.getLen(), status.getModificationTime()
