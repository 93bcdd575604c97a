"""A raw folder as the platform's streaming job leaves it, written by a real Structured Streaming
query.

`write_streaming_sink`: part files of several committed micro-batches (partition folders
included) and the sink's own `_spark_metadata/` log, compacted every COMPACT_INTERVAL batches;
then what an aborted micro-batch leaves behind: an orphan part file holding readings that a
later committed batch writes again, a part file cut off while being written, and a
`_temporary` folder of an interrupted batch write. The rows of every batch are kept, so that
tests compute the expected results from the committed readings only, independently of the
package.

`MicroBatchSink`: the same kind of query run one micro-batch at a time, so that a test can
look at the folder (or run a job on it) between two batches.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from batch.core.session import session_conf
from tests.rawdata import METRICS
from tests.support.published import write_rows

COMPACT_INTERVAL = 2
PARTITION_COLUMN = "classroom"
# A classroom whose partition folder name holds spaces, a comma and «» (URL-escaped in the log).
HOSTILE_CLASSROOM = "4B «bis», piano 1"

CONTRACT_SCHEMA = T.StructType(
    [T.StructField("DevEui", T.StringType()), T.StructField("sendtime", T.TimestampType()),
     T.StructField("institute", T.StringType()), T.StructField("classroom", T.StringType())]
    + [T.StructField(metric, T.DoubleType()) for metric in METRICS])


@dataclass(frozen=True)
class StreamingSink:
    folder: str  # a local path or a URI, as given to the jobs
    committed_rows: list[dict[str, Any]]  # every reading of every committed micro-batch
    uncommitted: tuple[str, ...]  # the part files no committed batch names, sorted, under `folder`


def write_streaming_sink(spark: SparkSession, work_dir: Path, batches: Sequence[Sequence[dict[str, Any]]],
                         sink_uri: str | None = None) -> StreamingSink:
    """Each of `batches` is one micro-batch of a streaming query from a folder of Parquet into
    the sink at `sink_uri` (any URI; default: the local folder work_dir/sink), partitioned by
    classroom.

    Before the last batch is committed, an aborted attempt of it leaves an orphan part file
    with the same readings; the restarted query then commits them.
    """
    source = work_dir / "source"
    target = sink_uri or str(work_dir / "sink")
    conf_key = "spark.sql.streaming.fileSink.log.compactInterval"
    previous = spark.conf.get(conf_key, None)
    spark.conf.set(conf_key, str(COMPACT_INTERVAL))
    try:
        write_rows(source, batches[0], "batch-00000.parquet")
        query = (spark.readStream.schema(CONTRACT_SCHEMA).option("maxFilesPerTrigger", 1).parquet(str(source))
                 .writeStream.format("parquet").partitionBy(PARTITION_COLUMN)
                 .option("checkpointLocation", str(work_dir / "checkpoint"))
                 .start(target))
        try:
            query.processAllAvailable()
            for index, rows in enumerate(batches[1:-1], start=1):
                write_rows(source, rows, f"batch-{index:05d}.parquet")
                query.processAllAvailable()
        finally:
            query.stop()
        uncommitted = _aborted_batch_leftovers(spark, work_dir / "leftovers", target, batches[-1])
        # The query is restarted (same checkpoint) and commits the last batch.
        write_rows(source, batches[-1], f"batch-{len(batches) - 1:05d}.parquet")
        query = (spark.readStream.schema(CONTRACT_SCHEMA).parquet(str(source))
                 .writeStream.format("parquet").partitionBy(PARTITION_COLUMN)
                 .option("checkpointLocation", str(work_dir / "checkpoint"))
                 .trigger(availableNow=True).start(target))
        query.awaitTermination()
    finally:
        if previous is None:
            spark.conf.unset(conf_key)
        else:
            spark.conf.set(conf_key, previous)
    return StreamingSink(target, [row for rows in batches for row in rows], tuple(sorted(uncommitted)))


def _aborted_batch_leftovers(spark: SparkSession, local: Path, sink: str,
                             rows: Sequence[dict[str, Any]]) -> list[str]:
    """What a micro-batch that died before its commit leaves: returns the uncommitted part files.

    Made in the local folder `local`, then copied into the sink by Hadoop's FileSystem.
    """
    partition = f"{PARTITION_COLUMN}={HOSTILE_CLASSROOM}"
    orphan = f"{partition}/part-00000-{uuid.uuid4()}.c000.snappy.parquet"
    orphan_rows = [row for row in rows if row["classroom"] == HOSTILE_CLASSROOM]
    written = write_rows(local, orphan_rows, "orphan") / "orphan"
    leftovers = {
        orphan: written.read_bytes(),
        # The next part file was being written when the batch died: no footer yet.
        f"{partition}/part-00001-{uuid.uuid4()}.c000.snappy.parquet":
            written.read_bytes()[: written.stat().st_size // 2],
        # A batch write's output committer stages under _temporary: hidden, never data.
        "_temporary/0/_temporary/attempt_0/part-00000.parquet": written.read_bytes(),
    }
    jvm = spark.sparkContext._jvm
    fs = jvm.org.apache.hadoop.fs.Path(sink).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    for index, (name, data) in enumerate(leftovers.items()):
        staged = local / f"leftover-{index}"
        staged.write_bytes(data)
        fs.copyFromLocalFile(False, True, jvm.org.apache.hadoop.fs.Path(staged.resolve().as_uri()),
                             jvm.org.apache.hadoop.fs.Path(f"{sink}/{name}"))
    return [f"{sink}/{name}" for name in list(leftovers)[:2]]


@dataclass
class MicroBatchSink:
    """A streaming query from a folder of Parquet files (of `schema`) into a parquet file sink,
    run one micro-batch at a time with the SQL settings `conf` (compaction interval, log
    cleanup, timestamp type), partitioned by the columns `partition_by` (none: every part file
    in the folder itself), recording which part files each batch added to the folder."""

    spark: SparkSession
    work: Path
    schema: T.StructType = CONTRACT_SCHEMA
    conf: Mapping[str, str] = field(default_factory=dict)
    partition_by: tuple[str, ...] = ()
    files_by_batch: dict[int, list[str]] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        # A space in the name: the log holds URL-encoded URIs.
        return self.work / "sink out"

    def append_batch(self, write_source: Callable[[Path], object]) -> int:
        """One micro-batch of what `write_source(path)` writes as the Parquet file `path`;
        returns the batch id."""
        batch = len(self.files_by_batch)
        source = self.work / "source"
        source.mkdir(parents=True, exist_ok=True)
        write_source(source / f"batch-{batch:05d}.parquet")
        before = set(self.part_files())
        with session_conf(self.spark, self.conf):
            query = (self.spark.readStream.schema(self.schema).option("maxFilesPerTrigger", 1)
                     .parquet(str(source)).writeStream.format("parquet").partitionBy(*self.partition_by)
                     .option("checkpointLocation", str(self.work / "checkpoint"))
                     .trigger(availableNow=True).start(str(self.folder)))
            query.awaitTermination()
        assert query.lastProgress["batchId"] == batch
        self.files_by_batch[batch] = sorted(set(self.part_files()) - before)
        assert self.files_by_batch[batch], "every micro-batch writes a part file"
        return batch

    def append_rows(self, rows: Sequence[dict[str, Any]]) -> int:
        """One micro-batch of `rows` (the columns of CONTRACT_SCHEMA)."""
        return self.append_batch(lambda path: write_rows(path.parent, rows, path.name))

    def part_files(self) -> list[str]:
        return [str(path) for path in self.folder.rglob("part-*.parquet")]

    def log_names(self) -> set[str]:
        return {path.name for path in (self.folder / "_spark_metadata").iterdir()
                if not path.name.startswith(".")}
