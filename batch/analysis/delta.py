"""Which published rows a run changes: a digest of every published row is stored with the state
(batch/analysis/state.py), so that an incremental run stages and swaps only the rows whose
digest differs from the previous run's, and deletes the keys that are gone (issue 22: readers
see the old tables or the new ones, never a mix: the swap is still one transaction).

A row's digest is two independent 64-bit hashes of its published values (pandas' SipHash of
each column, combined), 128 bits: two different rows share one with a probability of about
2^-128. The rows of untouched groups are computed from the same partials in the same order
as before, so they are bit-identical and their digests equal; where a table's rows depend only
on the device-days of their own week, month or date, only those an incremental run changed are
computed at all (`recomputed_scopes`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from batch.analysis.health import DAILY_HEALTH_TABLE
from batch.analysis.iaq_tables import DAILY_TABLE, LOCAL_DATE, WEEKLY_TABLE
from batch.analysis.incremental import Changed
from batch.analysis.statistics import GROUPINGS, MONTH_START_KEY, WEEK_START_KEY

DIGEST_COLUMNS = ("row_digest_a", "row_digest_b")
# pandas' hash keys are 16 bytes; two keys give two independent hashes.
_HASH_KEYS = ("indoor-air-rowsA", "indoor-air-rowsB")


@dataclass(frozen=True)
class Scope:
    """The rows of a published table an incremental run recomputes: those whose `column` (a
    local date, a week's or a month's first day) holds one of `values`. Every other row is rolled
    up from device-days the run did not change: the previous run's row stays, with its digest."""

    column: str
    values: frozenset

    def holds(self, rows: pd.DataFrame, column: str | None = None) -> np.ndarray:
        """Which of `rows` are in the scope, by `column` (the scope's own by default)."""
        return rows[column or self.column].isin(self.values).to_numpy()


WEEK_START, MONTH_START = WEEK_START_KEY.column.name, MONTH_START_KEY.column.name


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _weeks_completed_between(changed: Changed) -> set[date]:
    """The weeks whose completeness (classroom_weekly_iaq.week_complete: its institute's data
    reach past its Sunday, start + 7 <= last date) a moved last date flips: start + 7 between
    the two dates."""
    weeks = set()
    for institute in changed.data_through_before.keys() & changed.data_through_after.keys():
        low, high = sorted((changed.data_through_before[institute], changed.data_through_after[institute]))
        first = low - timedelta(days=6)  # the first Monday with start + 7 > low ...
        week = _monday(first) + (timedelta(days=7) if first.weekday() else timedelta(0))
        while week + timedelta(days=7) <= high:  # ... up to the last with start + 7 <= high
            weeks.add(week)
            week += timedelta(days=7)
    return weeks


def recomputed_scopes(changed: Changed | None, stored: Mapping[str, pd.DataFrame],
                      new_columns: Mapping[str, object]) -> dict[str, Scope]:
    """The published tables an incremental run recomputes in part, and which part: the weeks,
    months and dates of the device-days it changed; for device_daily_health, every date from
    the first it changed or the input's previous last date (observed in part, and no longer
    the last) on, since a row looks back over the device's earlier days (batch/analysis/health.py
    reads what it depends on). The whole-period tables and device_health are recomputed whole,
    and so is a table without the previous run's digests or gaining a column."""
    if changed is None:
        return {}
    weeks = frozenset(_monday(day) for day in changed.dates)
    scopes = {DAILY_TABLE: Scope(LOCAL_DATE, frozenset(changed.dates)),
              WEEKLY_TABLE: Scope(WEEK_START, weeks | _weeks_completed_between(changed))}
    if changed.data_through_before:
        first = min(changed.dates | {max(changed.data_through_before.values())})
        lasts = [*changed.data_through_before.values(), *changed.data_through_after.values()]
        scopes[DAILY_HEALTH_TABLE] = Scope(LOCAL_DATE, frozenset(
            first + timedelta(days=offset) for offset in range((max(lasts) - first).days + 1)))
    for grouping in GROUPINGS:
        if WEEK_START in grouping.key_names:
            scopes[grouping.table] = Scope(WEEK_START, weeks)
        elif MONTH_START in grouping.key_names:
            scopes[grouping.table] = Scope(MONTH_START, frozenset(day.replace(day=1) for day in changed.dates))
    return {name: scope for name, scope in scopes.items() if name in stored and not new_columns.get(name)}


def row_digests(rows: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame:
    """The key columns of `rows` and the two digests of each whole row (as int64)."""
    digests = rows[list(key)].reset_index(drop=True)
    for name, hash_key in zip(DIGEST_COLUMNS, _HASH_KEYS):
        hashes = pd.util.hash_pandas_object(rows, index=False, hash_key=hash_key).to_numpy()
        digests[name] = hashes.view(np.int64)
    return digests


def changes(rows: pd.DataFrame, digests: pd.DataFrame, stored: pd.DataFrame,
            key: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows to insert: new or changed; the keys to delete: the published rows not kept as
    they are, changed or gone), from this run's `rows` and their `digests` (same order) against
    the `stored` digests of the published rows."""
    key = list(key)
    # A left merge keeps the order of `digests`, hence of `rows`; keys are unique (primary keys).
    position = digests[key].merge(stored[key].assign(_stored_at=np.arange(len(stored))),
                                  on=key, how="left")["_stored_at"]
    found = position.notna().to_numpy()
    at = position.fillna(0).to_numpy(dtype=np.int64)
    same = found.copy()
    for name in DIGEST_COLUMNS:
        if len(stored):
            same &= digests[name].to_numpy() == stored[name].to_numpy()[at]
    kept = np.zeros(len(stored), dtype=bool)
    kept[at[same]] = True
    return rows[~same], stored.loc[~kept, key].reset_index(drop=True)
