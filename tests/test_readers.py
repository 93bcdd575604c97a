"""batch/core/readers.py without_damaged_files: the one retry both jobs make without a file Spark
could not decode, on real JVM exception chains (the damaged files themselves:
tests/test_reliability.py, tests/test_download_job.py)."""
from __future__ import annotations

from typing import Any

import pytest
from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.sql import SparkSession

from batch.core.errors import CorruptInputFileError
from batch.core.readers import without_damaged_files

DAMAGED = "file:/data/raw%20%C2%ABold%C2%BB/part-1.parquet"
OTHER = "file:/data/raw/part-7.parquet"
ROOT_CAUSE = "Can not read value at 0 in block -1 in file"


def task_failure(spark: SparkSession, file: str) -> Any:
    """A failed job's Java exception as Spark nests it: the file is named by the middle cause only."""
    jvm = spark.sparkContext._jvm
    root = jvm.org.apache.parquet.io.ParquetDecodingException(f"{ROOT_CAUSE} {file}")
    named = jvm.org.apache.spark.SparkException(
        f"Encountered error while reading file {file}. Details: ", root)
    return jvm.org.apache.spark.SparkException(
        "Job aborted due to stage failure: Task 0 in stage 3.0 failed 1 times", named)


def as_py4j(java: Any) -> Py4JJavaError:
    return Py4JJavaError("An error occurred while calling o123.collectToPython.\n", java)


def as_captured(java: Any) -> CapturedException:
    # PySpark's form of the Java exceptions it converts; the Java one is kept as its origin.
    return CapturedException(origin=java)


def failing(failures: list[BaseException], result: str, calls: list[tuple[str, ...]]) -> Any:
    """An attempt that raises `failures` one per call, then returns `result`; records its argument."""
    def attempt(unreadable: tuple[str, ...]) -> str:
        calls.append(unreadable)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return result
    return attempt


def test_each_damaged_file_named_anywhere_in_the_causes_is_left_out_and_the_attempt_made_again(
        spark: SparkSession) -> None:
    calls: list[tuple[str, ...]] = []
    attempt = failing([as_py4j(task_failure(spark, DAMAGED)), as_captured(task_failure(spark, OTHER))],
                      "downloaded", calls)
    assert without_damaged_files(attempt, skip_corrupt_files=True) == "downloaded"
    assert calls == [(), (DAMAGED,), (DAMAGED, OTHER)]


@pytest.mark.parametrize("wrap", [as_py4j, as_captured])
def test_without_skipping_a_damaged_file_is_named_with_the_root_cause(spark: SparkSession, wrap: Any) -> None:
    calls: list[tuple[str, ...]] = []
    with pytest.raises(CorruptInputFileError) as raised:
        without_damaged_files(failing([wrap(task_failure(spark, DAMAGED))], "never", calls),
                              skip_corrupt_files=False)
    assert str(raised.value) == (
        f"{DAMAGED} is not a readable Parquet file: its data cannot be decoded "
        f"(org.apache.parquet.io.ParquetDecodingException: {ROOT_CAUSE} {DAMAGED})")
    assert calls == [()]


def test_a_file_named_again_once_left_out_stops_the_run(spark: SparkSession) -> None:
    calls: list[tuple[str, ...]] = []
    failures: list[BaseException] = [as_py4j(task_failure(spark, DAMAGED)) for _ in range(2)]
    with pytest.raises(CorruptInputFileError, match="is not a readable Parquet file"):
        without_damaged_files(failing(failures, "never", calls), skip_corrupt_files=True)
    assert calls == [(), (DAMAGED,)]


def test_a_failure_that_names_no_file_is_raised_as_it_is(spark: SparkSession) -> None:
    jvm = spark.sparkContext._jvm
    unrelated = as_py4j(jvm.org.apache.spark.SparkException(
        "Job aborted", jvm.java.io.IOException("No space left on device")))
    calls: list[tuple[str, ...]] = []
    with pytest.raises(Py4JJavaError) as raised:
        without_damaged_files(failing([unrelated], "never", calls), skip_corrupt_files=True)
    assert raised.value is unrelated
    assert calls == [()]
