"""When pupils are in the room: school timetables, closures and the heating season, as data.

Parsed on the driver from settings and small CSV files; batch/analysis/iaq_partials.py turns them into Spark
expressions. Every error names the setting or the file and line, and the value refused. The
formats of the settings and files: docs/compliance.md, "The timetable and closures files".
"""
from __future__ import annotations

import csv
import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import holidays

from batch.core.config import closest_name
from batch.core.errors import ConfigurationError

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # ISO order: Monday = 1
ALL_INSTITUTES = "*"

NO_HOLIDAYS = "none"
# The years whose public holidays are closed dates: the data's years are unknown before it
# is read, and a span this wide costs one Spark InSet of ~1,400 dates per calendar.
HOLIDAY_YEARS = range(2000, 2100)

_TIME = re.compile(r"^(\d{2}):(\d{2})$")
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")


@dataclass(frozen=True)
class Timetable:
    """Occupied ranges per ISO weekday: `ranges[0]` is Monday's, each (start, end) in
    seconds after local midnight, sorted and disjoint."""

    ranges: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def text(self) -> str:
        groups = [f"{WEEKDAYS[day]} " + ",".join(f"{_clock(s)}-{_clock(e)}" for s, e in day_ranges)
                  for day, day_ranges in enumerate(self.ranges) if day_ranges]
        return "; ".join(groups)


@dataclass(frozen=True)
class Closure:
    """Dates an institute (or every institute, `*`) is closed, inclusive."""

    institute: str
    first_date: dt.date
    last_date: dt.date


# (institute, "IAQ_CLOSURES_FILE path line n") of each institute a file names (unknown_institutes).
NamedAt = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Occupancy:
    """Everything that decides whether a reading is an occupied one."""

    default_timetable: Timetable
    institute_timetables: tuple[tuple[str, Timetable], ...] = ()
    closures: tuple[Closure, ...] = ()
    # The public-holiday calendar of the institutes without one of their own (`parse_holiday_calendar`).
    public_holidays: str = NO_HOLIDAYS
    institute_public_holidays: tuple[tuple[str, str], ...] = ()
    # Where each institute is named in the files (unknown_institutes).
    named_at: NamedAt = ()

    def calendars(self) -> dict[str, str]:
        """The public-holiday calendar per institute with its own, `*` for every other one."""
        return {ALL_INSTITUTES: self.public_holidays, **dict(self.institute_public_holidays)}


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def _seconds(text: str) -> int:
    found = _TIME.match(text.strip())
    if not found:
        raise ValueError(f"{text.strip()!r} is not a time HH:MM")
    hours, minutes = int(found.group(1)), int(found.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{text.strip()!r} is not a time of day (00:00 to 24:00)")
    return hours * 3600 + minutes * 60


def _weekday(text: str) -> int:
    index = {name.lower(): index for index, name in enumerate(WEEKDAYS)}.get(text.strip().lower())
    if index is None:
        raise ValueError(f"{text.strip()!r} is not a weekday ({', '.join(WEEKDAYS)})")
    return index


def _days(text: str) -> list[int]:
    first, _, last = text.partition("-")
    start = _weekday(first)
    end = _weekday(last) if last else start
    if end < start:
        raise ValueError(f"day span {text!r} runs backwards (write Mon-Fri, not Fri-Mon)")
    return list(range(start, end + 1))


def parse_timetable(text: str) -> Timetable:
    """`Mon-Fri 08:00-13:00,14:00-16:00; Sat 08:00-12:00` -> Timetable (ValueError if invalid)."""
    per_day: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
    defined: set[int] = set()
    stripped = text.strip()
    if not stripped:
        raise ValueError("the timetable is empty: give one, e.g. 'Mon-Fri 08:00-14:00', or write "
                         "'none' for rooms never occupied")
    if stripped.lower() == "none":
        return Timetable(tuple(() for _ in WEEKDAYS))
    for group in stripped.split(";"):
        days_text, _, ranges_text = group.strip().partition(" ")
        if not ranges_text.strip():
            raise ValueError(f"{group.strip()!r} needs days and time ranges, e.g. 'Mon-Fri 08:00-14:00'")
        days = _days(days_text)
        ranges = []
        for range_text in ranges_text.split(","):
            start_text, separator, end_text = range_text.strip().partition("-")
            if not separator:
                raise ValueError(f"{range_text.strip()!r} is not a time range HH:MM-HH:MM")
            start, end = _seconds(start_text), _seconds(end_text)
            if start >= end:
                raise ValueError(f"time range {range_text.strip()!r} must end after it starts")
            ranges.append((start, end))
        ranges.sort()
        for (_, end), (start, _) in zip(ranges, ranges[1:]):
            if start < end:
                raise ValueError(f"time ranges overlap in {group.strip()!r}")
        for day in days:
            if day in defined:
                raise ValueError(f"{WEEKDAYS[day]} is given twice")
            defined.add(day)
            per_day[day] = ranges
    return Timetable(tuple(tuple(ranges) for ranges in per_day))


def checked_timetable(text: str) -> str:
    """Option parser: the timetable text, once it parses."""
    parse_timetable(text)
    return text.strip()


def parse_month_day(text: str) -> tuple[int, int]:
    """`10-15` -> (10, 15): a day of the year, any year (29 February allowed)."""
    found = _MONTH_DAY.match(text.strip())
    if not found:
        raise ValueError(f"{text.strip()!r} is not a day MM-DD (e.g. 10-15)")
    month, day = int(found.group(1)), int(found.group(2))
    try:
        dt.date(2024, month, day)  # a leap year: 02-29 is a valid day of the year
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a day of the year") from None
    return month, day


def checked_month_day(text: str) -> str:
    """Option parser: `MM-DD`, once it is a day of the year."""
    parse_month_day(text)
    return text.strip()


def checked_optional_file(text: str) -> str:
    """Option parser: empty, or a file that exists (its content is checked when loaded)."""
    path = text.strip()
    if path and Path(path).is_dir():
        raise ValueError(f"{path} is a directory, not a file")
    if path and not Path(path).is_file():
        raise ValueError(f"file {path} does not exist")
    return path


def _csv_rows(path: str, header: tuple[str, ...], setting: str,
              optional: tuple[str, ...] = ()) -> list[tuple[str, list[str]]]:
    """The non-blank lines after the header, cells stripped, each with where it is ("SETTING
    path line n"). The header is `header`, or `header` then the `optional` columns; rows of a
    file without them get empty cells."""
    try:
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the header.
        with open(path, newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle))
    except OSError as error:
        raise ConfigurationError(f"{setting} {path}: cannot read it: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{setting} {path}: not UTF-8 text") from None
    full = header + optional
    found = tuple(cell.strip() for cell in lines[0]) if lines else ()
    if found not in (header, full):
        shorter = f" (or {','.join(header)})" if optional else ""
        raise ConfigurationError(
            f"{setting} {path}: the first line must be the header {','.join(full)}{shorter}")
    rows = []
    for number, cells in enumerate(lines[1:], start=2):
        where = f"{setting} {path} line {number}"
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(found):
            raise ConfigurationError(f"{where}: expected {len(found)} fields ({','.join(found)}), "
                                     f"got {len(cells)}")
        rows.append((where, [cell.strip() for cell in cells] + [""] * (len(full) - len(found))))
    return rows


@lru_cache(maxsize=1)
def _supported_calendars() -> dict[str, list[str]]:
    # Imports every country module of the library (~0.2 s): once, and only when asked.
    return holidays.list_supported_countries()


def parse_holiday_calendar(text: str) -> str:
    """`IT`, `it-bz` or `none` -> `IT`, `IT-BZ`, `none`: a country of the holidays library
    (ISO 3166-1 alpha-2) and optionally one of its subdivisions (ValueError if unknown)."""
    stripped = text.strip()
    if stripped.lower() == NO_HOLIDAYS:
        return NO_HOLIDAYS
    country, separator, subdivision = stripped.partition("-")
    supported = _supported_calendars()
    code = country.upper()
    if code not in supported:
        raise ValueError(
            f"{stripped!r} is not a public-holiday calendar of the holidays library: write a "
            "country code (e.g. IT, FR, DE), optionally with a subdivision (IT-BZ), or none")
    if not separator:
        return code
    subdivisions = {name.upper(): name for name in supported[code]}
    if subdivision.upper() not in subdivisions:
        examples = ", ".join(supported[code][:6]) or "none"
        raise ValueError(
            f"{stripped!r}: {subdivision!r} is not a subdivision of {code} in the holidays library "
            f"(it knows {len(supported[code])}: {examples}{', ...' if len(supported[code]) > 6 else ''})")
    return f"{code}-{subdivisions[subdivision.upper()]}"


@lru_cache(maxsize=None)
def public_holiday_dates(calendar: str) -> dict[dt.date, str]:
    """The public holidays of `calendar` (`parse_holiday_calendar`'s) in HOLIDAY_YEARS, with
    their names; none for `none`. Substitute days the library lists are included."""
    if calendar == NO_HOLIDAYS:
        return {}
    country, _, subdivision = calendar.partition("-")
    return dict(sorted(holidays.country_holidays(country, subdiv=subdivision or None,
                                                 years=HOLIDAY_YEARS).items()))


def public_holidays_applied(occupancy: Occupancy, first: dt.date, last: dt.date) -> dict[str, Any]:
    """What batch_runs.settings records of the public holidays: the calendar of each
    institute with its own (`*`: every other one) and each calendar's holidays from `first`
    to `last` (the data's local dates), ISO date -> name."""
    calendars = occupancy.calendars()
    return {
        "first_date": first.isoformat(), "last_date": last.isoformat(), "calendars": calendars,
        "holidays": {calendar: {day.isoformat(): name for day, name in public_holiday_dates(calendar).items()
                                if first <= day <= last}
                     for calendar in sorted(set(calendars.values())) if calendar != NO_HOLIDAYS},
    }


def _load_institute_settings(path: str) -> tuple[dict[str, Timetable], dict[str, str], NamedAt]:
    """The institutes' own timetables and public-holiday calendars of IAQ_TIMETABLE_FILE (none
    when `path` is empty), and where each institute is named."""
    if not path:
        return {}, {}, ()
    timetables: dict[str, Timetable] = {}
    calendars: dict[str, str] = {}
    named_at: list[tuple[str, str]] = []
    for where, (institute, text, calendar) in _csv_rows(
            path, ("institute", "timetable"), "IAQ_TIMETABLE_FILE", optional=("holidays",)):
        if not institute or institute == ALL_INSTITUTES:
            raise ConfigurationError(f"{where}: an institute name is required "
                                     "(IAQ_TIMETABLE is the timetable of every other one)")
        if institute in timetables:
            raise ConfigurationError(f"{where}: institute {institute!r} is listed twice")
        try:
            timetables[institute] = parse_timetable(text)
        except ValueError as error:
            raise ConfigurationError(f"{where}: timetable {text!r}: {error}") from None
        if calendar:
            try:
                calendars[institute] = parse_holiday_calendar(calendar)
            except ValueError as error:
                raise ConfigurationError(f"{where}: holidays: {error}") from None
        named_at.append((institute, where))
    return timetables, calendars, tuple(named_at)


def load_closures(path: str) -> tuple[tuple[Closure, ...], NamedAt]:
    """The closures of IAQ_CLOSURES_FILE (none when `path` is empty), and where each
    institute (other than *) is named."""
    if not path:
        return (), ()
    closures = []
    named_at: list[tuple[str, str]] = []
    header = ("institute", "first_date", "last_date", "reason")
    for where, (institute, first, last, _) in _csv_rows(path, header, "IAQ_CLOSURES_FILE"):
        if not institute:
            raise ConfigurationError(f"{where}: institute is empty (write * for every institute)")
        try:
            first_date, last_date = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
        except ValueError:
            raise ConfigurationError(
                f"{where}: dates must be YYYY-MM-DD, got {first!r} and {last!r}") from None
        if last_date < first_date:
            raise ConfigurationError(f"{where}: last_date {last} is before first_date {first}")
        closures.append(Closure(institute, first_date, last_date))
        if institute != ALL_INSTITUTES:
            named_at.append((institute, where))
    return tuple(closures), tuple(named_at)


def load_occupancy(timetable: str, timetable_file: str, closures_file: str,
                   public_holidays: str = NO_HOLIDAYS) -> Occupancy:
    """The occupancy settings with their files read (driver side, once per run)."""
    try:
        default = parse_timetable(timetable)
    except ValueError as error:
        raise ConfigurationError(f"IAQ_TIMETABLE: {error}") from None
    timetables, calendars, named_at = _load_institute_settings(timetable_file)
    closures, closures_named_at = load_closures(closures_file)
    return Occupancy(default, tuple(sorted(timetables.items())), closures, public_holidays,
                     tuple(sorted(calendars.items())), named_at + closures_named_at)


def unknown_institutes(occupancy: Occupancy, seen: set[str]) -> list[str]:
    """A warning for each line of the timetable or closures file naming an institute not in
    `seen` (the institutes of the input), with the closest one that is."""
    warnings = []
    for institute, where in occupancy.named_at:
        if institute in seen:
            continue
        close = closest_name(institute, seen, cutoff=0.6)
        hint = f" (did you mean {close!r}?)" if close else ""
        warnings.append(f"{where}: institute {institute!r} matches no institute of the input{hint}; "
                        "the line has no effect")
    return warnings
