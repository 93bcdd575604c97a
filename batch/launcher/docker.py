"""Docker mode: copy the job into the Spark container, run it there with jobrun.py, copy its
summary and file out.

Every container path given to `docker exec` is relative to its working directory (-w).
"""
from __future__ import annotations

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
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from dotenv import dotenv_values

from batch.core import atomic_file, errors
from batch.core.errors import EXIT_DOCKER, EXIT_MISSING_PREREQUISITE, first_line
from batch.launcher import submit
from batch.launcher.jobrun import STOP_SIGNALS
from batch.launcher.launch import LAUNCHER_ONLY_VARIABLES, Launch, LauncherError


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


@dataclass(frozen=True)
class RunFolder:
    """One run's folder in the container, and where its results go on this machine (the
    background copy-out watcher gets it as JSON)."""

    job: str
    door: str
    docker: list[str]
    container: str
    python: str  # the container's
    path: str
    summary_target: str  # "": none asked for
    output_target: str  # "": the job writes no file

    def docker_run(self, *args: str, capture: bool = False,
                   to_stderr: bool = False) -> subprocess.CompletedProcess[str]:
        if to_stderr:
            sys.stdout.flush()
        return subprocess.run([*self.docker, *args], stdin=subprocess.DEVNULL, text=True, capture_output=capture,
                              stdout=sys.stderr if to_stderr else None)

    def exec(self, command: list[str], *, workdir: str | None = None, environment: Sequence[str] = (),
             user: str = "", detach: bool = False, **output: bool) -> subprocess.CompletedProcess[str]:
        """`docker exec` in the run folder, or in `workdir` ("": the container's own)."""
        argv = submit.docker_exec_argv([], self.container, command, workdir=self.path if workdir is None else workdir,
                                       environment=environment, user=user, detach=detach)
        return self.docker_run(*argv, **output)

    def jobrun(self, action: str) -> list[str]:
        return [self.python, "jobrun.py", action]


def run_in_container(state: Launch) -> int:
    settings, job = state.settings, state.job
    why = container_problem(state.docker, settings.spark_master_container)
    if why is not None:
        raise LauncherError(EXIT_MISSING_PREREQUISITE,
                            f"docker mode: {why}; start the platform's containers, or use --local")
    name = f"{job.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}{time.monotonic_ns() % 100000}"
    run = RunFolder(job.name, job.door, state.docker, settings.spark_master_container,
                    settings.spark_container_python, f"{settings.spark_container_workdir.rstrip('/')}/{name}",
                    summary_target=state.job_settings.summary_json if state.job_settings is not None else "",
                    output_target=str(job.output_path(state.job_settings)) if job.output_path else "")
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
                       Path(__file__).with_name("jobrun.py"), Path(atomic_file.__file__), Path(errors.__file__)):
            shutil.copy(source, stage)
        environment = _container_environment(state, stage)
        submit.build_py_files_zip(Path(__file__).resolve().parents[1], stage / "batch.zip")
        command = submit.spark_submit_argv(
            submit=settings.spark_container_submit, master=settings.spark_master_url, job_name=job.name,
            driver_memory=settings.spark_driver_memory, show_progress=False,
            log4j_config="log4j2.properties", py_files="batch.zip", entry=job.script,
            executor_python=settings.spark_container_python,
            job_args=submit.container_job_args(
                state.request.job_args, env_file_given=state.env_file_given,
                output_flag=job.output_flag, output_name=Path(run.output_target).name))
        if (run.exec(["mkdir", "-p", settings.spark_container_workdir.lstrip("/")], workdir="/").returncode
                or run.docker_run("cp", str(stage), f"{run.container}:{run.path}").returncode):
            raise LauncherError(EXIT_DOCKER, f"copying the {job.name} job into {run.container}:{run.path} failed "
                                             "(see the message above)")
    # docker cp creates root-owned files: hand them to the user the job runs as.
    user = run.exec(["sh", "-c", 'echo "$(id -u):$(id -g)"'], workdir="", capture=True)
    if user.returncode != 0:
        raise LauncherError(EXIT_DOCKER, f"cannot run commands in the container {run.container}")
    owner = user.stdout.strip()
    if owner != "0:0" and run.exec(["chown", "-R", owner, name], user="0",
                                   workdir=settings.spark_container_workdir).returncode:
        raise LauncherError(EXIT_DOCKER, f"cannot hand {run.path} over to the container's user {owner}")
    if state.request.mode == "foreground":
        return _foreground(run, environment, command, settings.spark_container_workdir)
    return _background(state, run, environment, command)


def _container_environment(state: Launch, stage: Path) -> list[str]:
    """`-e NAME` for each of the job's variables set in the launcher's environment: docker takes
    the value from its own environment, so no value (the password included) is ever on a
    command line. A password file on this machine is copied into the run folder's secrets/,
    which jobrun.py deletes when the job ends."""
    documented: set[str] = set()
    for env_file in (state.project_root / "env" / "spark.env", state.env_file):
        if env_file is not None and env_file.is_file():
            documented |= set(dotenv_values(env_file))
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


def _foreground(run: RunFolder, environment: list[str], command: list[str], workdir: str) -> int:
    def stop(_number: int, _frame: object) -> None:
        # Ctrl-C ends the docker client, not the job in the container: stop the job too.
        run.exec(run.jobrun("stop"), to_stderr=True)

    for number in STOP_SIGNALS:
        signal.signal(number, stop)
    code = run.exec([*run.jobrun("run"), "--", *command], environment=environment).returncode
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_DFL)
    collect_results(run, code)
    if code != 0:
        raise LauncherError(code, f"the {run.job} job exited with {code} in {run.container}; "
                                  f"its run folder is kept there: {run.path}")
    if run.exec(["rm", "-rf", "--", run.path.rsplit("/", 1)[1]], workdir=workdir).returncode:
        print(f"{run.door}: cannot remove the run folder {run.path} in the container", file=sys.stderr)
    return 0


def _background(state: Launch, run: RunFolder, environment: list[str], command: list[str]) -> int:
    started = run.exec([*run.jobrun("start"), "--", *command], environment=environment, detach=True, capture=True)
    if started.returncode:
        raise LauncherError(EXIT_DOCKER, f"starting the {run.job} job in {run.container} failed "
                                         "(see the message above)")
    deadline = time.monotonic() + 60
    while True:
        status = run.exec(run.jobrun("status"), capture=True)
        if status.returncode != 0:
            raise LauncherError(EXIT_DOCKER, f"cannot follow the {run.job} job in {run.container}:{run.path}")
        if (current := status.stdout.strip()) != "starting":
            break
        if time.monotonic() > deadline:
            raise LauncherError(EXIT_DOCKER, f"the {run.job} job did not start within 60 s in "
                                             f"{run.container}:{run.path}")
        time.sleep(0.5)
    if current.startswith("exited ") and current != "exited 0":
        code = int(current.split()[1])
        run.exec(["tail", "-n", "20", "job.log"], to_stderr=True)
        raise LauncherError(code, f"the {run.job} job ended at once with exit code {code} "
                                  f"(log: {run.container}:{run.path}/job.log)")

    def shown(*command: str) -> str:
        return shlex.join(submit.docker_exec_argv(run.docker, run.container, list(command), workdir=run.path))

    print(f"""Started the {run.job} job in the container {run.container} (master {state.settings.spark_master_url}), in the background.
  run folder (in the container): {run.path}
  log:    {run.path}/job.log
  follow: {shown('tail', '-f', 'job.log')}
  status: {shown(*run.jobrun('status'))}
  stop:   {shown(*run.jobrun('stop'))}""")
    if run.summary_target or run.output_target:
        _start_copy_out_watcher(state, run)
    return 0


def _start_copy_out_watcher(state: Launch, run: RunFolder) -> None:
    """A detached watcher that waits for the background job, then copies its results out."""
    log_dir, run_dir = Path(state.settings.log_dir), Path(state.settings.run_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    log, pid_file = log_dir / f"{run.path.rsplit('/', 1)[1]}.copy-out.log", run_dir / f"{run.job}.copy-out.pid"
    with log.open("wb") as output:
        watcher = subprocess.Popen([sys.executable, "-m", "batch.launcher.docker", json.dumps(asdict(run))],
                                   stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=state.environ)
    pid_file.write_text(f"{watcher.pid}\n")
    what = [f"its file ({run.output_target})"] if run.output_target else []
    if run.summary_target:
        what.append(f"its summary ({run.summary_target})")
    print(f"""  copy-out: when the job has succeeded, {' and '.join(what)} is copied here by a watcher
            (pid {watcher.pid}, pid file {pid_file}, log {log})""")


def collect_results(run: RunFolder, code: int) -> None:
    """After the job ended with `code`: its summary to its target, and, if it succeeded, its
    file out of the container (then deleted there)."""
    copy_file = bool(run.output_target) and code == 0
    if not run.summary_target and not copy_file:
        return
    with tempfile.TemporaryDirectory(prefix=f"indoor-air-{run.job}-results.") as scratch:
        copied = Path(scratch) / "summary.json"
        if run.docker_run("cp", f"{run.container}:{run.path}/summary.json", str(copied)).returncode != 0:
            if code != 0:
                return  # a job that failed early may have written no summary
            raise LauncherError(EXIT_DOCKER, f"the {run.job} job succeeded, but copying its summary out "
                                             f"of {run.container}:{run.path} failed")
        summary = json.loads(copied.read_text(encoding="utf-8"))
    if run.output_target:
        summary["output"] = run.output_target  # the file's path on this machine, not in the run folder
    if run.summary_target:
        try:
            atomic_file.write_atomically(Path(run.summary_target), json.dumps(summary, indent=2, sort_keys=True) + "\n")
        except OSError as error:
            print(f"{run.door}: cannot write the summary to {run.summary_target}: {error.strerror}", file=sys.stderr)
    if not copy_file:
        return
    target = Path(run.output_target)
    output = f"output/{target.name}"
    # Atomically: copied to a temporary file beside the target, renamed over it.
    temporary = target.with_name(f".{target.name}.copy-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        copied_out = run.docker_run("cp", f"{run.container}:{run.path}/{output}", str(temporary)).returncode == 0
    except OSError:
        copied_out = False
    if not copied_out:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.unlink(missing_ok=True)
        raise LauncherError(EXIT_DOCKER, f"the {run.job} job succeeded, but copying {run.container}:{run.path}/"
                                         f"{output} to {target} failed; the file is still in the container")
    os.replace(temporary, target)
    print(f"Copied {run.container}:{run.path}/{output} to {target}", flush=True)
    if run.exec(["rm", "-f", "--", output]).returncode:
        print(f"{run.door}: cannot delete {run.path}/{output} in the container", file=sys.stderr)


def watch(run_json: str) -> int:
    """The background copy-out: waits for the job, then collects its results."""
    run = RunFolder(**json.loads(run_json))
    print(f"Waiting for the {run.job} job in {run.container}:{run.path} ...", flush=True)
    code = run.exec(run.jobrun("wait")).returncode
    if code != 0:
        print(f"The {run.job} job exited with {code}: nothing copied out", flush=True)
    try:
        collect_results(run, code)
    except LauncherError as error:
        print(f"{run.door}: {error}", file=sys.stderr)
        return error.exit_code
    return code


if __name__ == "__main__":
    sys.exit(watch(sys.argv[1]))
