"""What both job entry points share: settings from argv, logging, reporting, exit codes."""
from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark import SparkConf

from batch.config import (
    DEFAULTED_OPTIONS_FIELD,
    ENV_FILE_VARIABLE,
    Option,
    build_parser,
    find_env_file,
    resolve_options_with_sources,
    settings_from,
    unknown_variables,
)
from batch.errors import BatchError, StoppedBySignal

log = logging.getLogger("batch")


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_no_traceback_for_a_stop)
    # py4j logs every gateway round trip at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)


@dataclass(frozen=True)
class JobDefinition:
    """A job's command line: its options (declared once), settings type and checks."""

    prog: str
    description: str
    options: tuple[Option, ...]
    settings_class: type
    # Checks across settings, before Spark starts (ConfigurationError, exit 2).
    check: Callable[[Any], None]
    # Flags that are not settings (the downloader's filters): they become settings fields.
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None

    def parser(self) -> argparse.ArgumentParser:
        parser = build_parser(self.prog, self.description, self.options)
        if self.add_arguments is not None:
            self.add_arguments(parser)
        return parser


@dataclass(frozen=True)
class LoadedSettings:
    settings: Any
    env_file: Path | None
    check_config: bool


def load(job: JobDefinition, argv: Sequence[str], project_root: Path,
         environ: Mapping[str, str] | None = None) -> LoadedSettings:
    """Parse `argv` (exit 2 on unknown options), resolve every setting and check them."""
    environ = os.environ if environ is None else environ
    args = job.parser().parse_args(argv)
    env_file = find_env_file(args.env_file, environ, project_root)
    known = _known_variables()
    if env_file is not None and known is not None:
        for warning in unknown_variables(env_file, known):
            log.warning("%s", warning)
    resolved = resolve_options_with_sources(job.options, vars(args), environ, env_file, project_root)
    option_fields = {option.field for option in job.options} | {"env_file", "check_config"}
    extra = {name: tuple(value) if isinstance(value, list) else value
             for name, value in vars(args).items() if name not in option_fields}
    # Sorted names: a settings type that declares the field records them as a JSON list.
    settings = settings_from(job.settings_class, {
        **resolved.values, **extra, DEFAULTED_OPTIONS_FIELD: tuple(sorted(resolved.defaulted))})
    job.check(settings)
    return LoadedSettings(settings, env_file, args.check_config)


def _known_variables() -> set[str] | None:
    """Every variable a job or a launcher reads: an env file is shared by all of them.

    None where the launcher is not shipped (the job's copy that spark-submit runs): the
    launcher checked the env file before starting it.
    """
    try:
        from batch.launcher.main import LAUNCHER_OPTIONS
    except ImportError:
        return None
    from batch.analysis import ANALYSIS_OPTIONS
    from batch.downloader import DOWNLOADER_OPTIONS
    return ({option.env for option in (*ANALYSIS_OPTIONS, *DOWNLOADER_OPTIONS, *LAUNCHER_OPTIONS)}
            | {ENV_FILE_VARIABLE})


def load_settings(job: JobDefinition, argv: Sequence[str], project_root: Path) -> Any:
    """The job's settings; with --check-config, "configuration OK" and exit 0 once checked."""
    loaded = load(job, argv, project_root)
    if loaded.check_config:
        print(f"{job.prog}: configuration OK")
        sys.exit(0)
    return loaded.settings


def describe_failure(error: BaseException) -> str:
    """The one-line error message of a failed run, for its summary and run record."""
    if isinstance(error, StoppedBySignal):
        return str(error)
    if isinstance(error, KeyboardInterrupt):
        return "stopped by SIGINT"
    return str(error) if isinstance(error, BatchError) else f"{type(error).__name__}: {error}"


def _no_traceback_for_a_stop(record: logging.LogRecord) -> bool:
    """A stop is reported in one line: Py4J logs the interrupted gateway call with a traceback,
    and, when the JVM has already gone, the failed shutdown of its socket with another."""
    if record.exc_info and _raised_by_a_stop(record.exc_info[1]):
        record.exc_info = record.exc_text = None
    return True


def _raised_by_a_stop(error: BaseException | None) -> bool:
    seen: set[int] = set()  # a chain of causes can loop
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def spark_master_unless_submitted(master: str) -> str | None:
    """The master to set ourselves: none when spark-submit already chose one."""
    return None if SparkConf().contains("spark.master") else master


def write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}"
    # Created as open() creates a file (0666 less the umask, 0644 usually), not 0600 as
    # tempfile does: a summary is read by monitoring, under another user often.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with open(descriptor, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    os.replace(temporary, path)


def format_summary(title: str, summary: Mapping[str, Any]) -> str:
    """A human-readable block: one line per scalar, one indented line per entry of each
    mapping and per item of each list."""
    lines = [f"==== {title} ===="]
    for key, value in summary.items():
        if isinstance(value, Mapping):
            lines.append(f"{key}:")
            # None inside a mapping: not measured by this run (e.g. replays when not dropped).
            lines += [f"    {name:<28} {'not checked' if item is None else item}"
                      for name, item in value.items()]
        elif isinstance(value, list):
            # One line per item: items can be sentences (warnings) or paths with commas.
            lines.append(f"{key}: none" if not value else f"{key}:")
            lines += [f"    {item}" for item in value]
        elif value is not None:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def run_and_report(spark: Any, title: str, run: Callable[[], object],
                   report: Callable[[], Mapping[str, Any]], summary_json: str) -> int:
    """Run a job's body, then print its summary (and write it as JSON when asked), stop Spark.

    Ctrl-C and SIGTERM (kill, a stopping container) raise StoppedBySignal (a
    KeyboardInterrupt), so that the job unwinds: Spark jobs cancelled, temporary files
    removed, the run recorded as "stopped by SIGTERM". PySpark's own SIGINT handler is
    replaced: it calls the JVM from inside the interrupted JVM call, which breaks the gateway
    connection instead of stopping the job.
    """
    signal.signal(signal.SIGINT, _raise_stopped)
    signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        run()
    finally:
        data = report()
        print(format_summary(title, data), flush=True)
        if summary_json:
            write_json_atomically(Path(summary_json), data)
        spark.stop()
    return 0


def _raise_stopped(signal_number: int, _frame: object) -> None:
    # Once: a second signal while the job unwinds must not interrupt the clean-up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise StoppedBySignal(signal_number)


def run_main(main: Callable[[], int]) -> None:
    """Run a job's main; a BatchError or a stop is reported in one line, no traceback."""
    configure_logging()
    try:
        code = main()
    except BatchError as error:
        log.error("%s", error)
        code = error.exit_code
    except KeyboardInterrupt as error:
        log.error("%s", describe_failure(error))
        sys.stdout.flush()
        sys.stderr.flush()
        # Not sys.exit: under a stopped job, Py4J's threads would print their stack traces
        # while the interpreter shuts down.
        os._exit(error.exit_code if isinstance(error, StoppedBySignal) else 128 + signal.SIGINT)
    sys.exit(code)
