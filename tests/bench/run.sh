#!/usr/bin/env bash
# The benchmark command, run by hand (never in CI): devtools/dev_env.py sets up what it needs
# as for the tests (virtualenv with the dev extras), plus the PostgreSQL JDBC driver that the
# seed-style reference writes through (exported as POSTGRES_JDBC_JAR), then runs
# tests/bench/run.py. Arguments go to it: tests/bench/run.sh --help.
set -euo pipefail
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
for candidate in "${PYTHON:-}" python3 python; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        exec "$candidate" "$PROJECT_ROOT/devtools/dev_env.py" bench "$@"
    fi
done
echo "$(basename "$0"): Python 3.10 or newer is required (or set PYTHON)" >&2
exit 9  # EXIT_MISSING_PREREQUISITE of batch/core/errors.py
