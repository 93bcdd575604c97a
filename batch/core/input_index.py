"""The input files listed cheaply, as entries an incremental run compares with the index it stored.

A Structured Streaming file-sink folder is listed from its `_spark_metadata/` log, read here
through Hadoop's FileSystem API (any file system Spark reads: HDFS, local, object stores), the
way Spark's own MetadataLogFileIndex reads it (Spark 3.5, CompactibleFileStreamLog and
FileStreamSinkLog):
- one log file per committed micro-batch, named by its batch id; every `compactInterval`-th
  batch (`(id + 1) % interval == 0`) is written as `<id>.compact` instead, holding the entries of
  every earlier batch plus its own (without their batch ids); delta files before a compaction
  may be deleted once `minBatchesToRetain` batches have followed, so only the latest compaction
  plus the delta files after it are sure to exist;
- each log file is the line `v1`, then one JSON SinkFileStatus a line: `path` (the URI the query
  wrote, URL-encoded), `size`, `isDir`, `modificationTime` (ms), `blockReplication`, `blockSize`,
  `action` ("add"; Spark before 3.1 could also write "delete", which removes the path);
- a file is written under a temporary name and renamed, so a listed log file is complete.
The log names the files of committed batches only: a part file it does not name is an orphan
of a micro-batch that failed before its commit (readers.py reports them as uncommitted), never
data. When the caller has a state (the last batch id it read), only the delta files after that
batch are read, unless a compaction came since (its entries carry no batch ids: then the latest
compaction and what follows are read and the comparison with the stored index finds the new
files by path). Either way the data folders are never listed.

A plain folder is listed recursively with the hidden-name rule of Spark's file index.

Each file's rows and [min, max] `sendtime` are not read here: footer statistics do not bound
Spark's default INT96 timestamps, so the incremental run (batch/analysis/incremental.py)
computes them in Spark when it reads a file.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from batch.core.errors import InputError, InputNotFoundError
from batch.core.readers import SINK_LOG_DIR, _is_data_file, existing_folder, hadoop_path, same_file
from batch.core.spark_errors import spark_error_chain

# The sink log's format, FileStreamSinkLog.VERSION (Spark 2.0 to 3.5).
SINK_LOG_VERSION = "v1"
COMPACT_SUFFIX = ".compact"
_ADD, _DELETE = "add", "delete"


class SinkLogError(InputError):
    """The `_spark_metadata/` log of a streaming sink folder cannot be read as Spark writes it."""


@dataclass(frozen=True)
class InputEntry:
    """One input file: its Hadoop path, size (bytes) and modification time (ms since the epoch).

    `sink_batch_id`: the micro-batch whose delta log file names it; None in a plain folder, and
    for a file named only in a compaction file (which does not say which batch added it).
    """

    path: str
    size: int
    modification_time: int
    sink_batch_id: int | None = None


@dataclass(frozen=True)
class InputListing:
    """The input files of `root`, as a listing for `compare_input`.

    `complete`: every input file is listed; otherwise only the files of the sink batches after
    `after_batch_id` (the caller's last one), so no file can be found removed.
    `latest_batch_id`: the highest committed batch in the sink log (None: a plain folder, or a
    sink that committed nothing yet).
    """

    root: str
    is_sink: bool
    entries: tuple[InputEntry, ...]
    complete: bool
    latest_batch_id: int | None = None
    after_batch_id: int | None = None
    # The latest batch's log file as `log_file_marker` gives it: a later listing that finds
    # another file under that batch id knows the sink was recreated.
    latest_batch_marker: str | None = None


@dataclass(frozen=True)
class InputChanges:
    """What changed in the input since the stored index: new, changed (size or modification
    time) and removed files, and the highest sink batch id the current listing holds."""

    new: tuple[InputEntry, ...]
    changed: tuple[InputEntry, ...]
    removed: tuple[InputEntry, ...]
    latest_batch_id: int | None

    @property
    def unchanged(self) -> bool:
        return not (self.new or self.changed or self.removed)


def list_input(spark: SparkSession, path: str, after_batch_id: int | None = None,
               after_batch_marker: str | None = None) -> InputListing:
    """The input files under `path`: a sink folder's committed files, or a plain folder's files.

    `after_batch_id`: the last sink batch the caller has read; only later batches are listed
    when the log allows it (see the module's docstring) and, given `after_batch_marker`, when
    that batch's log file is still the one the caller read (a sink deleted and started again
    may have grown past it: then every committed file is listed).
    """
    jvm = spark.sparkContext._jvm
    try:
        fs, root = existing_folder(spark, path)
        log_dir = jvm.org.apache.hadoop.fs.Path(root, SINK_LOG_DIR)
        if not fs.isDirectory(log_dir):
            return InputListing(root=path, is_sink=False, entries=_list_folder(fs, root),
                                complete=True)
        return _list_sink(jvm, fs, path, log_dir, after_batch_id, after_batch_marker)
    except Py4JJavaError as error:
        raise InputNotFoundError(f"cannot list input path {path}: {spark_error_chain(error)[0]}") from None


def orphan_part_files(spark: SparkSession, listing: InputListing) -> tuple[str, ...]:
    """Data files in a sink folder that its log does not name (a full listing of the folder:
    for reports, not needed to find the input)."""
    if not (listing.is_sink and listing.complete):
        raise ValueError("orphans are only defined against a complete listing of a sink folder")
    jvm = spark.sparkContext._jvm
    root = jvm.org.apache.hadoop.fs.Path(listing.root)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    committed = {same_file(entry.path) for entry in listing.entries}
    return tuple(entry.path for entry in _list_folder(fs, root)
                 if same_file(entry.path) not in committed)


def compare_input(stored: Iterable[InputEntry], listing: InputListing) -> InputChanges:
    """New, changed and removed files of `listing` against the `stored` index (a pure function).

    Files are matched by path whatever the spelling of their file system's authority; a file
    is changed when its size or modification time differs. A listing of only the batches after
    the caller's last one (`complete` false) cannot show a removal.
    """
    known = {same_file(entry.path): entry for entry in stored}
    current = {same_file(entry.path): entry for entry in listing.entries}
    new, changed = [], []
    for key, entry in current.items():
        before = known.get(key)
        if before is None:
            new.append(entry)
        elif (before.size, before.modification_time) != (entry.size, entry.modification_time):
            changed.append(entry)
    removed = [entry for key, entry in known.items() if key not in current] if listing.complete else []
    return InputChanges(new=tuple(new), changed=tuple(changed), removed=tuple(removed),
                        latest_batch_id=listing.latest_batch_id)


def _list_folder(fs: Any, root: Any) -> tuple[InputEntry, ...]:
    """Every data file under `root` (recursively), by the hidden-name rule of Spark's index."""
    prefix = fs.makeQualified(root).toString().rstrip("/")
    entries = []
    folders = [root]
    while folders:
        # listStatus, not listFiles: on the local file system, listFiles' located statuses
        # load each file's permissions by forking a process (seconds for a few hundred files).
        for status in fs.listStatus(folders.pop()):
            path = status.getPath()
            name = path.toString()
            if not _is_data_file(name[len(prefix):]):
                continue  # a hidden folder's files are all hidden: it is not even listed
            if status.isDirectory():
                folders.append(path)
            else:
                entries.append(InputEntry(name, status.getLen(), status.getModificationTime()))
    return tuple(sorted(entries, key=lambda entry: entry.path))


def _list_sink(jvm: Any, fs: Any, path: str, log_dir: Any, after_batch_id: int | None,
               after_batch_marker: str | None) -> InputListing:
    statuses = _log_files(fs, log_dir)
    log_files = {batch_id: status.getPath().getName() for batch_id, status in statuses.items()}
    if not log_files:
        return InputListing(root=path, is_sink=True, entries=(), complete=True)
    latest = max(log_files)
    compactions = [batch_id for batch_id, name in log_files.items() if name.endswith(COMPACT_SUFFIX)]
    last_compaction = max(compactions, default=-1)
    same_log = after_batch_marker is None or (
        after_batch_id in statuses and log_file_marker(statuses[after_batch_id]) == after_batch_marker)
    if after_batch_id is not None and last_compaction <= after_batch_id <= latest and same_log:
        # Every batch after the caller's last one is still a delta file of its own.
        batch_ids = range(after_batch_id + 1, latest + 1)
        complete = False
    else:
        # No state, a compaction since (it merges batches without their ids), or a log that
        # starts again below the caller's last batch or holds another file under it (the sink
        # was recreated): what Spark's index reads, the latest compaction and the deltas after it.
        batch_ids = range(max(last_compaction, 0), latest + 1)
        complete = True
    entries: dict[str, InputEntry] = {}
    for batch_id in batch_ids:
        name = log_files.get(batch_id)
        if name is None:
            raise SinkLogError(
                f"the streaming sink log {log_dir.toString()} lacks batch {batch_id} (its latest "
                f"is {latest}): it was deleted or the log is damaged; Spark's own reader fails too")
        compacted = name.endswith(COMPACT_SUFFIX)
        for status in _read_log_file(jvm, fs, log_dir, name):
            file = hadoop_path(status["path"])
            if status.get("action", _ADD) == _DELETE:
                entries.pop(same_file(file), None)
            elif not status.get("isDir", False):
                entries[same_file(file)] = InputEntry(
                    file, int(status["size"]), int(status["modificationTime"]),
                    None if compacted else batch_id)
    return InputListing(root=path, is_sink=True,
                        entries=tuple(sorted(entries.values(), key=lambda entry: entry.path)),
                        complete=complete, latest_batch_id=latest,
                        after_batch_id=None if complete else after_batch_id,
                        latest_batch_marker=log_file_marker(statuses[latest]))


def log_file_marker(status: Any) -> str:
    """A sink log file (Hadoop FileStatus) as name, size and modification time: a log file is
    written once, under a temporary name, then renamed."""
    return f"{status.getPath().getName()}:{status.getLen()}:{status.getModificationTime()}"


def _log_files(fs: Any, log_dir: Any) -> dict[int, Any]:
    """{batch id: FileStatus} of the sink log; other names (.crc, temporary files) are not batches."""
    files = {}
    for status in fs.listStatus(log_dir):
        name = status.getPath().getName()
        stem = name[:-len(COMPACT_SUFFIX)] if name.endswith(COMPACT_SUFFIX) else name
        if stem.isdigit():
            files[int(stem)] = status
    return files


def _read_log_file(jvm: Any, fs: Any, log_dir: Any, name: str) -> list[dict[str, Any]]:
    log_file = jvm.org.apache.hadoop.fs.Path(log_dir, name)
    file = log_file.toString()
    try:
        stream = fs.open(log_file)
        try:
            # One gateway call for the whole file (py4j hands a byte[] over as bytes).
            text = bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(stream)).decode("utf-8")
        finally:
            stream.close()
    except Py4JJavaError as error:
        raise SinkLogError(f"cannot read the streaming sink log file {file}: "
                           f"{spark_error_chain(error)[0]}") from None
    lines = text.split("\n")
    if lines[0] != SINK_LOG_VERSION:
        raise SinkLogError(
            f"{file} starts with {lines[0][:20]!r}, not {SINK_LOG_VERSION!r}: not a streaming "
            "sink log this version reads")
    try:
        return [json.loads(line) for line in lines[1:] if line]
    except json.JSONDecodeError as error:
        raise SinkLogError(f"{file} holds a line that is not JSON: {error}") from None

