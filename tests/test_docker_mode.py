"""The launchers' docker mode, end to end, with a stand-in `docker` (tests/support/fake_docker.py).

Everything the launchers do runs for real: the run folder is staged and copied into the
"container" (a folder playing its file system), spark-submit runs there (on this machine,
in that folder, with the container's environment plus the variables passed with -e), the
analysis publishes to a real PostgreSQL, the export is copied out. What the stand-in cannot
show is listed in its docstring.

The container's Python is an interpreter that cannot import `batch` (isolated_python.py), and
its run folder holds no `batch` folder: the jobs run only if the zip shipped with --py-files
works. Its spark-submit is not on its PATH, only in $SPARK_HOME/bin, as in some Spark images.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import signal
import subprocess
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyspark
import pytest
from pyspark.sql import SparkSession

from batch.core.errors import EXIT_MISSING_PREREQUISITE
from devtools.local_postgres import LocalPostgres
from tests.rawdata import write_dataset
from tests.support import fake_docker, local_results
from tests.support.isolated_python import can_import, create_isolated_python
from tests.support.local_results import LocalResults

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONTAINER = "spark-master"
WORKDIR = "/tmp/indoor-air-batch"  # SPARK_CONTAINER_WORKDIR's default
TIMEZONE = "Europe/Rome"  # set only in the env file: the job sees it only if the file is copied
JOB_TIMEOUT_S = 600


# --- the stand-in platform ---------------------------------------------------------------------

@dataclass
class Platform:
    project: Path  # a project folder of its own (the default export lands in its data/raw)
    state: Path  # the stand-in docker's records
    root: Path  # the container's file system
    bin_dir: Path
    env_file: Path
    logs: Path
    base_environment: dict[str, str] = field(default_factory=dict)

    def calls(self) -> list[list[str]]:
        return fake_docker.recorded_calls(self.state)

    def inside(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def run_folders(self) -> list[Path]:
        folder = self.inside(WORKDIR)
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def set_running(self, running: bool) -> None:
        containers = json.loads((self.state / "containers.json").read_text())
        containers[CONTAINER]["running"] = running
        fake_docker.write_containers(self.state, containers)

    def launch(self, launcher: str, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.project / launcher), *args], env={**self.base_environment, **variables},
                              capture_output=True, text=True, timeout=JOB_TIMEOUT_S, cwd=self.logs,
                              stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def container_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    python = create_isolated_python(tmp_path_factory.mktemp("container-python") / "venv")
    assert not can_import(python, "batch"), "the container's Python must not find batch by itself"
    assert can_import(python, "pyspark") and can_import(python, "psycopg2")
    return python


@pytest.fixture
def platform(tmp_path: Path, container_python: Path, postgres_server: LocalPostgres) -> Iterator[Platform]:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("batch", "env", "pyproject.toml", ".venv", "start-spark.sh", "start-spark.py",
                 "spark-downloader.sh", "spark-downloader.py"):
        (project / name).symlink_to(PROJECT_ROOT / name)
    root = tmp_path / "container-fs"
    (root / "tmp").mkdir(parents=True)
    (root / "root").mkdir()
    state = tmp_path / "docker-state"
    container_env = {
        "PATH": f"{container_python.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(root / "root"), "LANG": "C.UTF-8", "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_HOME": str(Path(pyspark.__file__).resolve().parent),
        **({"JAVA_HOME": os.environ["JAVA_HOME"]} if "JAVA_HOME" in os.environ else {}),
    }
    fake_docker.write_containers(state, {CONTAINER: {"running": True, "root": str(root), "env": container_env}})
    bin_dir = tmp_path / "bin"
    fake_docker.install(bin_dir)
    env_file = tmp_path / "site.env"
    env_file.write_text(f"BATCH_TIMEZONE={TIMEZONE}\nPOSTGRES_CONNECT_ATTEMPTS=2\n")
    logs = tmp_path / "host"
    logs.mkdir()
    environment = {key: value for key, value in os.environ.items() if key not in local_results.job_variables()}
    environment.update({
        "PATH": f"{bin_dir}:{os.environ['PATH']}", fake_docker.STATE_VARIABLE: str(state),
        "BATCH_ENV_FILE": str(env_file), "SPARK_MASTER_URL": "local[2]", "SPARK_DRIVER_MEMORY": "1g",
        "LOG_DIR": str(logs / "logs"), "RUN_DIR": str(logs / "run"),
        "POSTGRES_HOST": postgres_server.host, "POSTGRES_PORT": str(postgres_server.port),
        "POSTGRES_DB": postgres_server.database, "POSTGRES_USER": postgres_server.user,
        # A password is checked for before anything starts.
        "POSTGRES_PASSWORD_FILE": str(postgres_server.password_file),
    })
    platform = Platform(project, state, root, bin_dir, env_file, logs, environment)
    try:
        yield platform
    finally:
        _stop_leftovers(platform)


def _stop_leftovers(platform: Platform) -> None:
    """Stop what a failed test may have left running: jobs in the container, copy-out watchers."""
    pids = []
    for folder in platform.run_folders():
        if (folder / "job.pid").exists() and not (folder / "job.exit").exists():
            pids.append(int((folder / "job.pid").read_text()))
    for pid_file in (platform.logs / "run").glob("*.copy-out.pid"):
        pids.append(int(pid_file.read_text()))
    for pid in pids:
        for target in (-pid, pid):
            try:
                os.kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def exec_calls(platform: Platform, action: str) -> list[list[str]]:
    """The `docker exec ... python3 jobrun.py ACTION ...` calls."""
    return [call for call in platform.calls()
            if call[0] == "exec" and "jobrun.py" in call and call[call.index("jobrun.py") + 1] == action]


def passed_variables(call: list[str]) -> set[str]:
    """What a `docker exec` call passes with -e: names, or NAME=VALUE."""
    options = call[1:call.index(CONTAINER)]
    return {options[index + 1] for index, option in enumerate(options[:-1]) if option == "-e"}


def run_folder_of(output: str) -> str:
    found = re.search(r"run folder \(in the container\): (\S+)", output)
    assert found, output
    return found.group(1)


def wait_for(condition: Any, what: str, timeout: float = JOB_TIMEOUT_S, on_poll: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if on_poll is not None:
            on_poll()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def process_command_lines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return lines


def assert_no_interactive_flags(calls: list[list[str]]) -> None:
    for call in calls:
        if call[0] == "exec":
            options = call[1:call.index(CONTAINER)]
            assert not {"-i", "-t", "-it", "-ti", "--tty", "--interactive"} & set(options), call


# --- the expected results: the same input, run in this process with local Spark ---------------

@pytest.fixture(scope="module")
def baseline(spark: SparkSession, postgres_server: LocalPostgres,
             tmp_path_factory: pytest.TempPathFactory) -> LocalResults:
    folder = tmp_path_factory.mktemp("docker-mode")
    dataset = write_dataset(folder / "raw", readings_per_window=80)
    results = local_results.compute(spark, postgres_server, dataset.folder, f"docker_local_{uuid.uuid4().hex[:8]}",
                                    folder, TIMEZONE, ("AM319", "AM103"))
    assert all(text.count("\n") > 10 for text in results.exports.values())
    return results


# --- mode selection and refusals (no Spark) ---------------------------------------------------

def test_without_a_mode_flag_the_running_container_decides(platform: Platform) -> None:
    chosen = platform.launch("start-spark.sh", "--no-such-option")
    assert chosen.returncode == 2
    assert "docker mode: the container spark-master is running (neither --docker nor --local given)" in chosen.stderr
    platform.set_running(False)
    chosen = platform.launch("start-spark.sh", "--no-such-option")
    assert chosen.returncode == 2
    assert "local mode: the container spark-master is not running" in chosen.stderr
    missing = platform.launch("start-spark.sh", "--no-such-option", SPARK_MASTER_CONTAINER="elsewhere")
    assert "local mode: no running container elsewhere (docker inspect said: Error: No such object: elsewhere)" \
        in missing.stderr
    no_docker = platform.launch("spark-downloader.sh", "--no-such-option", DOCKER_CMD="/nonexistent/docker")
    assert "local mode: the docker command '/nonexistent/docker' is not installed" in no_docker.stderr
    assert "local mode (--local)" in platform.launch("start-spark.sh", "--local", "--bogus").stderr
    # Nothing was copied or run: the job options are checked first.
    assert {call[0] for call in platform.calls()} == {"inspect"}


def test_a_docker_daemon_that_is_down_is_quoted_by_its_first_non_empty_line(platform: Platform) -> None:
    down = platform.bin_dir / "docker-down"
    down.write_text("#!/bin/sh\necho >&2\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                    "Is the docker daemon running?' >&2\nexit 1\n")
    down.chmod(0o755)
    refused = platform.launch("start-spark.sh", "--docker", "--foreground", DOCKER_CMD=str(down))
    assert refused.returncode == EXIT_MISSING_PREREQUISITE
    assert (f"docker mode: no running container spark-master ({down} inspect said: Cannot connect to the Docker "
            "daemon at unix:///var/run/docker.sock. Is the docker daemon running?); start the platform's "
            "containers, or use --local") in refused.stderr


def test_conflicting_flags_and_help(platform: Platform) -> None:
    both = platform.launch("start-spark.sh", "--local", "--docker")
    assert both.returncode == 2 and "--local and --docker exclude each other" in both.stderr
    demo = platform.launch("start-spark.sh", "--demo", "--docker")
    assert demo.returncode == 2 and "cannot be combined with --docker" in demo.stderr
    shown = platform.launch("spark-downloader.sh", "--help")
    assert shown.returncode == 0
    for text in ("--docker", "SPARK_MASTER_CONTAINER", "DOCKER_CMD", "docker exec -e NAME", "--profile NAME"):
        assert text in shown.stdout, text


def test_docker_mode_without_a_running_container_exits_as_a_missing_prerequisite(platform: Platform) -> None:
    platform.set_running(False)
    refused = platform.launch("start-spark.sh", "--docker", "--foreground")
    assert refused.returncode == EXIT_MISSING_PREREQUISITE
    assert "docker mode: the container spark-master is not running; start the platform's containers, " \
           "or use --local" in refused.stderr
    absent = platform.launch("start-spark.sh", "--docker", DOCKER_CMD="/nonexistent/docker")
    assert absent.returncode == EXIT_MISSING_PREREQUISITE
    assert "the docker command '/nonexistent/docker' is not installed" in absent.stderr
    assert [call[0] for call in platform.calls()] == ["inspect"]


def test_a_failed_copy_into_the_container_exits_with_6_before_submitting(platform: Platform) -> None:
    fake_docker.set_failures(platform.state, "cp-in")
    # A two-word docker command, as "sudo docker" is.
    failed = platform.launch("spark-downloader.sh", "--docker", "--foreground", DOCKER_CMD="env docker")
    assert failed.returncode == 6
    assert f"copying the downloader job into spark-master:{WORKDIR}/downloader-" in failed.stderr
    assert "(fake) cannot copy into spark-master" in failed.stderr
    assert [call[0] for call in platform.calls()] == ["inspect", "exec", "cp"]
    assert exec_calls(platform, "run") == []


def test_a_failed_submit_exits_with_its_code_in_both_modes(platform: Platform) -> None:
    # The default master (the platform's).
    variables = {"SPARK_CONTAINER_SUBMIT": "/opt/spark/bin/spark-submit", "SPARK_MASTER_URL": ""}
    foreground = platform.launch("start-spark.sh", "--docker", "--foreground", **variables)
    assert foreground.returncode == 127, foreground.stderr
    assert "jobrun.py: /opt/spark/bin/spark-submit: not found" in foreground.stderr
    assert "the analysis job exited with 127 in spark-master; its run folder is kept there" in foreground.stderr
    background = platform.launch("start-spark.sh", "--docker", "--background", **variables)
    assert background.returncode == 127, background.stderr
    assert "the analysis job ended at once with exit code 127" in background.stderr
    assert "jobrun.py: /opt/spark/bin/spark-submit: not found" in background.stderr
    run_call = exec_calls(platform, "run")[0]
    assert run_call[run_call.index("run") + 2:][:3] == [
        "/opt/spark/bin/spark-submit", "--master", "spark://spark-master:7077"]
    # No JDBC driver: the container's Spark resolves nothing from Maven.
    assert "--jars" not in run_call and "--packages" not in run_call
    assert_no_interactive_flags(platform.calls())


# --- the analysis ---------------------------------------------------------------------------

def test_foreground_analysis_in_the_container_publishes_what_local_spark_publishes(
        platform: Platform, baseline: LocalResults, postgres_server: LocalPostgres) -> None:
    target = local_results.postgres_target(postgres_server, f"docker_fg_{uuid.uuid4().hex[:8]}")
    # The schema only in the env file: the job finds it only in the copy made for the container.
    # The JDBC driver settings of older env files (a jar that is nowhere) change nothing.
    with platform.env_file.open("a") as env_file:
        env_file.write(f"POSTGRES_SCHEMA={target.schema}\nPOSTGRES_JDBC_JAR=/nowhere/postgresql-42.7.4.jar\n"
                       "POSTGRES_JDBC_PACKAGE=org.postgresql:postgresql:42.7.4\n")
    summary = platform.logs / "summaries" / "analysis.json"
    done = platform.launch("start-spark.sh", "--foreground", "--raw-data-path", f"file://{baseline.raw_folder}",
                           "--summary-json", str(summary), POSTGRES_PASSWORD_FILE=str(postgres_server.password_file))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "docker mode: the container spark-master is running" in done.stderr
    assert "status: succeeded" in done.stdout  # the driver's output, streamed
    local_results.assert_tables_equal(local_results.published(target), baseline.tables)
    assert json.loads(summary.read_text())["status"] == "succeeded"

    calls = platform.calls()
    assert postgres_server.password() not in json.dumps(calls)
    assert_no_interactive_flags(calls)
    [copy_in] = [call for call in calls if call[0] == "cp" and call[2].startswith("spark-master:")]
    run_folder = copy_in[2].removeprefix("spark-master:")
    # Out: the summary only (the analysis has no file), to the path asked for.
    assert [call[1] for call in calls if call[0] == "cp" and call[1].startswith("spark-master:")] == [
        f"spark-master:{run_folder}/summary.json"]
    assert run_folder.startswith(f"{WORKDIR}/analysis-")
    [run_call] = exec_calls(platform, "run")
    assert run_call[run_call.index(CONTAINER) - 2:run_call.index(CONTAINER)] == ["-w", run_folder]
    passed = passed_variables(run_call)
    assert {"POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DB", "POSTGRES_USER",
            "POSTGRES_PASSWORD_FILE=secrets/postgres-password"} <= passed
    assert not {"POSTGRES_SCHEMA", "BATCH_TIMEZONE", "BATCH_ENV_FILE", "SPARK_MASTER_URL"} & passed
    submit = run_call[run_call.index("--") + 1:]
    assert submit[:3] == ["spark-submit", "--master", "local[2]"]
    for option, value in (("--py-files", "batch.zip"), ("--summary-json", "summary.json")):
        assert submit[submit.index(option) + 1] == value
    assert "--jars" not in submit and "--packages" not in submit  # the job COPYs over psycopg2
    assert "--conf" in submit and "spark.pyspark.python=python3" in submit
    # The summary goes to the run folder: the launcher copies it to the path asked for.
    assert submit[submit.index("start-spark.py") + 1:] == [
        "--raw-data-path", f"file://{baseline.raw_folder}", "--summary-json", "summary.json"]
    # A successful foreground run leaves nothing in the container.
    assert platform.run_folders() == []


def test_background_analysis_survives_the_launcher_and_keeps_the_password_off_command_lines(
        platform: Platform, baseline: LocalResults, postgres_server: LocalPostgres) -> None:
    target = local_results.postgres_target(postgres_server, f"docker_bg_{uuid.uuid4().hex[:8]}")
    password = postgres_server.password()
    started = platform.launch("start-spark.sh", "--docker", "--raw-data-path", f"file://{baseline.raw_folder}",
                              POSTGRES_SCHEMA=target.schema, POSTGRES_PASSWORD=password)
    assert started.returncode == 0, started.stderr
    run_folder = run_folder_of(started.stdout)
    inside = platform.inside(run_folder)
    assert f"follow: docker exec -w {run_folder} spark-master tail -f job.log" in started.stdout
    assert f"stop:   docker exec -w {run_folder} spark-master python3 jobrun.py stop" in started.stdout
    assert "copy-out" not in started.stdout  # the analysis has no file to copy out

    leaks: list[str] = []
    wait_for(lambda: (inside / "job.exit").exists(), "the background job to end",
             on_poll=lambda: leaks.extend(line for line in process_command_lines() if password in line))
    log = (inside / "job.log").read_text()
    assert (inside / "job.exit").read_text().strip() == "0", log[-3000:]
    assert "status: succeeded" in log and password not in log
    assert leaks == []
    assert password not in json.dumps(platform.calls())
    [start_call] = exec_calls(platform, "start")
    assert start_call[1] == "-d" and "POSTGRES_PASSWORD" in passed_variables(start_call)
    local_results.assert_tables_equal(local_results.published(target), baseline.tables)

    # What was copied in: the entry script, the run wrapper, the env file, and the batch
    # package without the launcher - its modules and the report's template.
    assert (inside / "start-spark.py").read_bytes() == (PROJECT_ROOT / "start-spark.py").read_bytes()
    assert (inside / "jobrun.py").read_bytes() == (PROJECT_ROOT / "batch" / "launcher" / "jobrun.py").read_bytes()
    assert (inside / "env" / "spark.env").read_text() == platform.env_file.read_text()
    with zipfile.ZipFile(inside / "batch.zip") as archive:
        # Sub-packages (batch/download/) included, the launcher's not.
        assert sorted(archive.namelist()) == sorted(
            path.relative_to(PROJECT_ROOT).as_posix() for pattern in ("*.py", "*.j2")
            for path in (PROJECT_ROOT / "batch").rglob(pattern)
            # Relative: the checkout's own path may hold either name.
            if not {"__pycache__", "launcher"} & set(path.relative_to(PROJECT_ROOT).parts))
        assert "batch/download/job.py" in archive.namelist()
    assert not (inside / "batch").exists() and not (inside / "secrets").exists()
    assert_no_interactive_flags(platform.calls())


def test_the_printed_stop_command_stops_a_background_job(
        platform: Platform, baseline: LocalResults, postgres_server: LocalPostgres) -> None:
    target = local_results.postgres_target(postgres_server, f"docker_stop_{uuid.uuid4().hex[:8]}")
    with closing(local_results.connect(target)) as holder:
        # Another run holds the schema's publish lock: the job waits for it until stopped.
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"indoor-air-batch:{target.schema}",))
        holder.commit()
        started = platform.launch(
            "start-spark.sh", "--docker", "--raw-data-path", f"file://{baseline.raw_folder}",
            POSTGRES_SCHEMA=target.schema, POSTGRES_PASSWORD=postgres_server.password(),
            PUBLISH_LOCK_TIMEOUT_S="600")
        assert started.returncode == 0, started.stderr
        inside = platform.inside(run_folder_of(started.stdout))
        wait_for(lambda: "holds the publish lock" in (inside / "job.log").read_text()
                 or (inside / "job.exit").exists(), "the job to wait for the publish lock")
        assert not (inside / "job.exit").exists(), (inside / "job.log").read_text()[-3000:]
        stop_line = next(line for line in started.stdout.splitlines() if line.strip().startswith("stop:"))
        stopped = subprocess.run(shlex.split(stop_line.split(":", 1)[1]), env=platform.base_environment,
                                 capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert stopped.returncode == 0, stopped.stderr
        assert "sent TERM to the job" in stopped.stdout
        wait_for(lambda: (inside / "job.exit").exists(), "the stopped job to end")
    assert (inside / "job.exit").read_text().strip() == "143"  # 128 + SIGTERM
    group = int((inside / "job.pid").read_text())
    wait_for(lambda: not [pid for pid in _all_pids() if _group_of(pid) == group],
             "the job's processes to end", timeout=60)


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _group_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


# --- the downloader ---------------------------------------------------------------------------

def test_foreground_download_copies_the_default_file_out(platform: Platform, baseline: LocalResults) -> None:
    done = platform.launch("spark-downloader.sh", "--docker", "--foreground", "--profile", "AM319", "--gzip",
                           "--summary-json", "exports/summary.json", RAW_DATA_PATH=f"file://{baseline.raw_folder}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # The job's default name (suffix from --gzip), under the project folder as in local mode.
    target = platform.project / "data" / "raw" / "indoor_sensor_data.csv.gz"
    assert f"Copied spark-master:{WORKDIR}/downloader-" in done.stdout
    assert gzip.decompress(target.read_bytes()).decode("utf-8") == baseline.exports["AM319"]
    assert os.listdir(target.parent) == [target.name]  # no temporary file left
    # A relative --summary-json is read from the folder the launcher runs in.
    summary = json.loads((platform.logs / "exports" / "summary.json").read_text())
    assert summary["status"] == "succeeded" and summary["output"] == str(target)
    assert platform.run_folders() == []
    [run_call] = exec_calls(platform, "run")
    assert "--jars" not in run_call and "--packages" not in run_call  # no JDBC driver


def test_background_download_is_copied_out_when_it_has_succeeded(platform: Platform, baseline: LocalResults,
                                                                   tmp_path: Path) -> None:
    target = tmp_path / "exports" / "AM103.csv"
    target.parent.mkdir()
    target.write_text("previous export\n")
    started = platform.launch("spark-downloader.sh", "--docker", "--profile", "AM103", "--output", str(target),
                              RAW_DATA_PATH=f"file://{baseline.raw_folder}")
    assert started.returncode == 0, started.stderr
    run_folder = run_folder_of(started.stdout)
    assert f"copy-out: when the job has succeeded, its file ({target}) is copied here by a watcher" in started.stdout
    watcher = int((platform.logs / "run" / "downloader.copy-out.pid").read_text())
    wait_for(lambda: not Path(f"/proc/{watcher}").exists() or _is_zombie(watcher), "the copy-out watcher")
    [watch_log] = (platform.logs / "logs").glob("downloader-*.copy-out.log")
    assert target.read_text(encoding="utf-8") == baseline.exports["AM103"], watch_log.read_text()
    assert sorted(os.listdir(target.parent)) == ["AM103.csv"]
    # The absolute path became one in the run folder; the copy there is deleted, the log kept.
    [start_call] = exec_calls(platform, "start")
    assert start_call[-2:] == ["--output", "output/AM103.csv"]
    inside = platform.inside(run_folder)
    assert not (inside / "output" / "AM103.csv").exists()
    assert "status: succeeded" in (inside / "job.log").read_text()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def test_a_failed_download_copies_nothing_and_keeps_the_previous_file(
        platform: Platform, baseline: LocalResults, tmp_path: Path) -> None:
    target = tmp_path / "exports" / "export.csv"
    target.parent.mkdir()
    target.write_text("previous export\n")
    failed = platform.launch("spark-downloader.sh", "--docker", "--foreground", "--profile", "AM103",
                             "--since", "2030-01-01", "--output", str(target),
                             RAW_DATA_PATH=f"file://{baseline.raw_folder}")
    assert failed.returncode == 3, failed.stderr[-3000:]
    assert "no reading under" in failed.stderr + failed.stdout
    assert "the downloader job exited with 3 in spark-master; its run folder is kept there" in failed.stderr
    assert target.read_text() == "previous export\n" and os.listdir(target.parent) == ["export.csv"]
    assert not [call for call in platform.calls() if call[0] == "cp" and call[1].startswith("spark-master:")]
    assert len(platform.run_folders()) == 1


def test_a_failed_copy_out_exits_with_6_and_keeps_the_previous_file(
        platform: Platform, baseline: LocalResults, tmp_path: Path) -> None:
    target = tmp_path / "exports" / "export.csv"
    target.parent.mkdir()
    target.write_text("previous export\n")
    fake_docker.set_failures(platform.state, "cp-out:*/output/export.csv")
    failed = platform.launch("spark-downloader.sh", "--docker", "--foreground", "--profile", "AM103",
                             "--output", str(target), RAW_DATA_PATH=f"file://{baseline.raw_folder}")
    assert failed.returncode == 6, failed.stderr[-3000:]
    [run_folder] = platform.run_folders()
    assert (f"the downloader job succeeded, but copying spark-master:{WORKDIR}/{run_folder.name}/output/"
            f"export.csv to {target} failed; the file is still in the container") in failed.stderr
    assert target.read_text() == "previous export\n"
    assert os.listdir(target.parent) == ["export.csv"]  # no temporary file left
    assert (run_folder / "output" / "export.csv").read_text(encoding="utf-8") == baseline.exports["AM103"]
