"""batch/core/errors.py: the one-line form of a quoted message."""
from __future__ import annotations

import pytest

from batch.core.errors import first_line


@pytest.mark.parametrize(("what", "expected"), [
    # psycopg2 puts the server's detail on later lines.
    (RuntimeError('connection refused\n\tIs the server running on host "db"?'), "connection refused"),
    # docker's messages may start with a blank line.
    ("\n  \nCannot connect to the Docker daemon.  \nmore", "Cannot connect to the Docker daemon."),
    (ValueError(), "ValueError"),
    (ValueError("\n \n"), "ValueError"),
    ("", "(nothing)"),
    ("\n\n", "(nothing)"),
])
def test_first_line_is_the_first_non_empty_line_or_a_name(what: object, expected: str) -> None:
    assert first_line(what) == expected
