"""The raw-data download: raw Parquet readings -> filters -> (validation) -> one ordered file.

Launched by spark-downloader.sh (spark-submit), or directly with
`python spark-downloader.py --help`. Settings come from the shared options (RAW_DATA_PATH,
BATCH_TIMEZONE, ...) plus the download's own; the filters are flags only, since they
describe one particular download rather than the installation.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.sql import Observation, SparkSession

from batch import cli
from batch.config import (
    COMMON_OPTIONS,
    SUMMARY_JSON_OPTION,
    Option,
    check_file_target,
    parse_bool,
    settings_type,
)
from batch.contract import RAW_COLUMNS, RAW_COLUMNS_BY_NAME
from batch.errors import ConfigurationError, CorruptInputFileError, DownloadError
from batch.download_file import (
    CSV,
    FORMATS,
    PARQUET,
    DownloadFilter,
    NoMatchingReadingsError,
    check_filter_values,
    clean_count_columns,
    columns_to_read,
    filter_readings,
    order_for_download,
    parse_local_instant,
    plan_from_footers,
    plan_parts,
    range_checked_columns,
    sort_into_parts,
    usable_readings,
    value_inventory,
    write_single_file,
)
from batch.readers import read_raw_readings, undecodable_file
from batch.summary import JobSummary
from batch.validation import EXCLUSION_REASONS, REPLAY_REASON, out_of_range_flag, validate_readings

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = "data/raw/indoor_sensor_data.csv"
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SUFFIXES: dict[tuple[str, bool], str] = {(CSV, False): ".csv", (CSV, True): ".csv.gz",
                                          (PARQUET, False): ".parquet"}


def parse_format(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in FORMATS:
        raise ValueError(f"unknown format {text!r}; expected one of {', '.join(FORMATS)}")
    return lowered


def parse_columns(text: str) -> tuple[str, ...]:
    """Comma-separated contract columns, in the order to write them; empty means all of them."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in RAW_COLUMNS_BY_NAME]
    if unknown:
        raise ValueError(f"unknown column(s) {', '.join(unknown)}; the contract's columns are "
                         f"{', '.join(column.name for column in RAW_COLUMNS)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"column(s) {', '.join(repeated)} given more than once")
    return names


DOWNLOADER_OPTIONS: tuple[Option, ...] = COMMON_OPTIONS + (
    Option("DOWNLOAD_OUTPUT", DEFAULT_OUTPUT,
           "file to write, on the driver's disk; the default's suffix follows the format "
           "(.csv, .csv.gz with --gzip, .parquet)", flag_name="--output", path=True),
    Option("DOWNLOAD_FORMAT", CSV, "csv (RFC 4180, UTF-8) or parquet (one file)", parse_format,
           flag_name="--format"),
    Option("DOWNLOAD_GZIP", "false", "gzip the CSV", parse_bool, flag_name="--gzip"),
    Option("DOWNLOAD_CLEAN", "false",
           "validate as the analysis does: drop readings without instant, device or registered "
           "classroom, null physically impossible values; the counts are reported", parse_bool,
           flag_name="--clean"),
    # Not DROP_REPLAYS, the analysis' setting: a download drops replays only when asked to.
    Option("DOWNLOAD_DROP_REPLAYS", "false",
           "with --clean, also drop exact replays (same DevEui and sendtime)", parse_bool,
           flag_name="--drop-replays"),
    Option("DOWNLOAD_COLUMNS", "",
           "comma-separated columns to download, in that order (empty: every contract column)",
           parse_columns, flag_name="--columns"),
    Option("DOWNLOAD_STAGING_DIR", "",
           "folder (URI) Spark writes the parts to before they are joined into the output; "
           "empty: beside the output, which only local Spark can reach - on a cluster give a "
           "folder on the shared file system (hdfs://...)", flag_name="--staging-dir", path=True),
    SUMMARY_JSON_OPTION,
)

_FILTERS: tuple[tuple[str, type, Any], ...] = (
    ("profiles", tuple, ()), ("institutes", tuple, ()), ("classrooms", tuple, ()),
    ("since", str, ""), ("until", str, ""))


class DownloaderSettings(settings_type("DownloaderSettings", DOWNLOADER_OPTIONS, _FILTERS)):  # type: ignore[misc]
    """One field per option of DOWNLOADER_OPTIONS, then the filters (flags only)."""

    @property
    def columns(self) -> tuple[str, ...]:
        return self.download_columns or tuple(column.name for column in RAW_COLUMNS)

    @property
    def output_path(self) -> Path:
        """The file to write; the default name takes the suffix of the format."""
        suffix = _SUFFIXES.get((self.download_format, self.download_gzip), "")
        path = Path(self.download_output)
        if path.as_posix().endswith(DEFAULT_OUTPUT):
            return path.with_name(path.name[: -len(".csv")] + suffix)
        return path

    @property
    def download_filter(self) -> DownloadFilter:
        """The filters, with --since and --until read in BATCH_TIMEZONE (ConfigurationError if malformed)."""
        instants = {}
        for name in ("since", "until"):
            text = getattr(self, name)
            try:
                instants[name] = parse_local_instant(text, self.batch_timezone) if text else None
            except ValueError as error:
                raise ConfigurationError(f"--{name}: {error}") from None
        return DownloadFilter(profiles=self.profiles, institutes=self.institutes,
                            classrooms=self.classrooms, **instants)

    def filter_description(self) -> dict[str, str]:
        """The filters as given, for the summary (instants also shown in UTC)."""
        download_filter = self.download_filter
        described: dict[str, str] = {}
        for flag, values in (("profile", self.profiles), ("institute", self.institutes),
                             ("classroom", self.classrooms)):
            if values:
                described[flag] = ", ".join(values)
        for flag, text, instant in (("since", self.since, download_filter.since),
                                    ("until", self.until, download_filter.until)):
            if instant is not None:
                described[flag] = (f"{text} ({self.batch_timezone}) = "
                                   f"{instant.isoformat().replace('+00:00', 'Z')}")
        return described


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The repeatable filters: flags only, since they describe one download, not the installation."""
    filters = parser.add_argument_group(
        "filters", "All optional; different filters combine with AND, repeated values with OR.")
    filters.add_argument("--profile", dest="profiles", action="append", default=[], metavar="NAME",
                         help="device profile to download, e.g. AM319 (repeatable)")
    filters.add_argument("--institute", dest="institutes", action="append", default=[],
                         metavar="NAME", help="institute to download (repeatable)")
    filters.add_argument("--classroom", dest="classrooms", action="append", default=[],
                         metavar="NAME",
                         help="classroom to download (repeatable); classrooms are named per "
                              "institute, so combine with --institute to pick one room")
    filters.add_argument("--since", default="", metavar="WHEN",
                         help="first instant, inclusive: ISO date or date-time, local to "
                              "BATCH_TIMEZONE unless it has an offset (2024-10-01, "
                              "2024-10-01T08:00, 2024-10-01T08:00+02:00)")
    filters.add_argument("--until", default="", metavar="WHEN",
                         help="end instant, exclusive; same forms as --since")


def check_before_start(settings: DownloaderSettings) -> None:
    """Everything that can be checked before Spark starts, the output's folder included."""
    check_settings(settings)
    check_file_target(settings.output_path, "--output")


DOWNLOADER_JOB = cli.JobDefinition(
    "spark-downloader.py",
    "Download raw indoor-air readings, filtered by device profile, institute, classroom and time "
    "window, as one ordered CSV (or Parquet) file, replaced atomically.",
    DOWNLOADER_OPTIONS, DownloaderSettings, check_before_start, add_filter_arguments)


def load_download_settings(
    argv: Sequence[str], project_root: Path, prog: str = "spark-downloader.py",
    description: str = "", environ: Mapping[str, str] | None = None,
) -> DownloaderSettings:
    """Parse `argv` (exit 2 on unknown options), resolve and check every setting.

    With --check-config, "configuration OK" and the process exits (0 if valid).
    """
    loaded = cli.load(DOWNLOADER_JOB, argv, project_root, environ)
    if loaded.check_config:
        print(f"{prog}: configuration OK")
        sys.exit(0)
    return loaded.settings


def check_settings(settings: DownloaderSettings) -> None:
    """Refuse contradictory settings before any Spark work (ConfigurationError, exit 2)."""
    if settings.download_drop_replays and not settings.download_clean:
        raise ConfigurationError("--drop-replays (DOWNLOAD_DROP_REPLAYS) applies only with --clean "
                                 "(its validation drops the replays): add --clean, or leave out "
                                 "--drop-replays")
    if settings.download_gzip and settings.download_format != CSV:
        raise ConfigurationError("--gzip applies to CSV; a Parquet file is compressed inside")
    settings.download_filter  # noqa: B018 - parsing --since/--until raises on a malformed or empty window
    if _URI_SCHEME.match(settings.download_output):
        raise ConfigurationError(
            f"--output {settings.download_output} is a URI; the download is one file on the "
            "driver's disk: give a local path (copy it to HDFS afterwards if needed)")
    path = settings.output_path
    expected = _SUFFIXES[(settings.download_format, settings.download_gzip)]
    known = sorted(set(_SUFFIXES.values()) | {".gz"}, key=len, reverse=True)
    actual = next((suffix for suffix in known if path.name.endswith(suffix)), None)
    if actual is not None and actual != expected:
        what = "gzipped CSV" if settings.download_gzip else settings.download_format.upper()
        raise ConfigurationError(
            f"--output {path} ends in {actual}, but the download is {what}: name it "
            f"{path.name[: -len(actual)]}{expected} so that readers know what it holds")
    if path.is_dir():
        raise ConfigurationError(f"--output {path} is a directory; give a file name")


@dataclass(kw_only=True)
class DownloadSummary(JobSummary):
    """What a download did; printed at the end and optionally written as JSON.

    rows_excluded and values_nulled are counted with --clean only.
    """

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
    parts: int | None = None
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
    started = time.monotonic()
    try:
        _download(spark, settings, summary)
        summary.status = "succeeded"
    except BaseException as error:
        summary.status = "failed"
        summary.error_message = cli.describe_failure(error)
        if isinstance(error, KeyboardInterrupt) or cli.stop_received() is not None:
            summary.error_message += "; the previous file is kept"
        raise
    finally:
        summary.seconds = round(time.monotonic() - started, 3)
    return summary


def _download(spark: SparkSession, settings: DownloaderSettings, summary: DownloadSummary) -> None:
    check_settings(settings)
    _check_staging(spark, settings)
    unreadable: tuple[str, ...] = ()
    while True:
        try:
            _download_once(spark, settings, summary, unreadable)
            return
        except (DownloadError, Py4JJavaError, CapturedException) as error:
            text = str(error.java_exception.toString()) if isinstance(error, Py4JJavaError) else str(error)
            file = undecodable_file(text)
            if file is None:
                raise
            damaged = CorruptInputFileError(
                f"{file} is not a readable Parquet file: its data cannot be decoded")
            if not settings.skip_corrupt_files or file in unreadable:
                raise damaged from None
            # A footer that reads but data pages that do not: skipped like an unreadable
            # footer, and the download made again without it.
            log.warning("skipping %s", damaged)
            unreadable += (file,)


def _download_once(spark: SparkSession, settings: DownloaderSettings, summary: DownloadSummary,
                   unreadable: tuple[str, ...]) -> None:
    download_filter = settings.download_filter
    columns = settings.columns
    with summary.phase("read"):
        readings_df, input_files = read_raw_readings(
            spark, settings.raw_data_path,
            columns_to_read(columns, download_filter, settings.download_clean),
            settings.skip_corrupt_files, unreadable)
        summary.record_input(input_files)
    # Where to split the sort into parts: from the footers' statistics if they tell, else from
    # one pass over sendtime and the filter columns, which also counts whether each filter
    # value exists (a typo is told apart from an empty selection).
    with summary.phase("plan"):
        parts = _sort_parts(spark)
        plan = (plan_from_footers(spark, [file for group in input_files.groups for file in group],
                                  download_filter, parts)
                or plan_parts(readings_df, download_filter, parts))
        if plan.missing_values:
            # Only on this error path: every value with its rows, for the message.
            inventory = [row.asDict() for row in value_inventory(readings_df).collect()]
            check_filter_values(download_filter, inventory, settings.raw_data_path)
    selected_df = readings_df.transform(filter_readings, download_filter)
    checked = range_checked_columns(columns)
    # The --clean counts are observed while the download is written, after the sort.
    clean_observation = (Observation(f"clean-counts-{uuid.uuid4().hex}")
                         if settings.download_clean else None)
    if clean_observation is None:
        download_df = selected_df.transform(order_for_download, columns, plan.split_points)
    else:
        download_df = (selected_df.transform(validate_readings, checked, settings.download_drop_replays)
                       .transform(sort_into_parts, columns, plan.split_points)
                       .observe(clean_observation, *clean_count_columns(checked))
                       .transform(usable_readings, columns))

    def check_written(rows: int) -> None:
        # Called once Spark has written the parts, before the file is assembled and published.
        _record_counts(summary, settings, checked, clean_observation, rows)
        if rows == 0:
            raise NoMatchingReadingsError(_no_match_message(settings, summary))

    with summary.phase("write"):
        downloaded = write_single_file(
            download_df, settings.output_path, settings.download_format, settings.download_gzip,
            settings.batch_timezone, settings.download_staging_dir, on_written=check_written)
    summary.phase_seconds.update({f"write.{step}": seconds
                                  for step, seconds in downloaded.step_seconds.items()})
    summary.file_bytes = downloaded.size_bytes
    summary.file_size = _human_size(downloaded.size_bytes)
    summary.parts = downloaded.parts
    summary.leftovers_removed = list(downloaded.leftovers_removed)
    log.info("downloaded %s rows to %s (%s)", f"{summary.rows_downloaded:,}", downloaded.path,
             summary.file_size)


def _record_counts(summary: DownloadSummary, settings: DownloaderSettings,
                   checked: Sequence[str], clean_observation: Observation | None,
                   rows: int) -> None:
    summary.rows_downloaded = rows
    if clean_observation is None:
        summary.rows_selected = rows
        return
    counts = clean_observation.get
    if counts["rows_downloaded"] != rows:
        raise DownloadError(f"--clean counted {counts['rows_downloaded']:,} usable readings but "
                          f"{rows:,} were written; {settings.output_path} left as it was")
    summary.rows_selected = counts["rows_selected"]
    reasons = EXCLUSION_REASONS + ((REPLAY_REASON,) if settings.download_drop_replays else ())
    summary.rows_excluded = {reason: counts[reason] for reason in reasons}
    summary.values_nulled = {column: counts[out_of_range_flag(column)] for column in checked}


def _sort_parts(spark: SparkSession) -> int:
    """How many parts the sort is split into: one per shuffle partition (2x the cores by default)."""
    return max(1, int(spark.conf.get("spark.sql.shuffle.partitions")))


def _check_staging(spark: SparkSession, settings: DownloaderSettings) -> None:
    master = spark.sparkContext.master
    if not settings.download_staging_dir and not master.startswith("local"):
        # Executors on other machines would write their parts to their own disks, and the
        # driver would assemble a download with rows missing.
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
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{size} B"
