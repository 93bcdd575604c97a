"""What the jobs produce with local Spark in this process: what the cluster runs must equal.

The analysis publishes into a schema of its own, read back row for row (tests/independent.py);
the export is read back as text.
"""
from __future__ import annotations

import re
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
from pyspark.sql import SparkSession

from batch.analysis.statistics import GROUPINGS
from batch.analysis.job import ANALYSIS_OPTIONS, AnalysisSettings, RunSummary, run_analysis
from batch.core.config import Secret, resolve_options, settings_from
from batch.download.job import DownloadSummary, run_download
from batch.download.settings import load_download_settings
from devtools.local_postgres import LocalPostgres
from batch.core.postgres import PostgresTarget
from tests import independent

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TABLES = [grouping.table for grouping in GROUPINGS]
Tables = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class LocalResults:
    raw_folder: Path
    tables: Tables
    exports: dict[str, str]  # device profile -> the CSV exported with --profile PROFILE


def job_variables() -> set[str]:
    """Every variable env/spark.env documents: tests clear them from the jobs' environment."""
    text = (PROJECT_ROOT / "env" / "spark.env").read_text()
    return set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", text, re.MULTILINE)) | {"BATCH_ENV_FILE"}


def postgres_target(server: LocalPostgres, schema: str) -> PostgresTarget:
    return PostgresTarget(host=server.host, port=server.port, database=server.database, user=server.user,
                          password=Secret(server.password()), schema=schema, connect_attempts=2,
                          lock_timeout_s=30.0)


def connect(target: PostgresTarget) -> Any:
    return psycopg2.connect(host=target.host, port=target.port, dbname=target.database,
                            user=target.user, password=target.password.reveal())


def published(target: PostgresTarget) -> Tables:
    with closing(connect(target)) as conn:
        return {table: independent.published_table(conn, target.schema, table) for table in TABLES}


def assert_tables_equal(actual: Tables, expected: Tables) -> None:
    """Row for row, floats to a relative 1e-9."""
    for table in TABLES:
        independent.assert_rows_close(actual[table], expected[table])


def compute(spark: SparkSession, server: LocalPostgres, raw_folder: Path, schema: str, work_dir: Path,
            timezone: str, profiles: tuple[str, ...]) -> LocalResults:
    """Run the analysis (into `schema`) and one export per profile on `raw_folder`."""
    target = postgres_target(server, schema)
    environ = {"RAW_DATA_PATH": str(raw_folder), "BATCH_TIMEZONE": timezone, "POSTGRES_HOST": target.host,
               "POSTGRES_PORT": str(target.port), "POSTGRES_DB": target.database,
               "POSTGRES_USER": target.user, "POSTGRES_PASSWORD": target.password.reveal(),
               "POSTGRES_SCHEMA": schema}
    settings = settings_from(AnalysisSettings, resolve_options(ANALYSIS_OPTIONS, {}, environ, None))
    run_analysis(spark, settings, RunSummary(job="analysis", input_path=str(raw_folder)))
    exports = {}
    empty_env_file = work_dir / "empty.env"
    empty_env_file.write_text("")
    for profile in profiles:
        output = work_dir / f"local-{profile}.csv"
        download = load_download_settings(
            ["--profile", profile, "--output", str(output), "--env-file", str(empty_env_file)],
            PROJECT_ROOT, environ={"RAW_DATA_PATH": str(raw_folder), "BATCH_TIMEZONE": timezone})
        run_download(spark, download, DownloadSummary.for_settings(download))
        exports[profile] = output.read_text(encoding="utf-8")
    return LocalResults(raw_folder, published(target), exports)
