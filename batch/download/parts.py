"""Spark's part files of a download: back on this machine in the order of their data, then joined.

Each part is deleted once joined, so the disk holds the file and the parts not yet joined.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from batch.core.errors import DownloadError
from batch.core.spark_errors import root_cause_message

COPY_BUFFER_BYTES = 1 << 20
ROWS_PER_ROW_GROUP = 131_072  # about 70 MiB decoded for the 20 contract columns
_PART = re.compile(r"^part-(\d+)(?:.*-c(\d+)\.)?")


def part_sort_key(name: str) -> tuple[int, int, str]:
    """(partition, file counter, name) of `part-00007-<uuid>-c000.csv`: numeric, so part 100000 follows 99999."""
    match = _PART.match(name)
    if match is None:
        raise DownloadError(f"unexpected file name {name!r} among the download parts")
    return int(match.group(1)), int(match.group(2) or 0), name


def local_parts_in_order(spark: SparkSession, staging: str, local_parts: Path) -> Iterator[Path]:
    """Spark's part files in the order of their data, each as a local file.

    Parts elsewhere (HDFS) are copied into `local_parts` one at a time, through the Hadoop
    FileSystem API, as they are needed.
    """
    local = local_path(staging)
    if local is not None:
        names = [entry.name for entry in os.scandir(local) if entry.is_file()]
        for name in sorted((name for name in names if name.startswith("part-")), key=part_sort_key):
            yield local / name
        return
    jvm = spark.sparkContext._jvm
    folder = jvm.org.apache.hadoop.fs.Path(staging)
    try:
        fs = folder.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        found = [status.getPath() for status in fs.listStatus(folder) if status.isFile()]
        local_parts.mkdir(exist_ok=True)
        for path in sorted((path for path in found if path.getName().startswith("part-")),
                           key=lambda path: part_sort_key(path.getName())):
            copy = local_parts / path.getName()
            fs.copyToLocalFile(False, path, jvm.org.apache.hadoop.fs.Path(f"file://{copy}"), True)
            yield copy
    except Py4JJavaError as error:
        raise DownloadError(f"cannot read the download parts in {staging}: {root_cause_message(error)}") from None


def concatenate(header: bytes, parts: Iterator[Path], temporary: Path) -> int:
    """`header`, then every part, byte for byte, into `temporary` (never an existing file); the parts joined."""
    count = 0
    try:
        with open(temporary, "xb") as out:
            out.write(header)
            for part in parts:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, out, COPY_BUFFER_BYTES)
                part.unlink()  # the disk holds the file and the parts not yet joined
                count += 1
    except OSError as error:
        raise DownloadError(f"assembling {temporary} from the parts failed: "
                            f"{error.filename or temporary}: {error.strerror}") from None
    return count


def merge_parquet(parts: Iterator[Path], temporary: Path, rows: int) -> int:
    """The row groups of every part, in order, into one Parquet file; the parts joined.

    Rows are copied in batches of ROWS_PER_ROW_GROUP, each written as a row group: one batch
    decoded is what the driver holds (a Spark row group of 128 MiB, dictionary-encoded, can
    decode to gigabytes). Spark's schema travels in the key-value metadata of the Arrow
    schema, so that Spark reads the file back as it wrote it.
    """
    writer: pq.ParquetWriter | None = None
    count = merged = 0
    try:
        for part in parts:
            source = pq.ParquetFile(part)
            if writer is None:
                writer = pq.ParquetWriter(temporary, source.schema_arrow)
            for batch in source.iter_batches(batch_size=ROWS_PER_ROW_GROUP):
                writer.write_batch(batch)
            merged += source.metadata.num_rows
            part.unlink()
            count += 1
    except OSError as error:
        raise DownloadError(f"assembling {temporary} from the Parquet parts failed: "
                            f"{error.filename or temporary}: {error.strerror or error}") from None
    finally:
        if writer is not None:
            writer.close()
    if merged != rows:
        raise DownloadError(f"the assembled Parquet file holds {merged:,} rows where Spark wrote "
                            f"{rows:,}; the previous file is left as it was")
    return count


def local_path(uri: str) -> Path | None:
    """The local path of a `file:` URI as Hadoop prints it; None for any other file system."""
    match = re.match(r"^file:(?://)?(/.*)$", uri)
    return Path(match.group(1)) if match else None
