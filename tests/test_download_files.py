"""batch/download/ (rows.py, files.py, settings.py): filters, order, the CSV dialect, the single-file writer, atomicity.

The input files are written with pyarrow and the expected rows computed from them in plain
Python (types from shared/DATA_CONTRACT.md, not from the package); the downloads are read back
with Python's csv module, pandas and pyarrow, never with Spark.
"""
from __future__ import annotations

import csv
import datetime as dt
import decimal
import gzip
import io
import math
import os
import random
import struct
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from batch.download import files
from batch.download.files import DownloadedFile, sweep_leftovers, write_single_file
from batch.download.rows import (
    DownloadFilter,
    UnknownFilterValueError,
    check_filter_values,
    clean_count_columns,
    columns_to_read,
    filter_readings,
    order_for_download,
    range_checked_columns,
    usable_readings,
)
from batch.download.settings import parse_local_instant
from batch.core.errors import ConfigurationError, DownloadError
from batch.core.readers import read_raw_readings
from batch.core.session import session_conf
from batch.core.validation import validate_readings

UTC = dt.timezone.utc
ROME = "Europe/Rome"

# --- the contract, copied from shared/DATA_CONTRACT.md --------------------------------------

COLUMNS = ("DevEui", "deviceName", "gwname", "sendtime", "temperature", "humidity", "battery",
           "co2", "tvoc", "pressure", "light_level", "pir", "battery_voltage", "door_status",
           "door_open_times", "last_open_minutes", "alarm", "institute", "classroom", "profile")
STRINGS = {"DevEui", "deviceName", "gwname", "institute", "classroom", "profile"}
DOUBLES = {"temperature", "humidity", "battery", "co2", "tvoc", "pressure", "battery_voltage",
           "light_level"}
INTEGERS = {"pir", "door_status", "door_open_times", "last_open_minutes", "alarm"}
RANGES: dict[str, tuple[float | None, float | None]] = {
    "temperature": (-40, 85), "humidity": (0, 100), "battery": (0, 100), "co2": (0, 40000),
    "tvoc": (0, 60000), "pressure": (300, 1100), "light_level": (0, None), "pir": (0, 1),
    "battery_voltage": (0, 5), "door_status": (0, 1), "door_open_times": (0, None),
    "last_open_minutes": (0, None), "alarm": (0, 1),
}

# --- a raw dataset with every case the download must get right --------------------------------

INSTITUTES = {
    "Istituto \"Sant'Anna\", sede 2": ("3A", "Aula\nMagna"),
    "École ñ 日本": ("3A", 'Salle, "B"'),
    "Liceo Galilei": ("  4B ", "Lab\r\nFisica"),
}
PROFILE_METRICS = {
    "AM319": ("temperature", "humidity", "co2", "tvoc", "pressure", "light_level", "pir", "battery"),
    "AM103": ("temperature", "humidity", "co2", "battery"),
    "WS301": ("door_status", "door_open_times", "last_open_minutes", "battery", "battery_voltage",
              "alarm"),
}
# Instants on the edges of local days in Rome, around the October 2024 clock change.
EDGE_INSTANTS = (
    dt.datetime(2024, 9, 30, 21, 59, 59, 999999, tzinfo=UTC),  # Rome: 23:59:59.999999 on 30 Sep
    dt.datetime(2024, 9, 30, 22, 0, tzinfo=UTC),  # Rome: midnight starting 1 Oct (+02:00)
    dt.datetime(2024, 10, 15, 10, 20, 30, 123456, tzinfo=UTC),
    dt.datetime(2024, 10, 27, 0, 30, tzinfo=UTC),  # Rome: 02:30 +02:00
    dt.datetime(2024, 10, 27, 1, 30, tzinfo=UTC),  # Rome: 02:30 again, +01:00
    dt.datetime(2024, 10, 31, 22, 59, 59, 999999, tzinfo=UTC),  # Rome: last instant of October
    dt.datetime(2024, 10, 31, 23, 0, tzinfo=UTC),  # Rome: midnight starting 1 Nov (+01:00)
)
# Values whose text form is easy to get wrong.
AWKWARD_DOUBLES = (0.1, 1e-7, 123456789.123, -0.0, 1e16, 2.5e-5, 21.3, 5e-324, math.nan)


@dataclass(frozen=True)
class DownloadDataset:
    folder: Path
    rows: list[dict[str, Any]]  # every stored row, as the contract types it (Python values)


def _devices(rng: random.Random) -> list[dict[str, Any]]:
    devices = []
    for institute, classrooms in INSTITUTES.items():
        for classroom in classrooms:
            for profile in PROFILE_METRICS:
                devices.append({"DevEui": f"{rng.getrandbits(64):016x}", "institute": institute,
                                "classroom": classroom, "profile": profile})
    for profile in ("AM319", None):  # not in the registry
        devices.append({"DevEui": f"{rng.getrandbits(64):016X}", "institute": None,
                        "classroom": None, "profile": profile})
    return devices


def _reading(rng: random.Random, device: Mapping[str, Any], sendtime: dt.datetime | None,
             number: int) -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name in COLUMNS}
    row.update(device)
    row["sendtime"] = sendtime
    row["deviceName"] = rng.choice([f"dev {number}", f"capteur n°{number}", "", None])
    row["gwname"] = rng.choice(["gw-1", 'gw "north", floor 2', None])
    values = {
        "temperature": rng.choice([round(rng.uniform(15, 30), 2), *AWKWARD_DOUBLES, 300.0]),
        "humidity": rng.choice([round(rng.uniform(20, 80), 1), 180.0]),
        "co2": float(rng.choice([rng.randrange(380, 2500), -350])),
        "tvoc": float(rng.randrange(0, 900)),
        "pressure": round(rng.uniform(990, 1030), 2),
        "light_level": rng.randrange(0, 900),
        "pir": rng.choice([0, 1, 5]),
        "battery": float(rng.randrange(0, 101)),
        "battery_voltage": round(rng.uniform(2.8, 3.6), 3),
        "door_status": rng.choice([0, 1]),
        "door_open_times": rng.randrange(0, 5000),
        "last_open_minutes": rng.randrange(0, 600),
        "alarm": rng.choice([0, 1]),
    }
    for metric in PROFILE_METRICS.get(device["profile"] or "AM319", ()):
        if rng.random() < 0.9:  # a metric the device measures can still be missing
            row[metric] = values[metric]
    return row


def build_rows(seed: int = 5, extra_instants: int = 40) -> list[dict[str, Any]]:
    """Readings with unique (sendtime, DevEui), plus exact replays and readings without instant."""
    rng = random.Random(seed)
    devices = _devices(rng)
    instants = list(EDGE_INSTANTS) + [
        dt.datetime(2024, 9, 1, tzinfo=UTC) + dt.timedelta(microseconds=rng.randrange(10 ** 13))
        for _ in range(extra_instants)]
    rows = []
    for instant in instants:
        for device in rng.sample(devices, 6):
            rows.append(_reading(rng, device, instant, len(rows)))
    for device in devices[:3]:
        rows.append(_reading(rng, device, None, len(rows)))
    return rows


# How each file stores the columns: files written over months drift.
_OLD = {  # first firmware: no tvoc, 32-bit floats and ints, co2 as int
    **{name: pa.float32() for name in ("temperature", "humidity", "battery", "pressure",
                                        "battery_voltage")},
    "co2": pa.int32(), "light_level": pa.int32(), "door_open_times": pa.int32(),
    "last_open_minutes": pa.int32(), "pir": pa.int32(), "door_status": pa.int32(),
    "alarm": pa.int32(),
}
_CURRENT = {**{name: pa.float64() for name in DOUBLES}, "light_level": pa.int64(),
            "door_open_times": pa.int64(), "last_open_minutes": pa.int64(), "pir": pa.int32(),
            "door_status": pa.int32(), "alarm": pa.int32()}
_BACKFILL = {**_CURRENT, "co2": pa.decimal128(8, 1), "pressure": pa.decimal128(7, 2),
             "light_level": pa.int16()}
LAYOUTS: tuple[tuple[str, dict[str, pa.DataType], tuple[str, ...]], ...] = (
    ("2024-09/part-00000-old.parquet", _OLD, ("tvoc",)),
    ("2024-10/part-00000-current.parquet", _CURRENT, ()),
    ("backfill/part-00000-decimal.parquet", _BACKFILL, ()),
)


def _stored(value: Any, arrow_type: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_decimal(arrow_type):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return decimal.Decimal(f"{value:.{arrow_type.scale}f}")
    if pa.types.is_integer(arrow_type):
        return int(value)
    return value


def _table(rows: Sequence[Mapping[str, Any]], types: Mapping[str, pa.DataType],
           missing: Sequence[str], extra: bool) -> pa.Table:
    columns = {}
    for name in COLUMNS:
        if name in missing:
            continue
        if name in STRINGS:
            arrow_type = pa.string()
        elif name == "sendtime":
            arrow_type = pa.timestamp("us", tz="UTC")
        else:
            arrow_type = types[name]
        columns[name] = pa.array([_stored(row[name], arrow_type) for row in rows], arrow_type)
    if extra:  # columns outside the contract appear in newer files
        columns["rssi"] = pa.array([-97] * len(rows), pa.int32())
    return pa.table(columns)


def _canonical(name: str, value: Any) -> Any:
    """The value as the contract types the column: what the download must hold."""
    if value is None:
        return None
    if name in DOUBLES:
        return float(value)  # exact for float32 and int; correctly rounded for Decimal
    if name in INTEGERS:
        return int(value)
    return value


def write_download_dataset(folder: Path, rows: Sequence[Mapping[str, Any]] | None = None,
                         seed: int = 5) -> DownloadDataset:
    """Write `rows` (default: build_rows) into three drifting files; the rows as read back by pyarrow."""
    rows = list(rows if rows is not None else build_rows(seed))
    rng = random.Random(seed)
    rng.shuffle(rows)
    stored: list[dict[str, Any]] = []
    share = math.ceil(len(rows) / len(LAYOUTS))
    for index, (relative, types, missing) in enumerate(LAYOUTS):
        part = rows[index * share:(index + 1) * share]
        part += [dict(row) for row in part[:2]]  # exact replays, stored in the same file
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_table(part, types, missing, extra=index == 1), path)
        for row in pq.read_table(path).to_pylist():
            stored.append({name: _canonical(name, row.get(name)) for name in COLUMNS})
    (folder / "_SUCCESS").write_text("")
    return DownloadDataset(folder, stored)


# --- independent expectations and readers ---------------------------------------------------

def expected_rows(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] = COLUMNS,
                  profiles: Sequence[str] = (), institutes: Sequence[str] = (),
                  classrooms: Sequence[str] = (), since: dt.datetime | None = None,
                  until: dt.datetime | None = None) -> list[tuple[Any, ...]]:
    """The filtered rows in download order, computed in plain Python."""
    kept = []
    for row in rows:
        if profiles and row["profile"] not in profiles:
            continue
        if institutes and row["institute"] not in institutes:
            continue
        if classrooms and row["classroom"] not in classrooms:
            continue
        if (since or until) and row["sendtime"] is None:
            continue
        if since and row["sendtime"] < since:
            continue
        if until and row["sendtime"] >= until:
            continue
        kept.append(row)
    # The documented order: sendtime, DevEui, then the other downloaded columns, nulls last
    # (a NaN sorts above every number, as in Spark).
    order = ["sendtime", "DevEui"] + [name for name in columns if name not in ("sendtime", "DevEui")]
    kept.sort(key=lambda row: tuple(_sort_key(row[name]) for name in order))
    return [tuple(row[name] for name in columns) for row in kept]


def _sort_key(value: Any) -> tuple[Any, ...]:
    if value is None:
        return (1,)
    if isinstance(value, float) and math.isnan(value):
        return (0, 1, 0.0)
    return (0, 0, value)


def parse_csv_field(name: str, text: str) -> Any:
    """A CSV field back to a Python value, by the contract type of its column."""
    if text == "":
        return None  # null; an empty string is checked separately, on the raw text
    if name in STRINGS:
        return text
    if name == "sendtime":
        return dt.datetime.fromisoformat(text)
    if name in DOUBLES:
        return float(text)
    return int(text)


def exact_text(path: Path) -> str:
    """The file as strict UTF-8, line ends untouched (read_text would turn CR LF into LF)."""
    return path.read_bytes().decode("utf-8")


def read_csv_rows(data: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    reader = csv.reader(io.StringIO(data, newline=""), strict=True)
    header = next(reader)
    assert header == list(columns)
    rows = []
    for record in reader:
        assert len(record) == len(columns), record
        rows.append(tuple(parse_csv_field(name, text) for name, text in zip(columns, record)))
    return rows


def same_value(actual: Any, expected: Any) -> bool:
    """Exact equality: doubles bit for bit (NaN equals NaN, -0.0 differs from 0.0)."""
    if isinstance(expected, float) and isinstance(actual, float):
        return struct.pack("<d", actual) == struct.pack("<d", expected) or (
            math.isnan(actual) and math.isnan(expected))
    if expected == "" and actual is None:
        return True  # csv.reader reads "" and an empty field alike
    return type(actual) is type(expected) and actual == expected


def assert_rows_equal(actual: Sequence[tuple[Any, ...]], expected: Sequence[tuple[Any, ...]],
                      columns: Sequence[str]) -> None:
    assert len(actual) == len(expected)
    for number, (got, want) in enumerate(zip(actual, expected)):
        for name, got_value, want_value in zip(columns, got, want):
            assert same_value(got_value, want_value), (
                f"row {number}, column {name}: got {got_value!r}, expected {want_value!r}")


def read_raw(spark: SparkSession, folder: Path, columns: Sequence[str] = COLUMNS) -> DataFrame:
    readings_df, _ = read_raw_readings(spark, str(folder), tuple(columns))
    return readings_df


def run_download(spark: SparkSession, folder: Path, target: Path,
               download_filter: DownloadFilter = DownloadFilter(), columns: Sequence[str] = COLUMNS,
               file_format: str = "csv", compress: bool = False,
               timezone: str = ROME) -> DownloadedFile:
    readings_df = read_raw(spark, folder, columns_to_read(columns, download_filter, clean=False))
    download_df = (readings_df.transform(filter_readings, download_filter)
                   .transform(order_for_download, columns))
    return write_single_file(download_df, target, file_format, compress, timezone)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DownloadDataset:
    return write_download_dataset(tmp_path_factory.mktemp("raw"))


# --- the downloaded file equals the input -----------------------------------------------------

def test_the_dataset_has_the_cases_the_download_must_handle(dataset: DownloadDataset) -> None:
    rows = dataset.rows
    assert any(row["sendtime"] is None for row in rows)
    assert any(row["tvoc"] is None and row["profile"] == "AM319" for row in rows)
    assert any(row["deviceName"] == "" for row in rows) and any(row["deviceName"] is None for row in rows)
    assert any(isinstance(row["temperature"], float) and math.isnan(row["temperature"]) for row in rows)
    assert {row["institute"] for row in rows} >= set(INSTITUTES)
    assert any(row["classroom"] == "Aula\nMagna" for row in rows)


def test_csv_equals_the_input_row_for_row_and_value_for_value(
        spark: SparkSession, dataset: DownloadDataset, tmp_path: Path) -> None:
    target = tmp_path / "out" / "download.csv"
    downloaded = run_download(spark, dataset.folder, target)
    data = target.read_bytes().decode("utf-8")  # strict UTF-8
    assert not data.startswith("\ufeff")
    assert_rows_equal(read_csv_rows(data, COLUMNS), expected_rows(dataset.rows), COLUMNS)
    assert downloaded.size_bytes == target.stat().st_size
    assert sorted(os.listdir(target.parent)) == ["download.csv"]  # no temporary file, no parts


def test_timestamps_carry_the_offset_of_the_batch_timezone(
        spark: SparkSession, dataset: DownloadDataset, tmp_path: Path) -> None:
    target = tmp_path / "download.csv"
    run_download(spark, dataset.folder, target, columns=("sendtime", "DevEui"))
    texts = [record[0] for record in csv.reader(io.StringIO(exact_text(target), newline=""))][1:]
    instants = [text for text in texts if text]
    assert "2024-10-01T00:00:00.000000+02:00" in instants  # 2024-09-30T22:00Z
    assert "2024-10-27T02:30:00.000000+02:00" in instants  # the hour Rome lives twice ...
    assert "2024-10-27T02:30:00.000000+01:00" in instants  # ... told apart by the offset
    assert "2024-10-15T12:20:30.123456+02:00" in instants
    for text in instants:
        instant = dt.datetime.fromisoformat(text)
        assert instant.utcoffset() == instant.astimezone(ZoneInfo(ROME)).utcoffset()


def test_pandas_reads_the_same_rows(spark: SparkSession, dataset: DownloadDataset, tmp_path: Path) -> None:
    target = tmp_path / "download.csv"
    run_download(spark, dataset.folder, target)
    frame = pd.read_csv(target, dtype=str, keep_default_na=False, encoding="utf-8")
    expected = expected_rows(dataset.rows)
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == len(expected)
    for column_index, name in enumerate(COLUMNS):
        if name in STRINGS:
            assert list(frame[name]) == [row[column_index] or "" for row in expected]
    assert set(frame["classroom"]) >= {"Aula\nMagna", "Lab\r\nFisica", "  4B ", 'Salle, "B"'}


def test_null_is_an_empty_field_and_an_empty_string_is_quoted(spark: SparkSession, tmp_path: Path) -> None:
    schema = T.StructType([T.StructField("DevEui", T.StringType()),
                           T.StructField("sendtime", T.TimestampType()),
                           T.StructField("deviceName", T.StringType()),
                           T.StructField("co2", T.DoubleType())])
    at = dt.datetime(2024, 1, 1, tzinfo=UTC)
    df = spark.createDataFrame([("a", at, None, None), ("b", at, "", 1.0),
                                ("c", at, 'x "y", z', 2.0), ("d", at, "back\\slash\"", 3.0)], schema)
    target = tmp_path / "download.csv"
    write_single_file(df.transform(order_for_download, df.columns), target, "csv", False, "UTC")
    assert exact_text(target) == (
        "DevEui,sendtime,deviceName,co2\n"
        "a,2024-01-01T00:00:00.000000Z,,\n"
        'b,2024-01-01T00:00:00.000000Z,"",1.0\n'
        'c,2024-01-01T00:00:00.000000Z,"x ""y"", z",2.0\n'
        'd,2024-01-01T00:00:00.000000Z,"back\\slash""",3.0\n')


def test_doubles_read_back_as_the_same_number(spark: SparkSession, tmp_path: Path) -> None:
    rng = random.Random(3)
    values = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(3000)]
    values += [round(rng.uniform(-50, 2000), rng.randrange(7)) for _ in range(3000)]
    values += [float(pa.scalar(rng.uniform(0, 100), pa.float32()).as_py()) for _ in range(1000)]
    values += [0.1, 1e-7, 123456789.123, -0.0, 0.0, 5e-324, 2.2250738585072014e-308,
               1.7976931348623157e308, 1e23, 2e-3, math.inf, -math.inf, math.nan]
    at = dt.datetime(2024, 1, 1, tzinfo=UTC)
    df = spark.createDataFrame([(f"{index:08d}", at, value) for index, value in enumerate(values)],
                               "DevEui string, sendtime timestamp, co2 double")
    target = tmp_path / "doubles.csv"
    write_single_file(df.transform(order_for_download, df.columns), target, "csv", False, "UTC")
    rows = read_csv_rows(exact_text(target), df.columns)
    assert len(rows) == len(values)
    for (device, _, got), want in zip(rows, values):
        assert same_value(got, want), f"{device}: {want!r} came back as {got!r}"


def test_filters_select_exactly_the_independently_filtered_rows(
        spark: SparkSession, dataset: DownloadDataset, tmp_path: Path) -> None:
    since = parse_local_instant("2024-10-01", ROME)
    until = parse_local_instant("2024-11-01", ROME)
    institutes = ("Istituto \"Sant'Anna\", sede 2", "École ñ 日本")
    download_filter = DownloadFilter(profiles=("AM319", "WS301"), institutes=institutes,
                                 since=since, until=until)
    columns = ("sendtime", "DevEui", "profile", "institute", "classroom", "co2", "door_status")
    target = tmp_path / "filtered.csv"
    run_download(spark, dataset.folder, target, download_filter, columns)
    expected = expected_rows(dataset.rows, columns, profiles=("AM319", "WS301"),
                             institutes=institutes, since=since, until=until)
    assert expected  # the filter is not vacuous
    assert_rows_equal(read_csv_rows(exact_text(target), columns), expected, columns)


def test_classroom_filter_within_an_institute(
        spark: SparkSession, dataset: DownloadDataset, tmp_path: Path) -> None:
    download_filter = DownloadFilter(institutes=("Istituto \"Sant'Anna\", sede 2",), classrooms=("3A",))
    target = tmp_path / "room.csv"
    run_download(spark, dataset.folder, target, download_filter)
    expected = expected_rows(dataset.rows, institutes=download_filter.institutes, classrooms=("3A",))
    assert expected
    assert_rows_equal(read_csv_rows(exact_text(target), COLUMNS), expected, COLUMNS)


def test_window_edges_are_local_midnights_in_the_batch_timezone(spark: SparkSession) -> None:
    schema = T.StructType([T.StructField("DevEui", T.StringType()),
                           T.StructField("sendtime", T.TimestampType())])
    df = spark.createDataFrame([("before", EDGE_INSTANTS[0]), ("first", EDGE_INSTANTS[1]),
                                ("dst-1", EDGE_INSTANTS[3]), ("dst-2", EDGE_INSTANTS[4]),
                                ("last", EDGE_INSTANTS[5]), ("after", EDGE_INSTANTS[6]),
                                ("no-time", None)], schema)
    download_filter = DownloadFilter(since=parse_local_instant("2024-10-01", ROME),
                                 until=parse_local_instant("2024-11-01", ROME))
    kept = [row.DevEui for row in df.transform(filter_readings, download_filter)
            .transform(order_for_download, ["DevEui"]).collect()]
    assert kept == ["first", "dst-1", "dst-2", "last"]
    # In UTC the same dates would keep "before" and "after" and drop "first".
    utc_filter = DownloadFilter(since=parse_local_instant("2024-10-01", "UTC"),
                              until=parse_local_instant("2024-11-01", "UTC"))
    assert [row.DevEui for row in df.transform(filter_readings, utc_filter)
            .transform(order_for_download, ["DevEui"]).collect()] == ["dst-1", "dst-2", "last", "after"]


@pytest.mark.parametrize("text, expected", [
    ("2024-10-01", dt.datetime(2024, 9, 30, 22, 0, tzinfo=UTC)),
    ("2024-12-01", dt.datetime(2024, 11, 30, 23, 0, tzinfo=UTC)),
    ("2024-10-01T08:30", dt.datetime(2024, 10, 1, 6, 30, tzinfo=UTC)),
    ("2024-10-01 08:30:15.25", dt.datetime(2024, 10, 1, 6, 30, 15, 250000, tzinfo=UTC)),
    ("2024-10-01T08:30:00+00:00", dt.datetime(2024, 10, 1, 8, 30, tzinfo=UTC)),
    ("2024-10-01T08:30:00Z", dt.datetime(2024, 10, 1, 8, 30, tzinfo=UTC)),
    ("2024-10-27T02:30+01:00", dt.datetime(2024, 10, 27, 1, 30, tzinfo=UTC)),
])
def test_since_and_until_are_read_in_the_batch_timezone(text: str, expected: dt.datetime) -> None:
    assert parse_local_instant(text, ROME) == expected


@pytest.mark.parametrize("text, message", [
    ("2024-10-27T02:30", "happens twice in Europe/Rome"),
    ("2024-03-31T02:30", "does not exist in Europe/Rome"),
    ("yesterday", "not an ISO date"),
    ("2024-13-01", "not an ISO date"),
])
def test_ambiguous_missing_or_malformed_instants_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_local_instant(text, ROME)


def test_an_empty_window_is_refused() -> None:
    instant = dt.datetime(2024, 10, 1, tzinfo=UTC)
    with pytest.raises(ConfigurationError, match="not before --until"):
        DownloadFilter(since=instant, until=instant)


def test_unknown_profile_lists_the_existing_ones_with_their_counts() -> None:
    inventory = [
        {"profile": "AM319", "institute": "A", "classroom": "1", "rows": 5000},
        {"profile": "AM319", "institute": "B", "classroom": "1", "rows": 321},
        {"profile": "AM103", "institute": "A", "classroom": "2", "rows": 1204},
        {"profile": "WS301", "institute": "B", "classroom": "2", "rows": 800},
        {"profile": None, "institute": None, "classroom": None, "rows": 7},
    ]
    with pytest.raises(UnknownFilterValueError) as raised:
        check_filter_values(DownloadFilter(profiles=("AM319", "AM999")), inventory, "hdfs://nn/raw")
    assert str(raised.value) == (
        "unknown profile `AM999`; profiles in hdfs://nn/raw: AM103 (1,204 rows), "
        "AM319 (5,321 rows), WS301 (800 rows); 7 rows have no profile")
    with pytest.raises(UnknownFilterValueError, match=r"unknown institute `C`; institutes in "
                                                      r"hdfs://nn/raw: A \(6,204 rows\), B \(1,121 rows\)"):
        check_filter_values(DownloadFilter(institutes=("C",)), inventory, "hdfs://nn/raw")
    with pytest.raises(UnknownFilterValueError, match=r"unknown classroom `2`; classrooms in A "
                                                      r"\(hdfs://nn/raw\): 1 \(5,000 rows\)"):
        check_filter_values(DownloadFilter(institutes=("A",), classrooms=("2",)),
                            [row for row in inventory if row["profile"] != "AM103"], "hdfs://nn/raw")
    check_filter_values(DownloadFilter(profiles=("WS301",), institutes=("B",)), inventory, "x")


# --- order ----------------------------------------------------------------------------------

def test_order_is_sendtime_then_device_with_nulls_last_and_ties_broken(spark: SparkSession) -> None:
    at = dt.datetime(2024, 1, 1, tzinfo=UTC)
    later = at + dt.timedelta(microseconds=1)
    df = spark.createDataFrame(
        [("b", later, "x"), (None, at, "y"), ("b", at, "z"), ("a", at, "w"), ("c", None, "v"),
         ("a", None, "u"), ("b", at, "a")],
        "DevEui string, sendtime timestamp, gwname string")
    ordered = [tuple(row) for row in df.transform(order_for_download, ["DevEui", "gwname"]).collect()]
    assert ordered == [("a", "w"), ("b", "a"), ("b", "z"), (None, "y"), ("b", "x"), ("a", "u"),
                       ("c", "v")]


def test_leftovers_of_killed_downloads_are_swept_and_nothing_else(tmp_path: Path) -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    dead, alive = subprocess.Popen(sleeper), subprocess.Popen(sleeper)
    dead.kill()
    dead.wait()
    try:
        token = "0123456789ab"
        swept = [f".download.csv.{dead.pid}-{token}.tmp", f".download.csv.parts-{dead.pid}-{token}"]
        kept = [
            "download.csv",
            f".download.csv.{alive.pid}-{token}.tmp",  # a download still running
            f".download.csv.parts-{alive.pid}-{token}",
            f".download.csv.{dead.pid}-{token}.tmp.bak",  # similar names, not ours
            f".download.csv.{dead.pid}-notahexnumb.tmp",
            f"download.csv.{dead.pid}-{token}.tmp",
            f".other.csv.{dead.pid}-{token}.tmp",
            f".other.csv.parts-{dead.pid}-{token}",
            f".download.csv.parts-{dead.pid}-{token}-old",
            f".download.csv.parts-{dead.pid}-fedcba987654",  # a file, where ours is a folder
        ]
        for name in swept + kept:
            if "parts-" in name and "fedcba" not in name:
                (tmp_path / name).mkdir()
                (tmp_path / name / "part-00000-x-c000.csv").write_text("a,b\n")
            else:
                (tmp_path / name).write_text("data\n")
        assert sweep_leftovers(tmp_path / "download.csv") == tuple(sorted(swept))
        assert sorted(os.listdir(tmp_path)) == sorted(kept)
        assert (tmp_path / kept[2] / "part-00000-x-c000.csv").read_text() == "a,b\n"
    finally:
        alive.kill()
        alive.wait()


def test_a_spark_write_failure_is_one_line_with_the_path_and_the_os_reason(
        spark: SparkSession, tmp_path: Path) -> None:
    target = tmp_path / "download.csv"
    target.write_text("previous download\n")
    with pytest.raises(DownloadError) as raised:
        write_single_file(_small_download_df(spark), target, "csv", False, "UTC",
                          staging_root="file:///proc/no-such-folder")
    message = str(raised.value)
    assert "\n" not in message and len(message) < 300, message
    assert message.startswith("cannot write the download parts to /proc/no-such-folder/download.csv.parts-")
    assert "/proc/no-such-folder: No such file or directory" in message
    assert "Exception" not in message and "at org." not in message
    assert target.read_text() == "previous download\n"


def test_many_shuffle_partitions_give_one_header_and_the_order(
        spark: SparkSession, dataset: DownloadDataset, tmp_path: Path) -> None:
    target = tmp_path / "download.csv"
    with session_conf(spark, {"spark.sql.adaptive.coalescePartitions.enabled": "false",
                              "spark.sql.shuffle.partitions": "7"}):
        run_download(spark, dataset.folder, target)
    data = exact_text(target)
    assert data.count("DevEui,deviceName") == 1
    assert_rows_equal(read_csv_rows(data, COLUMNS), expected_rows(dataset.rows), COLUMNS)


# --- other outputs --------------------------------------------------------------------------

def test_gzip_output_holds_the_same_bytes_as_the_plain_csv(
        spark: SparkSession, dataset: DownloadDataset, tmp_path: Path) -> None:
    plain, packed = tmp_path / "download.csv", tmp_path / "download.csv.gz"
    with session_conf(spark, {"spark.sql.adaptive.coalescePartitions.enabled": "false",
                              "spark.sql.shuffle.partitions": "3"}):
        run_download(spark, dataset.folder, plain)
        run_download(spark, dataset.folder, packed, compress=True)
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    with gzip.open(packed, "rt", encoding="utf-8", newline="") as handle:
        assert_rows_equal(read_csv_rows(handle.read(), COLUMNS), expected_rows(dataset.rows), COLUMNS)
    frame = pd.read_csv(packed, dtype=str, keep_default_na=False)
    assert len(frame) == len(expected_rows(dataset.rows))


def test_parquet_output_is_one_file_equal_to_the_input(
        spark: SparkSession, dataset: DownloadDataset, tmp_path: Path) -> None:
    target = tmp_path / "download.parquet"
    download_filter = DownloadFilter(profiles=("AM319", "AM103"))
    with session_conf(spark, {"spark.sql.adaptive.coalescePartitions.enabled": "false",
                              "spark.sql.shuffle.partitions": "3"}):
        downloaded = run_download(spark, dataset.folder, target, download_filter, file_format="parquet")
    assert sorted(os.listdir(tmp_path)) == ["download.parquet"]
    table = pq.read_table(target)
    assert table.schema.field("sendtime").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("co2").type == pa.float64()
    assert table.schema.field("light_level").type == pa.float64()
    assert table.schema.field("pir").type == pa.int32()
    got = [tuple(row[name] for name in COLUMNS) for row in table.to_pylist()]
    expected = expected_rows(dataset.rows, profiles=("AM319", "AM103"))
    assert downloaded.rows == len(expected)
    assert_rows_equal(got, expected, COLUMNS)
    assert spark.conf.get("spark.sql.parquet.outputTimestampType") == "INT96"  # restored


def test_gzip_is_refused_for_parquet(spark: SparkSession, tmp_path: Path) -> None:
    df = spark.createDataFrame([("a",)], "DevEui string")
    with pytest.raises(ConfigurationError, match="gzip"):
        write_single_file(df, tmp_path / "x.parquet", "parquet", True, "UTC")


# --- atomicity ------------------------------------------------------------------------------

def _small_download_df(spark: SparkSession) -> DataFrame:
    at = dt.datetime(2024, 1, 1, tzinfo=UTC)
    return spark.createDataFrame([("a", at, 1.0), ("b", at, 2.0)],
                                 "DevEui string, sendtime timestamp, co2 double")


def test_a_failure_before_the_rename_leaves_the_previous_file(
        spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "download.csv"
    target.write_text("previous download\n")

    def failing_replace(source: Any, destination: Any) -> None:
        assert Path(source).read_text().startswith("DevEui,sendtime,co2\n")  # complete, not yet moved
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", failing_replace)
    with pytest.raises(DownloadError, match="No space left on device.*previous file is left"):
        write_single_file(_small_download_df(spark), target, "csv", False, "UTC")
    assert target.read_text() == "previous download\n"
    assert os.listdir(tmp_path) == ["download.csv"]


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_an_interruption_before_the_rename_leaves_the_previous_file(
        spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_format: str) -> None:
    target = tmp_path / f"download.{file_format}"
    target.write_text("previous download\n")

    def interrupted(source: Any, destination: Any) -> None:
        assert Path(source).stat().st_size > 0  # the new file is complete ...
        raise KeyboardInterrupt  # ... when Ctrl-C arrives

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_single_file(_small_download_df(spark), target, file_format, False, "UTC")
    assert target.read_text() == "previous download\n"
    assert os.listdir(tmp_path) == [target.name]


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_a_check_of_the_written_rows_can_stop_the_download(
        spark: SparkSession, tmp_path: Path, file_format: str) -> None:
    target = tmp_path / f"download.{file_format}"
    target.write_text("previous download\n")
    seen: list[int] = []

    def refuse(rows: int) -> None:
        seen.append(rows)
        raise DownloadError("refused")

    with pytest.raises(DownloadError, match="refused"):
        write_single_file(_small_download_df(spark), target, file_format, False, "UTC", on_written=refuse)
    assert seen == [2]
    assert target.read_text() == "previous download\n"
    assert os.listdir(tmp_path) == [target.name]
    downloaded = write_single_file(_small_download_df(spark), target, file_format, False, "UTC",
                                   on_written=seen.append)
    assert downloaded.rows == 2 and seen == [2, 2]


@pytest.mark.parametrize("compress", [False, True])
def test_parts_in_a_staging_folder_elsewhere_give_the_same_bytes(
        spark: SparkSession, dataset: DownloadDataset, tmp_path: Path, compress: bool) -> None:
    suffix = ".csv.gz" if compress else ".csv"
    beside, elsewhere = tmp_path / "out" / f"beside{suffix}", tmp_path / "out" / f"elsewhere{suffix}"
    staging = tmp_path / "staging"
    staging.mkdir()
    download_df = read_raw(spark, dataset.folder).transform(order_for_download, COLUMNS)
    with session_conf(spark, {"spark.sql.adaptive.coalescePartitions.enabled": "false",
                              "spark.sql.shuffle.partitions": "3"}):
        write_single_file(download_df, beside, "csv", compress, ROME)
        # As on a cluster (DOWNLOAD_STAGING_DIR=file:///shared/...): parts under a URI.
        downloaded = write_single_file(download_df, elsewhere, "csv", compress, ROME,
                                       staging_root=f"file://{staging}")
    assert downloaded.rows == len(expected_rows(dataset.rows))
    assert elsewhere.read_bytes() == beside.read_bytes()
    text = gzip.decompress(beside.read_bytes()) if compress else beside.read_bytes()
    assert_rows_equal(read_csv_rows(text.decode("utf-8"), COLUMNS), expected_rows(dataset.rows), COLUMNS)
    assert sorted(os.listdir(beside.parent)) == sorted([beside.name, elsewhere.name])
    assert os.listdir(staging) == []


def test_a_failing_spark_write_is_a_download_error(spark: SparkSession, tmp_path: Path) -> None:
    target = tmp_path / "download.csv"
    target.write_text("previous download\n")
    df = spark.createDataFrame([("a", 1)], "DevEui string, n int")
    failing_df = df.selectExpr("DevEui", "IF(n = 1, raise_error('injected failure'), n) AS n")
    with pytest.raises(DownloadError, match="injected failure"):
        write_single_file(failing_df, target, "csv", False, "UTC")
    assert target.read_text() == "previous download\n"
    assert os.listdir(tmp_path) == ["download.csv"]


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_folder_and_file_names_with_awkward_characters(
        spark: SparkSession, tmp_path: Path, file_format: str) -> None:
    target = tmp_path / "dossier d'download é #1 %20" / f"a:b [x].{file_format}"
    write_single_file(_small_download_df(spark), target, file_format, False, "UTC")
    if file_format == "csv":
        assert exact_text(target).splitlines()[1:] == ["a,2024-01-01T00:00:00.000000Z,1.0",
                                                       "b,2024-01-01T00:00:00.000000Z,2.0"]
    else:
        assert pq.read_table(target).column("DevEui").to_pylist() == ["a", "b"]
    assert os.listdir(target.parent) == [target.name]


def test_a_directory_is_not_a_target(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="is a directory"):
        write_single_file(_small_download_df(spark), tmp_path, "csv", False, "UTC")


# --- --clean --------------------------------------------------------------------------------

def test_clean_counts_and_usable_readings(spark: SparkSession) -> None:
    at = dt.datetime(2024, 1, 1, tzinfo=UTC)
    schema = ("DevEui string, sendtime timestamp, institute string, classroom string, "
              "co2 double, pir int, gwname string")
    df = spark.createDataFrame([
        ("a", at, "I", "1", 500.0, 1, "g"),
        ("a", at, "I", "1", 500.0, 1, "g"),  # replay
        ("b", at, "I", "1", -5.0, 7, "g"),  # two impossible values
        ("c", None, "I", "1", 400.0, 0, "g"),  # no instant
        ("d", at, None, None, 400.0, 0, "g"),  # unregistered
        (None, at, "I", "1", float("nan"), 0, "g"),  # no device
    ], schema)
    columns = ("DevEui", "sendtime", "co2", "pir", "gwname")
    checked = range_checked_columns(columns)
    assert checked == ("co2", "pir")
    validated_df = df.transform(validate_readings, checked, True)
    counts = validated_df.agg(*clean_count_columns(checked)).first().asDict()
    assert counts == {"rows_selected": 6, "rows_downloaded": 2, "replayed_reading": 1,
                      "missing_sendtime": 1, "missing_device": 1, "unregistered_device": 1,
                      "co2_out_of_range": 1, "pir_out_of_range": 1}
    usable = validated_df.transform(usable_readings, columns).transform(order_for_download, columns)
    assert [(row.DevEui, row.co2, row.pir, row.gwname) for row in usable.collect()] == [
        ("a", 500.0, 1, "g"), ("b", None, None, "g")]


def test_only_the_needed_columns_are_read() -> None:
    download_filter = DownloadFilter(profiles=("AM319",), since=dt.datetime(2024, 1, 1, tzinfo=UTC))
    # A value filter reads all three value columns: the check of unknown values lists them all.
    assert columns_to_read(("co2",), download_filter, clean=False) == (
        "DevEui", "sendtime", "co2", "institute", "classroom", "profile")
    assert columns_to_read(("co2",), DownloadFilter(institutes=("Liceo",)), clean=False) == (
        "DevEui", "sendtime", "co2", "institute", "classroom", "profile")
    assert columns_to_read(("co2",), DownloadFilter(), clean=False) == ("DevEui", "sendtime", "co2")
    assert columns_to_read(("co2",), DownloadFilter(), clean=True) == (
        "DevEui", "sendtime", "co2", "institute", "classroom")
