"""Which readings a download holds, in what order: the filters, their check, --clean, the sort."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from batch.core.contract import CLASSROOM, DEVICE, INSTITUTE, PROFILE, RAW_COLUMNS, RAW_COLUMNS_BY_NAME, SENDTIME
from batch.core.errors import ConfigurationError
from batch.core.validation import EXCLUSION_REASON, EXCLUSION_REASONS, REPLAY_REASON, REPLAYS, out_of_range_flag

# The columns whose values a value filter (profile, institute, classroom) selects on.
VALUE_FILTER_COLUMNS: tuple[str, ...] = (PROFILE, INSTITUTE, CLASSROOM)
# The download is ordered by instant, then device; the other downloaded columns only break ties
# (replays of one uplink), so that two runs over the same input write the same bytes.
ORDER_KEYS: tuple[str, ...] = (SENDTIME, DEVICE)


class UnknownFilterValueError(ConfigurationError):
    """A --profile, --institute or --classroom value that no reading in the input has."""


@dataclass(frozen=True)
class DownloadFilter:
    """Which readings to download: optional parts combined with AND, several values of one
    column with OR; `since` (inclusive) and `until` (exclusive) are timezone-aware instants."""

    profiles: tuple[str, ...] = ()
    institutes: tuple[str, ...] = ()
    classrooms: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
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
        institutes = download_filter.institutes if column == CLASSROOM else ()
        # Classrooms are named per institute: look only inside the institutes asked for.
        scope = [row for row in rows if not institutes or row[INSTITUTE] in institutes]
        counts: dict[str | None, int] = {}
        for row in scope:
            counts[row[column]] = counts.get(row[column], 0) + row["rows"]
        without = counts.pop(None, 0)
        unknown = ", ".join(f"`{value}`" for value in wanted if value not in counts)
        if not unknown:
            continue
        where = f"{', '.join(institutes)} ({input_path})" if institutes else input_path
        existing = ", ".join(f"{value} ({count:,} rows)" for value, count in sorted(counts.items()))
        message = f"unknown {column} {unknown}; {column}s in {where}: {existing or 'none'}"
        raise UnknownFilterValueError(message + (f"; {without:,} rows have no {column}" if without else ""))


def columns_to_read(
    columns: Sequence[str], download_filter: DownloadFilter, clean: bool
) -> tuple[str, ...]:
    """Every input column the download needs, in contract order: no other column is scanned
    (with a value filter all three value columns: their check lists them all)."""
    needed = set(columns) | set(ORDER_KEYS)  # the time window reads sendtime, an order key
    if download_filter.has_value_filters:
        needed |= set(VALUE_FILTER_COLUMNS)
    if clean:
        needed |= {SENDTIME, DEVICE, INSTITUTE, CLASSROOM}  # the exclusion rules read them
    return tuple(column.name for column in RAW_COLUMNS if column.name in needed)


def range_checked_columns(columns: Sequence[str]) -> tuple[str, ...]:
    """The downloaded columns with a physical range in the contract: --clean nulls their impossible values."""
    return tuple(name for name in columns if RAW_COLUMNS_BY_NAME[name].has_range)


def sort_for_download(readings_df: DataFrame, columns: Sequence[str]) -> DataFrame:
    """The readings (every column kept) in download order, in one partition, the file's part:
    `sendtime`, `DevEui`, then the other `columns`, nulls last (a total order on what is
    written). Spark's sort of one partition spills to disk when it outgrows its memory."""
    keys = (*ORDER_KEYS, *[name for name in columns if name not in ORDER_KEYS])
    return readings_df.repartition(1).sortWithinPartitions(*[F.col(key).asc_nulls_last() for key in keys])


def order_for_download(readings_df: DataFrame, columns: Sequence[str]) -> DataFrame:
    """`columns` of the readings, in download order (see sort_for_download)."""
    return readings_df.transform(sort_for_download, columns).select(*columns)


def clean_count_columns(checked_columns: Sequence[str]) -> list[Column]:
    """From validated readings: selected, downloaded, excluded per reason, values nulled (for observe)."""
    included = F.col(EXCLUSION_REASON).isNull()
    counts: dict[str, Column] = {
        "rows_selected": F.count(F.lit(1)) + F.sum(REPLAYS),
        "rows_downloaded": F.sum(F.when(included, 1).otherwise(0)),
        REPLAY_REASON: F.sum(REPLAYS),
    }
    for reason in EXCLUSION_REASONS:
        counts[reason] = F.sum(F.when(F.col(EXCLUSION_REASON) == reason, 1).otherwise(0))
    for column in checked_columns:
        counts[out_of_range_flag(column)] = F.sum(
            F.when(included, F.col(out_of_range_flag(column))).otherwise(0))
    return [F.coalesce(expr, F.lit(0)).cast("long").alias(name) for name, expr in counts.items()]


def usable_readings(validated_df: DataFrame, columns: Sequence[str]) -> DataFrame:
    """The validated readings that are not excluded, without the validation flags."""
    return validated_df.where(F.col(EXCLUSION_REASON).isNull()).select(*columns)
