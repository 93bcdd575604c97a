"""The run report: one self-contained HTML file showing, per institute, where the air is bad.

It reads only the published tables in PostgreSQL - never Spark, never the raw data - so the
report of a run can be rebuilt at any time:

    python -m batch.report --schema indoor_air --output-dir reports [--run-id N]

The data are fetched by plain query functions (testable against a real PostgreSQL), the
charts drawn by Matplotlib as SVG and inlined into a Jinja2 template: no JavaScript and no
external resource, so the file opens offline by double-click and looks the same tomorrow.
"""
from __future__ import annotations

import argparse
import functools

import io
import logging
import multiprocessing
import os
import re
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
import matplotlib.colors
import matplotlib.dates
import matplotlib.font_manager
import matplotlib.ticker
import matplotlib.textpath
import matplotlib.transforms
import numpy as np
import psycopg2
from matplotlib.figure import Figure
from markupsafe import Markup
from psycopg2 import sql

from batch.analysis.statistics import Thresholds
from batch.core import cli
from batch.core.atomic_file import write_atomically
from batch.core.config import (
    POSTGRES_OPTIONS,
    REPORT_DIR_OPTION,
    Option,
    parse_identifier,
    read_password,
    settings_type,
)
from batch.core.errors import BatchError, ConfigurationError
from batch.analysis.catalog import RUNS_TABLE
from batch.core.postgres import PostgresTarget, connect

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The weekly compliance table of issue 13 (occupied hours, BB101) may not be published yet:
# the names the report reads from it are here, in one place.
IAQ_WEEKLY_TABLE = "classroom_weekly_iaq"
IAQ_DAILY_TABLE = "classroom_daily_iaq"
IAQ_LATEST_WEEK_VIEW = "latest_complete_week_iaq_by_classroom"
IAQ_CO2_MEAN = "co2_occupied_mean"
# School days judged against BB101 (issue 19; a table published before it lacks the column).
IAQ_JUDGED_DAYS = "judged_days"
IAQ_BB101_DAYS_MET = "bb101_days_met"
IAQ_WEEKS_BEHIND = "weeks_behind_institute"
# batch_runs column listing the files a streaming sink had not committed (issue 11); optional.
UNCOMMITTED_FILES_COLUMN = "uncommitted_files"
# batch_runs column of the run's warnings (issue 19); optional.
WARNINGS_COLUMN = "warnings"

CLASSROOM_WEEKLY_TABLE = "classroom_weekly_stats"
INSTITUTE_WEEKLY_TABLE = "institute_weekly_stats"

# BB101 (2018): CO2 above 2,000 ppm for at most 20 consecutive minutes of a school day.
BB101_PEAK_PPM = 2000.0
BB101_PEAK_MINUTES = 20.0
RANKING_WEEKS = 4
RANKING_ROWS_CHARTED = 15
# Longer names are shortened on chart axes (the tables show them in full).
CHART_LABEL_CHARS = 28
# The page template, package data beside this module (a zip of the package needs it too).
TEMPLATE = "page.html.j2"

REPORT_OPTIONS: tuple[Option, ...] = (REPORT_DIR_OPTION,)


class ReportError(BatchError):
    """The published tables cannot be read, or the report cannot be written."""

    exit_code = 4


# --- the report's data, read from the published tables -------------------------------------

@dataclass(frozen=True)
class FileList:
    """How many files, and the names of the first few (a run may list only those)."""

    count: int
    names: list[str]


@dataclass(frozen=True)
class RunRecord:
    """One row of batch_runs, as the data-quality panel shows it."""

    run_id: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    input_path: str
    input_files: int | None
    rows_read: int | None
    rows_used: int | None
    rows_excluded: dict[str, int | None]  # None: not checked by that run (replays)
    values_nulled: dict[str, int]
    skipped_files: list[str]
    # None: batch_runs has no such column (published before issue 11).
    uncommitted_files: FileList | None
    rows_written: dict[str, int]
    phase_seconds: dict[str, float]
    settings: dict[str, Any]
    # None: batch_runs has no such column (published before issue 19).
    warnings: list[str] | None = None


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
class InstituteWeek:
    institute: str
    week_start: date
    iso_year: int
    iso_week: int
    co2_mean: float | None
    temperature_mean: float | None


def _ident(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def relation_exists(conn: psycopg2.extensions.connection, schema: str, name: str) -> bool:
    """Whether table or view `schema.name` exists."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM information_schema.tables "
                       "WHERE table_schema = %s AND table_name = %s)", (schema, name))
        return bool(cursor.fetchone()[0])


def column_exists(conn: psycopg2.extensions.connection, schema: str, table: str, column: str) -> bool:
    with conn.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM information_schema.columns "
                       "WHERE table_schema = %s AND table_name = %s AND column_name = %s)",
                       (schema, table, column))
        return bool(cursor.fetchone()[0])


def latest_succeeded_run_id(conn: psycopg2.extensions.connection, schema: str) -> int | None:
    """The run whose results the published tables hold."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT max(run_id) FROM {} WHERE status = 'succeeded'").format(
            _ident(schema, RUNS_TABLE)))
        return cursor.fetchone()[0]


def fetch_run(conn: psycopg2.extensions.connection, schema: str, run_id: int) -> RunRecord:
    """Row `run_id` of batch_runs; JSON columns as dicts and lists (empty when null)."""
    has_uncommitted = column_exists(conn, schema, RUNS_TABLE, UNCOMMITTED_FILES_COLUMN)
    uncommitted = sql.Identifier(UNCOMMITTED_FILES_COLUMN) if has_uncommitted else sql.SQL("NULL")
    has_warnings = column_exists(conn, schema, RUNS_TABLE, WARNINGS_COLUMN)
    warnings_column = sql.Identifier(WARNINGS_COLUMN) if has_warnings else sql.SQL("NULL")
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL(
            "SELECT run_id, status, started_at, finished_at, input_path, input_files, rows_read, "
            "rows_used, rows_excluded, values_nulled, skipped_files, {uncommitted}, rows_written, "
            "phase_seconds, settings, {warnings} FROM {runs} WHERE run_id = %s").format(
                uncommitted=uncommitted, warnings=warnings_column, runs=_ident(schema, RUNS_TABLE)),
            (run_id,))
        row = cursor.fetchone()
    if row is None:
        raise ConfigurationError(f"run {run_id} is not recorded in {schema}.{RUNS_TABLE}")
    (run_id, status, started_at, finished_at, input_path, input_files, rows_read, rows_used,
     rows_excluded, values_nulled, skipped_files, uncommitted_files, rows_written, phase_seconds,
     settings, warnings) = row
    return RunRecord(
        run_id=run_id, status=status, started_at=started_at, finished_at=finished_at,
        input_path=input_path, input_files=input_files, rows_read=rows_read, rows_used=rows_used,
        rows_excluded=rows_excluded or {}, values_nulled=values_nulled or {},
        skipped_files=skipped_files or [],
        uncommitted_files=_file_list(uncommitted_files) if has_uncommitted else None,
        rows_written=rows_written or {}, phase_seconds=phase_seconds or {}, settings=settings or {},
        # A run of an earlier release in an evolved table: NULL, not recorded.
        warnings=[str(warning) for warning in warnings] if warnings is not None else None)


def _file_list(value: Any) -> FileList | None:
    """The uncommitted files as the analysis records them ({"count": n, "first": [names]});
    None for a run that did not record them (an earlier release)."""
    if value is None:
        return None
    return FileList(int(value["count"]), [str(name) for name in value["first"]])


def co2_source(conn: psycopg2.extensions.connection, schema: str) -> Co2Source:
    """The occupied-hours CO2 mean when the compliance table is published, else the all-hours mean."""
    if relation_exists(conn, schema, IAQ_WEEKLY_TABLE):
        return Co2Source(IAQ_WEEKLY_TABLE, IAQ_CO2_MEAN, "CO2 mean over occupied hours")
    return Co2Source(CLASSROOM_WEEKLY_TABLE, "co2_mean",
                     "CO2 mean over all hours (nights and weekends included)")


def classroom_week_co2(conn: psycopg2.extensions.connection, schema: str,
                       source: Co2Source) -> list[ClassroomWeekCo2]:
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL(
            "SELECT institute, classroom, week_start, iso_year, iso_week, {co2} FROM {table} "
            "ORDER BY institute, classroom, week_start").format(
                co2=sql.Identifier(source.column), table=_ident(schema, source.table)))
        return [ClassroomWeekCo2(*row) for row in cursor.fetchall()]


def _ranking_weeks_query(schema: str) -> sql.Composed:
    """(institute, week_start) of each institute's latest complete ISO weeks that had a judged
    school day, the most recent first numbered 1 (`recency`): holidays do not count."""
    return sql.SQL(
        "SELECT institute, week_start, dense_rank() OVER (PARTITION BY institute "
        "ORDER BY week_start DESC) AS recency FROM {table} WHERE week_complete "
        "GROUP BY institute, week_start HAVING sum({judged}) > 0").format(
            table=_ident(schema, IAQ_WEEKLY_TABLE), judged=sql.Identifier(IAQ_JUDGED_DAYS))


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
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL(
            "SELECT t.institute, t.classroom, sum({judged})::int AS judged, "
            "sum({judged} - {days_met})::int AS days_failed "
            "FROM {table} t JOIN ({weeks}) w ON w.institute = t.institute "
            "AND w.week_start = t.week_start AND w.recency <= %s "
            "WHERE NOT EXISTS (SELECT 1 FROM {view} v WHERE v.institute = t.institute "
            "AND v.classroom = t.classroom AND v.{behind} > 0) "
            "GROUP BY t.institute, t.classroom HAVING sum({judged}) > 0 "
            "ORDER BY days_failed DESC, t.institute, t.classroom").format(
                judged=sql.Identifier(IAQ_JUDGED_DAYS), days_met=sql.Identifier(IAQ_BB101_DAYS_MET),
                table=_ident(schema, IAQ_WEEKLY_TABLE), weeks=_ranking_weeks_query(schema),
                view=_ident(schema, IAQ_LATEST_WEEK_VIEW), behind=sql.Identifier(IAQ_WEEKS_BEHIND)),
            (weeks,))
        return [Bb101Failures(*row) for row in cursor.fetchall()]


def stale_classrooms(conn: psycopg2.extensions.connection, schema: str) -> list[StaleClassroom]:
    """The classrooms the compliance view lists as behind their institute, by name."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL(
            "SELECT v.institute, v.classroom, (SELECT max(d.local_date) FROM {daily} d "
            "WHERE d.institute = v.institute AND d.classroom = v.classroom), v.{behind} "
            "FROM {view} v WHERE v.{behind} > 0 ORDER BY v.institute, v.classroom").format(
                daily=_ident(schema, IAQ_DAILY_TABLE), view=_ident(schema, IAQ_LATEST_WEEK_VIEW),
                behind=sql.Identifier(IAQ_WEEKS_BEHIND)))
        return [StaleClassroom(*row) for row in cursor.fetchall()]


# Per institute, the longest episodes and the days with too little data the report lists.
LISTED_DAYS = 10
_DAY_COLUMNS = ("institute", "classroom", "local_date", "longest_peak_episode_minutes",
                "co2_occupied_max", "occupied_coverage")


def _classroom_days(conn: psycopg2.extensions.connection, query: sql.Composable,
                    arguments: tuple[Any, ...] = ()) -> list[ClassroomDay]:
    """The first LISTED_DAYS rows of each institute of `query` (ordered within institutes)."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL(
            "SELECT {columns} FROM (SELECT q.*, row_number() OVER (PARTITION BY q.institute "
            "ORDER BY q.position) AS listed FROM ({query}) q) l WHERE listed <= %s "
            "ORDER BY institute, listed").format(
                columns=sql.SQL(", ").join(map(sql.Identifier, _DAY_COLUMNS)), query=query),
            (*arguments, LISTED_DAYS))
        return [ClassroomDay(*row) for row in cursor.fetchall()]


def peak_episodes(conn: psycopg2.extensions.connection, schema: str,
                  weeks: int = RANKING_WEEKS) -> list[ClassroomDay]:
    """Per institute, its judged school days failing the BB101 peak in its ranking weeks,
    longest episode first (at most LISTED_DAYS each)."""
    return _classroom_days(conn, sql.SQL(
        "SELECT d.*, row_number() OVER (ORDER BY d.longest_peak_episode_minutes DESC, "
        "d.local_date DESC, d.classroom) AS position FROM {daily} d JOIN ({weeks}) w "
        "ON w.institute = d.institute AND w.week_start = d.week_start AND w.recency <= %s "
        "WHERE d.bb101_peak_met = false").format(
            daily=_ident(schema, IAQ_DAILY_TABLE), weeks=_ranking_weeks_query(schema)), (weeks,))


def days_with_too_little_data(conn: psycopg2.extensions.connection, schema: str) -> list[ClassroomDay]:
    """Per institute, its latest school days not judged because their CO2 readings cover too
    little of the occupied time (at most LISTED_DAYS each)."""
    return _classroom_days(conn, sql.SQL(
        "SELECT d.*, row_number() OVER (ORDER BY d.local_date DESC, d.classroom) AS position "
        "FROM {daily} d WHERE d.not_judged_reason IS NOT NULL AND d.co2_occupied_readings > 0").format(
            daily=_ident(schema, IAQ_DAILY_TABLE)))


def institute_weeks(conn: psycopg2.extensions.connection, schema: str) -> list[InstituteWeek]:
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL(
            "SELECT institute, week_start, iso_year, iso_week, co2_mean, temperature_mean "
            "FROM {} ORDER BY institute, week_start").format(_ident(schema, INSTITUTE_WEEKLY_TABLE)))
        return [InstituteWeek(*row) for row in cursor.fetchall()]


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
    thresholds: Thresholds = field(default_factory=Thresholds)
    # The days past the BB101 peak in the ranking weeks, and those with too little data.
    peak_days: list[ClassroomDay] = field(default_factory=list)
    sparse_days: list[ClassroomDay] = field(default_factory=list)


def read_report_data(conn: psycopg2.extensions.connection, schema: str,
                     run_id: int | None) -> ReportData:
    """Everything the report shows, read in one snapshot of the published tables."""
    published = latest_succeeded_run_id(conn, schema)
    if run_id is None and published is None:
        raise ConfigurationError(f"no successful run is recorded in {schema}.{RUNS_TABLE}: "
                                 "nothing is published to report on")
    run = fetch_run(conn, schema, run_id if run_id is not None else published)
    source = co2_source(conn, schema)
    # Judged days and stale classrooms came with issue 19: tables published by an older
    # release are not ranked until the analysis has run once with this one.
    has_iaq = (source.table == IAQ_WEEKLY_TABLE
               and column_exists(conn, schema, IAQ_WEEKLY_TABLE, IAQ_JUDGED_DAYS)
               and column_exists(conn, schema, IAQ_LATEST_WEEK_VIEW, IAQ_WEEKS_BEHIND))
    return ReportData(
        run=run, published_run_id=published, schema=schema, co2_source=source,
        classroom_weeks=classroom_week_co2(conn, schema, source),
        bb101=bb101_failures(conn, schema) if has_iaq else None,
        ranking_weeks=ranking_weeks(conn, schema) if has_iaq else {},
        stale=stale_classrooms(conn, schema) if has_iaq else [],
        institute_weeks=institute_weeks(conn, schema),
        thresholds=run_thresholds(run.settings),
        peak_days=peak_episodes(conn, schema) if has_iaq else [],
        sparse_days=days_with_too_little_data(conn, schema) if has_iaq else [])


def run_thresholds(settings: Mapping[str, Any]) -> Thresholds:
    """The thresholds the run used (recorded in its settings), defaults for those it lacks."""
    names = {item.name for item in fields(Thresholds)}
    return Thresholds(**{name: float(settings[name]) for name in names if settings.get(name) is not None})


@contextmanager
def _snapshot(conn: psycopg2.extensions.connection) -> Iterator[None]:
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


# --- charts ----------------------------------------------------------------------------------

_RC = {
    # Text stays text (small, searchable; Matplotlib escapes it), never parsed as TeX math:
    # a name holding `$` is a name.
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.family": "DejaVu Sans",  # shipped with Matplotlib: its layout matches the text
    "font.size": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
# Most charts are drawn this wide (inches): shrunk to a phone's width, 12 pt text stays legible.
NARROW_INCHES = 4.8
NO_DATA_COLOUR = "#d9d9d9"
# The heatmap's colour scale: greens below the first threshold, yellow to red between the
# thresholds, dark red from the last; `co2_colour_stops` places the colours at the thresholds.
CO2_SCALE_FLOOR_PPM = 400.0  # about outdoor air
CO2_SCALE_CEILING_PPM = 2500.0
# Measures text without a renderer (points, as the charts' fonts are sized in).
_TEXT_METRICS = matplotlib.textpath.TextToPath()
_SVG_HEADER = re.compile(r"\A.*?(?=<svg\b)", re.S)
_SVG_SIZE = re.compile(r'\s(?:width|height)="[^"]*"')
_SVG_VIEWBOX_WIDTH = re.compile(r'viewBox="[-\d.]+ [-\d.]+ ([\d.]+) ')


def _svg(figure: Figure, chart_id: str, scrolls: bool = False) -> Markup:
    """`figure` as an inline, scalable <svg> element (sized by CSS through its viewBox).

    A chart is shown at most at its natural size (a point is 4/3 CSS pixels), narrower when
    the screen is. One that `scrolls` keeps at least one CSS pixel per point: on a phone it
    scrolls sideways in its frame rather than shrink its text below legibility.
    """
    buffer = io.StringIO()
    # The salt makes clip-path ids unique per chart: several SVGs share one HTML document.
    with matplotlib.rc_context({**_RC, "svg.hashsalt": chart_id}):
        _fix_layout(figure)
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = _SVG_HEADER.sub("", buffer.getvalue(), count=1)
    opening, rest = text.split(">", 1)
    opening = _SVG_SIZE.sub("", opening) + f' class="chart-svg" data-chart="{chart_id}" role="img"'
    width = float(_SVG_VIEWBOX_WIDTH.search(opening).group(1))
    opening += f' style="max-width: {width * 4 / 3:.0f}px'
    opening += f'; min-width: {width:.0f}px"' if scrolls else '"'
    # Matplotlib wrote this markup and escaped every text in it.
    return Markup(opening + ">" + rest)


def _figure(width: float, height: float) -> Figure:
    # 72 dpi, the SVG backend's: the layout is measured at the resolution it is written at.
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), dpi=72, layout="constrained")


def _fix_layout(figure: Figure) -> None:
    """Place the axes by the constrained layout once, then keep them there.

    With a layout engine set, savefig draws the whole figure twice and lays it out at each
    draw; laid out here, the figure is drawn once. A layout depends on the sizes of the texts
    around the axes only, and most institutes' charts of a kind have the same texts: a layout
    solved for one is reused for the next whose texts, where the axes then stand, are the same.
    """
    engine = figure.get_layout_engine()
    if engine is None:
        return
    unplaced = _layout_texts(figure)
    solved = _SOLVED_LAYOUTS.get(unplaced)
    if solved is not None:
        start = _placement(figure)
        _place(figure, solved.placement)
        if _layout_texts(figure) != solved.texts:
            _place(figure, start)  # solved from where it stood, as if never tried
            solved = None
    if solved is None:
        engine.execute(figure)
        _SOLVED_LAYOUTS[unplaced] = SolvedLayout(_placement(figure), _layout_texts(figure))
    figure.set_layout_engine(None)


@dataclass(frozen=True)
class SolvedLayout:
    placement: tuple[Any, ...]  # where the axes and the title stand (_placement)
    texts: tuple[Any, ...]  # what the layout was solved for, as placed (_layout_texts)


# Layouts solved in this process, by the texts of the figure before it was laid out.
_SOLVED_LAYOUTS: dict[tuple[Any, ...], SolvedLayout] = {}


def _layout_texts(figure: Figure) -> tuple[Any, ...]:
    """All that the constrained layout of `figure` measures: its size, the title's lines, the
    legends, and per axes its axis titles, the texts beside it and the tick labels it would
    draw where it stands now."""
    parts: list[Any] = [tuple(figure.get_size_inches())]
    parts += [(text.get_text().count("\n"), text.get_fontsize()) for text in figure.texts]
    parts += [tuple(text.get_text() for text in legend.get_texts()) for legend in figure.legends]
    for axes in figure.axes:
        parts += [axes.get_xlabel(), axes.get_ylabel(), tuple(text.get_text() for text in axes.texts)]
        for axis in (axes.xaxis, axes.yaxis):
            low, high = sorted(axis.get_view_interval())
            ticks = [tick for tick in axis.get_major_locator()() if low <= tick <= high]
            formatter = axis.get_major_formatter()
            # A label near an end of the axis may stick out beyond it, by how near it is.
            ends = tuple(round(fraction, 4) for fraction in
                         ((tick - low) / (high - low) for tick in ticks) if not 0.1 < fraction < 0.9)
            parts.append((tuple(formatter.format_ticks(ticks)), formatter.get_offset(), ends))
    return tuple(parts)


def _placement(figure: Figure) -> tuple[Any, ...]:
    return (tuple(axes.get_position(original=True).frozen() for axes in figure.axes),
            tuple((text.get_position(), text.get_verticalalignment()) for text in figure.texts))


def _place(figure: Figure, placement: tuple[Any, ...]) -> None:
    boxes, texts = placement
    for axes, box in zip(figure.axes, boxes):
        in_layout = axes.get_in_layout()
        axes.set_position(box, which="both")
        axes.set_in_layout(in_layout)  # set_position takes the axes out of the layout
    for text, (position, alignment) in zip(figure.texts, texts):
        text.set_position(position)
        text.set_verticalalignment(alignment)


def _label_inches(names: Iterable[str]) -> float:
    """About how wide the longest of `names` is as a 12 pt axis label, and the axis title beside it."""
    return 0.6 + 0.09 * max((len(_short(name)) for name in names), default=0)


def _short(name: str) -> str:
    return name if len(name) <= CHART_LABEL_CHARS else name[:CHART_LABEL_CHARS - 1] + "…"


def _set_title(figure: Figure, title: str) -> None:
    """Title the chart from the figure's left edge, wrapped to its width (long names would overflow)."""
    # Bold 13 pt DejaVu Sans: about 8 average characters an inch, fewer wide ones (w, <, M).
    characters = int(figure.get_figwidth() * 7)
    figure.suptitle("\n".join(textwrap.wrap(title, characters)), x=0.01, ha="left",
                    fontsize=13, fontweight="bold")


def _week_label(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def co2_colour_stops(thresholds: Thresholds) -> list[tuple[float, str]]:
    """(ppm, colour) anchors of the heatmap's scale: the hue turns at each threshold."""
    return [(CO2_SCALE_FLOOR_PPM, "#1a9850"), (thresholds.co2_high_ppm * 0.8, "#91cf60"),
            (thresholds.co2_high_ppm, "#fee08b"), (thresholds.co2_very_high_ppm, "#fc8d59"),
            (BB101_PEAK_PPM, "#d73027"), (CO2_SCALE_CEILING_PPM, "#67001f")]


def co2_heatmap(cells: Sequence[ClassroomWeekCo2], weeks: Sequence[date], thresholds: Thresholds,
                title: str, chart_id: str) -> Markup:
    """Classroom x ISO week, each cell coloured by its weekly CO2 on the thresholds' scale."""
    classrooms = sorted({cell.classroom for cell in cells})
    row_of = {name: row for row, name in enumerate(classrooms)}
    column_of = {monday: column for column, monday in enumerate(weeks)}
    grid = np.full((len(classrooms), len(weeks)), np.nan)
    for cell in cells:
        if cell.co2_ppm is not None:
            grid[row_of[cell.classroom], column_of[cell.week_start]] = cell.co2_ppm
    stops = co2_colour_stops(thresholds)
    span = CO2_SCALE_CEILING_PPM - CO2_SCALE_FLOOR_PPM
    colours = matplotlib.colors.LinearSegmentedColormap.from_list(
        "co2", [((ppm - CO2_SCALE_FLOOR_PPM) / span, colour) for ppm, colour in stops])
    colours.set_bad(NO_DATA_COLOUR)
    # The grid, never so small that the colour bar beside it cannot show its ticks, with room
    # for the longest classroom label, the week labels, the title and the colour bar.
    grid_width, grid_height = max(2.5, 0.17 * len(weeks)), max(1.8, 0.26 * len(classrooms))
    figure = _figure(max(NARROW_INCHES, _label_inches(classrooms) + 1.4 + grid_width),
                     grid_height + 2.0)
    with matplotlib.rc_context(_RC):
        axes = figure.add_subplot()
        # One image of one pixel per cell (the browser scales it up without smoothing), not a
        # path per cell: thousands of cells cost what one does.
        mesh = axes.imshow(np.ma.masked_invalid(grid), cmap=colours, vmin=CO2_SCALE_FLOOR_PPM,
                           vmax=CO2_SCALE_CEILING_PPM, interpolation="none", aspect="auto",
                           extent=(0, len(weeks), len(classrooms), 0))
        axes.plot(*_cell_borders(len(weeks), len(classrooms)), color="white", linewidth=0.5)
        axes.set(xlim=(0, len(weeks)), ylim=(len(classrooms), 0))  # first classroom on top
        _category_labels(axes, "y", np.arange(len(classrooms)) + 0.5,
                         [_short(name) for name in classrooms], "classroom")
        step = max(1, len(weeks) // 26)
        _category_labels(axes, "x", np.arange(0, len(weeks), step) + 0.5,
                         [_week_label(monday) for monday in weeks[::step]], "ISO week")
        for side in ("left", "bottom"):
            axes.spines[side].set_visible(False)
        _set_title(figure, title)
        # A bar 0.15 inch wide along the whole grid, whatever the grid's size.
        bar = figure.colorbar(mesh, ax=axes, location="right", fraction=0.15 / grid_width,
                              aspect=grid_height / 0.15, pad=0.01, extend="max")
        bar.set_ticks([CO2_SCALE_FLOOR_PPM, *co2_bands(thresholds), CO2_SCALE_CEILING_PPM])
        bar.ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
        for limit in co2_bands(thresholds):
            bar.ax.axhline(limit, color="black", linewidth=0.8)
        bar.set_label("CO2, ppm")
    return _svg(figure, chart_id, scrolls=True)


def _cell_borders(columns: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y of the lines between the cells of a `rows` x `columns` grid, as one polyline
    broken by NaN (one path to draw, where a line per border would be one each)."""
    vertical = [((k, k, np.nan), (0, rows, np.nan)) for k in range(1, columns)]
    horizontal = [((0, columns, np.nan), (k, k, np.nan)) for k in range(1, rows)]
    lines = vertical + horizontal
    return (np.array([x for xs, _ in lines for x in xs], dtype=float),
            np.array([y for _, ys in lines for y in ys], dtype=float))


def _category_labels(axes: Any, axis: str, positions: Sequence[float], labels: Sequence[str],
                     title: str) -> None:
    """Label the rows ("y") or columns ("x", written upwards) of a grid at `positions`, in data
    units, with plain texts beside the axes instead of ticks (a tick is four artists, built,
    measured and drawn at each layout pass, and a heatmap has dozens); `title` names the axis,
    beyond the longest label."""
    gap_points = 4.0
    font = matplotlib.font_manager.FontProperties(family=_RC["font.family"], size=_RC["font.size"])
    longest = max((_TEXT_METRICS.get_text_width_height_descent(label, font, ismath=False)[0]
                   for label in labels), default=0.0)
    shift = (-gap_points / 72, 0) if axis == "y" else (0, -gap_points / 72)
    gap = matplotlib.transforms.ScaledTranslation(*shift, axes.figure.dpi_scale_trans)
    if axis == "y":
        axes.set_yticks([])
        place = matplotlib.transforms.blended_transform_factory(axes.transAxes, axes.transData)
        for position, label in zip(positions, labels):
            axes.text(0, position, label, transform=place + gap, ha="right", va="center",
                      clip_on=False)
        axes.set_ylabel(title, labelpad=longest + 2 * gap_points)
    else:
        axes.set_xticks([])
        place = matplotlib.transforms.blended_transform_factory(axes.transData, axes.transAxes)
        for position, label in zip(positions, labels):
            axes.text(position, 0, label, transform=place + gap, ha="center", va="top",
                      rotation=90, clip_on=False)
        axes.set_xlabel(title, labelpad=longest + 2 * gap_points)


def co2_bands(thresholds: Thresholds) -> tuple[float, float, float]:
    return (thresholds.co2_high_ppm, thresholds.co2_very_high_ppm, BB101_PEAK_PPM)


def _iso_weeks(mondays: Sequence[date]) -> str:
    """`ISO weeks 2025-W10, 2025-W12` (the weeks ranked need not be consecutive)."""
    return "ISO week" + ("s " if len(mondays) > 1 else " ") + ", ".join(map(_week_label, mondays))


def bb101_chart(failures: Sequence[Bb101Failures], title: str, chart_id: str) -> Markup:
    """Horizontal bars: judged school days failing BB101 per classroom, worst at the top."""
    shown = list(failures[:RANKING_ROWS_CHARTED])
    figure = _figure(max(NARROW_INCHES, _label_inches(row.classroom for row in shown) + 3.0),
                     1.8 + 0.32 * max(1, len(shown)))
    with matplotlib.rc_context(_RC):
        axes = figure.add_subplot()
        positions = np.arange(len(shown))
        axes.barh(positions, [row.judged_days for row in shown], color="#d9d9d9",
                  label="judged school days")
        axes.barh(positions, [row.days_failed for row in shown], color="#b2182b",
                  label="failing BB101")
        axes.set_yticks(positions, [_short(row.classroom) for row in shown])
        axes.invert_yaxis()
        axes.xaxis.get_major_locator().set_params(integer=True)
        # The weeks are named in the caption: listed here, they outgrew a narrow chart.
        axes.set_xlabel("judged school days")
        axes.set_ylabel("classroom")
        _set_title(figure, title)
        figure.legend(loc="outside lower center", ncols=2, frameon=False, fontsize=10)
    return _svg(figure, chart_id)


def _weekly_line(weeks: Sequence[InstituteWeek], values: Sequence[float | None], colour: str,
                 label: str, unit_label: str, title: str) -> tuple[Figure, Any]:
    figure = _figure(NARROW_INCHES, 3.4)
    axes = figure.add_subplot()
    axes.plot([week.week_start for week in weeks], [np.nan if v is None else v for v in values],
              marker="o", markersize=3, color=colour, label=label)
    first, last = weeks[0].week_start, weeks[-1].week_start
    span_weeks = (last - first).days // 7
    axes.set_xlim(first - timedelta(days=4), last + timedelta(days=4))
    if span_weeks < 12:
        # Too short a span for AutoDateLocator (it would tick hours): tick a few Mondays.
        axes.xaxis.set_major_locator(
            matplotlib.dates.WeekdayLocator(matplotlib.dates.MO, interval=span_weeks // 5 + 1))
        axes.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%d %b"))
    else:
        locator = matplotlib.dates.AutoDateLocator(maxticks=7)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(matplotlib.dates.ConciseDateFormatter(locator))
    # The dates' locators walk calendar rules at every call, and the layout and the drawing
    # call them a dozen times: the ticks, which depend on the span only, are placed once.
    axes.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(axes.xaxis.get_major_locator()()))
    axes.set_xlabel("week (Monday it starts on)")
    axes.set_ylabel(unit_label)
    _set_title(figure, title)
    axes.grid(axis="y", color="#e2e8f0", linewidth=0.8)
    return figure, axes


def co2_trend_chart(weeks: Sequence[InstituteWeek], thresholds: Thresholds, title: str,
                    chart_id: str) -> Markup:
    values = [week.co2_mean for week in weeks]
    with matplotlib.rc_context(_RC):
        figure, axes = _weekly_line(weeks, values, "#2b6cb0", "weekly CO2 mean", "CO2, ppm", title)
        axes.axhline(thresholds.co2_high_ppm, color="#d73027", linestyle="--", linewidth=1,
                     label=f"{thresholds.co2_high_ppm:,.0f} ppm")
        highest = max([v for v in values if v is not None], default=0.0)
        axes.set_ylim(0, max(thresholds.co2_high_ppm, highest) * 1.15)
        figure.legend(loc="outside lower center", frameon=False, fontsize=10, ncols=2)
    return _svg(figure, chart_id)


def temperature_trend_chart(weeks: Sequence[InstituteWeek], thresholds: Thresholds, title: str,
                            chart_id: str) -> Markup:
    with matplotlib.rc_context(_RC):
        figure, axes = _weekly_line(weeks, [week.temperature_mean for week in weeks], "#c05621",
                                    "weekly temperature mean", "temperature, °C", title)
        axes.axhspan(thresholds.comfort_min_c, thresholds.comfort_max_c, color="#c6f6d5",
                     alpha=0.7, zorder=0,
                     label=f"comfort {thresholds.comfort_min_c:g}–{thresholds.comfort_max_c:g} °C")
        figure.legend(loc="outside lower center", frameon=False, fontsize=10, ncols=2)
    return _svg(figure, chart_id)


# The phases in the order they run (batch_runs.phase_seconds is a JSON object: PostgreSQL
# returns its keys sorted by name); a phase not listed follows them, by name.
PHASE_ORDER = ("read", "plan", "aggregate", "write", "publish", "report")


def _phase_rank(phase: str) -> tuple[int, str]:
    head = phase.split(".")[0]
    return (PHASE_ORDER.index(head) if head in PHASE_ORDER else len(PHASE_ORDER), phase)


def phase_chart(phase_seconds: Mapping[str, float], title: str, chart_id: str) -> Markup:
    """Every phase the run recorded, in the order they run."""
    phases = sorted(phase_seconds, key=_phase_rank)
    figure = _figure(NARROW_INCHES, 1.5 + 0.34 * max(1, len(phases)))
    with matplotlib.rc_context(_RC):
        axes = figure.add_subplot()
        positions = np.arange(len(phases))
        seconds = [float(phase_seconds[phase]) for phase in phases]
        bars = axes.barh(positions, seconds, color="#4a5568")
        axes.bar_label(bars, labels=[f"{value:,.1f} s" for value in seconds], padding=3, fontsize=10)
        axes.set_yticks(positions, phases)
        axes.invert_yaxis()
        axes.set_xlabel("wall time, seconds")
        axes.set_ylabel("phase")
        _set_title(figure, title)
        axes.margins(x=0.2)
    return _svg(figure, chart_id)


# --- the page --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Chart:
    title: str
    caption: str
    svg: Markup
    wide: bool = False  # scrolls sideways on a narrow screen instead of shrinking its text


@dataclass(frozen=True)
class InstituteSection:
    anchor: str
    name: str
    classrooms: int
    heatmap: Chart | None
    bb101_chart: Chart | None
    bb101_rows: list[Bb101Failures]
    # The Mondays of the weeks ranked; the classrooms not ranked for being stale.
    ranking_weeks: list[date]
    stale: list[StaleClassroom]
    trends: list[Chart]
    peak_days: list[ClassroomDay] = field(default_factory=list)
    sparse_days: list[ClassroomDay] = field(default_factory=list)


def _mondays(cells: Sequence[ClassroomWeekCo2]) -> list[date]:
    """Every Monday from the first week with data to the last: missing weeks show as gaps."""
    if not cells:
        return []
    first, last = min(cell.week_start for cell in cells), max(cell.week_start for cell in cells)
    return [first + timedelta(weeks=k) for k in range((last - first).days // 7 + 1)]


# Drawing is ~0.2 s of Matplotlib per institute, one core's work while the job's cores are
# otherwise idle: from this many institutes, the sections are drawn by a pool of processes
# (spawned: the driver may hold the JVM gateway's threads, which fork would copy
# half-locked), each paying ~1 s to start and import Matplotlib.
PARALLEL_FROM_INSTITUTES = 8
MAX_DRAWING_PROCESSES = 4


def institute_sections(data: ReportData) -> list[InstituteSection]:
    weeks = _mondays(data.classroom_weeks)  # one axis for all institutes: heatmaps line up
    cells: dict[str, list[ClassroomWeekCo2]] = defaultdict(list)
    trends: dict[str, list[InstituteWeek]] = defaultdict(list)
    ranked: dict[str, list[Bb101Failures]] = defaultdict(list)
    stale: dict[str, list[StaleClassroom]] = defaultdict(list)
    for cell in data.classroom_weeks:
        cells[cell.institute].append(cell)
    for week in data.institute_weeks:
        trends[week.institute].append(week)
    for row in data.bb101 or []:
        ranked[row.institute].append(row)
    for classroom in data.stale:
        stale[classroom.institute].append(classroom)
    days: dict[str, dict[str, list[ClassroomDay]]] = {"peak": defaultdict(list), "sparse": defaultdict(list)}
    for kind, rows in (("peak", data.peak_days), ("sparse", data.sparse_days)):
        for day in rows:
            days[kind][day.institute].append(day)
    names = sorted(cells.keys() | trends.keys())
    # What every section shares, without the other institutes' rows (sent to each process).
    shared = replace(data, classroom_weeks=[], institute_weeks=[], bb101=None, ranking_weeks={},
                     stale=[], peak_days=[], sparse_days=[])
    columns = (list(range(1, len(names) + 1)), names, [cells[name] for name in names],
               [trends[name] for name in names], [ranked[name] for name in names],
               [data.ranking_weeks.get(name, []) for name in names], [stale[name] for name in names],
               [days["peak"][name] for name in names], [days["sparse"][name] for name in names])
    return _draw(functools.partial(institute_section, shared, weeks), columns, len(names))


def _drawing_processes(sections: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, MAX_DRAWING_PROCESSES) if sections >= PARALLEL_FROM_INSTITUTES else 1


def _draw(draw: Callable[..., InstituteSection], columns: tuple[list[Any], ...],
          sections: int) -> list[InstituteSection]:
    """`draw` applied to each row of `columns`, in order: in a pool of processes when
    there are enough sections and cores, in this process otherwise or if the pool breaks."""
    processes = _drawing_processes(sections)
    if processes > 1:
        try:
            with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
                return list(pool.map(draw, *columns, chunksize=max(1, sections // (4 * processes))))
        except (BrokenProcessPool, OSError) as error:
            log.warning("drawing the report's charts in %d processes failed (%s); drawing them "
                        "here", processes, error)
    return list(map(draw, *columns))


def institute_section(data: ReportData, weeks: Sequence[date], number: int, name: str,
                      cells: Sequence[ClassroomWeekCo2], trend: Sequence[InstituteWeek],
                      ranked: list[Bb101Failures], mondays: list[date],
                      stale: list[StaleClassroom], peak_days: list[ClassroomDay],
                      sparse_days: list[ClassroomDay]) -> InstituteSection:
    """The charts of institute `name`, the `number`th: `cells`, `trend`, `ranked`, its
    ranking weeks' `mondays`, `stale`, `peak_days` and `sparse_days` are its rows."""
    short = _short(name)
    heatmap = ranking = None
    if cells:
        title = f"{short}: weekly CO2 per classroom"
        heatmap = Chart(title, f"Weekly {data.co2_source.label} of each classroom, coloured "
                        "on a scale that turns yellow, orange and red at the thresholds "
                        "marked on its bar; grey: no data that week.",
                        co2_heatmap(cells, weeks, data.thresholds, title,
                                    f"heatmap-{number}"), wide=True)
    if mondays and any(row.days_failed for row in ranked):
        title = f"{short}: school days failing BB101"
        ranking = Chart(title, "Judged school days (grey) and those failing BB101 (red) of the "
                        f"{min(RANKING_ROWS_CHARTED, len(ranked))} worst current classrooms over "
                        f"the last {RANKING_WEEKS} complete weeks with school days "
                        f"({_iso_weeks(mondays)}).",
                        bb101_chart(ranked, title, f"bb101-{number}"))
    trend_charts = []
    if trend:
        title = f"{short}: weekly CO2"
        trend_charts.append(Chart(title, "Weekly CO2 mean over all the institute's classrooms "
                                  "and all hours.", co2_trend_chart(trend, data.thresholds, title,
                                                                    f"co2-trend-{number}")))
        title = f"{short}: weekly temperature"
        trend_charts.append(Chart(title, "Weekly air temperature mean over all the institute's "
                                  "classrooms and all hours.", temperature_trend_chart(
                                      trend, data.thresholds, title, f"temperature-trend-{number}")))
    return InstituteSection(
        anchor=f"institute-{number}", name=name,
        classrooms=len({cell.classroom for cell in cells}), heatmap=heatmap,
        bb101_chart=ranking, bb101_rows=ranked, ranking_weeks=mondays, stale=stale,
        trends=trend_charts, peak_days=peak_days, sparse_days=sparse_days)


def render_report(data: ReportData, generated_at: datetime) -> str:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("batch.report", "."), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    run = data.run
    _SOLVED_LAYOUTS.clear()  # a few hundred bytes a chart: kept for one report, not for the process
    phases = (Chart("Run time per phase", "Wall time of each phase the run recorded (a run "
                    "records the writing of its own report after it, in batch_runs.phase_seconds).",
                    phase_chart(run.phase_seconds, "Run time per phase", "phases"))
              if run.phase_seconds else None)
    return environment.get_template(TEMPLATE).render(
        data=data, run=run, sections=institute_sections(data), phases=phases,
        generated_at=generated_at, ranking_weeks=RANKING_WEEKS, week_label=_week_label,
        iso_weeks=_iso_weeks, listed_days=LISTED_DAYS,
        iaq_table=IAQ_WEEKLY_TABLE, bb101_peak=_run_setting(run, "iaq_bb101_peak_co2_ppm", BB101_PEAK_PPM),
        bb101_peak_minutes=_run_setting(run, "iaq_bb101_peak_minutes", BB101_PEAK_MINUTES))


def _run_setting(run: RunRecord, name: str, default: float) -> float:
    """A number the run recorded in its settings; `default` for a run that did not."""
    value = run.settings.get(name)
    return default if value is None else float(value)


def report_file_name(run: RunRecord) -> str:
    started = run.started_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"report-run-{run.run_id}-{started}.html"


def write_report(conn_or_target: psycopg2.extensions.connection | PostgresTarget, schema: str,
                 report_dir: Path | str, run_id: int | None = None) -> Path:
    """Write the report of run `run_id` (default: the latest successful one); return its path.

    Given a PostgresTarget it connects and disconnects; given a connection (the analysis's,
    after its publish) it reads through it and leaves it as it was.
    """
    try:
        parse_identifier(schema)
    except ValueError as error:
        raise ConfigurationError(f"schema: {error}") from None
    if isinstance(conn_or_target, PostgresTarget):
        conn = connect(conn_or_target)
        address = conn_or_target.address
    else:
        conn, address = conn_or_target, "PostgreSQL"
    try:
        with _snapshot(conn):
            data = read_report_data(conn, schema, run_id)
    except psycopg2.Error as error:
        message = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ReportError(f"reading the published tables of schema {schema} at {address} "
                          f"failed: {message}") from None
    finally:
        if conn is not conn_or_target:
            conn.close()
    path = Path(report_dir) / report_file_name(data.run)
    try:
        write_atomically(path, render_report(data, datetime.now(timezone.utc)))
    except jinja2.TemplateNotFound:
        raise ReportError(f"the report's page template {TEMPLATE} is missing from the batch "
                          f"package at {Path(__file__).parent}: ship batch/report/*.j2 with it") from None
    except OSError as error:
        raise ReportError(f"cannot write the report {path}: {error.strerror}") from None
    log.info("report of run %d written to %s", data.run.run_id, path)
    return path


# --- command line ----------------------------------------------------------------------------

class ReportSettings(settings_type(  # type: ignore[misc]
        "ReportSettings", POSTGRES_OPTIONS + REPORT_OPTIONS, extra=(("run_id", int, None),))):
    """One field per option, and the run to report on (None: the latest successful one)."""

    @property
    def target(self) -> PostgresTarget:
        return PostgresTarget(
            host=self.postgres_host, port=self.postgres_port, database=self.postgres_db,
            user=self.postgres_user,
            password=read_password(self.postgres_password, self.postgres_password_file),
            schema=self.postgres_schema)


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schema", dest="postgres_schema", metavar="SCHEMA",
                        help="short for --postgres-schema")
    parser.add_argument("--output-dir", dest="report_dir", metavar="DIR",
                        help="short for --report-dir")
    parser.add_argument("--run-id", type=int, metavar="N",
                        help="run to report on (default: the latest successful run)")


REPORT_JOB = cli.JobDefinition(
    "python -m batch.report", "Write the HTML report of a run from the published tables.",
    POSTGRES_OPTIONS + REPORT_OPTIONS, ReportSettings,
    lambda settings: settings.target,  # reading the password raises when there is none
    _report_arguments)


def parse_arguments(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[ReportSettings, int | None]:
    loaded = cli.load(REPORT_JOB, argv, PROJECT_ROOT, environ)
    if loaded.check_config:
        print("batch.report: configuration OK")
        sys.exit(0)
    return loaded.settings, loaded.settings.run_id


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings, run_id = parse_arguments(sys.argv[1:] if argv is None else argv, os.environ)
        target = settings.target
        path = write_report(target, target.schema, settings.report_dir, run_id)
    except BatchError as error:
        print(f"batch.report: {error}", file=sys.stderr)
        return error.exit_code
    print(path)
    return 0

