"""The catalog: every table and view the analysis publishes, and the run table, in one place.

Each entry names its key, its columns (type, unit, comment) and what builds its rows; the
sink (batch/analysis/publish.py) derives from it DDL, comments, staging, swap, schema evolution
and row counts; this module the README's table list (`python -m batch.analysis.catalog`) and
docs/tables.md (`--reference`). A metric, statistic, share or grouping changes the catalog
through the specs it is built from; a table of another kind is one more entry here.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from psycopg2 import sql

from batch.analysis.health_settings import HealthSettings
from batch.analysis.health_tables import attention_view, health_catalog_tables
from batch.analysis.iaq_settings import IaqSettings
from batch.analysis.iaq_tables import iaq_catalog_tables
from batch.analysis.iaq_tables import latest_week_view as latest_iaq_week_view
from batch.analysis.state import STATE_TABLES
from batch.analysis.statistics import GROUPINGS, Grouping, output_columns
from batch.core.config import COMMON_OPTIONS
from batch.core.contract import METRICS, Metric
from batch.core.schema import BIGINT, BIGSERIAL, INTEGER, JSONB, TEXT, TIMESTAMPTZ, Column, Table, View
from batch.core.thresholds import Thresholds

RUNS_TABLE = "batch_runs"
LATEST_WEEK_VIEW = "latest_complete_week_by_classroom"

RUNS = Table(
    RUNS_TABLE,
    "One row per run of the batch jobs: what was read, excluded, nulled and published",
    key=("run_id",),
    columns=(
        Column("run_id", BIGSERIAL, "identifier of the run", nullable=False, constraint="PRIMARY KEY"),
        Column("job", TEXT, "job that ran (analysis)", nullable=False),
        Column("status", TEXT,
               "running, succeeded, failed, or abandoned (the process died; found by a later run)",
               nullable=False,
               constraint="CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned'))"),
        Column("started_at", TIMESTAMPTZ, "when the run started", nullable=False),
        Column("finished_at", TIMESTAMPTZ, "when the run ended (null while running)"),
        Column("input_path", TEXT, "raw Parquet input that was read", nullable=False),
        Column("input_files", INTEGER, "number of Parquet files read"),
        Column("skipped_files", JSONB,
               "unreadable files skipped (SKIP_CORRUPT_FILES), as a JSON array"),
        Column("uncommitted_files", JSONB,
               "part files of the input's streaming sink folder that its _spark_metadata log does "
               "not name (micro-batches that failed before their commit), not read: "
               '{"count": number of files, "first": the first few paths}'),
        Column("files_lacking_required_columns", JSONB,
               "input files lacking a required column (sendtime, DevEui, institute, classroom) that "
               "other files have: their readings are excluded (a pipeline problem): "
               '{"count": number of files, "first": the first few paths}'),
        Column("mode", TEXT, "full (every reading read again) or incremental (only the device-days "
               "the input's changes touch recomputed; the published tables equal a full run's)"),
        Column("mode_reason", TEXT, "why the run was full or incremental (e.g. IAQ_TIMETABLE changed)"),
        Column("input_files_new", INTEGER, "input files not in the previous run's index"),
        Column("input_files_changed", INTEGER, "input files whose size or modification time changed"),
        Column("input_files_removed", INTEGER, "input files of the previous run's index gone"),
        Column("readings_read_this_run", BIGINT,
               "readings in the files this run read (a full run: every file)", unit="readings"),
        Column("device_days_recomputed", BIGINT,
               "devices x local dates whose partials this run computed", unit="device-days"),
        Column("rows_read", BIGINT, "readings of the whole input (all runs' state)", unit="readings"),
        Column("rows_used", BIGINT, "readings that entered the statistics", unit="readings"),
        Column("rows_excluded", JSONB,
               "readings excluded from the statistics, per reason (JSON object; null for "
               "replayed_reading when replays were not checked, DROP_REPLAYS=false)"),
        Column("values_nulled", JSONB,
               "metric values outside the physical range, treated as not measured, per metric "
               "(JSON object)"),
        Column("rows_written", JSONB, "rows published per table (JSON object)"),
        Column("phase_seconds", JSONB, "wall time per phase of the run, seconds (JSON object)",
               unit="s"),
        Column("settings", JSONB,
               "settings of the run (time zone, thresholds...; never the password)"),
        Column("error_message", TEXT, "why the run failed (null on success)"),
        Column("warnings", JSONB,
               "what the operator should know about the run's results, one sentence each, as a "
               "JSON array (e.g. occupied hours evaluated in UTC or in a time zone nobody set); "
               "null for a run of an earlier release"),
    ),
    published=False,
)

# Who fills which column of batch_runs. The sink itself: the key and the run's state as it goes
# (status, started_at, finished_at), what the run was started with (batch/analysis/runs.py
# start_run) and the rows it published (rows_written, set by the swap that publishes them).
# Every other column is the run's record: the field of the same name of the run's summary
# (batch/analysis/job.py RunSummary), so that a new column of that kind is one Column above
# and the summary's field that fills it.
_SINK_COLUMNS = ("run_id", "status", "started_at", "finished_at", "job", "input_path", "settings",
                 "rows_written")
if not set(_SINK_COLUMNS) <= set(RUNS.column_names):
    raise ValueError(f"{RUNS_TABLE} has no column {sorted(set(_SINK_COLUMNS) - set(RUNS.column_names))}")
RUN_RECORD_COLUMNS = tuple(name for name in RUNS.column_names if name not in _SINK_COLUMNS)


@dataclass(frozen=True)
class Catalog:
    """What one run publishes, shaped by its settings (thresholds and time zone appear in comments)."""

    tables: tuple[Table, ...]
    views: tuple[View, ...]
    runs: Table = RUNS
    # The incremental run's internal tables (batch/analysis/state.py), written with the swap.
    state_tables: tuple[Table, ...] = STATE_TABLES

    @property
    def published_tables(self) -> tuple[Table, ...]:
        return tuple(table for table in self.tables if table.published)

    def table(self, name: str) -> Table:
        for table in (*self.tables, self.runs, *self.state_tables):
            if table.name == name:
                return table
        raise KeyError(name)


def _grouping_table(grouping: Grouping, thresholds: Thresholds, timezone: str,
                    metrics: tuple[Metric, ...]) -> Table:
    columns = output_columns(grouping, thresholds, metrics)
    local = ", ".join(key.column.name for key in grouping.keys if key.derive is not None)
    note = f"; days, weeks and months ({local}) are local to {timezone} (BATCH_TIMEZONE)" if local else ""
    return Table(grouping.table,
                 f"{grouping.description}{note}; published by the "
                 "nightly batch analysis, replaced as a whole by each successful run (see batch_runs)",
                 key=grouping.key_names, columns=columns)


def latest_week_view(timezone: str) -> View:
    def query(table: Callable[[str], sql.Composable]) -> sql.Composable:
        # A week is complete once data newer than its Sunday has arrived: judged against the
        # newest reading overall, so a classroom whose sensors went silent keeps its last full
        # week - and is flagged as behind the newest complete week of its institute, so that a
        # dead sensor does not pass for a quiet classroom.
        return sql.SQL(
            "WITH cutoff AS (SELECT (max(last_reading_at) AT TIME ZONE {tz})::date AS data_until "
            "FROM {weekly}), "
            "latest AS (SELECT DISTINCT ON (w.institute, w.classroom) w.* FROM {weekly} w, cutoff "
            "WHERE w.week_start + 7 <= cutoff.data_until "
            "ORDER BY w.institute, w.classroom, w.week_start DESC) "
            "SELECT latest.*, "
            "(max(latest.week_start) OVER (PARTITION BY latest.institute) - latest.week_start) / 7 "
            "AS weeks_behind_institute "
            "FROM latest"
        ).format(weekly=table("classroom_weekly_stats"), tz=sql.Literal(timezone))
    return View(
        LATEST_WEEK_VIEW,
        "For each classroom, the statistics of its latest complete ISO week (a week whose "
        f"Sunday, in {timezone}, is before the day of the newest reading); same columns as "
        "classroom_weekly_stats, then weeks_behind_institute: how many weeks that week is older "
        "than the newest complete week of any classroom of the same institute (0: up to date; "
        "more: the classroom's sensors stopped sending, it is not a quiet classroom)",
        query, reads=("classroom_weekly_stats",),
        one_row_per="classroom: its latest complete ISO week")


def build_catalog(thresholds: Thresholds, timezone: str, metrics: tuple[Metric, ...] = METRICS,
                  extra_tables: tuple[Table, ...] = (), iaq: IaqSettings = IaqSettings(),
                  health: HealthSettings = HealthSettings()) -> Catalog:
    """Everything the analysis publishes with these settings, which appear in the comments."""
    tables = (tuple(_grouping_table(grouping, thresholds, timezone, metrics) for grouping in GROUPINGS)
              + iaq_catalog_tables(iaq, timezone)
              + health_catalog_tables(health, iaq.iaq_outdoor_co2_ppm, timezone) + extra_tables)
    views = (latest_week_view(timezone), latest_iaq_week_view(), attention_view(health))
    names = [table.name for table in tables] + [view.name for view in views] + [RUNS_TABLE]
    if len(set(names)) != len(names):
        raise ValueError(f"the catalog names a table or view twice: {names}")
    known = {table.name for table in tables}
    for view in views:
        if not set(view.reads) <= known:
            raise ValueError(f"view {view.name} reads {view.reads}, not all in the catalog")
    return Catalog(tables, views)


def markdown(catalog: Catalog) -> str:
    """The README's list of what is published, one line per table or view."""
    lines = ["| table | one row per | columns |", "|---|---|---|"]
    for table in catalog.published_tables:
        lines.append(f"| `{table.name}` | {', '.join(table.key)} | {len(table.columns)} |")
    for view in catalog.views:
        lines.append(f"| `{view.name}` (view) | {view.one_row_per} | |")
    lines.append(f"| `{catalog.runs.name}` | run | {len(catalog.runs.columns)} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    # A comment is one Markdown table cell: a pipe would end it.
    return text.replace("|", "\\|")


# How docs/tables.md is written; tests/test_catalog.py checks that it is current.
REFERENCE_COMMAND = "python -m batch.analysis.catalog --reference > docs/tables.md"


def default_timezone() -> str:
    return next(option.default for option in COMMON_OPTIONS if option.env == "BATCH_TIMEZONE")


def default_reference() -> str:
    """docs/tables.md as the defaults of env/spark.env make it: the list of what is published,
    then every table and view in that order: description, key, columns (type, unit, comment);
    a view declares no columns of its own, its description names them."""
    timezone = default_timezone()
    catalog = build_catalog(Thresholds(), timezone)

    def table_section(table: Table) -> list[str]:
        return [f"## `{table.name}`", "", table.description, "",
                f"One row per {', '.join(table.key)}.", "",
                "| column | type | unit | meaning |", "|---|---|---|---|",
                *[f"| `{column.name}` | {column.type.sql} | {_cell(column.unit)} | "
                  f"{_cell(column.comment)} |" for column in table.columns], ""]

    def view_section(view: View) -> list[str]:
        reads = ", ".join(f"[`{name}`](#{name})" for name in view.reads)
        return [f"## `{view.name}` (view)", "", view.description, "",
                f"One row per {view.one_row_per}. Reads {reads}.", ""]

    contents = [(f"`{table.name}`", table.name) for table in catalog.published_tables]
    contents += [(f"`{view.name}` (view)", f"{view.name}-view") for view in catalog.views]
    contents.append((f"`{catalog.runs.name}`", catalog.runs.name))
    contents += [(f"`{table.name}` (internal)", table.name) for table in catalog.state_tables]
    return "\n".join([
        "# The published tables",
        "",
        "Generated from the catalog (`batch/analysis/catalog.py`), do not edit: "
        f"`{REFERENCE_COMMAND}` writes it and `tests/test_catalog.py` checks that it is current. "
        f"It shows a run with the default settings (`env/spark.env`: BATCH_TIMEZONE={timezone}, "
        "the default thresholds); a run's own settings appear in the comments PostgreSQL holds "
        "(`\\d+ indoor_air.classroom_weekly_stats` in psql).",
        "",
        *[f"- [{name}](#{anchor})" for name, anchor in contents],
        "",
        markdown(catalog),
        "",
        *[line for table in catalog.published_tables for line in table_section(table)],
        *[line for view in catalog.views for line in view_section(view)],
        *table_section(catalog.runs),
        "# Internal tables",
        "",
        "The incremental run's state (`batch/analysis/state.py`), written by the transaction that "
        "publishes the tables above: not for dashboards; dropping them makes the next run a full one.",
        "",
        *[line for table in catalog.state_tables for line in table_section(table)],
    ])


if __name__ == "__main__":
    # The README's list does not depend on the settings; the reference shows the defaults.
    if sys.argv[1:] == ["--reference"]:
        sys.stdout.write(default_reference())
    else:
        print(markdown(build_catalog(Thresholds(), default_timezone())))
