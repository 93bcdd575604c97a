"""One launch: the jobs the launcher runs, what the user asked for, and what the launch knows
once its settings are read (shared by local and docker mode)."""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch.core import cli


@dataclass(frozen=True)
class Job:
    name: str  # analysis: logs/analysis-*.log, run/analysis.pid
    script: str  # the entry point, in the project folder
    door: str  # the command the user typed, for messages
    title: str
    uses_postgres: bool
    # The job's command line (None: a job without one, its options passed through unchecked).
    definition: Callable[[], cli.JobDefinition] | None = None
    # The file the job writes on the driver's disk (docker mode copies it out), and its flag.
    output_path: Callable[[Any], Path] | None = None
    output_flag: str = ""


def _analysis() -> cli.JobDefinition:
    from batch.analysis.job import ANALYSIS_JOB
    return ANALYSIS_JOB


def _downloader() -> cli.JobDefinition:
    from batch.download.settings import DOWNLOADER_JOB
    return DOWNLOADER_JOB


JOBS: dict[str, Job] = {
    "analysis": Job("analysis", "start-spark.py", "start-spark.sh",
                    "Aggregate raw indoor-air readings and publish the statistics to PostgreSQL.",
                    True, _analysis),
    "downloader": Job("downloader", "spark-downloader.py", "spark-downloader.sh",
                      "Download raw indoor-air readings (filtered by profile, institute, classroom, "
                      "time) as one ordered CSV or Parquet file.",
                      False, _downloader, lambda settings: settings.output_path, "--output"),
}


class LauncherError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Request:
    """The launcher's own flags, and what goes to the job."""

    mode: str = "background"
    mode_given: bool = False
    where: str = ""
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
    settings: Any  # batch.launcher.options.LauncherSettings
    job_settings: Any = None
    env_file: Path | None = None
    env_file_given: bool = False
    where: str = ""  # local or docker

    @property
    def docker(self) -> list[str]:
        return self.settings.docker_cmd.split()

    def note(self, message: str) -> None:
        print(f"{self.job.door}: {message}", file=sys.stderr, flush=True)
