"""Local mode: spark-submit on this machine, with the project's virtualenv, in the foreground
or in the background (supervised by jobrun.py), and the status of the last background run."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from batch.core.atomic_file import write_atomically
from batch.core.errors import EXIT_ALREADY_RUNNING
from batch.launcher import submit
from batch.launcher.jobrun import Supervisor, job_alive, read_int
from batch.launcher.launch import Job, Launch, LauncherError


def _submit_argv(state: Launch, run_folder: Path, show_progress: bool) -> list[str]:
    return submit.spark_submit_argv(
        submit=str(Path(sys.executable).parent / "spark-submit"), master=_master(state),
        job_name=state.job.name, driver_memory=state.settings.spark_driver_memory,
        show_progress=show_progress, log4j_config=f"file:{state.project_root / 'env' / 'log4j2.properties'}",
        py_files=str(submit.build_py_files_zip(Path(__file__).resolve().parents[1], run_folder / "batch.zip")),
        entry=str(state.project_root / state.job.script), job_args=state.request.job_args)


def _master(state: Launch) -> str:
    return (state.job_settings.spark_master if state.job_settings is not None else "") or state.settings.spark_master


def child_environment(state: Launch) -> dict[str, str]:
    """The one environment of every process the launcher starts on this machine (the demo's
    generator, its PostgreSQL, spark-submit): the job's variables with the Java the launcher
    chose, the virtualenv's pyspark, and its Python on the driver; the executors run it too
    unless SPARK_EXECUTOR_PYTHON names another (a remote cluster's)."""
    import pyspark

    environ = dict(state.environ)
    environ["SPARK_HOME"] = str(Path(pyspark.__file__).parent)
    environ["PYSPARK_PYTHON"] = state.settings.spark_executor_python or sys.executable
    environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    if _master(state).startswith("local"):
        # A local run serves nobody else: Spark's driver and UI listen on loopback only.
        environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    return environ


def run_child(state: Launch, command: Sequence[str], **options: Any) -> subprocess.CompletedProcess[Any]:
    """Run a helper to its end in the project folder, in the launcher's child environment."""
    return subprocess.run(command, env=child_environment(state), cwd=state.project_root,
                          stdin=subprocess.DEVNULL, **options)


def run_foreground(state: Launch) -> int:
    """Run the job here and return its exit code; a stop sent to the launcher (kill, timeout,
    Ctrl-C, a closed terminal) goes to the job's whole process group, and the launcher waits
    until the job has recorded it and ended: 128 + the signal."""
    supervisor = Supervisor()
    with tempfile.TemporaryDirectory(prefix=f"indoor-air-{state.job.name}.") as folder:
        child = supervisor.start(_submit_argv(state, Path(folder), show_progress=True), child_environment(state),
                                 new_group=True, cwd=state.project_root, stdin=subprocess.DEVNULL)
        return supervisor.wait(child)


def run_background(state: Launch) -> int:
    job, settings = state.job, state.settings
    log_dir, run_dir = Path(settings.log_dir), Path(settings.run_dir)
    pid_file = run_dir / f"{job.name}.pid"
    running = read_int(pid_file)
    if job_alive(running):
        raise LauncherError(EXIT_ALREADY_RUNNING,
                            f"the {job.name} job is already running (pid {running}, pid file {pid_file})")
    log_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"{job.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.log"
    folder = Path(tempfile.mkdtemp(prefix=f"indoor-air-{job.name}."))
    # The run's exit code and end time are kept next to its log (LOG.exit).
    wrapper = [sys.executable, str(Path(__file__).with_name("jobrun.py")), "run", "--folder", str(folder),
               "--remove-folder", "--pid-file", str(pid_file), "--record", str(log_file.with_suffix(".exit")),
               "--", *_submit_argv(state, folder, show_progress=False)]
    # A session of its own: the job survives the launcher and the terminal that started it.
    # jobrun.py leads the job's process group (its pid is the group's id, the pid printed):
    # it passes a kill on to the group, and removes the run folder (the zip) and the pid file
    # when the whole group has ended; a kill -9 of it makes the job's driver stop itself.
    with log_file.open("wb") as log:
        child = subprocess.Popen(wrapper, env=child_environment(state), cwd=state.project_root,
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    write_atomically(pid_file, f"{child.pid}\n")
    write_atomically(run_dir / f"{job.name}.last", f"{log_file}\n")
    print(f"""Started the {job.name} job in the background (pid {child.pid}).
  log:    {log_file}
  follow: tail -f '{log_file}'
  stop:   kill {child.pid}
  status: {job.door} --status
  pid file: {pid_file}""")
    return 0


def status_text(job: Job, settings: Any) -> str:
    """The last background run of `job` on this machine."""
    run_dir = Path(settings.run_dir)
    pid = read_int(run_dir / f"{job.name}.pid")
    try:
        log_file = Path((run_dir / f"{job.name}.last").read_text().strip())
    except OSError:
        return f"no background run of the {job.name} job recorded in {run_dir}"
    if job_alive(pid):
        return f"the {job.name} job is running (process group {pid}); log: {log_file}"
    record = log_file.with_suffix(".exit")
    finished = dotenv_values(record) if record.is_file() else {}
    if "exit_code" in finished:
        return (f"the {job.name} job finished with code {finished['exit_code']} at {finished.get('ended')}; "
                f"log: {log_file}")
    # Only a kill -9 (or a machine's crash) ends the supervisor without its record; the
    # driver then stops itself and ends its log with its summary.
    return (f"the {job.name} job was killed (its supervisor, pid {pid}, ended without recording "
            f"an exit code) and none of its processes runs; its summary, if any, ends the log: {log_file}")
