#!/usr/bin/env bash
# The test command: installs what the tests need (virtualenv, package, JDBC driver), gives
# them a folder for a throwaway PostgreSQL (started by tests/conftest.py, stopped and
# removed at the end even on failure), and runs pytest. Extra arguments go to pytest.
set -euo pipefail
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOB_NAME="tests"
JOB_SCRIPT="start-spark.py"
JOB_TITLE="tests"
JOB_USES_POSTGRES=true
# shellcheck source=../batch/launcher.sh
source "$PROJECT_ROOT/batch/launcher.sh"

cd "$PROJECT_ROOT"
prepare_development_tools

TEST_POSTGRES_DIR="$(mktemp -d "${TMPDIR:-/tmp}/indoor-air-tests-pg.XXXXXX")"
export TEST_POSTGRES_DIR
cleanup() {
    "$VENV_DIR/bin/python" -m devtools.local_postgres stop --dir "$TEST_POSTGRES_DIR" >/dev/null 2>&1 || true
    rm -rf "$TEST_POSTGRES_DIR"
}
trap cleanup EXIT

"$VENV_DIR/bin/python" -m pytest "$@"
