"""Batch analysis job: raw Parquet readings -> statistics per classroom and period -> PostgreSQL.

Launched by start-spark.sh (spark-submit), or directly with `python start-spark.py --help`.
Exit codes: see batch/core/errors.py (0 success, 2 bad configuration, 3 bad input, 4 publishing
failed, 130/143 stopped by SIGINT/SIGTERM).
"""
from __future__ import annotations

import sys
from pathlib import Path

from batch.analysis import job as analysis
from batch.core import cli
from batch.core.session import build_spark_session
from batch.env_variables import known_variables

PROJECT_ROOT = Path(__file__).resolve().parent


def main() -> int:
    settings = cli.load_settings(analysis.ANALYSIS_JOB, sys.argv[1:], PROJECT_ROOT, known_variables)
    summary = analysis.RunSummary(job="analysis", input_path=settings.raw_data_path)
    # No JDBC driver: the job publishes over its own psycopg2 connection (COPY), not Spark's writer.
    spark = build_spark_session("indoor-air-analysis", settings.spark_master)
    return cli.run_and_report(spark, "indoor-air analysis",
                              lambda: analysis.run_analysis(spark, settings, summary),
                              summary.as_dict, settings.summary_json)


if __name__ == "__main__":
    cli.run_main(main)
