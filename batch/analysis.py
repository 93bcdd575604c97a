"""The batch analysis: read -> validate -> aggregate -> publish, with a run record and summary."""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.sql import SparkSession

from batch import postgres
from batch.aggregations import (
    GROUPINGS,
    Grouping,
    Thresholds,
    collect_partials,
    partial_statistics,
    rollup_all,
    validation_counts,
)
from batch.catalog import ALL_STATISTICS, Catalog, build_catalog
from batch.config import (
    COMMON_OPTIONS,
    POSTGRES_OPTIONS,
    Option,
    Secret,
    parse_bool,
    parse_positive_int,
    public_view,
    read_password,
)
from batch.contract import ANALYSIS_COLUMNS, METRICS, Metric
from batch.errors import BatchError, ConfigurationError, CorruptInputFileError, EmptyInputError
from batch.readers import read_raw_readings
from batch.timing import timed_phase
from batch.validation import EXCLUSION_REASONS, REPLAY_REASON, out_of_range_flag, validate_readings

log = logging.getLogger(__name__)

# How Spark names a file it cannot decode (a damaged page behind an intact footer).
_UNREADABLE_FILE = re.compile(r"Encountered error while reading file (.+?)\. Details")

ANALYSIS_OPTIONS: tuple[Option, ...] = COMMON_OPTIONS + POSTGRES_OPTIONS + (
    Option("DROP_REPLAYS", "false",
           "drop exact replays (same DevEui and sendtime) before computing statistics", parse_bool),
    Option("CO2_HIGH_PPM", "1000", "CO2 threshold of co2_share_above_high, ppm", float),
    Option("CO2_VERY_HIGH_PPM", "1500", "CO2 threshold of co2_share_above_very_high, ppm", float),
    Option("COMFORT_MIN_C", "20", "lower bound of the temperature comfort band, °C", float),
    Option("COMFORT_MAX_C", "26", "upper bound of the temperature comfort band, °C", float),
    Option("POSTGRES_CONNECT_ATTEMPTS", "5",
           "connection attempts (exponential backoff) before giving up", parse_positive_int),
    Option("PUBLISH_LOCK_TIMEOUT_S", "600",
           "seconds to wait for another run publishing to the same schema", float),
    Option("SUMMARY_JSON", "", "also write the run summary as JSON to this file"),
)


@dataclass(frozen=True)
class AnalysisSettings:
    raw_data_path: str
    batch_timezone: str
    skip_corrupt_files: bool
    spark_master: str
    postgres_host: str
    postgres_port: int
    postgres_db: str
    postgres_user: str
    postgres_password: Secret
    postgres_password_file: str
    postgres_schema: str
    postgres_jdbc_jar: str
    postgres_jdbc_package: str
    drop_replays: bool
    co2_high_ppm: float
    co2_very_high_ppm: float
    comfort_min_c: float
    comfort_max_c: float
    postgres_connect_attempts: int
    publish_lock_timeout_s: float
    summary_json: str

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.co2_high_ppm, self.co2_very_high_ppm,
                          self.comfort_min_c, self.comfort_max_c)

    @property
    def target(self) -> postgres.PostgresTarget:
        return postgres.PostgresTarget(
            host=self.postgres_host, port=self.postgres_port, database=self.postgres_db,
            user=self.postgres_user,
            password=read_password(self.postgres_password, self.postgres_password_file),
            schema=self.postgres_schema, connect_attempts=self.postgres_connect_attempts,
            lock_timeout_s=self.publish_lock_timeout_s)


@dataclass
class RunSummary:
    """What a run did; printed at the end, written as JSON, and stored in batch_runs."""

    job: str
    input_path: str
    status: str = "running"
    run_id: int | None = None
    input_files: int | None = None
    skipped_files: list[str] = field(default_factory=list)
    rows_read: int | None = None
    rows_used: int | None = None
    rows_excluded: dict[str, int] = field(default_factory=dict)
    values_nulled: dict[str, int] = field(default_factory=dict)
    rows_written: dict[str, int] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    error_message: str | None = None

    def phase(self, name: str) -> AbstractContextManager[None]:
        return timed_phase(self.phase_seconds, name)

    def run_record(self) -> dict[str, Any]:
        """The batch_runs columns this summary fills."""
        return {
            "input_files": self.input_files, "skipped_files": self.skipped_files,
            "rows_read": self.rows_read, "rows_used": self.rows_used,
            "rows_excluded": self.rows_excluded, "values_nulled": self.values_nulled,
            "phase_seconds": self.phase_seconds, "error_message": self.error_message,
        }


def check_settings(settings: AnalysisSettings) -> None:
    if settings.co2_very_high_ppm < settings.co2_high_ppm:
        raise ConfigurationError("CO2_VERY_HIGH_PPM must not be below CO2_HIGH_PPM")
    if settings.comfort_min_c >= settings.comfort_max_c:
        raise ConfigurationError("COMFORT_MIN_C must be below COMFORT_MAX_C")


def run_analysis(spark: SparkSession, settings: AnalysisSettings, summary: RunSummary,
                 groupings: Sequence[Grouping] = GROUPINGS,
                 metrics: Sequence[Metric] = METRICS) -> RunSummary:
    """Run the whole analysis, filling `summary`; raises BatchError with the run marked failed.

    `groupings` and `metrics` are the published tables and the metrics summarised in them
    (batch/aggregations.py GROUPINGS, batch/contract.py METRICS unless a test says otherwise).
    """
    try:
        return _run_analysis(spark, settings, summary, tuple(groupings), tuple(metrics))
    except BaseException as error:
        # Failures before the run is recorded (database unreachable, lock not granted) too.
        summary.status = "failed"
        summary.error_message = summary.error_message or _describe(error)
        raise


def _describe(error: BaseException) -> str:
    return str(error) if isinstance(error, BatchError) else f"{type(error).__name__}: {error}"


def _run_analysis(spark: SparkSession, settings: AnalysisSettings, summary: RunSummary,
                  groupings: tuple[Grouping, ...], metrics: tuple[Metric, ...]) -> RunSummary:
    check_settings(settings)
    target = settings.target
    catalog = build_catalog(settings.thresholds, settings.batch_timezone, groupings, metrics)
    tables = [table.name for table in catalog.published_tables]
    conn = postgres.connect(target)
    try:
        with postgres.database_errors(target), postgres.publish_lock(conn, target):
            evolution = postgres.ensure_schema(conn, target, catalog)
            summary.run_id = postgres.start_run(conn, target, summary.job, settings.raw_data_path,
                                                public_view(settings))
            try:
                with postgres.database_errors(target):
                    _compute_and_publish(spark, settings, summary, conn, target, groupings,
                                         metrics, catalog, evolution)
            except BaseException as error:
                summary.status = "failed"
                summary.error_message = _describe(error)
                postgres.record_failure(conn, target, tables, summary.run_id, summary.run_record())
                raise
    finally:
        conn.close()
    return summary


def _compute_and_publish(spark: SparkSession, settings: AnalysisSettings, summary: RunSummary,
                         conn: Any, target: postgres.PostgresTarget, groupings: tuple[Grouping, ...],
                         metrics: tuple[Metric, ...], catalog: Catalog,
                         evolution: postgres.Evolution) -> None:
    thresholds = settings.thresholds
    with summary.phase("read"):
        readings_df, input_files = read_raw_readings(
            spark, settings.raw_data_path, _columns_read(metrics), settings.skip_corrupt_files)
        summary.input_files = input_files.file_count
        summary.skipped_files = list(input_files.skipped)
    with summary.phase("aggregate"):
        partials_df = (readings_df.transform(validate_readings, _names(metrics), settings.drop_replays)
                       .transform(partial_statistics, settings.batch_timezone, thresholds, metrics))
        try:
            # The one pass over the input; the partials (groups, not readings) go to the driver.
            partials = collect_partials(partials_df, groupings)
        except (Py4JJavaError, CapturedException) as error:
            unreadable = _unreadable_file_error(error, settings.skip_corrupt_files)
            if unreadable is None:
                raise
            raise unreadable from None
        _record_counts(summary, validation_counts(partials, metrics), metrics, settings.drop_replays)
        if not summary.rows_used:
            raise EmptyInputError(
                f"no usable reading under {settings.raw_data_path}: {summary.rows_read} read, "
                f"excluded per reason {summary.rows_excluded}; previous results kept")
        results = {ALL_STATISTICS: rollup_all(partials, groupings, metrics)}
        del partials  # the driver holds the partials or the results, not both, while publishing
    with summary.phase("publish"):
        postgres.prepare_staging(conn, target, catalog.published_tables, summary.run_id)
        for table in catalog.published_tables:
            postgres.write_staging(conn, target, table, table.build(results),
                                   postgres.staging_table(table.name, summary.run_id))
        summary.status = "succeeded"
        summary.rows_written = postgres.swap_in(conn, target, catalog, evolution, summary.run_id,
                                                summary.run_record())
    postgres.tidy_up(conn, target, [table.name for table in catalog.published_tables],
                     summary.run_id, summary.phase_seconds)


def _unreadable_file_error(error: Py4JJavaError | CapturedException,
                           skip_corrupt_files: bool) -> CorruptInputFileError | None:
    """The failure of the first pass over the input as an error naming the file, if Spark named one."""
    messages = _error_chain(error)
    found = next(filter(None, map(_UNREADABLE_FILE.search, messages)), None)
    if found is None:
        return None
    cause = f" ({messages[-1]})" if messages[-1] != found.string else ""
    hint = ("; SKIP_CORRUPT_FILES skips files whose footer is unreadable, but this one's footer "
            "is intact and its data damaged: move it out of the input" if skip_corrupt_files else "")
    return CorruptInputFileError(
        f"{found.group(1)} is not a readable Parquet file: its data cannot be decoded{cause}{hint}")


def _error_chain(error: Py4JJavaError | CapturedException) -> list[str]:
    """The first line of the JVM's exception and of each of its causes, the root cause last.

    Spark wraps the task's failure at a depth that depends on the action (an Arrow
    collect adds a layer), so the file it names is looked for in every cause.
    """
    if not isinstance(error, Py4JJavaError):
        return [_first_line(str(error))]
    messages, exception = [], error.java_exception
    while exception is not None:
        messages.append(_first_line(exception.toString()))
        cause = exception.getCause()
        exception = None if cause is None or cause.equals(exception) else cause
    return messages


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else ""


def _names(metrics: tuple[Metric, ...]) -> tuple[str, ...]:
    return tuple(metric.name for metric in metrics)


def _columns_read(metrics: tuple[Metric, ...]) -> tuple[str, ...]:
    return ANALYSIS_COLUMNS + tuple(name for name in _names(metrics) if name not in ANALYSIS_COLUMNS)


def _record_counts(summary: RunSummary, counts: dict[str, int], metrics: tuple[Metric, ...],
                   drop_replays: bool) -> None:
    summary.rows_read = counts["rows_read"]
    summary.rows_used = counts["rows_used"]
    summary.rows_excluded = {reason: counts[reason] for reason in EXCLUSION_REASONS}
    # Replays are only looked for when they are dropped: 0 must mean "checked, none".
    summary.rows_excluded[REPLAY_REASON] = counts[REPLAY_REASON] if drop_replays else None
    summary.values_nulled = {metric: counts[out_of_range_flag(metric)] for metric in _names(metrics)}
