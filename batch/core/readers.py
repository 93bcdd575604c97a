"""Read the raw Parquet readings into the contract's canonical schema.

Which files: exactly those Spark's own batch reader reads (a streaming sink folder's committed
files only); files whose schemas drift are read per footer schema, cast to the contract's types
and unioned, since Spark's own schema merge refuses differing numeric types. The rules, step by
step: docs/analysis.md, "Read".
"""
from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import reduce
from typing import Any, TypeVar
from urllib.parse import unquote

from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch.core.contract import RAW_COLUMNS_BY_NAME, REQUIRED_COLUMNS
from batch.core.errors import (
    CorruptInputFileError,
    IncompatibleColumnTypeError,
    InputError,
    InputNotFoundError,
    MissingColumnError,
)
from batch.core.spark_errors import spark_error_chain

log = logging.getLogger(__name__)

Result = TypeVar("Result")

# The stored types each contract type is cast from, and how a message names them.
_CASTABLE: dict[type, tuple[tuple[type, ...], str]] = {
    T.StringType: ((T.StringType,), "a string"),
    T.TimestampType: ((T.TimestampType, T.TimestampNTZType), "a timestamp"),
}
_NUMBERS = ((T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType,
             T.DecimalType), "a numeric type (int, bigint, float, double or decimal)")
_FOOTER_READ_THREADS = 8
# The folder of a Structured Streaming file sink's log (FileStreamSink.metadataDir).
SINK_LOG_DIR = "_spark_metadata"
# How many file names a message or summary lists; the counts are always complete.
LISTED_FILES = 5
# How Spark names a file it cannot decode (a damaged page behind an intact footer).
_UNDECODABLE_FILE = re.compile(r"Encountered error while reading file (.+?)\. Details")
_EMPTY_AUTHORITY = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):///")
_SCHEME_AND_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//[^/]*)?")


@dataclass(frozen=True)
class InputFiles:
    """The Parquet files read under the input path, grouped by the schema in their footers."""

    root: str
    groups: tuple[tuple[str, ...], ...]
    skipped: tuple[str, ...] = ()
    # Part files in a streaming sink folder that its log does not name: not read.
    uncommitted: tuple[str, ...] = ()
    # Files lacking a required column that other files have: read, their rows excluded.
    lacking_required: tuple[str, ...] = ()


def first_names(files: tuple[str, ...]) -> str:
    """The first few of `files`, for a message."""
    return ", ".join(files[:LISTED_FILES]) + (" ..." if len(files) > LISTED_FILES else "")


def file_listing(files: tuple[str, ...]) -> dict[str, Any]:
    """`files` for a summary: how many, and the first few names."""
    return {"count": len(files), "first": list(files[:LISTED_FILES])}


def undecodable_file(spark_message: str) -> str | None:
    """The file a failed Spark job could not decode, if its message names one."""
    found = _UNDECODABLE_FILE.search(spark_message)
    return found.group(1) if found else None


def without_damaged_files(attempt: Callable[[tuple[str, ...]], Result],
                          skip_corrupt_files: bool) -> Result:
    """`attempt(unreadable)`, made again without each file a Spark job of it could not decode.

    A page damaged behind an intact footer is found only when a job reads it; Spark then
    names the file in one of the causes of its failure, at a depth that depends on the action.
    With `skip_corrupt_files` the file is added to `unreadable` (left out, reported skipped,
    like an unreadable footer) and the whole attempt made again, the input read anew;
    otherwise, or when a file left out is named again, a CorruptInputFileError names it.
    """
    unreadable: tuple[str, ...] = ()
    while True:
        try:
            return attempt(unreadable)
        except (Py4JJavaError, CapturedException) as error:
            causes = spark_error_chain(error)
            file = next(filter(None, map(undecodable_file, causes)), None)
            if file is None:
                raise
            reason = f" ({causes[-1]})" if len(causes) > 1 else ""
            damaged = CorruptInputFileError(
                f"{file} is not a readable Parquet file: its data cannot be decoded{reason}")
            if not skip_corrupt_files or file in unreadable:
                raise damaged from None
            log.warning("skipping %s", damaged)
            unreadable += (file,)


def read_raw_readings(
    spark: SparkSession,
    path: str,
    columns: tuple[str, ...],
    skip_corrupt_files: bool = False,
    unreadable: tuple[str, ...] = (),
    files: tuple[str, ...] | None = None,
) -> tuple[DataFrame | None, InputFiles]:
    """Readings under `path` (any URI Spark reads) with exactly `columns`, typed as the contract says.

    `unreadable` names files already found damaged (SKIP_CORRUPT_FILES): left out, reported skipped.
    `files`: only these files under `path` (an incremental run's), instead of every input file:
    none of them readable gives no DataFrame, and a required column they all lack makes them
    files lacking it (the input's other files have it: the run that stored them read it).
    """
    input_files = discover_input_files(spark, path, skip_corrupt_files, unreadable, files)
    if not input_files.groups:
        return None, input_files
    # basePath keeps partition columns (key=value folders) when files are listed one by one.
    group_dfs = [spark.read.option("basePath", input_files.root).parquet(*files)
                 for files in input_files.groups]
    input_files = _require_columns(group_dfs, input_files, some_of_the_input=files is not None)
    conformed = [_conform(df, columns, files) for df, files in zip(group_dfs, input_files.groups)]
    return reduce(DataFrame.unionByName, conformed), input_files


def discover_input_files(spark: SparkSession, path: str, skip_corrupt_files: bool,
                         unreadable: tuple[str, ...] = (),
                         only: tuple[str, ...] | None = None) -> InputFiles:
    """The files Spark's reader reads under `path` (or `only` these), grouped by footer schema."""
    files, uncommitted = _list_input_files(spark, path) if only is None else (list(only), ())
    if uncommitted:
        log.warning(
            "%d part file(s) under %s are not in its streaming sink log (%s/): written by "
            "micro-batches that failed before their commit, whose readings the restarted query "
            "wrote again; not read: %s", len(uncommitted), path, SINK_LOG_DIR,
            first_names(uncommitted))
    # Spark names a file it cannot decode by its URL-encoded path.
    damaged = {same_file(unquote(file)) for file in unreadable}
    skipped: list[str] = [file for file in files if same_file(file) in damaged]
    readable = [file for file in files if same_file(file) not in damaged]
    footers = _read_footer_schemas(spark, readable)
    groups: dict[str, list[str]] = defaultdict(list)
    for file, schema_or_error in zip(readable, footers):
        if isinstance(schema_or_error, CorruptInputFileError):
            if not skip_corrupt_files:
                raise schema_or_error
            log.warning("skipping %s", schema_or_error)
            skipped.append(file)
            continue
        groups[schema_or_error].append(file)
    if not groups and only is None:
        raise InputNotFoundError(f"no readable Parquet file under {path}")
    return InputFiles(root=path, groups=tuple(tuple(g) for g in groups.values()),
                      skipped=tuple(skipped), uncommitted=uncommitted)


def _list_input_files(spark: SparkSession, path: str) -> tuple[list[str], tuple[str, ...]]:
    """(the files Spark's reader reads, the uncommitted part files of a sink folder)."""
    jvm = spark.sparkContext._jvm
    try:
        fs, folder = existing_folder(spark, path)
        is_sink = fs.isDirectory(jvm.org.apache.hadoop.fs.Path(folder, SINK_LOG_DIR))
        files = _spark_input_files(spark, path)
        if not files:
            if is_sink:
                raise InputNotFoundError(
                    f"input path {path} is a streaming sink whose log ({SINK_LOG_DIR}/) names no "
                    "committed file yet")
            raise InputNotFoundError(f"input path {path} holds no Parquet file")
        uncommitted: tuple[str, ...] = ()
        if is_sink:
            committed = {same_file(file) for file in files}
            uncommitted = tuple(file for file in _data_files(fs, folder) if same_file(file) not in committed)
    except Py4JJavaError as error:
        raise InputNotFoundError(f"cannot list input path {path}: {spark_error_chain(error)[0]}") from None
    return files, uncommitted


def existing_folder(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """(the Hadoop FileSystem of `path`, its Path); InputNotFoundError if nothing is there.
    Java errors are the caller's to word."""
    folder = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)
    fs = folder.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(folder):
        raise InputNotFoundError(f"input path {path} does not exist")
    return fs, folder


def _spark_input_files(spark: SparkSession, path: str) -> list[str]:
    # A schema given up front: the file index is built (sink log, hidden files) without
    # inferring a schema, i.e. without reading any footer. Without a sink log, Spark's index
    # lists only the files directly in the folder unless it has key=value partition folders;
    # a recursive lookup lists every data file under it, whatever the folders are named
    # (partition values are read from the folder names when each group is read).
    any_schema = T.StructType([T.StructField(REQUIRED_COLUMNS[0], T.StringType())])
    try:
        uris = (spark.read.schema(any_schema).option("recursiveFileLookup", "true")
                .parquet(path).inputFiles())
    except (Py4JJavaError, CapturedException) as error:
        raise InputError(f"cannot list the Parquet files of {path}: "
                         f"{spark_error_chain(error)[0]}") from None
    return sorted(map(hadoop_path, uris))


def hadoop_path(uri: str) -> str:
    """A URI as Spark's file index or a sink log gives it (a space is %20, file:///x) as a
    Hadoop path (file:/x), the spelling the file system lists and every other step takes."""
    return _EMPTY_AUTHORITY.sub(r"\1:/", unquote(uri))


def same_file(file: str) -> str:
    """`file` (a Hadoop path) as a key that is equal for every spelling of its file system."""
    # The sink log holds the URIs the streaming query wrote, whose authority may be spelled
    # differently (a host name for an address, file:/// for file:/) from the path given here.
    return _SCHEME_AND_AUTHORITY.sub("", file)


def _data_files(fs: Any, folder: Any) -> list[str]:
    """Every data file under `folder` (Hadoop's FileSystem and Path), committed or not, by the
    hidden-name rule of Spark's index."""
    root = fs.makeQualified(folder).toString().rstrip("/")
    iterator = fs.listFiles(folder, True)
    files = []
    while iterator.hasNext():
        uri = iterator.next().getPath().toString()
        if _is_data_file(uri[len(root):]):
            files.append(uri)
    return sorted(files)


def _is_data_file(relative_path: str) -> bool:
    # The rule of Spark's file index (InMemoryFileIndex.shouldFilterOutPathName): names
    # starting with _ (unless a key=value folder) or . are metadata (_SUCCESS, the sink log,
    # .crc files, in-progress temporary files), as are files still being copied.
    parts = [part for part in relative_path.split("/") if part]
    return not any((part.startswith("_") and "=" not in part) or part.startswith(".")
                   or part.endswith("._COPYING_") for part in parts)


def _read_footer_schemas(spark: SparkSession, files: list[str]) -> list[str | CorruptInputFileError]:
    """The schema in each file's Parquet footer (parquet-hadoop, through the JVM: any Hadoop
    file system), in the order of `files`; an unreadable file gives the error that names it."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()

    def schema(file: str) -> str | CorruptInputFileError:
        try:
            input_file = jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(
                jvm.org.apache.hadoop.fs.Path(file), conf)
            reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(input_file)
            try:
                return reader.getFooter().getFileMetaData().getSchema().toString()
            finally:
                reader.close()
        except Py4JJavaError as error:
            return CorruptInputFileError(
                f"{file} is not a readable Parquet file: {spark_error_chain(error)[0]}")

    # Footers are read on the driver; threads overlap the round trips to the file system.
    with ThreadPoolExecutor(max_workers=_FOOTER_READ_THREADS) as pool:
        return list(pool.map(schema, files))


def _require_columns(group_dfs: list[DataFrame], input_files: InputFiles,
                     some_of_the_input: bool = False) -> InputFiles:
    """Refuse a required column missing everywhere (unless these files are `some_of_the_input`);
    name the files lacking one other files have."""
    schemas = [{field.name for field in df.schema.fields} for df in group_dfs]
    present = set().union(*schemas)
    for column in REQUIRED_COLUMNS:
        if column not in present and not some_of_the_input:
            raise MissingColumnError(
                f"required column `{column}` is missing from every Parquet file under "
                f"{input_files.root}; columns found: {', '.join(sorted(present))}")
    lacking = tuple(sorted(
        file for names, files in zip(schemas, input_files.groups)
        if not set(REQUIRED_COLUMNS) <= names for file in files))
    if lacking:
        missing = sorted({column for names in schemas for column in REQUIRED_COLUMNS
                          if column not in names})
        log.warning(
            "%d file(s) under %s lack required column(s) %s that other files have: their "
            "readings cannot be attributed and are excluded (a fault of the writing pipeline): "
            "%s", len(lacking), input_files.root, ", ".join(f"`{c}`" for c in missing),
            first_names(lacking))
    return replace(input_files, lacking_required=lacking)


def _conform(df: DataFrame, columns: tuple[str, ...], files: tuple[str, ...]) -> DataFrame:
    stored = {field.name: field.dataType for field in df.schema.fields}
    return df.select([_conformed_column(name, stored.get(name), files) for name in columns])


def _conformed_column(name: str, stored_type: T.DataType | None, files: tuple[str, ...]):
    target = RAW_COLUMNS_BY_NAME[name].spark_type
    if stored_type is None:
        return F.lit(None).cast(target).alias(name)
    castable, expected = _CASTABLE.get(type(target), _NUMBERS)
    if not isinstance(stored_type, castable):
        where = files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more files)"
        raise IncompatibleColumnTypeError(
            f"column `{name}` is stored as {stored_type.simpleString()} in {where}; expected {expected}")
    return F.col(name).cast(target).alias(name)
