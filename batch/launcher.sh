# shellcheck shell=bash
# Shared by start-spark.sh and spark-downloader.sh (sourced, never run): option parsing,
# set-up checks, the choice between local and docker mode, and the spark-submit command line.
# The caller sets PROJECT_ROOT, JOB_NAME, JOB_SCRIPT, JOB_TITLE and JOB_USES_POSTGRES
# (true/false), then calls `launcher_main "$@"`. A job that writes a file on the driver's disk
# also sets JOB_OUTPUT_OPTION and JOB_OUTPUT_VARIABLE (the option and variable naming that
# file), so that docker mode can copy the file out of the container.
#
# What the launcher expects of a job: `--check-config` validates the options and exits;
# `--summary-json PATH` writes the run summary, where a job that writes a file reports its
# path as "output".

VENV_DIR="${VENV_DIR:-$PROJECT_ROOT/.venv}"
DEMO_RAW_DATA_PATH="$PROJECT_ROOT/data/demo/raw"
DEMO_POSTGRES_DIR="$PROJECT_ROOT/.demo/postgres"
DEMO_READINGS="${DEMO_READINGS:-300000}"
JOB_OUTPUT_OPTION="${JOB_OUTPUT_OPTION:-}"
JOB_OUTPUT_VARIABLE="${JOB_OUTPUT_VARIABLE:-}"
# Variables the launcher itself reads (the job reads the rest of env/spark.env on its own).
LAUNCHER_VARIABLES=(SPARK_MASTER SPARK_DRIVER_MEMORY SPARK_EXECUTOR_PYTHON POSTGRES_JDBC_JAR
                    POSTGRES_JDBC_PACKAGE POSTGRES_SCHEMA POSTGRES_PASSWORD_FILE SUMMARY_JSON
                    LOG_DIR RUN_DIR SPARK_MASTER_CONTAINER SPARK_MASTER_URL DOCKER_CMD
                    SPARK_CONTAINER_WORKDIR SPARK_CONTAINER_SUBMIT SPARK_CONTAINER_PYTHON
                    ${JOB_OUTPUT_VARIABLE:+"$JOB_OUTPUT_VARIABLE"})
# Settings of the launcher, not of the job: never passed into the container. (The password
# file is passed on its own terms, see docker_environment_args.)
LAUNCHER_ONLY_VARIABLES=(BATCH_ENV_FILE SPARK_MASTER SPARK_DRIVER_MEMORY SPARK_EXECUTOR_PYTHON
                         POSTGRES_JDBC_JAR POSTGRES_PASSWORD_FILE LOG_DIR RUN_DIR
                         SPARK_MASTER_CONTAINER SPARK_MASTER_URL DOCKER_CMD SPARK_CONTAINER_WORKDIR
                         SPARK_CONTAINER_SUBMIT SPARK_CONTAINER_PYTHON)
# Exit code of a failed docker operation (copying into or out of the container, starting the job).
EXIT_DOCKER=6

launcher_usage() {
    cat <<EOF
Usage: $(basename "$0") [--background|--foreground] [--local|--docker] [--demo] [--help] [JOB OPTIONS]

$JOB_TITLE

Launcher options:
  --background   run detached (default): the job survives the launcher; the launcher prints
                 where its log is and how to follow and stop it
  --foreground   stream the output and exit with the job's exit code
  --local        local mode: spark-submit on this machine, with the project's virtualenv, to
                 SPARK_MASTER (local[*] by default; any spark://, yarn or k8s:// master works)
  --docker       docker mode: copy the job into the container SPARK_MASTER_CONTAINER and
                 spark-submit it there to SPARK_MASTER_URL (the platform's Spark cluster)
                 Neither: docker mode if that container is running, else local mode.
  --demo         embedded default: demo dataset, a local PostgreSQL managed under .demo/,
                 local Spark; runs in the foreground unless --background is given
  -h, --help     this help, then the job's own options
  JOB OPTIONS    passed to the job (listed below); checked before anything starts, an
                 unknown one exits with 2; after -- everything goes to the job

Settings come from env/spark.env (or \$BATCH_ENV_FILE), overridden by the environment.
The database password is read from POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE only.
Local mode: logs under \$LOG_DIR, pid files under \$RUN_DIR.
Docker mode: DOCKER_CMD (e.g. "sudo docker"), SPARK_MASTER_CONTAINER, SPARK_MASTER_URL,
SPARK_CONTAINER_WORKDIR (one folder per run there, with the job's log), SPARK_CONTAINER_SUBMIT,
SPARK_CONTAINER_PYTHON; the env file goes into the container, the job's variables set in
the environment are passed by name (docker exec -e NAME), never on a command line.
Exit codes of the launcher itself: 2 bad option, 3 missing prerequisite (Java, Python, a
running container), $EXIT_DOCKER a docker copy or start failed; otherwise the job's own.
EOF
}

die() {
    local code="$1"
    shift
    echo "$(basename "$0"): $*" >&2
    exit "$code"
}

note() {
    echo "$(basename "$0"): $*" >&2
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
        "$VENV_DIR/bin/python" -m pip install -e "${PROJECT_ROOT}[dev]"; } >"$VENV_DIR/install.log" 2>&1; then
        tail -n 20 "$VENV_DIR/install.log" >&2
        die 3 "installing the package into $VENV_DIR failed (see $VENV_DIR/install.log)"
    fi
    rm -f "$VENV_DIR"/.installed-*
    touch "$stamp"
}

env_file_path() {
    echo "${BATCH_ENV_FILE:-$PROJECT_ROOT/env/spark.env}"
}

load_launcher_settings() {
    local assignments
    assignments="$("$VENV_DIR/bin/python" -m batch.config "$(env_file_path)" "${LAUNCHER_VARIABLES[@]}")"
    eval "$assignments"
    # spark-submit must find the virtualenv's pyspark, and run its Python on the driver; the
    # executors run it too unless SPARK_EXECUTOR_PYTHON names another (a remote cluster's).
    SPARK_HOME="$("$VENV_DIR/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
    PYSPARK_PYTHON="${SPARK_EXECUTOR_PYTHON:-$VENV_DIR/bin/python}"
    PYSPARK_DRIVER_PYTHON="$VENV_DIR/bin/python"
    export SPARK_HOME PYSPARK_PYTHON PYSPARK_DRIVER_PYTHON
    SPARK_MASTER="${SPARK_MASTER:-local[*]}"
    SPARK_DRIVER_MEMORY="${SPARK_DRIVER_MEMORY:-2g}"
    LOG_DIR="${LOG_DIR:-logs}"
    RUN_DIR="${RUN_DIR:-run}"
    [[ "$LOG_DIR" = /* ]] || LOG_DIR="$PROJECT_ROOT/$LOG_DIR"
    [[ "$RUN_DIR" = /* ]] || RUN_DIR="$PROJECT_ROOT/$RUN_DIR"
    SPARK_MASTER_CONTAINER="${SPARK_MASTER_CONTAINER:-spark-master}"
    SPARK_MASTER_URL="${SPARK_MASTER_URL:-spark://spark-master:7077}"
    DOCKER_CMD="${DOCKER_CMD:-docker}"
    SPARK_CONTAINER_WORKDIR="${SPARK_CONTAINER_WORKDIR:-/tmp/indoor-air-batch}"
    SPARK_CONTAINER_SUBMIT="${SPARK_CONTAINER_SUBMIT:-spark-submit}"
    SPARK_CONTAINER_PYTHON="${SPARK_CONTAINER_PYTHON:-python3}"
    # "sudo docker" is two words: the command is an array.
    read -r -a DOCKER <<<"$DOCKER_CMD"
    [[ ${#DOCKER[@]} -gt 0 ]] || die 2 "DOCKER_CMD is empty"
    [[ "$SPARK_CONTAINER_WORKDIR" = /* && "$SPARK_CONTAINER_WORKDIR" != / ]] ||
        die 2 "SPARK_CONTAINER_WORKDIR must be an absolute folder other than /, got '$SPARK_CONTAINER_WORKDIR'"
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

# What the test and benchmark commands need on this machine: Java, the virtualenv with the dev
# extras, PostgreSQL's server binaries, and POSTGRES_JDBC_JAR exported when the pinned driver
# jar is (or can be fetched into) the Maven cache.
prepare_development_tools() {
    check_java
    ensure_venv
    "$VENV_DIR/bin/python" -c 'import devtools.local_postgres as p; p.find_server_binaries()' ||
        die 3 "the $JOB_TITLE need the PostgreSQL server binaries"
    local -a driver_args
    mapfile -t driver_args < <(POSTGRES_JDBC_PACKAGE="org.postgresql:postgresql:42.7.4" jdbc_driver_args)
    if [[ "${driver_args[0]}" = --jars ]]; then
        export POSTGRES_JDBC_JAR="${driver_args[1]}"
    fi
}

# In the container: a configured jar that exists here is copied along (into jars/ of the run
# folder, $1); one that does not is taken as a path inside the container; without a jar Spark
# fetches the pinned package.
container_jdbc_driver_args() {
    local run_folder="$1"
    if [[ -z "${POSTGRES_JDBC_JAR:-}" ]]; then
        printf '%s\n' --packages "${POSTGRES_JDBC_PACKAGE:-org.postgresql:postgresql:42.7.4}"
    elif [[ -f "$POSTGRES_JDBC_JAR" ]]; then
        mkdir -p "$run_folder/jars"
        cp "$POSTGRES_JDBC_JAR" "$run_folder/jars/"
        printf '%s\n' --jars "jars/$(basename "$POSTGRES_JDBC_JAR")"
    else
        printf '%s\n' --jars "$POSTGRES_JDBC_JAR"
    fi
}

# --- the run folder --------------------------------------------------------------------------
# Each run gets a fresh folder: on this machine a temporary one (removed when the job ends),
# in docker mode one under SPARK_CONTAINER_WORKDIR in the container (kept for its log).

# The project's own package, and nothing else, as the zip that --py-files ships.
build_py_files_zip() {
    "$VENV_DIR/bin/python" - "$PROJECT_ROOT/batch" "$1" <<'PYTHON'
import sys
import zipfile
from pathlib import Path

package, target = Path(sys.argv[1]), sys.argv[2]
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
    for source in sorted(package.rglob("*.py")):
        if "__pycache__" not in source.parts:
            archive.write(source, Path("batch", source.relative_to(package)).as_posix())
PYTHON
}

# job.sh runs the job inside its run folder and keeps its state there, so that the same
# commands start, follow, wait for and stop it whether it runs here or in a container.
write_job_wrapper() {
    cat >"$1" <<'SH'
#!/bin/sh
# One run of an indoor-air batch job, written into its run folder by batch/launcher.sh.
#   sh job.sh run COMMAND [ARG...]    run COMMAND in a process group of its own and wait for
#                                     it: pid in job.pid, exit code in job.exit; TERM, INT
#                                     and HUP are passed on to the group
#   sh job.sh start COMMAND [ARG...]  the same, with the output in job.log (detached runs)
#   sh job.sh status                  starting, running, exited CODE, or lost
#   sh job.sh wait                    wait for the end of the job; exit with its exit code
#   sh job.sh stop                    TERM the job's process group
# When the job ends its secrets/ folder is deleted, and with a file remove-when-done in the
# run folder, the whole folder.
here=$(dirname "$0")
action=${1:-}
[ $# -gt 0 ] && shift

alive() {
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null
}

stop_job() {
    pid=$(cat "$here/job.pid" 2>/dev/null) || return 0
    alive "$pid" || return 0
    kill -TERM -"$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
}

finish() {
    rm -rf "$here/secrets"
    echo "$1" >"$here/job.exit.tmp" && mv -f "$here/job.exit.tmp" "$here/job.exit"
    [ -f "$here/remove-when-done" ] && rm -rf "$here"
    exit "$1"
}

state() {
    if [ -f "$here/job.exit" ]; then
        echo "exited $(cat "$here/job.exit")"
    elif alive "$(cat "$here/job.wrapper" 2>/dev/null)"; then
        if [ -f "$here/job.pid" ]; then echo running; else echo starting; fi
    elif [ -f "$here/job.wrapper" ]; then
        if [ -f "$here/job.exit" ]; then echo "exited $(cat "$here/job.exit")"; else echo lost; fi
    else
        echo starting
    fi
}

case "$action" in
run)
    rm -f "$here/job.exit" "$here/job.pid"
    echo $$ >"$here/job.wrapper"
    command=${1:-}
    [ $# -gt 0 ] && shift
    if ! command -v "$command" >/dev/null 2>&1; then
        if [ -n "${SPARK_HOME:-}" ] && [ -x "$SPARK_HOME/bin/$command" ]; then
            command=$SPARK_HOME/bin/$command
        else
            echo "job.sh: $command: not found (PATH=$PATH${SPARK_HOME:+, SPARK_HOME=$SPARK_HOME})" >&2
            finish 127
        fi
    fi
    stopping=
    trap 'stopping=1; stop_job' TERM INT HUP
    if command -v setsid >/dev/null 2>&1; then
        setsid "$command" "$@" &
    else
        "$command" "$@" &
    fi
    child=$!
    echo "$child" >"$here/job.pid"
    [ -n "$stopping" ] && stop_job
    while :; do
        wait "$child"
        code=$?
        alive "$child" || break
    done
    finish "$code"
    ;;
start)
    exec sh "$0" run "$@" >"$here/job.log" 2>&1 </dev/null
    ;;
status)
    state
    ;;
wait)
    waited=0
    while :; do
        current=$(state)
        case "$current" in
        exited*) exit "${current#exited }" ;;
        lost) echo "job.sh: the job ended without leaving its exit code" >&2; exit 1 ;;
        starting) [ "$waited" -ge 120 ] && { echo "job.sh: the job did not start" >&2; exit 1; } ;;
        esac
        sleep 1
        waited=$((waited + 1))
    done
    ;;
stop)
    pid=$(cat "$here/job.pid" 2>/dev/null) || { echo "job.sh: no job was started here" >&2; exit 1; }
    if alive "$pid"; then
        stop_job
        echo "sent TERM to the job (process group $pid)"
    else
        echo "the job has already ended ($(state))"
    fi
    ;;
*)
    echo "usage: sh job.sh run|start|status|wait|stop [COMMAND...]" >&2
    exit 2
    ;;
esac
SH
}

# The value the job would get for option $1 from the command line, if given there
# (the last occurrence wins, as with argparse).
job_option_value() {
    local option="$1" found=1 index
    OPTION_VALUE=""
    for ((index = 0; index < ${#JOB_ARGS[@]}; index++)); do
        if [[ "${JOB_ARGS[index]}" == "$option" && $((index + 1)) -lt ${#JOB_ARGS[@]} ]]; then
            OPTION_VALUE="${JOB_ARGS[index + 1]}"
            found=0
        elif [[ "${JOB_ARGS[index]}" == "$option="* ]]; then
            OPTION_VALUE="${JOB_ARGS[index]#"$option="}"
            found=0
        fi
    done
    return "$found"
}

# Removes option $1 (and its value) from DOCKER_JOB_ARGS: the launcher gives it another value.
drop_docker_job_option() {
    local option="$1" index
    local -a kept=()
    for ((index = 0; index < ${#DOCKER_JOB_ARGS[@]}; index++)); do
        if [[ "${DOCKER_JOB_ARGS[index]}" == "$option" ]]; then
            index=$((index + 1))
        elif [[ "${DOCKER_JOB_ARGS[index]}" != "$option="* ]]; then
            kept+=("${DOCKER_JOB_ARGS[index]}")
        fi
    done
    DOCKER_JOB_ARGS=("${kept[@]}")
}

# --- demo ----------------------------------------------------------------------------------

prepare_demo() {
    local assignments
    "$VENV_DIR/bin/python" -m devtools.demo --output "$DEMO_RAW_DATA_PATH" --readings "$DEMO_READINGS" ||
        die 3 "generating the demo dataset failed"
    export RAW_DATA_PATH="$DEMO_RAW_DATA_PATH"
    [[ "$JOB_USES_POSTGRES" = true ]] || return 0
    assignments="$("$VENV_DIR/bin/python" -m devtools.local_postgres env --dir "$DEMO_POSTGRES_DIR")" ||
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
  $VENV_DIR/bin/python -m devtools.local_postgres stop --dir $DEMO_POSTGRES_DIR
EOF
}

# --- the spark-submit command line -----------------------------------------------------------

# Fills SUBMIT_COMMAND, the whole spark-submit command line (no secret is ever on it): on this
# machine (`local`, with the run folder $3) or inside the container (`docker`, where every
# path is relative to the run folder, the job's working directory there).
build_submit_command() {
    local where="$1" show_progress="$2" run_folder="$3"
    local submit master entry zip log4j
    local -a driver_args=() python_args=()
    if [[ "$where" = docker ]]; then
        submit="$SPARK_CONTAINER_SUBMIT"
        master="$SPARK_MASTER_URL"
        entry="$(basename "$JOB_SCRIPT")"
        zip="batch.zip"
        log4j="log4j2.properties"
        python_args=(--conf "spark.pyspark.python=$SPARK_CONTAINER_PYTHON")
        if [[ "$JOB_USES_POSTGRES" = true ]]; then
            mapfile -t driver_args < <(container_jdbc_driver_args "$run_folder")
        fi
    else
        submit="$VENV_DIR/bin/spark-submit"
        master="$SPARK_MASTER"
        entry="$PROJECT_ROOT/$JOB_SCRIPT"
        zip="$run_folder/batch.zip"
        log4j="file:$PROJECT_ROOT/env/log4j2.properties"
        if [[ "$JOB_USES_POSTGRES" = true ]]; then
            [[ -z "${POSTGRES_JDBC_JAR:-}" || -f "$POSTGRES_JDBC_JAR" ]] ||
                die 2 "POSTGRES_JDBC_JAR $POSTGRES_JDBC_JAR does not exist"
            mapfile -t driver_args < <(jdbc_driver_args)
        fi
        if [[ "$SPARK_MASTER" == local* ]]; then
            # A local run serves nobody else: Spark's driver and UI listen on loopback only.
            export SPARK_LOCAL_IP=127.0.0.1
        fi
    fi
    build_py_files_zip "$run_folder/batch.zip" || die 1 "building the zip of the batch package failed"
    SUBMIT_COMMAND=("$submit" --master "$master"
        --name "indoor-air-$JOB_NAME" --driver-memory "$SPARK_DRIVER_MEMORY"
        --conf "spark.ui.showConsoleProgress=$show_progress"
        --conf "spark.driver.extraJavaOptions=-Duser.timezone=UTC -Dlog4j2.configurationFile=$log4j"
        --conf "spark.executor.extraJavaOptions=-Duser.timezone=UTC"
        "${python_args[@]}" --py-files "$zip" "${driver_args[@]}" "$entry")
}

# --- local mode ------------------------------------------------------------------------------

new_local_run_folder() {
    LOCAL_RUN_FOLDER="$(mktemp -d "${TMPDIR:-/tmp}/indoor-air-$JOB_NAME.XXXXXX")"
}

run_foreground() {
    new_local_run_folder
    trap 'rm -rf "$LOCAL_RUN_FOLDER"' EXIT
    build_submit_command local true "$LOCAL_RUN_FOLDER"
    local code=0
    "${SUBMIT_COMMAND[@]}" "${JOB_ARGS[@]}" || code=$?
    return "$code"
}

run_background() {
    local pid_file="$RUN_DIR/$JOB_NAME.pid" log_file pid
    if [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        die 1 "the $JOB_NAME job is already running (pid $(cat "$pid_file"), pid file $pid_file)"
    fi
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    log_file="$LOG_DIR/$JOB_NAME-$(date -u +%Y%m%dT%H%M%SZ).log"
    new_local_run_folder
    build_submit_command local false "$LOCAL_RUN_FOLDER"
    write_job_wrapper "$LOCAL_RUN_FOLDER/job.sh"
    touch "$LOCAL_RUN_FOLDER/remove-when-done"
    # setsid + nohup: the job survives the launcher and the terminal that started it; job.sh
    # removes the run folder (the zip) when it ends, and passes a kill on to the job.
    nohup setsid sh "$LOCAL_RUN_FOLDER/job.sh" run "${SUBMIT_COMMAND[@]}" "${JOB_ARGS[@]}" \
        >"$log_file" 2>&1 </dev/null &
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

# --- docker mode -----------------------------------------------------------------------------

docker_text() {
    local quoted
    printf -v quoted '%q ' "${DOCKER[@]}" "$@"
    echo "${quoted% }"
}

# Succeeds when the container is running; otherwise prints why not.
container_running() {
    local answer
    if ! command -v "${DOCKER[0]}" >/dev/null 2>&1; then
        echo "the docker command '${DOCKER[0]}' is not installed (DOCKER_CMD=$DOCKER_CMD)"
        return 1
    fi
    if ! answer="$(timeout 60 "${DOCKER[@]}" inspect --format '{{.State.Running}}' \
        "$SPARK_MASTER_CONTAINER" 2>&1 </dev/null)"; then
        echo "no running container $SPARK_MASTER_CONTAINER ($(docker_text inspect) said: $(head -n 1 <<<"$answer"))"
        return 1
    fi
    if [[ "$answer" != true ]]; then
        echo "the container $SPARK_MASTER_CONTAINER is not running"
        return 1
    fi
}

# `docker exec -e NAME` for each of the job's variables set in the launcher's environment:
# docker takes the value from its own environment, so no value (the password included) is
# ever on a command line. A password file on this machine is copied into the run folder's
# secrets/, which job.sh deletes when the job ends.
docker_environment_args() {
    local run_folder="$1" env_file="$2" name
    local -A exported=() launcher_only=()
    for name in "${EXPORTED_AT_START[@]}"; do
        exported["$name"]=1
    done
    for name in "${LAUNCHER_ONLY_VARIABLES[@]}"; do
        launcher_only["$name"]=1
    done
    # The job's variables: those of the project's env file and of the one in use.
    while read -r name; do
        if [[ -n "${exported[$name]:-}" && -z "${launcher_only[$name]:-}" ]]; then
            printf '%s\n' -e "$name"
        fi
    done < <(sed -n 's/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}\([A-Za-z_][A-Za-z0-9_]*\)=.*/\2/p' \
        "$PROJECT_ROOT/env/spark.env" "$env_file" 2>/dev/null | sort -u)
    if [[ "$JOB_USES_POSTGRES" != true || -z "${POSTGRES_PASSWORD_FILE:-}" ]]; then
        return 0
    fi
    if [[ -f "$POSTGRES_PASSWORD_FILE" ]]; then
        mkdir -m 700 "$run_folder/secrets"
        (umask 077 && cp "$POSTGRES_PASSWORD_FILE" "$run_folder/secrets/postgres-password")
        printf '%s\n' -e "POSTGRES_PASSWORD_FILE=secrets/postgres-password"
    elif [[ -n "${exported[POSTGRES_PASSWORD_FILE]:-}" ]]; then
        # Not a file here: a path inside the container (a Docker secret, say).
        printf '%s\n' -e POSTGRES_PASSWORD_FILE
    fi
}

# Where the job's summary and file go on this machine: DOCKER_SUMMARY_TARGET (empty: the
# summary is not wanted) and DOCKER_OUTPUT_TARGET (empty: where the job says, under the
# project folder). The job writes both into its run folder: the launcher replaces the summary
# path, and an absolute output path, by ones there (relative ones already are).
plan_docker_results() {
    DOCKER_SUMMARY_TARGET=""
    DOCKER_OUTPUT_TARGET=""
    DOCKER_JOB_ARGS=("${JOB_ARGS[@]}")
    if job_option_value --summary-json; then
        DOCKER_SUMMARY_TARGET="$OPTION_VALUE"
    else
        DOCKER_SUMMARY_TARGET="${SUMMARY_JSON:-}"
    fi
    if [[ -n "$DOCKER_SUMMARY_TARGET" && "$DOCKER_SUMMARY_TARGET" != /* ]]; then
        DOCKER_SUMMARY_TARGET="$PROJECT_ROOT/$DOCKER_SUMMARY_TARGET"
    fi
    drop_docker_job_option --summary-json
    DOCKER_JOB_ARGS+=(--summary-json summary.json)
    [[ -n "$JOB_OUTPUT_OPTION" ]] || return 0
    local output=""
    if job_option_value "$JOB_OUTPUT_OPTION"; then
        output="$OPTION_VALUE"
    elif [[ -n "$JOB_OUTPUT_VARIABLE" ]]; then
        output="${!JOB_OUTPUT_VARIABLE:-}"
    fi
    if [[ "$output" = /* ]]; then
        DOCKER_OUTPUT_TARGET="$output"
        drop_docker_job_option "$JOB_OUTPUT_OPTION"
        DOCKER_JOB_ARGS+=("$JOB_OUTPUT_OPTION" "output/$(basename "$output")")
    fi
}

# Copy container:$1 to $2 on this machine, atomically: into a temporary file beside $2, then
# renamed over it.
copy_out() {
    local source="$1" target="$2" temporary
    mkdir -p "$(dirname "$target")" || return 1
    temporary="$(dirname "$target")/.$(basename "$target").copy-$$"
    if "${DOCKER[@]}" cp "$SPARK_MASTER_CONTAINER:$source" "$temporary" </dev/null &&
        mv -f "$temporary" "$target"; then
        return 0
    fi
    rm -rf "$temporary"
    return 1
}

# After the job in run folder $1 ended with exit code $2: the summary to its target, and,
# if the job succeeded, its file out of the container (then deleted there).
collect_docker_results() {
    local run="$1" code="$2" scratch output source target
    [[ -n "$DOCKER_SUMMARY_TARGET" || ( -n "$JOB_OUTPUT_OPTION" && "$code" -eq 0 ) ]] || return 0
    scratch="$(mktemp -d "${TMPDIR:-/tmp}/indoor-air-$JOB_NAME-results.XXXXXX")"
    if ! "${DOCKER[@]}" cp "$SPARK_MASTER_CONTAINER:$run/summary.json" "$scratch/summary.json" </dev/null; then
        rm -rf "$scratch"
        [[ "$code" -ne 0 ]] && return 0  # a job that failed early may have written no summary
        die "$EXIT_DOCKER" "the $JOB_NAME job succeeded, but copying its summary out of $SPARK_MASTER_CONTAINER:$run failed"
    fi
    if [[ -n "$DOCKER_SUMMARY_TARGET" ]] && ! {
        mkdir -p "$(dirname "$DOCKER_SUMMARY_TARGET")" &&
            cp "$scratch/summary.json" "$DOCKER_SUMMARY_TARGET.tmp-$$" &&
            mv -f "$DOCKER_SUMMARY_TARGET.tmp-$$" "$DOCKER_SUMMARY_TARGET"
    }; then
        note "cannot write the summary to $DOCKER_SUMMARY_TARGET"
    fi
    if [[ -z "$JOB_OUTPUT_OPTION" || "$code" -ne 0 ]]; then
        rm -rf "$scratch"
        return 0
    fi
    output="$("$VENV_DIR/bin/python" -c 'import json, sys
print(json.load(open(sys.argv[1], encoding="utf-8")).get("output") or "")' "$scratch/summary.json")"
    rm -rf "$scratch"
    [[ -n "$output" ]] || die "$EXIT_DOCKER" "the $JOB_NAME job succeeded but its summary names no output file"
    if [[ "$output" = /* ]]; then
        source="$output"
        target="${DOCKER_OUTPUT_TARGET:-$output}"
    else
        source="$run/$output"
        target="${DOCKER_OUTPUT_TARGET:-$PROJECT_ROOT/$output}"
    fi
    copy_out "$source" "$target" ||
        die "$EXIT_DOCKER" "the $JOB_NAME job succeeded, but copying $SPARK_MASTER_CONTAINER:$source to $target failed; the file is still in the container"
    echo "Copied $SPARK_MASTER_CONTAINER:$source to $target"
    # Relative to the run folder where it can be (docker exec paths are, see run_in_container).
    "${DOCKER[@]}" exec -w "$run" "$SPARK_MASTER_CONTAINER" rm -f -- "$output" </dev/null ||
        note "cannot delete $source in the container"
}

# The background copy-out: waits for the job in run folder $1, then collects its results.
# Runs detached (see run_in_container), in a shell of its own that sources this file.
watch_docker_job() {
    local run="$1" code=0
    DOCKER_OUTPUT_TARGET="$2"
    DOCKER_SUMMARY_TARGET="$3"
    echo "Waiting for the $JOB_NAME job in $SPARK_MASTER_CONTAINER:$run ..."
    "${DOCKER[@]}" exec -w "$run" "$SPARK_MASTER_CONTAINER" sh job.sh wait </dev/null || code=$?
    if [[ "$code" -ne 0 ]]; then
        echo "The $JOB_NAME job exited with $code: nothing copied out"
    fi
    collect_docker_results "$run" "$code"
    exit "$code"
}

# Copy the job into the container and run it there ($1: foreground or background); exits
# with the job's exit code (foreground) or once it has started (background).
run_in_container() {
    local mode="$1" why name user code=0 state deadline env_file
    local -a env_args exec_args
    why="$(container_running)" || die 3 "docker mode: $why; start the platform's containers, or use --local"
    name="$JOB_NAME-$(date -u +%Y%m%dT%H%M%SZ)-$$$RANDOM"
    DOCKER_RUN="${SPARK_CONTAINER_WORKDIR%/}/$name"
    # The run folder as it goes into the container, staged here.
    DOCKER_STAGE="$(mktemp -d "${TMPDIR:-/tmp}/indoor-air-$JOB_NAME.XXXXXX")"
    trap 'rm -rf "$DOCKER_STAGE"' EXIT
    env_file="$(env_file_path)"
    plan_docker_results
    if job_option_value --env-file; then
        env_file="$OPTION_VALUE"
        drop_docker_job_option --env-file
        DOCKER_JOB_ARGS+=(--env-file env/spark.env)
    fi
    chmod 755 "$DOCKER_STAGE"
    mkdir "$DOCKER_STAGE/env"
    if [[ -f "$env_file" ]]; then
        cp "$env_file" "$DOCKER_STAGE/env/spark.env"
    else
        : >"$DOCKER_STAGE/env/spark.env"
    fi
    cp "$PROJECT_ROOT/$JOB_SCRIPT" "$PROJECT_ROOT/env/log4j2.properties" "$DOCKER_STAGE/"
    write_job_wrapper "$DOCKER_STAGE/job.sh"
    mapfile -t env_args < <(docker_environment_args "$DOCKER_STAGE" "$env_file")
    build_submit_command docker false "$DOCKER_STAGE"

    # Every container path given to docker exec is relative to its working directory (-w).
    if ! { "${DOCKER[@]}" exec -w / "$SPARK_MASTER_CONTAINER" mkdir -p "${SPARK_CONTAINER_WORKDIR#/}" </dev/null &&
        "${DOCKER[@]}" cp "$DOCKER_STAGE" "$SPARK_MASTER_CONTAINER:$DOCKER_RUN" </dev/null; }; then
        die "$EXIT_DOCKER" "copying the $JOB_NAME job into $SPARK_MASTER_CONTAINER:$DOCKER_RUN failed (see the message above)"
    fi
    # docker cp creates root-owned files: hand them to the user the job runs as.
    # shellcheck disable=SC2016
    user="$("${DOCKER[@]}" exec "$SPARK_MASTER_CONTAINER" sh -c 'echo "$(id -u):$(id -g)"' </dev/null)" ||
        die "$EXIT_DOCKER" "cannot run commands in the container $SPARK_MASTER_CONTAINER"
    if [[ "$user" != 0:0 ]]; then
        "${DOCKER[@]}" exec -u 0 -w "$SPARK_CONTAINER_WORKDIR" "$SPARK_MASTER_CONTAINER" \
            chown -R "$user" "$name" </dev/null ||
            die "$EXIT_DOCKER" "cannot hand $DOCKER_RUN over to the container's user $user"
    fi

    exec_args=("${env_args[@]}" -w "$DOCKER_RUN" "$SPARK_MASTER_CONTAINER" sh job.sh)
    if [[ "$mode" = foreground ]]; then
        # Ctrl-C ends the docker client, not the job in the container: stop the job too.
        trap '"${DOCKER[@]}" exec -w "$DOCKER_RUN" "$SPARK_MASTER_CONTAINER" sh job.sh stop </dev/null >&2 || true' INT TERM
        "${DOCKER[@]}" exec "${exec_args[@]}" run "${SUBMIT_COMMAND[@]}" "${DOCKER_JOB_ARGS[@]}" </dev/null ||
            code=$?
        trap - INT TERM
        collect_docker_results "$DOCKER_RUN" "$code"
        if [[ "$code" -ne 0 ]]; then
            die "$code" "the $JOB_NAME job exited with $code in $SPARK_MASTER_CONTAINER; its run folder is kept there: $DOCKER_RUN"
        fi
        "${DOCKER[@]}" exec -w "$SPARK_CONTAINER_WORKDIR" "$SPARK_MASTER_CONTAINER" rm -rf -- "$name" </dev/null ||
            note "cannot remove the run folder $DOCKER_RUN in the container"
        exit 0
    fi

    "${DOCKER[@]}" exec -d "${exec_args[@]}" start "${SUBMIT_COMMAND[@]}" "${DOCKER_JOB_ARGS[@]}" </dev/null >/dev/null ||
        die "$EXIT_DOCKER" "starting the $JOB_NAME job in $SPARK_MASTER_CONTAINER failed (see the message above)"
    deadline=$((SECONDS + 60))
    while :; do
        state="$("${DOCKER[@]}" exec -w "$DOCKER_RUN" "$SPARK_MASTER_CONTAINER" sh job.sh status </dev/null)" ||
            die "$EXIT_DOCKER" "cannot follow the $JOB_NAME job in $SPARK_MASTER_CONTAINER:$DOCKER_RUN"
        [[ "$state" = starting ]] || break
        [[ $SECONDS -lt $deadline ]] ||
            die "$EXIT_DOCKER" "the $JOB_NAME job did not start within 60 s in $SPARK_MASTER_CONTAINER:$DOCKER_RUN"
        sleep 0.5
    done
    if [[ "$state" = exited* && "$state" != "exited 0" ]]; then
        "${DOCKER[@]}" exec -w "$DOCKER_RUN" "$SPARK_MASTER_CONTAINER" tail -n 20 job.log </dev/null >&2 || true
        die "${state#exited }" "the $JOB_NAME job ended at once with exit code ${state#exited } (log: $SPARK_MASTER_CONTAINER:$DOCKER_RUN/job.log)"
    fi
    cat <<TEXT
Started the $JOB_NAME job in the container $SPARK_MASTER_CONTAINER (master $SPARK_MASTER_URL), in the background.
  run folder (in the container): $DOCKER_RUN
  log:    $DOCKER_RUN/job.log
  follow: $(docker_text exec -w "$DOCKER_RUN" "$SPARK_MASTER_CONTAINER" tail -f job.log)
  status: $(docker_text exec -w "$DOCKER_RUN" "$SPARK_MASTER_CONTAINER" sh job.sh status)
  stop:   $(docker_text exec -w "$DOCKER_RUN" "$SPARK_MASTER_CONTAINER" sh job.sh stop)
TEXT
    if [[ -n "$DOCKER_SUMMARY_TARGET" || -n "$JOB_OUTPUT_OPTION" ]]; then
        start_copy_out_watcher "$name"
    fi
    exit 0
}

# A detached watcher that waits for the background job, then copies its results out.
start_copy_out_watcher() {
    local name="$1" log pid_file what
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    log="$LOG_DIR/$name.copy-out.log"
    pid_file="$RUN_DIR/$JOB_NAME.copy-out.pid"
    # shellcheck disable=SC2016
    nohup setsid bash -c 'set -euo pipefail
        PROJECT_ROOT="$1" JOB_NAME="$2" JOB_SCRIPT="$3" JOB_USES_POSTGRES="$4"
        JOB_OUTPUT_OPTION="$5" VENV_DIR="$6" DOCKER_CMD="$7" SPARK_MASTER_CONTAINER="$8"
        source "$PROJECT_ROOT/batch/launcher.sh"
        read -r -a DOCKER <<<"$DOCKER_CMD"
        watch_docker_job "$9" "${10}" "${11}"' "$(basename "$0")" \
        "$PROJECT_ROOT" "$JOB_NAME" "$JOB_SCRIPT" "$JOB_USES_POSTGRES" "$JOB_OUTPUT_OPTION" \
        "$VENV_DIR" "$DOCKER_CMD" "$SPARK_MASTER_CONTAINER" "$DOCKER_RUN" "$DOCKER_OUTPUT_TARGET" \
        "$DOCKER_SUMMARY_TARGET" >"$log" 2>&1 </dev/null &
    echo "$!" >"$pid_file"
    what="${JOB_OUTPUT_OPTION:+its file (${DOCKER_OUTPUT_TARGET:-under $PROJECT_ROOT})}"
    if [[ -n "$DOCKER_SUMMARY_TARGET" ]]; then
        what="${what:+$what and }its summary ($DOCKER_SUMMARY_TARGET)"
    fi
    cat <<TEXT
  copy-out: when the job has succeeded, $what is copied here by a watcher
            (pid $!, pid file $pid_file, log $log)
TEXT
}

# --- mode and main -----------------------------------------------------------------------------

# Sets RUN_WHERE (local or docker) from the flag given ($1, may be empty) and says why.
choose_mode() {
    local requested="$1" demo="$2" why
    if [[ -n "$requested" ]]; then
        RUN_WHERE="$requested"
        note "$RUN_WHERE mode (--$requested)"
    elif [[ "$demo" = true ]]; then
        RUN_WHERE=local
        note "local mode (--demo runs on this machine)"
    elif why="$(container_running)"; then
        RUN_WHERE=docker
        note "docker mode: the container $SPARK_MASTER_CONTAINER is running (neither --docker nor --local given)"
    else
        RUN_WHERE=local
        note "local mode: $why (neither --docker nor --local given)"
    fi
}

launcher_main() {
    local mode="background" mode_given=false demo=false where=""
    JOB_ARGS=()
    mapfile -t EXPORTED_AT_START < <(compgen -e)
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --background) mode="background"; mode_given=true ;;
            --foreground) mode="foreground"; mode_given=true ;;
            --local | --docker)
                [[ -z "$where" || "$where" = "${1#--}" ]] ||
                    die 2 "--local and --docker exclude each other"
                where="${1#--}" ;;
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
    if [[ "$demo" = true && "$where" = docker ]]; then
        die 2 "--demo runs on this machine (its database is local): it cannot be combined with --docker"
    fi
    if [[ "$demo" = true && "$mode_given" = false ]]; then
        mode="foreground"
    fi
    cd "$PROJECT_ROOT" || die 3 "cannot enter $PROJECT_ROOT"
    ensure_venv
    load_launcher_settings
    choose_mode "$where" "$demo"
    if [[ "$RUN_WHERE" = local ]]; then
        check_java
    fi
    if [[ "$demo" = true ]]; then
        prepare_demo
    fi
    # Options meant for the job are checked now, so that a typo fails here with exit 2
    # rather than in the log of a background run.
    "$VENV_DIR/bin/python" "$PROJECT_ROOT/$JOB_SCRIPT" --check-config "${JOB_ARGS[@]}" >/dev/null ||
        exit "$?"
    if [[ "$RUN_WHERE" = docker ]]; then
        run_in_container "$mode"
    fi
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
