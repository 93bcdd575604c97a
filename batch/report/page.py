"""The run report (docs/report.md): the data of queries.py and the charts of charts.py put
into the page model, rendered with the Jinja2 template beside this module, written atomically."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import jinja2
import psycopg2
from markupsafe import Markup

from batch.core.postgres import PostgresTarget, connect
from batch.core.atomic_file import write_atomically
from batch.core.config import parse_identifier
from batch.core.errors import EXIT_PUBLISH, BatchError, ConfigurationError, first_line
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
    StaleClassroom,
    by_institute,
    read_report_data,
    snapshot,
)

log = logging.getLogger(__name__)

# The page template, package data beside this module (a zip of the package needs it too).
TEMPLATE = "page.html.j2"


class ReportError(BatchError):
    """The published tables cannot be read, or the report cannot be written."""

    exit_code = EXIT_PUBLISH


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
    peak_days: list[ClassroomDay]
    sparse_days: list[ClassroomDay]


def _mondays(cells: Sequence[ClassroomWeekCo2]) -> list[date]:
    """Every Monday from the first week with data to the last: missing weeks show as gaps."""
    if not cells:
        return []
    first, last = min(cell.week_start for cell in cells), max(cell.week_start for cell in cells)
    return [first + timedelta(weeks=k) for k in range((last - first).days // 7 + 1)]


def institute_sections(data: ReportData) -> list[InstituteSection]:
    weeks = _mondays(data.classroom_weeks)  # one axis for all institutes: heatmaps line up
    cells, trends = by_institute(data.classroom_weeks), by_institute(data.institute_weeks)
    ranked, stale = by_institute(data.bb101 or []), by_institute(data.stale)
    peak_days, sparse_days = by_institute(data.peak_days), by_institute(data.sparse_days)
    return [InstituteSection(
                anchor=f"institute-{number}", name=name,
                classrooms=len({cell.classroom for cell in cells[name]}),
                heatmap=_heatmap(data, weeks, number, name, cells[name]),
                bb101_chart=_bb101_chart(number, name, ranked[name], data.ranking_weeks.get(name, [])),
                bb101_rows=ranked[name], ranking_weeks=data.ranking_weeks.get(name, []),
                stale=stale[name], trends=_trend_charts(data, number, name, trends[name]),
                peak_days=peak_days[name], sparse_days=sparse_days[name])
            for number, name in enumerate(sorted(cells.keys() | trends.keys()), start=1)]


def _heatmap(data: ReportData, weeks: Sequence[date], number: int, name: str,
             cells: Sequence[ClassroomWeekCo2]) -> Chart | None:
    if not cells:
        return None
    title = f"{short_name(name)}: weekly CO2 per classroom"
    return Chart(title, f"Weekly {data.co2_source.label} of each classroom, coloured on a scale "
                 "that turns yellow, orange and red at the limits marked on its bar; grey: no "
                 "data that week.", charts.co2_heatmap(cells, weeks, data.limits, title,
                                                      f"heatmap-{number}"), wide=True)


def _bb101_chart(number: int, name: str, ranked: list[Bb101Failures],
                 mondays: list[date]) -> Chart | None:
    if not mondays or not any(row.days_failed for row in ranked):
        return None
    title = f"{short_name(name)}: school days failing BB101"
    return Chart(title, "Judged school days (grey) and those failing BB101 (red) of the "
                 f"{min(RANKING_ROWS_CHARTED, len(ranked))} worst current classrooms over the "
                 f"last {RANKING_WEEKS} complete weeks with school days ({iso_weeks(mondays)}).",
                 charts.bb101_chart(ranked, title, f"bb101-{number}"))


def _trend_charts(data: ReportData, number: int, name: str,
                  trend: Sequence[InstituteWeek]) -> list[Chart]:
    if not trend:
        return []
    co2, temperature = f"{short_name(name)}: weekly CO2", f"{short_name(name)}: weekly temperature"
    return [Chart(co2, "Weekly CO2 mean over all the institute's classrooms and all hours.",
                  charts.co2_trend_chart(trend, data.limits.thresholds, co2, f"co2-trend-{number}")),
            Chart(temperature, "Weekly air temperature mean over all the institute's classrooms "
                  "and all hours.", charts.temperature_trend_chart(
                      trend, data.limits.thresholds, temperature, f"temperature-trend-{number}"))]


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
    started = data.run.started_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = Path(report_dir) / f"report-run-{data.run.run_id}-{started}.html"
    try:
        write_atomically(path, render_report(data, datetime.now(timezone.utc)))
    except jinja2.TemplateNotFound:
        raise ReportError(f"the report's page template {TEMPLATE} is missing from the batch "
                          f"package at {Path(__file__).parent}: ship batch/report/*.j2 with it") from None
    except OSError as error:
        raise ReportError(f"cannot write the report {path}: {error.strerror}") from None
    log.info("report of run %d written to %s", data.run.run_id, path)
    return path


