"""Readings of a few school days and the changes the tests of incremental runs make to a raw
folder (tests/test_incremental.py): new days, late readings, replays, files drifted, empty,
renamed, removed, rewritten, damaged, junk or hidden. Every visible file's readings are kept,
so that replays are exact copies and a step says what a run should count as new, changed and
removed.
"""
from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.published import write_rows
from tests.support.sink import HOSTILE_CLASSROOM

UTC = dt.timezone.utc
# A Friday: within a few days come a weekend, Rome's move to summer time (Sunday 30 March), a new
# ISO week (Monday 31) and a new month.
FIRST_DAY = dt.date(2025, 3, 28)


@dataclass(frozen=True)
class Device:
    dev_eui: str
    institute: str | None
    classroom: str | None


DEVICES = (Device("A840410000000001", "Liceo Galilei", "3A"),
           # Spaces, a comma and «» in a sink's partition folder name (URL-escaped in its log).
           Device("A840410000000002", "Liceo Galilei", HOSTILE_CLASSROOM),
           # The same classroom name in another institute.
           Device("A840410000000003", "Istituto \"Sant'Anna\"", "3A"))
UNREGISTERED = Device("A8404100000000FF", None, None)


# --- readings -------------------------------------------------------------------------------------

def reading(rng: random.Random, device: Device, at: dt.datetime | None, day: int) -> dict[str, Any]:
    """One reading with plausible values; CO2 rises through the morning (BB101 peaks happen)."""
    hours_in = 0.0 if at is None else max(0.0, (at.hour + at.minute / 60) - 7)
    return {"DevEui": device.dev_eui, "sendtime": at, "institute": device.institute,
            "classroom": device.classroom,
            "temperature": round(rng.uniform(19, 25), 2), "humidity": round(rng.uniform(30, 60), 1),
            "co2": float(round(450 + 300 * hours_in + rng.uniform(-80, 400))),
            "tvoc": float(rng.randrange(0, 600)), "pressure": round(rng.uniform(995, 1025), 1),
            "light_level": float(rng.randrange(0, 600)), "battery": round(90 - 0.5 * day + rng.uniform(0, 1), 1)}


def day_times(rng: random.Random, day: int) -> list[dt.datetime]:
    """A school morning (every ~10 minutes from 07:00 UTC, 08:00 or 09:00 in Rome) and a few late
    evening readings at 22:30-23:59 UTC, which Rome dates the next day."""
    date = FIRST_DAY + dt.timedelta(days=day)
    morning = dt.datetime.combine(date, dt.time(7), UTC)
    times = [morning + dt.timedelta(minutes=10 * index, seconds=rng.randrange(0, 60),
                                    microseconds=rng.randrange(0, 1_000_000))
             for index in range(rng.randrange(8, 31))]
    evening = dt.datetime.combine(date, dt.time(22, 30), UTC)
    times += [evening + dt.timedelta(seconds=rng.randrange(0, 90 * 60), microseconds=rng.randrange(0, 1_000_000))
              for _ in range(rng.randrange(1, 4))]
    return times


# --- the raw folder and the changes made to it ------------------------------------------------------

@dataclass(frozen=True)
class FileChanges:
    """What a step did to the input, as the run should count it."""

    new: int = 0
    changed: int = 0
    removed: int = 0
    detail: str = field(default="", compare=False)  # what else a reader of a failure should know


@dataclass
class Readings:
    """The readings stored so far, per file (or micro-batch), and new ones to store."""

    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    days: int = 0  # days FIRST_DAY onwards holding readings
    keys: set[tuple[str, dt.datetime]] = field(default_factory=set)  # (DevEui, sendtime) generated

    def fresh(self, rng: random.Random, device: Device, times: list[dt.datetime], day: int) -> list[dict[str, Any]]:
        """Readings at `times` whose (DevEui, sendtime) no reading had: only replays share one,
        so that DROP_REPLAYS keeps the same reading whichever copy it keeps."""
        rows = []
        for at in times:
            if (device.dev_eui, at) not in self.keys:
                self.keys.add((device.dev_eui, at))
                rows.append(reading(rng, device, at, day))
        return rows

    def dirt(self, rng: random.Random, day: int) -> list[dict[str, Any]]:
        """What the contract says real data holds: a reading without DevEui, one without
        sendtime, an unregistered device, values out of range."""
        at = dt.datetime.combine(FIRST_DAY + dt.timedelta(days=day), dt.time(9), UTC) + dt.timedelta(
            seconds=rng.randrange(3600), microseconds=rng.randrange(1_000_000))
        out_of_range = self.fresh(rng, rng.choice(DEVICES), [at], day)
        for row in out_of_range:
            row.update(co2=-50.0, humidity=180.0, battery=140.0)
        return [dict(reading(rng, rng.choice(DEVICES), at, day), DevEui=None),
                reading(rng, rng.choice(DEVICES), None, day),
                *self.fresh(rng, UNREGISTERED, [at], day), *out_of_range]

    def new_days(self, rng: random.Random, count: int) -> list[dict[str, Any]]:
        rows = []
        for day in range(self.days, self.days + count):
            for device in rng.sample(DEVICES, rng.randrange(2, len(DEVICES) + 1)):
                rows += self.fresh(rng, device, day_times(rng, day), day)
            if rng.random() < 0.7:
                rows += self.dirt(rng, day)
        self.days += count
        return rows

    def late(self, rng: random.Random) -> list[dict[str, Any]]:
        """Readings of days already stored, arriving late (some from a device that day lacked)."""
        rows = []
        for day in rng.sample(range(self.days), min(self.days, rng.randrange(1, 3))):
            rows += self.fresh(rng, rng.choice(DEVICES), rng.sample(day_times(rng, day), 3), day)
            if rng.random() < 0.3:
                rows += self.dirt(rng, day)
        return rows

    def replays(self, rng: random.Random) -> list[dict[str, Any]]:
        """Exact copies of readings already stored (same DevEui, sendtime and values), now and
        then of one without a DevEui or a sendtime (not a replay: both copies count)."""
        stored = [row for rows in self.files.values() for row in rows]
        copies = rng.sample(stored, min(len(stored), rng.randrange(1, 12)))
        keyless = [row for row in stored if row["DevEui"] is None or row["sendtime"] is None]
        if keyless and rng.random() < 0.5:
            copies.append(rng.choice(keyless))
        return [dict(row) for row in copies]


@dataclass
class RawFolder:
    """A plain folder of Parquet files and the readings of its visible ones."""

    path: Path
    readings: Readings = field(default_factory=Readings)
    written: int = 0  # files ever written: names are never reused

    def add_file(self, rows: list[dict[str, Any]]) -> FileChanges:
        name = f"part-{self.written:05d}.parquet"
        self.written += 1
        write_rows(self.path, rows, name)
        self.readings.files[name] = rows
        return FileChanges(new=1)

    def add_drifted_file(self, rows: list[dict[str, Any]], rng: random.Random) -> FileChanges:
        """A file of the contract's drift: sendtime as INT96, as milliseconds in Rome's zone or
        without a zone; a metric column missing, CO2 stored as integers, temperature as float32.
        The readings keep what the file holds, so that replays of them are exact."""
        sendtime_kind = rng.choice(("int96", "millis", "naive"))
        missing = rng.choice(("tvoc", "pressure", "light_level"))
        temperatures = pa.array([row["temperature"] for row in rows], pa.float32()).cast(pa.float64())
        for row, temperature in zip(rows, temperatures.to_pylist()):
            row.update({missing: None, "temperature": temperature})
            if sendtime_kind == "millis" and row["sendtime"] is not None:
                row["sendtime"] = row["sendtime"].replace(microsecond=row["sendtime"].microsecond // 1000 * 1000)
                self.readings.keys.add((row["DevEui"], row["sendtime"]))
        path = self.path / f"part-{self.written:05d}.parquet"
        self.add_file(rows)
        table = pq.read_table(path).drop_columns([missing])
        stored_types = {"co2": pa.int64(), "temperature": pa.float32(),
                        "sendtime": {"int96": pa.timestamp("us", tz="UTC"), "naive": pa.timestamp("us"),
                                     "millis": pa.timestamp("ms", tz="Europe/Rome")}[sendtime_kind]}
        for column, stored_type in stored_types.items():
            table = table.set_column(table.schema.get_field_index(column), column, table[column].cast(stored_type))
        pq.write_table(table, path, use_deprecated_int96_timestamps=sendtime_kind == "int96")
        return FileChanges(new=1, detail=f"{path.name}: sendtime {sendtime_kind}, no {missing}")

    def add_file_lacking_institute(self, rows: list[dict[str, Any]]) -> FileChanges:
        """A file without the `institute` column other files have (a fault of the writing
        pipeline): its readings cannot be attributed and are excluded."""
        for row in rows:
            row["institute"] = None
        path = self.path / f"part-{self.written:05d}.parquet"
        self.add_file(rows)
        pq.write_table(pq.read_table(path).drop_columns(["institute"]), path)
        return FileChanges(new=1)

    def rename_file(self, rng: random.Random) -> FileChanges:
        """A file moved to another name: to a listing, one file removed and one new."""
        name = rng.choice(sorted(self.readings.files))
        renamed = f"part-{self.written:05d}.parquet"
        self.written += 1
        os.rename(self.path / name, self.path / renamed)
        self.readings.files[renamed] = self.readings.files.pop(name)
        return FileChanges(new=1, removed=1)

    def remove_file(self, rng: random.Random) -> FileChanges:
        name = rng.choice(sorted(self.readings.files))
        os.remove(self.path / name)
        del self.readings.files[name]
        return FileChanges(removed=1)

    def rewrite_file(self, rng: random.Random) -> FileChanges:
        """The same name, other content: some readings gone, a few new ones of a day already stored."""
        name = rng.choice(sorted(self.readings.files))
        path = self.path / name
        before_ns = path.stat().st_mtime_ns
        day = rng.randrange(self.readings.days)
        rows = [row for row in self.readings.files[name] if rng.random() < 0.6] + self.readings.fresh(
            rng, rng.choice(DEVICES), rng.sample(day_times(rng, day), 2), day)
        write_rows(self.path, rows, name)
        # Rewritten later than it was first written, as a copy tool or a person would.
        os.utime(path, ns=(path.stat().st_atime_ns, max(path.stat().st_mtime_ns, before_ns + 2_000_000_000)))
        self.readings.files[name] = rows
        return FileChanges(changed=1)

    def damage_file(self, rng: random.Random) -> FileChanges:
        """A file read before, damaged in place: skipped by both runs (SKIP_CORRUPT_FILES), its
        readings lost."""
        name = rng.choice(sorted(self.readings.files))
        path = self.path / name
        before_ns = path.stat().st_mtime_ns
        path.write_bytes(b"PAR1 damaged")
        os.utime(path, ns=(path.stat().st_atime_ns, max(path.stat().st_mtime_ns, before_ns + 2_000_000_000)))
        del self.readings.files[name]
        return FileChanges(changed=1)

    def add_junk_file(self, rng: random.Random) -> FileChanges:
        """A new file that is no Parquet at all (an upload cut short): skipped by both runs."""
        (self.path / f"part-{self.written:05d}.parquet").write_bytes(b"PAR1 this is not a parquet file")
        self.written += 1
        return FileChanges(new=1)

    def hidden_files(self, rng: random.Random) -> FileChanges:
        """Files no reader of the folder may read: a copy in progress, a leftover checksum of a
        file no longer there, a job's _SUCCESS marker, a batch write's _temporary folder; the
        Parquet ones hold readings of a day not in the input."""
        day = self.readings.days
        hidden = self.readings.fresh(rng, rng.choice(DEVICES), day_times(rng, day), day)
        write_rows(self.path, hidden, f"_tmp.part-{self.written:05d}.parquet")
        write_rows(self.path / "_temporary" / "0", hidden, f"part-{self.written:05d}.parquet")
        (self.path / f".part-{self.written:05d}.parquet.crc").write_bytes(rng.randbytes(12))
        (self.path / "_SUCCESS").write_bytes(b"")
        self.written += 1
        return FileChanges()


STEPS: dict[str, Callable[[RawFolder, random.Random], FileChanges]] = {
    "new days": lambda folder, rng: folder.add_file(folder.readings.new_days(rng, rng.randrange(1, 3))),
    "late readings": lambda folder, rng: folder.add_file(folder.readings.late(rng)),
    "replays": lambda folder, rng: folder.add_file(folder.readings.replays(rng)),
    "drifted file": lambda folder, rng: folder.add_drifted_file(
        folder.readings.late(rng) + folder.readings.new_days(rng, 1), rng),
    "empty file": lambda folder, rng: folder.add_file([]),
    "file lacking institute": lambda folder, rng: folder.add_file_lacking_institute(folder.readings.late(rng)),
    "rename a file": RawFolder.rename_file,
    "remove a file": RawFolder.remove_file,
    "rewrite a file": RawFolder.rewrite_file,
    "hidden files": RawFolder.hidden_files,
    "damage a file": RawFolder.damage_file,
    "junk file": RawFolder.add_junk_file,
}


