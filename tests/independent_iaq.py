"""The indoor-air compliance tables (issue 13) computed another way: SQL in DuckDB.

Written from the issue's definitions, not from batch/analysis/iaq_*.py: nothing is imported from the
package. Local time is DuckDB's `timezone(zone, instant)`; the timetable and closures are
plain tables given by the test; the public holidays are asked of the `holidays` library
directly, for the years of the data; the time above the peak is a gaps-and-islands query with
LEAD/LAG over each device's occupied CO2 readings of one local date and occupied range, and
the time they cover the sum of what each stands for, against the timetable's ranges turned
into instants by DuckDB's own time zone conversion.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import holidays
import pyarrow as pa
import pytest

# Physical ranges of shared/DATA_CONTRACT.md (readings outside are "not measured").
RANGES = {"co2": (0, 40000), "temperature": (-40, 85)}


@dataclass(frozen=True)
class Rules:
    """The issue's reference numbers (its defaults)."""

    outdoor_co2: float = 400
    bb101_mean: float = 1500
    bb101_peak: float = 2000
    bb101_peak_minutes: float = 20
    reading_max_minutes: float = 15
    category_excess: tuple[float, float, float] = (550, 800, 1350)
    heating_season: tuple[int, int] = (1015, 415)  # MMDD, inclusive, over the new year
    heating_band: tuple[float, float] = (20, 24)
    other_band: tuple[float, float] = (23, 26)
    compliance_share: float = 0.95
    # The holidays library's calendar ('IT', 'IT-BZ') or 'none'.
    public_holidays: str = "IT"
    min_day_coverage: float = 0.5


# A timetable row: (institute or None for every institute without rows of its own,
# ISO weekday 1 = Monday, start minute, end minute after local midnight).
TimetableRow = tuple[str | None, int, int, int]
# A closure: (institute or '*', first date, last date), inclusive.
ClosureRow = tuple[str, dt.date, dt.date]

WEEK_KEYS = "isoyear(d) AS iso_year, week(d) AS iso_week, CAST(date_trunc('week', d) AS DATE) AS week_start"


def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET threads = 1")
    return con


def load_rows(con: duckdb.DuckDBPyConnection, rows: Iterable[dict[str, Any]]) -> None:
    """The raw rows (DevEui, sendtime as an aware datetime, institute, classroom, co2,
    temperature, pir) as table `raw`."""
    rows = list(rows)
    table = pa.table({
        "dev_eui": pa.array([r["DevEui"] for r in rows], pa.string()),
        "sendtime": pa.array([r["sendtime"] for r in rows], pa.timestamp("us", tz="UTC")),
        "institute": pa.array([r["institute"] for r in rows], pa.string()),
        "classroom": pa.array([r["classroom"] for r in rows], pa.string()),
        "co2": pa.array([r.get("co2") for r in rows], pa.float64()),
        "temperature": pa.array([r.get("temperature") for r in rows], pa.float64()),
        "pir": pa.array([r.get("pir") for r in rows], pa.float64()),
    })
    con.register("raw_arrow", table)
    con.execute("CREATE OR REPLACE TABLE raw AS SELECT * FROM raw_arrow")


def committed_files(folder: str) -> list[str]:
    """The Parquet files of a file-sink folder that its `_spark_metadata` log committed
    (every Parquet file when there is no log): the others are not data."""
    log = Path(folder) / "_spark_metadata"
    if not log.is_dir():
        return sorted(str(path) for path in Path(folder).rglob("*.parquet"))
    added: set[str] = set()
    for entry in sorted(log.iterdir()):
        if entry.name.startswith("."):
            continue
        for line in entry.read_text(encoding="utf-8").splitlines()[1:]:  # after the version
            record = json.loads(line)
            path = re.sub(r"^file:(//)?", "", record["path"])
            (added.add if record["action"] == "add" else added.discard)(path)
    return sorted(added)


def load_parquet(con: duckdb.DuckDBPyConnection, folder: str) -> None:
    """The committed raw Parquet files under `folder` (schemas may drift) as table `raw`."""
    files = ", ".join(f"'{path}'" for path in committed_files(folder))
    con.execute(
        "CREATE OR REPLACE TABLE raw AS SELECT \"DevEui\" AS dev_eui, sendtime, institute, classroom, "
        "CAST(co2 AS DOUBLE) AS co2, CAST(temperature AS DOUBLE) AS temperature, "
        "CAST(pir AS DOUBLE) AS pir "
        f"FROM read_parquet([{files}], union_by_name = true)")


def _valid(metric: str) -> str:
    low, high = RANGES[metric]
    return f"CASE WHEN {metric} >= {low} AND {metric} <= {high} AND NOT isnan({metric}) THEN {metric} END"


def _holiday_dates(calendar: str, years: list[int]) -> list[dt.date]:
    if calendar.lower() == "none":
        return []
    country, _, subdivision = calendar.partition("-")
    return list(holidays.country_holidays(country.upper(), subdiv=subdivision.upper() or None,
                                          years=years))


def _load_public_holidays(con: duckdb.DuckDBPyConnection, default: str,
                          own: Mapping[str, str]) -> None:
    """Tables `public_holidays` (institute NULL: the default calendar's) and `own_calendar`."""
    years = [row[0] for row in con.execute("SELECT DISTINCT year(d) FROM included").fetchall()]
    con.execute("CREATE OR REPLACE TEMP TABLE public_holidays (institute VARCHAR, d DATE)")
    con.execute("CREATE OR REPLACE TEMP TABLE own_calendar (institute VARCHAR)")
    rows = [(None, day) for day in _holiday_dates(default, years)]
    for institute, calendar in own.items():
        con.execute("INSERT INTO own_calendar VALUES (?)", [institute])
        rows += [(institute, day) for day in _holiday_dates(calendar, years)]
    if rows:
        con.executemany("INSERT INTO public_holidays VALUES (?, ?)", [list(row) for row in rows])


def compute(con: duckdb.DuckDBPyConnection, timezone: str, timetable: Sequence[TimetableRow],
            closures: Sequence[ClosureRow] = (), rules: Rules = Rules(),
            own_holidays: Mapping[str, str] | None = None) -> None:
    """Create tables daily, weekly, period and latest (with a `position`, worst first = 1).

    `own_holidays`: institute -> its public-holiday calendar, for those not on `rules`'."""
    con.execute("CREATE OR REPLACE TABLE timetable (institute VARCHAR, isodow INT, "
                "start_minute INT, end_minute INT)")
    for row in timetable:
        con.execute("INSERT INTO timetable VALUES (?, ?, ?, ?)", list(row))
    con.execute("CREATE OR REPLACE TABLE closures (institute VARCHAR, first_date DATE, last_date DATE)")
    for closure in closures:
        con.execute("INSERT INTO closures VALUES (?, ?, ?)", list(closure))
    max_us = round(rules.reading_max_minutes * 60e6)
    peak_us = round(rules.bb101_peak_minutes * 60e6)
    season_first, season_last = rules.heating_season
    month_day = "(month(d) * 100 + day(d))"
    heating = (f"({month_day} >= {season_first} AND {month_day} <= {season_last})"
               if season_first <= season_last
               else f"({month_day} >= {season_first} OR {month_day} <= {season_last})")
    excess = f"(co2 - {rules.outdoor_co2})"
    l1, l2, l3 = rules.category_excess
    # Readings as the analysis validates them: attributable rows only, impossible values null.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE included AS SELECT dev_eui, sendtime, institute, classroom, "
        f"{_valid('co2')} AS co2, {_valid('temperature')} AS temperature, "
        "CASE WHEN pir IN (0, 1) THEN pir END AS pir, "
        f"timezone('{timezone}', sendtime) AS local_ts, CAST(timezone('{timezone}', sendtime) AS DATE) AS d "
        "FROM raw WHERE sendtime IS NOT NULL AND dev_eui IS NOT NULL AND institute IS NOT NULL "
        "AND classroom IS NOT NULL")
    _load_public_holidays(con, rules.public_holidays, own_holidays or {})
    # Occupied: an occupied range of the institute's timetable (its own rows, else the
    # default rows), [start, end), not on a closed date nor on a public holiday of its
    # calendar (its own, else the default). The range end back to an instant.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE occupied AS SELECT i.*, "
        f"timezone('{timezone}', CAST(i.d AS TIMESTAMP) + to_minutes(t.end_minute)) AS range_end "
        "FROM included i JOIN timetable t ON t.isodow = isodow(i.d) "
        "AND i.local_ts >= CAST(i.d AS TIMESTAMP) + to_minutes(t.start_minute) "
        "AND i.local_ts < CAST(i.d AS TIMESTAMP) + to_minutes(t.end_minute) "
        "AND ((t.institute = i.institute) OR (t.institute IS NULL AND i.institute NOT IN "
        "(SELECT institute FROM timetable WHERE institute IS NOT NULL))) "
        "WHERE NOT EXISTS (SELECT 1 FROM closures c WHERE (c.institute = '*' OR c.institute = i.institute) "
        "AND i.d BETWEEN c.first_date AND c.last_date) "
        "AND NOT EXISTS (SELECT 1 FROM public_holidays h WHERE h.d = i.d AND (h.institute = i.institute "
        "OR (h.institute IS NULL AND i.institute NOT IN (SELECT institute FROM own_calendar))))")
    # Episodes per device, date and range: a reading starts one when it is above the peak
    # and its predecessor is not, or came more than the longest standing time before.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE longest AS
        WITH seq AS (
            SELECT institute, classroom, dev_eui, d, range_end, co2, epoch_us(sendtime) AS t,
                   epoch_us(range_end) AS end_us,
                   LEAD(epoch_us(sendtime)) OVER w AS next_t,
                   LAG(epoch_us(sendtime)) OVER w AS prev_t, LAG(co2) OVER w AS prev_co2
            FROM occupied WHERE co2 IS NOT NULL
            WINDOW w AS (PARTITION BY institute, classroom, dev_eui, d, range_end ORDER BY sendtime, co2)
        ), marked AS (
            SELECT *, least(coalesce(next_t, end_us), t + {max_us}, end_us) - t AS stands_us,
                   co2 > {rules.bb101_peak} AS high,
                   CASE WHEN co2 > {rules.bb101_peak} AND NOT coalesce(
                       prev_co2 > {rules.bb101_peak} AND t - prev_t <= {max_us}, false)
                        THEN 1 ELSE 0 END AS starts
            FROM seq
        ), numbered AS (
            SELECT *, sum(starts) OVER (PARTITION BY institute, classroom, dev_eui, d, range_end
                                        ORDER BY t, co2 ROWS UNBOUNDED PRECEDING) AS episode
            FROM marked
        )
        SELECT institute, classroom, d, max(length_us) AS longest_us FROM (
            SELECT institute, classroom, dev_eui, d, range_end, episode, sum(stands_us) AS length_us
            FROM numbered WHERE high GROUP BY ALL) GROUP BY ALL""")
    # Covered time: what every occupied CO2 reading of a device stands for, summed per
    # device and date; the classroom's is its best device's (two sensors, one room's air).
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE covered AS
        SELECT institute, classroom, d, max(device_us) AS covered_us FROM (
            SELECT institute, classroom, dev_eui, d, sum(stands_us) AS device_us FROM (
                SELECT institute, classroom, dev_eui, d,
                       least(coalesce(LEAD(epoch_us(sendtime)) OVER w, epoch_us(range_end)),
                             epoch_us(sendtime) + {max_us}, epoch_us(range_end)) - epoch_us(sendtime)
                           AS stands_us
                FROM occupied WHERE co2 IS NOT NULL
                WINDOW w AS (PARTITION BY institute, classroom, dev_eui, d, range_end ORDER BY sendtime, co2))
            GROUP BY ALL
        ) GROUP BY ALL""")
    # Occupied time of an institute's date: its timetable rows that weekday as instants.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE occupied_time AS
        SELECT k.institute, k.d, sum(epoch_us(timezone('{timezone}', CAST(k.d AS TIMESTAMP) + to_minutes(t.end_minute)))
                                   - epoch_us(timezone('{timezone}', CAST(k.d AS TIMESTAMP) + to_minutes(t.start_minute))))
                                AS occupied_us
        FROM (SELECT DISTINCT institute, d FROM occupied) k JOIN timetable t ON t.isodow = isodow(k.d)
         AND ((t.institute = k.institute) OR (t.institute IS NULL AND k.institute NOT IN
             (SELECT institute FROM timetable WHERE institute IS NOT NULL)))
        GROUP BY ALL""")

    def statistics(with_category: bool) -> str:
        n = "count(co2)"
        category = (
            # Best category whose readings with those of better ones make the share.
            f", CASE WHEN {n} = 0 THEN NULL "
            f"WHEN count(*) FILTER (WHERE {excess} <= {l1}) >= {rules.compliance_share}::DOUBLE * {n} THEN 1 "
            f"WHEN count(*) FILTER (WHERE {excess} <= {l2}) >= {rules.compliance_share}::DOUBLE * {n} THEN 2 "
            f"WHEN count(*) FILTER (WHERE {excess} <= {l3}) >= {rules.compliance_share}::DOUBLE * {n} THEN 3 "
            "ELSE 4 END AS en16798_co2_category")
        return (
            f"{n} AS co2_occupied_readings, avg(co2) AS co2_occupied_mean, max(co2) AS co2_occupied_max, "
            f"CAST(count(*) FILTER (WHERE {excess} <= {l1}) AS DOUBLE) / NULLIF({n}, 0) AS en16798_co2_share_i, "
            f"CAST(count(*) FILTER (WHERE {excess} > {l1} AND {excess} <= {l2}) AS DOUBLE) / NULLIF({n}, 0) "
            "AS en16798_co2_share_ii, "
            f"CAST(count(*) FILTER (WHERE {excess} > {l2} AND {excess} <= {l3}) AS DOUBLE) / NULLIF({n}, 0) "
            "AS en16798_co2_share_iii, "
            f"CAST(count(*) FILTER (WHERE {excess} > {l3}) AS DOUBLE) / NULLIF({n}, 0) AS en16798_co2_share_iv, "
            "count(temperature) AS temperature_occupied_readings, avg(temperature) AS temperature_occupied_mean, "
            f"CAST(count(*) FILTER (WHERE CASE WHEN {heating} THEN temperature BETWEEN "
            f"{rules.heating_band[0]} AND {rules.heating_band[1]} ELSE temperature BETWEEN "
            f"{rules.other_band[0]} AND {rules.other_band[1]} END) AS DOUBLE) "
            "/ NULLIF(count(temperature), 0) AS temperature_share_in_band"
            + (category if with_category else ""))

    minimum = rules.min_day_coverage
    con.execute(f"""
        CREATE OR REPLACE TABLE daily AS
        WITH judged AS (
            SELECT s.*, coalesce(c.covered_us, 0) / o.occupied_us AS occupied_coverage,
                   s.co2_occupied_readings > 0 AND coalesce(c.covered_us, 0) / o.occupied_us >= {minimum}
                        AS judged,
                   coalesce(l.longest_us, 0) AS longest_us
            FROM (SELECT institute, classroom, d AS local_date, {WEEK_KEYS}, {statistics(False)},
                         CAST(count(*) FILTER (WHERE pir = 1) AS DOUBLE) / NULLIF(count(pir), 0)
                            AS pir_share_motion
                  FROM occupied GROUP BY institute, classroom, d
                  HAVING count(co2) + count(temperature) > 0) s
            JOIN occupied_time o ON o.institute = s.institute AND o.d = s.local_date
            LEFT JOIN longest l ON l.institute = s.institute AND l.classroom = s.classroom
                 AND l.d = s.local_date
            LEFT JOIN covered c ON c.institute = s.institute AND c.classroom = s.classroom
                 AND c.d = s.local_date)
        SELECT * EXCLUDE (judged, longest_us),
               CASE WHEN co2_occupied_readings > 0 THEN longest_us / 60e6 END AS longest_peak_episode_minutes,
               CASE WHEN judged THEN co2_occupied_mean < {rules.bb101_mean} END AS bb101_mean_met,
               CASE WHEN judged THEN longest_us <= {peak_us} END AS bb101_peak_met,
               CASE WHEN co2_occupied_readings = 0 THEN 'no occupied CO2 reading'
                    WHEN NOT judged THEN 'too little data: '
                        || regexp_replace(CAST(floor(occupied_coverage * 1000) / 10 AS VARCHAR), '\\.0$', '')
                        || ' % of the occupied time covered (IAQ_MIN_DAY_COVERAGE '
                        || regexp_replace(CAST({minimum} * 100 AS VARCHAR), '\\.0$', '') || ' %)'
               END AS not_judged_reason
        FROM judged""")
    days = ("count(*) FILTER (WHERE co2_occupied_readings > 0) AS school_days, "
            "count(*) FILTER (WHERE not_judged_reason IS NULL) AS judged_days, "
            "count(*) FILTER (WHERE co2_occupied_readings > 0 AND not_judged_reason IS NOT NULL) "
            "AS days_with_too_little_data, "
            "count(*) FILTER (WHERE bb101_mean_met) AS bb101_mean_days_met, "
            "count(*) FILTER (WHERE bb101_peak_met) AS bb101_peak_days_met, "
            "count(*) FILTER (WHERE bb101_mean_met AND bb101_peak_met) AS bb101_days_met")
    con.execute(f"""
        CREATE OR REPLACE TABLE weekly AS
        SELECT r.*, c.* EXCLUDE (institute, classroom, iso_year, iso_week, week_start),
               r.week_start + 7 <= (SELECT max(d) FROM included i WHERE i.institute = r.institute)
                   AS week_complete
        FROM (SELECT institute, classroom, {WEEK_KEYS}, {statistics(True)} FROM occupied GROUP BY ALL) r
        JOIN (SELECT institute, classroom, iso_year, iso_week, week_start, {days} FROM daily GROUP BY ALL) c
          USING (institute, classroom, iso_year, iso_week, week_start)""")
    con.execute(f"""
        CREATE OR REPLACE TABLE period AS
        SELECT r.*, c.* EXCLUDE (institute, classroom)
        FROM (SELECT institute, classroom, {statistics(True)} FROM occupied GROUP BY ALL) r
        JOIN (SELECT institute, classroom, {days} FROM daily GROUP BY ALL) c USING (institute, classroom)""")
    # Each classroom's latest complete week, and how many weeks it lies behind the newest
    # such week of its institute. The current ones first, worst first: smallest share of
    # judged days meeting BB101, worst category, highest occupied CO2 mean; the stale ones
    # after them by name.
    con.execute("""
        CREATE OR REPLACE TABLE latest AS
        WITH newest AS (
            SELECT * FROM weekly WHERE week_complete
            QUALIFY row_number() OVER (PARTITION BY institute, classroom ORDER BY week_start DESC) = 1
        ), behind AS (
            SELECT *, CAST(datediff('day', week_start,
                                    max(week_start) OVER (PARTITION BY institute)) / 7 AS INTEGER)
                      AS weeks_behind_institute
            FROM newest)
        SELECT row_number() OVER (ORDER BY weeks_behind_institute > 0,
            CASE WHEN weeks_behind_institute = 0 THEN CAST(bb101_days_met AS DOUBLE) / NULLIF(judged_days, 0) END
                ASC NULLS LAST,
            CASE WHEN weeks_behind_institute = 0 THEN en16798_co2_category END DESC NULLS LAST,
            CASE WHEN weeks_behind_institute = 0 THEN co2_occupied_mean END DESC NULLS LAST,
            institute, classroom) AS position, *
        FROM behind""")


def fetch(con: duckdb.DuckDBPyConnection, table: str, order_by: str) -> list[dict[str, Any]]:
    cursor = con.execute(f"SELECT * FROM {table} ORDER BY {order_by}")
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def assert_rows_match(actual: list[dict[str, Any]], expected: list[dict[str, Any]], table: str) -> None:
    """Row for row, the same columns; floats to a relative 1e-9 (1e-9 absolute around zero)."""
    assert len(actual) == len(expected), f"{table}: {len(actual)} rows, {len(expected)} expected"
    for got, want in zip(actual, expected):
        assert set(got) == set(want), f"{table}: columns differ: {set(got) ^ set(want)}"
        for column, value in want.items():
            if isinstance(value, float) and got[column] is not None:
                assert got[column] == pytest.approx(value, rel=1e-9, abs=1e-9), (table, want, column)
            else:
                assert got[column] == value, (table, column, got, want)
