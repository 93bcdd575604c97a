"""Smoke tests for the real-service test support: MiniDFS (HDFS) and a Spark standalone cluster."""
from __future__ import annotations

import json
import textwrap
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from tests.support.hdfs import (
    MiniDfs,
    configure_spark_for_hdfs,
    copy_local_dir_to_hdfs,
    minidfs_unavailable_reason,
)
from tests.support.spark_standalone import SparkStandalone


def test_parquet_round_trip_on_minidfs(spark: SparkSession, tmp_path: Path) -> None:
    reason = minidfs_unavailable_reason()
    if reason:
        pytest.skip(reason)
    rows = [
        ("dev-a", datetime(2024, 1, 1, 8, 0), 412.5),
        ("dev-b", datetime(2024, 1, 1, 8, 5), 980.0),
        ("dev-a", datetime(2024, 1, 1, 8, 10), 433.25),
    ]
    df = spark.createDataFrame(rows, "device_id string, ts timestamp, co2 double")

    with MiniDfs(tmp_path / "minidfs") as dfs:
        assert dfs.uri.startswith("hdfs://127.0.0.1:")
        configure_spark_for_hdfs(spark)
        path = f"{dfs.uri}/iot-lorawan/raw/x"
        df.write.parquet(path)
        back = spark.read.parquet(path).orderBy("ts")
        assert [tuple(r) for r in back.collect()] == rows

        local = tmp_path / "local"
        (local / "sub").mkdir(parents=True)
        (local / "a.txt").write_text("alpha\n")
        (local / "sub" / "b.txt").write_text("beta\n")
        copy_local_dir_to_hdfs(spark, local, f"{dfs.uri}/copied")
        texts = spark.read.text(f"{dfs.uri}/copied", recursiveFileLookup=True).collect()
        assert sorted(r.value for r in texts) == ["alpha", "beta"]


def test_submit_with_py_files_to_standalone_cluster(tmp_path: Path) -> None:
    # A module that exists only inside the zip, so the executors must import it from --py-files.
    deps = tmp_path / "deps.zip"
    with zipfile.ZipFile(deps, "w") as zf:
        zf.writestr("tinymod.py", "def score(x):\n    return x * x + 1\n")
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent("""
        import json
        from pyspark.sql import SparkSession

        def on_executor(x):
            import tinymod
            return (tinymod.score(x), tinymod.__file__)

        spark = SparkSession.builder.appName("support-smoke").getOrCreate()
        results = spark.sparkContext.parallelize(range(6), 3).map(on_executor).collect()
        print("RESULT " + json.dumps({
            "master": spark.sparkContext.master,
            "scores": [s for s, _ in results],
            "module_files": sorted({f for _, f in results}),
        }))
        spark.stop()
    """))

    with SparkStandalone(tmp_path / "cluster") as cluster:
        master_url = cluster.master_url
        assert master_url.startswith("spark://127.0.0.1:")
        proc = cluster.submit(app, py_files=[deps], timeout=240)

    assert proc.returncode == 0, proc.stderr[-4000:]
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert result["master"] == master_url
    assert result["scores"] == [1, 2, 5, 10, 17, 26]
    assert result["module_files"] and all("deps.zip" in f for f in result["module_files"])
