"""start-spark.py, stopped at a named point until the test kills it: fault injection only.

    python tests/support/held_analysis.py POINT HOLD_DIR [start-spark.py options]

POINT is where the job stops:
  read       in the driver, once the footers of the input files are read: the run is
             recorded as running and the publish lock is held;
  aggregate  in every Spark task of the first pass over the input, inside the executor's
             Python worker, before the task hands on its rows.
On reaching the point the job creates HOLD_DIR/POINT, then waits until HOLD_DIR/release
exists (at most ten minutes) and goes on as start-spark.py does.

`held_project` makes a project folder whose start-spark.py is this script, for a run
through the launcher (`python -m batch.launcher --project-root FOLDER analysis ...`).
"""
from __future__ import annotations

import runpy
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import batch.analysis.device_days
import batch.core.readers

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MAX_HOLD_S = 600.0


def hold(hold_dir: str, point: str) -> None:
    folder = Path(hold_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / point).touch()
    deadline = time.monotonic() + MAX_HOLD_S
    while not (folder / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def hold_in_driver_after_footers(hold_dir: str) -> None:
    read_footers = batch.core.readers._read_footer_schemas

    def held(*args: Any) -> Any:
        footers = read_footers(*args)
        hold(hold_dir, "read")
        return footers

    batch.core.readers._read_footer_schemas = held


def hold_in_tasks_of_first_pass(hold_dir: str) -> None:
    validate = batch.analysis.device_days.validate_readings

    def pass_through(batches: Iterator[Any]) -> Iterator[Any]:
        hold(hold_dir, "aggregate")
        yield from batches

    def held(readings_df: Any, *args: Any) -> Any:
        return validate(readings_df.mapInArrow(pass_through, readings_df.schema), *args)

    batch.analysis.device_days.validate_readings = held


def held_project(folder: Path, point: str, hold_dir: Path) -> Path:
    """A project folder for the launcher whose job is start-spark.py held at `point`."""
    (folder / "env").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "env" / "log4j2.properties", folder / "env")
    (folder / "start-spark.py").write_text(
        "import runpy, sys\n"
        f"sys.argv = [{str(Path(__file__).resolve())!r}, {point!r}, {str(hold_dir)!r}, *sys.argv[1:]]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    return folder


HOLDS = {"read": hold_in_driver_after_footers, "aggregate": hold_in_tasks_of_first_pass}


def main() -> None:
    point, hold_dir, *job_args = sys.argv[1:]
    HOLDS[point](hold_dir)
    sys.argv = [str(PROJECT_ROOT / "start-spark.py"), *job_args]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
