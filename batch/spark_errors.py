"""The one place that turns a Spark/Java failure into a message a user can read."""
from __future__ import annotations

from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException


def _first_line(error: object) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def spark_error_lines(error: Py4JJavaError | CapturedException) -> tuple[str, str]:
    """The first line of what the JVM reported, and the first line of its root cause."""
    if not isinstance(error, Py4JJavaError):
        return _first_line(error), _first_line(error)
    exception = root = error.java_exception
    while root.getCause() is not None and not root.getCause().equals(root):
        root = root.getCause()
    return _first_line(exception.toString()), _first_line(root.toString())


def spark_error_message(error: Py4JJavaError | CapturedException) -> str:
    """One line: what the JVM reported, and its root cause when that differs."""
    message, cause = spark_error_lines(error)
    return message if cause == message else f"{message} (cause: {cause})"
