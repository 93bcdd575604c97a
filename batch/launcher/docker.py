"""Docker mode: copy the job into the Spark container, run it there with jobrun.py, copy its
summary and file out.

Every container path given to `docker exec` is relative to its working directory (-w).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from batch.core import atomic_file, errors
from batch.core.errors import EXIT_DOCKER, EXIT_MISSING_PREREQUISITE, first_line
from batch.launcher import submit
from batch.launcher.jobrun import STOP_SIGNALS
from batch.launcher.launch import JOBS, Launch, LauncherError, Request
from batch.launcher.options import LAUNCHER_ONLY_VARIABLES, LauncherSettings

JOBRUN = "jobrun.py"


def container_problem(docker: Sequence[str], container: str) -> str | None:
    """None when the container is running; otherwise why not."""
    try:
        answer = subprocess.run([*docker, "inspect", "--format", "{{.State.Running}}", container],
                                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return f"the docker command '{docker[0]}' is not installed (DOCKER_CMD={' '.join(docker)})"
    except subprocess.TimeoutExpired:
        return f"no running container {container} ({shlex.join(docker)} inspect did not answer in 60 s)"
    if answer.returncode != 0:
        # docker's messages may start with a blank line.
        said = first_line(answer.stdout + "\n" + answer.stderr)
        return f"no running container {container} ({shlex.join([*docker, 'inspect'])} said: {said})"
    if answer.stdout.strip() != "true":
        return f"the container {container} is not running"
    return None


def _docker(state: Launch, *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*state.docker, *args], stdin=subprocess.DEVNULL, text=True,
                          capture_output=capture)


def _exec(state: Launch, command: list[str], *, workdir: str = "", environment: list[str] | None = None,
          user: str = "", detach: bool = False, capture: bool = False,
          to_stderr: bool = False) -> subprocess.CompletedProcess[str]:
    argv = submit.docker_exec_argv(state.docker, state.settings.spark_master_container, command,
                                   workdir=workdir, environment=environment or [], user=user, detach=detach)
    if to_stderr:
        sys.stdout.flush()
        return subprocess.run(argv, stdin=subprocess.DEVNULL, text=True, stdout=sys.stderr)
    return subprocess.run(argv, stdin=subprocess.DEVNULL, text=True, capture_output=capture)


def _jobrun(state: Launch, action: str) -> list[str]:
    return [state.settings.spark_container_python, JOBRUN, action]


def documented_variables(*env_files: Path | None) -> set[str]:
    names: set[str] = set()
    for env_file in env_files:
        if env_file is not None and env_file.is_file():
            names |= set(dotenv_values(env_file))
    return names


def _container_environment(state: Launch, stage: Path) -> list[str]:
    """`-e NAME` for each of the job's variables set in the launcher's environment: docker takes
    the value from its own environment, so no value (the password included) is ever on a
    command line. A password file on this machine is copied into the run folder's secrets/,
    which jobrun.py deletes when the job ends."""
    documented = documented_variables(state.project_root / "env" / "spark.env", state.env_file)
    names = submit.passed_variable_names(state.exported_at_start, documented, LAUNCHER_ONLY_VARIABLES)
    password_file = state.environ.get("POSTGRES_PASSWORD_FILE", "")
    if not state.job.uses_postgres or not password_file:
        return names
    if Path(password_file).is_file():
        (stage / "secrets").mkdir(mode=0o700)
        secret = stage / "secrets" / "postgres-password"
        secret.touch(mode=0o600)
        shutil.copyfile(password_file, secret)
        return [*names, "POSTGRES_PASSWORD_FILE=secrets/postgres-password"]
    if "POSTGRES_PASSWORD_FILE" in state.exported_at_start:
        return [*names, "POSTGRES_PASSWORD_FILE"]  # not a file here: a path in the container
    return names


def run_in_container(state: Launch) -> int:
    settings, job = state.settings, state.job
    container = settings.spark_master_container
    why = container_problem(state.docker, container)
    if why is not None:
        raise LauncherError(EXIT_MISSING_PREREQUISITE,
                            f"docker mode: {why}; start the platform's containers, or use --local")
    name = f"{job.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}{time.monotonic_ns() % 100000}"
    run = f"{settings.spark_container_workdir.rstrip('/')}/{name}"
    summary_target = state.job_settings.summary_json if state.job_settings is not None else ""
    output_target = str(job.output_path(state.job_settings)) if job.output_path else ""
    with tempfile.TemporaryDirectory(prefix=f"indoor-air-{job.name}.") as staging:
        stage = Path(staging) / name
        stage.mkdir(mode=0o755)
        (stage / "env").mkdir()
        if state.env_file is not None:
            shutil.copy(state.env_file, stage / "env" / "spark.env")
        else:
            (stage / "env" / "spark.env").touch()
        # jobrun.py with the two modules it imports (standard library only otherwise).
        for source in (state.project_root / job.script, state.project_root / "env" / "log4j2.properties",
                       Path(__file__).with_name(JOBRUN), Path(atomic_file.__file__), Path(errors.__file__)):
            shutil.copy(source, stage)
        environment = _container_environment(state, stage)
        submit.build_py_files_zip(Path(__file__).resolve().parent.parent, stage / "batch.zip")
        command = submit.spark_submit_argv(
            submit=settings.spark_container_submit, master=settings.spark_master_url, job_name=job.name,
            driver_memory=settings.spark_driver_memory, show_progress=False,
            log4j_config="log4j2.properties", py_files="batch.zip", entry=job.script,
            executor_python=settings.spark_container_python,
            job_args=submit.container_job_args(
                state.request.job_args, env_file_given=state.env_file_given,
                output_flag=job.output_flag, output_name=Path(output_target).name))
        if (_exec(state, ["mkdir", "-p", settings.spark_container_workdir.lstrip("/")], workdir="/").returncode
                or _docker(state, "cp", str(stage), f"{container}:{run}").returncode):
            raise LauncherError(EXIT_DOCKER, f"copying the {job.name} job into {container}:{run} failed "
                                             "(see the message above)")
    _hand_over(state, name, run)
    plan = {"run": run, "output_target": output_target, "summary_target": summary_target}
    if state.request.mode == "foreground":
        return _foreground(state, plan, environment, command)
    return _background(state, plan, environment, command)


def _hand_over(state: Launch, name: str, run: str) -> None:
    """docker cp creates root-owned files: hand them to the user the job runs as."""
    container = state.settings.spark_master_container
    user = _exec(state, ["sh", "-c", 'echo "$(id -u):$(id -g)"'], capture=True)
    if user.returncode != 0:
        raise LauncherError(EXIT_DOCKER, f"cannot run commands in the container {container}")
    owner = user.stdout.strip()
    if owner != "0:0" and _exec(state, ["chown", "-R", owner, name], user="0",
                                workdir=state.settings.spark_container_workdir).returncode:
        raise LauncherError(EXIT_DOCKER, f"cannot hand {run} over to the container's user {owner}")


def _foreground(state: Launch, plan: dict[str, str], environment: list[str], command: list[str]) -> int:
    run, container, job = plan["run"], state.settings.spark_master_container, state.job

    def stop(_number: int, _frame: object) -> None:
        # Ctrl-C ends the docker client, not the job in the container: stop the job too.
        _exec(state, _jobrun(state, "stop"), workdir=run, to_stderr=True)

    for number in STOP_SIGNALS:
        signal.signal(number, stop)
    code = _exec(state, [*_jobrun(state, "run"), "--", *command], workdir=run,
                 environment=environment).returncode
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_DFL)
    collect_results(state, plan, code)
    if code != 0:
        raise LauncherError(code, f"the {job.name} job exited with {code} in {container}; "
                                  f"its run folder is kept there: {run}")
    name = run.rsplit("/", 1)[1]
    if _exec(state, ["rm", "-rf", "--", name], workdir=state.settings.spark_container_workdir).returncode:
        print(f"{job.door}: cannot remove the run folder {run} in the container", file=sys.stderr)
    return 0


def _background(state: Launch, plan: dict[str, str], environment: list[str], command: list[str]) -> int:
    run, container, job, settings = plan["run"], state.settings.spark_master_container, state.job, state.settings
    if _exec(state, [*_jobrun(state, "start"), "--", *command], workdir=run, environment=environment,
             detach=True, capture=True).returncode:
        raise LauncherError(EXIT_DOCKER, f"starting the {job.name} job in {container} failed (see the message above)")
    deadline = time.monotonic() + 60
    while True:
        status = _exec(state, _jobrun(state, "status"), workdir=run, capture=True)
        if status.returncode != 0:
            raise LauncherError(EXIT_DOCKER, f"cannot follow the {job.name} job in {container}:{run}")
        current = status.stdout.strip()
        if current != "starting":
            break
        if time.monotonic() > deadline:
            raise LauncherError(EXIT_DOCKER, f"the {job.name} job did not start within 60 s in {container}:{run}")
        time.sleep(0.5)
    if current.startswith("exited ") and current != "exited 0":
        code = int(current.split()[1])
        _exec(state, ["tail", "-n", "20", "job.log"], workdir=run, to_stderr=True)
        raise LauncherError(code, f"the {job.name} job ended at once with exit code {code} "
                                  f"(log: {container}:{run}/job.log)")

    def shown(*command: str) -> str:
        return shlex.join(submit.docker_exec_argv(state.docker, container, list(command), workdir=run))

    print(f"""Started the {job.name} job in the container {container} (master {settings.spark_master_url}), in the background.
  run folder (in the container): {run}
  log:    {run}/job.log
  follow: {shown('tail', '-f', 'job.log')}
  status: {shown(*_jobrun(state, 'status'))}
  stop:   {shown(*_jobrun(state, 'stop'))}""")
    if plan["summary_target"] or job.output_path:
        _start_copy_out_watcher(state, plan)
    return 0


def _start_copy_out_watcher(state: Launch, plan: dict[str, str]) -> None:
    """A detached watcher that waits for the background job, then copies its results out."""
    job, settings = state.job, state.settings
    log_dir, run_dir = Path(settings.log_dir), Path(settings.run_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    name = plan["run"].rsplit("/", 1)[1]
    log, pid_file = log_dir / f"{name}.copy-out.log", run_dir / f"{job.name}.copy-out.pid"
    with log.open("wb") as output:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "batch.launcher.docker", str(state.project_root), job.name,
             json.dumps({**plan, "docker": state.docker, "container": settings.spark_master_container,
                         "python": settings.spark_container_python})],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            env=state.environ)
    pid_file.write_text(f"{watcher.pid}\n")
    what = [f"its file ({plan['output_target']})"] if job.output_path else []
    if plan["summary_target"]:
        what.append(f"its summary ({plan['summary_target']})")
    print(f"""  copy-out: when the job has succeeded, {' and '.join(what)} is copied here by a watcher
            (pid {watcher.pid}, pid file {pid_file}, log {log})""")


def _copy_out(state: Launch, source: str, target: Path) -> bool:
    """container:source to target on this machine, atomically (a temporary file renamed over it)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    temporary = target.with_name(f".{target.name}.copy-{os.getpid()}")
    if _docker(state, "cp", f"{state.settings.spark_master_container}:{source}", str(temporary)).returncode == 0:
        os.replace(temporary, target)
        return True
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.unlink(missing_ok=True)
    return False


def collect_results(state: Launch, plan: dict[str, str], code: int) -> None:
    """After the job ended with `code`: its summary to its target, and, if it succeeded, its
    file out of the container (then deleted there)."""
    job, container, run = state.job, state.settings.spark_master_container, plan["run"]
    if not plan["summary_target"] and not (job.output_path and code == 0):
        return
    with tempfile.TemporaryDirectory(prefix=f"indoor-air-{job.name}-results.") as scratch:
        copied = Path(scratch) / "summary.json"
        if _docker(state, "cp", f"{container}:{run}/summary.json", str(copied)).returncode != 0:
            if code != 0:
                return  # a job that failed early may have written no summary
            raise LauncherError(EXIT_DOCKER, f"the {job.name} job succeeded, but copying its summary out "
                                             f"of {container}:{run} failed")
        summary = json.loads(copied.read_text(encoding="utf-8"))
        if job.output_path:
            # The file's path on this machine, not in the container's run folder.
            summary["output"] = plan["output_target"]
        if plan["summary_target"]:
            _write_summary(state, Path(plan["summary_target"]), summary)
    if not job.output_path or code != 0:
        return
    output = f"output/{Path(plan['output_target']).name}"
    target = Path(plan["output_target"])
    if not _copy_out(state, f"{run}/{output}", target):
        raise LauncherError(EXIT_DOCKER, f"the {job.name} job succeeded, but copying {container}:{run}/{output} "
                                         f"to {target} failed; the file is still in the container")
    print(f"Copied {container}:{run}/{output} to {target}", flush=True)
    if _exec(state, ["rm", "-f", "--", output], workdir=run).returncode:
        print(f"{job.door}: cannot delete {run}/{output} in the container", file=sys.stderr)


def _write_summary(state: Launch, target: Path, summary: dict[str, Any]) -> None:
    try:
        atomic_file.write_atomically(target, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    except OSError as error:
        print(f"{state.job.door}: cannot write the summary to {target}: {error.strerror}", file=sys.stderr)


def watch(project_root: Path, job_name: str, plan_text: str) -> int:
    """The background copy-out: waits for the job, then collects its results."""
    plan = json.loads(plan_text)
    job = JOBS[job_name]
    settings = LauncherSettings(**{
        **{field.name: "" for field in dataclasses.fields(LauncherSettings)},
        "docker_cmd": " ".join(plan["docker"]), "spark_master_container": plan["container"],
        "spark_container_python": plan["python"]})
    state = Launch(job, project_root, Request(), dict(os.environ), frozenset(), settings)
    run, container = plan["run"], plan["container"]
    print(f"Waiting for the {job.name} job in {container}:{run} ...", flush=True)
    code = _exec(state, _jobrun(state, "wait"), workdir=run).returncode
    if code != 0:
        print(f"The {job.name} job exited with {code}: nothing copied out", flush=True)
    try:
        collect_results(state, plan, code)
    except LauncherError as error:
        print(f"{job.door}: {error}", file=sys.stderr)
        return error.code
    return code


if __name__ == "__main__":
    sys.exit(watch(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
