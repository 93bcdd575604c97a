"""Batch analysis job: raw Parquet readings -> statistics per classroom and period -> PostgreSQL.

Launched by start-spark.sh (spark-submit), or directly with `python start-spark.py --help`.
Exit codes: 0 success, 1 unexpected error, 2 bad configuration, 3 bad input, 4 publishing failed.
"""
from __future__ import annotations

import dataclasses
import signal
import sys
from pathlib import Path

from batch import analysis, cli
from batch.session import build_spark_session, jdbc_driver_conf

PROJECT_ROOT = Path(__file__).resolve().parent
DESCRIPTION = ("Aggregate raw indoor-air readings per institute, classroom, ISO week and month, "
               "and publish the statistics to PostgreSQL atomically.")


def main() -> int:
    settings = cli.load_settings(analysis.AnalysisSettings, analysis.ANALYSIS_OPTIONS,
                                 "start-spark.py", DESCRIPTION, sys.argv[1:], PROJECT_ROOT)
    analysis.check_settings(settings)
    summary = analysis.RunSummary(job="analysis", input_path=settings.raw_data_path)
    master = cli.spark_master_unless_submitted(settings.spark_master)
    spark = build_spark_session(
        "indoor-air-analysis", master,
        jdbc_driver_conf(settings.postgres_jdbc_jar, settings.postgres_jdbc_package) if master else {})
    # `kill` (SIGTERM) unwinds like Ctrl-C, so a stopped run is recorded as failed at once
    # rather than found abandoned by the next run.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        analysis.run_analysis(spark, settings, summary)
    finally:
        report = dataclasses.asdict(summary)
        print(cli.format_summary("indoor-air analysis", report), flush=True)
        if settings.summary_json:
            cli.write_json_atomically(Path(settings.summary_json), report)
        spark.stop()
    return 0


if __name__ == "__main__":
    cli.run_main(main)
