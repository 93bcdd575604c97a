"""The indoor-air compliance tables and view as catalog entries (batch/analysis/catalog.py):
their names, keys, columns with the comments that name the settings used, and the view's SQL.
Their rows are built in the driver by batch/analysis/iaq_rollup.py.

Air temperature stands in for the operative temperature of EN 16798-1: the sensors
measure air temperature only.
"""
from __future__ import annotations

from typing import Callable

from psycopg2 import sql

import numpy as np

from batch.analysis.iaq_partials import (CATEGORY_N, CO2_MAX, CO2_N, CO2_SUM, IAQ_PART_BY_NAME, TEMPERATURE_IN_BAND,
                                         TEMPERATURE_N, TEMPERATURE_SUM)
from batch.analysis.iaq_settings import CATEGORIES, IaqSettings
from batch.analysis.statistics import CLASSROOM_KEYS, WEEK_KEYS, Measure, counted, fixed, ratio
from batch.analysis.timetable import NO_HOLIDAYS
from batch.core.contract import CLASSROOM, INSTITUTE
from batch.core.schema import BIGINT, BOOLEAN, DATE, DOUBLE, INTEGER, TEXT, Table, View
from batch.core.schema import Column as PublishedColumn

DAILY_TABLE = "classroom_daily_iaq"
WEEKLY_TABLE = "classroom_weekly_iaq"
PERIOD_TABLE = "classroom_iaq"
LATEST_WEEK_VIEW = "latest_complete_week_iaq_by_classroom"
LOCAL_DATE = "local_date"
COVERAGE, NOT_JUDGED_REASON = "occupied_coverage", "not_judged_reason"
_CLASSROOM_COLUMNS = tuple(key.column for key in CLASSROOM_KEYS)
_WEEK_COLUMNS = tuple(key.column for key in WEEK_KEYS)


def _occupied_note(settings: IaqSettings, timezone: str) -> str:
    files = "".join(
        f", {label} {path}" for label, path in (("IAQ_TIMETABLE_FILE", settings.iaq_timetable_file),
                                                ("IAQ_CLOSURES_FILE", settings.iaq_closures_file))
        if path)
    own = " or the institute's own in IAQ_TIMETABLE_FILE" if settings.iaq_timetable_file else ""
    holidays = (f"nor on a public holiday of the calendar {settings.iaq_public_holidays}{own} "
                "(IAQ_PUBLIC_HOLIDAYS, from the holidays library; the dates used are in "
                "batch_runs.settings)" if settings.iaq_public_holidays != NO_HOLIDAYS
                else "public holidays not closed (IAQ_PUBLIC_HOLIDAYS=none"
                + (", except an institute's own calendar in IAQ_TIMETABLE_FILE)"
                   if settings.iaq_timetable_file else ")"))
    return (f"occupied readings only: local time in {timezone} (BATCH_TIMEZONE) inside a range "
            f"[start, end) of the timetable '{settings.iaq_timetable}' (IAQ_TIMETABLE{files}), "
            f"not on a closed date of the institute, {holidays}")


def _excess_bounds(settings: IaqSettings) -> tuple[str, ...]:
    """The CO2 excess of each EN 16798-1 category, in words."""
    limits = settings.iaq_en16798_co2_excess_ppm
    return (f"at most {limits[0]:g}", f"above {limits[0]:g} and at most {limits[1]:g}",
            f"above {limits[1]:g} and at most {limits[2]:g}", f"above {limits[2]:g}")


def _in_band_comment(settings: IaqSettings) -> str:
    season = f"{settings.iaq_heating_season_start}..{settings.iaq_heating_season_end}"
    heating, other = settings.iaq_temperature_heating_c, settings.iaq_temperature_non_heating_c
    return ("EN 16798-1:2019 category II: share of the occupied temperature readings within "
            f"{heating[0]:g}-{heating[1]:g} °C on dates of the heating season {season} "
            "(IAQ_HEATING_SEASON_START/END, IAQ_TEMPERATURE_HEATING_C), "
            f"{other[0]:g}-{other[1]:g} °C on other dates (IAQ_TEMPERATURE_NON_HEATING_C), bounds "
            "included; the air temperature stands in for the standard's operative temperature "
            "(the sensors measure no radiant temperature); null without temperature")


def _category_share(index: int) -> Measure:
    name = CATEGORIES[index]
    count, n = IAQ_PART_BY_NAME[CATEGORY_N[index]], IAQ_PART_BY_NAME[CO2_N]

    def describe(settings: IaqSettings) -> str:
        bound = _excess_bounds(settings)[index]
        return (f"EN 16798-1:2019 category {name.upper()}: share of the occupied CO2 readings whose "
                f"excess over outdoor CO2 ({settings.iaq_outdoor_co2_ppm:g} ppm, IAQ_OUTDOOR_CO2_PPM) is "
                f"{bound} ppm (IAQ_EN16798_CO2_EXCESS_PPM); null without CO2")
    return Measure(f"en16798_co2_share_{name}", DOUBLE, describe, (count, n),
                   lambda merged: ratio(merged[count.name], merged[n.name]), unit="share 0-1")


def _occupied_measures() -> tuple[Measure, ...]:
    """The occupied statistics of every compliance table (a classroom-day, week or period),
    from the compliance partials (batch/analysis/iaq_partials.py IAQ_PARTS) merged over it."""
    co2_n, co2_sum, co2_max = (IAQ_PART_BY_NAME[name] for name in (CO2_N, CO2_SUM, CO2_MAX))
    temperature_n, temperature_sum, in_band = (
        IAQ_PART_BY_NAME[name] for name in (TEMPERATURE_N, TEMPERATURE_SUM, TEMPERATURE_IN_BAND))
    return (
        Measure("co2_occupied_readings", BIGINT, fixed("number of occupied readings with a valid CO2 value"),
                (co2_n,), counted(co2_n), unit="readings", nullable=False),
        Measure("co2_occupied_mean", DOUBLE, fixed("mean CO2 over the occupied readings (not a mean of daily "
                                                   "means); null without CO2"),
                (co2_n, co2_sum), lambda merged: ratio(merged[co2_sum.name], merged[co2_n.name]), unit="ppm"),
        Measure("co2_occupied_max", DOUBLE, fixed("highest occupied CO2; null without CO2"), (co2_max,),
                lambda merged: np.asarray(merged[co2_max.name], dtype=float), unit="ppm"),
        *[_category_share(index) for index in range(len(CATEGORIES))],
        Measure("temperature_occupied_readings", BIGINT,
                fixed("number of occupied readings with a valid air temperature"),
                (temperature_n,), counted(temperature_n), unit="readings", nullable=False),
        Measure("temperature_occupied_mean", DOUBLE,
                fixed("mean air temperature over the occupied readings; null without temperature"),
                (temperature_n, temperature_sum),
                lambda merged: ratio(merged[temperature_sum.name], merged[temperature_n.name]), unit="°C"),
        Measure("temperature_share_in_band", DOUBLE, _in_band_comment, (temperature_n, in_band),
                lambda merged: ratio(merged[in_band.name], merged[temperature_n.name]), unit="share 0-1"),
    )


OCCUPIED_MEASURES = _occupied_measures()


def _statistic_columns(settings: IaqSettings) -> tuple[PublishedColumn, ...]:
    return tuple(measure.column(settings) for measure in OCCUPIED_MEASURES)


def _rolled_up_columns(settings: IaqSettings) -> tuple[PublishedColumn, ...]:
    """The weekly and period tables' columns after their keys: day counts, occupied statistics
    and the EN 16798-1 category."""
    mean, peak = settings.iaq_bb101_mean_co2_ppm, settings.iaq_bb101_peak_co2_ppm
    minutes = settings.iaq_bb101_peak_minutes
    return (
        PublishedColumn("school_days", BIGINT,
                        "school days: local dates with at least one occupied CO2 reading",
                        unit="days", nullable=False),
        PublishedColumn("judged_days", BIGINT,
                        "school days judged against BB101, judged: its occupied CO2 readings cover at "
                        f"least {settings.iaq_min_day_coverage:.0%} (IAQ_MIN_DAY_COVERAGE) of its "
                        "occupied time (occupied_coverage of classroom_daily_iaq)",
                        unit="days", nullable=False),
        PublishedColumn("days_with_too_little_data", BIGINT,
                        "school days not judged against BB101: their occupied CO2 readings cover "
                        f"less than {settings.iaq_min_day_coverage:.0%} (IAQ_MIN_DAY_COVERAGE) "
                        "of their occupied time (school_days - judged_days)",
                        unit="days", nullable=False),
        PublishedColumn("bb101_mean_days_met", BIGINT,
                        f"judged days meeting the BB101 (2018) mean: occupied CO2 mean below "
                        f"{mean:g} ppm (IAQ_BB101_MEAN_CO2_PPM)", unit="days", nullable=False),
        PublishedColumn("bb101_peak_days_met", BIGINT,
                        f"judged days meeting the BB101 (2018) peak: CO2 above {peak:g} ppm "
                        f"(IAQ_BB101_PEAK_CO2_PPM) for at most {minutes:g} consecutive minutes "
                        "(IAQ_BB101_PEAK_MINUTES)", unit="days", nullable=False),
        PublishedColumn("bb101_days_met", BIGINT, "judged days meeting both the BB101 mean and peak",
                        unit="days", nullable=False),
        *_statistic_columns(settings),
        PublishedColumn(
            "en16798_co2_category", INTEGER,
            "EN 16798-1:2019 CO2 category met: the best category (1 = I ... 4 = IV) whose occupied "
            "CO2 readings, with those of the better categories, make at least "
            f"{settings.iaq_compliance_share:.0%} (IAQ_COMPLIANCE_SHARE) of the occupied CO2 "
            "readings; null without CO2", unit="category 1-4"),
    )


def _daily_columns(settings: IaqSettings) -> tuple[PublishedColumn, ...]:
    mean, peak = settings.iaq_bb101_mean_co2_ppm, settings.iaq_bb101_peak_co2_ppm
    return (
        *_CLASSROOM_COLUMNS, PublishedColumn(LOCAL_DATE, DATE, "local date (BATCH_TIMEZONE)", nullable=False),
        *_WEEK_COLUMNS,
        *_statistic_columns(settings),
        PublishedColumn(
            "longest_peak_episode_minutes", DOUBLE,
            f"BB101 peak: the longest episode above {peak:g} ppm (IAQ_BB101_PEAK_CO2_PPM) of any "
            "CO2 device of the classroom; each occupied reading stands for the time until the "
            "earliest of its device's next reading in the same occupied range, "
            f"{settings.iaq_reading_max_minutes:g} minutes (IAQ_READING_MAX_MINUTES) and the "
            "range's end, and a longer gap between readings ends an episode; 0 on a school day "
            "without one, null without CO2", unit="min"),
        PublishedColumn(
            COVERAGE, DOUBLE,
            "share of the day's occupied time (the institute's timetable ranges that day, as "
            "instants: a range on a clock-change day lasts what the wall clock says) that the "
            "occupied CO2 readings of the classroom's best-covered CO2 device stand for, each "
            "reading standing for the time until the earliest of its device's next reading in "
            f"the same range, {settings.iaq_reading_max_minutes:g} minutes "
            "(IAQ_READING_MAX_MINUTES) and the range's end; 0 without CO2", unit="share 0-1"),
        PublishedColumn(
            NOT_JUDGED_REASON, TEXT,
            "why the day is not judged against BB101 (its bb101_* flags null): 'no occupied CO2 "
            "reading', or 'too little data: N % of the occupied time covered' when "
            f"occupied_coverage is below {settings.iaq_min_day_coverage:.0%} "
            "(IAQ_MIN_DAY_COVERAGE); null on a judged day"),
        PublishedColumn("bb101_mean_met", BOOLEAN,
                        f"UK Building Bulletin 101 (2018): occupied CO2 mean below {mean:g} ppm "
                        "(IAQ_BB101_MEAN_CO2_PPM); null on a day not judged (not_judged_reason)"),
        PublishedColumn("bb101_peak_met", BOOLEAN,
                        f"UK Building Bulletin 101 (2018): CO2 above {peak:g} ppm for at most "
                        f"{settings.iaq_bb101_peak_minutes:g} consecutive minutes "
                        "(longest_peak_episode_minutes, IAQ_BB101_PEAK_MINUTES); null on a day "
                        "not judged (not_judged_reason)"),
        PublishedColumn("pir_share_motion", DOUBLE,
                        "share of the occupied readings with a PIR value that detected motion "
                        "(pir = 1); null without PIR", unit="share 0-1"),
    )


def iaq_catalog_tables(settings: IaqSettings, timezone: str) -> tuple[Table, ...]:
    """The three IAQ tables as catalog entries; their rows are results[name] (`iaq_results`)."""
    note = _occupied_note(settings, timezone)
    week_complete = PublishedColumn("week_complete", BOOLEAN,
                                    "data of the classroom's institute newer than the week's Sunday "
                                    "have arrived: the week can no longer change", nullable=False)
    specs = (
        (DAILY_TABLE, "Indoor-air compliance per classroom and local date with an occupied CO2 "
                      "or temperature reading (UK BB101 2018, EN 16798-1:2019)",
         (INSTITUTE, CLASSROOM, LOCAL_DATE), _daily_columns(settings)),
        (WEEKLY_TABLE, "Indoor-air compliance per classroom and ISO week (UK BB101 2018, "
                       "EN 16798-1:2019)",
         (INSTITUTE, CLASSROOM, "iso_year", "iso_week", "week_start"),
         (*_CLASSROOM_COLUMNS, *_WEEK_COLUMNS, *_rolled_up_columns(settings), week_complete)),
        (PERIOD_TABLE, "Indoor-air compliance per classroom over the whole period of data "
                       "(UK BB101 2018, EN 16798-1:2019)",
         (INSTITUTE, CLASSROOM), (*_CLASSROOM_COLUMNS, *_rolled_up_columns(settings))),
    )
    return tuple(
        Table(name, f"{description}; {note}; published by the nightly batch analysis, replaced "
              "as a whole by each successful run (see batch_runs.settings for the settings used)",
              key=key, columns=columns)
        for name, description, key, columns in specs)


def latest_week_view() -> View:
    def query(table: Callable[[str], sql.Composable]) -> sql.Composable:
        # weeks_behind_institute as the statistics' latest_complete_week_by_classroom has it
        # (batch/analysis/catalog.py). Stale classrooms come after the current ones, unranked: a
        # classroom silent for a month is not compared with this week's.
        current = sql.SQL("CASE WHEN weeks_behind_institute = 0 THEN {} END")
        ranking = [sql.SQL("bb101_days_met::float8 / NULLIF(judged_days, 0)"),
                   sql.SQL("en16798_co2_category"), sql.SQL("co2_occupied_mean")]
        return sql.SQL(
            "SELECT * FROM (SELECT latest.*, (max(latest.week_start) OVER (PARTITION BY "
            "latest.institute) - latest.week_start) / 7 AS weeks_behind_institute "
            "FROM (SELECT DISTINCT ON (institute, classroom) * FROM {weekly} "
            "WHERE week_complete ORDER BY institute, classroom, week_start DESC) latest) ranked "
            "ORDER BY weeks_behind_institute > 0, {share} ASC NULLS LAST, {category} DESC NULLS LAST, "
            "{mean} DESC NULLS LAST, institute, classroom"
        ).format(weekly=table(WEEKLY_TABLE),
                 **{name: current.format(expression)
                    for name, expression in zip(("share", "category", "mean"), ranking)})
    return View(
        LATEST_WEEK_VIEW,
        "For each classroom, the indoor-air compliance of its latest complete ISO week "
        "(week_complete); same columns as classroom_weekly_iaq, then weeks_behind_institute: how "
        "many weeks that week is older than the newest such week of any classroom of the same "
        "institute (0: current; more: stale, the classroom's sensors stopped sending). Current "
        "classrooms first, worst first: the smallest share of judged days meeting BB101 "
        "(bb101_days_met / judged_days), then the worst EN 16798-1 CO2 category, then the "
        "highest occupied CO2 mean; then the stale ones, by institute and classroom, not ranked",
        query, reads=(WEEKLY_TABLE,), one_row_per="classroom: its latest complete ISO week of compliance")
