"""The download file: Spark writes the sorted rows as one part into a staging folder (beside
the target, or DOWNLOAD_STAGING_DIR whence it is copied beside it), which is then renamed over
the target: readers see the previous file or the complete new one (docs/downloader.md)."""
from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from py4j.protocol import Py4JError, Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from batch.core.errors import ConfigurationError, DownloadError
from batch.core.readers import undecodable_file
from batch.core.session import session_conf
from batch.core.spark_errors import root_cause_message, spark_error_chain

log = logging.getLogger(__name__)

CSV, PARQUET = "csv", "parquet"
FORMATS: tuple[str, ...] = (CSV, PARQUET)
# Parquet timestamps as INT64 microseconds marked as UTC instants, which every reader maps to a
# timestamp with time zone; Spark's default INT96 is deprecated and read back as naive nanoseconds.
_PARQUET_WRITE_CONF = {"spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}
# How long an interrupted download waits for its write to end and its tasks to stop before it
# deletes the parts folder anyway (a task ends at its next row once told to; this bounds the wait).
_CANCELLED_TASKS_WAIT_S = 30.0
_KEPT = "; the previous file is left as it was"


@dataclass(frozen=True)
class DownloadedFile:
    path: Path
    size_bytes: int
    rows: int  # counted by Spark while writing
    leftovers_removed: tuple[str, ...] = ()  # of killed earlier downloads of the same target


def csv_write_options(timezone_name: str, compress: bool) -> dict[str, str]:
    """Spark CSV writer options giving the dialect of docs/downloader.md."""
    return {
        "header": "true", "sep": ",", "quote": '"', "escapeQuotes": "true", "quoteAll": "false",
        "escape": '"',  # RFC 4180 doubles a quote inside a field; Spark's default is a backslash
        "nullValue": "", "emptyValue": '""', "encoding": "UTF-8", "lineSep": "\n",
        # Spark strips leading and trailing spaces on write by default: names would change.
        "ignoreLeadingWhiteSpace": "false", "ignoreTrailingWhiteSpace": "false",
        "timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX", "timeZone": timezone_name,
        "compression": "gzip" if compress else "none",
    }


def write_single_file(
    download_df: DataFrame, target: Path, file_format: str, compress: bool, timezone_name: str,
    staging_root: str = "", on_written: Callable[[int], None] | None = None,
) -> DownloadedFile:
    """Write `download_df`, in its order, as the single file `target`, replacing it atomically.

    `staging_root`: a folder (URI) every executor reaches; empty: beside the target.
    `on_written(rows)` is called before the file replaces the target: what it raises fails it.
    """
    if file_format not in FORMATS:
        raise ConfigurationError(f"unknown download format {file_format!r}; expected one of {FORMATS}")
    if compress and file_format != CSV:
        raise ConfigurationError("gzip compression applies to CSV; Parquet is compressed inside")
    spark, target = download_df.sparkSession, Path(target).absolute()
    if target.is_dir():
        raise DownloadError(f"the download target {target} is a directory; give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"cannot create the folder of {target}: {error.strerror}") from None
    swept = sweep_leftovers(target)
    name = f"{_safe_name(target)}.parts-{os.getpid()}-{uuid.uuid4().hex[:12]}"  # as swept
    local_parts = target.with_name(f".{name}")
    staging = f"{staging_root.rstrip('/')}/{name}" if staging_root else f"file://{local_parts}"
    written = Observation(f"download-{name}")
    try:
        # One partition, one part; a sorted single partition keeps its order.
        _write_part(download_df.coalesce(1).observe(written, F.count(F.lit(1)).alias("rows")),
                    staging, file_format, compress, timezone_name)
        rows = int(written.get["rows"])
        if on_written is not None:
            on_written(rows)
        part = _part_beside_target(spark, staging, local_parts)
        size = part.stat().st_size
        try:
            _fsync(part)
            os.replace(part, target)
            _fsync(target.parent)
        except OSError as error:
            raise DownloadError(f"cannot move the finished download to {target}: "
                                f"{error.strerror or error}{_KEPT}") from None
    finally:
        shutil.rmtree(local_parts, ignore_errors=True)
        _delete_staging(spark, staging)
    return DownloadedFile(path=target, size_bytes=size, rows=rows, leftovers_removed=swept)


def _write_part(download_df: DataFrame, staging: str, file_format: str, compress: bool,
                timezone_name: str) -> None:
    """Spark's write, in a thread of its own: an interruption cancels its jobs until it has ended."""
    failure: list[BaseException] = []

    def write() -> None:
        try:
            if file_format == CSV:
                download_df.write.options(**csv_write_options(timezone_name, compress)).csv(staging)
            else:
                with session_conf(download_df.sparkSession, _PARQUET_WRITE_CONF):
                    download_df.write.parquet(staging)
        except BaseException as error:  # noqa: BLE001 - raised again in the calling thread
            failure.append(error)

    writer = threading.Thread(target=write, name="download-write", daemon=True)
    writer.start()
    try:
        writer.join()
    except KeyboardInterrupt:
        _cancel_write(download_df.sparkSession, writer)
        raise
    if not failure:
        return
    error = failure[0]
    if not isinstance(error, (CapturedException, Py4JJavaError)) or any(
            map(undecodable_file, spark_error_chain(error))):
        raise error  # a damaged input file is not a write failure: the job names or skips it
    reason, local = root_cause_message(error), _local_path(staging)
    if local is not None:
        # Hadoop's local file system says "Mkdirs failed" without the reason: ask the OS.
        try:
            local.mkdir(parents=True, exist_ok=True)
            with open(local / ".write-probe", "wb") as probe:
                probe.write(b"x")
                os.fsync(probe.fileno())
        except OSError as problem:
            reason = f"{problem.filename}: {problem.strerror}" if problem.filename else str(problem.strerror)
    raise DownloadError(f"cannot write the download parts to {local or staging}: {reason}{_KEPT}") from None


def _part_beside_target(spark: SparkSession, staging: str, local_parts: Path) -> Path:
    """The part Spark wrote, in `local_parts` beside the target: copied there when staged elsewhere."""
    if staging == f"file://{local_parts}":
        (part,) = local_parts.glob("part-*")
        return part
    hadoop_path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path
    try:
        fs = hadoop_path(staging).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        (source,) = [status.getPath() for status in fs.listStatus(hadoop_path(staging))
                     if status.getPath().getName().startswith("part-")]
        local_parts.mkdir(exist_ok=True)
        part = local_parts / source.getName()
        fs.copyToLocalFile(False, source, hadoop_path(f"file://{part}"), True)
    except Py4JJavaError as error:
        raise DownloadError(f"cannot copy the download from {staging}: "
                            f"{root_cause_message(error)}{_KEPT}") from None
    return part


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _cancel_write(spark: SparkSession, writer: threading.Thread) -> None:
    """Cancel Spark's jobs until the write has ended and its tasks have stopped (bounded): a job
    it starts after a cancel, or a task still running, would create the parts folder again.

    The running tasks are the scheduler's, which counts a killed task until it has ended; the
    status tracker's count drops to 0 as soon as its job is cancelled.
    """
    deadline = time.monotonic() + _CANCELLED_TASKS_WAIT_S
    try:
        scheduler = spark.sparkContext._jsc.sc().taskScheduler()
        as_java = spark.sparkContext._jvm.scala.collection.JavaConverters.mapAsJavaMap
        while time.monotonic() < deadline and (
                writer.is_alive() or sum(as_java(scheduler.runningTasksByExecutors()).values())):
            spark.sparkContext.cancelAllJobs()
            time.sleep(0.05)
    except Py4JError as error:
        log.warning("cannot cancel the running Spark jobs: %s", error)


def _delete_staging(spark: SparkSession, staging: str) -> None:
    local = _local_path(staging)
    if local is not None:
        # Without the JVM: after a kill of spark-submit the gateway is already gone.
        shutil.rmtree(local, ignore_errors=True)
        return
    try:  # best effort: after an interruption the JVM may already be gone
        path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(staging)
        path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)
    except (Py4JError, AttributeError) as error:
        log.warning("cannot remove the download parts in %s: %s", staging, error)


def _local_path(uri: str) -> Path | None:
    """The local path of a `file:` URI as Hadoop prints it; None for any other file system."""
    match = re.match(r"^file:(?://)?(/.*)$", uri)
    return Path(match.group(1)) if match else None


def _safe_name(target: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", target.name)


def sweep_leftovers(target: Path) -> tuple[str, ...]:
    """Remove, and name, what downloads of `target` killed outright (no `finally` ran) left
    beside it: their parts folder (an earlier version's temporary file) of a pid that no longer
    runs. Nothing else is ever deleted."""
    name = re.escape(_safe_name(target))
    parts_folder = re.compile(rf"\.{name}\.parts-(\d+)-[0-9a-f]{{12}}")
    temporary_file = re.compile(rf"\.{name}\.(\d+)-[0-9a-f]{{12}}\.tmp")  # an earlier version's
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return ()
    for entry in entries:
        is_folder = entry.is_dir(follow_symlinks=False)
        match = (parts_folder if is_folder else temporary_file).fullmatch(entry.name)
        if match is None or entry.is_symlink() or _process_exists(int(match.group(1))):
            continue
        try:
            shutil.rmtree(entry.path) if is_folder else os.unlink(entry.path)
        except OSError as error:
            log.warning("cannot remove %s, left by a killed download: %s", entry.path, error.strerror)
            continue
        log.info("removed %s, left by a killed download (pid %s)", entry.path, match.group(1))
        removed.append(entry.name)
    return tuple(sorted(removed))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:
        pass  # it exists, owned by someone else
    return True
