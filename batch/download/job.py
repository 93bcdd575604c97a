"""The download job: raw Parquet readings -> filters -> (validation) -> one ordered file."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from pyspark.sql import Observation, SparkSession

from batch.core import cli
from batch.download import rows
from batch.download.files import write_single_file
from batch.download.settings import DownloaderSettings, check_settings
from batch.core.errors import ConfigurationError, EmptyInputError
from batch.core.readers import read_raw_readings, without_damaged_files
from batch.core.summary import JobSummary
from batch.core.timing import timed_phase
from batch.core.validation import EXCLUSION_REASONS, REPLAY_REASON, out_of_range_flag, validate_readings

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class DownloadSummary(JobSummary):
    """What a download did; printed at the end and optionally written as JSON (the counts of
    excluded readings and nulled values with --clean only)."""

    output: str
    file_format: str
    timezone: str
    clean: bool
    filters: dict[str, str] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    rows_selected: int | None = None
    rows_downloaded: int | None = None
    file_bytes: int | None = None
    file_size: str | None = None
    leftovers_removed: list[str] = field(default_factory=list)  # of killed earlier downloads
    seconds: float | None = None

    @classmethod
    def for_settings(cls, settings: DownloaderSettings) -> DownloadSummary:
        file_format = settings.download_format + ("+gzip" if settings.download_gzip else "")
        return cls(job="download", input_path=settings.raw_data_path,
                   output=str(settings.output_path), file_format=file_format,
                   timezone=settings.batch_timezone, clean=settings.download_clean,
                   filters=settings.filter_description() or {"(none)": "every reading"},
                   columns=list(settings.columns))


def run_download(spark: SparkSession, settings: DownloaderSettings,
                 summary: DownloadSummary) -> DownloadSummary:
    """Run the whole download, filling `summary`; raises BatchError with the summary marked failed."""
    whole: dict[str, float] = {}
    try:
        with timed_phase(whole, "download"):
            check_settings(settings)
            _check_staging(spark, settings)
            # A footer that reads but data pages that do not: skipped like an unreadable footer,
            # and the download made again without it.
            without_damaged_files(lambda unreadable: _download_once(spark, settings, summary, unreadable),
                                  settings.skip_corrupt_files)
        summary.status = "succeeded"
    except BaseException as error:
        summary.status = "failed"
        summary.error_message = cli.describe_failure(error)
        if isinstance(error, KeyboardInterrupt) or cli.stop_received() is not None:
            summary.error_message += "; the previous file is kept"
        raise
    finally:
        summary.seconds = whole.get("download")
    return summary


class NoMatchingReadingsError(EmptyInputError):
    """The filters select no reading: nothing is written and the previous file is kept."""


def _download_once(spark: SparkSession, settings: DownloaderSettings, summary: DownloadSummary,
                   unreadable: tuple[str, ...]) -> None:
    download_filter = settings.download_filter
    columns = settings.columns
    with summary.phase("read"):
        readings_df, input_files = read_raw_readings(
            spark, settings.raw_data_path,
            rows.columns_to_read(columns, download_filter, settings.download_clean),
            settings.skip_corrupt_files, unreadable)
        summary.record_input(input_files)
    if download_filter.has_value_filters:
        # One aggregation over the three value columns, before anything is written: a
        # misspelt profile is told apart from an empty selection, with the values that exist.
        with summary.phase("check"):
            inventory = [row.asDict() for row in rows.value_inventory(readings_df).collect()]
            rows.check_filter_values(download_filter, inventory, settings.raw_data_path)
    selected_df = readings_df.transform(rows.filter_readings, download_filter)
    checked = rows.range_checked_columns(columns)
    # The --clean counts are observed in the task that writes the file, as its row count is.
    clean = Observation(f"clean-counts-{uuid.uuid4().hex}")
    download_df = (selected_df.transform(rows.order_for_download, columns)
                   if not settings.download_clean else
                   selected_df.transform(validate_readings, checked, settings.download_drop_replays)
                   .transform(rows.sort_for_download, columns)
                   .observe(clean, *rows.clean_count_columns(checked))
                   .transform(rows.usable_readings, columns))

    def check_written(written: int) -> None:  # before the file replaces the previous one
        summary.rows_downloaded = summary.rows_selected = written
        if settings.download_clean:
            counts = clean.get
            summary.rows_selected = counts["rows_selected"]
            reasons = EXCLUSION_REASONS + ((REPLAY_REASON,) if settings.download_drop_replays else ())
            summary.rows_excluded = {reason: counts[reason] for reason in reasons}
            summary.values_nulled = {column: counts[out_of_range_flag(column)] for column in checked}
        if written == 0:
            raise NoMatchingReadingsError(_no_match_message(settings, summary))

    with summary.phase("write"):
        downloaded = write_single_file(
            download_df, settings.output_path, settings.download_format, settings.download_gzip,
            settings.batch_timezone, settings.download_staging_dir, on_written=check_written)
    summary.file_bytes = downloaded.size_bytes
    summary.file_size = _human_size(downloaded.size_bytes)
    summary.leftovers_removed = list(downloaded.leftovers_removed)
    log.info("downloaded %s rows to %s (%s)", f"{summary.rows_downloaded:,}", downloaded.path,
             summary.file_size)


def _check_staging(spark: SparkSession, settings: DownloaderSettings) -> None:
    master = spark.sparkContext.master
    if not settings.download_staging_dir and not master.startswith("local"):
        # An executor on another machine would write the file to its own disk.
        raise ConfigurationError(
            f"Spark runs on {master}, whose executors cannot write to this machine's disk: set "
            "DOWNLOAD_STAGING_DIR (--staging-dir) to a folder on the cluster's file system, "
            "e.g. hdfs://hadoop-namenode:8020/tmp/indoor-air-download, or file:///... if every "
            "executor shares this machine's disk")


def _no_match_message(settings: DownloaderSettings, summary: DownloadSummary) -> str:
    filters = "; ".join(f"{name} {value}" for name, value in settings.filter_description().items())
    selection = f"matches {filters}" if filters else "is in the input"
    message = f"no reading under {settings.raw_data_path} {selection}"
    if settings.download_clean and summary.rows_selected:
        excluded = ", ".join(f"{reason} {count:,}"
                             for reason, count in (summary.rows_excluded or {}).items() if count)
        message = (f"the {summary.rows_selected:,} readings selected under {settings.raw_data_path} "
                   f"are all excluded by --clean ({excluded})")
    return f"{message}; nothing written, {settings.output_path} left as it was"


def _human_size(size: int) -> str:
    if size < 1024:
        return f"{size:,} B"
    exponent = min(3, (size.bit_length() - 1) // 10)
    return f"{size / 1024 ** exponent:,.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"
