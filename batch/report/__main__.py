"""`python -m batch.report --schema S --output-dir DIR [--run-id N]`: see batch/report/page.py."""
from __future__ import annotations

from batch.core import cli
from batch.report.page import main

if __name__ == "__main__":
    cli.run_main(main)
