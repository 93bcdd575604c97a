"""The analysis end to end against a real PostgreSQL: published tables, atomicity, bad input."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from batch.analysis import publish
from batch.analysis.statistics import GROUPINGS
from batch.analysis.job import ANALYSIS_OPTIONS, AnalysisSettings, RunSummary, run_analysis
from batch.core.config import resolve_options, settings_from
from batch.core.errors import (
    CorruptInputFileError,
    EmptyInputError,
    IncompatibleColumnTypeError,
    InputNotFoundError,
    MissingColumnError,
    PublishError,
)
from batch.core.postgres import PostgresTarget
from tests import independent
from tests.rawdata import build_rows, write_dataset
from tests.support.published import assert_published_equals_independent
from tests.support.sink import HOSTILE_CLASSROOM, write_streaming_sink

TABLES = [grouping.table for grouping in GROUPINGS]
UTC = dt.timezone.utc


def analysis_settings(target: PostgresTarget, raw_path: Path | str, **variables: str) -> AnalysisSettings:
    environ = {
        "RAW_DATA_PATH": str(raw_path), "POSTGRES_HOST": target.host,
        "POSTGRES_PORT": str(target.port), "POSTGRES_DB": target.database,
        "POSTGRES_USER": target.user, "POSTGRES_PASSWORD": target.password.reveal(),
        "POSTGRES_SCHEMA": target.schema, "POSTGRES_CONNECT_ATTEMPTS": "2",
        "PUBLISH_LOCK_TIMEOUT_S": "5",
        # These tests were written when UTC was the default; the default is Europe/Rome now.
        "BATCH_TIMEZONE": "UTC", **variables,
    }
    return settings_from(AnalysisSettings, resolve_options(ANALYSIS_OPTIONS, {}, environ, None))


def run(spark: SparkSession, settings: AnalysisSettings, **options: Any) -> RunSummary:
    return run_analysis(spark, settings, RunSummary(job="analysis", input_path=settings.raw_data_path),
                        **options)


def connect(target: PostgresTarget) -> Any:
    return psycopg2.connect(host=target.host, port=target.port, dbname=target.database,
                            user=target.user, password=target.password.reveal())


def snapshot(target: PostgresTarget) -> dict[str, list[dict[str, Any]]]:
    with connect(target) as conn:
        return {table: independent.published_table(conn, target.schema, table) for table in TABLES}


def last_run(target: PostgresTarget) -> dict[str, Any]:
    with connect(target) as conn:
        return independent.fetch_dicts(
            conn, f'SELECT * FROM "{target.schema}".batch_runs ORDER BY run_id DESC LIMIT 1')[0]


def write_rows(path: Path, columns: dict[str, pa.Array]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path.parent


def small_dataset(folder: Path, co2: float = 800.0) -> Path:
    return write_rows(folder / "part-0.parquet", {
        "DevEui": pa.array(["a1", "a1", "b2"]),
        "sendtime": pa.array([dt.datetime(2025, 3, 3, 9, tzinfo=UTC),
                              dt.datetime(2025, 3, 10, 9, tzinfo=UTC),
                              dt.datetime(2025, 3, 3, 9, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
        "institute": pa.array(["Liceo", "Liceo", "Istituto"]),
        "classroom": pa.array(["3A", "3A", "3A"]),
        "co2": pa.array([co2, co2 + 100, 500.0]),
    })


@pytest.mark.parametrize("timezone, drop_replays", [("UTC", False), ("Europe/Rome", True)])
def test_published_tables_equal_an_independent_sql_computation(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path,
        timezone: str, drop_replays: bool) -> None:
    dataset = write_dataset(tmp_path / "raw")
    target = make_target()
    summary = run(spark, analysis_settings(target, dataset.folder, BATCH_TIMEZONE=timezone,
                                           DROP_REPLAYS=str(drop_replays).lower()))

    reference_schema = target.schema + "_expected"
    with connect(target) as conn:
        independent.load_raw(conn, reference_schema, dataset.rows)
        for table in TABLES:
            independent.assert_rows_close(
                independent.published_table(conn, target.schema, table),
                independent.expected_table(conn, reference_schema, table, timezone, drop_replays))
        counts = independent.expected_counts(conn, reference_schema, drop_replays)
    run_record = last_run(target)
    assert run_record["status"] == "succeeded"
    assert (run_record["rows_read"], run_record["rows_used"]) == (counts["rows_read"], counts["rows_used"])
    assert run_record["rows_excluded"] == {
        reason: counts[reason] for reason in
        ("missing_sendtime", "missing_device", "unregistered_device", "replayed_reading")}
    assert run_record["values_nulled"] == counts["values_nulled"]
    # The indoor-air compliance tables' counts are checked in tests/test_iaq_analysis.py.
    published_rows = {table: len(rows) for table, rows in snapshot(target).items()}
    assert {table: run_record["rows_written"][table] for table in published_rows} == published_rows
    assert summary.rows_excluded == run_record["rows_excluded"]
    # The dataset holds every dirty case of the contract.
    assert all(run_record["rows_excluded"][reason] > 0 for reason in
               ("missing_sendtime", "missing_device", "unregistered_device"))
    assert all(counts["values_nulled"][m] > 0 for m in ("temperature", "humidity", "co2", "battery"))


def test_every_table_and_column_has_a_comment_and_the_view_shows_complete_weeks(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    target = make_target()
    run(spark, analysis_settings(target, small_dataset(tmp_path / "raw")))
    with connect(target) as conn:
        missing = independent.fetch_dicts(conn, (
            "SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'v') "
            "AND col_description(c.oid, a.attnum) IS NULL AND c.relkind = 'r' "
            "UNION ALL SELECT c.relname, NULL FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'v') AND obj_description(c.oid) IS NULL"),
            (target.schema, target.schema))
        latest = independent.fetch_dicts(conn, (
            f'SELECT institute, classroom, week_start, readings FROM "{target.schema}".'
            "latest_complete_week_by_classroom ORDER BY institute"))
    assert missing == []
    # Newest reading: Monday 10 March, so the week of 3 March is complete, that of 10 March not.
    assert latest == [{"institute": "Istituto", "classroom": "3A", "week_start": dt.date(2025, 3, 3), "readings": 1},
                      {"institute": "Liceo", "classroom": "3A", "week_start": dt.date(2025, 3, 3), "readings": 1}]


class InjectedFailure(RuntimeError):
    pass


def test_a_failure_while_publishing_keeps_the_previous_results_and_reruns_are_idempotent(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    target = make_target()
    first = analysis_settings(target, small_dataset(tmp_path / "first", co2=800.0))
    second = analysis_settings(target, small_dataset(tmp_path / "second", co2=1900.0))
    run(spark, first)
    before = snapshot(target)

    # 1. The run fails after three of the staging tables were written.
    real_write = publish.write_staging
    written: list[str] = []

    def failing_write(conn: Any, target_: PostgresTarget, table: Any, rows: Any, staging: str,
                      *deleted_keys: Any) -> None:
        if len(written) == 3:
            raise InjectedFailure("executor lost")
        written.append(staging)
        real_write(conn, target_, table, rows, staging, *deleted_keys)

    monkeypatch.setattr(publish, "write_staging", failing_write)
    with pytest.raises(InjectedFailure):
        run(spark, second)
    monkeypatch.undo()
    assert snapshot(target) == before
    failed = last_run(target)
    assert (failed["status"], failed["error_message"]) == ("failed", "InjectedFailure: executor lost")

    # 2. PostgreSQL fails inside the swap transaction, after some tables were replaced.
    with connect(target) as conn, conn.cursor() as cursor:
        cursor.execute(f'CREATE FUNCTION "{target.schema}".refuse() RETURNS trigger LANGUAGE plpgsql '
                       "AS $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$")
        cursor.execute(f'CREATE TRIGGER refuse BEFORE INSERT ON "{target.schema}".weekly_stats '
                       f'FOR EACH ROW EXECUTE FUNCTION "{target.schema}".refuse()')
    with pytest.raises(PublishError, match="disk on fire"):
        run(spark, second)
    assert snapshot(target) == before
    with connect(target) as conn, conn.cursor() as cursor:
        cursor.execute(f'DROP TRIGGER refuse ON "{target.schema}".weekly_stats')
        cursor.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s",
                       (target.schema, publish.STAGING_PREFIX + "%"))
        assert cursor.fetchone()[0] == 0

    # 3. Reruns on the same input give identical tables.
    run(spark, first)
    assert snapshot(target) == before
    run(spark, second)
    after_second = snapshot(target)
    assert after_second != before
    run(spark, second)
    assert snapshot(target) == after_second


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, type, str]]:
    stamp = pa.array([dt.datetime(2025, 3, 3, 9, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    no_classroom = write_rows(tmp_path / "no_classroom/part-0.parquet", {
        "DevEui": pa.array(["a1"]), "sendtime": stamp, "institute": pa.array(["Liceo"])})
    text_co2 = write_rows(tmp_path / "text_co2/part-0.parquet", {
        "DevEui": pa.array(["a1"]), "sendtime": stamp, "institute": pa.array(["Liceo"]),
        "classroom": pa.array(["3A"]), "co2": pa.array(["high"])})
    corrupt = small_dataset(tmp_path / "corrupt")
    (corrupt / "part-1.parquet").write_bytes(b"PAR1 this is not a parquet file")
    truncated = small_dataset(tmp_path / "truncated")
    data = (truncated / "part-0.parquet").read_bytes()
    (truncated / "part-0.parquet").write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty"
    empty.mkdir()
    unregistered = write_rows(tmp_path / "unregistered/part-0.parquet", {
        "DevEui": pa.array(["a1"]), "sendtime": stamp, "institute": pa.array([None], pa.string()),
        "classroom": pa.array([None], pa.string()), "co2": pa.array([700.0])})
    return {
        "required column missing everywhere": (no_classroom, MissingColumnError, "`classroom`"),
        "metric stored as text": (text_co2, IncompatibleColumnTypeError, "`co2` is stored as string"),
        "corrupt file": (corrupt, CorruptInputFileError, "part-1.parquet"),
        "truncated file": (truncated, CorruptInputFileError, "part-0.parquet"),
        "empty folder": (empty, InputNotFoundError, "holds no Parquet file"),
        "missing path": (tmp_path / "nowhere", InputNotFoundError, "does not exist"),
        "no usable reading": (unregistered, EmptyInputError, "no usable reading"),
    }


def test_each_bad_input_fails_clearly_and_keeps_the_previous_results(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    target = make_target()
    run(spark, analysis_settings(target, small_dataset(tmp_path / "good")))
    before = snapshot(target)
    for case, (path, error_class, fragment) in _bad_inputs(tmp_path).items():
        with pytest.raises(error_class) as raised:
            run(spark, analysis_settings(target, path))
        assert fragment in str(raised.value), case
        assert str(path.name) in str(raised.value) or "nowhere" in str(raised.value), case
        assert snapshot(target) == before, case
        failed = last_run(target)
        assert (failed["status"], failed["error_message"]) == ("failed", str(raised.value)), case


def test_corrupt_files_can_be_skipped_and_are_reported(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    target = make_target()
    path, _, _ = _bad_inputs(tmp_path)["corrupt file"]
    summary = run(spark, analysis_settings(target, path, SKIP_CORRUPT_FILES="true"))
    record = last_run(target)
    assert record["status"] == "succeeded"
    assert [Path(p).name for p in record["skipped_files"]] == ["part-1.parquet"]
    assert summary.skipped_files == record["skipped_files"]
    assert (record["input_files"], record["rows_read"]) == (1, 3)


def test_an_unreachable_database_is_named_without_the_password(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    from devtools.local_postgres import free_port

    target = make_target(port=free_port(), connect_attempts=2)
    settings = analysis_settings(target, small_dataset(tmp_path / "raw"))
    with pytest.raises(PublishError) as raised:
        run(spark, settings)
    message = str(raised.value)
    assert f"127.0.0.1:{target.port}" in message and "after 2 attempt(s)" in message
    assert target.password.reveal() not in message


# --- a streaming sink, as the platform's streaming job leaves the raw folder -------------------

def sink_batches(seed: int = 23, readings_per_window: int = 60) -> list[list[dict[str, Any]]]:
    """Four micro-batches of readings with every dirty case; light levels with a fraction."""
    rows = build_rows(seed, readings_per_window)
    for row in rows:
        if row["classroom"] == "4B":
            row["classroom"] = HOSTILE_CLASSROOM
        if row["light_level"] is not None:
            row["light_level"] += 0.25
    quarter = len(rows) // 4
    return [rows[:quarter], rows[quarter:2 * quarter], rows[2 * quarter:3 * quarter], rows[3 * quarter:]]


def local_names(files: list[str]) -> list[str]:
    return [name.removeprefix("file:") for name in files]


def test_a_streaming_sink_is_read_as_sparks_own_reader_reads_it(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    sink = write_streaming_sink(spark, tmp_path, sink_batches())
    log = sorted(p.name for p in (Path(sink.folder) / "_spark_metadata").iterdir() if not p.name.startswith("."))
    assert log == ["0", "1.compact", "2", "3.compact"]
    assert (Path(sink.folder) / f"classroom={HOSTILE_CLASSROOM}").is_dir()
    # The folder holds more readings than were committed, which Spark's reader alone sees.
    assert spark.read.parquet(sink.folder).count() == len(sink.committed_rows)
    target = make_target()

    summary = run(spark, analysis_settings(target, sink.folder))

    assert_published_equals_independent(target, sink.committed_rows)
    uncommitted = {"count": 2, "first": list(sink.uncommitted)}
    assert {**summary.uncommitted_files, "first": local_names(summary.uncommitted_files["first"])} == uncommitted
    record = last_run(target)
    assert record["uncommitted_files"] == summary.uncommitted_files
    assert record["rows_read"] == len(sink.committed_rows)
    assert summary.files_lacking_required_columns == {"count": 0, "first": []}


def test_light_level_stored_with_a_fraction_keeps_it(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    stamp = pa.array([dt.datetime(2025, 3, 3, 9, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC"))
    common = {"DevEui": pa.array(["a1", "a2"]), "sendtime": stamp,
              "institute": pa.array(["Liceo"] * 2), "classroom": pa.array(["3A"] * 2)}
    raw = write_rows(tmp_path / "raw/part-0.parquet", {**common, "light_level": pa.array([12, 40], pa.int32())})
    write_rows(raw / "part-1.parquet", {**common, "light_level": pa.array([12.7, 0.5], pa.float32())})
    write_rows(raw / "part-2.parquet", {**common, "light_level": pa.array([3.25, 7.0], pa.float64())})
    target = make_target()
    run(spark, analysis_settings(target, raw))
    stored = [12.0, 40.0, float(pa.array([12.7], pa.float32())[0].as_py()), 0.5, 3.25, 7.0]
    with connect(target) as conn:
        (row,) = independent.fetch_dicts(conn, (
            f'SELECT light_level_count, light_level_mean, light_level_min, light_level_max FROM '
            f'"{target.schema}".classroom_stats'))
        comment = independent.fetch_dicts(conn, (
            "SELECT col_description(%s::regclass, attnum) AS comment FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = 'light_level_mean'"),
            (f'"{target.schema}".classroom_stats',) * 2)[0]["comment"]
    assert row["light_level_count"] == 6
    assert row["light_level_min"] == 0.5 and row["light_level_max"] == 40.0
    assert abs(row["light_level_mean"] - sum(stored) / 6) < 1e-9
    assert "fraction is kept" in comment


def test_files_lacking_a_required_column_others_have_are_named(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    raw = small_dataset(tmp_path / "raw")
    stamp = pa.array([dt.datetime(2025, 3, 4, 9, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC"))
    write_rows(raw / "part-1.parquet", {"DevEui": pa.array(["a1", "c3"]), "time": stamp,
                                        "institute": pa.array(["Liceo"] * 2),
                                        "classroom": pa.array(["3A"] * 2), "co2": pa.array([600.0, 700.0])})
    target = make_target()
    with caplog.at_level("WARNING", logger="batch.core.readers"):
        summary = run(spark, analysis_settings(target, raw))
    assert local_names(summary.files_lacking_required_columns["first"]) == [str(raw / "part-1.parquet")]
    assert summary.files_lacking_required_columns["count"] == 1
    assert summary.rows_excluded["missing_sendtime"] == 2
    warning = next(r.getMessage() for r in caplog.records if "lack required column" in r.getMessage())
    assert "`sendtime`" in warning and "part-1.parquet" in warning


def test_a_run_table_of_an_earlier_version_gets_the_new_columns(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    target = make_target()
    raw = small_dataset(tmp_path / "raw")
    run(spark, analysis_settings(target, raw))
    with connect(target) as conn, conn.cursor() as cursor:
        cursor.execute(f'ALTER TABLE "{target.schema}".batch_runs DROP COLUMN uncommitted_files')
    # A full run: an incremental one does not look for uncommitted files (null: not checked).
    run(spark, analysis_settings(target, raw, FULL_REBUILD="true"))
    record = last_run(target)
    assert (record["status"], record["uncommitted_files"]) == ("succeeded", {"count": 0, "first": []})


def test_every_published_table_is_built_with_exactly_its_catalog_columns(
        spark: SparkSession, tmp_path: Path, make_target: Callable[..., PostgresTarget]) -> None:
    # Table.rows selects the catalog's columns from what the roll-ups computed: a column computed
    # under another name than the catalog's, or computed and never published, is caught here.
    from batch.analysis.catalog import build_catalog
    from batch.analysis.device_days import _aggregate, _columns_read, partial_columns
    from batch.analysis.incremental import with_source_file
    from batch.analysis.job import _results
    from batch.core.contract import METRICS
    from batch.core.readers import read_raw_readings
    from batch.core.session import arrow_to_pandas

    settings = analysis_settings(make_target(), write_dataset(tmp_path / "raw").folder,
                                 BATCH_TIMEZONE="Europe/Rome")
    rules = settings.iaq.rules()
    readings_df, _ = read_raw_readings(spark, settings.raw_data_path, _columns_read(METRICS), False, ())
    partials, episodes = _aggregate(readings_df.transform(with_source_file), settings, METRICS, rules)
    catalog = build_catalog(settings.thresholds, settings.batch_timezone, METRICS, iaq=settings.iaq,
                            health=settings.health)
    built = {name: list(frame.columns)
             for computed in _results(arrow_to_pandas(partials), arrow_to_pandas(episodes), settings, METRICS, rules)
             for name, frame in computed.items()}
    assert {name: sorted(columns) for name, columns in built.items()} == {
        table.name: sorted(table.column_names) for table in catalog.published_tables}
    # Every aggregated partial column is in the state's fingerprint (a new one forces a full
    # rebuild): the partials' columns are it, in order, after their group keys.
    keys = ["exclusion_reason", "institute", "classroom", "DevEui", "reading_date", "profile", "source_file"]
    derived = ["iso_year", "iso_week", "week_start", "year", "month", "month_start"]
    assert partials.column_names == keys + partial_columns(METRICS) + derived
