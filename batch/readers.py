"""Read the raw Parquet readings into the contract's canonical schema.

Files appended over months drift: a metric may be `int` in one file and `double` in
another, a column may be missing from older files, extra columns may appear. Spark's own
schema merge refuses differing numeric types, so the reader groups the files by the schema
in their footers, reads each group with its own schema, casts every column to the
contract's type (a column a group lacks becomes null: "not measured") and unions them.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch.contract import RAW_COLUMNS_BY_NAME, REQUIRED_COLUMNS
from batch.errors import (
    CorruptInputFileError,
    IncompatibleColumnTypeError,
    InputNotFoundError,
    MissingColumnError,
)

log = logging.getLogger(__name__)

_NUMERIC_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType,
                  T.DoubleType, T.DecimalType)
_TIMESTAMP_TYPES = (T.TimestampType, T.TimestampNTZType)
_FOOTER_READ_THREADS = 8


@dataclass(frozen=True)
class InputFiles:
    """The Parquet files under the input path, grouped by the schema in their footers."""

    root: str
    groups: tuple[tuple[str, ...], ...]
    skipped: tuple[str, ...] = ()

    @property
    def file_count(self) -> int:
        return sum(len(files) for files in self.groups)


def read_raw_readings(
    spark: SparkSession,
    path: str,
    columns: tuple[str, ...],
    skip_corrupt_files: bool = False,
) -> tuple[DataFrame, InputFiles]:
    """Readings under `path` (any URI Spark reads) with exactly `columns`, typed as the contract says."""
    input_files = discover_input_files(spark, path, skip_corrupt_files)
    group_dfs = [_read_group(spark, input_files.root, files) for files in input_files.groups]
    _require_columns(group_dfs, input_files.root)
    conformed = [_conform(df, columns, files) for df, files in zip(group_dfs, input_files.groups)]
    readings_df = conformed[0]
    for other_df in conformed[1:]:
        readings_df = readings_df.unionByName(other_df)
    return readings_df, input_files


def discover_input_files(spark: SparkSession, path: str, skip_corrupt_files: bool) -> InputFiles:
    """List the Parquet files under `path` and group them by footer schema."""
    files = _list_data_files(spark, path)
    footers = _read_footer_schemas(spark, files)
    groups: dict[str, list[str]] = defaultdict(list)
    skipped: list[str] = []
    for file, schema_or_error in zip(files, footers):
        if isinstance(schema_or_error, CorruptInputFileError):
            if not skip_corrupt_files:
                raise schema_or_error
            log.warning("skipping %s", schema_or_error)
            skipped.append(file)
            continue
        groups[schema_or_error].append(file)
    if not groups:
        raise InputNotFoundError(f"no readable Parquet file under {path}")
    return InputFiles(root=path, groups=tuple(tuple(g) for g in groups.values()),
                      skipped=tuple(skipped))


def _list_data_files(spark: SparkSession, path: str) -> list[str]:
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    try:
        fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        if not fs.exists(hadoop_path):
            raise InputNotFoundError(f"input path {path} does not exist")
        root = fs.makeQualified(hadoop_path).toString().rstrip("/")
        iterator = fs.listFiles(hadoop_path, True)
        files = []
        while iterator.hasNext():
            uri = iterator.next().getPath().toString()
            if _is_data_file(uri[len(root):]):
                files.append(uri)
    except Py4JJavaError as error:
        raise InputNotFoundError(f"cannot list input path {path}: {_java_message(error)}") from None
    if not files:
        raise InputNotFoundError(f"input path {path} holds no Parquet file")
    return sorted(files)


def _is_data_file(relative_path: str) -> bool:
    # The same rule as Spark's file index: names starting with _ or . are metadata
    # (_SUCCESS, _common_metadata, .crc files, in-progress temporary files).
    return not any(part.startswith(("_", ".")) for part in relative_path.split("/") if part)


def _read_footer_schemas(spark: SparkSession, files: list[str]) -> list[str | CorruptInputFileError]:
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()

    def footer_schema(file: str) -> str | CorruptInputFileError:
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
                f"{file} is not a readable Parquet file: {_java_message(error)}")

    # Footers are read on the driver; threads overlap the round trips to the file system.
    with ThreadPoolExecutor(max_workers=_FOOTER_READ_THREADS) as pool:
        return list(pool.map(footer_schema, files))


def _java_message(error: Py4JJavaError) -> str:
    return str(error.java_exception.toString())


def _read_group(spark: SparkSession, root: str, files: tuple[str, ...]) -> DataFrame:
    # basePath keeps partition columns (key=value directories) when files are listed one by one.
    return spark.read.option("basePath", root).parquet(*files)


def _require_columns(group_dfs: list[DataFrame], root: str) -> None:
    present = {field.name for df in group_dfs for field in df.schema.fields}
    for column in REQUIRED_COLUMNS:
        if column not in present:
            raise MissingColumnError(
                f"required column `{column}` is missing from every Parquet file under {root}; "
                f"columns found: {', '.join(sorted(present))}")


def _conform(df: DataFrame, columns: tuple[str, ...], files: tuple[str, ...]) -> DataFrame:
    stored = {field.name: field.dataType for field in df.schema.fields}
    return df.select([_conformed_column(name, stored.get(name), files) for name in columns])


def _conformed_column(name: str, stored_type: T.DataType | None, files: tuple[str, ...]):
    target = RAW_COLUMNS_BY_NAME[name].spark_type
    if stored_type is None:
        return F.lit(None).cast(target).alias(name)
    if not _convertible(stored_type, target):
        where = files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more files)"
        raise IncompatibleColumnTypeError(
            f"column `{name}` is stored as {stored_type.simpleString()} in {where}; "
            f"expected {_expected_kind(target)}")
    return F.col(name).cast(target).alias(name)


def _convertible(stored: T.DataType, target: T.DataType) -> bool:
    if isinstance(target, T.StringType):
        return isinstance(stored, T.StringType)
    if isinstance(target, T.TimestampType):
        return isinstance(stored, _TIMESTAMP_TYPES)
    return isinstance(stored, _NUMERIC_TYPES)


def _expected_kind(target: T.DataType) -> str:
    if isinstance(target, T.StringType):
        return "a string"
    if isinstance(target, T.TimestampType):
        return "a timestamp"
    return "a numeric type (int, bigint, float, double or decimal)"
