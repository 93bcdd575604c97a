"""`python -m batch.report --schema S --output-dir DIR [--run-id N]`: the HTML report of a run,
from the published tables (batch/report/page.py).

Exit codes: see batch/core/errors.py (0 written, 2 bad configuration or an unknown run, 4 the
tables cannot be read or the file cannot be written, 130/143 stopped by SIGINT/SIGTERM).
"""
from __future__ import annotations

import sys
from pathlib import Path

from batch.core import cli
from batch.env_variables import known_variables
from batch.report.settings import REPORT_JOB

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    settings = cli.load_settings(REPORT_JOB, sys.argv[1:], PROJECT_ROOT, known_variables)
    # Once the settings are checked: the page's charts and queries take a while to import.
    from batch.report.page import write_report
    target = settings.target
    print(write_report(target, target.schema, settings.report_dir, settings.run_id))
    return 0


if __name__ == "__main__":
    cli.run_main(main)
