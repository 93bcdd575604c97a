"""Which readings a download selects: device profile, institute, classroom and a time window."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from batch.core.contract import CLASSROOM, INSTITUTE, PROFILE, SENDTIME
from batch.core.errors import ConfigurationError

# The columns whose values a value filter (profile, institute, classroom) selects on.
VALUE_FILTER_COLUMNS: tuple[str, ...] = (PROFILE, INSTITUTE, CLASSROOM)


class UnknownFilterValueError(ConfigurationError):
    """A --profile, --institute or --classroom value that no reading in the input has."""


@dataclass(frozen=True)
class DownloadFilter:
    """Which readings to download; every part is optional and they combine with AND.

    `since` and `until` are instants (timezone-aware); since is inclusive, until exclusive.
    Several values of one column select any of them.
    """

    profiles: tuple[str, ...] = ()
    institutes: tuple[str, ...] = ()
    classrooms: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            instant = getattr(self, name)
            if instant is not None and instant.utcoffset() is None:
                # PySpark would read a naive datetime in the Python process's local zone.
                raise ValueError(f"{name} must be a timezone-aware instant, got {instant!r}")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ConfigurationError(
                f"--since {self.since.isoformat()} is not before --until {self.until.isoformat()}: "
                "the window is empty")

    @property
    def values_by_column(self) -> dict[str, tuple[str, ...]]:
        return {PROFILE: self.profiles, INSTITUTE: self.institutes, CLASSROOM: self.classrooms}

    @property
    def has_value_filters(self) -> bool:
        return any(self.values_by_column.values())

    @property
    def columns(self) -> tuple[str, ...]:
        """The input columns the filter reads (all three value columns with any value filter:
        the check of unknown values lists them all)."""
        used = list(VALUE_FILTER_COLUMNS) if self.has_value_filters else []
        if self.since is not None or self.until is not None:
            used.append(SENDTIME)
        return tuple(used)


def parse_local_instant(text: str, timezone_name: str) -> datetime:
    """The UTC instant of an ISO date or date-time; without an offset it is local to `timezone_name`.

    A date means its local midnight. A local time that does not exist (the hour skipped when
    clocks go forward) or exists twice (clocks go back) is refused: the caller must say
    which instant is meant by adding an offset.
    """
    cleaned = text.strip()
    if cleaned[-1:] in ("Z", "z"):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO date or date-time (e.g. 2024-10-01, 2024-10-01T08:30, "
            "2024-10-01T08:30:00+02:00)") from None
    if parsed.tzinfo is not None:
        return parsed.astimezone(timezone.utc)
    zone = ZoneInfo(timezone_name)
    earlier = parsed.replace(tzinfo=zone, fold=0)
    later = parsed.replace(tzinfo=zone, fold=1)
    if earlier.utcoffset() != later.utcoffset():
        offsets = sorted({_offset_text(earlier), _offset_text(later)})
        round_trip = earlier.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None)
        why = ("does not exist in" if round_trip != parsed else "happens twice in")
        raise ValueError(
            f"{text!r} {why} {timezone_name} (a daylight-saving change): add the offset "
            f"meant, e.g. {parsed.isoformat()}{offsets[0]} or {parsed.isoformat()}{offsets[-1]}")
    return earlier.astimezone(timezone.utc)


def _offset_text(instant: datetime) -> str:
    offset = instant.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def filter_readings(readings_df: DataFrame, download_filter: DownloadFilter) -> DataFrame:
    """The readings `download_filter` selects; a time window excludes readings without `sendtime`."""
    condition: Column = F.lit(True)
    for column, values in download_filter.values_by_column.items():
        if values:
            condition = condition & F.col(column).isin(list(values))
    # Aware datetimes become exact instants whatever the Python process's local time zone.
    if download_filter.since is not None:
        condition = condition & (F.col(SENDTIME) >= F.lit(download_filter.since))
    if download_filter.until is not None:
        condition = condition & (F.col(SENDTIME) < F.lit(download_filter.until))
    return readings_df.where(condition)


def value_inventory(readings_df: DataFrame) -> DataFrame:
    """Readings per (profile, institute, classroom): what the value filters can select."""
    return readings_df.groupBy(*VALUE_FILTER_COLUMNS).agg(F.count(F.lit(1)).alias("rows"))


def check_filter_values(
    download_filter: DownloadFilter, inventory: Iterable[Mapping[str, Any]], input_path: str
) -> None:
    """Refuse a profile, institute or classroom that no reading has, listing those that exist."""
    rows = list(inventory)
    for column, wanted in download_filter.values_by_column.items():
        if not wanted:
            continue
        scope = rows
        if column == CLASSROOM and download_filter.institutes:
            # Classrooms are named per institute: look only inside the institutes asked for.
            scope = [row for row in rows if row[INSTITUTE] in download_filter.institutes]
        counts: dict[str, int] = {}
        without = 0
        for row in scope:
            if row[column] is None:
                without += row["rows"]
            else:
                counts[row[column]] = counts.get(row[column], 0) + row["rows"]
        unknown = [value for value in wanted if value not in counts]
        if unknown:
            raise UnknownFilterValueError(
                _unknown_message(column, unknown, counts, without, input_path,
                                 download_filter.institutes if column == CLASSROOM else ()))


def _unknown_message(column: str, unknown: Sequence[str], counts: Mapping[str, int],
                     without: int, input_path: str, institutes: Sequence[str]) -> str:
    names = ", ".join(f"`{value}`" for value in unknown)
    where = f"{', '.join(institutes)} ({input_path})" if institutes else input_path
    existing = ", ".join(f"{value} ({count:,} rows)" for value, count in sorted(counts.items()))
    message = f"unknown {column} {names}; {column}s in {where}: {existing or 'none'}"
    if without:
        message += f"; {without:,} rows have no {column}"
    return message
