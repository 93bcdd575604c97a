"""One ordered file from Spark's parts: Spark sorts and writes the parts, the driver joins them.

Spark writes the ordered parts into a staging folder; the driver joins them, in order, into a
temporary file beside the target (CSV: the bytes of each part behind one header; Parquet:
the row groups of each part, with pyarrow), and renames it over the target at the very end.
Parts on another file system (HDFS) are first copied to this machine one at a time through
the Hadoop FileSystem API; each part is deleted once joined, so the disk holds the file and
at most the parts not yet joined. Nothing is collected on the driver.

CSV dialect (RFC 4180, UTF-8, no byte-order mark):
- one header line with the column names; records end with LF (Spark's CSV writer cannot
  emit CRLF; every CSV reader accepts LF);
- a field is quoted when it holds a comma, a quote, CR or LF (or starts with `#`), and a
  quote inside a field is doubled - Spark's default escape is a backslash, which is not
  RFC 4180, hence `escape='"'`; leading and trailing spaces are kept (Spark strips them
  by default);
- null is an empty field; an empty string is `""`;
- timestamps are ISO-8601 with microseconds and the UTC offset of the instant in
  BATCH_TIMEZONE (`2024-10-01T08:00:00.000000+02:00`; `Z` when the offset is zero);
- floating-point values are written by Java's `Double.toString`, which always reads back
  as the same double; a value stored as a 32-bit float is downloaded as the exact double of
  that float (the reader widens it), e.g. a float 21.3 is `21.299999237060547`.
"""
from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from py4j.protocol import Py4JError, Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from batch.download import parts
from batch.download.sweep import sweep_leftovers
from batch.core.errors import ConfigurationError, DownloadError
from batch.core.readers import undecodable_file
from batch.core.session import session_conf
from batch.core.spark_errors import root_cause_message, spark_error_chain

log = logging.getLogger(__name__)

CSV = "csv"
PARQUET = "parquet"
FORMATS: tuple[str, ...] = (CSV, PARQUET)
TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"
# Parquet timestamps as INT64 microseconds marked as UTC instants, which every reader maps to a
# timestamp with time zone; Spark's default INT96 is deprecated and read back as naive nanoseconds.
_PARQUET_WRITE_CONF: dict[str, str] = {"spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}
# How long an interrupted download waits for its cancelled tasks to stop before it deletes
# their parts anyway (a task ends at its next row once told to; this bounds the wait).
_CANCELLED_TASKS_WAIT_S = 30.0


@dataclass(frozen=True)
class DownloadedFile:
    """A published download file."""

    path: Path
    size_bytes: int
    parts: int
    rows: int  # counted by Spark while writing the parts
    leftovers_removed: tuple[str, ...] = ()  # of killed earlier downloads of the same target


def csv_write_options(timezone_name: str, compress: bool) -> dict[str, str]:
    """Spark CSV writer options giving the dialect described in the module docstring."""
    return {
        "header": "false",  # the join writes one header, not one per part
        "sep": ",", "quote": '"',
        "escape": '"',  # RFC 4180 doubles a quote inside a field; Spark's default is a backslash
        "escapeQuotes": "true", "quoteAll": "false", "nullValue": "", "emptyValue": '""',
        # Spark strips leading and trailing spaces on write by default: names would change.
        "ignoreLeadingWhiteSpace": "false", "ignoreTrailingWhiteSpace": "false",
        "encoding": "UTF-8", "lineSep": "\n",
        "timestampFormat": TIMESTAMP_FORMAT, "timeZone": timezone_name,
        # Gzip members can be concatenated (RFC 1952): each part compresses in parallel.
        "compression": "gzip" if compress else "none",
    }


def csv_header(columns: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(columns)
    return buffer.getvalue().encode("utf-8")


def write_single_file(
    download_df: DataFrame, target: Path, file_format: str, compress: bool, timezone_name: str,
    staging_root: str = "", on_written: Callable[[int], None] | None = None,
) -> DownloadedFile:
    """Write `download_df` in its order as the single file `target`, replacing it atomically.

    `staging_root`: a folder (URI) every executor reaches, where Spark writes the parts; empty:
    beside the target. On any failure or interruption the temporary file and the parts are
    removed and the previous target is left as it was. `on_written(rows)` is called once the
    parts are written (rows counted by Spark as it wrote them), before anything is joined:
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
    # The names sweep_leftovers recognises: a dot-file and a dot-folder beside the target.
    token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", target.name)
    temporary = target.with_name(f".{safe_name}.{token}.tmp")
    local_parts = target.with_name(f".{safe_name}.parts-{token}")
    staging = (f"{staging_root.rstrip('/')}/{safe_name}.parts-{token}" if staging_root
               else f"file://{local_parts}")
    try:
        written = Observation(f"download-{token}")
        _write_parts(download_df.observe(written, F.count(F.lit(1)).alias("rows")),
                     staging, file_format, compress, timezone_name)
        rows = int(written.get["rows"])
        if on_written is not None:
            on_written(rows)
        in_order = parts.local_parts_in_order(spark, staging, local_parts)
        if file_format == CSV:
            header = csv_header(download_df.columns)
            part_count = parts.concatenate(gzip.compress(header, mtime=0) if compress else header,
                                           in_order, temporary)
        else:
            part_count = parts.merge_parquet(in_order, temporary, rows)
        size = temporary.stat().st_size
        _publish(temporary, target)
    except KeyboardInterrupt:
        _cancel_jobs(spark)  # so that no task keeps writing parts while they are deleted
        raise
    finally:
        _remove_quietly(temporary)
        shutil.rmtree(local_parts, ignore_errors=True)
        _delete_staging(spark, staging)
    return DownloadedFile(path=target, size_bytes=size, parts=part_count, rows=rows,
                          leftovers_removed=swept)


def _write_parts(download_df: DataFrame, staging: str, file_format: str, compress: bool,
                 timezone_name: str) -> None:
    try:
        if file_format == CSV:
            download_df.write.mode("errorifexists").options(
                **csv_write_options(timezone_name, compress)).csv(staging)
        else:
            with session_conf(download_df.sparkSession, _PARQUET_WRITE_CONF):
                download_df.write.mode("errorifexists").parquet(staging)
    except (CapturedException, Py4JJavaError) as error:
        if any(map(undecodable_file, spark_error_chain(error))):
            raise  # a damaged input file, not a write failure: the job names or skips it
        reason = root_cause_message(error)
        local = parts.local_path(staging)
        if local is not None:
            # Hadoop's local file system says "Mkdirs failed" without the reason: ask the OS.
            reason = _local_write_problem(local) or reason
        raise DownloadError(f"cannot write the download parts to {local or staging}: {reason}; "
                            "the previous file is left as it was") from None


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


def _publish(temporary: Path, target: Path) -> None:
    """Make the complete temporary file durable, then rename it over the target."""
    try:
        _fsync(temporary)
        os.replace(temporary, target)
        _fsync(target.parent)
    except OSError as error:
        raise DownloadError(f"cannot move the finished download to {target}: "
                            f"{error.strerror or error}; the previous file is left as it was") from None


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
    local = parts.local_path(staging)
    if local is not None:
        # Without the JVM: after a kill of spark-submit the gateway is already gone.
        shutil.rmtree(local, ignore_errors=True)
        return
    try:  # best effort: after an interruption the JVM may already be gone
        path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(staging)
        path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)
    except (Py4JError, AttributeError) as error:
        log.warning("cannot remove the download parts in %s: %s", staging, error)
