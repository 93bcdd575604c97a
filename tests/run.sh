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
check_java
ensure_venv
"$VENV_DIR/bin/python" -c 'import batch.local_postgres as p; p.find_server_binaries()' ||
    die 3 "the tests need the PostgreSQL server binaries"

# The JDBC driver jar, from the Maven cache (fetched when missing).
mapfile -t driver_args < <(POSTGRES_JDBC_PACKAGE="org.postgresql:postgresql:42.7.4" jdbc_driver_args)
if [[ "${driver_args[0]}" = --jars ]]; then
    export POSTGRES_JDBC_JAR="${driver_args[1]}"
fi

TEST_POSTGRES_DIR="$(mktemp -d "${TMPDIR:-/tmp}/indoor-air-tests-pg.XXXXXX")"
export TEST_POSTGRES_DIR
cleanup() {
    "$VENV_DIR/bin/python" -m batch.local_postgres stop --dir "$TEST_POSTGRES_DIR" >/dev/null 2>&1 || true
    rm -rf "$TEST_POSTGRES_DIR"
}
trap cleanup EXIT

"$VENV_DIR/bin/python" -m pytest "$@"
