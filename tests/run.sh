#!/usr/bin/env bash
# The test command: devtools/dev_env.py installs what the tests need (virtualenv with the dev
# extras), gives them a folder for a throwaway PostgreSQL, and runs pytest.
# Extra arguments go to pytest.
set -euo pipefail
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for candidate in "${PYTHON:-}" python3 python; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        exec "$candidate" "$PROJECT_ROOT/devtools/dev_env.py" tests "$@"
    fi
done
echo "$(basename "$0"): Python 3.10 or newer is required (or set PYTHON)" >&2
exit 9  # EXIT_MISSING_PREREQUISITE of batch/core/errors.py (tests/test_errors.py checks it)
