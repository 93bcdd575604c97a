#!/usr/bin/env bash
# Launch the raw-data download (spark-downloader.py) with spark-submit; see --help.
set -euo pipefail
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JOB_NAME="downloader"
JOB_SCRIPT="spark-downloader.py"
JOB_TITLE="Export raw indoor-air readings (filtered by profile, institute, classroom, time) as one ordered CSV or Parquet file."
JOB_USES_POSTGRES=false
# The file the job writes on the driver's disk (docker mode copies it out of the container).
JOB_OUTPUT_OPTION="--output"
JOB_OUTPUT_VARIABLE="DOWNLOAD_OUTPUT"
# shellcheck source=batch/launcher.sh
source "$PROJECT_ROOT/batch/launcher.sh"
launcher_main "$@"
