"""Both jobs on a real Spark standalone cluster and on a real HDFS, launched by the launchers.

- HDFS: Apache Hadoop's MiniDFSCluster (tests/support/hdfs.py) on 127.0.0.1 holds the raw
  Parquet at /iot-lorawan/raw/indoor_sensor_data; both jobs read it through hdfs:// in local
  mode. These tests skip, saying why, only when Maven cannot provide the Hadoop artifacts.
- Spark standalone: a master and one worker from the installed pyspark on 127.0.0.1
  (tests/support/spark_standalone.py); both jobs are submitted by the launchers in local mode
  with SPARK_MASTER=spark://127.0.0.1:PORT. The executors run an interpreter that cannot
  import `batch` (tests/support/isolated_python.py), so the package reaches them only as the
  zip the launcher ships with --py-files.

  The two jobs use the DataFrame API only: their executors run no Python code at all, so for
  them the zip only has to arrive (each executor's work folder holds batch.zip). A probe job,
  launched by the same launcher code, runs Python on the executors and shows that there
  `batch` is imported from that zip and from nowhere else.

Every result equals what local Spark computes in this process from the same local files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from batch.launcher.submit import build_py_files_zip
from devtools.local_postgres import LocalPostgres
from tests.rawdata import write_dataset
from tests.support import local_results
from tests.support.hdfs import MiniDfs, configure_spark_for_hdfs, copy_local_dir_to_hdfs, minidfs_unavailable_reason
from tests.support.isolated_python import can_import, create_isolated_python
from tests.support.local_results import LocalResults
from tests.support.published import assert_published_equals_independent
from tests.support.sink import write_streaming_sink
from tests.support.spark_standalone import SparkStandalone

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TIMEZONE = "Europe/Rome"
PROFILE = "AM319"
RAW_PATH = "/iot-lorawan/raw/indoor_sensor_data"
JOB_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def local(spark: SparkSession, postgres_server: LocalPostgres, work_dir: Path) -> LocalResults:
    dataset = write_dataset(work_dir / "raw", readings_per_window=80)
    return local_results.compute(spark, postgres_server, dataset.folder, f"cluster_local_{uuid.uuid4().hex[:8]}",
                                 work_dir, TIMEZONE, (PROFILE,))


@pytest.fixture(scope="module")
def hdfs_uri(spark: SparkSession, local: LocalResults, work_dir: Path) -> Iterator[str]:
    reason = minidfs_unavailable_reason()
    if reason:
        pytest.skip(f"no MiniDFSCluster: {reason}")
    with MiniDfs(work_dir / "minidfs") as dfs:
        configure_spark_for_hdfs(spark)
        copy_local_dir_to_hdfs(spark, local.raw_folder, f"{dfs.uri}{RAW_PATH}")
        yield dfs.uri


@pytest.fixture(scope="module")
def cluster(work_dir: Path) -> Iterator[SparkStandalone]:
    with SparkStandalone(work_dir / "standalone", cores=2, memory="2g") as standalone:
        yield standalone


@pytest.fixture(scope="module")
def executor_python(work_dir: Path) -> Path:
    python = create_isolated_python(work_dir / "executor-python")
    assert not can_import(python, "batch"), "the executors' Python must not find batch by itself"
    return python


def launch(launcher: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """A launcher in the foreground, in local mode, against the test PostgreSQL and Spark settings."""
    environment = {key: value for key, value in os.environ.items() if key not in local_results.job_variables()}
    environment.update({"SPARK_LOCAL_IP": "127.0.0.1", "SPARK_DRIVER_MEMORY": "1g",
                        "BATCH_TIMEZONE": TIMEZONE, **variables})
    return subprocess.run([str(launcher), "--local", "--foreground", *args], env=environment,
                          capture_output=True, text=True, timeout=JOB_TIMEOUT_S, stdin=subprocess.DEVNULL)


def postgres_variables(server: LocalPostgres, schema: str) -> dict[str, str]:
    return {"POSTGRES_HOST": server.host, "POSTGRES_PORT": str(server.port), "POSTGRES_DB": server.database,
            "POSTGRES_USER": server.user, "POSTGRES_PASSWORD_FILE": str(server.password_file),
            "POSTGRES_SCHEMA": schema, "POSTGRES_CONNECT_ATTEMPTS": "2"}


def run_both_jobs(server: LocalPostgres, raw_path: str, output: Path,
                  **variables: str) -> local_results.Tables:
    """The analysis and the export of PROFILE on `raw_path`; returns the published tables."""
    schema = f"cluster_{uuid.uuid4().hex[:8]}"
    analysis = launch(PROJECT_ROOT / "start-spark.sh", "--raw-data-path", raw_path,
                      **postgres_variables(server, schema), **variables)
    assert analysis.returncode == 0, analysis.stdout[-3000:] + analysis.stderr[-3000:]
    assert "status: succeeded" in analysis.stdout
    export = launch(PROJECT_ROOT / "spark-downloader.sh", "--raw-data-path", raw_path, "--profile", PROFILE,
                    "--output", str(output), **variables)
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]
    return local_results.published(local_results.postgres_target(server, schema))


# --- HDFS ----------------------------------------------------------------------------------------

def test_both_jobs_read_hdfs_and_equal_the_local_file_results(
        hdfs_uri: str, local: LocalResults, postgres_server: LocalPostgres, tmp_path: Path) -> None:
    assert hdfs_uri.startswith("hdfs://127.0.0.1:")
    output = tmp_path / "hdfs-export.csv"
    tables = run_both_jobs(postgres_server, f"{hdfs_uri}{RAW_PATH}", output, SPARK_MASTER="local[2]")
    local_results.assert_tables_equal(tables, local.tables)
    assert output.read_text(encoding="utf-8") == local.exports[PROFILE]


def test_the_download_stages_its_parts_on_hdfs_and_equals_the_local_export(
        spark: SparkSession, hdfs_uri: str, local: LocalResults, tmp_path: Path) -> None:
    # As on a cluster: DOWNLOAD_STAGING_DIR on HDFS, the parts copied back through Hadoop's API.
    staging = f"{hdfs_uri}/tmp/download-staging"
    output = tmp_path / "hdfs-staged-export.csv"
    export = launch(PROJECT_ROOT / "spark-downloader.sh", "--raw-data-path", f"{hdfs_uri}{RAW_PATH}",
                    "--profile", PROFILE, "--output", str(output), SPARK_MASTER="local[2]",
                    DOWNLOAD_STAGING_DIR=staging)
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]
    assert output.read_text(encoding="utf-8") == local.exports[PROFILE]
    assert sorted(os.listdir(tmp_path)) == [output.name]
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(staging)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    assert [status.getPath().getName() for status in fs.listStatus(path)] == []  # parts deleted


def test_both_jobs_read_a_streaming_sink_on_hdfs_committed_files_only(
        spark: SparkSession, hdfs_uri: str, postgres_server: LocalPostgres, tmp_path: Path) -> None:
    from tests.test_analysis import sink_batches
    from tests.test_download_files import exact_text, read_csv_rows

    sink = write_streaming_sink(spark, tmp_path, sink_batches(seed=31, readings_per_window=30),
                                sink_uri=f"{hdfs_uri}/iot-lorawan/raw/sink")
    # The streaming query's log names its files by fully qualified hdfs:// URIs.
    log = spark.sparkContext.textFile(f"{sink.folder}/_spark_metadata/3.compact").collect()
    paths = [json.loads(line)["path"] for line in log if line.startswith("{")]
    assert paths and all(path.startswith(f"{hdfs_uri}/iot-lorawan/raw/sink/classroom=") for path in paths), log[:3]
    schema = f"cluster_{uuid.uuid4().hex[:8]}"
    summaries = {"analysis": tmp_path / "analysis.json", "download": tmp_path / "download.json"}
    analysis = launch(PROJECT_ROOT / "start-spark.sh", "--raw-data-path", sink.folder,
                      "--summary-json", str(summaries["analysis"]),
                      **postgres_variables(postgres_server, schema), SPARK_MASTER="local[2]")
    assert analysis.returncode == 0, analysis.stdout[-3000:] + analysis.stderr[-3000:]
    columns = ("DevEui", "sendtime", "institute", "classroom", "light_level", "co2")
    output = tmp_path / "sink-export.csv"
    export = launch(PROJECT_ROOT / "spark-downloader.sh", "--raw-data-path", sink.folder,
                    "--output", str(output), "--columns", ",".join(columns),
                    "--summary-json", str(summaries["download"]), SPARK_MASTER="local[2]")
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]

    assert_published_equals_independent(local_results.postgres_target(postgres_server, schema),
                                        sink.committed_rows, TIMEZONE)

    def in_order(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        return sorted(rows, key=lambda row: [(value is None, str(value)) for value in row])

    assert in_order(read_csv_rows(exact_text(output), columns)) == in_order(
        [tuple(row[name] for name in columns) for row in sink.committed_rows])
    for job, path in summaries.items():
        summary = json.loads(path.read_text())
        assert summary["uncommitted_files"] == {"count": 2, "first": list(sink.uncommitted)}, job
    assert "not in its streaming sink log" in analysis.stderr + analysis.stdout


# --- Spark standalone --------------------------------------------------------------------------

def _executor_folders(cluster: SparkStandalone, app_name: str) -> list[Path]:
    """The work folders of the executors of the completed application whose name starts with `app_name`."""
    apps = [app["id"] for app in cluster.status().get("completedapps", []) if app["name"].startswith(app_name)]
    assert len(apps) == 1, cluster.status().get("completedapps")
    return sorted(path for path in (cluster.workdir / "worker" / apps[0]).iterdir() if path.is_dir())


def test_both_jobs_on_a_standalone_cluster_equal_the_local_results(
        cluster: SparkStandalone, executor_python: Path, local: LocalResults,
        postgres_server: LocalPostgres, tmp_path: Path) -> None:
    output = tmp_path / "cluster-export.csv"
    tables = run_both_jobs(postgres_server, f"file://{local.raw_folder}", output,
                           SPARK_MASTER=cluster.master_url, SPARK_EXECUTOR_PYTHON=str(executor_python),
                           DOWNLOAD_STAGING_DIR=f"file://{tmp_path}/staging")
    local_results.assert_tables_equal(tables, local.tables)
    assert output.read_text(encoding="utf-8") == local.exports[PROFILE]
    # Both ran on the cluster's executors, which received the zip and nothing else of the project.
    for app_name in ("indoor-air-analysis", "indoor-air-download"):
        executors = _executor_folders(cluster, app_name)
        assert executors, app_name
        for folder in executors:
            assert (folder / "batch.zip").is_file(), sorted(os.listdir(folder))
            assert not (folder / "batch").exists()


PROBE = '''\
"""Runs Python on the executors: where do they import `batch` from?"""
import json
import sys

if "--check-config" in sys.argv:
    sys.exit(0)

from pyspark.sql import SparkSession


def where_batch_comes_from(_):
    import batch.core.contract
    return [batch.core.contract.__file__, sys.executable, [c.name for c in batch.core.contract.RAW_COLUMNS][:3]]


spark = SparkSession.builder.getOrCreate()
found = spark.sparkContext.parallelize(range(4), 4).map(where_batch_comes_from).collect()
print("PROBE " + json.dumps({"master": spark.sparkContext.master, "found": found}))
spark.stop()
'''

PROBE_LAUNCHER = f'''\
#!{sys.executable}
"""A third job for the shared launcher, as start-spark.sh and spark-downloader.sh are."""
import sys
from pathlib import Path

from batch.launcher.launch import Job
from batch.launcher.main import launch

job = Job("probe", "probe.py", "probe-launcher.py", "Where do the executors import batch from?", False)
sys.exit(launch(job, sys.argv[1:], Path(__file__).resolve().parent))
'''


def test_python_on_the_executors_imports_batch_only_from_the_shipped_zip(
        cluster: SparkStandalone, executor_python: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("batch", "env", "pyproject.toml", ".venv"):
        (project / name).symlink_to(PROJECT_ROOT / name)
    (project / "probe.py").write_text(PROBE)
    launcher = project / "probe-launcher.py"
    launcher.write_text(PROBE_LAUNCHER)
    launcher.chmod(0o755)
    probe = launch(launcher, SPARK_MASTER=cluster.master_url, SPARK_EXECUTOR_PYTHON=str(executor_python))
    assert probe.returncode == 0, probe.stdout[-3000:] + probe.stderr[-3000:]
    [line] = [text for text in probe.stdout.splitlines() if text.startswith("PROBE ")]
    result = json.loads(line.removeprefix("PROBE "))
    assert result["master"] == cluster.master_url
    assert len(result["found"]) == 4
    for module_file, executable, columns in result["found"]:
        assert "/batch.zip/batch/core/contract.py" in module_file, module_file
        assert Path(executable).resolve() == executor_python.resolve() or executable == str(executor_python)
        assert columns == ["DevEui", "deviceName", "gwname"]


def test_the_executors_python_finds_batch_only_in_the_launchers_zip(executor_python: Path, work_dir: Path) -> None:
    """It has the dependencies, not the package - except from the zip the launcher builds."""
    assert can_import(executor_python, "pyspark") and can_import(executor_python, "psycopg2")
    assert not can_import(executor_python, "batch")
    zip_path = build_py_files_zip(PROJECT_ROOT / "batch", work_dir / "probe-batch.zip")
    assert can_import(executor_python, "batch.core.contract", extra_path=str(zip_path))
