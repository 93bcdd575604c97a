# shellcheck shell=bash
# Shared by start-spark.sh and spark-downloader.sh (sourced, never run): option parsing,
# set-up checks, and the spark-submit command line. The caller sets PROJECT_ROOT, JOB_NAME,
# JOB_SCRIPT, JOB_TITLE and JOB_USES_POSTGRES (true/false), then calls `launcher_main "$@"`.

VENV_DIR="${VENV_DIR:-$PROJECT_ROOT/.venv}"
DEMO_RAW_DATA_PATH="$PROJECT_ROOT/data/demo/raw"
DEMO_POSTGRES_DIR="$PROJECT_ROOT/.demo/postgres"
DEMO_READINGS="${DEMO_READINGS:-300000}"
# Variables the launcher itself reads (the job reads the rest of env/spark.env on its own).
LAUNCHER_VARIABLES=(SPARK_MASTER SPARK_DRIVER_MEMORY POSTGRES_JDBC_JAR POSTGRES_JDBC_PACKAGE POSTGRES_SCHEMA
                    LOG_DIR RUN_DIR)

launcher_usage() {
    cat <<EOF
Usage: $(basename "$0") [--background|--foreground] [--local] [--demo] [--help] [JOB OPTIONS]

$JOB_TITLE

Launcher options:
  --background   run detached (default): log under \$LOG_DIR, pid file under \$RUN_DIR
  --foreground   stream the output and exit with the job's exit code
  --local        run with the local Spark of the project's virtualenv (SPARK_MASTER)
  --demo         embedded default: demo dataset, a local PostgreSQL managed under .demo/,
                 local Spark; runs in the foreground unless --background is given
  -h, --help     this help, then the job's own options
  JOB OPTIONS    passed to the job (listed below); checked before anything starts, an
                 unknown one exits with 2; after -- everything goes to the job

Settings come from env/spark.env (or \$BATCH_ENV_FILE), overridden by the environment.
The database password is read from POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE only.
EOF
}

die() {
    local code="$1"
    shift
    echo "$(basename "$0"): $*" >&2
    exit "$code"
}

# --- set-up checks -----------------------------------------------------------------------

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python; do
        [[ -n "$candidate" ]] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    die 3 "Python 3.10 or newer is required: install it (e.g. apt-get install python3 python3-venv) or set PYTHON"
}

check_java() {
    local java_bin version
    java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
    command -v "$java_bin" >/dev/null 2>&1 ||
        die 3 "Java 17 or newer is required by Spark: install it (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
    version="$("$java_bin" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)"
    [[ "${version:-0}" -ge 17 ]] ||
        die 3 "Java 17 or newer is required by Spark, found Java ${version:-unknown} at $(command -v "$java_bin")"
}

ensure_venv() {
    local python stamp
    stamp="$VENV_DIR/.installed-$(cksum <"$PROJECT_ROOT/pyproject.toml" | cut -d ' ' -f 1)"
    [[ -f "$stamp" ]] && return 0
    python="$(find_python)"
    if [[ ! -x "$VENV_DIR/bin/python" ]]; then
        echo "Creating the virtualenv $VENV_DIR ..." >&2
        "$python" -m venv "$VENV_DIR" || die 3 "cannot create a virtualenv: install python3-venv"
    fi
    echo "Installing the package and its dependencies into $VENV_DIR (log: $VENV_DIR/install.log) ..." >&2
    if ! { "$VENV_DIR/bin/python" -m pip install --upgrade pip &&
        "$VENV_DIR/bin/python" -m pip install -e "$PROJECT_ROOT[dev]"; } >"$VENV_DIR/install.log" 2>&1; then
        tail -n 20 "$VENV_DIR/install.log" >&2
        die 3 "installing the package into $VENV_DIR failed (see $VENV_DIR/install.log)"
    fi
    rm -f "$VENV_DIR"/.installed-*
    touch "$stamp"
}

load_launcher_settings() {
    local env_file="${BATCH_ENV_FILE:-$PROJECT_ROOT/env/spark.env}" assignments
    assignments="$("$VENV_DIR/bin/python" -m batch.config "$env_file" "${LAUNCHER_VARIABLES[@]}")"
    eval "$assignments"
    # spark-submit must find the virtualenv's pyspark, and run its Python on both sides.
    SPARK_HOME="$("$VENV_DIR/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
    PYSPARK_PYTHON="$VENV_DIR/bin/python"
    PYSPARK_DRIVER_PYTHON="$VENV_DIR/bin/python"
    export SPARK_HOME PYSPARK_PYTHON PYSPARK_DRIVER_PYTHON
    SPARK_MASTER="${SPARK_MASTER:-local[*]}"
    SPARK_DRIVER_MEMORY="${SPARK_DRIVER_MEMORY:-2g}"
    LOG_DIR="${LOG_DIR:-logs}"
    RUN_DIR="${RUN_DIR:-run}"
    [[ "$LOG_DIR" = /* ]] || LOG_DIR="$PROJECT_ROOT/$LOG_DIR"
    [[ "$RUN_DIR" = /* ]] || RUN_DIR="$PROJECT_ROOT/$RUN_DIR"
}

# The PostgreSQL JDBC driver: a configured jar, else the Maven cache (fetched with mvn when
# it is there), else Spark's own --packages resolution.
jdbc_driver_args() {
    local package="${POSTGRES_JDBC_PACKAGE:-org.postgresql:postgresql:42.7.4}" group artifact version jar
    if [[ -n "${POSTGRES_JDBC_JAR:-}" ]]; then
        [[ -f "$POSTGRES_JDBC_JAR" ]] || die 2 "POSTGRES_JDBC_JAR $POSTGRES_JDBC_JAR does not exist"
        printf '%s\n' --jars "$POSTGRES_JDBC_JAR"
        return 0
    fi
    IFS=: read -r group artifact version <<<"$package"
    jar="$HOME/.m2/repository/${group//.//}/$artifact/$version/$artifact-$version.jar"
    if [[ ! -f "$jar" ]] && command -v mvn >/dev/null 2>&1; then
        mvn -q dependency:get "-Dartifact=$package" >&2 || true
    fi
    if [[ -f "$jar" ]]; then
        printf '%s\n' --jars "$jar"
    else
        printf '%s\n' --packages "$package"
    fi
}

# --- demo ----------------------------------------------------------------------------------

prepare_demo() {
    local assignments
    "$VENV_DIR/bin/python" -m batch.demo --output "$DEMO_RAW_DATA_PATH" --readings "$DEMO_READINGS" ||
        die 3 "generating the demo dataset failed"
    export RAW_DATA_PATH="$DEMO_RAW_DATA_PATH"
    [[ "$JOB_USES_POSTGRES" = true ]] || return 0
    assignments="$("$VENV_DIR/bin/python" -m batch.local_postgres env --dir "$DEMO_POSTGRES_DIR")" ||
        die 3 "starting the demo PostgreSQL failed (see the message above)"
    eval "$assignments"
    export POSTGRES_HOST POSTGRES_PORT POSTGRES_DB POSTGRES_USER POSTGRES_PASSWORD_FILE
    export POSTGRES_PASSWORD=""
}

print_demo_epilogue() {
    local schema="${POSTGRES_SCHEMA:-indoor_air}"
    cat <<EOF

Results are in PostgreSQL (schema $schema). Look at them with:
  PGPASSWORD="\$(cat $POSTGRES_PASSWORD_FILE)" psql -h $POSTGRES_HOST -p $POSTGRES_PORT -U $POSTGRES_USER -d $POSTGRES_DB -c 'SELECT institute, classroom, week_start, co2_mean, co2_share_above_high FROM $schema.latest_complete_week_by_classroom'
Stop the demo database with:
  $VENV_DIR/bin/python -m batch.local_postgres stop --dir $DEMO_POSTGRES_DIR
EOF
}

# --- running ---------------------------------------------------------------------------------

# Fills SUBMIT_COMMAND: the whole spark-submit command line (no secret is ever on it).
build_submit_command() {
    local show_progress="$1"
    local -a driver_args
    mapfile -t driver_args < <(jdbc_driver_args)
    local java_options="-Duser.timezone=UTC -Dlog4j2.configurationFile=file:$PROJECT_ROOT/env/log4j2.properties"
    if [[ "$SPARK_MASTER" == local* ]]; then
        # A local run serves nobody else: Spark's driver and UI listen on loopback only.
        export SPARK_LOCAL_IP=127.0.0.1
    fi
    SUBMIT_COMMAND=("$VENV_DIR/bin/spark-submit" --master "$SPARK_MASTER"
        --name "indoor-air-$JOB_NAME" --driver-memory "$SPARK_DRIVER_MEMORY"
        --conf "spark.ui.showConsoleProgress=$show_progress"
        --conf "spark.driver.extraJavaOptions=$java_options"
        --conf "spark.executor.extraJavaOptions=-Duser.timezone=UTC"
        "${driver_args[@]}" "$PROJECT_ROOT/$JOB_SCRIPT" "${JOB_ARGS[@]}")
}

run_foreground() {
    build_submit_command true
    local code=0
    "${SUBMIT_COMMAND[@]}" || code=$?
    return "$code"
}

run_background() {
    local pid_file="$RUN_DIR/$JOB_NAME.pid" log_file pid
    if [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        die 1 "the $JOB_NAME job is already running (pid $(cat "$pid_file"), pid file $pid_file)"
    fi
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    log_file="$LOG_DIR/$JOB_NAME-$(date -u +%Y%m%dT%H%M%SZ).log"
    build_submit_command false
    # setsid + nohup: the job survives the launcher and the terminal that started it.
    nohup setsid "${SUBMIT_COMMAND[@]}" >"$log_file" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pid_file"
    cat <<EOF
Started the $JOB_NAME job in the background (pid $pid).
  log:    $log_file
  follow: tail -f '$log_file'
  stop:   kill $pid
  pid file: $pid_file
EOF
}

launcher_main() {
    local mode="background" mode_given=false demo=false
    JOB_ARGS=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --background) mode="background"; mode_given=true ;;
            --foreground) mode="foreground"; mode_given=true ;;
            --local) ;;
            --demo) demo=true ;;
            -h | --help)
                launcher_usage
                if [[ -x "$VENV_DIR/bin/python" ]]; then
                    echo
                    "$VENV_DIR/bin/python" "$PROJECT_ROOT/$JOB_SCRIPT" --help
                fi
                exit 0 ;;
            --) shift; JOB_ARGS+=("$@"); break ;;
            *) JOB_ARGS+=("$1") ;;
        esac
        shift
    done
    if [[ "$demo" = true && "$mode_given" = false ]]; then
        mode="foreground"
    fi
    cd "$PROJECT_ROOT"
    check_java
    ensure_venv
    load_launcher_settings
    if [[ "$demo" = true ]]; then
        prepare_demo
    fi
    # Options meant for the job are checked now, so that a typo fails here with exit 2
    # rather than in the log of a background run.
    "$VENV_DIR/bin/python" "$PROJECT_ROOT/$JOB_SCRIPT" --check-config "${JOB_ARGS[@]}" >/dev/null ||
        exit "$?"
    if [[ "$mode" = "foreground" ]]; then
        local code=0
        run_foreground || code=$?
        if [[ "$demo" = true && "$JOB_USES_POSTGRES" = true && "$code" -eq 0 ]]; then
            print_demo_epilogue
        fi
        exit "$code"
    fi
    run_background
}
