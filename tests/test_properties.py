"""Property-based: on small random inputs, within the data contract and outside it, the analysis
either publishes exactly what the independent SQL computation (tests/independent.py) gives, or
stops with the documented error for that input and keeps the previous results. It never ends
in an unhandled exception.

Each example is a real run (shared Spark session, the test PostgreSQL), so examples are few
and derandomized for CI; `HYPOTHESIS_PROFILE=explore` draws more, randomly, and shrinks.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from psycopg2 import sql
from pyspark.sql import SparkSession

from batch.core.config import Secret
from batch.core.errors import (
    BatchError,
    CorruptInputFileError,
    EmptyInputError,
    IncompatibleColumnTypeError,
    MissingColumnError,
)
from devtools.local_postgres import LocalPostgres
from batch.analysis.publish import PostgresTarget
from tests import independent
from tests.rawdata import METRICS, RANGES
from tests.support.jobs import admin_connection, query, runs
from tests.test_analysis import TABLES, analysis_settings, run

PROFILES = {
    "ci": dict(max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "15")), derandomize=True,
               phases=(Phase.explicit, Phase.generate)),
    "explore": dict(max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "100")),
                    derandomize=False, phases=tuple(Phase)),
}
PROFILE = PROFILES[os.environ.get("HYPOTHESIS_PROFILE", "ci")]
UTC = dt.timezone.utc
TIMEZONES = ("UTC", "Europe/Rome", "America/New_York", "Asia/Kolkata")
# ISO-year boundaries, a month end Rome sees as the next month, daylight-saving changes.
ANCHORS = (dt.datetime(2020, 12, 31, 23, tzinfo=UTC), dt.datetime(2024, 12, 29, 22, 30, tzinfo=UTC),
           dt.datetime(2025, 1, 31, 23, 15, tzinfo=UTC), dt.datetime(2024, 10, 27, 1, tzinfo=UTC),
           dt.datetime(2025, 3, 9, 7, tzinfo=UTC))
NAMES = ("3A", "Liceo \"Galilei\"; DROP TABLE x; --", "Sant'Anna", "C:\\aula\\", "a\nb\r\nc", "😀 日本",
         "", " ")
REQUIRED = ("DevEui", "sendtime", "institute", "classroom")
# Stored kinds within the contract's drift (a metric may be missing: None); outside it, text
# where a number or an instant belongs, a number where a name belongs.
METRIC_KINDS = ("float64", "float32", "int32", "int64", "decimal", None)
SENDTIME_KINDS = ("utc", "naive", "millis_rome")
INCOMPATIBLE = {"string": {"sendtime", *METRICS}, "int64": {"DevEui", "institute", "classroom"}}


# --- random inputs ---------------------------------------------------------------------------------

@dataclass
class InputFile:
    kinds: dict[str, str | None]  # column -> stored kind (None: the file lacks the column)
    rows: list[dict[str, Any]]  # as the contract reads them: the analysis's view of the file
    stored: list[dict[str, Any]] = field(default_factory=list)  # as written to Parquet


@dataclass
class Input:
    files: list[InputFile]
    junk_file: bool
    skip_corrupt_files: bool
    timezone: str
    drop_replays: bool
    co2_high: float
    co2_very_high: float
    comfort: tuple[float, float]


def _float32(value: float) -> float:
    return pa.array([value], pa.float32()).cast(pa.float64())[0].as_py()


@st.composite
def metric_value(draw: st.DrawFn, metric: str, kind: str) -> tuple[Any, Any]:
    """(stored value, value as the analysis reads it) for one cell."""
    low, high = RANGES[metric]
    if draw(st.integers(0, 5)) == 0:
        return None, None
    if kind == "string":
        text = draw(st.sampled_from(["21.5", "high", ""]))
        return text, text
    if kind in ("int32", "int64"):
        number = draw(st.one_of(st.integers(-1000, 100_000), st.sampled_from(
            [int(low), int(high) if high is not None else 10**6, int(low) - 1])))
        return number, float(number)
    if kind == "decimal":
        number = draw(st.decimals(min_value=-99_999, max_value=99_999, places=2))
        return number, float(number)
    number = draw(st.one_of(
        st.floats(min_value=low - 50, max_value=(high or 1e5) + 50),
        st.floats(min_value=-1e6, max_value=1e6),
        # Infinity is a physically valid light level (no upper bound), whose statistics are
        # NaN in both computations: left out.
        st.sampled_from([float(low), float(high or 1e6), float("nan"), float("-inf")]
                        + ([float("inf")] if high is not None else []))))
    return (number, _float32(number)) if kind == "float32" else (number, number)


@st.composite
def input_file(draw: st.DrawFn, unique_keys: set[tuple[Any, Any]] | None) -> InputFile:
    """A file within the contract: its drift, dirty values, nulls, replays; rarely a required column lacking."""
    kinds: dict[str, str | None] = {column: "string" for column in ("DevEui", "institute", "classroom")}
    kinds["sendtime"] = draw(st.sampled_from(SENDTIME_KINDS))
    for metric in METRICS:
        kinds[metric] = draw(st.sampled_from(METRIC_KINDS))
    if draw(st.integers(0, 9)) == 0:
        kinds[draw(st.sampled_from(REQUIRED))] = None
    names = st.one_of(st.sampled_from(NAMES), st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
        .filter(lambda text: text != "\\N"))  # COPY, in the independent computation, reads \N as null
    rows, stored_rows = [], []
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.sampled_from(ANCHORS)) + dt.timedelta(
            seconds=draw(st.integers(-4 * 86400, 4 * 86400)), microseconds=draw(st.sampled_from([0, 1, 999_999])))
        if kinds["sendtime"] == "millis_rome":
            at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        read = {
            "DevEui": draw(st.sampled_from(["0011223344556677", "a", "B", ""])),
            "sendtime": at, "institute": draw(names), "classroom": draw(names),
        }
        for column in REQUIRED:  # now and then a reading the analysis must exclude
            if draw(st.integers(0, 11)) == 0:
                read[column] = None
        if unique_keys is not None and None not in (read["DevEui"], read["sendtime"]):
            if (read["DevEui"], read["sendtime"]) in unique_keys:
                continue  # with DROP_REPLAYS, only exact copies may share a key (added below)
            unique_keys.add((read["DevEui"], read["sendtime"]))
        stored = dict(read)
        for metric in METRICS:
            kind = kinds[metric]
            stored[metric], read[metric] = draw(metric_value(metric, kind)) if kind else (None, None)
        rows.append(read)
        stored_rows.append(stored)
    if rows and draw(st.booleans()):  # an exact replay, in the same file
        index = draw(st.integers(0, len(rows) - 1))
        rows.append(dict(rows[index]))
        stored_rows.append(dict(stored_rows[index]))
    for column in REQUIRED:  # a column the file lacks is null in each of its readings
        if kinds[column] is None:
            for row in rows:
                row[column] = None
    return InputFile(kinds, rows, stored_rows)


ANOMALIES = ("junk file", "text metric", "text sendtime", "numeric name", "required column nowhere",
             "no usable reading")


@st.composite
def inputs(draw: st.DrawFn) -> Input:
    """Mostly inputs within the contract; a third with one thing outside it."""
    drop_replays = draw(st.booleans())
    unique_keys: set[tuple[Any, Any]] | None = set() if drop_replays else None
    files = [draw(input_file(unique_keys)) for _ in range(draw(st.integers(1, 3)))]
    anomaly = draw(st.sampled_from((None,) * 2 * len(ANOMALIES) + ANOMALIES))
    chosen = draw(st.sampled_from(files))
    if anomaly == "text metric":
        chosen.kinds[draw(st.sampled_from(METRICS))] = "string"
    elif anomaly == "text sendtime":
        chosen.kinds["sendtime"] = "string"
    elif anomaly == "numeric name":
        chosen.kinds[draw(st.sampled_from(("DevEui", "institute", "classroom")))] = "int64"
    elif anomaly == "required column nowhere":
        column = draw(st.sampled_from(REQUIRED))
        for file in files:
            file.kinds[column] = None
            for row in file.rows:
                row[column] = None
    elif anomaly == "no usable reading":
        for file in files:
            for row in file.rows + file.stored:
                row["institute"] = None
    co2_high = draw(st.sampled_from([1000.0, 800.5]))
    return Input(files=files, junk_file=anomaly == "junk file", skip_corrupt_files=draw(st.booleans()),
                 timezone=draw(st.sampled_from(TIMEZONES)), drop_replays=drop_replays, co2_high=co2_high,
                 co2_very_high=draw(st.sampled_from([co2_high, 1500.0])),
                 comfort=draw(st.sampled_from([(20.0, 26.0), (18.5, 24.0)])))


# --- writing them, and what the contract says must happen --------------------------------------------

def _array(kind: str, values: list[Any]) -> pa.Array:
    if kind == "string":
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    if kind == "utc":
        return pa.array(values, pa.timestamp("us", tz="UTC"))
    if kind == "naive":
        return pa.array([None if v is None else v.replace(tzinfo=None) for v in values], pa.timestamp("us"))
    if kind == "millis_rome":
        return pa.array(values, pa.timestamp("ms", tz="Europe/Rome"))
    if kind == "decimal":
        return pa.array([None if v is None else decimal.Decimal(v) for v in values], pa.decimal128(9, 2))
    if kind in ("int32", "int64"):
        return pa.array([None if v is None else int(v) for v in values], getattr(pa, kind)())
    return pa.array(values, getattr(pa, kind)())


def _stored(column: str, kind: str, value: Any) -> Any:
    if kind == "int64" and column in ("DevEui", "institute", "classroom") and value is not None:
        return len(value)  # a name stored as a number: outside the contract
    return value


def write_input(spec: Input, folder: Path) -> None:
    folder.mkdir(parents=True)
    for index, file in enumerate(spec.files):
        columns = {column: _array(kind, [_stored(column, kind, row[column]) for row in file.stored])
                   for column, kind in file.kinds.items() if kind is not None}
        if not columns:
            columns["deviceName"] = pa.array([f"dev {i}" for i in range(len(file.stored))], pa.string())
        pq.write_table(pa.table(columns), folder / f"part-{index}.parquet")
    if spec.junk_file:
        (folder / "part-junk.parquet").write_bytes(b"PAR1 this is not a parquet file")


def expected_error(spec: Input) -> type[BatchError] | None:
    """The error the contract prescribes for this input, in the order the job checks."""
    if spec.junk_file and not spec.skip_corrupt_files:
        return CorruptInputFileError
    present = {column for file in spec.files for column, kind in file.kinds.items() if kind is not None}
    if not set(REQUIRED) <= present:
        return MissingColumnError
    if any(column in INCOMPATIBLE.get(kind or "", ()) for file in spec.files for column, kind in file.kinds.items()):
        return IncompatibleColumnTypeError
    if not any(all(row[column] is not None for column in REQUIRED) for file in spec.files for row in file.rows):
        return EmptyInputError
    return None


# --- the property ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_target(postgres_server: LocalPostgres) -> PostgresTarget:
    """One schema for every example: each run replaces (or must keep) the previous one's results."""
    return PostgresTarget(host=postgres_server.host, port=postgres_server.port,
                          database=postgres_server.database, user=postgres_server.user,
                          password=Secret(postgres_server.password()),
                          schema=f"prop_{secrets.token_hex(6)}", connect_attempts=2, lock_timeout_s=5)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


@contextlib.contextmanager
def reference_schema(conn: Any, spec: Input, name: str) -> Iterator[str]:
    independent.load_raw(conn, name, [row for file in spec.files for row in file.rows])
    try:
        yield name
    finally:
        query(conn, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def published(conn: Any, schema: str) -> dict[str, list[dict[str, Any]]]:
    """The published tables; empty before the first run creates them."""
    exists = query(conn, "SELECT to_regclass(%s)", (f"{schema}.weekly_stats",))[0][0]
    return {table: independent.published_table(conn, schema, table) if exists else [] for table in TABLES}


@settings(deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], **PROFILE)
@given(spec=inputs())
def test_any_input_gives_the_independent_results_or_the_documented_error(
        spark: SparkSession, shared_target: PostgresTarget, work_dir: Path, spec: Input) -> None:
    folder = Path(tempfile.mkdtemp(dir=work_dir)) / "raw"
    write_input(spec, folder)
    expected = expected_error(spec)
    note(f"expected: {expected.__name__ if expected else 'success'}; files: "
         + "; ".join(f"{file.kinds} {len(file.rows)} rows" for file in spec.files))
    settings_ = analysis_settings(
        shared_target, folder, BATCH_TIMEZONE=spec.timezone, DROP_REPLAYS=str(spec.drop_replays).lower(),
        SKIP_CORRUPT_FILES=str(spec.skip_corrupt_files).lower(), CO2_HIGH_PPM=str(spec.co2_high),
        CO2_VERY_HIGH_PPM=str(spec.co2_very_high), COMFORT_MIN_C=str(spec.comfort[0]),
        COMFORT_MAX_C=str(spec.comfort[1]),
        # The property is about the statistics; an input without an occupied reading empties the
        # compliance tables the previous example filled, which tests/test_hostile_settings.py covers.
        ALLOW_EMPTY_TABLES="true")
    with contextlib.closing(admin_connection(shared_target)) as conn:
        before = published(conn, shared_target.schema)
        try:
            summary = run(spark, settings_)
        except BatchError as error:  # anything else is an unhandled exception: the test fails
            assert type(error) is expected, f"{type(error).__name__}: {error}"
            assert str(error)
            assert published(conn, shared_target.schema) == before  # previous results kept
            last = runs(conn, shared_target.schema)[-1]
            assert (last["status"], last["error_message"]) == ("failed", str(error))
            return
        assert expected is None, f"expected {expected.__name__}, the run succeeded"
        record = runs(conn, shared_target.schema)[-1]
        assert (record["run_id"], record["status"]) == (summary.run_id, "succeeded")
        assert [Path(name).name for name in record["skipped_files"]] == (
            ["part-junk.parquet"] if spec.junk_file else [])
        with reference_schema(conn, spec, f"{shared_target.schema}_ref") as reference:
            for table in TABLES:
                independent.assert_rows_close(
                    independent.published_table(conn, shared_target.schema, table),
                    independent.expected_table(conn, reference, table, spec.timezone, spec.drop_replays,
                                               spec.co2_high, spec.co2_very_high, spec.comfort))
            counts = independent.expected_counts(conn, reference, spec.drop_replays)
        assert (record["rows_read"], record["rows_used"]) == (counts["rows_read"], counts["rows_used"])
        assert record["rows_excluded"] == {reason: counts[reason] for reason in (
            "missing_sendtime", "missing_device", "unregistered_device", "replayed_reading")}
        assert record["values_nulled"] == counts["values_nulled"]
