"""The download's settings: the shared options, its own, the filters (flags only: they describe
one download, not the installation) and their checks before Spark starts."""
from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from batch.core import cli
from batch.core.config import COMMON_OPTIONS, SUMMARY_JSON_OPTION, Option, check_file_target, parse_bool, settings_type
from batch.core.contract import RAW_COLUMNS, RAW_COLUMNS_BY_NAME
from batch.core.errors import ConfigurationError
from batch.download.files import CSV, FORMATS, PARQUET
from batch.download.rows import DownloadFilter

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


def parse_local_instant(text: str, timezone_name: str) -> datetime:
    """The UTC instant of an ISO date (its local midnight) or date-time, local to `timezone_name`
    unless it has an offset; a local time skipped or repeated by a clock change is refused."""
    cleaned = text.strip()
    try:
        parsed = datetime.fromisoformat(cleaned[:-1] + "+00:00" if cleaned[-1:] in "Zz" else cleaned)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO date or date-time (e.g. 2024-10-01, 2024-10-01T08:30, "
            "2024-10-01T08:30:00+02:00)") from None
    if parsed.tzinfo is not None:
        return parsed.astimezone(timezone.utc)
    zone = ZoneInfo(timezone_name)
    earlier, later = parsed.replace(tzinfo=zone, fold=0), parsed.replace(tzinfo=zone, fold=1)
    if earlier.utcoffset() != later.utcoffset():
        offsets = sorted({earlier.isoformat()[-6:], later.isoformat()[-6:]})  # "+02:00"
        round_trip = earlier.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None)
        why = "does not exist in" if round_trip != parsed else "happens twice in"
        raise ValueError(
            f"{text!r} {why} {timezone_name} (a daylight-saving change): add the offset "
            f"meant, e.g. {parsed.isoformat()}{offsets[0]} or {parsed.isoformat()}{offsets[-1]}")
    return earlier.astimezone(timezone.utc)


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
           "folder (URI) Spark writes the file to before it is copied to the output; empty: "
           "beside the output, which only local Spark can reach - on a cluster give a folder "
           "on the shared file system (hdfs://...)", flag_name="--staging-dir", path=True),
    SUMMARY_JSON_OPTION,
)

_FILTERS = (("profiles", tuple, ()), ("institutes", tuple, ()), ("classrooms", tuple, ()),
            ("since", str, ""), ("until", str, ""))


class DownloaderSettings(settings_type("DownloaderSettings", DOWNLOADER_OPTIONS, _FILTERS)):  # type: ignore[misc]
    """One field per option of DOWNLOADER_OPTIONS, then the filters (flags only)."""

    @property
    def columns(self) -> tuple[str, ...]:
        return self.download_columns or tuple(column.name for column in RAW_COLUMNS)

    @property
    def output_path(self) -> Path:
        """The file to write; the default name takes the suffix of the format."""
        path = Path(self.download_output)
        if path.as_posix().endswith(DEFAULT_OUTPUT):
            suffix = _SUFFIXES.get((self.download_format, self.download_gzip), "")
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
        # The value filters' flags are their columns' names.
        described = {flag: ", ".join(values) for flag, values in download_filter.values_by_column.items()
                     if values}
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
    for flag, what in (("profile", "device profile to download, e.g. AM319 (repeatable)"),
                       ("institute", "institute to download (repeatable)"),
                       ("classroom", "classroom to download (repeatable); classrooms are named per "
                                     "institute, so combine with --institute to pick one room")):
        filters.add_argument(f"--{flag}", dest=f"{flag}s", action="append", default=[],
                             metavar="NAME", help=what)
    filters.add_argument("--since", default="", metavar="WHEN",
                         help="first instant, inclusive: ISO date or date-time, local to "
                              "BATCH_TIMEZONE unless it has an offset (2024-10-01, "
                              "2024-10-01T08:00, 2024-10-01T08:00+02:00)")
    filters.add_argument("--until", default="", metavar="WHEN",
                         help="end instant, exclusive; same forms as --since")


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


def check_before_start(settings: DownloaderSettings) -> None:
    """Everything that can be checked before Spark starts, the output's folder included."""
    check_settings(settings)
    check_file_target(settings.output_path, "--output")


DOWNLOADER_JOB = cli.JobDefinition(
    "spark-downloader.py",
    "Download raw indoor-air readings, filtered by device profile, institute, classroom and time "
    "window, as one ordered CSV (or Parquet) file, replaced atomically.",
    DOWNLOADER_OPTIONS, DownloaderSettings, check_before_start, add_filter_arguments)


def load_download_settings(argv: Sequence[str], project_root: Path,
                           environ: Mapping[str, str] | None = None) -> DownloaderSettings:
    """The checked settings of `argv` and `environ` (default: the process's), as the job loads them."""
    return cli.load(DOWNLOADER_JOB, argv, project_root, environ).settings
