"""The report's command line: its options (PostgreSQL, the report folder), the run to report
on, and the check before it reads anything.

Declared as the jobs' are (batch.core.config Options, a batch.core.cli JobDefinition), and
light: `--help` and a mistyped option are answered without importing the page's plotting
and catalog code, nor pyspark.
"""
from __future__ import annotations

import argparse

from batch.core import cli
from batch.core.config import POSTGRES_OPTIONS, REPORT_DIR_OPTION, Option, settings_type
from batch.core.postgres import PostgresTarget

REPORT_OPTIONS: tuple[Option, ...] = POSTGRES_OPTIONS + (REPORT_DIR_OPTION,)


class ReportSettings(settings_type(  # type: ignore[misc]
        "ReportSettings", REPORT_OPTIONS, extra=(("run_id", int, None),))):
    """One field per option, and the run to report on (None: the latest successful one)."""

    @property
    def target(self) -> PostgresTarget:
        return PostgresTarget.of(self)


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schema", dest="postgres_schema", metavar="SCHEMA",
                        help="short for --postgres-schema")
    parser.add_argument("--output-dir", dest="report_dir", metavar="DIR",
                        help="short for --report-dir")
    parser.add_argument("--run-id", type=int, metavar="N",
                        help="run to report on (default: the latest successful run)")


REPORT_JOB = cli.JobDefinition(
    "python -m batch.report", "Write the HTML report of a run from the published tables.",
    REPORT_OPTIONS, ReportSettings,
    lambda settings: settings.target,  # reading the password raises when there is none
    _report_arguments)
