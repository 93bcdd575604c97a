"""build_spark_session's master: the job's SPARK_MASTER, except under spark-submit, whose own
--master applies (a job submitted by hand to another cluster must not run locally)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROBE = """
from batch.core.session import build_spark_session
spark = build_spark_session("master-probe", "local[2]")
print("MASTER=" + spark.sparkContext.master)
spark.stop()
"""


def test_spark_submits_master_wins_over_the_jobs_own(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE, encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYSPARK_PYTHON": sys.executable,
                   "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    environment.pop("PYSPARK_GATEWAY_PORT", None)
    submitted = subprocess.run(
        [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[1]", str(probe)],
        env=environment, capture_output=True, text=True, timeout=300, check=False)
    assert "MASTER=local[1]" in submitted.stdout, submitted.stdout + submitted.stderr[-2000:]
    # Run by Python itself, the job's master applies.
    plain = subprocess.run([sys.executable, str(probe)], env=environment, capture_output=True,
                           text=True, timeout=300, check=False)
    assert "MASTER=local[2]" in plain.stdout, plain.stdout + plain.stderr[-2000:]
