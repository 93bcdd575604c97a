"""The indoor-air compliance tables' rows, rolled up in the driver (pandas): per classroom and
local day, ISO week and the whole period, from the per-device-day partials and episodes that
batch/analysis/iaq_partials.py computes in Spark and collects.

One row per device and local day, as the statistics' roll-up (batch/analysis/rollup.py): the
same bound. The three tables are small sums over them; as Spark jobs they cost more in fixed
overhead than in work.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from batch.analysis.delta import Scope
from batch.analysis.iaq_partials import (CATEGORY_N, CO2_N, CO2_SUM, COVERED_US, IAQ_PARTS, LONGEST_US, PIR_MOTION,
                                         PIR_N, TEMPERATURE_N)
from batch.analysis.iaq_settings import MICROS_PER_MINUTE, IaqRules
from batch.analysis.iaq_tables import (COVERAGE, DAILY_TABLE, LOCAL_DATE, NOT_JUDGED_REASON, OCCUPIED_MEASURES,
                                       PERIOD_TABLE, WEEKLY_TABLE)
from batch.analysis.rollup import data_through, included_partials, merge_parts
from batch.analysis.statistics import READING_DATE, SUM, WEEK_KEYS, Part, ratio
from batch.analysis.timetable import Occupancy, public_holidays_applied
from batch.core.contract import CLASSROOM, INSTITUTE

_SCHOOL_DAY, _JUDGED = "iaq_school_day", "iaq_judged"
_OCCUPIED_US = "iaq_occupied_us"
_BB101_MEAN_MET, _BB101_PEAK_MET = "bb101_mean_met", "bb101_peak_met"
# The keys the collected partials must carry for these tables (batch/analysis/device_days.py).
IAQ_GROUP_KEYS = WEEK_KEYS
_WEEK_KEYS = tuple(key.column.name for key in IAQ_GROUP_KEYS)
_CLASSROOM_KEYS = [INSTITUTE, CLASSROOM]


def _nullable_flag(condition: pd.Series, applies: pd.Series) -> pd.Series:
    """`condition` where `applies`, else null (a BOOLEAN column's NULL)."""
    return condition.astype(object).where(applies, None)


def _instant_us(day: dt.date, seconds: int, zone: ZoneInfo) -> int:
    """The instant, µs since the epoch, of local time `seconds` after midnight of `day`,
    resolved as with_occupied_range's Spark resolves it: a time the clocks skip is read
    with the offset before the change, a repeated one as its first occurrence (fold 0)."""
    local = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=seconds)
    return round(local.replace(tzinfo=zone).timestamp() * 1_000_000)


def occupied_us(institute: str, day: dt.date, occupancy: Occupancy, timezone: str) -> int:
    """The occupied time of an institute's day, µs: the lengths of its timetable ranges that
    day as instants (on a clock-change day a range lasts what the wall clock says).

    Only asked for days with an occupied reading, which are therefore not closed.
    """
    zone = ZoneInfo(timezone)
    timetable = dict(occupancy.institute_timetables).get(institute, occupancy.default_timetable)
    return sum(_instant_us(day, end, zone) - _instant_us(day, start, zone)
               for start, end in timetable.ranges[day.weekday()])


def _not_judged_reasons(coverage: pd.Series, school_day: pd.Series, rules: IaqRules) -> pd.Series:
    """Why each day is not judged (None: judged). One message per distinct coverage, not per
    day: a fleet has hundreds of thousands of classroom-days and ~1,000 coverages to word."""
    reasons = pd.Series(None, index=coverage.index, dtype=object)
    reasons[~school_day] = "no occupied CO2 reading"
    short = school_day & ~(coverage >= rules.min_day_coverage)
    # Rounded down: a day just below the minimum never reads as reaching it.
    covered = np.floor(coverage[short].to_numpy(dtype=float) * 1000) / 10
    words = {value: (f"too little data: {value:g} % of the occupied time covered "
                     f"(IAQ_MIN_DAY_COVERAGE {rules.min_day_coverage * 100:g} %)") for value in set(covered)}
    reasons[short] = [words[value] for value in covered]
    return reasons


def classroom_day_totals(partials: pd.DataFrame, episodes: pd.DataFrame, rules: IaqRules,
                         timezone: str) -> pd.DataFrame:
    """One row per classroom and local date with an occupied CO2 or temperature value:
    the occupied sums over its devices, the longest episode and the covered time of its
    best-covered CO2 device (`device_day_episodes`), the day's coverage, BB101 flags on
    the days covered enough to be judged.

    `partials`: partial_statistics with `iaq_partial_aggregates` and the ISO week keys
    (batch/analysis/device_days.py); `episodes`: `device_day_episodes_table`'s.
    """
    keys = [*_CLASSROOM_KEYS, READING_DATE]
    # The week keys follow from the date: grouped by, not merged.
    included = included_partials(partials, keys + list(_WEEK_KEYS) + [part.name for part in IAQ_PARTS])
    days = merge_parts(included, keys + list(_WEEK_KEYS), IAQ_PARTS)
    days = days[(days[CO2_N] + days[TEMPERATURE_N]) > 0]
    # The classroom's longest episode and covered time are those of its best device, not a
    # sum: two sensors in one room measure the same air at the same time.
    best = episodes.groupby(keys, sort=False)[[LONGEST_US, COVERED_US]].max().reset_index()
    days = days.merge(best, on=keys, how="left")
    school_day = days[CO2_N] > 0
    days[[LONGEST_US, COVERED_US]] = days[[LONGEST_US, COVERED_US]].fillna(0).astype("int64")
    occupied = {(institute, day): occupied_us(institute, day, rules.occupancy, timezone)
                for institute, day in set(zip(days[INSTITUTE], days[READING_DATE]))}
    days[_OCCUPIED_US] = [occupied[key] for key in zip(days[INSTITUTE], days[READING_DATE])]
    days[COVERAGE] = ratio(days[COVERED_US], days[_OCCUPIED_US])
    judged = school_day & (days[COVERAGE] >= rules.min_day_coverage)
    days[_SCHOOL_DAY] = school_day
    days[_JUDGED] = judged
    days[NOT_JUDGED_REASON] = _not_judged_reasons(days[COVERAGE], school_day, rules)
    days[_BB101_MEAN_MET] = _nullable_flag(
        days[CO2_SUM] / days[CO2_N].where(school_day) < rules.bb101_mean_co2_ppm, judged)
    days[_BB101_PEAK_MET] = _nullable_flag(days[LONGEST_US] <= rules.bb101_peak_us, judged)
    return days


def _occupied_statistics(totals: pd.DataFrame) -> dict[str, Any]:
    return {measure.name: measure.finish(totals) for measure in OCCUPIED_MEASURES}


def classroom_daily_iaq(day_totals: pd.DataFrame) -> pd.DataFrame:
    school_day = day_totals[_SCHOOL_DAY]
    return pd.DataFrame({
        INSTITUTE: day_totals[INSTITUTE], CLASSROOM: day_totals[CLASSROOM],
        LOCAL_DATE: day_totals[READING_DATE], **{key: day_totals[key] for key in _WEEK_KEYS},
        **_occupied_statistics(day_totals),
        "longest_peak_episode_minutes": (day_totals[LONGEST_US] / MICROS_PER_MINUTE).where(school_day),
        COVERAGE: day_totals[COVERAGE], NOT_JUDGED_REASON: day_totals[NOT_JUDGED_REASON],
        _BB101_MEAN_MET: day_totals[_BB101_MEAN_MET], _BB101_PEAK_MET: day_totals[_BB101_PEAK_MET],
        # A share over no reading is NULL, never 0 and never an error.
        "pir_share_motion": ratio(day_totals[PIR_MOTION], day_totals[PIR_N]),
    })


def _category(totals: pd.DataFrame, rules: IaqRules) -> pd.Series:
    """The EN 16798-1 category of a roll-up: the best category whose readings, with those of
    better categories, make at least IAQ_COMPLIANCE_SHARE of its occupied CO2 readings."""
    co2_n = totals[CO2_N]
    required = co2_n * rules.compliance_share
    covered = totals[list(CATEGORY_N[:3])].cumsum(axis=1)
    category = pd.Series(4.0, index=totals.index)
    for rank, name in reversed(list(enumerate(CATEGORY_N[:3], start=1))):
        category = category.mask(covered[name] >= required, float(rank))
    return category.where(co2_n > 0)


def _rolled_up(day_totals: pd.DataFrame, keys: list[str], rules: IaqRules) -> pd.DataFrame:
    """Day counts, occupied statistics and the EN 16798-1 category per group of `keys`."""
    school_day, judged = day_totals[_SCHOOL_DAY], day_totals[_JUDGED]
    # The flags are null on the days not judged: the BB101 counts are over judged days.
    mean_met, peak_met = day_totals[_BB101_MEAN_MET].eq(True), day_totals[_BB101_PEAK_MET].eq(True)
    days = {"school_days": school_day, "judged_days": judged, "days_with_too_little_data": school_day & ~judged,
            "bb101_mean_days_met": mean_met, "bb101_peak_days_met": peak_met,
            "bb101_days_met": mean_met & peak_met}
    totals = merge_parts(day_totals.assign(**{name: flag.astype("int64") for name, flag in days.items()}),
                         keys, IAQ_PARTS + tuple(Part(name, None, SUM) for name in days))
    return pd.DataFrame({
        **{key: totals[key] for key in keys}, **{name: totals[name].astype("int64") for name in days},
        **_occupied_statistics(totals),
        "en16798_co2_category": _category(totals, rules),
    })


@dataclass(frozen=True)
class IaqTables:
    daily: pd.DataFrame
    weekly: pd.DataFrame
    period: pd.DataFrame


def iaq_tables(partials: pd.DataFrame, episodes: pd.DataFrame, rules: IaqRules,
               timezone: str, scopes: Mapping[str, Scope] | None = None) -> IaqTables:
    """The three IAQ tables from the collected partials (with `iaq_partial_aggregates` and the
    ISO week keys) and the collected `device_day_episodes`; `timezone`: BATCH_TIMEZONE. The
    daily and weekly tables only in their scope where `scopes` gives one (batch/analysis/delta.py)."""
    day_totals = classroom_day_totals(partials, episodes, rules, timezone)
    scopes = scopes or {}
    daily_totals, weekly_totals = day_totals, day_totals
    if DAILY_TABLE in scopes:
        daily_totals = day_totals[scopes[DAILY_TABLE].holds(day_totals, READING_DATE)]
    if WEEKLY_TABLE in scopes:
        weekly_totals = day_totals[scopes[WEEKLY_TABLE].holds(day_totals)]
    weekly = _rolled_up(weekly_totals, [*_CLASSROOM_KEYS, *_WEEK_KEYS], rules)
    # Complete once data of the classroom's institute newer than the week's Sunday have
    # arrived: the institute's own data, so that an institute whose uplink stopped does not see
    # its last week as complete because another institute's data moved on.
    through = data_through(partials)
    weekly["week_complete"] = [start + dt.timedelta(days=7) <= through[institute]
                               for institute, start in zip(weekly[INSTITUTE], weekly["week_start"])]
    return IaqTables(daily=classroom_daily_iaq(daily_totals), weekly=weekly,
                     period=_rolled_up(day_totals, _CLASSROOM_KEYS, rules))


def public_holidays_in_data(partials: pd.DataFrame, rules: IaqRules) -> dict[str, Any]:
    """The public holidays of the data's local dates (`public_holidays_applied`), from the
    collected partials (some included reading needed)."""
    dates = pd.unique(included_partials(partials, [READING_DATE])[READING_DATE])
    return public_holidays_applied(rules.occupancy, min(dates), max(dates))


def iaq_results(partials: pd.DataFrame, episodes: pd.DataFrame, rules: IaqRules, timezone: str,
                scopes: Mapping[str, Scope] | None = None) -> dict[str, pd.DataFrame]:
    """The IAQ tables' rows by table name, for the catalog's build functions."""
    tables = iaq_tables(partials, episodes, rules, timezone, scopes)
    return {DAILY_TABLE: tables.daily, WEEKLY_TABLE: tables.weekly, PERIOD_TABLE: tables.period}
