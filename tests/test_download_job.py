"""The downloader end to end: spark-downloader.py and spark-downloader.sh run as a user runs them.

Every download is read back with Python's csv module, gzip or pyarrow and compared with the
rows computed in plain Python from the files written by pyarrow (tests/test_download_files.py).
The jobs run with TZ=America/New_York and BATCH_TIMEZONE=Europe/Rome, so that neither the
process's local time nor UTC can pass for the batch time zone.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest

from batch.download.job import DownloadSummary, _check_staging, run_download
from batch.download.settings import (
    DOWNLOADER_OPTIONS,
    DownloaderSettings,
    check_settings,
    load_download_settings,
    parse_local_instant,
)
from batch.core.errors import ConfigurationError
from tests.test_download_files import (
    COLUMNS,
    RANGES,
    ROME,
    DownloadDataset,
    assert_rows_equal,
    exact_text,
    expected_rows,
    read_csv_rows,
    write_download_dataset,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
JOB_TIMEOUT_S = 600
SANT_ANNA = "Istituto \"Sant'Anna\", sede 2"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DownloadDataset:
    return write_download_dataset(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("env") / "empty.env"  # the tests do not read env/spark.env
    path.write_text("")
    return path


def job_environment(dataset: DownloadDataset, env_file: Path, **variables: str) -> dict[str, str]:
    ours = {option.env for option in DOWNLOADER_OPTIONS} | {"BATCH_ENV_FILE", "LOG_DIR", "RUN_DIR"}
    environment = {key: value for key, value in os.environ.items() if key not in ours}
    environment.update(BATCH_ENV_FILE=str(env_file), RAW_DATA_PATH=str(dataset.folder),
                       BATCH_TIMEZONE=ROME, SPARK_MASTER="local[2]", SPARK_LOCAL_IP="127.0.0.1",
                       TZ="America/New_York", **variables)
    return environment


def run_job(dataset: DownloadDataset, env_file: Path, *args: str,
            **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "spark-downloader.py"), *args],
        env=job_environment(dataset, env_file, **variables), capture_output=True, text=True,
        timeout=JOB_TIMEOUT_S, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)


def run_launcher(dataset: DownloadDataset, env_file: Path, *args: str,
                 **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROJECT_ROOT / "spark-downloader.sh"), *args],
        env=job_environment(dataset, env_file, **variables), capture_output=True, text=True,
        timeout=JOB_TIMEOUT_S, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)


def leftovers(folder: Path, *expected: str) -> list[str]:
    """Files in `folder` other than `expected`: temporary files or parts left behind."""
    return sorted(set(os.listdir(folder)) - set(expected))


def expected_clean(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
                   ) -> tuple[list[tuple[Any, ...]], dict[str, int], dict[str, int]]:
    """--clean computed in plain Python: rows kept, excluded per reason, values nulled per column."""
    kept, excluded, nulled = [], Counter(), Counter()
    for row in rows:
        reason = ("missing_sendtime" if row["sendtime"] is None else
                  "missing_device" if row["DevEui"] is None else
                  "unregistered_device" if row["institute"] is None or row["classroom"] is None
                  else None)
        if reason:
            excluded[reason] += 1
            continue
        cleaned = dict(row)
        for name in columns:
            if name not in RANGES or cleaned[name] is None:
                continue
            lower, upper = RANGES[name]
            value = cleaned[name]
            if (isinstance(value, float) and math.isnan(value)) or (
                    lower is not None and value < lower) or (upper is not None and value > upper):
                cleaned[name] = None
                nulled[name] += 1
        kept.append(cleaned)
    return expected_rows(kept, columns), dict(excluded), dict(nulled)


# --- spark-downloader.py ----------------------------------------------------------------------

def test_filtered_csv_equals_an_independent_filtering_of_the_raw_data(
        dataset: DownloadDataset, env_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "download" / "AM319.csv"
    summary_path = tmp_path / "summary.json"
    result = run_job(dataset, env_file, "--output", str(target), "--profile", "AM319",
                     "--profile", "WS301", "--institute", SANT_ANNA, "--institute", "École ñ 日本",
                     "--since", "2024-10-01", "--until", "2024-11-01",
                     "--summary-json", str(summary_path))
    assert result.returncode == 0, result.stderr
    expected = expected_rows(dataset.rows, profiles=("AM319", "WS301"),
                             institutes=(SANT_ANNA, "École ñ 日本"),
                             since=parse_local_instant("2024-10-01", ROME),
                             until=parse_local_instant("2024-11-01", ROME))
    assert expected
    assert_rows_equal(read_csv_rows(exact_text(target), COLUMNS), expected, COLUMNS)
    assert leftovers(target.parent, target.name) == []
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "succeeded"
    assert summary["rows_downloaded"] == len(expected)
    assert summary["file_bytes"] == target.stat().st_size
    assert summary["filters"]["since"] == "2024-10-01 (Europe/Rome) = 2024-09-30T22:00:00Z"
    assert summary["filters"]["profile"] == "AM319, WS301"
    assert "==== indoor-air download ====" in result.stdout
    assert f"rows_downloaded: {len(expected)}" in result.stdout


def test_clean_parquet_equals_an_independent_validation(
        dataset: DownloadDataset, env_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "clean.parquet"
    columns = ("sendtime", "DevEui", "institute", "classroom", "temperature", "humidity", "co2",
               "pir", "door_status")
    summary_path = tmp_path / "summary.json"
    result = run_job(dataset, env_file, "--output", str(target), "--format", "parquet", "--clean",
                     "--columns", ",".join(columns), "--summary-json", str(summary_path))
    assert result.returncode == 0, result.stderr
    expected, excluded, nulled = expected_clean(dataset.rows, columns)
    table = pq.read_table(target)
    assert table.column_names == list(columns)
    assert_rows_equal([tuple(row[name] for name in columns) for row in table.to_pylist()],
                      expected, columns)
    summary = json.loads(summary_path.read_text())
    assert summary["rows_selected"] == len(dataset.rows)
    assert summary["rows_downloaded"] == len(expected)
    assert {reason: count for reason, count in summary["rows_excluded"].items() if count} == excluded
    assert {name: count for name, count in summary["values_nulled"].items() if count} == nulled
    assert leftovers(tmp_path, "clean.parquet", "summary.json") == []


def test_an_unknown_profile_lists_the_profiles_and_keeps_the_previous_file(
        dataset: DownloadDataset, env_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "download.csv"
    target.write_text("previous download\n")
    result = run_job(dataset, env_file, "--output", str(target), "--profile", "AM999")
    assert result.returncode == 2
    counts = Counter(row["profile"] for row in dataset.rows if row["profile"] is not None)
    listing = ", ".join(f"{profile} ({counts[profile]:,} rows)" for profile in sorted(counts))
    assert f"unknown profile `AM999`; profiles in {dataset.folder}: {listing}" in result.stderr
    assert target.read_text() == "previous download\n"
    assert leftovers(tmp_path, "download.csv") == []


def test_no_matching_reading_is_an_error_and_keeps_the_previous_file(
        dataset: DownloadDataset, env_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "download.csv"
    target.write_text("previous download\n")
    result = run_job(dataset, env_file, "--output", str(target), "--profile", "AM103",
                     "--since", "2030-01-01")
    assert result.returncode == 3
    assert "no reading under" in result.stderr and "matches profile AM103; since 2030-01-01" in result.stderr
    assert f"{target} left as it was" in result.stderr
    assert target.read_text() == "previous download\n"
    assert leftovers(tmp_path, "download.csv") == []


def test_sigterm_during_the_download_leaves_the_previous_file(
        dataset: DownloadDataset, env_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "download.csv"
    target.write_text("previous download\n")
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "spark-downloader.py"), "--output", str(target)],
        env=job_environment(dataset, env_file), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    # The parts folder appears when Spark starts writing: stop the job there.
    while not any(name.startswith(".download.csv.parts-") for name in os.listdir(tmp_path)):
        if process.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=JOB_TIMEOUT_S)
    if process.returncode == 0:
        pytest.skip("the download finished before it could be interrupted")
    assert process.returncode == 143, stderr  # 128 + SIGTERM
    assert "ERROR batch: stopped by SIGTERM" in stderr and "Traceback" not in stderr, stderr
    assert target.read_text() == "previous download\n"
    assert leftovers(tmp_path, "download.csv") == []


def _descendants(pid: int) -> list[int]:
    """The processes below `pid` (the JVM a Python driver started), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def test_the_leftovers_of_a_killed_download_are_swept_by_the_next_one_and_nothing_else(
        dataset: DownloadDataset, env_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "download.csv"
    target.write_text("previous download\n")
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "spark-downloader.py"), "--output", str(target)],
        env=job_environment(dataset, env_file), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not any(name.startswith(".download.csv.parts-") for name in os.listdir(tmp_path)):
        assert process.poll() is None and time.monotonic() < deadline, "the download never started writing"
        time.sleep(0.02)
    jvm = _descendants(process.pid)
    process.kill()  # SIGKILL: no finally, no clean-up
    if process.wait() == 0:
        pytest.skip("the download finished before it could be killed")
    for pid in jvm:  # the JVM stops once its driver is gone; wait, so that nothing writes on
        while os.path.exists(f"/proc/{pid}"):
            time.sleep(0.05)
    left = leftovers(tmp_path, "download.csv")
    assert left and all(name.startswith(f".download.csv.parts-{process.pid}-") or
                        name.startswith(f".download.csv.{process.pid}-") for name in left), left
    token = "0123456789ab"
    foreign = [f".download.csv.parts-{process.pid}-{token}.old", f".other.csv.parts-{process.pid}-{token}",
               f"download.csv.{process.pid}-{token}.tmp", f".download.csv.{os.getpid()}-{token}.tmp"]
    for name in foreign:
        (tmp_path / name).write_text("not the downloader's\n")
    summary_path = tmp_path / "summary" / "summary.json"
    result = run_job(dataset, env_file, "--output", str(target), "--summary-json", str(summary_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(summary_path.read_text())["leftovers_removed"] == sorted(left)
    assert leftovers(tmp_path, "download.csv", "summary") == sorted(foreign)
    assert all((tmp_path / name).read_text() == "not the downloader's\n" for name in foreign)
    assert_rows_equal(read_csv_rows(exact_text(target), COLUMNS), expected_rows(dataset.rows), COLUMNS)


def test_drop_replays_without_clean_is_refused(
        dataset: DownloadDataset, env_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "download.csv"
    target.write_text("previous download\n")
    result = run_job(dataset, env_file, "--output", str(target), "--drop-replays")
    assert result.returncode == 2
    assert "--drop-replays (DOWNLOAD_DROP_REPLAYS) applies only with --clean" in result.stderr
    assert "Traceback" not in result.stderr
    assert target.read_text() == "previous download\n"


def test_a_write_failure_is_one_line_without_java_in_the_log(
        dataset: DownloadDataset, env_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "download.csv"
    target.write_text("previous download\n")
    # Spark starts, scans, and cannot write its parts: /proc takes no folder, not even root's.
    result = run_launcher(dataset, env_file, "--foreground", "--output", str(target),
                          "--staging-dir", "file:///proc/no-such-folder")
    assert result.returncode == 5, result.stderr[-3000:]
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if "cannot write the download parts" in line]
    assert errors and all("/proc/no-such-folder: No such file or directory" in line for line in errors)
    assert all(len(line) < 400 for line in errors), errors
    assert "\tat " not in output and "Exception" not in output and "Traceback" not in output, output[-3000:]
    assert target.read_text() == "previous download\n"
    assert leftovers(tmp_path, "download.csv") == []


# --- spark-downloader.sh ----------------------------------------------------------------------

def _job_driver(launcher_pid: int) -> int | None:
    """The pid of the Python driver (spark-downloader.py) below a launcher, once it runs."""
    for pid in _descendants(launcher_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"python" in Path(argv[0].decode()).name.encode() and argv[1:2] and \
                argv[1].endswith(b"spark-downloader.py"):
            return pid
    return None


def _parts_being_written(folder: Path) -> bool:
    """Whether a task has started writing a part file (Spark's attempt folders)."""
    return any(path.stat().st_size > 0 for path in folder.glob(".download.csv.parts-*/_temporary/**/part-*")
               if path.is_file())


def test_sigterm_while_tasks_write_is_one_line_without_java_in_the_log(
        dataset: DownloadDataset, env_file: Path, tmp_path: Path) -> None:
    from tests.test_reliability import export_input

    raw = export_input(tmp_path / "raw", 400_000)
    target = tmp_path / "out" / "download.csv"
    target.parent.mkdir()
    target.write_text("previous download\n")
    process = subprocess.Popen(
        [str(PROJECT_ROOT / "spark-downloader.sh"), "--foreground", "--output", str(target)],
        env=job_environment(DownloadDataset(raw, []), env_file), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    # Killed tasks are what Spark reported with their stack traces: stop the job while they write.
    while not _parts_being_written(target.parent):
        assert process.poll() is None and time.monotonic() < deadline, "the download never wrote a part"
        time.sleep(0.02)
    driver = _job_driver(process.pid)
    assert driver is not None
    os.kill(driver, signal.SIGTERM)
    output, _ = process.communicate(timeout=JOB_TIMEOUT_S)
    assert process.returncode == 143, output[-3000:]
    assert "ERROR batch: stopped by SIGTERM" in output
    assert "\tat " not in output and "Exception" not in output and "Traceback" not in output, output[-3000:]
    assert target.read_text() == "previous download\n"
    assert leftovers(target.parent, "download.csv") == []


def test_a_full_disk_is_one_line_without_java_or_data_in_the_log(
        dataset: DownloadDataset, env_file: Path, tmp_path: Path) -> None:
    from tests.test_reliability import PREVIOUS_EXPORT, export_input, small_filesystem

    raw = export_input(tmp_path / "raw", 20_000)  # about 1.5 MB of CSV
    with small_filesystem(tmp_path / "disk", 256 * 1024) as disk:
        target = disk / "export.csv"
        target.write_text(PREVIOUS_EXPORT)
        result = run_launcher(DownloadDataset(raw, []), env_file, "--foreground", "--output", str(target))
        assert result.returncode == 5, result.stderr[-3000:]
        output = result.stdout + result.stderr
        [error] = [line for line in output.splitlines() if "ERROR" in line]
        assert f"cannot write the download parts to {disk}/.export.csv.parts-" in error
        assert error.endswith("No space left on device; the previous file is left as it was")
        # Spark's report of the failed task quoted the row it was writing.
        assert "\tat " not in output and "Exception" not in output and "Liceo Galilei" not in output
        assert target.read_text() == PREVIOUS_EXPORT
        assert os.listdir(disk) == ["export.csv"]



def test_the_launcher_in_the_foreground_writes_a_gzipped_csv(
        dataset: DownloadDataset, env_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "AM319.csv.gz"
    result = run_launcher(dataset, env_file, "--foreground", "--profile", "AM319", "--gzip",
                          "--output", str(target))
    assert result.returncode == 0, result.stderr[-3000:]
    with gzip.open(target, "rt", encoding="utf-8", newline="") as handle:
        rows = read_csv_rows(handle.read(), COLUMNS)
    assert_rows_equal(rows, expected_rows(dataset.rows, profiles=("AM319",)), COLUMNS)


def test_the_launcher_in_the_background_logs_and_writes_the_file(
        dataset: DownloadDataset, env_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "room.csv"
    result = run_launcher(dataset, env_file, "--institute", SANT_ANNA, "--classroom", "Aula\nMagna",
                          "--output", str(target), LOG_DIR=str(tmp_path / "logs"),
                          RUN_DIR=str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    pid = int((tmp_path / "run" / "downloader.pid").read_text())
    assert f"pid {pid}" in result.stdout
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    (log_file,) = (tmp_path / "logs").glob("downloader-*.log")
    assert "status: succeeded" in log_file.read_text(), log_file.read_text()[-3000:]
    expected = expected_rows(dataset.rows, institutes=(SANT_ANNA,), classrooms=("Aula\nMagna",))
    assert expected
    assert_rows_equal(read_csv_rows(exact_text(target), COLUMNS), expected, COLUMNS)


def test_the_launcher_rejects_unknown_options_and_bad_values_before_starting(
        dataset: DownloadDataset, env_file: Path, tmp_path: Path) -> None:
    unknown = run_launcher(dataset, env_file, "--foreground", "--bogus")
    assert unknown.returncode == 2 and "unrecognized arguments: --bogus" in unknown.stderr
    bad_window = run_launcher(dataset, env_file, "--since", "2024-10-27T02:30",
                              RUN_DIR=str(tmp_path / "run"))
    assert bad_window.returncode == 2 and "happens twice in Europe/Rome" in bad_window.stderr
    assert not (tmp_path / "run").exists()  # nothing was started
    usage = run_launcher(dataset, env_file, "--help")
    assert usage.returncode == 0
    assert "--demo" in usage.stdout and "--profile NAME" in usage.stdout


# --- settings ---------------------------------------------------------------------------------

@pytest.fixture
def settings(env_file: Path) -> Any:
    """Settings as the job loads them from `argv` and `environ` (an empty env file)."""

    def load(*argv: str, **environ: str) -> DownloaderSettings:
        # Relative paths are read from the caller's folder: here, the project's.
        return load_download_settings([*argv, "--env-file", str(env_file)], PROJECT_ROOT,
                                      environ={"BATCH_CALLER_DIR": str(PROJECT_ROOT), **environ})

    return load


def test_settings_come_from_flags_over_the_environment(settings: Any) -> None:
    result = settings("--profile", "AM319", "--profile", "AM103", "--columns", "co2, sendtime",
                      DOWNLOAD_FORMAT="parquet", DOWNLOAD_CLEAN="true")
    assert result.profiles == ("AM319", "AM103")
    assert result.columns == ("co2", "sendtime")
    assert result.download_format == "parquet" and result.download_clean
    assert result.output_path == PROJECT_ROOT / "data/raw/indoor_sensor_data.parquet"
    check_settings(result)


@pytest.mark.parametrize("argv, output", [
    ((), "data/raw/indoor_sensor_data.csv"),
    (("--gzip",), "data/raw/indoor_sensor_data.csv.gz"),
    (("--format", "parquet"), "data/raw/indoor_sensor_data.parquet"),
    (("--gzip", "--output", "x/y.csv.gz"), "x/y.csv.gz"),
    (("--output", "download.txt"), "download.txt"),
])
def test_the_default_output_follows_the_format(settings: Any, argv: tuple[str, ...], output: str) -> None:
    result = settings(*argv)
    check_settings(result)
    assert result.output_path == PROJECT_ROOT / output


@pytest.mark.parametrize("argv, message", [
    (("--format", "parquet", "--gzip"), "--gzip applies to CSV"),
    (("--output", "x.csv", "--gzip"), r"ends in \.csv, but the download is gzipped CSV: name it x\.csv\.gz"),
    (("--output", "x.parquet"), r"ends in \.parquet, but the download is CSV"),
    (("--since", "2024-11-01", "--until", "2024-10-01"), "not before --until"),
    (("--until", "31/12/2024"), "--until: '31/12/2024' is not an ISO date"),
    (("--output", "hdfs://nn:8020/downloads/x.csv"), "is a URI; the download is one file on the driver"),
])
def test_contradictory_settings_are_refused(settings: Any, argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_settings(settings(*argv))


@pytest.mark.parametrize("argv, message", [
    (("--columns", "co2,CO2"), "unknown column"),
    (("--columns", "co2,co2"), "given more than once"),
    (("--format", "xlsx"), "unknown format"),
])
def test_malformed_options_are_refused(settings: Any, argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        settings(*argv)


def test_a_cluster_needs_a_shared_staging_folder(settings: Any) -> None:
    cluster = SimpleNamespace(sparkContext=SimpleNamespace(master="spark://spark-master:7077"))
    with pytest.raises(ConfigurationError, match="DOWNLOAD_STAGING_DIR"):
        _check_staging(cluster, settings())
    _check_staging(cluster, settings("--staging-dir", "hdfs://nn:8020/tmp/x"))
    _check_staging(SimpleNamespace(sparkContext=SimpleNamespace(master="local[2]")), settings())


# --- a streaming sink -----------------------------------------------------------------------------

def test_a_streaming_sink_exports_its_committed_readings_only(
        spark: Any, env_file: Path, tmp_path: Path) -> None:
    from tests.support.sink import write_streaming_sink
    from tests.test_analysis import local_names, sink_batches

    sink = write_streaming_sink(spark, tmp_path, sink_batches(seed=29, readings_per_window=40))
    columns = ("DevEui", "sendtime", "institute", "classroom", "light_level", "co2", "humidity")
    output = tmp_path / "export.csv"
    settings = load_download_settings(
        ["--env-file", str(env_file), "--output", str(output), "--columns", ",".join(columns)],
        PROJECT_ROOT, environ={"RAW_DATA_PATH": sink.folder, "BATCH_TIMEZONE": ROME})
    summary = run_download(spark, settings, DownloadSummary.for_settings(settings))

    def in_order(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return sorted(rows, key=lambda row: [(value is None, str(value)) for value in row])

    exported = read_csv_rows(exact_text(output), columns)
    expected = [tuple(row[name] for name in columns) for row in sink.committed_rows]
    assert in_order(exported) == in_order(expected)
    # The fraction of a light level is exported as stored (12.25, not 12).
    assert any(row[4] is not None and row[4] % 1 == 0.25 for row in exported)
    assert summary.uncommitted_files["count"] == 2
    assert local_names(summary.uncommitted_files["first"]) == list(sink.uncommitted)
    assert summary.as_dict()["uncommitted_files"] == summary.uncommitted_files


def test_a_file_damaged_behind_an_intact_footer_is_named_or_skipped(
        spark: Any, env_file: Path, tmp_path: Path) -> None:
    from batch.core.errors import CorruptInputFileError
    from tests.test_reliability import damaged_dataset

    damaged = damaged_dataset(tmp_path / "damaged")
    output = tmp_path / "export.csv"

    def download(skip: str) -> DownloadSummary:
        settings = load_download_settings(
            ["--env-file", str(env_file), "--output", str(output), "--columns", "DevEui,co2"],
            PROJECT_ROOT, environ={"RAW_DATA_PATH": str(damaged), "SKIP_CORRUPT_FILES": skip})
        return run_download(spark, settings, DownloadSummary.for_settings(settings))

    with pytest.raises(CorruptInputFileError) as raised:
        download("false")
    assert f"{damaged}/part-1.parquet is not a readable Parquet file" in str(raised.value)
    assert not output.exists()
    summary = download("true")
    assert [Path(name).name for name in summary.skipped_files] == ["part-1.parquet"]
    assert sorted(read_csv_rows(exact_text(output), ("DevEui", "co2"))) == [
        ("a1", 800.0), ("a1", 900.0), ("b2", 500.0)]
