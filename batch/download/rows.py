"""The DataFrame steps of a download: the columns it reads, its order, and --clean."""
from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from batch.core.contract import CLASSROOM, DEVICE, INSTITUTE, RAW_COLUMNS, RAW_COLUMNS_BY_NAME, SENDTIME
from batch.download.filters import DownloadFilter
from batch.core.validation import EXCLUSION_REASON, EXCLUSION_REASONS, REPLAY_REASON, REPLAYS, out_of_range_flag

# The download is ordered by instant, then device; the other downloaded columns only break ties
# (replays of one uplink), so that two runs over the same input write the same bytes.
ORDER_KEYS: tuple[str, ...] = (SENDTIME, DEVICE)


def columns_to_read(
    columns: Sequence[str], download_filter: DownloadFilter, clean: bool
) -> tuple[str, ...]:
    """Every input column the download needs, in contract order: no other column is scanned."""
    needed = set(columns) | set(ORDER_KEYS) | set(download_filter.columns)
    if clean:
        needed |= {SENDTIME, DEVICE, INSTITUTE, CLASSROOM}  # the exclusion rules read them
    return tuple(column.name for column in RAW_COLUMNS if column.name in needed)


def range_checked_columns(columns: Sequence[str]) -> tuple[str, ...]:
    """The downloaded columns with a physical range in the contract: --clean nulls their impossible values."""
    return tuple(name for name in columns if RAW_COLUMNS_BY_NAME[name].has_range)


def sort_for_download(readings_df: DataFrame, columns: Sequence[str]) -> DataFrame:
    """The readings (every column kept) in download order: Spark's own range-partitioned sort.

    The order is `sendtime`, then `DevEui`, nulls last; the other downloaded `columns` break
    ties, so the order is total on what is written. Partition i holds a range of that order
    below partition i + 1's, so the parts Spark writes, read in partition order, are the file.
    """
    tie_breakers = [name for name in columns if name not in ORDER_KEYS]
    return readings_df.orderBy(*[F.col(name).asc_nulls_last()
                                 for name in (*ORDER_KEYS, *tie_breakers)])


def order_for_download(readings_df: DataFrame, columns: Sequence[str]) -> DataFrame:
    """`columns` of the readings, in download order (see sort_for_download)."""
    return readings_df.transform(sort_for_download, columns).select(*columns)


def clean_counts(validated_df: DataFrame, checked_columns: Sequence[str]) -> DataFrame:
    """One row from validated readings: selected, downloaded, excluded per reason, values nulled."""
    return validated_df.agg(*clean_count_columns(checked_columns))


def clean_count_columns(checked_columns: Sequence[str]) -> list[Column]:
    """The aggregates of clean_counts, also usable with DataFrame.observe."""
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
