"""The jobs' shared scaffolding (batch/core/cli.py): a stop by signal, recorded as such."""
from __future__ import annotations

import contextlib
import io
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from batch.core.cli import _no_traceback_for_a_stop
from batch.core.errors import StoppedBySignal
from batch.analysis.publish import PostgresTarget
from tests.rawdata import write_dataset
from tests.support.jobs import JobProcess, admin_connection, job_environment, runs, wait_for


def test_sigterm_during_a_run_is_recorded_as_stopped_by_sigterm_without_traceback(
        make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    target = make_target()
    dataset = write_dataset(tmp_path / "raw", readings_per_window=5)
    environment = job_environment(target, dataset.folder, tmp_path)
    # Held once the run is recorded in batch_runs and holds the publish lock (held_analysis.py).
    with JobProcess.analysis(environment, tmp_path / "job", hold_at="read") as job:
        wait_for(lambda: job.hold_reached("read"), "the job to reach read", job=job)
        job.popen.send_signal(signal.SIGTERM)  # as `kill PID` does
        code = job.wait()
    output = job.output()
    assert code == 143, output[-3000:]  # 128 + SIGTERM
    with contextlib.closing(admin_connection(target)) as conn:
        [record] = runs(conn, target.schema)
    assert (record["status"], record["error_message"]) == ("failed", "stopped by SIGTERM")
    assert "ERROR batch: stopped by SIGTERM" in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]


def test_an_error_raised_while_a_stop_unwinds_is_logged_without_traceback() -> None:
    # What Py4J logs when SIGTERM interrupts a gateway call and the JVM is already gone:
    # the socket shutdown fails while the stop is being handled.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(_no_traceback_for_a_stop)
    logger = logging.getLogger("tests.py4j_during_a_stop")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise StoppedBySignal(signal.SIGTERM)
        except StoppedBySignal:
            try:
                raise ConnectionResetError(104, "Connection reset by peer")
            except ConnectionResetError:
                logger.exception("Exception occurred while shutting down connection")
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError:
            logger.exception("an unrelated failure")
    finally:
        logger.removeHandler(handler)
    stop_line, unrelated = stream.getvalue().split("\n", 1)
    assert stop_line == "Exception occurred while shutting down connection"
    assert unrelated.startswith("an unrelated failure\nTraceback"), unrelated


def test_py4j_s_report_of_a_call_interrupted_by_a_stop_is_dropped() -> None:
    """Py4J logs "KeyboardInterrupt while sending command." on the root logger when a stop
    interrupts a gateway call: the job says "stopped by SIGTERM" itself, so that line goes."""
    import py4j.java_gateway

    try:
        raise StoppedBySignal(signal.SIGTERM)
    except StoppedBySignal as stop:
        exc_info = (type(stop), stop, stop.__traceback__)

    def record(pathname: str) -> logging.LogRecord:
        return logging.LogRecord("root", logging.ERROR, pathname, 1070,
                                 "KeyboardInterrupt while sending command.", (), exc_info)

    assert _no_traceback_for_a_stop(record(py4j.java_gateway.__file__)) is False
    # The same record from anywhere else is kept, in one line.
    elsewhere = record(__file__)
    assert _no_traceback_for_a_stop(elsewhere) is True and elsewhere.exc_info is None
    # A record of py4j's not raised by a stop is kept whole.
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError as reset:
        unrelated = logging.LogRecord("root", logging.ERROR, py4j.java_gateway.__file__, 1060,
                                      "Exception while sending command.", (),
                                      (type(reset), reset, reset.__traceback__))
    assert _no_traceback_for_a_stop(unrelated) is True and unrelated.exc_info is not None
