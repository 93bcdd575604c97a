"""Exception classes a user can act on, and every exit code of the project (listed once here).

The launchers (batch/launcher), the jobs and the development tools (devtools/) exit with
these codes only; --help lists them from here, README.md by hand. Standard library only:
batch/launcher/bootstrap.py and devtools/dev_env.py import it with the system's Python,
before the virtualenv exists. The shell doors (start-spark.sh, spark-downloader.sh,
tests/run.sh) cannot import it: tests/test_errors.py checks their literal codes against it.
"""
from __future__ import annotations

import signal

EXIT_OK = 0
EXIT_UNEXPECTED = 1  # a bug or an unforeseen failure: a traceback is logged
EXIT_CONFIGURATION = 2  # a bad option, setting, path or password, found before Spark starts
EXIT_INPUT = 3  # bad or missing input data
EXIT_PUBLISH = 4  # publishing to PostgreSQL failed; previous results kept
EXIT_DOWNLOAD = 5  # writing the downloaded file failed; previous file kept
EXIT_DOCKER = 6  # docker mode: copying into/out of the container or starting the job failed
EXIT_DEMO_DATASET = 7  # the demo dataset cannot be written (devtools/demo.py)
EXIT_ALREADY_RUNNING = 8  # a background run of the same job is still running
EXIT_MISSING_PREREQUISITE = 9  # Python, Java, docker or its container, PostgreSQL for the demo
EXIT_COMMAND_NOT_FOUND = 127  # the run wrapper cannot find spark-submit
EXIT_SIGINT = 128 + signal.SIGINT  # 130: stopped by Ctrl-C
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143: stopped by kill / the printed stop command

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_UNEXPECTED: "unexpected error (see the traceback in the log)",
    EXIT_CONFIGURATION: "bad option, setting, path or password (nothing started)",
    EXIT_INPUT: "bad or missing input (nothing published or written, previous results kept)",
    EXIT_PUBLISH: "publishing to PostgreSQL failed (previous results kept)",
    EXIT_DOWNLOAD: "writing the downloaded file failed (previous file kept)",
    EXIT_DOCKER: "docker mode: a copy into or out of the container, or the start, failed",
    EXIT_DEMO_DATASET: "--demo: the demo dataset cannot be written",
    EXIT_ALREADY_RUNNING: "a background run of the same job is still running",
    EXIT_MISSING_PREREQUISITE: "a missing prerequisite: Python 3.10+, Java 17+, the virtualenv's "
                               "install, docker or its running container, --demo's PostgreSQL",
    EXIT_COMMAND_NOT_FOUND: "spark-submit not found",
    EXIT_SIGINT: "stopped by SIGINT (Ctrl-C)",
    EXIT_SIGTERM: "stopped by SIGTERM (kill, the printed stop command)",
}


def exit_codes_text() -> str:
    return "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())


def first_line(what: object) -> str:
    """The first non-empty line of `what` (an error, or a text such as a tool's output), stripped.

    The one-line form of every message the project quotes from elsewhere (PostgreSQL, Java,
    docker), whose later lines are detail or a stack trace. An error with no text is named
    by its class; a text with no line at all is "(nothing)".
    """
    line = next((line.strip() for line in str(what).splitlines() if line.strip()), "")
    if line:
        return line
    return type(what).__name__ if isinstance(what, BaseException) else "(nothing)"


class BatchError(Exception):
    """Base class for every error the jobs report without a traceback."""

    exit_code = EXIT_UNEXPECTED


class StoppedBySignal(KeyboardInterrupt):
    """SIGTERM, SIGINT or SIGHUP arrived: the job unwinds and records "stopped by SIGTERM"
    (or, when its supervisor was killed, "stopped by SIGKILL: its supervisor ... was killed")."""

    def __init__(self, signal_number: int, how: str = "") -> None:
        self.signal_name = signal.Signals(signal_number).name
        self.exit_code = 128 + signal_number
        super().__init__(f"stopped by {self.signal_name}" + (f": {how}" if how else ""))


class ConfigurationError(BatchError):
    """A setting is missing or malformed."""

    exit_code = EXIT_CONFIGURATION


class InputError(BatchError):
    """The raw input cannot be read as the data contract describes."""

    exit_code = EXIT_INPUT


class InputNotFoundError(InputError):
    """The input path does not exist or holds no Parquet file."""


class MissingColumnError(InputError):
    """A required column is absent from every input file."""


class IncompatibleColumnTypeError(InputError):
    """A column is stored with a type that cannot be converted to the contract's type."""


class CorruptInputFileError(InputError):
    """A Parquet file cannot be read (truncated, not Parquet, unreadable)."""


class EmptyInputError(InputError):
    """The input holds no reading that can be analysed or downloaded."""


class EmptyResultError(InputError):
    """The run would replace a published table holding rows with an empty one."""


class PublishError(BatchError):
    """Publishing to PostgreSQL failed; the previous results are untouched."""

    exit_code = EXIT_PUBLISH


class DownloadError(BatchError):
    """Writing the downloaded file failed; the previous file is untouched."""

    exit_code = EXIT_DOWNLOAD
