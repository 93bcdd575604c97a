"""The report's data, read in one snapshot: query functions over a psycopg2 connection, each
returning the rows the page shows as small frozen records. The names of relations and columns
are the catalog's (batch/analysis/catalog.py); the limits those the run recorded."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, make_dataclass
from datetime import date
from typing import Any, TypeVar

import psycopg2
from psycopg2 import sql

from batch.analysis import iaq_tables
from batch.analysis.catalog import RUNS, build_catalog, default_timezone
from batch.analysis.health import DEVICE_HEALTH_TABLE, OFFLINE, OK, SPARSE, STUCK
from batch.analysis.health_tables import ATTENTION_VIEW
from batch.analysis.iaq_settings import IaqSettings
from batch.core.errors import ConfigurationError
from batch.core.postgres import qualified
from batch.core.thresholds import Thresholds

# The catalog with the default settings: the names of tables and columns do not depend on them.
_CATALOG = build_catalog(Thresholds(), default_timezone())
Row = TypeVar("Row")


def _published(table: str, *columns: str) -> str:
    """`table`, which the catalog publishes with `columns`: a table or column renamed in the
    analysis stops the report here, at import, rather than in a query at night."""
    missing = set(columns) - {column.name for column in _CATALOG.table(table).columns}
    if missing:
        raise ImportError(f"the catalog's {table} has no column {', '.join(sorted(missing))}")
    return table


# Columns of the compliance tables (issue 13; judged days and stale classrooms, issue 19: a
# table published before it lacks them).
IAQ_CO2_MEAN = "co2_occupied_mean"
IAQ_JUDGED_DAYS = "judged_days"
IAQ_BB101_DAYS_MET = "bb101_days_met"
IAQ_WEEKS_BEHIND = "weeks_behind_institute"  # a column of the view (a view declares none)
_DAY_COLUMNS = ("institute", "classroom", "local_date", "longest_peak_episode_minutes",
                "co2_occupied_max", "occupied_coverage")
CLASSROOM_WEEKLY_TABLE = _published("classroom_weekly_stats", "co2_mean")
INSTITUTE_WEEKLY_TABLE = _published("institute_weekly_stats", "co2_mean", "temperature_mean")
IAQ_WEEKLY_TABLE = _published(iaq_tables.WEEKLY_TABLE, IAQ_CO2_MEAN, IAQ_JUDGED_DAYS, IAQ_BB101_DAYS_MET,
                              "week_complete")
IAQ_DAILY_TABLE = _published(iaq_tables.DAILY_TABLE, *_DAY_COLUMNS, "bb101_peak_met", "not_judged_reason",
                             "co2_occupied_readings")
IAQ_LATEST_WEEK_VIEW = iaq_tables.LATEST_WEEK_VIEW
RANKING_WEEKS = 4
# Per institute, the longest episodes and the days with too little data the report lists.
LISTED_DAYS = 10
# The sensor health's fleet line, in its order: the statuses, then the devices suspected of CO2 drift.
DRIFT = "drift"
FLEET_ORDER = (OK, SPARSE, OFFLINE, STUCK, DRIFT)


@dataclass(frozen=True)
class FileList:
    """How many files, and the names of the first few (a run may list only those)."""

    count: int
    names: list[str]


# One row of batch_runs: a field per column of the catalog's RUNS, in its order. A column that
# a table of an earlier release lacks reads as NULL: None, "not recorded".
RunRecord = make_dataclass("RunRecord", [(column.name, Any) for column in RUNS.columns], frozen=True)


def _file_list(value: Any) -> FileList | None:
    """Files as the analysis records them ({"count": n, "first": [names]})."""
    if value is None:
        return None
    return FileList(int(value["count"]), [str(name) for name in value["first"]])


# How a batch_runs value becomes the record's, where it is not as psycopg2 returns it: a JSON
# object or array a run left NULL (it failed before) is empty, a file list a FileList.
_RUN_VALUES: dict[str, Callable[[Any], Any]] = {
    **{name: lambda value: value or {} for name in
       ("rows_excluded", "values_nulled", "rows_written", "phase_seconds", "settings")},
    "skipped_files": lambda value: value or [],
    "uncommitted_files": _file_list,
    "files_lacking_required_columns": _file_list,
    "warnings": lambda value: None if value is None else [str(warning) for warning in value],
}


@dataclass(frozen=True)
class RunLimits:
    """Every limit the report draws or names, as the run recorded it in batch_runs.settings;
    the default of each one a run of an earlier release did not record."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    # IAQ settings, named as batch_runs.settings records them (IAQ_OPTIONS' fields).
    iaq_bb101_peak_co2_ppm: float = IaqSettings.iaq_bb101_peak_co2_ppm
    iaq_bb101_peak_minutes: float = IaqSettings.iaq_bb101_peak_minutes
    iaq_outdoor_co2_ppm: float = IaqSettings.iaq_outdoor_co2_ppm

    @classmethod
    def recorded(cls, settings: Mapping[str, Any]) -> RunLimits:
        return cls(Thresholds.recorded(settings), **{
            item.name: float(settings[item.name]) for item in fields(cls)
            if item.name != "thresholds" and settings.get(item.name) is not None})


@dataclass(frozen=True)
class Co2Source:
    """Where the heatmap's weekly CO2 comes from, and what to call it."""

    table: str
    column: str
    label: str


@dataclass(frozen=True)
class ClassroomWeekCo2:
    institute: str
    classroom: str
    week_start: date
    iso_year: int
    iso_week: int
    co2_ppm: float | None


@dataclass(frozen=True)
class Bb101Failures:
    """Judged school days of one current classroom failing BB101 over its institute's ranking weeks."""

    institute: str
    classroom: str
    judged_days: int
    days_failed: int


@dataclass(frozen=True)
class StaleClassroom:
    """A classroom whose latest complete week lies behind its institute's: not ranked."""

    institute: str
    classroom: str
    last_data: date | None  # its last local date with an occupied reading
    weeks_behind: int


@dataclass(frozen=True)
class ClassroomDay:
    """A classroom-day of classroom_daily_iaq the report names: a day past the BB101 peak, or
    one not judged for too little data."""

    institute: str
    classroom: str
    local_date: date
    longest_peak_episode_minutes: float | None
    co2_occupied_max: float | None
    occupied_coverage: float | None


@dataclass(frozen=True)
class SensorAttention:
    """One row of sensors_needing_attention (issue 23)."""

    institute: str
    classroom: str
    dev_eui: str
    status: str
    reasons: str | None


@dataclass(frozen=True)
class SensorHealth:
    # Devices per status of device_health, and those suspected of CO2 drift (FLEET_ORDER).
    fleet: dict[str, int]
    # The sensors needing attention of each institute, worst first (the view's order).
    attention: dict[str, list[SensorAttention]] = field(default_factory=dict)

    def of(self, institute: str) -> list[SensorAttention]:
        return self.attention.get(institute, [])


@dataclass(frozen=True)
class InstituteWeek:
    institute: str
    week_start: date
    iso_year: int
    iso_week: int
    co2_mean: float | None
    temperature_mean: float | None


def _records(conn: psycopg2.extensions.connection, record: type[Row], query: sql.Composable,
             arguments: tuple[Any, ...] = ()) -> list[Row]:
    """The rows of `query`, each as a `record` (its fields in the query's column order)."""
    with conn.cursor() as cursor:
        cursor.execute(query, arguments)
        return [record(*row) for row in cursor.fetchall()]


def by_institute(rows: Iterable[Any]) -> defaultdict[str, list[Any]]:
    """`rows` (records with an `institute`) per institute, in their order."""
    grouped: defaultdict[str, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.institute].append(row)
    return grouped


def table_columns(conn: psycopg2.extensions.connection, schema: str, table: str) -> set[str]:
    """The columns table or view `schema.table` has (none when it does not exist)."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT column_name FROM information_schema.columns "
                       "WHERE table_schema = %s AND table_name = %s", (schema, table))
        return {name for (name,) in cursor.fetchall()}


def latest_succeeded_run_id(conn: psycopg2.extensions.connection, schema: str) -> int | None:
    """The run whose results the published tables hold."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT max(run_id) FROM {} WHERE status = 'succeeded'").format(
            qualified(schema, RUNS.name)))
        return cursor.fetchone()[0]


def fetch_run(conn: psycopg2.extensions.connection, schema: str, run_id: int) -> RunRecord:
    """Row `run_id` of batch_runs: every column of the catalog's RUNS (NULL where an earlier
    release's table lacks it)."""
    present = table_columns(conn, schema, RUNS.name)
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT {columns} FROM {runs} WHERE run_id = %s").format(
            columns=sql.SQL(", ").join(
                sql.Identifier(column.name) if column.name in present else sql.SQL("NULL")
                for column in RUNS.columns),
            runs=qualified(schema, RUNS.name)), (run_id,))
        row = cursor.fetchone()
    if row is None:
        raise ConfigurationError(f"run {run_id} is not recorded in {schema}.{RUNS.name}")
    return RunRecord(**{column.name: _RUN_VALUES.get(column.name, lambda value: value)(value)
                        for column, value in zip(RUNS.columns, row)})


def co2_source(conn: psycopg2.extensions.connection, schema: str) -> Co2Source:
    """The occupied-hours CO2 mean when the compliance table is published, else the all-hours mean."""
    if table_columns(conn, schema, IAQ_WEEKLY_TABLE):
        return Co2Source(IAQ_WEEKLY_TABLE, IAQ_CO2_MEAN, "CO2 mean over occupied hours")
    return Co2Source(CLASSROOM_WEEKLY_TABLE, "co2_mean",
                     "CO2 mean over all hours (nights and weekends included)")


def classroom_week_co2(conn: psycopg2.extensions.connection, schema: str,
                       source: Co2Source) -> list[ClassroomWeekCo2]:
    return _records(conn, ClassroomWeekCo2, sql.SQL(
        "SELECT institute, classroom, week_start, iso_year, iso_week, {co2} FROM {table} "
        "ORDER BY institute, classroom, week_start").format(
            co2=sql.Identifier(source.column), table=qualified(schema, source.table)))


def _ranking_weeks_query(schema: str) -> sql.Composed:
    """(institute, week_start) of each institute's latest complete ISO weeks that had a judged
    school day, the most recent first numbered 1 (`recency`): holidays do not count."""
    return sql.SQL(
        "SELECT institute, week_start, dense_rank() OVER (PARTITION BY institute "
        "ORDER BY week_start DESC) AS recency FROM {table} WHERE week_complete "
        "GROUP BY institute, week_start HAVING sum({judged}) > 0").format(
            table=qualified(schema, IAQ_WEEKLY_TABLE), judged=sql.Identifier(IAQ_JUDGED_DAYS))


def ranking_weeks(conn: psycopg2.extensions.connection, schema: str,
                  weeks: int = RANKING_WEEKS) -> dict[str, list[date]]:
    """Per institute, the Mondays of its latest `weeks` complete ISO weeks with a judged school
    day, oldest first (complete as classroom_weekly_iaq.week_complete judges it)."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL(
            "SELECT institute, week_start FROM ({weeks}) w WHERE recency <= %s "
            "ORDER BY institute, week_start").format(weeks=_ranking_weeks_query(schema)), (weeks,))
        ranking: dict[str, list[date]] = defaultdict(list)
        for institute, monday in cursor.fetchall():
            ranking[institute].append(monday)
    return dict(ranking)


def bb101_failures(conn: psycopg2.extensions.connection, schema: str,
                   weeks: int = RANKING_WEEKS) -> list[Bb101Failures]:
    """Current classrooms by judged school days failing BB101 over their institute's
    `ranking_weeks`, worst first; stale classrooms (weeks_behind_institute > 0) are left out."""
    return _records(conn, Bb101Failures, sql.SQL(
        "SELECT t.institute, t.classroom, sum({judged})::int AS judged, "
        "sum({judged} - {days_met})::int AS days_failed "
        "FROM {table} t JOIN ({weeks}) w ON w.institute = t.institute "
        "AND w.week_start = t.week_start AND w.recency <= %s "
        "WHERE NOT EXISTS (SELECT 1 FROM {view} v WHERE v.institute = t.institute "
        "AND v.classroom = t.classroom AND v.{behind} > 0) "
        "GROUP BY t.institute, t.classroom HAVING sum({judged}) > 0 "
        "ORDER BY days_failed DESC, t.institute, t.classroom").format(
            judged=sql.Identifier(IAQ_JUDGED_DAYS), days_met=sql.Identifier(IAQ_BB101_DAYS_MET),
            table=qualified(schema, IAQ_WEEKLY_TABLE), weeks=_ranking_weeks_query(schema),
            view=qualified(schema, IAQ_LATEST_WEEK_VIEW), behind=sql.Identifier(IAQ_WEEKS_BEHIND)),
        (weeks,))


def stale_classrooms(conn: psycopg2.extensions.connection, schema: str) -> list[StaleClassroom]:
    """The classrooms the compliance view lists as behind their institute, by name."""
    return _records(conn, StaleClassroom, sql.SQL(
        "SELECT v.institute, v.classroom, (SELECT max(d.local_date) FROM {daily} d "
        "WHERE d.institute = v.institute AND d.classroom = v.classroom), v.{behind} "
        "FROM {view} v WHERE v.{behind} > 0 ORDER BY v.institute, v.classroom").format(
            daily=qualified(schema, IAQ_DAILY_TABLE), view=qualified(schema, IAQ_LATEST_WEEK_VIEW),
            behind=sql.Identifier(IAQ_WEEKS_BEHIND)))


def _classroom_days(conn: psycopg2.extensions.connection, query: sql.Composable,
                    arguments: tuple[Any, ...] = ()) -> list[ClassroomDay]:
    """The first LISTED_DAYS rows of each institute of `query` (ordered within institutes)."""
    return _records(conn, ClassroomDay, sql.SQL(
        "SELECT {columns} FROM (SELECT q.*, row_number() OVER (PARTITION BY q.institute "
        "ORDER BY q.position) AS listed FROM ({query}) q) l WHERE listed <= %s "
        "ORDER BY institute, listed").format(
            columns=sql.SQL(", ").join(map(sql.Identifier, _DAY_COLUMNS)), query=query),
        (*arguments, LISTED_DAYS))


def peak_episodes(conn: psycopg2.extensions.connection, schema: str,
                  weeks: int = RANKING_WEEKS) -> list[ClassroomDay]:
    """Per institute, its judged school days failing the BB101 peak in its ranking weeks,
    longest episode first (at most LISTED_DAYS each)."""
    return _classroom_days(conn, sql.SQL(
        "SELECT d.*, row_number() OVER (ORDER BY d.longest_peak_episode_minutes DESC, "
        "d.local_date DESC, d.classroom) AS position FROM {daily} d JOIN ({weeks}) w "
        "ON w.institute = d.institute AND w.week_start = d.week_start AND w.recency <= %s "
        "WHERE d.bb101_peak_met = false").format(
            daily=qualified(schema, IAQ_DAILY_TABLE), weeks=_ranking_weeks_query(schema)), (weeks,))


def days_with_too_little_data(conn: psycopg2.extensions.connection, schema: str) -> list[ClassroomDay]:
    """Per institute, its latest school days not judged because their CO2 readings cover too
    little of the occupied time (at most LISTED_DAYS each)."""
    return _classroom_days(conn, sql.SQL(
        "SELECT d.*, row_number() OVER (ORDER BY d.local_date DESC, d.classroom) AS position "
        "FROM {daily} d WHERE d.not_judged_reason IS NOT NULL AND d.co2_occupied_readings > 0").format(
            daily=qualified(schema, IAQ_DAILY_TABLE)))


def institute_weeks(conn: psycopg2.extensions.connection, schema: str) -> list[InstituteWeek]:
    return _records(conn, InstituteWeek, sql.SQL(
        "SELECT institute, week_start, iso_year, iso_week, co2_mean, temperature_mean "
        "FROM {} ORDER BY institute, week_start").format(qualified(schema, INSTITUTE_WEEKLY_TABLE)))


def read_sensor_health(conn: psycopg2.extensions.connection, schema: str) -> SensorHealth | None:
    """The published device_health and sensors_needing_attention (batch/analysis/health_tables.py);
    None when an earlier release published the tables."""
    if not (table_columns(conn, schema, DEVICE_HEALTH_TABLE) and table_columns(conn, schema, ATTENTION_VIEW)):
        return None
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL(
            "SELECT status, count(*) FROM {health} GROUP BY status UNION ALL "
            "SELECT {drift}, count(*) FROM {health} WHERE co2_drift_suspected").format(
                health=sql.Identifier(schema, DEVICE_HEALTH_TABLE), drift=sql.Literal(DRIFT)))
        counts = dict(cursor.fetchall())
    attention = by_institute(_records(conn, SensorAttention, sql.SQL(
        "SELECT institute, classroom, dev_eui, status, reasons FROM {}").format(
            sql.Identifier(schema, ATTENTION_VIEW))))
    return SensorHealth({name: counts.get(name, 0) for name in FLEET_ORDER}, dict(attention))


@dataclass(frozen=True)
class ReportData:
    run: RunRecord
    # The run whose results the tables hold (may differ from `run` when an older run is asked for).
    published_run_id: int | None
    schema: str
    co2_source: Co2Source
    classroom_weeks: list[ClassroomWeekCo2]
    # None: the compliance tables are not published, there is nothing to rank.
    bb101: list[Bb101Failures] | None
    # Per institute, the Mondays of the weeks ranked (`ranking_weeks`).
    ranking_weeks: dict[str, list[date]]
    stale: list[StaleClassroom]
    institute_weeks: list[InstituteWeek]
    # The limits of the run whose results the tables hold (they judged its rows).
    limits: RunLimits
    # The days past the BB101 peak in the ranking weeks, and those with too little data.
    peak_days: list[ClassroomDay]
    sparse_days: list[ClassroomDay]
    # None: the sensor health is not published (an earlier release published the tables).
    sensor_health: SensorHealth | None


def read_report_data(conn: psycopg2.extensions.connection, schema: str,
                     run_id: int | None) -> ReportData:
    """Everything the report shows, read in one snapshot of the published tables."""
    published = latest_succeeded_run_id(conn, schema)
    if run_id is None and published is None:
        raise ConfigurationError(f"no successful run is recorded in {schema}.{RUNS.name}: "
                                 "nothing is published to report on")
    run = fetch_run(conn, schema, run_id if run_id is not None else published)
    source = co2_source(conn, schema)
    # Judged days and stale classrooms came with issue 19: tables published by an older
    # release are not ranked until the analysis has run once with this one.
    has_iaq = (source.table == IAQ_WEEKLY_TABLE
               and IAQ_JUDGED_DAYS in table_columns(conn, schema, IAQ_WEEKLY_TABLE)
               and IAQ_WEEKS_BEHIND in table_columns(conn, schema, IAQ_LATEST_WEEK_VIEW))
    # The charts show the published run's rows: drawn against the limits that judged them.
    judged_by = run if published in (None, run.run_id) else fetch_run(conn, schema, published)
    return ReportData(
        run=run, published_run_id=published, schema=schema, co2_source=source,
        classroom_weeks=classroom_week_co2(conn, schema, source),
        bb101=bb101_failures(conn, schema) if has_iaq else None,
        ranking_weeks=ranking_weeks(conn, schema) if has_iaq else {},
        stale=stale_classrooms(conn, schema) if has_iaq else [],
        institute_weeks=institute_weeks(conn, schema),
        limits=RunLimits.recorded(judged_by.settings),
        peak_days=peak_episodes(conn, schema) if has_iaq else [],
        sparse_days=days_with_too_little_data(conn, schema) if has_iaq else [],
        sensor_health=read_sensor_health(conn, schema))


@contextmanager
def snapshot(conn: psycopg2.extensions.connection) -> Iterator[None]:
    """Read in one read-only snapshot, so that a run publishing meanwhile is seen whole or not at all.

    A connection already inside a transaction (the caller's) is read as it is and left so.
    """
    own = (not conn.autocommit and
           conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE)
    if own:
        with conn.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    try:
        yield
    finally:
        if own:
            conn.rollback()

