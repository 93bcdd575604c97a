"""The run report (batch/report/: queries, charts, page, and `python -m batch.report`): its
queries against a real PostgreSQL holding known rows, the HTML file, and that file in a real
headless Chromium with the network off."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import html
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from batch.analysis.catalog import RUNS, build_catalog
from batch.core.thresholds import Thresholds
from batch.report import page, queries
from batch.core.errors import ConfigurationError
from batch.analysis.publish import PostgresTarget, catalog_ddl, create_table_ddl
from tests.support.browser import CHROMIUM, Chromium

UTC = dt.timezone.utc
PROJECT_ROOT = Path(__file__).resolve().parent.parent
W10, W11, W12, W13, W14, W15 = (dt.date(2025, 3, 3) + dt.timedelta(weeks=k) for k in range(6))
# The newest reading is on Wednesday of W15: W14 is the latest complete week.
NEWEST_READING = dt.datetime(2025, 4, 9, 12, 0, tzinfo=UTC)
STARTED = dt.datetime(2025, 4, 10, 2, 0, 5, tzinfo=UTC)

LICEO, ISTITUTO = "Liceo A", "Istituto B"
# (institute, classroom, week, co2_mean, temperature_mean) of classroom_weekly_stats.
CLASSROOM_WEEKS = [
    (LICEO, "1A", W13, 812.5, 21.25),
    (LICEO, "1A", W14, 1210.0, 22.0),
    (LICEO, "1A", W15, None, 21.5),  # no CO2 value that week
    (LICEO, "2B", W14, 1625.75, 23.0),
    (ISTITUTO, "3C", W12, 2050.0, 19.5),
]
# (institute, week, co2_mean, temperature_mean) of institute_weekly_stats.
INSTITUTE_WEEKS = [
    (LICEO, W13, 812.5, 21.25),
    (LICEO, W14, 1417.875, 22.5),
    (LICEO, W15, None, 21.5),
    (ISTITUTO, W12, 2050.0, 19.5),
]
# (institute, classroom, week, judged school days, days meeting BB101, occupied CO2 mean) of
# the compliance table; W10 and W15 (incomplete) lie outside Liceo's last 4 complete weeks
# with judged days (W11-W14); Istituto's are W12 and W14.
IAQ_WEEKS = [
    (LICEO, "1A", W10, 5, 0, 2400.0),
    (LICEO, "1A", W11, 5, 3, 1400.0),
    (LICEO, "1A", W12, 5, 5, 900.0),
    (LICEO, "1A", W13, 4, 1, 1700.0),
    (LICEO, "1A", W14, 5, 4, 1100.0),
    (LICEO, "1A", W15, 3, 0, 2100.0),
    (LICEO, "2B", W11, 5, 5, 700.0),
    (LICEO, "2B", W12, 5, 5, 750.0),
    (LICEO, "2B", W13, 5, 5, 800.0),
    (LICEO, "2B", W14, 5, 4, 1000.0),
    (ISTITUTO, "3C", W12, 5, 0, 1999.5),
    (ISTITUTO, "3C", W14, 2, 1, None),
]
RUN = {
    "status": "succeeded", "started_at": STARTED, "finished_at": STARTED + dt.timedelta(seconds=95),
    "input_path": "hdfs://namenode:8020/raw", "input_files": 13, "rows_read": 300000,
    "rows_used": 297500, "rows_excluded": {"missing_device": 1200, "unregistered_device": 1300,
                      "replayed_reading": None},
    "values_nulled": {"co2": 17, "temperature": 4}, "skipped_files": ["part-9.parquet"],
    "rows_written": {"classroom_weekly_stats": 5}, "phase_seconds": {"read": 12.5, "publish": 3.25},
    "settings": {"co2_high_ppm": 1100.0, "co2_very_high_ppm": 1500.0, "batch_timezone": "UTC"},
}


# --- the published tables, with known rows ----------------------------------------------------

CATALOG = build_catalog(Thresholds(), "UTC")


def execute(conn: Any, statement: sql.Composable | str, values: Sequence[Any] = ()) -> None:
    with conn.cursor() as cursor:
        cursor.execute(statement, values or None)  # no arguments: a % in a comment is text
    conn.commit()


def insert(conn: Any, schema: str, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    for row in rows:
        execute(conn, sql.SQL("INSERT INTO {}.{} ({}) VALUES ({})").format(
            sql.Identifier(schema), sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row))),
            [json.dumps(value) if isinstance(value, (dict, list)) else value
             for value in row.values()])


def statistics_row(table: str, **values: Any) -> dict[str, Any]:
    """A row of a published statistics table: `values`, and a filler for every other NOT NULL column."""
    filler = {"readings": 1, "devices": 1, "first_reading_at": NEWEST_READING,
              "last_reading_at": NEWEST_READING}
    row = {column.name: filler.get(column.name, 0)
           for column in CATALOG.table(table).columns if not column.nullable}
    row.update(values)
    return row


def week_keys(monday: dt.date) -> dict[str, Any]:
    year, week, _ = monday.isocalendar()
    return {"iso_year": year, "iso_week": week, "week_start": monday}


# The compliance tables of issue 13 and their view: the "published" fixture is a database
# from before them (the report falls back), "published_with_iaq" adds them.
IAQ_RELATIONS = ("classroom_daily_iaq", "classroom_weekly_iaq", "classroom_iaq",
                 "latest_complete_week_iaq_by_classroom")
CATALOG_BEFORE_IAQ = dataclasses.replace(
    CATALOG, tables=tuple(table for table in CATALOG.tables if table.name not in IAQ_RELATIONS),
    views=tuple(view for view in CATALOG.views if view.name not in IAQ_RELATIONS))


def create_published_tables(conn: Any, schema: str) -> None:
    """The published tables and view (before issue 13), by the DDL the analysis itself runs."""
    execute(conn, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    for statement in catalog_ddl(schema, CATALOG_BEFORE_IAQ):
        execute(conn, statement)


def create_iaq_table(conn: Any, schema: str, rows: Sequence[tuple[Any, ...]],
                     days: Sequence[tuple[str, str, dt.date]] = ()) -> None:
    """The compliance tables of issues 13 and 19 (the analysis' DDL) and their view, as far
    as the report reads them: weekly `rows`, daily rows of the (institute, classroom, date)
    `days`. A week is complete once the newest reading (NEWEST_READING) is past its Sunday."""
    for name in (queries.IAQ_WEEKLY_TABLE, queries.IAQ_DAILY_TABLE):
        execute(conn, create_table_ddl(schema, CATALOG.table(name)))
    view = next(view for view in CATALOG.views if view.name == queries.IAQ_LATEST_WEEK_VIEW)
    execute(conn, sql.SQL("CREATE VIEW {} AS {}").format(
        sql.Identifier(schema, view.name), view.query(lambda name: sql.Identifier(schema, name))))
    insert(conn, schema, queries.IAQ_WEEKLY_TABLE, [
        statistics_row(queries.IAQ_WEEKLY_TABLE, institute=institute, classroom=classroom,
                       **week_keys(monday),
                       week_complete=monday + dt.timedelta(days=7) <= NEWEST_READING.date(),
                       school_days=judged, **{queries.IAQ_JUDGED_DAYS: judged,
                                              queries.IAQ_BB101_DAYS_MET: days_met,
                                              queries.IAQ_CO2_MEAN: co2})
        for institute, classroom, monday, judged, days_met, co2 in rows])
    insert(conn, schema, queries.IAQ_DAILY_TABLE, [
        statistics_row(queries.IAQ_DAILY_TABLE, institute=institute, classroom=classroom,
                       local_date=day, **week_keys(day - dt.timedelta(days=day.weekday())))
        for institute, classroom, day in days])


def publish_known_rows(conn: Any, schema: str, classroom_weeks: Sequence[tuple[Any, ...]] = CLASSROOM_WEEKS,
                       institute_weeks: Sequence[tuple[Any, ...]] = INSTITUTE_WEEKS) -> None:
    create_published_tables(conn, schema)
    insert(conn, schema, "classroom_weekly_stats", [
        statistics_row("classroom_weekly_stats", institute=institute, classroom=classroom,
                       **week_keys(monday), co2_mean=co2, temperature_mean=temperature,
                       last_reading_at=min(NEWEST_READING, dt.datetime.combine(
                           monday + dt.timedelta(days=6), dt.time(12), UTC)))
        for institute, classroom, monday, co2, temperature in classroom_weeks])
    insert(conn, schema, "institute_weekly_stats", [
        statistics_row("institute_weekly_stats", institute=institute, **week_keys(monday),
                       co2_mean=co2, temperature_mean=temperature)
        for institute, monday, co2, temperature in institute_weeks])
    insert(conn, schema, "batch_runs", [
        {"job": "analysis", **RUN},
        {"job": "analysis", **RUN, "status": "failed", "started_at": STARTED + dt.timedelta(days=1),
         "error_message": "input vanished"},
    ])


@pytest.fixture
def target(make_target: Callable[..., PostgresTarget]) -> PostgresTarget:
    return make_target()


@pytest.fixture
def conn(target: PostgresTarget) -> Iterator[Any]:
    with contextlib.closing(psycopg2.connect(
            host=target.host, port=target.port, dbname=target.database, user=target.user,
            password=target.password.reveal())) as connection:
        yield connection


@pytest.fixture
def published(conn: Any, target: PostgresTarget) -> str:
    publish_known_rows(conn, target.schema)
    return target.schema


@pytest.fixture
def published_with_iaq(conn: Any, published: str) -> str:
    create_iaq_table(conn, published, IAQ_WEEKS)
    return published


# --- the queries ---------------------------------------------------------------------------

def test_heatmap_falls_back_to_the_all_hours_mean_without_the_compliance_table(conn: Any, published: str) -> None:
    source = queries.co2_source(conn, published)
    assert (source.table, source.column) == ("classroom_weekly_stats", "co2_mean")
    assert queries.classroom_week_co2(conn, published, source) == sorted(
        (queries.ClassroomWeekCo2(institute, classroom, monday, *monday.isocalendar()[:2], co2)
         for institute, classroom, monday, co2, _ in CLASSROOM_WEEKS),
        key=lambda cell: (cell.institute, cell.classroom, cell.week_start))


def test_heatmap_shows_the_occupied_hours_mean_when_the_compliance_table_is_published(
        conn: Any, published_with_iaq: str) -> None:
    source = queries.co2_source(conn, published_with_iaq)
    assert (source.table, source.column) == (queries.IAQ_WEEKLY_TABLE, queries.IAQ_CO2_MEAN)
    cells = queries.classroom_week_co2(conn, published_with_iaq, source)
    assert [(c.institute, c.classroom, c.week_start, c.co2_ppm) for c in cells] == sorted(
        [(institute, classroom, monday, co2) for institute, classroom, monday, _, _, co2 in IAQ_WEEKS],
        key=lambda row: row[:3])


def test_bb101_ranking_counts_failed_judged_days_of_the_last_four_complete_weeks(
        conn: Any, published_with_iaq: str) -> None:
    assert queries.ranking_weeks(conn, published_with_iaq) == {LICEO: [W11, W12, W13, W14],
                                                              ISTITUTO: [W12, W14]}
    # Worked by hand from IAQ_WEEKS: 1A fails 2+0+3+1 in W11-W14, 2B 1, 3C 5+1; ties by name.
    assert queries.bb101_failures(conn, published_with_iaq) == [
        queries.Bb101Failures(ISTITUTO, "3C", judged_days=7, days_failed=6),
        queries.Bb101Failures(LICEO, "1A", judged_days=19, days_failed=6),
        queries.Bb101Failures(LICEO, "2B", judged_days=20, days_failed=1),
    ]
    assert queries.stale_classrooms(conn, published_with_iaq) == []


SCUOLA = "Scuola C"
W08, W09 = W10 - dt.timedelta(weeks=2), W10 - dt.timedelta(weeks=1)
# 1A: weeks with judged days W08, W09, W10, W11, W14; W12 had school days, none judged (too
# little data); W13 none at all (holidays); W15 is not complete. 2B stopped after W09.
SCUOLA_WEEKS = [
    (SCUOLA, "1A", W08, 5, 0, 1700.0),
    (SCUOLA, "1A", W09, 5, 5, 900.0),
    (SCUOLA, "1A", W10, 5, 4, 1000.0),
    (SCUOLA, "1A", W11, 4, 1, 1400.0),
    (SCUOLA, "1A", W12, 0, 0, 1200.0),
    (SCUOLA, "1A", W14, 5, 2, 1300.0),
    (SCUOLA, "1A", W15, 2, 0, 1800.0),
    (SCUOLA, "2B", W08, 5, 0, 2500.0),
    (SCUOLA, "2B", W09, 5, 0, 2500.0),
]


def test_the_ranking_skips_weeks_without_judged_days_and_lists_stale_classrooms(
        conn: Any, published: str) -> None:
    create_iaq_table(conn, published, SCUOLA_WEEKS, days=[(SCUOLA, "2B", W09 + dt.timedelta(days=4)),
                                                          (SCUOLA, "1A", W14)])
    # The last 4 complete weeks with a judged day: W12 (none judged), W13 (no school day)
    # and W15 (not complete) are skipped, so the window reaches back to W09.
    assert queries.ranking_weeks(conn, published) == {SCUOLA: [W09, W10, W11, W14]}
    # 1A: judged 5 + 5 + 4 + 5 = 19, failed 0 + 1 + 3 + 3 = 7. 2B failed all its days of
    # W09 but is stale (its latest complete week, W09, is 5 weeks behind 1A's W14): not ranked.
    assert queries.bb101_failures(conn, published) == [
        queries.Bb101Failures(SCUOLA, "1A", judged_days=19, days_failed=7)]
    assert queries.stale_classrooms(conn, published) == [
        queries.StaleClassroom(SCUOLA, "2B", last_data=W09 + dt.timedelta(days=4), weeks_behind=5)]
    rendered = page.render_report(queries.read_report_data(conn, published, None),
                                dt.datetime(2025, 4, 10, tzinfo=UTC))
    assert "ISO weeks 2025-W09, 2025-W10, 2025-W11, 2025-W14" in rendered
    assert re.search(r"2B</span>: no data since 2025-02-28 \(5 weeks behind the institute\)", rendered)


def daily_row(institute: str, classroom: str, day: dt.date, **values: Any) -> dict[str, Any]:
    return statistics_row(queries.IAQ_DAILY_TABLE, institute=institute, classroom=classroom, local_date=day,
                          **week_keys(day - dt.timedelta(days=day.weekday())), **values)


def test_days_past_the_peak_and_days_with_too_little_data_are_listed(conn: Any, published_with_iaq: str) -> None:
    too_little = "too little data: 1.3 % of the occupied time covered (IAQ_MIN_DAY_COVERAGE 50 %)"
    insert(conn, published_with_iaq, queries.IAQ_DAILY_TABLE, [
        # Liceo's ranking weeks are W11-W14, Istituto's W12 and W14 (IAQ_WEEKS).
        daily_row(LICEO, "1A", W12 + dt.timedelta(days=1), longest_peak_episode_minutes=45.0,
                  bb101_peak_met=False, co2_occupied_max=2600.0, occupied_coverage=0.9),
        daily_row(LICEO, "2B", W14 + dt.timedelta(days=2), longest_peak_episode_minutes=25.0,
                  bb101_peak_met=False, co2_occupied_max=2150.0, occupied_coverage=1.0),
        # W10: before the window; met: not a failure.
        daily_row(LICEO, "1A", W10 + dt.timedelta(days=1), longest_peak_episode_minutes=90.0,
                  bb101_peak_met=False, co2_occupied_max=3000.0, occupied_coverage=1.0),
        daily_row(LICEO, "2B", W13, longest_peak_episode_minutes=10.0, bb101_peak_met=True,
                  co2_occupied_max=2100.0, occupied_coverage=1.0),
        daily_row(ISTITUTO, "3C", W12 + dt.timedelta(days=3), longest_peak_episode_minutes=30.0,
                  bb101_peak_met=False, co2_occupied_max=2400.0, occupied_coverage=0.75),
        # Not judged: two with too little data, one without any occupied CO2 reading.
        daily_row(LICEO, "1A", W15 + dt.timedelta(days=1), not_judged_reason=too_little,
                  occupied_coverage=0.013, co2_occupied_readings=1),
        daily_row(LICEO, "2B", W13 + dt.timedelta(days=4), not_judged_reason=too_little,
                  occupied_coverage=0.25, co2_occupied_readings=3),
        daily_row(LICEO, "2B", W11, not_judged_reason="no occupied CO2 reading", co2_occupied_readings=0),
    ])
    day = queries.ClassroomDay
    # Longest first within each institute; W10's day and the met one are not listed.
    assert queries.peak_episodes(conn, published_with_iaq) == [
        day(ISTITUTO, "3C", W12 + dt.timedelta(days=3), 30.0, 2400.0, 0.75),
        day(LICEO, "1A", W12 + dt.timedelta(days=1), 45.0, 2600.0, 0.9),
        day(LICEO, "2B", W14 + dt.timedelta(days=2), 25.0, 2150.0, 1.0),
    ]
    # The latest first; the day without an occupied CO2 reading is not "too little data".
    assert [(row.classroom, row.local_date, row.occupied_coverage)
            for row in queries.days_with_too_little_data(conn, published_with_iaq)] == [
        ("1A", W15 + dt.timedelta(days=1), 0.013), ("2B", W13 + dt.timedelta(days=4), 0.25)]

    applied = {"first_date": "2025-03-03", "last_date": "2025-04-30", "calendars": {"*": "IT"},
               "holidays": {"IT": {"2025-04-21": "Easter Monday", "2025-04-25": "Liberation Day"}}}
    execute(conn, sql.SQL("UPDATE {}.batch_runs SET settings = settings || %s::jsonb").format(
        sql.Identifier(published_with_iaq)), [json.dumps({"iaq_public_holidays_applied": applied})])
    rendered = page.render_report(queries.read_report_data(conn, published_with_iaq, None),
                                dt.datetime(2025, 4, 10, tzinfo=UTC))
    assert "<dt>public holidays closed</dt><dd>IT: 2025-04-21 Easter Monday, 2025-04-25 Liberation Day</dd>" in rendered
    assert "Longest episodes above 2,000 ppm, ISO weeks 2025-W11, 2025-W12, 2025-W13, 2025-W14" in rendered
    assert re.search(r'1A</td><td>2025-03-18</td><td class="number">45</td><td class="number">2,600</td>', rendered)
    assert re.search(r'1A</td><td>2025-04-08</td><td class="number">1.3%</td>', rendered)
    assert "2025-03-04" not in rendered  # W10's day: outside the window


def test_institute_trend_is_the_published_weekly_means(conn: Any, published: str) -> None:
    assert queries.institute_weeks(conn, published) == sorted(
        (queries.InstituteWeek(institute, monday, *monday.isocalendar()[:2], co2, temperature)
         for institute, monday, co2, temperature in INSTITUTE_WEEKS),
        key=lambda week: (week.institute, week.week_start))


def test_data_quality_comes_from_the_runs_record(conn: Any, published: str) -> None:
    assert queries.latest_succeeded_run_id(conn, published) == 1
    run = queries.fetch_run(conn, published, 1)
    assert (run.run_id, run.status, run.started_at, run.finished_at, run.input_path, run.input_files,
            run.rows_read, run.rows_used, run.rows_excluded, run.values_nulled, run.skipped_files,
            run.rows_written, run.phase_seconds, run.settings) == (
        1, "succeeded", STARTED, RUN["finished_at"], RUN["input_path"], 13, 300000, 297500,
        RUN["rows_excluded"], RUN["values_nulled"], ["part-9.parquet"], RUN["rows_written"],
        RUN["phase_seconds"], RUN["settings"])
    assert run.uncommitted_files is None  # NULL: that run did not record them
    assert (run.job, run.files_lacking_required_columns, run.error_message, run.warnings) == (
        "analysis", None, None, None)
    # Its own CO2_HIGH_PPM; the defaults (env/spark.env) for what it did not record.
    assert queries.RunLimits.recorded(run.settings) == queries.RunLimits(
        Thresholds(co2_high_ppm=1100.0, co2_very_high_ppm=1500.0, comfort_min_c=20.0, comfort_max_c=26.0),
        iaq_bb101_peak_co2_ppm=2000.0, iaq_bb101_peak_minutes=20.0, iaq_outdoor_co2_ppm=400.0)
    failed = queries.fetch_run(conn, published, 2)
    assert (failed.status, failed.error_message) == ("failed", "input vanished")


def test_the_run_record_has_every_column_of_the_catalogs_runs_table() -> None:
    assert [item.name for item in dataclasses.fields(queries.RunRecord)] == [
        column.name for column in RUNS.columns]


def test_the_report_shows_the_limits_the_published_run_recorded(
        conn: Any, published_with_iaq: str, tmp_path: Path) -> None:
    recorded = {"iaq_bb101_peak_co2_ppm": 1800, "iaq_bb101_peak_minutes": 30,
                "iaq_outdoor_co2_ppm": 420, "co2_very_high_ppm": 1600}
    execute(conn, sql.SQL("UPDATE {}.batch_runs SET settings = settings || %s::jsonb WHERE run_id = 1").format(
        sql.Identifier(published_with_iaq)), [json.dumps(recorded)])
    # Run 2 (failed, not published) recorded other limits: its report shows run 1's results,
    # judged by run 1's limits.
    execute(conn, sql.SQL("UPDATE {}.batch_runs SET settings = settings || %s::jsonb WHERE run_id = 2").format(
        sql.Identifier(published_with_iaq)), [json.dumps({"iaq_bb101_peak_co2_ppm": 2500})])
    for run_id in (1, 2):
        text = page.write_report(conn, published_with_iaq, tmp_path / str(run_id), run_id).read_text(encoding="utf-8")
        assert "No judged school day of these weeks had CO2 above 1,800 ppm for more than 30 minutes" in text
        footer = " ".join(text[text.index("<footer>"):].split())
        assert ("CO2 bands: 1,100 ppm (CO2_HIGH_PPM), 1,600 ppm (CO2_VERY_HIGH_PPM), 1,800 ppm "
                "(BB101 peak limit, IAQ_BB101_PEAK_CO2_PPM), from 420 ppm (outdoor air, "
                "IAQ_OUTDOOR_CO2_PPM); the limits of run 1") in footer
        heatmap = text[text.index('data-chart="heatmap-1"'):]
        heatmap = heatmap[:heatmap.index("</svg>")]
        # The colour bar's ticks: outdoor air, the three limits, and 500 ppm above the highest.
        for tick in ("420", "1,100", "1,600", "1,800", "2,300"):
            assert f">{tick}<" in heatmap
        assert ">2,000<" not in heatmap and ">2,500<" not in heatmap


@pytest.mark.parametrize("recorded, expected, shown", [
    ({"count": 2, "first": ["part-00007-orphan.parquet", "part-00009.parquet"]},
     queries.FileList(2, ["part-00007-orphan.parquet", "part-00009.parquet"]),
     "2: part-00007-orphan.parquet, part-00009.parquet"),
    ({"count": 12, "first": ["part-00007-orphan.parquet"]},
     queries.FileList(12, ["part-00007-orphan.parquet"]), "12: part-00007-orphan.parquet, …"),
    ({"count": 0, "first": []}, queries.FileList(0, []), "0"),
])
def test_uncommitted_files_are_shown_as_batch_runs_records_them(
        conn: Any, published: str, tmp_path: Path, recorded: Any, expected: queries.FileList,
        shown: str) -> None:
    execute(conn, sql.SQL("UPDATE {}.batch_runs SET {} = %s WHERE run_id = 1").format(
        sql.Identifier(published), sql.Identifier("uncommitted_files")),
        [json.dumps(recorded)])
    assert queries.fetch_run(conn, published, 1).uncommitted_files == expected
    assert queries.fetch_run(conn, published, 2).uncommitted_files is None  # not recorded
    text = page.write_report(conn, published, tmp_path, 1).read_text(encoding="utf-8")
    assert f"<dt>uncommitted files left out</dt><dd>{shown}</dd>" in text


def test_a_runs_table_of_an_earlier_release_without_uncommitted_files_is_reported(
        conn: Any, published: str, tmp_path: Path) -> None:
    execute(conn, sql.SQL("ALTER TABLE {}.batch_runs DROP COLUMN {}").format(
        sql.Identifier(published), sql.Identifier("uncommitted_files")))
    assert queries.fetch_run(conn, published, 1).uncommitted_files is None
    text = page.write_report(conn, published, tmp_path, 1).read_text(encoding="utf-8")
    assert "<dt>uncommitted files left out</dt><dd>not recorded by the release that ran it" in text


def test_an_unknown_run_or_no_successful_run_is_a_clear_error(conn: Any, published: str) -> None:
    with pytest.raises(ConfigurationError, match=f"run 99 is not recorded in {published}.batch_runs"):
        queries.read_report_data(conn, published, 99)
    conn.rollback()
    execute(conn, sql.SQL("UPDATE {}.batch_runs SET status = 'failed'").format(sql.Identifier(published)))
    with pytest.raises(ConfigurationError, match="no successful run"):
        queries.read_report_data(conn, published, None)


# --- the file --------------------------------------------------------------------------------

def chart_count(data: queries.ReportData) -> int:
    """Phases, then per institute: a heatmap, two trends, and a ranking where a school day failed."""
    institutes = {cell.institute for cell in data.classroom_weeks}
    ranked = {row.institute for row in data.bb101 or [] if row.days_failed > 0}
    return 1 + 3 * len(institutes) + len(ranked)


def test_write_report_names_the_file_after_the_run_and_leaves_no_temporary_file(
        target: PostgresTarget, published_with_iaq: str, tmp_path: Path) -> None:
    path = page.write_report(target, published_with_iaq, tmp_path / "reports", None)
    assert path == tmp_path / "reports" / "report-run-1-20250410T020005Z.html"
    assert [entry.name for entry in path.parent.iterdir()] == [path.name]
    text = path.read_text(encoding="utf-8")
    assert text.count('class="chart-svg"') == 9
    # No external resource: nothing to fetch, no script to run.
    assert "<script" not in text.lower() and "src=" not in text and "@import" not in text
    assert "1,100 ppm" in text  # the run's own CO2_HIGH_PPM, from its recorded settings
    # 1,200 + 1,300 readings excluded; replays were not looked for, which is not "0".
    assert "<dd>2,500</dd>" in text
    assert '<td class="name">replayed_reading</td><td class="number">not checked</td>' in text


def test_write_report_through_the_callers_connection_leaves_it_open_and_idle(
        conn: Any, published: str, tmp_path: Path) -> None:
    path = page.write_report(conn, published, tmp_path, 1)
    assert path.name == "report-run-1-20250410T020005Z.html"
    assert not conn.closed
    assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    with conn.cursor() as cursor:  # and still usable, for writing too
        cursor.execute(sql.SQL("UPDATE {}.batch_runs SET error_message = 'x' WHERE run_id = 2").format(
            sql.Identifier(published)))
    conn.commit()


def test_without_the_compliance_table_the_section_says_so(
        target: PostgresTarget, published: str, tmp_path: Path) -> None:
    text = page.write_report(target, published, tmp_path, 1).read_text(encoding="utf-8")
    assert text.count(f"The compliance tables ({queries.IAQ_WEEKLY_TABLE}) are not published") == 2
    assert "CO2 mean over all hours" in text


def test_an_older_run_is_reported_with_a_note_on_what_the_tables_hold(
        target: PostgresTarget, published: str, tmp_path: Path) -> None:
    text = " ".join(page.write_report(target, published, tmp_path, 2).read_text(encoding="utf-8").split())
    assert ("The published tables hold the results of run 1: the charts below show those, "
            "the data-quality panel shows run 2.") in text
    assert "Data quality of run 2" in text


def run_report_command(*arguments: str, environ: Mapping[str, str] | None = None,
                       cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    """`python -m batch.report`, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "batch.report", *arguments],
                          env={**os.environ, **(environ or {})}, cwd=cwd, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_command_line_reads_the_password_from_its_file_and_prints_the_path(
        target: PostgresTarget, published: str, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(target.password.reveal() + "\n")
    environ = {"POSTGRES_HOST": target.host, "POSTGRES_PORT": str(target.port),
               "POSTGRES_DB": target.database, "POSTGRES_USER": target.user,
               "POSTGRES_PASSWORD": "", "POSTGRES_PASSWORD_FILE": str(password_file)}
    env_file = tmp_path / "empty.env"  # not the project's env/spark.env
    env_file.write_text("")
    written = run_report_command("--schema", published, "--output-dir", str(tmp_path / "out"),
                                 "--env-file", str(env_file), environ=environ)
    assert written.returncode == 0, written.stderr
    path = Path(written.stdout.strip())
    assert path.parent == tmp_path / "out" and path.is_file()
    unknown = run_report_command("--schema", published, "--output-dir", str(tmp_path / "out"),
                                 "--env-file", str(env_file), "--run-id", "42", environ=environ)
    assert unknown.returncode == 2
    assert "run 42 is not recorded" in unknown.stderr
    for text in (written.stdout, written.stderr, unknown.stdout, unknown.stderr,
                 path.read_text(encoding="utf-8")):
        assert target.password.reveal() not in text
    # A command line is visible to every user.
    refused = run_report_command("--postgres-password", "secret", "--schema", published)
    assert refused.returncode == 2


def test_the_command_line_needs_no_spark() -> None:
    """`import batch.report` and `python -m batch.report --help` import neither pyspark nor
    Py4J (nor the plotting code), in a fresh interpreter."""
    finished = subprocess.run([sys.executable, "-c", (
        "import sys, runpy\n"
        "import batch.report\n"
        "sys.argv = ['batch.report', '--help']\n"
        "try:\n"
        "    runpy.run_module('batch.report', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0, stop.code\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('pyspark', 'py4j', 'matplotlib')))\n")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert "--run-id" in finished.stdout and "--output-dir" in finished.stdout
    assert finished.stdout.strip().splitlines()[-1] == "[]"


def test_a_package_without_its_template_is_a_clear_error(
        target: PostgresTarget, published: str, tmp_path: Path) -> None:
    """The package zipped as its *.py files alone (a --py-files zip) cannot render: it says why."""
    package = Path(page.__file__).parents[1]
    archive_path = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for source in package.rglob("*.py"):
            archive.write(source, f"batch/{source.relative_to(package)}")
    (tmp_path / "empty.env").write_text("")
    environ = {**os.environ, "PYTHONPATH": str(archive_path), "POSTGRES_HOST": target.host,
               "POSTGRES_PORT": str(target.port), "POSTGRES_DB": target.database,
               "POSTGRES_USER": target.user, "POSTGRES_PASSWORD": target.password.reveal()}
    finished = subprocess.run(
        [sys.executable, "-m", "batch.report", "--schema", published, "--output-dir",
         str(tmp_path / "out"), "--env-file", str(tmp_path / "empty.env")],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 4, finished.stderr
    assert f"the report's page template {page.TEMPLATE} is missing from the batch package at " \
           f"{archive_path}" in finished.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --- in a real browser -------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: install Debian's chromium package "
                                  "(.ci/run does) to check the report in a real browser")

CHARTS_RENDERED = """
[...document.querySelectorAll('figure.chart')].map(figure => {
  const svg = figure.querySelector('svg');
  if (!svg) return null;
  const box = svg.getBoundingClientRect();
  return {width: box.width, height: box.height, shapes: svg.querySelectorAll('path').length,
          texts: svg.querySelectorAll('text').length};
})
"""


def assert_shows_cleanly(browser: Chromium, path: Path, expected_charts: int) -> None:
    rendered_charts = browser.evaluate(CHARTS_RENDERED)
    assert len(rendered_charts) == expected_charts
    for chart in rendered_charts:
        assert chart is not None, "a chart has no SVG"
        assert chart["width"] > 100 and chart["height"] > 50 and chart["shapes"] > 3 and chart["texts"] > 3
    assert browser.problems() == []
    # The page itself and nothing else: the charts are inline SVG, their colour bars gradients.
    assert browser.requested_urls() == [path.resolve().as_uri()]


@needs_chromium
def test_report_renders_in_headless_chromium_offline(
        target: PostgresTarget, conn: Any, published_with_iaq: str, tmp_path: Path) -> None:
    path = page.write_report(target, published_with_iaq, tmp_path, None)
    expected = chart_count(queries.read_report_data(conn, published_with_iaq, None))
    with Chromium(tmp_path / "profile") as browser:
        for width, height in ((1366, 768), (390, 844)):
            browser.open(path, width, height)
            assert_shows_cleanly(browser, path, expected)
            # Nothing is wider than the screen but the heatmaps, which scroll in their frame.
            assert browser.evaluate("document.documentElement.scrollWidth") <= width
            shot = browser.screenshot(tmp_path / f"report-{width}.png", full_page=True)
            assert shot.stat().st_size > 10_000
            browser.events.clear()


HOSTILE_INSTITUTE = "<script>window.pwned=1</script>Ist & \"Co\" 'x'"
HOSTILE_CLASSROOMS = ("<img src=x onerror=pwned=2>", "</text><script>p=3</script>",
                      "$\\frac{1}{0}$ {{ 7*7 }}")


def publish_hostile_names(conn: Any, schema: str) -> None:
    classroom_weeks = [(HOSTILE_INSTITUTE, name, monday, 900.0 + 300 * k, 21.0)
                       for k, name in enumerate(HOSTILE_CLASSROOMS) for monday in (W13, W14, W15)]
    publish_known_rows(conn, schema, classroom_weeks, [(HOSTILE_INSTITUTE, W14, 1000.0, 21.0)])
    create_iaq_table(conn, schema, [(HOSTILE_INSTITUTE, name, W14, 5, k, 1200.0)
                                    for k, name in enumerate(HOSTILE_CLASSROOMS)])


def test_hostile_names_are_escaped_in_the_html_and_in_the_charts(
        target: PostgresTarget, conn: Any, tmp_path: Path) -> None:
    publish_hostile_names(conn, target.schema)
    text = page.write_report(target, target.schema, tmp_path, None).read_text(encoding="utf-8")
    lowered = text.lower()
    assert "<script" not in lowered and "<img" not in lowered  # as elements; escaped they are text
    # Parsed back as a browser would, the heading is the name itself.
    assert HOSTILE_INSTITUTE in [html.unescape(heading) for heading in re.findall(r"<h2>(.*?)</h2>", text)]
    assert "{{ 7*7 }}" in text  # a name is not a template


@needs_chromium
def test_hostile_names_show_as_text_in_the_browser(
        target: PostgresTarget, conn: Any, tmp_path: Path) -> None:
    publish_hostile_names(conn, target.schema)
    path = page.write_report(target, target.schema, tmp_path, None)
    with Chromium(tmp_path / "profile") as browser:
        browser.open(path, 1366, 768)
        assert browser.evaluate("typeof window.pwned") == "undefined"
        assert browser.evaluate("document.querySelectorAll('script, img, iframe, object').length") == 0
        assert browser.evaluate("document.querySelector('main section:nth-of-type(2) h2').textContent") \
            == HOSTILE_INSTITUTE
        table_names = browser.evaluate(
            "[...document.querySelectorAll('main section[id^=institute] table tbody td:nth-child(2)')].map(c => c.textContent)")
        assert sorted(table_names) == sorted(HOSTILE_CLASSROOMS)
        chart_texts = browser.evaluate("[...document.querySelectorAll('svg text')].map(t => t.textContent)")
        for name in HOSTILE_CLASSROOMS:
            assert name in chart_texts  # short enough to be shown whole on the axes
        assert_shows_cleanly(browser, path, expected_charts=5)
        browser.screenshot(tmp_path / "hostile.png", full_page=True)
