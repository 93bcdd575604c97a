"""`python -m batch.launcher --project-root DIR JOB [ARGS...]`: see batch/launcher/main.py."""
from __future__ import annotations

import sys

from batch.launcher.main import main

sys.exit(main(sys.argv[1:]))
