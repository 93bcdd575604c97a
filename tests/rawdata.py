"""A raw dataset written with pyarrow, independently of the package, with every dirty case.

The rows are returned too, as plain Python values, so that tests can compute the expected
statistics another way (SQL in PostgreSQL) from exactly what was stored.
"""
from __future__ import annotations

import datetime as dt
import decimal
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

UTC = dt.timezone.utc
METRICS = ("temperature", "humidity", "co2", "tvoc", "pressure", "light_level", "battery")
# Physical ranges copied from shared/DATA_CONTRACT.md (not from the package).
RANGES = {"temperature": (-40, 85), "humidity": (0, 100), "battery": (0, 100), "co2": (0, 40000),
          "tvoc": (0, 60000), "pressure": (300, 1100), "light_level": (0, None)}
INSTITUTES = {
    "Liceo Galilei": ["3A", "4B", "Lab, chimica"],
    "Istituto \"Sant'Anna\"": ["3A", "Aula 1"],
    "École Voltaire ñ": ["3A", "Salle 日本"],
}
# Around the ISO-year boundaries 2020/2021 and 2024/2025, and a month end that Rome sees
# as the next month.
WINDOWS = [(at, 6) for at in (dt.datetime(2020, 12, 27, tzinfo=UTC),
                              dt.datetime(2024, 12, 27, tzinfo=UTC),
                              dt.datetime(2025, 1, 29, tzinfo=UTC))]


@dataclass(frozen=True)
class RawDataset:
    folder: Path
    rows: list[dict[str, Any]]  # every stored row, in the canonical Python form


def _devices(rng: random.Random) -> list[tuple[str, str | None, str | None, str]]:
    devices = []
    for institute, classrooms in INSTITUTES.items():
        for classroom in classrooms:
            for profile in ("AM319", "AM103"):
                devices.append((f"{rng.getrandbits(64):016x}", institute, classroom, profile))
    devices.append((f"{rng.getrandbits(64):016x}", None, None, "AM319"))  # not in the registry
    return devices


def _reading(rng: random.Random, device: tuple[str, str | None, str | None, str],
             sendtime: dt.datetime | None) -> dict[str, Any]:
    eui, institute, classroom, profile = device
    full = profile == "AM319"
    row: dict[str, Any] = {
        "DevEui": eui, "institute": institute, "classroom": classroom, "profile": profile,
        "sendtime": sendtime,
        "temperature": round(rng.uniform(17, 28), 2),
        "humidity": round(rng.uniform(25, 70), 1),
        "co2": float(rng.randrange(380, 2200)),
        "tvoc": float(rng.randrange(0, 900)) if full else None,
        "pressure": round(rng.uniform(990, 1030), 1) if full else None,
        "light_level": rng.randrange(0, 800) if full else None,
        "battery": float(rng.randrange(20, 101)),
    }
    dirt = rng.random()
    if dirt < 0.03:
        row["co2"] = -50.0
    elif dirt < 0.06:
        row["humidity"] = 180.0
    elif dirt < 0.08:
        row["temperature"] = float("nan")
    elif dirt < 0.10 and full:
        row["pressure"] = 0.0
    elif dirt < 0.11 and full:
        row["light_level"] = -3
    elif dirt < 0.12:
        row["battery"] = 140.0
    elif dirt < 0.14:
        row["sendtime"] = None
    elif dirt < 0.15:
        row["DevEui"] = None
    elif dirt < 0.16:
        row["classroom"] = None
    return row


def build_rows(seed: int, readings_per_window: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    devices = _devices(rng)
    rows = []
    for start, days in WINDOWS:
        for _ in range(readings_per_window):
            sendtime = start + dt.timedelta(seconds=rng.randrange(days * 86400))
            rows.append(_reading(rng, rng.choice(devices), sendtime))
    return rows


def with_replays(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The rows plus exact copies of a few of them, as a restarted ingestion chain stores."""
    rng = random.Random(seed)
    return rows + [dict(row) for row in rng.sample(rows, max(1, len(rows) // 40))]


def _float32(value: float | None) -> float | None:
    if value is None:
        return None
    return pa.array([value], pa.float32()).cast(pa.float64())[0].as_py()


def write_dataset(folder: Path, seed: int = 11, readings_per_window: int = 300) -> RawDataset:
    """Three files whose schemas drift as the contract warns; returns the rows as stored."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = build_rows(seed, readings_per_window)
    third = len(rows) // 3
    parts = [rows[:third], rows[third:2 * third], rows[2 * third:]]
    stored: list[dict[str, Any]] = []
    for index, (part, layout) in enumerate(zip(parts, ("old", "int", "decimal"))):
        # Replays stay in their file: across files the stored types, hence values, differ.
        table, part_stored = _table(with_replays(part, seed + index), layout)
        pq.write_table(table, folder / f"part-{index:05d}.parquet")
        stored += part_stored
    (folder / "_SUCCESS").write_text("")
    return RawDataset(folder, stored)


def _table(rows: list[dict[str, Any]], layout: str) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Old files: float32 metrics and no tvoc; then co2 as int32; then co2 as decimal + extra column."""
    stored = [dict(row) for row in rows]
    columns: dict[str, pa.Array] = {
        "DevEui": pa.array([r["DevEui"] for r in rows], pa.string()),
        "deviceName": pa.array([f"dev-{i}" for i in range(len(rows))], pa.string()),
        "sendtime": pa.array([r["sendtime"] for r in rows], pa.timestamp("us", tz="UTC")),
        "institute": pa.array([r["institute"] for r in rows], pa.string()),
        "classroom": pa.array([r["classroom"] for r in rows], pa.string()),
        "profile": pa.array([r["profile"] for r in rows], pa.string()),
        "light_level": pa.array([r["light_level"] for r in rows], pa.int64()),
    }
    if layout == "old":
        for metric in ("temperature", "humidity", "co2", "pressure", "battery"):
            columns[metric] = pa.array([r[metric] for r in rows], pa.float32())
            for row in stored:
                row[metric] = _float32(row[metric])
        for row in stored:
            row["tvoc"] = None
    else:
        for metric in ("temperature", "humidity", "pressure", "battery", "tvoc"):
            columns[metric] = pa.array([r[metric] for r in rows], pa.float64())
        if layout == "int":
            columns["co2"] = pa.array([None if r["co2"] is None else int(r["co2"]) for r in rows],
                                      pa.int32())
        else:
            columns["co2"] = pa.array(
                [None if r["co2"] is None else decimal.Decimal(f"{r['co2']:.2f}") for r in rows],
                pa.decimal128(9, 2))
            columns["rssi"] = pa.array([-90] * len(rows), pa.int32())
    return pa.table(columns), stored
