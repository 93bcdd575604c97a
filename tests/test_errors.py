"""batch/core/errors.py: the one-line form of a quoted message; the exit codes, defined there only."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batch.core.errors import EXIT_CODES, EXIT_CONFIGURATION, EXIT_MISSING_PREREQUISITE, first_line


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


# --- the exit codes outside the package -----------------------------------------------------------

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The shell doors cannot import the codes: their one literal exit, for a missing Python.
DOORS = ("start-spark.sh", "spark-downloader.sh", "tests/run.sh")


@pytest.mark.parametrize("door", DOORS)
def test_a_door_without_python_exits_with_the_missing_prerequisite_code(door: str, tmp_path: Path) -> None:
    literal_exits = re.findall(r"^\s*exit\s+(\S+)", (PROJECT_ROOT / door).read_text(), re.MULTILINE)
    assert literal_exits == [str(EXIT_MISSING_PREREQUISITE)]
    # A PATH with the tools the door uses but no Python at all.
    (tmp_path / "bin").mkdir()
    for tool in ("dirname", "basename"):
        (tmp_path / "bin" / tool).symlink_to(shutil.which(tool))
    environment = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)}
    refused = subprocess.run([shutil.which("bash"), str(PROJECT_ROOT / door), "--help"], env=environment,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == EXIT_MISSING_PREREQUISITE, refused.stderr
    assert "Python 3.10 or newer is required" in refused.stderr


@pytest.mark.parametrize("script", ["batch/launcher/bootstrap.py", "devtools/dev_env.py"])
def test_the_scripts_run_before_the_virtualenv_import_the_codes_by_path(script: str) -> None:
    # -I -S: no site-packages (the project's editable install included), no current folder,
    # as the system's Python runs them before the virtualenv exists; a usage error exits 2.
    refused = subprocess.run([sys.executable, "-I", "-S", str(PROJECT_ROOT / script)],
                             capture_output=True, text=True, timeout=60, cwd="/")
    assert refused.returncode == EXIT_CONFIGURATION, refused.stderr
    assert "usage:" in refused.stderr


def test_the_documented_exit_codes_are_those_defined() -> None:
    # The table of exit codes (README.md, or wherever docs/ keeps it): one row per code of
    # EXIT_CODES, "130 / 143" counting as two.
    [document] = [path for path in [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
                  if "| code | meaning |" in path.read_text()]
    table = document.read_text().split("| code | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = [int(code) for row in re.findall(r"^\| ([\d /]+) \|", table, re.MULTILINE)
                  for code in row.split(" / ")]
    assert documented == sorted(EXIT_CODES)
