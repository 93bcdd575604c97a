"""Raw-data download job: raw Parquet readings -> filtered, ordered, single CSV or Parquet file.

Launched by spark-downloader.sh (spark-submit), or directly with `python spark-downloader.py --help`.
Exit codes: see batch/core/errors.py (0 success, 2 bad configuration - unknown profile or
institute included, 3 bad input or no matching reading, 5 writing the file failed, 130/143
stopped by SIGINT/SIGTERM). The previous output file is left as it was whenever the exit
code is not 0.
"""
from __future__ import annotations

import sys
from pathlib import Path

from batch.core import cli
from batch.download.job import DownloadSummary, run_download
from batch.download.settings import DOWNLOADER_JOB
from batch.core.session import build_spark_session
from batch.env_variables import known_variables

PROJECT_ROOT = Path(__file__).resolve().parent


def main() -> int:
    settings = cli.load_settings(DOWNLOADER_JOB, sys.argv[1:], PROJECT_ROOT, known_variables)
    summary = DownloadSummary.for_settings(settings)
    spark = build_spark_session("indoor-air-download", settings.spark_master)
    return cli.run_and_report(spark, "indoor-air download",
                              lambda: run_download(spark, settings, summary),
                              summary.as_dict, settings.summary_json)


if __name__ == "__main__":
    cli.run_main(main)
