"""One launch: the jobs the launcher runs, its own settings, what the user asked for, and what
the launch knows once its settings are read (shared by local and docker mode)."""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch.core import cli
from batch.core.config import COMMON_OPTIONS, ENV_FILE_VARIABLE, Option, settings_type
from batch.core.errors import BatchError

# Settings of the launcher itself, resolved from env/spark.env and the environment as the jobs' are.
LAUNCHER_OPTIONS: tuple[Option, ...] = (
    next(option for option in COMMON_OPTIONS if option.env == "SPARK_MASTER"),
    Option("SPARK_DRIVER_MEMORY", "2g", "driver memory (spark-submit --driver-memory)"),
    Option("SPARK_EXECUTOR_PYTHON", "", "the executors' Python (empty: the virtualenv's)"),
    Option("LOG_DIR", "logs", "logs of background runs", path=True),
    Option("RUN_DIR", "run", "pid files of background runs", path=True),
    Option("SPARK_MASTER_CONTAINER", "spark-master", "container that runs spark-submit"),
    Option("SPARK_MASTER_URL", "spark://spark-master:7077", "master, from that container"),
    Option("DOCKER_CMD", "docker", "the docker command"),
    Option("SPARK_CONTAINER_WORKDIR", "/tmp/indoor-air-batch", "run folders in the container"),
    Option("SPARK_CONTAINER_SUBMIT", "spark-submit", "spark-submit in the container"),
    Option("SPARK_CONTAINER_PYTHON", "python3", "Python in the container"),
)
LauncherSettings = settings_type("LauncherSettings", LAUNCHER_OPTIONS)

# Settings of the launcher, not of the job: never passed into the container (the password
# file is passed on its own terms, see batch/launcher/docker.py _container_environment).
LAUNCHER_ONLY_VARIABLES = frozenset(
    {ENV_FILE_VARIABLE, "POSTGRES_PASSWORD_FILE"} | {option.env for option in LAUNCHER_OPTIONS})


@dataclass(frozen=True)
class Job:
    name: str  # analysis: logs/analysis-*.log, run/analysis.pid
    script: str  # the entry point, in the project folder
    door: str  # the command the user typed, for messages
    title: str
    uses_postgres: bool
    # "module:NAME" of the job's command line, imported when needed ("": a job without one, its
    # options passed through unchecked).
    command_line: str = ""
    # The file the job writes on the driver's disk (docker mode copies it out), and its flag.
    output_path: Callable[[Any], Path] | None = None
    output_flag: str = ""

    def definition(self) -> cli.JobDefinition | None:
        if not self.command_line:
            return None
        module, name = self.command_line.split(":")
        return getattr(importlib.import_module(module), name)


JOBS: dict[str, Job] = {
    "analysis": Job("analysis", "start-spark.py", "start-spark.sh",
                    "Aggregate raw indoor-air readings and publish the statistics to PostgreSQL.",
                    True, "batch.analysis.job:ANALYSIS_JOB"),
    "downloader": Job("downloader", "spark-downloader.py", "spark-downloader.sh",
                      "Download raw indoor-air readings (filtered by profile, institute, classroom, "
                      "time) as one ordered CSV or Parquet file.",
                      False, "batch.download.settings:DOWNLOADER_JOB", lambda settings: settings.output_path,
                      "--output"),
}


class LauncherError(BatchError):
    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Request:
    """The launcher's own flags, and what goes to the job."""

    mode: str = ""  # background or foreground
    where: str = ""  # local or docker; "": the running container decides
    demo: bool = False
    status: bool = False
    help: bool = False
    job_args: list[str] = field(default_factory=list)


@dataclass
class Launch:
    """Everything one launch knows once the settings are read."""

    job: Job
    project_root: Path
    request: Request
    environ: dict[str, str]  # the job's environment
    exported_at_start: frozenset[str]
    settings: Any  # LauncherSettings
    env_file: Path | None
    env_file_given: bool
    job_settings: Any = None
    where: str = ""  # local or docker

    @property
    def docker(self) -> list[str]:
        return self.settings.docker_cmd.split()

    def note(self, message: str) -> None:
        print(f"{self.job.door}: {message}", file=sys.stderr, flush=True)
