"""What both job entry points share: settings from argv, logging, reporting, exit codes."""
from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch.core.atomic_file import write_atomically
from batch.core.config import (
    DEFAULTED_OPTIONS_FIELD,
    SUMMARY_JSON_OPTION,
    Option,
    build_parser,
    check_file_target,
    find_env_file,
    resolve_options,
    settings_from,
    unknown_variables,
)
from batch.core.errors import BatchError, StoppedBySignal

log = logging.getLogger("batch")

# Set by the supervisor of the run (batch/launcher/jobrun.py SUPERVISOR_VARIABLE): its pid.
SUPERVISOR_VARIABLE = "BATCH_SUPERVISOR_PID"


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
    check_config: bool


def load(job: JobDefinition, argv: Sequence[str], project_root: Path,
         environ: Mapping[str, str] | None = None,
         known_variables: Callable[[], Collection[str] | None] | None = None) -> LoadedSettings:
    """Parse `argv` (exit 2 on unknown options), resolve every setting and check them.

    `known_variables`: gives every variable the jobs and their launchers read
    (batch/env_variables.py); each other variable of the env file is warned about. Called only
    once there is an env file to check: it imports the jobs, which --help need not. None, or
    a None result: not checked.
    """
    environ = os.environ if environ is None else environ
    args = job.parser().parse_args(argv)
    env_file = find_env_file(args.env_file, environ, project_root)
    if env_file is not None and known_variables is not None and (known := known_variables()) is not None:
        for warning in unknown_variables(env_file, set(known)):
            log.warning("%s", warning)
    defaulted: set[str] = set()
    values = resolve_options(job.options, vars(args), environ, env_file, project_root, defaulted)
    option_fields = {option.field for option in job.options} | {"env_file", "check_config"}
    extra = {name: tuple(value) if isinstance(value, list) else value
             for name, value in vars(args).items() if name not in option_fields}
    # Sorted names: a settings type that declares the field records them as a JSON list.
    settings = settings_from(job.settings_class, {
        **values, **extra, DEFAULTED_OPTIONS_FIELD: tuple(sorted(defaulted))})
    job.check(settings)
    if SUMMARY_JSON_OPTION in job.options and (summary_json := getattr(settings, SUMMARY_JSON_OPTION.field)):
        # Found now, not by a traceback once the run has published.
        check_file_target(Path(summary_json), "--summary-json")
    return LoadedSettings(settings, args.check_config)


def load_settings(job: JobDefinition, argv: Sequence[str], project_root: Path,
                  known_variables: Callable[[], Collection[str] | None] | None = None) -> Any:
    """The job's settings; with --check-config, "configuration OK" and exit 0 once checked."""
    loaded = load(job, argv, project_root, known_variables=known_variables)
    if loaded.check_config:
        print(f"{job.prog}: configuration OK")
        sys.exit(0)
    return loaded.settings


class _Stop:
    """The first stop of this run, if any: whatever error the run then ends with (its
    cancelled Spark job's, or a gateway broken by a JVM that got the same signal), it was
    stopped."""

    received: StoppedBySignal | None = None
    relay_started = False
    spark: Any = None  # the session whose jobs a stop cancels
    # Set when the run's supervisor ended without passing a stop on (kill -9 of the printed pid).
    supervisor_gone: int | None = None


def stop_received() -> StoppedBySignal | None:
    return _Stop.received


def _stop_of(error: BaseException) -> StoppedBySignal | None:
    """The stop that ended the run, if one did: a stop decides, whatever error it surfaced as."""
    if _Stop.received is not None:
        return _Stop.received
    if isinstance(error, StoppedBySignal):
        return error
    # Ctrl-C before the stop handlers were installed (or with Python's own handler back).
    return StoppedBySignal(signal.SIGINT) if isinstance(error, KeyboardInterrupt) else None


def describe_failure(error: BaseException) -> str:
    """The one-line error message of a failed run, for its summary and run record."""
    stop = _stop_of(error)
    if stop is not None:
        return str(stop)
    return str(error) if isinstance(error, BatchError) else f"{type(error).__name__}: {error}"


def _no_traceback_for_a_stop(record: logging.LogRecord) -> bool:
    """A stop is reported in one line, the job's own: Py4J logs the interrupted gateway call
    (on the root logger, with a traceback) and, when the JVM has already gone, the failed
    shutdown of its socket with another; those records are dropped, other records raised by
    the stop lose their traceback."""
    if record.exc_info and _raised_by_a_stop(record.exc_info[1]):
        if f"{os.sep}py4j{os.sep}" in record.pathname:
            return False
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


def format_summary(title: str, summary: Mapping[str, Any]) -> str:
    """A human-readable block: one line per scalar, one indented line per entry of each
    mapping and per item of each list."""
    lines = [f"==== {title} ===="]
    # A top-level None: not measured by this run (it failed before): left out, never "none".
    for key, value in summary.items():
        if isinstance(value, (Mapping, list)):
            lines.append(f"{key}:" if value else f"{key}: none")
        if isinstance(value, Mapping):
            # None inside a mapping: not measured by this run (e.g. replays when not dropped).
            lines += [f"    {name:<28} {'not checked' if item is None else item}"
                      for name, item in value.items()]
        elif isinstance(value, list):
            # One line per item: items can be sentences (warnings) or paths with commas.
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
    # Again: the SparkContext has installed PySpark's own SIGINT handler.
    install_stop_handlers(spark)
    try:
        run()
    finally:
        data = report()
        print(format_summary(title, data), flush=True)
        if summary_json:
            _write_summary_json(Path(summary_json), data)
        try:
            spark.stop()
        except Exception:
            # After a stop, the JVM may have ended already (it got the same signal).
            if _Stop.received is None:
                raise
            log.info("Spark had already ended with the stop")
    return 0


def _write_summary_json(path: Path, data: Mapping[str, Any]) -> None:
    """The run's outcome is settled by then (published, or failed and recorded): a summary file
    that cannot be written (checked before Spark starts; a disk that filled up or a folder made
    read-only since) must not turn it into a failure, only into a warning."""
    try:
        write_atomically(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    except OSError as error:
        log.warning("the run summary was not written to %s: %s", path, error.strerror or error)


# The stops batch/launcher/jobrun.py passes on to the job's process group.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def install_stop_handlers(spark: Any = None) -> None:
    """A stop signal raises StoppedBySignal, once, and cancels `spark`'s jobs. Installed
    explicitly: the JVM that starts the driver under spark-submit hands these signals down
    ignored.

    A signal sent to the process may be delivered to any of its threads (Py4J's, Arrow's):
    Python notes it, but the main thread, blocked in a socket read of a Spark job's result,
    would not run the handler before the job's end. Python writes every signal it notes to
    the wakeup fd; a thread reading it (started once) sends each stop signal once more, to
    the main thread.
    """
    _Stop.spark = spark
    for number in STOP_SIGNALS:
        signal.signal(number, _raise_stopped)
    if _Stop.relay_started:
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end)
    main = threading.main_thread().ident
    assert main is not None

    def relay() -> None:
        relayed: set[int] = set()
        while True:
            for number in os.read(read_end, 64):
                if number in STOP_SIGNALS and number not in relayed and _Stop.received is None:
                    relayed.add(number)
                    signal.pthread_kill(main, number)

    threading.Thread(target=relay, name="stop-relay", daemon=True).start()
    _Stop.relay_started = True


def _raise_stopped(signal_number: int, _frame: object) -> None:
    # Once: a second signal (or the relayed copy) must not interrupt the clean-up.
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    if _Stop.received is not None:
        return
    if _Stop.supervisor_gone is not None:
        _Stop.received = StoppedBySignal(
            signal.SIGKILL, f"its supervisor (pid {_Stop.supervisor_gone}) was killed")
    else:
        _Stop.received = StoppedBySignal(signal_number)
    if _Stop.spark is not None:
        # From another thread: this one may be inside a JVM call, and the stop unwinds through
        # calls that wait for the running Spark job (PySpark's Arrow collect waits for its
        # result in a `finally`).
        threading.Thread(target=_cancel_jobs, args=(_Stop.spark,), name="stop", daemon=True).start()
    raise _Stop.received


def _cancel_jobs(spark: Any) -> None:
    try:
        spark.sparkContext.cancelAllJobs()
    except Exception as error:  # noqa: BLE001 - the stop goes on; spark.stop() ends the rest
        log.info("cancelling the Spark jobs after the stop failed: %s", error)


def _watch_supervisor(supervisor: str) -> None:
    """Stop the run (as a SIGTERM would) if its supervisor ends first: the supervisor passes
    every stop it can catch on to the job, so its ending first means it was killed (kill -9
    of the pid the launcher printed), and a job left running would be nobody's."""
    if not supervisor.isdigit():
        return
    pid = int(supervisor)
    main = threading.main_thread().ident
    assert main is not None

    def wait_and_stop() -> None:
        _wait_for_exit(pid)
        _Stop.supervisor_gone = pid
        signal.pthread_kill(main, signal.SIGTERM)

    threading.Thread(target=wait_and_stop, name="supervisor-watch", daemon=True).start()


def _wait_for_exit(pid: int) -> None:
    try:
        handle = os.pidfd_open(pid)  # Linux 5.3+: readable once the process has ended
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd (not Linux, or an older kernel): poll
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:  # the pid is another user's process: still running
                pass
            time.sleep(1)
    select.select([handle], [], [])
    os.close(handle)


def run_main(main: Callable[[], int]) -> None:
    """Run a job's main; a BatchError or a stop is reported in one line, no traceback."""
    configure_logging()
    try:
        # From the start: a stop while the settings are read or Spark starts ends the run too.
        install_stop_handlers()
        _watch_supervisor(os.environ.get(SUPERVISOR_VARIABLE, ""))
        code = main()
    except BaseException as error:
        stop = _stop_of(error)
        if stop is None and isinstance(error, BatchError):
            log.error("%s", error)
            sys.exit(error.exit_code)
        if stop is None:
            raise
        log.error("%s", stop)
        sys.stdout.flush()
        sys.stderr.flush()
        # Not sys.exit: under a stopped job, Py4J's threads would print their stack traces
        # while the interpreter shuts down.
        os._exit(stop.exit_code)
    sys.exit(code)
