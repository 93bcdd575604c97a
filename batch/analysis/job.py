"""The batch analysis: read -> validate -> aggregate -> publish, with a run record and summary."""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession

from batch.analysis import publish, runs
from batch.analysis.catalog import RUN_RECORD_COLUMNS, Catalog, build_catalog
from batch.analysis.health import DAILY_HEALTH_TABLE, health_results
from batch.analysis.health_settings import HEALTH_OPTIONS, HealthSettings
from batch.analysis.delta import Scope, recomputed_scopes, row_digests
from batch.analysis.delta import changes as row_changes
from batch.analysis.device_days import compute_device_days
from batch.analysis.iaq_rollup import iaq_results, public_holidays_in_data
from batch.analysis.iaq_settings import IAQ_OPTIONS, IaqRules, IaqSettings, parse_ppm
from batch.analysis.rollup import rollup_all, validation_counts
from batch.analysis.state import state_blobs, write_state
from batch.analysis.statistics import GROUPINGS
from batch.analysis.timetable import unknown_institutes
from batch.core import cli
from batch.core.config import (COMMON_OPTIONS, DEFAULTED_OPTIONS_EXTRA, POSTGRES_OPTIONS, REPORT_DIR_OPTION,
                               SUMMARY_JSON_OPTION, Option, number, parse_bool, parse_positive_int,
                               public_view, settings_from, settings_type)
from batch.core.contract import INSTITUTE, METRICS, RAW_COLUMNS_BY_NAME, Metric
from batch.core.errors import BatchError, ConfigurationError, EmptyInputError, EmptyResultError
from batch.core.postgres import PostgresTarget, connect, database_errors
from batch.core.session import arrow_to_pandas
from batch.core.summary import JobSummary
from batch.core.thresholds import Thresholds
from batch.core.validation import EXCLUSION_REASONS, REPLAY_REASON, out_of_range_flag

log = logging.getLogger(__name__)


_TEMPERATURE_C = number(RAW_COLUMNS_BY_NAME["temperature"].lower, RAW_COLUMNS_BY_NAME["temperature"].upper)

ANALYSIS_OPTIONS: tuple[Option, ...] = COMMON_OPTIONS + POSTGRES_OPTIONS + (
    Option("DROP_REPLAYS", "false",
           "drop exact replays (same DevEui and sendtime) before computing statistics", parse_bool),
    Option("CO2_HIGH_PPM", "1000", "CO2 threshold of co2_share_above_high, ppm", parse_ppm),
    Option("CO2_VERY_HIGH_PPM", "1500", "CO2 threshold of co2_share_above_very_high, ppm", parse_ppm),
    Option("COMFORT_MIN_C", "20", "lower bound of the temperature comfort band, °C", _TEMPERATURE_C),
    Option("COMFORT_MAX_C", "26", "upper bound of the temperature comfort band, °C", _TEMPERATURE_C),
    Option("POSTGRES_CONNECT_ATTEMPTS", "5",
           "connection attempts (exponential backoff) before giving up", parse_positive_int),
    Option("PUBLISH_LOCK_TIMEOUT_S", "600",
           "seconds to wait for another run publishing to the same schema", number(0, 86400)),
    Option("ALLOW_EMPTY_TABLES", "false",
           "publish a table with no row in place of one that has rows (otherwise the run stops, "
           "exit 3, previous results kept)", parse_bool),
    Option("FULL_REBUILD", "false",
           "read every reading again instead of only the device-days the input's changes touch "
           "(a run is full anyway without a stored state or when a setting it depends on changed)",
           parse_bool, flag_name="--full"),
    SUMMARY_JSON_OPTION,
    REPORT_DIR_OPTION,
) + IAQ_OPTIONS + HEALTH_OPTIONS


class AnalysisSettings(settings_type("AnalysisSettings", ANALYSIS_OPTIONS,  # type: ignore[misc]
                                     extra=(DEFAULTED_OPTIONS_EXTRA,))):
    """One field per option of ANALYSIS_OPTIONS, then `options_defaulted`: the options no
    flag, environment variable or env file set (batch.core.cli.load fills it; empty when code
    builds the settings)."""

    # The IAQ_ and HEALTH_ options are fields too: batch_runs.settings records them with the rest.
    @property
    def iaq(self) -> IaqSettings:
        return settings_from(IaqSettings, public_view(self))

    @property
    def health(self) -> HealthSettings:
        return settings_from(HealthSettings, public_view(self))

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.co2_high_ppm, self.co2_very_high_ppm,
                          self.comfort_min_c, self.comfort_max_c)

    @property
    def target(self) -> PostgresTarget:
        return PostgresTarget.of(self, connect_attempts=self.postgres_connect_attempts,
                                 lock_timeout_s=self.publish_lock_timeout_s)


@dataclass(kw_only=True)
class RunSummary(JobSummary):
    """What an analysis run did; printed at the end, written as JSON, and stored in batch_runs."""

    run_id: int | None = None
    # Full or incremental, and why (batch/analysis/incremental.py choose_mode).
    mode: str | None = None
    mode_reason: str | None = None
    input_files_new: int | None = None
    input_files_changed: int | None = None
    input_files_removed: int | None = None
    readings_read_this_run: int | None = None
    device_days_recomputed: int | None = None
    # Totals over the whole input (every run's state), whatever this run read.
    rows_read: int | None = None
    rows_used: int | None = None
    rows_written: dict[str, int] = field(default_factory=dict)
    # The HTML report of the run (batch/report/page.py), once published; None if it was not written.
    report_path: str | None = None

    def run_record(self) -> dict[str, Any]:
        """The batch_runs columns this summary fills: its fields named as the catalog's run
        record columns."""
        return {name: getattr(self, name) for name in RUN_RECORD_COLUMNS}


# The tz database's names of UTC itself (Etc/UTC and GMT and their aliases in its `backward` file).
UTC_ZONES = frozenset(name.lower() for name in (
    "UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu",
    "GMT", "Etc/GMT", "GMT0", "Etc/GMT0", "GMT+0", "Etc/GMT+0", "GMT-0", "Etc/GMT-0",
    "Greenwich", "Etc/Greenwich"))


def settings_warnings(settings: AnalysisSettings) -> list[str]:
    """The warnings the settings alone give, before any data is read: the occupied hours are
    evaluated in UTC, or in a zone nobody chose.

    School timetables are local wall-clock times: in UTC an 08:00-14:00 day of an Italian
    school is read as 09:00-15:00 in winter and 10:00-16:00 in summer.
    """
    timezone = settings.batch_timezone
    defaulted = "batch_timezone" in settings.options_defaulted
    default = " (the built-in default: BATCH_TIMEZONE is not set)" if defaulted else ""
    if timezone.lower() in UTC_ZONES:
        return [f"occupied hours are evaluated in UTC (BATCH_TIMEZONE={timezone}{default}): the "
                "school timetables, local days and weeks are shifted by the schools' UTC offset; "
                "set BATCH_TIMEZONE to the schools' time zone, e.g. Europe/Rome"]
    if defaulted:
        return [f"occupied hours are evaluated in {timezone}, the built-in default: BATCH_TIMEZONE "
                "is set by no flag, environment variable or env file; set it to the schools' time "
                "zone to confirm it"]
    return []


def check_settings(settings: AnalysisSettings) -> None:
    if settings.co2_very_high_ppm < settings.co2_high_ppm:
        raise ConfigurationError(
            f"CO2_VERY_HIGH_PPM must not be below CO2_HIGH_PPM (--co2-very-high-ppm "
            f"{settings.co2_very_high_ppm:g} < --co2-high-ppm {settings.co2_high_ppm:g})")
    if settings.comfort_min_c >= settings.comfort_max_c:
        raise ConfigurationError(
            f"COMFORT_MIN_C must be below COMFORT_MAX_C (--comfort-min-c "
            f"{settings.comfort_min_c:g} >= --comfort-max-c {settings.comfort_max_c:g})")
    # Reads the timetable and closures files: a bad line stops the run before it starts.
    settings.iaq.rules()


def check_before_start(settings: AnalysisSettings) -> None:
    """Everything that can be checked before Spark starts, the password included."""
    check_settings(settings)
    settings.target  # noqa: B018 - reading the password raises when there is none


ANALYSIS_JOB = cli.JobDefinition(
    "start-spark.py",
    "Aggregate raw indoor-air readings per institute, classroom, ISO week and month, "
    "and publish the statistics to PostgreSQL atomically.",
    ANALYSIS_OPTIONS, AnalysisSettings, check_before_start)


def run_analysis(spark: SparkSession, settings: AnalysisSettings, summary: RunSummary,
                 metrics: Sequence[Metric] = METRICS) -> RunSummary:
    """Run the whole analysis, filling `summary`; raises BatchError with the run marked failed.

    `metrics`: those summarised in the statistics tables (batch/core/contract.py METRICS unless
    a test says otherwise).
    """
    metrics = tuple(metrics)
    conn = None
    try:
        check_settings(settings)
        for warning in settings_warnings(settings):
            summary.warn(warning)
        target = settings.target
        catalog = build_catalog(settings.thresholds, settings.batch_timezone, metrics,
                                iaq=settings.iaq, health=settings.health)
        conn = connect(target)
        with database_errors(target), publish.publish_lock(conn, target):
            evolution = publish.ensure_schema(conn, target, catalog)
            summary.run_id = runs.start_run(conn, target, summary.job, settings.raw_data_path,
                                             public_view(settings))
            try:
                with database_errors(target):
                    _compute_and_publish(spark, settings, summary, conn, target, metrics, catalog,
                                         evolution)
            except BaseException as error:
                summary.status = "failed"
                summary.error_message = cli.describe_failure(error)
                publish.record_failure(conn, target, [table.name for table in catalog.published_tables],
                                       summary.run_id, summary.run_record())
                raise
        return summary
    except BaseException as error:
        # Failures before the run is recorded (database unreachable, lock not granted) too.
        summary.status = "failed"
        summary.error_message = summary.error_message or cli.describe_failure(error)
        raise
    finally:
        if conn is not None:
            conn.close()


def _compute_and_publish(spark: SparkSession, settings: AnalysisSettings, summary: RunSummary,
                         conn: Any, target: PostgresTarget, metrics: tuple[Metric, ...], catalog: Catalog,
                         evolution: publish.Evolution) -> None:
    iaq_rules = settings.iaq.rules()
    # In the driver: groups, not readings (see batch.analysis.rollup for the bound), where
    # every table is rolled up.
    device_days = compute_device_days(spark, settings, summary, metrics, iaq_rules, conn, target,
                                      [table.name for table in catalog.published_tables])
    with summary.phase("aggregate"):
        partials, episodes = arrow_to_pandas(device_days.partials), arrow_to_pandas(device_days.episodes)
        counts = validation_counts(partials, metrics)
        summary.rows_read, summary.rows_used = counts["rows_read"], counts["rows_used"]
        summary.rows_excluded = {reason: counts[reason] for reason in EXCLUSION_REASONS}
        # Replays are only looked for when they are dropped: 0 must mean "checked, none".
        summary.rows_excluded[REPLAY_REASON] = counts[REPLAY_REASON] if settings.drop_replays else None
        summary.values_nulled = {metric.name: counts[out_of_range_flag(metric.name)] for metric in metrics}
        if not summary.rows_used:
            raise EmptyInputError(
                f"no usable reading under {settings.raw_data_path}: {summary.rows_read} read, "
                f"excluded per reason {summary.rows_excluded}; previous results kept")
        # The public holidays closed in the data's dates, with the settings that named them.
        runs.add_run_settings(conn, target, summary.run_id, {
            "iaq_public_holidays_applied": public_holidays_in_data(partials, iaq_rules)})
        for warning in unknown_institutes(iaq_rules.occupancy, set(partials[INSTITUTE].dropna())):
            summary.warn(warning)
        scopes = recomputed_scopes(device_days.changed, device_days.stored_row_digests, evolution.new_columns)
        staged = _stage(publish.StagingWriter(conn, target, catalog.published_tables, summary.run_id),
                        catalog, _results(partials, episodes, settings, metrics, iaq_rules, scopes),
                        device_days.stored_row_digests, evolution, scopes)
        del partials, episodes
        blobs = state_blobs(device_days.update, staged.row_digests)
    with summary.phase("publish"):
        _check_empty_tables(conn, target, staged.empty, settings.allow_empty_tables, summary)
        summary.status = "succeeded"
        summary.rows_written = publish.swap_in(
            conn, target, catalog, evolution, summary.run_id, summary.run_record(),
            also=lambda cursor: write_state(cursor, target.schema, summary.run_id, device_days.update, blobs),
            changed_only=staged.changed_only)
    # The timings through the publish phase are recorded before the report reads them (its
    # phase chart); the report's own time after it is written.
    publish.tidy_up(conn, target, [table.name for table in catalog.published_tables],
                     summary.run_id, summary.phase_seconds)
    with summary.phase("report"):
        summary.report_path = _write_report(target, settings.report_dir, summary.run_id)
    publish.tidy_up(conn, target, [], summary.run_id, summary.phase_seconds)


def _results(partials: pd.DataFrame, episodes: pd.DataFrame, settings: AnalysisSettings,
             metrics: tuple[Metric, ...], iaq_rules: IaqRules,
             scopes: Mapping[str, Scope] | None = None) -> Iterator[dict[str, pd.DataFrame]]:
    """Every published table's rows by name (those in its scope where `scopes` gives one), a
    few tables at a time. The health tables first: the largest (a row per device and date),
    staged while the others are rolled up."""
    health_scope = (scopes or {}).get(DAILY_HEALTH_TABLE)
    yield health_results(partials, settings.health.rules(settings.iaq_outdoor_co2_ppm),
                         settings.batch_timezone, min(health_scope.values) if health_scope else None)
    yield rollup_all(partials, GROUPINGS, metrics, scopes)
    yield iaq_results(partials, episodes, iaq_rules, settings.batch_timezone, scopes)


@dataclass(frozen=True)
class Staged:
    """What `_stage` staged: the tables published empty, every table's row digests (kept with
    the state), and the tables staged as their changed rows only, with their row counts."""

    empty: list[str]
    row_digests: dict[str, pd.DataFrame]
    changed_only: dict[str, int]


def _stage(writer: publish.StagingWriter, catalog: Catalog, results: Iterator[dict[str, pd.DataFrame]],
           stored_row_digests: dict[str, pd.DataFrame], evolution: publish.Evolution,
           scopes: Mapping[str, Scope]) -> Staged:
    """Stage every published table as soon as its rows are computed: whole, or, where the
    previous run's row digests are stored and the table gains no column, only the rows that
    changed and the keys to delete (batch/analysis/delta.py), unless most rows changed (a plain
    DELETE and INSERT is then cheaper than deleting by key). A table with a scope was computed
    for its scope only: its rows outside it stay as they are, with their digests."""
    tables = {table.name: table for table in catalog.published_tables}
    empty: set[str] = set()
    digests: dict[str, pd.DataFrame] = {}
    changed_only: dict[str, int] = {}
    with writer:
        for computed in results:
            for name in [name for name in computed if name in tables]:
                table = tables.pop(name)
                rows = table.rows(computed[name])
                digests[name] = computed_digests = row_digests(rows, table.key)
                previous = stored_row_digests.get(name)
                if previous is None or evolution.new_columns.get(name):
                    writer.write(table, rows)
                else:
                    if name in scopes:
                        recomputed = scopes[name].holds(previous)
                        digests[name] = pd.concat([previous[~recomputed], computed_digests], ignore_index=True)
                        previous = previous[recomputed].reset_index(drop=True)
                    inserted, deleted = row_changes(rows, computed_digests, previous, table.key)
                    if name not in scopes and len(inserted) > len(rows) / 2:
                        writer.write(table, rows)
                    else:
                        writer.write(table, inserted, deleted)
                        changed_only[name] = len(digests[name])
                if digests[name].empty:
                    empty.add(name)
        if tables:
            raise RuntimeError(f"no rows computed for the published tables {sorted(tables)}")
    return Staged([table.name for table in catalog.published_tables if table.name in empty], digests,
                  changed_only)


def _check_empty_tables(conn: Any, target: PostgresTarget, empty: list[str], allowed: bool,
                        summary: RunSummary) -> None:
    """Stop (EmptyResultError) before the swap when a table that holds rows would be published
    empty (one of `empty`), unless `allowed`; warn of every table published empty.

    An empty table is almost always a setting that leaves nothing to count (a timetable of
    `none`, closures over every day), not a fact a dashboard should show in place of the
    previous results. The caller holds the publish lock: the published counts cannot change
    before the swap.
    """
    if not empty:
        return
    held = {name: count for name, count in publish.published_row_counts(conn, target, empty).items()
            if count}
    if held and not allowed:
        raise EmptyResultError(
            "this run would replace published tables holding rows with empty ones: "
            + ", ".join(f"{name} ({count} rows)" for name, count in held.items())
            + "; nothing was published, previous results kept (check IAQ_TIMETABLE, "
            "IAQ_TIMETABLE_FILE, IAQ_CLOSURES_FILE; --allow-empty-tables publishes them empty)")
    for name in empty:
        replacing = f", replacing its {held[name]} rows (ALLOW_EMPTY_TABLES)" if name in held else ""
        summary.warn(f"{target.schema}.{name} is published with no row{replacing}")


def _write_report(target: PostgresTarget, report_dir: str, run_id: int) -> str | None:
    """The run's HTML report, from the tables just published; None when it cannot be written.

    The results are published by then: a report that fails (its template missing from a
    cluster node's package, a full disk) is a warning, never a failed run.
    """
    try:
        # Imported here: the report's template and charts are needed on the driver only, and only now.
        from batch.report.page import write_report
        return str(write_report(target, target.schema, report_dir, run_id))
    except (BatchError, ImportError, OSError) as error:
        log.warning("run %d is published, but its report was not written: %s", run_id, error)
        return None
