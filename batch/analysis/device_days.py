"""A run's per-device-day partials and episodes, everything the published tables are rolled up
from: computed from every reading (a full run), or from the readings of the device-days the
input's changes touch, merged into the state the previous run stored (an incremental run;
which readings and why: batch/analysis/incremental.py).

Both come to the driver as Arrow tables (one row per device-day, see batch/analysis/rollup.py
for the bound); the state is kept as the same tables (batch/analysis/state.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession

from batch.analysis import incremental
from batch.analysis.health_partials import HEALTH_COLUMNS, health_partial_aggregates
from batch.analysis.iaq_partials import (CO2_N, IAQ_PARTS, IAQ_VALIDATED_METRICS, device_day_episodes_table,
                                         iaq_partial_aggregates, with_occupied_range)
from batch.analysis.iaq_rollup import IAQ_GROUP_KEYS
from batch.analysis.iaq_settings import IaqRules
from batch.analysis.incremental import FULL, SOURCE_FILE, FileFacts, Touched
from batch.analysis.partials import partial_statistics, with_group_keys
from batch.analysis.rollup import data_through
from batch.analysis.publish import published_row_counts
from batch.analysis.state import (EPISODES, PARTIALS, STATE_FORMAT_VERSION, IndexedFile, StateUpdate,
                                  digest_row_counts, month_keys, nullable, read_device_days, read_files, read_meta,
                                  read_row_digests, split_by_month)
from batch.analysis.statistics import GROUPINGS, READING_DATE, group_keys, partial_parts
from batch.core.config import public_view
from batch.core.contract import ANALYSIS_COLUMNS, DEVICE, INSTITUTE, METRICS, PROFILE, Metric
from batch.core.input_index import InputListing, compare_input, list_input
from batch.core.postgres import PostgresTarget
from batch.core.readers import InputFiles, read_raw_readings, same_file, without_damaged_files
from batch.core.session import arrow_to_pandas, collect_to_arrow
from batch.core.validation import EXCLUSION_REASON, validate_readings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceDays:
    """The whole input's device-days after this run, and the state update that stores them."""

    partials: pa.Table
    episodes: pa.Table
    update: StateUpdate
    # The previous run's digests of the published rows (batch/analysis/delta.py), for the tables
    # whose rows are still those it published.
    stored_row_digests: dict[str, pd.DataFrame] = field(default_factory=dict)
    # What an incremental run changed in the state; None on a full run (everything).
    changed: incremental.Changed | None = None


def compute_device_days(spark: SparkSession, settings: Any, summary: Any, metrics: tuple[Metric, ...],
                        iaq_rules: IaqRules, conn: Any, target: PostgresTarget,
                        published: Sequence[str]) -> DeviceDays:
    """`settings`: the run's AnalysisSettings; `summary`: its RunSummary, whose mode, input,
    input changes, readings read and device-days recomputed this fills; `published`: the
    published tables' names."""
    current = incremental.fingerprint(public_view(settings), metrics, partial_columns(metrics))
    with conn.cursor() as cursor:
        meta = read_meta(cursor, target.schema)
        described = digest_row_counts(cursor, target.schema) if meta is not None else {}
    conn.commit()
    # A published table whose row count is not the one its digests describe was edited outside
    # the job: (rows held, rows the previous run published); its digests are not trusted.
    held = published_row_counts(conn, target, [table for table in published if table in described])
    edited = {table: (count, described[table]) for table, count in held.items() if count != described[table]}
    # A full run too swaps only the rows that changed, against the digests of a state of this
    # format (digests of another may be computed otherwise).
    digests: dict[str, pd.DataFrame] = {}
    if meta is not None and meta.format_version == STATE_FORMAT_VERSION:
        with conn.cursor() as cursor:
            digests = {table: rows for table, rows in read_row_digests(cursor, target.schema).items()
                       if table not in edited}
        conn.commit()
    summary.mode, summary.mode_reason = incremental.choose_mode(meta, current, settings.full_rebuild, edited)
    log.info("%s run: %s", summary.mode, summary.mode_reason)
    with summary.phase("read"):
        # An incremental run lists a sink's log from the batch after the state's last one.
        after = meta if summary.mode != FULL and meta is not None else None
        listing = list_input(spark, settings.raw_data_path,
                             after.last_sink_batch_id if after else None,
                             after.last_sink_batch_marker if after else None)
    if summary.mode == FULL:
        return _full(spark, settings, summary, metrics, iaq_rules, listing, current, digests)
    return _incremental(spark, settings, summary, metrics, iaq_rules, listing, current, conn, target, digests)


def _full(spark: SparkSession, settings: Any, summary: Any, metrics: tuple[Metric, ...],
          iaq_rules: IaqRules, listing: InputListing, current: dict[str, Any],
          stored_row_digests: dict[str, pd.DataFrame]) -> DeviceDays:
    def attempt(unreadable: tuple[str, ...]) -> tuple[pa.Table, pa.Table, dict[str, FileFacts], InputFiles]:
        with summary.phase("read"):
            readings_df, input_files = read_raw_readings(
                spark, settings.raw_data_path, _columns_read(metrics), settings.skip_corrupt_files, unreadable)
            summary.record_input(input_files)
        with summary.phase("aggregate"):
            readings_df = readings_df.transform(incremental.with_source_file)
            facts = incremental.file_facts(readings_df)
            return (*_aggregate(readings_df, settings, metrics, iaq_rules), facts, input_files)

    partials, episodes, facts, input_files = without_damaged_files(attempt, settings.skip_corrupt_files)
    # A file skipped as damaged is indexed with no reading: read again once it changes, or by --full.
    files = incremental.indexed(listing.entries, facts)
    _record_work(summary, len(files), 0, 0, sum(file.readings for file in files), _device_days(partials))
    return DeviceDays(
        partials, episodes,
        StateUpdate(full=True, months={PARTIALS: split_by_month(partials), EPISODES: split_by_month(episodes)},
                    files=tuple(files), fingerprint=current, last_sink_batch_id=listing.latest_batch_id,
                    last_sink_batch_marker=listing.latest_batch_marker),
        stored_row_digests=stored_row_digests)


def _incremental(spark: SparkSession, settings: Any, summary: Any, metrics: tuple[Metric, ...],
                 iaq_rules: IaqRules, listing: InputListing, current: dict[str, Any], conn: Any,
                 target: PostgresTarget, stored_row_digests: dict[str, pd.DataFrame]) -> DeviceDays:
    timezone = settings.batch_timezone
    with conn.cursor() as cursor:
        stored_files = read_files(cursor, target.schema)
    conn.commit()
    changes = compare_input([file.entry for file in stored_files], listing)
    arriving = changes.new + changes.changed
    gone = {same_file(entry.path) for entry in changes.removed + changes.changed}
    kept = [file for file in stored_files if same_file(file.entry.path) not in gone]
    gone_dates: set = set()
    for file in stored_files:
        if same_file(file.entry.path) in gone and file.min_sendtime is not None:
            gone_dates |= incremental.local_dates_spanned(file.min_sendtime, file.max_sendtime, timezone)
    log.info("input changes: %d new, %d changed, %d removed files", len(changes.new),
             len(changes.changed), len(changes.removed))

    def attempt(unreadable: tuple[str, ...]) -> tuple[pa.Table | None, pa.Table | None, dict[str, FileFacts],
                                                      list[IndexedFile], Touched]:
        facts: dict[str, FileFacts] = {}
        pairs = pa.table({DEVICE: pa.array([], pa.string()), READING_DATE: pa.array([], pa.date32())})
        skipped: tuple[str, ...] = ()
        if arriving:
            with summary.phase("read"):
                new_df, new_files = read_raw_readings(
                    spark, settings.raw_data_path, _columns_read(metrics), settings.skip_corrupt_files,
                    unreadable, files=tuple(entry.path for entry in arriving))
                skipped = new_files.skipped
            if new_df is not None:  # None: every new file skipped as damaged
                with summary.phase("aggregate"):
                    new_df = new_df.transform(incremental.with_source_file)
                    facts, pairs = incremental.new_files_facts(new_df, timezone)
        touched = Touched(pairs, frozenset(gone_dates), frozenset(gone | set(facts)))
        older = incremental.overlapping(kept, set(pairs[READING_DATE].to_pylist()) | gone_dates, timezone)
        skipped_keys = {same_file(file) for file in skipped}
        to_read = [entry.path for entry in arriving if same_file(entry.path) not in skipped_keys]
        to_read += [file.entry.path for file in older]
        if not to_read:
            _record_input(summary, InputFiles(root=settings.raw_data_path, groups=()))
            return None, None, facts, older, touched
        with summary.phase("read"):
            readings_df, input_files = read_raw_readings(
                spark, settings.raw_data_path, _columns_read(metrics), settings.skip_corrupt_files,
                unreadable, files=tuple(to_read))
            _record_input(summary, input_files)
        if readings_df is None:  # every file to read again skipped as damaged
            return None, None, facts, older, touched
        with summary.phase("aggregate"):
            recompute_df = incremental.readings_to_recompute(
                readings_df.transform(incremental.with_source_file), touched,
                [fact.spark_name for fact in facts.values()], timezone, spark)
            return (*_aggregate(recompute_df, settings, metrics, iaq_rules), facts, older, touched)

    new_partials, new_episodes, facts, older, touched = without_damaged_files(
        attempt, settings.skip_corrupt_files)
    with summary.phase("aggregate"), conn.cursor() as cursor:
        stored_partials = read_device_days(cursor, target.schema, PARTIALS)
        partials, partial_months, partial_dates, recomputed = _merge(stored_partials, new_partials, touched)
        episodes, episode_months, episode_dates, _ = _merge(
            read_device_days(cursor, target.schema, EPISODES), new_episodes, touched)
        changed = incremental.Changed(partial_dates | episode_dates, _data_through(stored_partials),
                                      _data_through(partials))
    conn.commit()
    files = kept + incremental.indexed(arriving, facts)
    _record_work(summary, len(changes.new), len(changes.changed), len(changes.removed),
                 sum(fact.readings for fact in facts.values()) + sum(file.readings for file in older),
                 recomputed)
    return DeviceDays(
        partials, episodes,
        StateUpdate(full=False, months={PARTIALS: split_by_month(partials, partial_months),
                                        EPISODES: split_by_month(episodes, episode_months)},
                    files=tuple(files), fingerprint=current,
                    last_sink_batch_id=listing.latest_batch_id,
                    last_sink_batch_marker=listing.latest_batch_marker),
        stored_row_digests=stored_row_digests, changed=changed)


def _data_through(partials: pa.Table) -> dict:
    return data_through(arrow_to_pandas(partials.select([EXCLUSION_REASON, INSTITUTE, READING_DATE])))


def _record_work(summary: Any, new: int, changed: int, removed: int, readings_read: int,
                 device_days_recomputed: int) -> None:
    """What the run did, in the summary (a full run counts every file it read as new)."""
    summary.input_files_new, summary.input_files_changed, summary.input_files_removed = new, changed, removed
    summary.readings_read_this_run = readings_read
    summary.device_days_recomputed = device_days_recomputed


def _record_input(summary: Any, input_files: InputFiles) -> None:
    """What an incremental run read; it did not look for a sink's uncommitted files (the log
    after its last batch names the new files without listing the folder): not checked."""
    summary.record_input(input_files)
    summary.uncommitted_files = None


def _merge(stored: pa.Table, recomputed: pa.Table | None,
           touched: Touched) -> tuple[pa.Table, set[int], frozenset, int]:
    """The stored rows the recomputation does not replace, then the recomputed ones; the months
    and the local dates that changed, and how many device-days were recomputed (replaced or new)."""
    if recomputed is None and not touched.changes_anything:
        return stored, set(), frozenset(), 0
    schema = nullable((recomputed if recomputed is not None else stored).schema)
    stored = stored.cast(schema)
    recomputed = schema.empty_table() if recomputed is None else recomputed.cast(schema)
    replaced = incremental.replaced_mask(stored, touched)
    removed = stored.filter(replaced)
    merged = pa.concat_tables([stored.filter(pc.invert(replaced)), recomputed])
    changed = pa.concat_tables([removed, recomputed])
    dates = frozenset(pc.unique(changed[READING_DATE].drop_null()).to_pylist())
    return merged, set(pc.unique(month_keys(changed)).to_pylist()), dates, _device_days(changed)


def _device_days(table: pa.Table) -> int:
    return incremental.keyed_device_days(table).num_rows


def _columns_read(metrics: tuple[Metric, ...]) -> tuple[str, ...]:
    names = tuple(metric.name for metric in _partial_metrics(metrics))
    return ANALYSIS_COLUMNS + (PROFILE,) + tuple(name for name in names if name not in ANALYSIS_COLUMNS)


def partial_columns(metrics: tuple[Metric, ...]) -> list[str]:
    """The aggregated columns of `_aggregate`'s partials, from their specs, in order."""
    return ([part.name for part in partial_parts(_partial_metrics(metrics))] + [part.name for part in IAQ_PARTS]
            + list(HEALTH_COLUMNS))


def _partial_metrics(metrics: tuple[Metric, ...]) -> tuple[Metric, ...]:
    # Partials of the summarised metrics and of every metric of the contract, whose counts,
    # extremes and values out of range the sensor health reads.
    return metrics + tuple(metric for metric in METRICS if metric not in metrics)


def _aggregate(readings_df: DataFrame, settings: Any, metrics: tuple[Metric, ...],
               iaq_rules: IaqRules) -> tuple[pa.Table, pa.Table]:
    """The partial statistics, one row per device and day, with the indoor-air compliance and
    health sums from the same scan, and the device-days' CO2 episodes and covered time (a
    narrow aggregation of their own: batch/analysis/iaq_partials.py says why), both in the
    driver: each is one Spark job, nothing is kept in the executors."""
    partial_metrics = _partial_metrics(metrics)
    names = tuple(metric.name for metric in partial_metrics)
    # The metrics whose impossible values are nulled: those with partials and the IAQ tables'.
    validated = names + tuple(name for name in IAQ_VALIDATED_METRICS if name not in names)
    validated_df = readings_df.transform(validate_readings, validated, settings.drop_replays)
    partials = collect_to_arrow(with_group_keys(
        validated_df.transform(with_occupied_range, settings.batch_timezone, iaq_rules.occupancy)
        .transform(partial_statistics, settings.batch_timezone, settings.thresholds, partial_metrics,
                   extra_aggregates=iaq_partial_aggregates(iaq_rules)
                   + health_partial_aggregates(settings.health_night_end_hour),
                   # The device profile, constant per device, for the health tables; the file
                   # of a reading without a device-day, for an incremental run.
                   extra_keys=(PROFILE, SOURCE_FILE)),
        group_keys(GROUPINGS) + IAQ_GROUP_KEYS))
    included = partials.filter(pc.is_null(partials[EXCLUSION_REASON]))
    any_co2 = bool(pc.any(pc.greater(pc.fill_null(included[CO2_N], 0), 0)).as_py()) if included.num_rows else False
    episodes = device_day_episodes_table(validated_df, settings.batch_timezone, iaq_rules, any_co2)
    return partials, episodes
