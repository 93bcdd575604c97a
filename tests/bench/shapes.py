"""The benchmark's input shapes (benchmark only).

`demo`: devtools.demo's dataset (104 devices x 365 days, readings in time order), rewritten
with one type per column (see run.py `uniform_copy`).

`many_days`: many more device-days per reading - 1,000 devices (50 institutes x 20
classrooms) over two school years (weekdays from September to June), one file per calendar
month, readings in random order within each file, the contract's columns with one type each.
At 5,000,000 readings that is ~400,000 device-days, ten times the demo's ~38,000: the cost
that follows the number of groups, not of readings, shows here.
"""
from __future__ import annotations

import json
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from devtools.demo import CONTRACT_ARROW_TYPES

SHAPES = ("demo", "many_days")
INSTITUTES = 50
CLASSROOMS_PER_INSTITUTE = 20
FIRST_DAY = date(2023, 9, 4)
LAST_DAY = date(2025, 6, 30)
SCHOOL_MONTHS = (9, 10, 11, 12, 1, 2, 3, 4, 5, 6)
MARKER = "_DONE"
SEED = 14


def school_days() -> list[date]:
    days = []
    day = FIRST_DAY
    while day <= LAST_DAY:
        if day.weekday() < 5 and day.month in SCHOOL_MONTHS:
            days.append(day)
        day += timedelta(days=1)
    return days


def _column(name: str, arrow_type: pa.DataType, rows: int, rng: np.random.Generator) -> pa.Array:
    """Plausible values of the contract's other columns, a few percent null."""
    values = {
        "temperature": lambda: rng.normal(22.0, 2.5, rows),
        "humidity": lambda: rng.uniform(25.0, 70.0, rows),
        "battery": lambda: rng.uniform(10.0, 100.0, rows),
        "co2": lambda: rng.gamma(4.0, 220.0, rows),
        "tvoc": lambda: rng.gamma(2.0, 120.0, rows),
        "pressure": lambda: rng.normal(1013.0, 8.0, rows),
        "light_level": lambda: rng.integers(0, 800, rows),
        "battery_voltage": lambda: rng.uniform(3.0, 3.7, rows),
    }.get(name)
    if values is None:
        if pa.types.is_string(arrow_type):
            return pa.nulls(rows, arrow_type)
        return pa.array(rng.integers(0, 2, rows)).cast(arrow_type)
    array = np.asarray(values())
    mask = rng.random(rows) < 0.02
    return pa.array(array, mask=mask).cast(arrow_type)


def generate_many_days(folder: Path, readings: int) -> None:
    rng = np.random.default_rng(SEED)
    days = np.array([np.datetime64(day, "D") for day in school_days()])
    devices = INSTITUTES * CLASSROOMS_PER_INSTITUTE
    dev_euis = np.array([f"{0xA84041000000 + i:016X}" for i in range(devices)], dtype=object)
    institutes = np.array([f"Istituto {i // CLASSROOMS_PER_INSTITUTE:02d}" for i in range(devices)],
                          dtype=object)
    classrooms = np.array([f"Aula {i % CLASSROOMS_PER_INSTITUTE + 1:02d}" for i in range(devices)],
                          dtype=object)
    # Every reading: a device, a school day, a time between 07:00 and 17:00 UTC.
    device = rng.integers(0, devices, readings)
    day = days[rng.integers(0, len(days), readings)]
    micros = (day.astype("datetime64[us]").astype(np.int64)
              + rng.integers(7 * 3600, 17 * 3600, readings) * 1_000_000)
    month = day.astype("datetime64[M]")
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    schema = pa.schema([pa.field(name, arrow_type) for name, arrow_type in CONTRACT_ARROW_TYPES.items()])
    for index, current in enumerate(np.unique(month)):
        # The rows of one month, in random order (np.nonzero keeps them in draw order, which
        # is random already; the permutation only makes the point explicit).
        rows = rng.permutation(np.nonzero(month == current)[0])
        count = len(rows)
        columns = {
            "DevEui": pa.array(dev_euis[device[rows]], pa.string()),
            "sendtime": pa.array(micros[rows], pa.timestamp("us", tz="UTC")),
            "institute": pa.array(institutes[device[rows]], pa.string()),
            "classroom": pa.array(classrooms[device[rows]], pa.string()),
        }
        arrays = [columns[name].cast(arrow_type) if name in columns
                  else _column(name, arrow_type, count, rng)
                  for name, arrow_type in CONTRACT_ARROW_TYPES.items()]
        pq.write_table(pa.Table.from_arrays(arrays, schema=schema),
                       staging / f"part-{index:05d}.parquet", compression="snappy")
    (staging / MARKER).write_text(json.dumps({"readings": readings, "seed": SEED}))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def ensure_many_days(workdir: Path, readings: int) -> Path:
    folder = workdir / f"many_days-{readings}"
    started = time.monotonic()
    if not (folder / MARKER).exists():
        generate_many_days(folder, readings)
    files = len(list(folder.glob("*.parquet")))
    print(f"input: {readings:,} readings of 1,000 devices over two school years in {files} files "
          f"at {folder} ({time.monotonic() - started:.0f} s to ensure)", flush=True)
    return folder

