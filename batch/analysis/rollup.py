"""The roll-up of the partial statistics (batch/analysis/partials.py) to every published
grouping, driven by the measures of batch/analysis/statistics.py: in the driver (pandas) from
the collected partials, or in Spark (`rollup_in_spark`); and the run's validation counts.

The partials are groups, not readings (one row per device and local day), so the roll-up runs
in the driver instead of as more Spark stages whose fixed cost exceeded the work; its memory
bound is in docs/analysis.md ("Aggregate"). Variances are merged with Chan's parallel formula,
which stays exact where a sum of squares would cancel.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

import numpy as np
import pandas as pd

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from batch.analysis.delta import Scope
from batch.analysis.statistics import DISTINCT, MAX, MIN, READING_DATE, SUM, Grouping, Measure, Part, Variance, measures
from batch.core.contract import INSTITUTE, METRICS, Metric
from batch.core.validation import EXCLUSION_REASON, EXCLUSION_REASONS, REPLAY_REASON, REPLAYS, out_of_range_flag


def parts_of(used: Iterable[Measure]) -> list[Part]:
    """The parts `used` need, once each, the variances last (they merge with the group's mean)."""
    parts = list({part.name: part for measure in used for part in measure.parts}.values())
    return sorted(parts, key=lambda part: isinstance(part.merge, Variance))


def _values(partials: pd.DataFrame, name: str) -> np.ndarray:
    """A partial column as doubles, missing values (a metric without values) as 0."""
    return partials[name].to_numpy(dtype=float, na_value=0.0)


def finished(merged: pd.DataFrame, keys: list[str], used: Iterable[Measure]) -> pd.DataFrame:
    """The `keys` of `merge_parts`' groups, then each measure's value."""
    result = merged[keys].copy()
    for measure in used:
        result[measure.name] = measure.finish(merged)
    return result.reset_index(drop=True)


def merge_parts(rows: pd.DataFrame, keys: list[str], parts: Iterable[Part]) -> pd.DataFrame:
    """One row per group of `rows` sharing `keys` (in the driver): the keys, then each part
    merged by its rule (SUM parts as doubles, a missing value counting 0)."""
    codes = rows.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    groups = int(codes.max()) + 1 if len(codes) else 0
    by_group = rows.groupby(codes, sort=True)
    merged = by_group[keys].first()
    for part in parts:
        if part.merge == SUM:
            merged[part.name] = np.bincount(codes, weights=_values(rows, part.name), minlength=groups)
        elif part.merge in (MIN, MAX):
            merged[part.name] = getattr(by_group[part.name], part.merge)()
        elif part.merge == DISTINCT:
            merged[part.name] = by_group[part.name].nunique()
        else:  # a Variance, once its count and sum are merged
            n_i, sum_i = _values(rows, part.merge.count), _values(rows, part.merge.total)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = (merged[part.merge.total] / merged[part.merge.count]).to_numpy()
                spread = np.where(n_i > 0, _values(rows, part.name) + n_i * (sum_i / n_i - mean[codes]) ** 2, 0.0)
            merged[part.name] = np.bincount(codes, weights=spread, minlength=groups)
    return merged.reset_index(drop=True)


def _rollup_grouping(included: pd.DataFrame, grouping: Grouping, used: tuple[Measure, ...]) -> pd.DataFrame:
    """One grouping's statistics from the included partials, one row per group, merged in the driver."""
    keys = list(grouping.key_names)
    return finished(merge_parts(included, keys, parts_of(used)), keys, used)


def rollup_in_spark(partials_df: DataFrame, grouping: Grouping,
                    metrics: tuple[Metric, ...] = METRICS) -> pd.DataFrame:
    """One grouping's statistics from partials kept in Spark (the state, however large): the
    parts merged by Spark, the same measures finished in the driver on one row per group.
    The path past the driver's memory (docs/incremental.md, "Scale")."""
    used = measures(metrics)
    keys = list(grouping.key_names)
    included = partials_df.where(F.col(EXCLUSION_REASON).isNull())
    by_group = Window.partitionBy(*keys)
    merges = []
    for part in parts_of(used):
        column = F.col(part.name)
        if part.merge == SUM:
            merges.append(F.coalesce(F.sum(column).cast("double"), F.lit(0.0)).alias(part.name))
        elif part.merge in (MIN, MAX):
            merges.append(getattr(F, part.merge)(column).alias(part.name))
        elif part.merge == DISTINCT:
            merges.append(F.countDistinct(column).alias(part.name))
        else:
            n_i, sum_i = F.col(part.merge.count), F.col(part.merge.total)
            mean = F.sum(sum_i).over(by_group) / F.sum(n_i).over(by_group)
            spread = F.when(n_i > 0, column + n_i * (sum_i / n_i - mean) ** 2).otherwise(F.lit(0.0))
            included = included.withColumn(f"_{part.name}_spread", spread)
            merges.append(F.coalesce(F.sum(f"_{part.name}_spread"), F.lit(0.0)).alias(part.name))
    return finished(included.groupBy(*keys).agg(*merges).toPandas(), keys, used)


def included_partials(partials: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of the collected partials (batch/analysis/device_days.py) that the statistics use
    (no exclusion reason); only `columns` when given (a row filter copies every column it keeps:
    ~80 here)."""
    included = partials[EXCLUSION_REASON].isna().to_numpy()
    return partials.loc[included, columns] if columns is not None else partials[included]


def data_through(partials: pd.DataFrame) -> dict[str, date]:
    """Each institute's last local date with an included reading (a compliance week is complete
    once its institute's data reach past its Sunday)."""
    return included_partials(partials, [INSTITUTE, READING_DATE]).groupby(INSTITUTE)[READING_DATE].max().to_dict()


def rollup_all(partials: pd.DataFrame, groupings: tuple[Grouping, ...], metrics: tuple[Metric, ...] = METRICS,
               scopes: Mapping[str, Scope] | None = None) -> dict[str, pd.DataFrame]:
    """The statistics of every grouping, by table name, from the collected partials
    (batch/analysis/device_days.py): of the groups in the table's scope only where `scopes`
    gives one (batch/analysis/delta.py)."""
    used = measures(metrics)
    columns = {name: None for grouping in groupings for name in grouping.key_names}
    included = included_partials(partials, [*columns, *(part.name for part in parts_of(used))])
    scopes = scopes or {}

    def rows(table: str) -> pd.DataFrame:
        return included[scopes[table].holds(included)] if table in scopes else included

    return {grouping.table: _rollup_grouping(rows(grouping.table), grouping, used) for grouping in groupings}


def validation_counts(partials: pd.DataFrame, metrics: tuple[Metric, ...] = METRICS) -> dict[str, int]:
    """Readings read, kept, excluded per reason, replays dropped, values nulled per metric."""
    reason = partials[EXCLUSION_REASON]
    included = reason.isna()
    readings = partials["readings"].fillna(0)
    replays = int(partials[REPLAYS].fillna(0).sum())
    counts = {
        "rows_read": int(readings.sum()) + replays,
        "rows_used": int(readings[included].sum()),
        REPLAY_REASON: replays,
    }
    for name in EXCLUSION_REASONS:
        counts[name] = int(readings[reason == name].sum())
    for metric in metrics:
        flag = out_of_range_flag(metric.name)
        counts[flag] = int(partials.loc[included, flag].fillna(0).sum())
    return counts
