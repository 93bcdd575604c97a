"""The one place that turns a Spark/Java failure into a message a user can read."""
from __future__ import annotations

from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException

from batch.core.errors import first_line


def _java_causes(error: Py4JJavaError | CapturedException) -> list[Any]:
    """The JVM's exception behind `error` (through Py4J), then each of its causes, the root
    cause last; none when PySpark kept only its text.

    PySpark turns some Java exceptions (AnalysisException, SparkRuntimeException, ...) into a
    CapturedException, which keeps the Java one as `_origin`: its causes are the same chain.
    """
    exception = getattr(error, "_origin", None) or getattr(error, "java_exception", None)
    causes = []
    while exception is not None:
        causes.append(exception)
        cause = exception.getCause()
        exception = None if cause is None or cause.equals(exception) else cause
    return causes


def spark_error_chain(error: Py4JJavaError | CapturedException) -> list[str]:
    """The first line of the JVM's exception and of each of its causes, the root cause last.

    Spark wraps a task's failure at a depth that depends on the action (an Arrow collect
    adds a layer), so a detail such as the file a task could not decode is looked for in
    every cause.
    """
    return [first_line(exception.toString()) for exception in _java_causes(error)] or [first_line(error)]


def root_cause_message(error: Py4JJavaError | CapturedException) -> str:
    """The first line of the innermost Java cause's own message, without its class name.

    It says what happened (an IOException names the path and the OS's reason); the outer
    causes only say which stage and task failed.
    """
    causes = _java_causes(error)
    if not causes:
        return first_line(error)
    message = causes[-1].getMessage()
    return first_line(message) if message else str(causes[-1].getClass().getSimpleName())
