"""A deterministic generator of realistic raw readings, laid out as the streaming side writes them.

The dataset follows shared/DATA_CONTRACT.md: a fleet of AM319 / AM103 / WS301 devices in the
classrooms of four Italian institutes, each device reporting in turn once every
`days * devices / readings` (every 10 minutes, +-1 minute of jitter, with the default
readings: LoRaWAN indoor sensors report every 5-15 minutes), from 30 December 2024 to 1 June
2025 by default: a school term with its breaks and Italy's public holidays (rooms empty), across the
spring clock change, in Europe/Rome local time. Its story: school-day CO2 cycles with
classrooms past the BB101 peak (2000 ppm) for more than 20 minutes and classrooms that meet
BB101; one classroom whose sensors come online at 13:55 on a school day (too little data to
judge that day); one classroom whose sensors stop three weeks before the end while the rest
of its institute goes on (stale). And the contract's dirty cases in a small share of rows:
impossible values, unregistered devices, null timestamps, exact replays, and files whose
schema drifts over the months (a column missing from the oldest files, a metric stored as
int, double or decimal, radio columns appearing in the newest).

Everything is vectorised numpy written in bounded batches with pyarrow: memory does not grow
with the number of readings, and the same seed gives the same part files, byte for byte.

The folder is laid out as the platform's Structured Streaming job leaves it: each part file
is one committed micro-batch, named in a `_spark_metadata/` log that Spark's own sink log
class (FileStreamSinkLog, through a local Spark session) writes, compacted every
SINK_LOG_COMPACT_INTERVAL batches; and one orphan part file of a micro-batch that failed
before its commit (a copy of the part file its restart committed), which readers must skip.
The dataset appears atomically: it is written to a hidden folder beside `output_dir` and
renamed once complete, with `_demo_dataset.json` (its parameters) as the last file written.
The log names the files by absolute URI, so a dataset that was moved is generated again.

    python -m devtools.demo --output data/demo/raw --closures-file data/demo/closures.csv \
        --timetable-file data/demo/timetables.csv
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from batch.core.contract import RAW_COLUMNS
from batch.core.errors import EXIT_DEMO_DATASET, BatchError, ConfigurationError
from devtools.demo_health import SensorFaults

# Bumped whenever the generated content changes, so that ensure_demo_dataset regenerates.
GENERATOR_VERSION = 5
MARKER_FILE = "_demo_dataset.json"
SINK_LOG_DIR = "_spark_metadata"
SINK_LOG_COMPACT_INTERVAL = 4
DEFAULT_SEED = 7
# A school term and its breaks: ISO weeks 2025-W01 (from Monday 30 December 2024, in the
# Christmas holidays) to 2025-W22 (to Sunday 1 June), across the spring clock change (30 March),
# Carnival, Easter and the public holidays of 6 January, Easter Monday, 25 April and 1 May.
DEFAULT_START = date(2024, 12, 30)
DEFAULT_DAYS = 154
# How often each device reports with the default readings (LoRaWAN indoor sensors: 5-15 min).
DEFAULT_INTERVAL_MINUTES = 10

# Bounds on memory: one batch is one row group; a month larger than a file is split.
BATCH_ROWS = 262_144
MAX_ROWS_PER_FILE = 1_048_576

MICROS_PER_SECOND = 1_000_000
MICROS_PER_HOUR = 3_600 * MICROS_PER_SECOND
MICROS_PER_DAY = 24 * MICROS_PER_HOUR


class DemoDatasetError(BatchError):
    """The demo dataset cannot be written where it was asked."""

    exit_code = EXIT_DEMO_DATASET


class DemoDatasetExistsError(DemoDatasetError):
    """The output folder already holds data and overwriting it was not asked for."""


# ---------------------------------------------------------------------------------------
# The world being simulated, as data
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Institute:
    """A school: its classrooms (named per institute), timetable and site."""

    name: str
    slug: str
    classrooms: tuple[str, ...]
    school_weekdays: int  # lessons Monday .. Monday + n - 1
    lessons_start_hour: float  # local time
    lessons_end_hour: float
    altitude_hpa: float  # how much lower the barometric pressure is than at sea level
    breaks: tuple[tuple[float, float], ...] = ()  # (start, end) local hours: windows opened
    # When pupils are in the room, as IAQ_TIMETABLE text (the lessons, lunch left out).
    timetable: str = "Mon-Fri 08:00-14:00"


# How fast a classroom's CO2 moves, hours: exhaled air accumulates during a lesson, windows
# opened at a break air the room out quickly, after school the closed room empties slowly.
LESSON_BUILD_UP_H = 0.9
BREAK_AIRING_H = 0.2
AFTER_SCHOOL_H = 1.2
# Share of classrooms with poor ventilation (small, crowded, windows that stay shut): their
# CO2 rises about twice as far, so the demo has classrooms failing BB101 as well as passing.
POORLY_VENTILATED_SHARE = 0.25


INSTITUTES: tuple[Institute, ...] = (
    Institute("Liceo Galilei", "galilei",
              ("1A", "2A", "3A", "4A", "5A", "1B", "2B", "3B", "4B", "5B", "Lab Fisica",
               "Aula Magna"), 6, 8.0, 13.0, 2.5, ((10.83, 11.08),), "Mon-Sat 08:00-13:00"),
    Institute("Istituto Sant'Anna", "santanna",
              ("1A", "2A", "3A", "1B", "2B", "3B", "1C", "2C", "Biblioteca", "Aula Musica"),
              5, 8.0, 14.0, 9.0, ((9.92, 10.08), (11.92, 12.17))),
    Institute("École Voltaire", "voltaire",
              ("CP", "CE1", "CE2", "CM1", "CM2", "3A", "Salle Polyvalente", "Réfectoire"),
              5, 8.5, 16.5, 24.0, ((10.25, 10.5), (12.0, 13.5), (15.0, 15.25)),
              "Mon-Fri 08:30-12:00,13:30-16:30"),
    Institute("IIS Enrico Fermi", "fermi",
              ("1A", "2A", "3A", "4A", "5A", "3B", "4B", "5B", "Lab Chimica", "Palestra"),
              5, 8.0, 14.0, 4.0, ((10.0, 10.17), (12.0, 12.17))),
)
GATEWAYS_PER_INSTITUTE = 2

PROFILES: tuple[str, ...] = ("AM319", "AM103", "WS301")
AM319, AM103, WS301 = range(len(PROFILES))

# What each profile measures; every other metric of its readings is null ("not measured").
PROFILE_METRICS: dict[str, frozenset[str]] = {
    "AM319": frozenset({"temperature", "humidity", "co2", "tvoc", "pressure", "light_level",
                        "pir", "battery"}),
    "AM103": frozenset({"temperature", "humidity", "co2", "battery"}),
    "WS301": frozenset({"door_status", "door_open_times", "last_open_minutes", "battery",
                        "battery_voltage", "alarm"}),
}

# Installed but never entered in the registry: their readings have no institute, classroom
# or profile (the profile comes from the registry too).
UNREGISTERED_PROFILES: tuple[int, ...] = (AM103, AM319, AM103, WS301)

# Italy's national public holidays (Law 260/1949 and later): the schools are closed. Easter
# Monday follows Easter; the rest are fixed (MM, DD).
PUBLIC_HOLIDAYS: tuple[tuple[int, int], ...] = (
    (1, 1), (1, 6), (4, 25), (5, 1), (6, 2), (8, 15), (11, 1), (12, 8), (12, 25), (12, 26))
# The demo schools' breaks (the IAQ_CLOSURES_FILE the demo writes): first and last day as
# (days after Easter Sunday) or (MM, DD) of the year the break starts in.
EASTER_BREAKS: tuple[tuple[str, int, int], ...] = (
    ("Carnival", -48, -47), ("Easter holidays", -3, -1))
DATED_BREAKS: tuple[tuple[str, tuple[int, int], tuple[int, int]], ...] = (
    ("Summer holidays", (6, 11), (9, 14)), ("Christmas holidays", (12, 23), (1, 6)))

# The story of two classrooms (institute, classroom): sensors installed late in a school day
# (first reading at INSTALL_AT local, the day judged on too little data) and sensors that stop
# STALE_WEEKS before the end of the data while their institute goes on.
LATE_CLASSROOM = ("Istituto Sant'Anna", "Aula Musica")
INSTALL_AFTER_DAYS = 14  # the first school Wednesday this many days after the start
INSTALL_AT = 13 + 55 / 60
STALE_CLASSROOM = ("IIS Enrico Fermi", "Lab Chimica")
STALE_WEEKS = 3  # its last reading: the Friday at least 3 weeks before the end, at STOP_AT
STOP_AT = 11.0
HEATING_SEASON: tuple[int, int] = (1015, 415)  # MMDD, wraps over the new year


@dataclass(frozen=True)
class DirtRates:
    """Share of rows carrying each dirty case of the contract (each also forced once a batch)."""

    null_sendtime: float = 0.002
    null_device: float = 0.001
    replay: float = 0.004
    fault: float = 0.0005  # per kind of impossible value


DIRT = DirtRates()

# Impossible values faulty sensors send, each in the range of rows whose device measures it.
FAULTS: tuple[tuple[str, float], ...] = (
    ("co2", -350.0),
    ("humidity", 180.0),
    ("temperature", 300.0),
    ("temperature", math.nan),
    ("pressure", 0.0),
    ("battery", 255.0),
    ("tvoc", 65_535.0),
)


def _classrooms() -> list[tuple[int, str]]:
    """(institute index, classroom name) of every classroom, in order."""
    return [(i, name) for i, institute in enumerate(INSTITUTES) for name in institute.classrooms]


def _installed_devices() -> list[tuple[int, int, bool, str]]:
    """(profile, classroom, registered, name) of every device: an air sensor and a door sensor
    per classroom, a second air sensor in every other classroom, and a few devices missing
    from the registry (their classroom is drawn in build_fleet)."""
    devices: list[tuple[int, int, bool, str]] = []
    for room, (institute_index, name) in enumerate(_classrooms()):
        slug = INSTITUTES[institute_index].slug
        label = name.replace(" ", "")
        air = AM103 if room % 3 == 2 else AM319
        devices.append((air, room, True, f"{PROFILES[air]}-{slug}-{label}"))
        if room % 2 == 0:
            devices.append((AM103, room, True, f"AM103-{slug}-{label}-2"))
        devices.append((WS301, room, True, f"WS301-{slug}-{label}-door"))
    for number, profile in enumerate(UNREGISTERED_PROFILES, start=1):
        devices.append((profile, -1, False, f"{PROFILES[profile]}-new-{number:02d}"))
    return devices


def default_readings(days: int) -> int:
    """The reporting slots of every device reporting every DEFAULT_INTERVAL_MINUTES for `days`."""
    return len(_installed_devices()) * days * 24 * 60 // DEFAULT_INTERVAL_MINUTES


DEFAULT_READINGS = default_readings(DEFAULT_DAYS)


# ---------------------------------------------------------------------------------------
# Schema drift: how the streaming side's writer stored the readings over the months
# ---------------------------------------------------------------------------------------

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "double": pa.float64(),
    "bigint": pa.int64(),
    "int": pa.int32(),
}
CONTRACT_ARROW_TYPES: dict[str, pa.DataType] = {
    column.name: _ARROW_TYPES[column.spark_type.simpleString()] for column in RAW_COLUMNS
}
# The contract reads light_level as a double (some files store a fraction); devices send
# whole numbers, which the streaming side stores as bigint.
CONTRACT_ARROW_TYPES["light_level"] = pa.int64()
RADIO_COLUMNS: dict[str, pa.DataType] = {"rssi": pa.int32(), "snr": pa.float64()}

FIRST_FIRMWARE = "first_firmware"  # the oldest files: no tvoc yet, narrower numeric types
CURRENT = "current"
BACKFILL = "backfill"  # one file rewritten by another tool: co2 as a decimal
RADIO_METADATA = "radio_metadata"  # the newest files: the gateway's rssi and snr appended

ERA_TYPE_OVERRIDES: dict[str, dict[str, pa.DataType]] = {
    FIRST_FIRMWARE: {"co2": pa.int32(), "humidity": pa.float32(), "light_level": pa.int32(),
                     "door_open_times": pa.int32(), "last_open_minutes": pa.int32()},
    CURRENT: {},
    BACKFILL: {"co2": pa.decimal128(8, 1), "light_level": pa.float64()},
    RADIO_METADATA: {},
}
ERA_MISSING_COLUMNS: dict[str, tuple[str, ...]] = {FIRST_FIRMWARE: ("tvoc",)}
ERA_EXTRA_COLUMNS: dict[str, dict[str, pa.DataType]] = {RADIO_METADATA: RADIO_COLUMNS}


def era_schema(era: str) -> pa.Schema:
    """The Parquet schema files of `era` were written with."""
    missing = set(ERA_MISSING_COLUMNS.get(era, ()))
    overrides = ERA_TYPE_OVERRIDES[era]
    fields = [pa.field(name, overrides.get(name, arrow_type))
              for name, arrow_type in CONTRACT_ARROW_TYPES.items() if name not in missing]
    fields += [pa.field(name, arrow_type)
               for name, arrow_type in ERA_EXTRA_COLUMNS.get(era, {}).items()]
    return pa.schema(fields)


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DemoParameters:
    """What determines a demo dataset's content."""

    readings: int = DEFAULT_READINGS
    seed: int = DEFAULT_SEED
    start: date = DEFAULT_START
    days: int = DEFAULT_DAYS

    def as_json(self) -> dict[str, object]:
        return {"readings": self.readings, "seed": self.seed, "start": self.start.isoformat(),
                "days": self.days, "generator_version": GENERATOR_VERSION}


@dataclass(frozen=True)
class DemoDatasetInfo:
    """A written demo dataset: where it is and what it holds."""

    path: Path
    files: tuple[str, ...]
    readings: int  # asked for: the fleet's reporting slots over the span
    seed: int
    start: date
    days: int
    institutes: tuple[str, ...]
    devices: int
    unregistered_devices: int
    # Part files of micro-batches that failed before their commit: in the folder, not in the log.
    uncommitted_files: tuple[str, ...] = ()
    # Where the sink log says the files are (absolute).
    sink_path: str = ""
    # Written: the slots of devices not yet installed or no longer reporting stay empty.
    rows: int = 0

    @property
    def parameters(self) -> DemoParameters:
        return DemoParameters(self.readings, self.seed, self.start, self.days)

    def as_json(self) -> dict[str, object]:
        return {**self.parameters.as_json(), "files": list(self.files),
                "institutes": list(self.institutes), "devices": self.devices,
                "unregistered_devices": self.unregistered_devices,
                "uncommitted_files": list(self.uncommitted_files), "sink_path": self.sink_path,
                "rows": self.rows}

    @classmethod
    def from_json(cls, path: Path, document: dict[str, object]) -> DemoDatasetInfo:
        return cls(path=path, files=tuple(document["files"]), readings=int(document["readings"]),
                   seed=int(document["seed"]), start=date.fromisoformat(str(document["start"])),
                   days=int(document["days"]), institutes=tuple(document["institutes"]),
                   devices=int(document["devices"]),
                   unregistered_devices=int(document["unregistered_devices"]),
                   uncommitted_files=tuple(document.get("uncommitted_files", ())),
                   sink_path=str(document.get("sink_path", "")), rows=int(document.get("rows", 0)))


def generate_demo_dataset(
    output_dir: Path,
    readings: int | None = None,
    seed: int = DEFAULT_SEED,
    start: date = DEFAULT_START,
    days: int = DEFAULT_DAYS,
    force: bool = False,
) -> DemoDatasetInfo:
    """Write the readings of `readings` reporting slots (None: every DEFAULT_INTERVAL_MINUTES)
    as Parquet files `part-NNNNN.parquet` into `output_dir`.

    Refuses a non-empty `output_dir` unless `force`; the folder is replaced as a whole.
    """
    parameters = _checked_parameters(readings, seed, start, days)
    output_dir = Path(output_dir)
    if _holds_data(output_dir) and not force:
        raise DemoDatasetExistsError(
            f"{output_dir} already holds files; pass force=True (--force) to replace it")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging_dir = _new_sibling(output_dir, "writing")
    try:
        info = _write_dataset(staging_dir, parameters, output_dir.resolve())
        _replace_dir(staging_dir, output_dir)
    except BaseException:
        shutil.rmtree(staging_dir, ignore_errors=True)
        raise
    return replace(info, path=output_dir)


def ensure_demo_dataset(
    output_dir: Path,
    readings: int | None = None,
    seed: int = DEFAULT_SEED,
    start: date = DEFAULT_START,
    days: int = DEFAULT_DAYS,
) -> DemoDatasetInfo:
    """The demo dataset in `output_dir`, generated only if absent or made with other parameters.

    A folder holding data without the marker is not a demo dataset and is never replaced.
    """
    output_dir = Path(output_dir)
    parameters = _checked_parameters(readings, seed, start, days)
    existing = read_demo_dataset_info(output_dir)
    if existing is not None and _made_with(output_dir, parameters) \
            and existing.sink_path == str(output_dir.resolve()) \
            and all((output_dir / name).is_file() for name in existing.files):
        return existing
    if existing is None and _holds_data(output_dir):
        raise DemoDatasetExistsError(
            f"{output_dir} holds files but no {MARKER_FILE}: it is not a demo dataset, "
            f"so it is left alone; choose another folder or delete it")
    return generate_demo_dataset(output_dir, readings, seed, start, days, force=True)


APPENDED_PREFIX = "part-appended-"


def append_demo_day(output_dir: Path) -> tuple[date, int]:
    """Append the day after the demo dataset (and after the days appended before) to its sink,
    as the streaming job would deliver it: one more part file and one more committed batch in
    the sink's log. Returns the day and its readings. For trying an incremental run."""
    output_dir = Path(output_dir)
    info = read_demo_dataset_info(output_dir)
    if info is None:
        raise DemoDatasetError(f"{output_dir} holds no demo dataset: run ./start-spark.sh --demo first")
    appended = sorted(output_dir.glob(f"{APPENDED_PREFIX}*.parquet"))
    day = info.start + timedelta(days=info.days + len(appended))
    staging_dir = _new_sibling(output_dir, "appending")
    try:
        # The fleet and its story over that one day, from the demo's seed.
        generated = generate_demo_dataset(staging_dir / "day", None, info.seed, day, 1)
        name = f"{APPENDED_PREFIX}{day.isoformat()}.parquet"
        shutil.move(staging_dir / "day" / generated.files[0], output_dir / name)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    batches = [int(entry.name.split(".")[0]) for entry in (output_dir / SINK_LOG_DIR).iterdir()
               if entry.name.split(".")[0].isdigit()]
    _write_sink_log(output_dir, output_dir.resolve(), [name], first_batch_id=max(batches) + 1)
    return day, generated.rows


def read_demo_dataset_info(output_dir: Path) -> DemoDatasetInfo | None:
    """The marker of a complete demo dataset in `output_dir`, or None if there is none."""
    marker = Path(output_dir) / MARKER_FILE
    try:
        document = json.loads(marker.read_text(encoding="utf-8"))
        return DemoDatasetInfo.from_json(Path(output_dir), document)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _made_with(output_dir: Path, parameters: DemoParameters) -> bool:
    document = json.loads((output_dir / MARKER_FILE).read_text(encoding="utf-8"))
    return all(document.get(key) == value for key, value in parameters.as_json().items())


def _checked_parameters(readings: int | None, seed: int, start: date, days: int) -> DemoParameters:
    if readings is None:
        readings = default_readings(max(days, 1))
    if readings < 1:
        raise ConfigurationError(f"readings must be at least 1, got {readings}")
    if days < 1:
        raise ConfigurationError(f"days must be at least 1, got {days}")
    if seed < 0:
        raise ConfigurationError(f"seed must be a non-negative integer, got {seed}")
    return DemoParameters(readings, seed, start, days)


def _holds_data(folder: Path) -> bool:
    return folder.exists() and (not folder.is_dir() or any(folder.iterdir()))


def _new_sibling(output_dir: Path, purpose: str) -> Path:
    """A new empty folder beside `output_dir`, on the same file system so renames are atomic.

    Its name starts with a dot: readers skip it like any hidden or temporary file.
    """
    for attempt in range(100):
        candidate = output_dir.parent / f".{output_dir.name}.{purpose}-{os.getpid()}-{attempt}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise DemoDatasetError(f"cannot create a working folder beside {output_dir}: "
                           f"delete the leftover .{output_dir.name}.{purpose}-* folders")


def _replace_dir(staging_dir: Path, output_dir: Path) -> None:
    if not output_dir.exists() or (output_dir.is_dir() and not any(output_dir.iterdir())):
        if output_dir.exists():
            output_dir.rmdir()
        os.replace(staging_dir, output_dir)
        return
    # A directory cannot be renamed over a non-empty one: move the old one aside first.
    retired = _new_sibling(output_dir, "retired")
    retired.rmdir()
    os.replace(output_dir, retired)
    os.replace(staging_dir, output_dir)
    if retired.is_dir():
        shutil.rmtree(retired)
    else:
        retired.unlink()


# ---------------------------------------------------------------------------------------
# The fleet: devices, where they hang, and their individual quirks
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fleet:
    """Every device and classroom as parallel numpy arrays (one entry per device / classroom)."""

    dev_eui: np.ndarray  # str
    device_name: np.ndarray  # str
    profile: np.ndarray  # index into PROFILES
    registered: np.ndarray  # bool
    classroom: np.ndarray  # index into the classroom arrays: where the device hangs
    gateway: np.ndarray  # index into gateway_names: the nearest gateway
    phase: np.ndarray  # fraction of the uplink period
    co2_offset: np.ndarray
    temperature_offset: np.ndarray
    humidity_offset: np.ndarray
    tvoc_base: np.ndarray
    battery_start: np.ndarray
    battery_drain_per_day: np.ndarray
    rssi_base: np.ndarray
    classroom_name: np.ndarray  # str
    classroom_institute: np.ndarray  # index into INSTITUTES
    classroom_occupancy: np.ndarray  # people relative to a full class
    classroom_co2_rise: np.ndarray  # ppm above outdoor air a full class reaches in winter
    classroom_tvoc_rise: np.ndarray
    institute_names: np.ndarray  # str
    gateway_names: np.ndarray  # str

    @property
    def size(self) -> int:
        return len(self.dev_eui)


def build_fleet(seed: int) -> Fleet:
    """The devices of _installed_devices, each with its quirks; the unregistered ones hang
    in random classrooms."""
    rng = np.random.default_rng([seed, 0xF1EE7])
    rooms = _classrooms()
    devices = _installed_devices()
    devices = [(profile, room if registered else int(rng.integers(len(rooms))), registered, name)
               for profile, room, registered, name in devices]
    count = len(devices)
    profile = np.array([d[0] for d in devices], dtype=np.int8)
    classroom = np.array([d[1] for d in devices], dtype=np.int32)
    classroom_institute = np.array([i for i, _ in rooms], dtype=np.int32)
    institute = classroom_institute[classroom]
    return Fleet(
        dev_eui=_unique_dev_euis(rng, count),
        device_name=np.array([d[3] for d in devices], dtype=object),
        profile=profile,
        registered=np.array([d[2] for d in devices]),
        classroom=classroom,
        gateway=institute * GATEWAYS_PER_INSTITUTE
        + rng.integers(GATEWAYS_PER_INSTITUTE, size=count),
        phase=rng.random(count),
        co2_offset=rng.normal(0.0, 12.0, count),
        temperature_offset=rng.normal(0.0, 0.6, count),
        humidity_offset=rng.normal(0.0, 3.0, count),
        tvoc_base=rng.uniform(40.0, 120.0, count),
        battery_start=rng.uniform(70.0, 100.0, count),
        battery_drain_per_day=rng.uniform(0.01, 0.12, count),
        rssi_base=rng.uniform(-112.0, -60.0, count),
        classroom_name=np.array([name for _, name in rooms], dtype=object),
        classroom_institute=classroom_institute,
        classroom_occupancy=rng.uniform(0.55, 1.2, len(rooms)),
        classroom_co2_rise=rng.uniform(450.0, 1150.0, len(rooms))
        * np.where(rng.random(len(rooms)) < POORLY_VENTILATED_SHARE, 1.9, 1.0),
        classroom_tvoc_rise=rng.uniform(120.0, 700.0, len(rooms)),
        institute_names=np.array([institute.name for institute in INSTITUTES], dtype=object),
        gateway_names=np.array([f"gw-{institute.slug}-{n + 1}" for institute in INSTITUTES
                                for n in range(GATEWAYS_PER_INSTITUTE)], dtype=object),
    )


def _unique_dev_euis(rng: np.random.Generator, count: int) -> np.ndarray:
    # Milesight's OUI followed by a random, unique 40-bit serial.
    serials = rng.choice(1 << 40, size=count, replace=False)
    return np.array([f"24E124{int(serial):010X}" for serial in serials], dtype=object)


# ---------------------------------------------------------------------------------------
# The file plan: which slots of the reading sequence go to which file
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Timeline:
    """Slot i is round i // devices of device i % devices; rounds are `period_us` apart."""

    start_us: int
    period_us: float
    devices: int
    readings: int
    first_day: int  # local days since the epoch of the first reading, minus one
    day_count: int


@dataclass(frozen=True)
class PlannedFile:
    name: str
    first_slot: int
    end_slot: int
    era: str


def build_timeline(parameters: DemoParameters, devices: int) -> Timeline:
    start_us = _date_us(parameters.start)
    rounds = math.ceil(parameters.readings / devices)
    # One spare round keeps the jittered last round inside the span.
    period_us = parameters.days * MICROS_PER_DAY / (rounds + 1)
    return Timeline(start_us=start_us, period_us=period_us, devices=devices,
                    readings=parameters.readings, first_day=start_us // MICROS_PER_DAY - 1,
                    day_count=parameters.days + 3)


def plan_files(timeline: Timeline, parameters: DemoParameters) -> tuple[PlannedFile, ...]:
    """One file per calendar month (split when large), in time order, each with its era."""
    month_slots = _month_slot_ranges(timeline, parameters)
    eras = _month_eras(len(month_slots))
    planned: list[PlannedFile] = []
    for (first, end), era in zip(month_slots, eras):
        for chunk_first in range(first, end, MAX_ROWS_PER_FILE):
            # A large month is split, but only one file of it was backfilled.
            file_era = CURRENT if era == BACKFILL and chunk_first != first else era
            planned.append(PlannedFile(f"part-{len(planned):05d}.parquet", chunk_first,
                                       min(chunk_first + MAX_ROWS_PER_FILE, end), file_era))
    return tuple(planned)


def _month_slot_ranges(timeline: Timeline, parameters: DemoParameters) -> list[tuple[int, int]]:
    end = parameters.start + timedelta(days=parameters.days)
    boundaries = [timeline.readings]
    month = date(parameters.start.year, parameters.start.month, 1)
    while True:
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        if month >= end:
            break
        first_round = math.ceil((_date_us(month) - timeline.start_us) / timeline.period_us)
        boundaries.append(min(first_round * timeline.devices, timeline.readings))
    boundaries = sorted(set(boundaries))
    edges = [0] + boundaries
    return [(first, last) for first, last in zip(edges, edges[1:]) if last > first]


def _month_eras(months: int) -> list[str]:
    old = max(1, months // 4) if months > 1 else 0
    new_from = months - max(1, months // 2)
    eras = [FIRST_FIRMWARE if m < old else RADIO_METADATA if m >= new_from else CURRENT
            for m in range(months)]
    if CURRENT in eras:
        eras[eras.index(CURRENT)] = BACKFILL
    return eras


@dataclass(frozen=True)
class Story:
    """When each device reports: its phase in the reporting cycle and the rounds it reports in
    (from `first_round` to before `end_round`), which tell the late and the stale classroom."""

    phase: np.ndarray
    first_round: np.ndarray
    end_round: np.ndarray
    # The sensors with a fault for the health tables (devtools/demo_health.py).
    faults: SensorFaults = SensorFaults()


def plan_story(fleet: Fleet, timeline: Timeline, parameters: DemoParameters) -> Story:
    """The late classroom's sensors come online at INSTALL_AT local on a school Wednesday, their
    first reading right then; the stale classroom's stop at STOP_AT local on a Friday STALE_WEEKS
    before the end. Either is left out when the span is too short for it."""
    rounds = math.ceil(timeline.readings / timeline.devices)
    phase = fleet.phase.copy()
    first_round = np.zeros(fleet.size, dtype=np.int64)
    end_round = np.full(fleet.size, rounds, dtype=np.int64)
    end = parameters.start + timedelta(days=parameters.days)
    closed = closed_dates(parameters.start, end)
    install_day = parameters.start + timedelta(days=INSTALL_AFTER_DAYS)
    while install_day.weekday() != 2 or install_day in closed:
        install_day += timedelta(days=1)
    if install_day < end - timedelta(days=1):
        late = _classroom_devices(fleet, LATE_CLASSROOM)
        # In rounds since the start; a reading's jitter is centred on phase + 0.5 of its round.
        at = (_rome_instant_us(install_day, INSTALL_AT) - timeline.start_us) / timeline.period_us
        phase[late] = (at - 0.5) % 1.0
        first_round[late] = math.floor(at - 0.5)
    stop_day = end - timedelta(weeks=STALE_WEEKS)
    stop_day -= timedelta(days=(stop_day.weekday() - 4) % 7)
    if stop_day >= parameters.start + timedelta(weeks=1):
        stale = _classroom_devices(fleet, STALE_CLASSROOM)
        at = (_rome_instant_us(stop_day, STOP_AT) - timeline.start_us) / timeline.period_us
        end_round[stale] = np.floor(at - 0.5 - phase[stale]).astype(np.int64) + 1
    told = np.isin(np.arange(fleet.size), np.concatenate(
        [_classroom_devices(fleet, LATE_CLASSROOM), _classroom_devices(fleet, STALE_CLASSROOM)]))
    faults = SensorFaults.choose(fleet.classroom_institute[fleet.classroom],
                                 fleet.registered & (fleet.profile == AM319) & ~told,
                                 _rome_instant_us(end, 0.0), parameters.days)
    return Story(phase=phase, first_round=first_round, end_round=end_round, faults=faults)


def _classroom_devices(fleet: Fleet, classroom: tuple[str, str]) -> np.ndarray:
    """The devices hanging in (institute, classroom)."""
    institute = list(fleet.institute_names).index(classroom[0])
    room = np.flatnonzero((fleet.classroom_institute == institute)
                          & (fleet.classroom_name == classroom[1]))
    return np.flatnonzero(np.isin(fleet.classroom, room))


def _date_us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()) \
        * MICROS_PER_SECOND


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------

def _write_dataset(folder: Path, parameters: DemoParameters, final_dir: Path) -> DemoDatasetInfo:
    """Write the dataset into `folder`, which is renamed to `final_dir` once complete."""
    fleet = build_fleet(parameters.seed)
    timeline = build_timeline(parameters, fleet.size)
    story = plan_story(fleet, timeline, parameters)
    world = World.build(replace(fleet, phase=story.phase), timeline, story, parameters.seed)
    files = plan_files(timeline, parameters)
    rows = sum(_write_file(folder / planned.name, planned, world, parameters.seed)
               for planned in files)
    orphan = _write_aborted_attempt(folder, files[-1].name)
    _write_sink_log(folder, final_dir, [planned.name for planned in files])
    info = DemoDatasetInfo(
        path=folder, files=tuple(f.name for f in files), readings=parameters.readings,
        seed=parameters.seed, start=parameters.start, days=parameters.days,
        institutes=tuple(institute.name for institute in INSTITUTES), devices=fleet.size,
        unregistered_devices=int((~fleet.registered).sum()), uncommitted_files=(orphan,),
        sink_path=str(final_dir), rows=rows)
    # Written last: its presence means every file before it is complete.
    (folder / MARKER_FILE).write_text(
        json.dumps(info.as_json(), indent=2, ensure_ascii=False, sort_keys=True) + "\n",
        encoding="utf-8")
    return info


def _write_aborted_attempt(folder: Path, committed: str) -> str:
    """The part file of the last micro-batch's first attempt, which died before its commit.

    Its restart wrote the same readings again into `committed`; a reader that does not
    follow the sink log counts them twice.
    """
    orphan = committed.replace(".parquet", "-attempt-0.parquet")
    shutil.copyfile(folder / committed, folder / orphan)
    return orphan


def _write_sink_log(folder: Path, final_dir: Path, files: Sequence[str], first_batch_id: int = 0) -> None:
    """The `_spark_metadata/` log of a file sink that committed `files`, one micro-batch each
    from `first_batch_id` on (after the batches the log holds).

    Written by Spark's own FileStreamSinkLog, so that its format (and compaction) is exactly
    what a streaming query writes. The paths are those the files will have in `final_dir`.
    """
    active = SparkSession.getActiveSession()
    spark = active or (SparkSession.builder.master("local[1]").appName("indoor-air-demo-sink-log")
                       .config("spark.ui.enabled", "false").getOrCreate())
    compact_key = "spark.sql.streaming.fileSink.log.compactInterval"
    previous = spark.conf.get(compact_key, None)
    try:
        spark.conf.set(compact_key, str(SINK_LOG_COMPACT_INTERVAL))
        jvm = spark.sparkContext._jvm
        streaming = jvm.org.apache.spark.sql.execution.streaming
        sink_log = streaming.FileStreamSinkLog(
            streaming.FileStreamSinkLog.VERSION(), spark._jsparkSession,
            str(folder / SINK_LOG_DIR), jvm.scala.Option.empty())
        for batch_id, name in enumerate(files, start=first_batch_id):
            stat = (folder / name).stat()
            uri = jvm.org.apache.hadoop.fs.Path(f"file:{final_dir / name}").toUri().toString()
            statuses = spark.sparkContext._gateway.new_array(streaming.SinkFileStatus, 1)
            statuses[0] = streaming.SinkFileStatus.apply(
                uri, stat.st_size, False, stat.st_mtime_ns // 1_000_000, 1, 32 * 1024 * 1024,
                streaming.FileStreamSinkLog.ADD_ACTION())
            if not sink_log.add(batch_id, statuses):
                raise DemoDatasetError(f"cannot write batch {batch_id} of the sink log in {folder}")
    finally:
        if active is not None:
            if previous is None:
                spark.conf.unset(compact_key)
            else:
                spark.conf.set(compact_key, previous)
        else:
            spark.stop()


def _write_file(path: Path, planned: PlannedFile, world: World, seed: int) -> int:
    """Write the readings of the planned slots whose device reports then; returns how many."""
    schema = era_schema(planned.era)
    rows = 0
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for first in range(planned.first_slot, planned.end_slot, BATCH_ROWS):
            end = min(first + BATCH_ROWS, planned.end_slot)
            rng = np.random.default_rng([seed, first])
            slots = world.reporting(np.arange(first, end, dtype=np.int64))
            if len(slots):
                writer.write_table(_batch_table(world, slots, schema, rng))
                rows += len(slots)
    return rows


def _batch_table(world: World, slots: np.ndarray, schema: pa.Schema,
                 rng: np.random.Generator) -> pa.Table:
    readings = world.readings(slots, rng)
    replayed = _choose_rows(rng, len(slots), DIRT.replay, np.arange(len(slots)) > 0)
    untouched = ~replayed
    _inject_faults(readings, rng, untouched)
    # A replay's source keeps its sendtime, so the replay is a visible (DevEui, sendtime) twin.
    replay_source = np.roll(replayed, -1)
    readings.nulls["sendtime"] |= _choose_rows(rng, len(slots), DIRT.null_sendtime,
                                               untouched & ~replay_source)
    readings.nulls["DevEui"] |= _choose_rows(rng, len(slots), DIRT.null_device,
                                             untouched & ~replay_source)
    table = pa.Table.from_arrays(
        [readings.arrow_column(field.name, field.type) for field in schema], schema=schema)
    # A replay is the previous uplink stored again, in place of the one that followed it.
    rows = np.arange(len(slots))
    rows[replayed] -= 1
    while replayed[rows].any():  # consecutive replays all copy the same original
        rows = np.where(replayed[rows], rows - 1, rows)
    return table.take(pa.array(rows))


def _choose_rows(rng: np.random.Generator, count: int, share: float,
                 eligible: np.ndarray) -> np.ndarray:
    """A random `share` of the eligible rows, and at least one if any is eligible."""
    chosen = (rng.random(count) < share) & eligible
    if not chosen.any() and eligible.any():
        chosen[rng.choice(np.flatnonzero(eligible))] = True
    return chosen


def _inject_faults(readings: Readings, rng: np.random.Generator, eligible: np.ndarray) -> None:
    for metric, value in FAULTS:
        measured = ~readings.nulls[metric]
        faulty = _choose_rows(rng, len(eligible), DIRT.fault, eligible & measured)
        readings.values[metric][faulty] = value


# ---------------------------------------------------------------------------------------
# Simulation of one batch of readings
# ---------------------------------------------------------------------------------------

@dataclass
class Readings:
    """One batch: a value array and a null mask per column, before any physical typing."""

    values: dict[str, np.ndarray]
    nulls: dict[str, np.ndarray]
    strings: dict[str, tuple[np.ndarray, np.ndarray]]  # column -> (codes, dictionary)

    def arrow_column(self, name: str, arrow_type: pa.DataType) -> pa.Array:
        if name in self.strings:
            codes, dictionary = self.strings[name]
            return pa.DictionaryArray.from_arrays(
                pa.array(codes, mask=self.nulls[name]), pa.array(dictionary, pa.string())
            ).cast(pa.string())
        return _typed_array(self.values[name], self.nulls[name], arrow_type)


def _typed_array(values: np.ndarray, nulls: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(arrow_type):
        return pa.array(values, type=arrow_type, mask=nulls)
    if pa.types.is_integer(arrow_type):
        whole = np.rint(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0))
        return pa.array(whole.astype(arrow_type.to_pandas_dtype()), mask=nulls)
    if pa.types.is_decimal(arrow_type):
        rounded = np.round(values, arrow_type.scale)
        return pa.array(rounded, mask=nulls).cast(arrow_type, safe=False)
    return pa.array(values.astype(arrow_type.to_pandas_dtype()), mask=nulls)


@dataclass(frozen=True)
class LocalCalendar:
    """Local (Central European) clock and calendar of each reading."""

    hour: np.ndarray  # fractional hour of the local day
    weekday: np.ndarray  # 0 = Monday
    day: np.ndarray  # local days since the epoch
    month_day: np.ndarray  # MMDD
    winterness: np.ndarray  # 1 in mid-January, -1 in mid-July


@dataclass(frozen=True)
class World:
    """The fleet, the timeline and the day-to-day randomness shared by every batch."""

    fleet: Fleet
    timeline: Timeline
    story: Story
    class_attendance: np.ndarray  # [classroom, day]: 0 = empty (trip, strike), ~1 = usual
    closed_days: np.ndarray  # [day]: a public holiday or a school break
    weather_phase: tuple[float, float]

    @classmethod
    def build(cls, fleet: Fleet, timeline: Timeline, story: Story, seed: int) -> World:
        rng = np.random.default_rng([seed, 0xDA75])
        rooms = len(fleet.classroom_name)
        attendance = rng.lognormal(0.0, 0.22, (rooms, timeline.day_count))
        attendance[rng.random((rooms, timeline.day_count)) < 0.03] = 0.0
        first = date(1970, 1, 1) + timedelta(days=timeline.first_day)
        days = [first + timedelta(days=n) for n in range(timeline.day_count)]
        closed = closed_dates(days[0], days[-1] + timedelta(days=1))
        return cls(fleet=fleet, timeline=timeline, story=story, class_attendance=attendance,
                   closed_days=np.array([day in closed for day in days]),
                   weather_phase=(float(rng.uniform(0, 2 * np.pi)),
                                  float(rng.uniform(0, 2 * np.pi))))

    def reporting(self, slots: np.ndarray) -> np.ndarray:
        """The slots whose device is installed and still reporting in their round."""
        device = slots % self.fleet.size
        rounds = slots // self.fleet.size
        # The silent sensor's rounds, by the middle of each (_sendtimes' jitter aside).
        middle_us = self.timeline.start_us + (rounds + self.fleet.phase[device] + 0.5) \
            * self.timeline.period_us
        return slots[(rounds >= self.story.first_round[device])
                     & (rounds < self.story.end_round[device])
                     & self.story.faults.reporting(device, middle_us)]

    def readings(self, slots: np.ndarray, rng: np.random.Generator) -> Readings:
        fleet = self.fleet
        device = (slots % fleet.size).astype(np.int32)
        sendtime_us = self._sendtimes(slots, device, rng)
        calendar = self._calendar(sendtime_us)
        room = fleet.classroom[device]
        presence = self._presence(calendar, room)
        values: dict[str, np.ndarray] = {"sendtime": sendtime_us}
        values.update(_air(fleet, device, room, calendar, presence, rng))
        values["pressure"] = self._pressure(sendtime_us, device, rng)
        values.update(_light_and_motion(calendar, presence, rng))
        values.update(_power(fleet, device, sendtime_us - self.timeline.start_us, rng))
        values.update(_doors(presence, rng))
        values.update(_radio(fleet, device, rng))
        self.story.faults.apply(values, device)
        nulls = {name: ~_measured(name, fleet.profile[device]) for name in values}
        strings, string_nulls = self._strings(device, rng)
        return Readings(values=values, nulls={**nulls, **string_nulls}, strings=strings)

    def _sendtimes(self, slots: np.ndarray, device: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
        timeline = self.timeline
        # Around the middle of each device's own period (a tenth of it either way, as the
        # devices' clocks drift), so its readings stay in order and never collide.
        position = slots // timeline.devices + self.fleet.phase[device] \
            + rng.uniform(0.4, 0.6, len(slots))
        sendtime_us = timeline.start_us + position * timeline.period_us
        return (sendtime_us // 1000).astype(np.int64) * 1000  # network servers stamp milliseconds

    def _calendar(self, sendtime_us: np.ndarray) -> LocalCalendar:
        local_us = sendtime_us + _rome_offset_us(sendtime_us)
        day = local_us // MICROS_PER_DAY
        as_date = day.astype("datetime64[D]")
        month_start = as_date.astype("datetime64[M]")
        month_day = (month_start.astype(np.int64) % 12 + 1) * 100 \
            + (as_date - month_start.astype("datetime64[D]")).astype(np.int64) + 1
        year_start = as_date.astype("datetime64[Y]").astype("datetime64[D]")
        year_day = (as_date - year_start).astype(np.int64)
        return LocalCalendar(
            hour=(local_us - day * MICROS_PER_DAY) / MICROS_PER_HOUR,
            weekday=(day + 3) % 7,  # 1970-01-01 was a Thursday
            day=day,
            month_day=month_day,
            winterness=np.cos(2 * np.pi * (year_day - 15) / 365.25),
        )

    def _presence(self, calendar: LocalCalendar, room: np.ndarray) -> Presence:
        fleet = self.fleet
        institute = fleet.classroom_institute[room]
        weekdays = np.array([i.school_weekdays for i in INSTITUTES])[institute]
        lessons_start = np.array([i.lessons_start_hour for i in INSTITUTES])[institute]
        lessons_end = np.array([i.lessons_end_hour for i in INSTITUTES])[institute]
        day_index = np.clip(calendar.day - self.timeline.first_day, 0,
                            self.class_attendance.shape[1] - 1)
        attendance = self.class_attendance[room, day_index] * fleet.classroom_occupancy[room]
        open_day = (calendar.weekday < weekdays) & ~self.closed_days[day_index]
        school_day = open_day & (attendance > 0)
        in_lessons = school_day & (calendar.hour >= lessons_start) & (calendar.hour < lessons_end)
        cycle = np.zeros(len(calendar.hour))
        for index, school in enumerate(INSTITUTES):
            at_school = institute == index
            cycle[at_school] = _ventilation_cycle(calendar.hour[at_school], school)
        level = np.where(school_day, cycle, 0.0)
        heated = open_day & (calendar.hour >= lessons_start - 2) & (calendar.hour < lessons_end + 1)
        return Presence(in_lessons=in_lessons, load=level * attendance, heated=heated,
                        heating_season=_in_heating_season(calendar.month_day))

    def _pressure(self, sendtime_us: np.ndarray, device: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
        days = sendtime_us / MICROS_PER_DAY
        altitude = np.array([i.altitude_hpa for i in INSTITUTES])[
            self.fleet.classroom_institute[self.fleet.classroom[device]]]
        weather = 7.0 * np.sin(2 * np.pi * days / 5.3 + self.weather_phase[0]) \
            + 4.0 * np.sin(2 * np.pi * days / 13.1 + self.weather_phase[1])
        return np.round(1013.2 - altitude + weather + rng.normal(0.0, 0.3, len(days)), 1)

    def _strings(self, device: np.ndarray, rng: np.random.Generator
                 ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
        """The string columns as (codes, dictionary), and their null masks."""
        fleet = self.fleet
        room = fleet.classroom[device]
        # Now and then the uplink is picked up by another gateway of the institute.
        gateway = fleet.gateway[device]
        other_gateway = gateway - gateway % GATEWAYS_PER_INSTITUTE \
            + (gateway % GATEWAYS_PER_INSTITUTE + 1) % GATEWAYS_PER_INSTITUTE
        gateway = np.where(rng.random(len(device)) < 0.1, other_gateway, gateway)
        strings = {
            "DevEui": (device, fleet.dev_eui),
            "deviceName": (device, fleet.device_name),
            "gwname": (gateway, fleet.gateway_names),
            "institute": (fleet.classroom_institute[room], fleet.institute_names),
            "classroom": (room, fleet.classroom_name),
            "profile": (fleet.profile[device], np.array(PROFILES, dtype=object)),
        }
        unregistered = ~fleet.registered[device]
        from_registry = ("institute", "classroom", "profile")
        nulls = {name: unregistered if name in from_registry else np.zeros(len(device), bool)
                 for name in strings}
        return strings, nulls


@dataclass(frozen=True)
class Presence:
    """How occupied each reading's classroom is, and whether it is heated."""

    in_lessons: np.ndarray
    load: np.ndarray  # 0 empty .. ~1.5 crowded and long unventilated
    heated: np.ndarray
    heating_season: np.ndarray


_MEASURED: dict[str, np.ndarray] = {
    metric: np.array([metric in PROFILE_METRICS[profile] for profile in PROFILES])
    for metric in sorted(set().union(*PROFILE_METRICS.values()))
}


def _measured(name: str, profile: np.ndarray) -> np.ndarray:
    if name in _MEASURED:
        return _MEASURED[name][profile]
    return np.ones(len(profile), dtype=bool)  # sendtime, rssi, snr: every uplink has them


def _ventilation_cycle(hour: np.ndarray, institute: Institute) -> np.ndarray:
    """Share (0-1) of its steady-state CO2 rise a classroom has reached at each local hour
    of a school day: rising through each block of lessons, dropping at each break."""
    edges = [institute.lessons_start_hour]
    for start, end in institute.breaks:
        edges += [start, end]
    edges.append(institute.lessons_end_hour)
    blocks = list(zip(edges[::2], edges[1::2]))  # lessons between the breaks
    level = np.zeros(len(hour))
    residual = 0.0  # what the last break left in the air
    for index, (start, end) in enumerate(blocks):
        lessons = (hour >= start) & (hour < end)
        level = np.where(lessons, 1.0 - (1.0 - residual) * np.exp(-(hour - start) / LESSON_BUILD_UP_H),
                         level)
        reached = 1.0 - (1.0 - residual) * math.exp(-(end - start) / LESSON_BUILD_UP_H)
        last = index == len(blocks) - 1
        following = math.inf if last else blocks[index + 1][0]
        decay_h = AFTER_SCHOOL_H if last else BREAK_AIRING_H
        aired = (hour >= end) & (hour < following)
        level = np.where(aired, reached * np.exp(-(hour - end) / decay_h), level)
        if not last:
            residual = reached * math.exp(-(following - end) / decay_h)
    return level


def easter_sunday(year: int) -> date:
    """Gregorian Easter Sunday (the anonymous algorithm, Meeus / Jones / Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month, day = divmod(h + el - 7 * m + 114, 31)
    return date(year, month, day + 1)


def public_holidays(first: date, end: date) -> list[date]:
    """Italy's national public holidays from `first` to before `end`."""
    found = []
    for year in range(first.year, end.year + 1):
        found += [date(year, month, day) for month, day in PUBLIC_HOLIDAYS]
        found.append(easter_sunday(year) + timedelta(days=1))  # Easter Monday
    return sorted(day for day in found if first <= day < end)


def school_breaks(first: date, end: date) -> list[tuple[str, date, date]]:
    """The demo schools' breaks (reason, first day, last day) that overlap `first` to `end`."""
    found = []
    for year in range(first.year - 1, end.year + 1):
        easter = easter_sunday(year)
        found += [(reason, easter + timedelta(days=begin), easter + timedelta(days=last))
                  for reason, begin, last in EASTER_BREAKS]
        for reason, (month, day), (last_month, last_day) in DATED_BREAKS:
            found.append((reason, date(year, month, day),
                          date(year + (last_month < month), last_month, last_day)))
    return sorted((b for b in found if b[1] < end and b[2] >= first), key=lambda b: b[1])


def closed_dates(first: date, end: date) -> set[date]:
    """Days from `first` to before `end` without lessons: public holidays and school breaks."""
    closed = set(public_holidays(first, end))
    for _, begin, last in school_breaks(first, end):
        closed |= {begin + timedelta(days=n) for n in range((last - begin).days + 1)}
    return {day for day in closed if first <= day < end}


def holiday_closures_csv(start: date, days: int) -> str:
    """The demo schools' breaks over `days` from `start` as an IAQ_CLOSURES_FILE (every
    institute). Public holidays are not in it: a school's closures file lists its own breaks,
    the analysis knows the country's public holidays."""
    lines = ["institute,first_date,last_date,reason"]
    for reason, first, last in school_breaks(start, start + timedelta(days=days)):
        lines.append(f"*,{first.isoformat()},{last.isoformat()},{reason}")
    return "\n".join(lines) + "\n"


def timetables_csv() -> str:
    """The demo institutes' timetables as an IAQ_TIMETABLE_FILE."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["institute", "timetable"])
    writer.writerows([institute.name, institute.timetable] for institute in INSTITUTES)
    return text.getvalue()


def _in_heating_season(month_day: np.ndarray) -> np.ndarray:
    first, last = HEATING_SEASON
    return (month_day >= first) | (month_day <= last)


def _rome_offset_us(utc_us: np.ndarray) -> np.ndarray:
    """Europe/Rome's offset from UTC at each instant: CET, and CEST from the last Sunday of
    March to the last Sunday of October, 01:00 UTC (EU Directive 2000/84/EC)."""
    years = (utc_us // MICROS_PER_DAY).astype("datetime64[D]").astype("datetime64[Y]")
    summer = np.zeros(len(utc_us), dtype=bool)
    for year in np.unique(years).astype(int) + 1970:
        def last_sunday(month: int) -> date:
            last = date(int(year), month, 31)
            return last - timedelta(days=(last.weekday() + 1) % 7)
        begin = _date_us(last_sunday(3)) + MICROS_PER_HOUR
        end = _date_us(last_sunday(10)) + MICROS_PER_HOUR
        summer |= (utc_us >= begin) & (utc_us < end)
    return np.where(summer, 2, 1) * MICROS_PER_HOUR


def _rome_instant_us(day: date, hour: float) -> int:
    """The UTC instant of local `hour` on `day` in Europe/Rome (never a changing hour here)."""
    wall_us = _date_us(day) + round(hour * MICROS_PER_HOUR)
    return wall_us - int(_rome_offset_us(np.array([wall_us - MICROS_PER_HOUR]))[0])


def _air(fleet: Fleet, device: np.ndarray, room: np.ndarray, calendar: LocalCalendar,
         presence: Presence, rng: np.random.Generator) -> dict[str, np.ndarray]:
    count = len(device)
    load = presence.load
    # Windows stay shut in winter, so the same class raises CO2 further.
    co2_rise = fleet.classroom_co2_rise[room] * (1.0 + 0.3 * calendar.winterness)
    co2 = 415.0 + fleet.co2_offset[device] + co2_rise * load \
        + rng.normal(0.0, 8.0, count) * (1.0 + 2.0 * load)
    outdoor = 13.5 - 10.0 * calendar.winterness + 4.0 * np.sin(2 * np.pi * (calendar.hour - 9) / 24)
    heated = np.where(presence.heated, 21.0, 18.5) + 0.08 * (outdoor - 5.0)
    unheated = 0.45 * outdoor + 12.5 + np.maximum(0.0, -calendar.winterness)
    temperature = np.where(presence.heating_season, heated, unheated) + 1.8 * load \
        + fleet.temperature_offset[device] + rng.normal(0.0, 0.15, count)
    humidity = 48.0 - 10.0 * calendar.winterness + 7.0 * load + fleet.humidity_offset[device] \
        + rng.normal(0.0, 1.5, count)
    tvoc = fleet.tvoc_base[device] + fleet.classroom_tvoc_rise[room] * load \
        * rng.lognormal(0.0, 0.25, count)
    return {
        "temperature": np.round(temperature, 1),
        "humidity": np.round(np.clip(humidity, 15.0, 95.0) * 2) / 2,  # 0.5 % resolution
        "co2": np.round(np.maximum(co2, 380.0)),
        "tvoc": np.round(tvoc),
    }


def _light_and_motion(calendar: LocalCalendar, presence: Presence,
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
    count = len(calendar.hour)
    daylight = np.clip(np.sin(np.pi * (calendar.hour - 6.5) / 12.5), 0.0, 1.0) \
        * (0.8 - 0.2 * calendar.winterness)
    lights_on = presence.in_lessons & (presence.load > 0)
    level = np.rint(2.2 * daylight + np.where(lights_on, 2.0, 0.0) + rng.normal(0.0, 0.3, count))
    motion = (lights_on & (rng.random(count) < 0.9)) | (rng.random(count) < 0.01)
    return {"light_level": np.clip(level, 0, 5), "pir": motion.astype(np.float64)}


def _power(fleet: Fleet, device: np.ndarray, elapsed_us: np.ndarray,
           rng: np.random.Generator) -> dict[str, np.ndarray]:
    elapsed_days = elapsed_us / MICROS_PER_DAY
    battery = fleet.battery_start[device] - fleet.battery_drain_per_day[device] * elapsed_days
    battery = np.clip(np.rint(battery + rng.normal(0.0, 0.4, len(device))), 1.0, 100.0)
    voltage = np.round(2.9 + 0.7 * battery / 100.0 + rng.normal(0.0, 0.01, len(device)), 2)
    return {"battery": battery, "battery_voltage": voltage}


def _doors(presence: Presence, rng: np.random.Generator) -> dict[str, np.ndarray]:
    count = len(presence.load)
    busy = presence.in_lessons & (presence.load > 0)
    door_open = rng.random(count) < np.where(busy, 0.25, 0.02)
    openings = rng.poisson(np.where(busy, 4.0, 0.05))
    open_minutes = rng.geometric(np.where(door_open, 0.15, 0.3)) - 1
    alarm = rng.random(count) < 0.001  # tamper alarm
    return {"door_status": door_open.astype(np.float64),
            "door_open_times": openings.astype(np.float64),
            "last_open_minutes": open_minutes.astype(np.float64),
            "alarm": alarm.astype(np.float64)}


def _radio(fleet: Fleet, device: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    count = len(device)
    return {"rssi": np.rint(fleet.rssi_base[device] + rng.normal(0.0, 4.0, count)),
            "snr": np.round(rng.normal(6.0, 3.5, count), 1)}


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------

def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.demo",
        description="Write a deterministic, realistic demo dataset of raw indoor-air readings "
                    "(Parquet, as the streaming side writes them, dirty cases included).")
    parser.add_argument("--output", type=Path, default=Path("data/demo/raw"),
                        help="folder to create (default: data/demo/raw)")
    parser.add_argument("--readings", type=_positive_int, default=None,
                        help="reporting slots of the fleet over the span: each device reports "
                             "every DAYS * DEVICES / READINGS; the slots of a classroom not yet "
                             "installed or no longer reporting stay empty (default: every "
                             f"{DEFAULT_INTERVAL_MINUTES} minutes, {DEFAULT_READINGS} over the "
                             "default days)")
    parser.add_argument("--seed", type=_non_negative_int, default=DEFAULT_SEED,
                        help="random seed; the same seed writes the same files "
                             f"(default: {DEFAULT_SEED})")
    parser.add_argument("--start", type=date.fromisoformat, default=DEFAULT_START,
                        help=f"first day, YYYY-MM-DD (default: {DEFAULT_START.isoformat()})")
    parser.add_argument("--days", type=_positive_int, default=DEFAULT_DAYS,
                        help=f"number of days covered (default: {DEFAULT_DAYS})")
    parser.add_argument("--closures-file", type=Path, default=None, metavar="FILE",
                        help="also write the demo schools' breaks there, as an IAQ_CLOSURES_FILE "
                             "(public holidays are not in it)")
    parser.add_argument("--timetable-file", type=Path, default=None, metavar="FILE",
                        help="also write the demo institutes' timetables there, as an "
                             "IAQ_TIMETABLE_FILE")
    parser.add_argument("--append-day", action="store_true",
                        help="append one more day to the existing demo dataset's sink (a new "
                             "part file and sink batch), then stop: the next analysis run is "
                             "incremental")
    parser.add_argument("--force", action="store_true",
                        help="regenerate even if the folder already holds this demo dataset "
                             "(without it, an existing identical dataset is kept)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        if arguments.append_day:
            day, rows = append_demo_day(arguments.output)
            print(f"appended {day.isoformat()} ({rows} readings) to the demo dataset in {arguments.output}")
            return 0
        if arguments.force:
            info = generate_demo_dataset(arguments.output, arguments.readings, arguments.seed,
                                         arguments.start, arguments.days, force=True)
        else:
            info = ensure_demo_dataset(arguments.output, arguments.readings, arguments.seed,
                                       arguments.start, arguments.days)
    except BatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    minutes = info.days * 24 * 60 * info.devices / info.readings
    print(f"demo dataset: {info.rows} readings of {info.devices} devices "
          f"({info.unregistered_devices} unregistered), each reporting every {minutes:.0f} "
          f"minutes, in {len(info.files)} files to {info.path}")
    if arguments.closures_file is not None:
        arguments.closures_file.write_text(holiday_closures_csv(arguments.start, arguments.days),
                                           encoding="utf-8")
        print(f"demo school breaks (closures of the compliance tables) in {arguments.closures_file}")
    if arguments.timetable_file is not None:
        arguments.timetable_file.write_text(timetables_csv(), encoding="utf-8")
        print(f"demo timetables in {arguments.timetable_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
