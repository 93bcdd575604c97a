"""The run report: one self-contained HTML file showing, per institute, where the air is bad
(what it shows and how to rebuild it: docs/report.md).

The data come from batch/report/queries.py, the charts from batch/report/charts.py (SVG); this
module puts them into the page model, renders it with the Jinja2 template beside it and
writes the file atomically.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import jinja2
import psycopg2
from markupsafe import Markup

from batch.core.postgres import PostgresTarget, connect
from batch.core.atomic_file import write_atomically
from batch.core.config import parse_identifier
from batch.core.errors import BatchError, ConfigurationError, first_line
from batch.report import charts
from batch.report.charts import RANKING_ROWS_CHARTED, short_name, week_label
from batch.report.queries import (
    IAQ_WEEKLY_TABLE,
    LISTED_DAYS,
    RANKING_WEEKS,
    Bb101Failures,
    ClassroomDay,
    ClassroomWeekCo2,
    InstituteWeek,
    ReportData,
    RunRecord,
    StaleClassroom,
    read_report_data,
    snapshot,
)

log = logging.getLogger(__name__)

# The page template, package data beside this module (a zip of the package needs it too).
TEMPLATE = "page.html.j2"


class ReportError(BatchError):
    """The published tables cannot be read, or the report cannot be written."""

    exit_code = 4


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


def institute_sections(data: ReportData) -> list[InstituteSection]:
    weeks = _mondays(data.classroom_weeks)  # one axis for all institutes: heatmaps line up
    cells: dict[str, list[ClassroomWeekCo2]] = defaultdict(list)
    trends: dict[str, list[InstituteWeek]] = defaultdict(list)
    ranked: dict[str, list[Bb101Failures]] = defaultdict(list)
    stale: dict[str, list[StaleClassroom]] = defaultdict(list)
    peak_days: dict[str, list[ClassroomDay]] = defaultdict(list)
    sparse_days: dict[str, list[ClassroomDay]] = defaultdict(list)
    for rows, by_institute in ((data.classroom_weeks, cells), (data.institute_weeks, trends),
                               (data.bb101 or [], ranked), (data.stale, stale),
                               (data.peak_days, peak_days), (data.sparse_days, sparse_days)):
        for row in rows:
            by_institute[row.institute].append(row)
    return [institute_section(data, weeks, number, name, cells[name], trends[name], ranked[name],
                              data.ranking_weeks.get(name, []), stale[name], peak_days[name],
                              sparse_days[name])
            for number, name in enumerate(sorted(cells.keys() | trends.keys()), start=1)]


def institute_section(data: ReportData, weeks: Sequence[date], number: int, name: str,
                      cells: Sequence[ClassroomWeekCo2], trend: Sequence[InstituteWeek],
                      ranked: list[Bb101Failures], mondays: list[date],
                      stale: list[StaleClassroom], peak_days: list[ClassroomDay],
                      sparse_days: list[ClassroomDay]) -> InstituteSection:
    """The charts of institute `name`, the `number`th: `cells`, `trend`, `ranked`, its
    ranking weeks' `mondays`, `stale`, `peak_days` and `sparse_days` are its rows."""
    short = short_name(name)
    heatmap = ranking = None
    if cells:
        title = f"{short}: weekly CO2 per classroom"
        heatmap = Chart(title, f"Weekly {data.co2_source.label} of each classroom, coloured "
                        "on a scale that turns yellow, orange and red at the limits "
                        "marked on its bar; grey: no data that week.",
                        charts.co2_heatmap(cells, weeks, data.limits, title, f"heatmap-{number}"),
                        wide=True)
    if mondays and any(row.days_failed for row in ranked):
        title = f"{short}: school days failing BB101"
        ranking = Chart(title, "Judged school days (grey) and those failing BB101 (red) of the "
                        f"{min(RANKING_ROWS_CHARTED, len(ranked))} worst current classrooms over "
                        f"the last {RANKING_WEEKS} complete weeks with school days "
                        f"({iso_weeks(mondays)}).",
                        charts.bb101_chart(ranked, title, f"bb101-{number}"))
    trend_charts = []
    if trend:
        thresholds = data.limits.thresholds
        title = f"{short}: weekly CO2"
        trend_charts.append(Chart(title, "Weekly CO2 mean over all the institute's classrooms "
                                  "and all hours.", charts.co2_trend_chart(
                                      trend, thresholds, title, f"co2-trend-{number}")))
        title = f"{short}: weekly temperature"
        trend_charts.append(Chart(title, "Weekly air temperature mean over all the institute's "
                                  "classrooms and all hours.", charts.temperature_trend_chart(
                                      trend, thresholds, title, f"temperature-trend-{number}")))
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
    phases = (Chart("Run time per phase", "Wall time of each phase the run recorded (a run "
                    "records the writing of its own report after it, in batch_runs.phase_seconds).",
                    charts.phase_chart(run.phase_seconds, "Run time per phase", "phases"))
              if run.phase_seconds else None)
    return environment.get_template(TEMPLATE).render(
        data=data, run=run, sections=institute_sections(data), phases=phases,
        generated_at=generated_at, ranking_weeks=RANKING_WEEKS, week_label=week_label,
        iso_weeks=iso_weeks, listed_days=LISTED_DAYS, iaq_table=IAQ_WEEKLY_TABLE,
        limits=data.limits)


def iso_weeks(mondays: Sequence[date]) -> str:
    """`ISO weeks 2025-W10, 2025-W12` (the weeks ranked need not be consecutive)."""
    return "ISO week" + ("s " if len(mondays) > 1 else " ") + ", ".join(map(week_label, mondays))


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
        with snapshot(conn):
            data = read_report_data(conn, schema, run_id)
    except psycopg2.Error as error:
        raise ReportError(f"reading the published tables of schema {schema} at {address} "
                          f"failed: {first_line(error)}") from None
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


