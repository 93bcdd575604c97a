"""`python -m batch.report --schema S --output-dir DIR [--run-id N]`: the HTML report of a run,
from the published tables (batch/report/page.py).

Declared as the jobs' are (batch.core.config Options, a batch.core.cli JobDefinition), and
light: `--help` and a mistyped option are answered without importing the page's charts
and catalog code, nor pyspark. Exit codes: batch/core/errors.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from batch.core import cli
from batch.core.config import POSTGRES_OPTIONS, REPORT_DIR_OPTION, Option, settings_type
from batch.core.postgres import PostgresTarget
from batch.env_variables import known_variables

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REPORT_OPTIONS: tuple[Option, ...] = POSTGRES_OPTIONS + (REPORT_DIR_OPTION,)
# One field per option, and the run to report on (None: the latest successful one).
ReportSettings = settings_type("ReportSettings", REPORT_OPTIONS, extra=(("run_id", int, None),))


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
    PostgresTarget.of,  # reading the password raises when there is none
    _report_arguments)


def main() -> int:
    settings = cli.load_settings(REPORT_JOB, sys.argv[1:], PROJECT_ROOT, known_variables)
    # Once the settings are checked: the page's charts and queries take a while to import.
    from batch.report.page import write_report
    target = PostgresTarget.of(settings)
    print(write_report(target, target.schema, settings.report_dir, settings.run_id))
    return 0


if __name__ == "__main__":
    cli.run_main(main)
