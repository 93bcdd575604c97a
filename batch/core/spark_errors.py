"""The one place that turns a Spark/Java failure into a message a user can read."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException

from batch.core.errors import first_line


def spark_error_chain(error: Py4JJavaError | CapturedException) -> list[str]:
    """The first line of the JVM's exception and of each of its causes, the root cause last.

    Spark wraps a task's failure at a depth that depends on the action (an Arrow collect
    adds a layer), so a detail such as the file a task could not decode is looked for in
    every cause.
    """
    java = java_exception(error)
    if java is None:
        return [first_line(error)]
    return [first_line(exception.toString()) for exception in java_causes(java)]


def java_exception(error: Py4JJavaError | CapturedException) -> Any:
    """The JVM's exception behind `error` (through Py4J), or None when PySpark kept only its text.

    PySpark turns some Java exceptions (AnalysisException, SparkRuntimeException, ...) into a
    CapturedException, which keeps the Java one as `_origin`: its causes are the same chain.
    """
    return getattr(error, "_origin", None) or getattr(error, "java_exception", None)


def java_causes(exception: Any) -> Iterator[Any]:
    """A Java exception (through Py4J), then each of its causes, the root cause last."""
    while exception is not None:
        yield exception
        cause = exception.getCause()
        exception = None if cause is None or cause.equals(exception) else cause


def root_cause_message(error: Py4JJavaError | CapturedException) -> str:
    """The first line of the innermost Java cause's own message, without its class name.

    It says what happened (an IOException names the path and the OS's reason); the outer
    causes only say which stage and task failed.
    """
    java = java_exception(error)
    if java is None:
        return spark_error_chain(error)[-1]
    *_, root = java_causes(java)
    message = root.getMessage()
    return first_line(message) if message else str(root.getClass().getSimpleName())
