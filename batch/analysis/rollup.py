"""The roll-up of the collected partial statistics (batch/analysis/partials.py) to every
published grouping, and the run's validation counts, in the driver (pandas).

The partials are groups, not readings (one row per device and local day), so the roll-up runs
in the driver instead of as more Spark stages whose fixed cost exceeded the work; its memory
bound is in docs/analysis.md ("Aggregate"). Variances are merged with Chan's parallel formula,
which stays exact where a sum of squares would cancel.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from batch.analysis.statistics import (COUNT_PART, HITS_PART, M2_PART, MAX_PART, MIN_PART, SHARES, SUM_PART,
                                       Grouping, partial_column)
from batch.core.contract import DEVICE, METRICS, Metric
from batch.core.validation import EXCLUSION_REASON, EXCLUSION_REASONS, REPLAY_REASON, REPLAYS, out_of_range_flag


def _values(partials: pd.DataFrame, name: str) -> np.ndarray:
    """A partial column as doubles, missing values (a metric without values) as 0."""
    return partials[name].to_numpy(dtype=float, na_value=0.0)


def _rollup_grouping(included: pd.DataFrame, grouping: Grouping, metrics: tuple[Metric, ...]) -> pd.DataFrame:
    """One grouping's statistics from the included partials: one row per group."""
    keys = list(grouping.key_names)
    codes = included.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    groups = int(codes.max()) + 1 if len(codes) else 0
    by_group = included.groupby(codes, sort=True)
    result = by_group[keys].first()
    result["readings"] = by_group["readings"].sum()
    result["devices"] = by_group[DEVICE].nunique()
    result["first_reading_at"] = by_group["first_reading_at"].min()
    result["last_reading_at"] = by_group["last_reading_at"].max()
    lowest = by_group[[partial_column(metric.name, MIN_PART) for metric in metrics]].min()
    highest = by_group[[partial_column(metric.name, MAX_PART) for metric in metrics]].max()
    totals = {name: np.bincount(codes, weights=_values(included, name), minlength=groups)
              for name in [partial_column(share.name, HITS_PART) for share in SHARES]}
    for metric in metrics:
        n_i = _values(included, partial_column(metric.name, COUNT_PART))
        sum_i = _values(included, partial_column(metric.name, SUM_PART))
        n = np.bincount(codes, weights=n_i, minlength=groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, np.bincount(codes, weights=sum_i, minlength=groups) / n, np.nan)
            # Chan et al.: M2 of a union = sum of the parts' M2 + n_i * (mean_i - mean)^2.
            spread = np.where(n_i > 0, _values(included, partial_column(metric.name, M2_PART))
                              + n_i * (sum_i / n_i - mean[codes]) ** 2, 0.0)
            m2 = np.bincount(codes, weights=spread, minlength=groups)
            stddev = np.where(n > 1, np.sqrt(np.maximum(m2, 0.0) / (n - 1)), np.nan)
        result[f"{metric.name}_count"] = n.astype(np.int64)
        result[f"{metric.name}_mean"] = mean
        result[f"{metric.name}_min"] = lowest[partial_column(metric.name, MIN_PART)]
        result[f"{metric.name}_max"] = highest[partial_column(metric.name, MAX_PART)]
        result[f"{metric.name}_stddev"] = stddev
        totals[partial_column(metric.name, COUNT_PART)] = n
    for share in SHARES:
        n = totals[partial_column(share.metric, COUNT_PART)]
        with np.errstate(invalid="ignore", divide="ignore"):
            result[share.name] = np.where(n > 0, totals[partial_column(share.name, HITS_PART)] / n, np.nan)
    return result.reset_index(drop=True)


def included_partials(partials: pd.DataFrame) -> pd.DataFrame:
    """The rows of `collect_partials`' frame that the statistics use (no exclusion reason)."""
    return partials[partials[EXCLUSION_REASON].isna()]


def rollup_all(partials: pd.DataFrame, groupings: tuple[Grouping, ...],
               metrics: tuple[Metric, ...] = METRICS) -> dict[str, pd.DataFrame]:
    """The statistics of every grouping, by table name, from `collect_partials`' frame."""
    included = included_partials(partials)
    return {grouping.table: _rollup_grouping(included, grouping, metrics) for grouping in groupings}


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
