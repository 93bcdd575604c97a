#!/usr/bin/env bash
# Launch the raw-data download (spark-downloader.py) with spark-submit; see --help.
# A door: find Python 3.10+, then batch/launcher/bootstrap.py makes sure the virtualenv
# exists and execs the launcher (batch/launcher/main.py) in it.
set -euo pipefail
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for candidate in "${PYTHON:-}" python3 python; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        exec "$candidate" "$PROJECT_ROOT/batch/launcher/bootstrap.py" --project-root "$PROJECT_ROOT" \
            downloader "$@"
    fi
done
echo "$(basename "$0"): Python 3.10 or newer is required: install it (e.g. apt-get install python3 python3-venv) or set PYTHON" >&2
exit 9  # EXIT_MISSING_PREREQUISITE of batch/core/errors.py (tests/test_errors.py checks it)
