#!/usr/bin/env bash
# Launch the batch analysis (start-spark.py) with spark-submit; see --help.
set -euo pipefail
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JOB_NAME="analysis"
JOB_SCRIPT="start-spark.py"
JOB_TITLE="Aggregate raw indoor-air readings and publish the statistics to PostgreSQL."
JOB_USES_POSTGRES=true
# shellcheck source=batch/launcher.sh
source "$PROJECT_ROOT/batch/launcher.sh"
launcher_main "$@"
