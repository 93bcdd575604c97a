#!/usr/bin/env bash
# The benchmark command, run by hand (never in CI): sets up what it needs as tests/run.sh does
# (virtualenv with the dev extras, PostgreSQL JDBC driver), then runs tests/bench/run.py.
# Arguments go to it: tests/bench/run.sh --help.
set -euo pipefail
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
JOB_NAME="benchmark"
JOB_SCRIPT="start-spark.py"
JOB_TITLE="benchmarks"
JOB_USES_POSTGRES=true
# shellcheck source=../../batch/launcher.sh
source "$PROJECT_ROOT/batch/launcher.sh"

cd "$PROJECT_ROOT"
prepare_development_tools
# The seed-style reference writes through Spark's JDBC writer: it needs the driver jar.
[[ -n "${POSTGRES_JDBC_JAR:-}" ]] || die 3 "cannot find or fetch the PostgreSQL JDBC driver jar"
exec "$VENV_DIR/bin/python" -m tests.bench.run "$@"
