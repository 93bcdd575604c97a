#!/usr/bin/env bash
# The benchmark command, run by hand (never in CI): sets up what it needs as tests/run.sh does
# (virtualenv with the dev extras, PostgreSQL JDBC driver), then runs tests/bench/run.py.
# Arguments go to it: tests/bench/run.sh --help.
set -euo pipefail
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
JOB_NAME="benchmark"
JOB_SCRIPT="start-spark.py"
JOB_TITLE="benchmark"
JOB_USES_POSTGRES=true
# shellcheck source=../../batch/launcher.sh
source "$PROJECT_ROOT/batch/launcher.sh"

cd "$PROJECT_ROOT"
check_java
ensure_venv
"$VENV_DIR/bin/python" -c 'import batch.local_postgres as p; p.find_server_binaries()' ||
    die 3 "the benchmark needs the PostgreSQL server binaries"
# The seed-style reference writes through Spark's JDBC writer: it needs the driver jar.
mapfile -t driver_args < <(POSTGRES_JDBC_PACKAGE="org.postgresql:postgresql:42.7.4" jdbc_driver_args)
[[ "${driver_args[0]:-}" = --jars ]] || die 3 "cannot find or fetch the PostgreSQL JDBC driver jar"
export BENCH_JDBC_JAR="${driver_args[1]}"
exec "$VENV_DIR/bin/python" -m tests.bench.run "$@"
