"""Faults, for real: SIGKILL at each phase, PostgreSQL down or restarted, two runs at once,
damaged Parquet, a full or unwritable disk under the downloader.

The job runs as a real process (tests/support/jobs.py) and is held where the fault is
injected by PostgreSQL itself (a lock the test holds, a trigger waiting for an advisory
lock the test holds) or, inside Spark, by tests/support/held_analysis.py; the phase is
seen from outside (pg_stat_activity, pg_tables, batch_runs). Expected results come from
the independent SQL computation of tests/independent.py. Related tests elsewhere:
tests/test_analysis.py (failures inside the job, bad input, the unreachable-database
message), tests/test_download_files.py and tests/test_download_job.py (interrupted exports).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg2 import sql
from pyspark.sql import SparkSession

from devtools import local_postgres
from batch.analysis.job import RunSummary, run_analysis
from batch.core.config import Secret
from batch.core.errors import CorruptInputFileError, DownloadError, PublishError
from batch.download.files import write_single_file
from batch.analysis.publish import PostgresTarget
from tests.rawdata import METRICS, RawDataset, build_rows, with_replays
from tests.support.jobs import (
    JOB_APPLICATION,
    JobProcess,
    admin_connection,
    advisory_hold,
    install_commit_hold,
    job_backends,
    job_environment,
    query,
    remove_commit_hold,
    runs,
    staging_tables,
    wait_for,
    wait_until_gone,
)
from tests.support.published import (
    STAGED,
    TABLES,
    assert_published_equals_independent,
    published,
    write_rows,
)
from tests.test_analysis import analysis_settings, run, small_dataset

PROJECT_ROOT = Path(__file__).resolve().parents[1]
UTC = dt.timezone.utc


@dataclass(frozen=True)
class Datasets:
    first: RawDataset
    second: RawDataset


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Datasets:
    """Two small inputs with every dirty case of the contract, whose statistics differ."""
    folder = tmp_path_factory.mktemp("raw")
    made = []
    for name, seed in (("first", 3), ("second", 4)):
        rows = with_replays(build_rows(seed, readings_per_window=12), seed)
        made.append(RawDataset(write_rows(folder / name, rows), rows))
    return Datasets(*made)


def published_tables(conn: Any, schema: str) -> dict[str, list[dict[str, Any]]]:
    return published(conn, schema, with_view=False)


def assert_next_run_succeeds_and_abandons(spark: SparkSession, target: PostgresTarget,
                                          dataset: RawDataset, killed_run: int) -> None:
    """The run after a killed one: succeeds, marks the dead run abandoned, leaves no staging table."""
    summary = run(spark, analysis_settings(target, dataset.folder))
    assert summary.status == "succeeded"
    with contextlib.closing(admin_connection(target)) as conn:
        records = {record["run_id"]: record for record in runs(conn, target.schema)}
        assert staging_tables(conn, target.schema) == []
    abandoned = records[killed_run]
    assert (abandoned["status"], abandoned["error_message"]) == (
        "abandoned", "the process ended without recording a result")
    assert abandoned["finished_at"] is not None
    assert records[summary.run_id]["status"] == "succeeded"
    assert_published_equals_independent(target, dataset.rows)


# --- holding the job at a point ----------------------------------------------------------------

@contextlib.contextmanager
def table_lock(target: PostgresTarget, table: str) -> Iterator[Any]:
    """ACCESS EXCLUSIVE on a published table, held by the test until the block ends."""
    conn = admin_connection(target, autocommit=False)
    try:
        query(conn, sql.SQL("LOCK TABLE {}.{} IN ACCESS EXCLUSIVE MODE").format(
            sql.Identifier(target.schema), sql.Identifier(table)))
        yield conn
    finally:
        conn.close()


def install_staging_hold(conn: Any, schema: str, key: int) -> str:
    """Hold the COPY into the last statistics staging table (weekly_stats) on advisory lock `key`.

    The run creates its staging tables; an event trigger puts a statement trigger on that one
    as it is created, which waits for the lock: the five tables before it are written.
    Returns the event trigger's name (event triggers are per database: drop it afterwards).
    """
    name = f"hold_staging_{schema}"
    schema_id, key_literal = sql.Identifier(schema), sql.Literal(key)
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL(
            "CREATE FUNCTION {schema}.hold_staging_write() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN PERFORM pg_advisory_lock_shared({key}); PERFORM pg_advisory_unlock_shared({key}); "
            "RETURN NULL; END $$").format(schema=schema_id, key=key_literal))
        cursor.execute(sql.SQL(
            "CREATE FUNCTION {schema}.add_staging_hold() RETURNS event_trigger LANGUAGE plpgsql AS $$ "
            "DECLARE created record; BEGIN "
            "FOR created IN SELECT objid FROM pg_event_trigger_ddl_commands() "
            "WHERE command_tag = 'CREATE TABLE' AND schema_name = {schema_text} "
            "AND object_identity ~ '[.]_staging_[0-9]+_weekly_stats$' LOOP "
            "EXECUTE format('CREATE TRIGGER hold_staging_write BEFORE INSERT ON %s FOR EACH STATEMENT "
            "EXECUTE FUNCTION %I.hold_staging_write()', created.objid::regclass, {schema_text}); "
            "END LOOP; END $$").format(schema=schema_id, schema_text=sql.Literal(schema)))
        cursor.execute(sql.SQL(
            "CREATE EVENT TRIGGER {name} ON ddl_command_end WHEN TAG IN ('CREATE TABLE') "
            "EXECUTE FUNCTION {schema}.add_staging_hold()").format(
            name=sql.Identifier(name), schema=schema_id))
    return name


def drop_event_trigger(conn: Any, name: str) -> None:
    query(conn, sql.SQL("DROP EVENT TRIGGER IF EXISTS {}").format(sql.Identifier(name)))


def waiting_backend(conn: Any, application: str, wait_event: str, query_start: str) -> int | None:
    """The job's session of `application` blocked on a lock (`wait_event`) in a statement starting so."""
    for pid, (app, wait_type, event, text) in job_backends(conn).items():
        if (app, wait_type, event) == (application, "Lock", wait_event) and text.lstrip().startswith(query_start):
            return pid
    return None


def running_run(conn: Any, schema: str) -> dict[str, Any] | None:
    records = runs(conn, schema)
    return records[-1] if records and records[-1]["status"] == "running" else None


# --- SIGKILL at each phase ---------------------------------------------------------------------

KILL_POINTS = ("read", "aggregate", "staging", "swap", "commit")


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_any_point_keeps_the_previous_results_and_the_next_run_recovers(
        point: str, spark: SparkSession, make_target: Callable[..., PostgresTarget],
        datasets: Datasets, tmp_path: Path) -> None:
    target = make_target()
    run(spark, analysis_settings(target, datasets.first.folder))
    admin = admin_connection(target)
    previous, previous_state = published(admin, target.schema), state_snapshot(admin, target.schema)
    key = secrets.randbits(62)
    environment = job_environment(target, datasets.second.folder, tmp_path)
    with contextlib.ExitStack() as stack:
        stack.callback(admin.close)
        if point == "staging":
            event_trigger = install_staging_hold(admin, target.schema, key)
            stack.callback(drop_event_trigger, admin, event_trigger)
            stack.enter_context(advisory_hold(target, key))
        elif point == "commit":
            install_commit_hold(admin, target.schema, key)
            stack.enter_context(advisory_hold(target, key))
        reader = admin
        # "swap": held after reading the footers, where it has counted the published tables'
        # rows (device_days.compute_device_days) and stages nothing yet; the staging tables are
        # written in milliseconds (COPY), too fast to be seen and locked in between.
        hold_at = "read" if point == "swap" else point if point in ("read", "aggregate") else None
        job = stack.enter_context(JobProcess.analysis(environment, tmp_path / "job", hold_at=hold_at))
        if point == "swap":
            wait_for(lambda: job.hold_reached("read"), "the job to read the footers", job=job)
            # Nothing else locks a published table before the swap, which replaces weekly_stats
            # after the others.
            reader = stack.enter_context(table_lock(target, "weekly_stats"))
            job.release()

        # Wait, from outside, until the job is held where the fault is injected.
        if point in ("read", "aggregate"):
            wait_for(lambda: job.hold_reached(point), f"the job to reach {point}", job=job)
        elif point == "staging":
            wait_for(lambda: waiting_backend(admin, JOB_APPLICATION, "advisory", "COPY"),
                     "the job to wait inside its COPY into the last statistics staging table", job=job)
            killed_id = running_run(admin, target.schema)["run_id"]
            written = [table for table in staging_tables(admin, target.schema)
                       if query(admin, sql.SQL("SELECT count(*) FROM {}.{}").format(
                           sql.Identifier(target.schema), sql.Identifier(table)))[0][0] > 0]
            # In the middle of publishing: the health tables and the statistics before
            # weekly_stats written (staged in that order), the compliance tables not yet.
            health = ("device_daily_health", "device_health")
            assert sorted(written) == sorted(f"_staging_{killed_id}_{table}" for table in
                                             (*health, *TABLES) if table != "weekly_stats"), written
        elif point == "swap":
            wait_for(lambda: waiting_backend(admin, JOB_APPLICATION, "relation", "DELETE FROM"),
                     "the swap to wait for weekly_stats, the tables before it replaced", job=job)
            assert len(staging_tables(admin, target.schema)) == len(STAGED)  # all staged
        else:
            wait_for(lambda: waiting_backend(admin, JOB_APPLICATION, "advisory", "UPDATE"),
                     "the swap to wait just before its commit", job=job)
        killed = running_run(admin, target.schema)
        assert killed is not None and killed["input_path"] == str(datasets.second.folder)
        # Meanwhile, readers see the complete previous results.
        assert published_tables(reader, target.schema) == {t: previous[t] for t in TABLES}
        backends = set(job_backends(admin))
        assert backends, "the job holds no session: it is not where it was meant to be"

        job.kill_tree()
        # Leaving the block releases the test's locks: blocked sessions of the dead job go on,
        # find their client gone and end, rolling back.
    records = assert_previous_results_kept(target, backends, previous, previous_state)
    assert records[-1]["status"] == "running"  # nobody could record the death
    assert_next_run_succeeds_and_abandons(spark, target, datasets.second, killed["run_id"])


def assert_previous_results_kept(target: PostgresTarget, backends: set[int], previous: dict[str, Any],
                                 previous_state: dict[str, Any]) -> list[dict[str, Any]]:
    """Once the killed job's sessions are gone: the published tables and the incremental state
    are the previous run's. Returns the run records."""
    with contextlib.closing(admin_connection(target)) as conn:
        wait_until_gone(conn, backends)
        remove_commit_hold(conn, target.schema)
        assert published(conn, target.schema) == previous
        assert state_snapshot(conn, target.schema) == previous_state
        return runs(conn, target.schema)


def state_snapshot(conn: Any, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """The incremental state's tables (batch/analysis/state.py), the blobs by their MD5."""
    statements = {
        "state_meta": "SELECT format_version, fingerprint::text, last_sink_batch_id, run_id FROM {}.state_meta",
        "state_input_files": "SELECT * FROM {}.state_input_files ORDER BY path",
        "state_device_days": "SELECT kind, month, rows, md5(data) FROM {}.state_device_days ORDER BY kind, month",
    }
    return {name: query(conn, sql.SQL(statement).format(sql.Identifier(schema)))
            for name, statement in statements.items()}


def test_sigkill_before_an_incremental_runs_commit_keeps_the_previous_tables_and_state(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], datasets: Datasets,
        tmp_path: Path) -> None:
    """Killed inside its swap, with the new state written but not committed: the tables and
    the state stay the previous run's together, and the next run is incremental and right."""
    folder = tmp_path / "raw"
    folder.mkdir()
    shutil.copy(next(datasets.first.folder.glob("*.parquet")), folder / "part-0.parquet")
    target = make_target()
    run(spark, analysis_settings(target, folder))
    admin = admin_connection(target)
    previous, previous_state = published(admin, target.schema), state_snapshot(admin, target.schema)
    shutil.copy(next(datasets.second.folder.glob("*.parquet")), folder / "part-1.parquet")
    key = secrets.randbits(62)
    with contextlib.ExitStack() as stack:
        stack.callback(admin.close)
        install_commit_hold(admin, target.schema, key)
        stack.enter_context(advisory_hold(target, key))
        job = stack.enter_context(JobProcess.analysis(job_environment(target, folder, tmp_path),
                                                      tmp_path / "job"))
        wait_for(lambda: waiting_backend(admin, JOB_APPLICATION, "advisory", "UPDATE"),
                 "the swap to wait just before its commit, the state written", job=job)
        assert running_run(admin, target.schema)["mode"] is None  # recorded at the end only
        backends = set(job_backends(admin))
        job.kill_tree()
    assert_previous_results_kept(target, backends, previous, previous_state)
    summary = run(spark, analysis_settings(target, folder))
    assert (summary.mode, summary.input_files_new, summary.input_files_removed) == ("incremental", 1, 0)
    assert_published_equals_independent(target, datasets.first.rows + datasets.second.rows)


# --- PostgreSQL unreachable or restarted --------------------------------------------------------

@pytest.fixture(scope="module")
def own_server() -> Iterator[local_postgres.LocalPostgres]:
    """A PostgreSQL of its own, which these tests stop and start again on the same port."""
    # Not under pytest's private temporary folder: the server's system user must reach it.
    base_dir = Path(tempfile.mkdtemp(prefix="indoor-air-tests-own-pg."))
    server = local_postgres.start(base_dir, database="iot", user="batch_test", ephemeral=True)
    try:
        yield server
    finally:
        local_postgres.stop(base_dir)
        shutil.rmtree(base_dir, ignore_errors=True)


def start_again(server: local_postgres.LocalPostgres) -> None:
    """Start a stopped server on the port it had (local_postgres.start would pick a new one)."""
    binaries = local_postgres.find_server_binaries()
    local_postgres._run([str(binaries / "pg_ctl"), "start", "-D", str(server.base_dir / "data"), "-w",
                         "-t", "60", "-l", str(server.base_dir / "log" / "postgres.log"),
                         "-o", f"-p {server.port}"], local_postgres._server_user())


@contextlib.contextmanager
def stopped(server: local_postgres.LocalPostgres) -> Iterator[None]:
    """The server stopped for the block (started again by the block, or at its end)."""
    assert local_postgres.stop(server.base_dir)
    try:
        yield
    finally:
        if not local_postgres._is_running(server.base_dir, local_postgres.find_server_binaries()):
            start_again(server)


def own_target(server: local_postgres.LocalPostgres) -> PostgresTarget:
    return PostgresTarget(host=server.host, port=server.port, database=server.database,
                          user=server.user, password=Secret(server.password()),
                          schema=f"t_{secrets.token_hex(6)}", connect_attempts=2, lock_timeout_s=5)


def test_postgres_down_at_start_is_retried_with_backoff_until_it_is_back(
        spark: SparkSession, own_server: local_postgres.LocalPostgres, datasets: Datasets,
        caplog: pytest.LogCaptureFixture) -> None:
    target = own_target(own_server)
    settings = analysis_settings(target, datasets.second.folder, POSTGRES_CONNECT_ATTEMPTS="8")
    outcome: dict[str, Any] = {}

    def job() -> None:
        try:
            outcome["summary"] = run(spark, settings)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            outcome["error"] = error

    thread = threading.Thread(target=job, name="job")
    with stopped(own_server):
        thread.start()
        wait_for(lambda: "(attempt 2/8)" in caplog.text, "two failed connection attempts")
        start_again(own_server)
    thread.join(timeout=300)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert outcome["summary"].status == "succeeded"
    address = f"{target.host}:{target.port}"
    assert f"PostgreSQL at {address} not reachable (attempt 1/8)" in caplog.text
    assert "retrying in 0.5s" in caplog.text and "retrying in 1.0s" in caplog.text  # exponential backoff
    assert target.password.reveal() not in caplog.text
    assert_published_equals_independent(target, datasets.second.rows)


def test_postgres_never_reachable_ends_with_a_clear_error_in_the_summary(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], datasets: Datasets,
        caplog: pytest.LogCaptureFixture) -> None:
    target = make_target(port=local_postgres.free_port())  # nothing listens there
    summary = RunSummary(job="analysis", input_path=str(datasets.second.folder))
    with pytest.raises(PublishError) as raised:
        run_analysis(spark, analysis_settings(target, datasets.second.folder, POSTGRES_CONNECT_ATTEMPTS="3"),
                     summary)
    assert str(raised.value).startswith(
        f"cannot connect to PostgreSQL at {target.host}:{target.port}/{target.database} as {target.user} "
        "after 3 attempt(s): ")
    assert "retrying in 0.5s" in caplog.text and "retrying in 1.0s" in caplog.text
    # The summary (printed, and written by --summary-json) says so too.
    assert (summary.status, summary.error_message) == ("failed", str(raised.value))
    assert target.password.reveal() not in caplog.text + str(raised.value)


def test_a_postgres_restart_during_the_run_fails_it_clearly_and_keeps_the_previous_results(
        spark: SparkSession, own_server: local_postgres.LocalPostgres, datasets: Datasets,
        tmp_path: Path) -> None:
    target = own_target(own_server)
    run(spark, analysis_settings(target, datasets.first.folder))
    with contextlib.closing(admin_connection(target)) as conn:
        previous = published(conn, target.schema)
    environment = job_environment(target, datasets.second.folder, tmp_path,
                                  POSTGRES_CONNECT_ATTEMPTS="8")
    with JobProcess.analysis(environment, tmp_path / "job", hold_at="read") as job:
        wait_for(lambda: job.hold_reached("read"), "the job to be reading", job=job)
        with stopped(own_server):
            # The job's session, and the publish lock with it, die with the server.
            job.release()
            wait_for(lambda: "reconnecting to record the failure" in job.stderr()
                     and "(attempt 1/8)" in job.stderr(),
                     "the job to find its connection lost and try to reconnect", job=job)
            start_again(own_server)
        code = job.wait()
    assert code == 4, job.output()[-4000:]
    address = f"{target.host}:{target.port}/{target.database} as {target.user}"
    assert f"PostgreSQL at {address} failed: " in job.stderr()
    assert target.password.reveal() not in job.output()
    with contextlib.closing(admin_connection(target)) as conn:
        assert published(conn, target.schema) == previous
        failed = runs(conn, target.schema)[-1]
        assert failed["status"] == "failed"
        assert failed["error_message"].startswith(f"PostgreSQL at {address} failed: ")
        assert failed["error_message"].endswith("previous results kept")
        assert staging_tables(conn, target.schema) == []
    summary = run(spark, analysis_settings(target, datasets.second.folder))
    assert summary.status == "succeeded"
    assert_published_equals_independent(target, datasets.second.rows)


# --- two runs at once ---------------------------------------------------------------------------

def test_two_runs_at_once_never_interleave(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], datasets: Datasets,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = make_target()
    run(spark, analysis_settings(target, datasets.first.folder))
    admin = admin_connection(target)
    previous = published(admin, target.schema)
    key = secrets.randbits(62)
    install_commit_hold(admin, target.schema, key)
    outcome: dict[str, Any] = {}

    def second_run() -> None:
        try:
            outcome["summary"] = run(spark, analysis_settings(
                target, datasets.first.folder, PUBLISH_LOCK_TIMEOUT_S="240"))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            outcome["error"] = error

    waiting = threading.Thread(target=second_run, name="second-run")
    try:
        with advisory_hold(target, key) as hold, JobProcess.analysis(
                job_environment(target, datasets.second.folder, tmp_path), tmp_path / "job") as first:
            # The first run holds the publish lock, stopped inside its swap just before commit.
            wait_for(lambda: waiting_backend(admin, JOB_APPLICATION, "advisory", "UPDATE"),
                     "the first run to be publishing", job=first)
            first_record = runs(admin, target.schema)[-1]
            assert first_record["status"] == "running"

            # A run allowed to wait 2 s gives up with a message naming the schema and server.
            with pytest.raises(PublishError) as refused:
                run(spark, analysis_settings(target, datasets.first.folder, PUBLISH_LOCK_TIMEOUT_S="2"))
            assert str(refused.value) == (
                f"another run is publishing to schema {target.schema} at {target.address}; "
                "gave up after waiting 2s")
            assert runs(admin, target.schema)[-1] == first_record  # it recorded nothing
            assert staging_tables(admin, target.schema) == [
                f"_staging_{first_record['run_id']}_{table}" for table in sorted(STAGED)]

            # A run allowed to wait longer waits...
            caplog.clear()
            waiting.start()
            wait_for(lambda: any("another run holds the publish lock" in record.getMessage()
                                 for record in caplog.records), "the second run to wait")
            assert runs(admin, target.schema)[-1] == first_record
            assert published_tables(admin, target.schema) == {t: previous[t] for t in TABLES}
            # ... until the first, let go, commits and ends.
            query(hold, "SELECT pg_advisory_unlock(%s)", (key,))
            assert first.wait() == 0, first.output()[-4000:]
        waiting.join(timeout=300)
        assert not waiting.is_alive(), "the second run did not finish"
    finally:
        if waiting.is_alive():
            waiting.join(timeout=300)
        remove_commit_hold(admin, target.schema)
        admin.close()
    assert "error" not in outcome, outcome.get("error")
    with contextlib.closing(admin_connection(target)) as conn:
        records = runs(conn, target.schema)
    first_done, second_done = records[-2], records[-1]
    assert (first_done["run_id"], first_done["status"]) == (first_record["run_id"], "succeeded")
    assert (second_done["run_id"], second_done["status"]) == (outcome["summary"].run_id, "succeeded")
    # The second run started (took the lock and recorded itself) after the first had finished.
    assert second_done["started_at"] >= first_done["finished_at"]
    assert_published_equals_independent(target, datasets.first.rows)


# --- damaged Parquet ----------------------------------------------------------------------------

def damage_column(path: Path, column: str) -> None:
    """Flip the bytes of `column`'s data pages, leaving the footer intact."""
    metadata = pq.ParquetFile(path).metadata.row_group(0)
    chunk = next(metadata.column(i) for i in range(metadata.num_columns)
                 if metadata.column(i).path_in_schema == column)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    for index in range(start + 30, start + chunk.total_compressed_size - 10):
        data[index] ^= 0x5A
    path.write_bytes(bytes(data))


def damaged_dataset(folder: Path, rows: int = 2000) -> Path:
    """A good file of three readings, and part-1.parquet whose co2 pages are damaged."""
    small_dataset(folder)
    pq.write_table(pa.table({
        "DevEui": [f"d{i % 7}" for i in range(rows)], "institute": ["Liceo"] * rows,
        "classroom": ["3A"] * rows, "co2": [400.0 + i for i in range(rows)],
        "sendtime": pa.array([dt.datetime(2025, 3, 3, tzinfo=UTC) + dt.timedelta(minutes=i)
                              for i in range(rows)], pa.timestamp("us", tz="UTC")),
    }), folder / "part-1.parquet")
    damage_column(folder / "part-1.parquet", "co2")
    pq.ParquetFile(folder / "part-1.parquet").metadata  # noqa: B018 - the footer still reads
    return folder


def test_a_file_damaged_behind_an_intact_footer_is_named_and_keeps_the_previous_results(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    target = make_target()
    run(spark, analysis_settings(target, small_dataset(tmp_path / "good")))
    with contextlib.closing(admin_connection(target)) as conn:
        previous = published(conn, target.schema)
    damaged = damaged_dataset(tmp_path / "damaged")
    with pytest.raises(CorruptInputFileError) as raised:
        run(spark, analysis_settings(target, damaged, SKIP_CORRUPT_FILES="false"))
    message = str(raised.value)
    assert f"{damaged}/part-1.parquet is not a readable Parquet file: its data cannot be decoded" in message
    with contextlib.closing(admin_connection(target)) as conn:
        assert published(conn, target.schema) == previous
        failed = runs(conn, target.schema)[-1]
    assert (failed["status"], failed["error_message"]) == ("failed", message)


def test_a_file_damaged_behind_an_intact_footer_can_be_skipped_and_is_reported(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    # Spark names the damaged file by its URL-encoded path: a folder name that needs encoding.
    damaged = damaged_dataset(tmp_path / "raw «old», 1")
    target = make_target()
    summary = run(spark, analysis_settings(target, damaged, SKIP_CORRUPT_FILES="true"))
    assert [Path(p).name for p in summary.skipped_files] == ["part-1.parquet"]
    assert (summary.input_files, summary.rows_read) == (1, 3)
    with contextlib.closing(admin_connection(target)) as conn:
        record = runs(conn, target.schema)[-1]
    assert (record["status"], record["skipped_files"]) == ("succeeded", summary.skipped_files)
    # The statistics are those of the intact file alone.
    assert_published_equals_independent(target, [
        {"DevEui": dev_eui, "sendtime": at, "institute": institute, "classroom": "3A",
         **{metric: None for metric in METRICS}, "co2": co2}
        for dev_eui, at, institute, co2 in (
            ("a1", dt.datetime(2025, 3, 3, 9, tzinfo=UTC), "Liceo", 800.0),
            ("a1", dt.datetime(2025, 3, 10, 9, tzinfo=UTC), "Liceo", 900.0),
            ("b2", dt.datetime(2025, 3, 3, 9, tzinfo=UTC), "Istituto", 500.0))])


# --- the downloader's disk ----------------------------------------------------------------------

@contextlib.contextmanager
def small_filesystem(folder: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of `size_bytes` mounted at `folder`: a disk that really fills up."""
    folder.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs",
                              str(folder)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root with CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def remount_read_only(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)


def export_input(folder: Path, rows: int) -> Path:
    folder.mkdir(parents=True)
    pq.write_table(pa.table({
        "DevEui": [f"{i % 13:016x}" for i in range(rows)],
        "sendtime": pa.array([dt.datetime(2025, 3, 3, tzinfo=UTC) + dt.timedelta(seconds=37 * i)
                              for i in range(rows)], pa.timestamp("us", tz="UTC")),
        "institute": ["Liceo Galilei"] * rows, "classroom": [f"Aula {i % 9}" for i in range(rows)],
        "profile": ["AM319"] * rows, "co2": [400.0 + (i % 1600) / 7 for i in range(rows)],
        "temperature": [18.0 + (i % 100) / 9 for i in range(rows)],
    }), folder / "part-0.parquet")
    return folder


def downloader_environment(raw: Path, tmp_path: Path) -> dict[str, str]:
    from batch.download.settings import DOWNLOADER_OPTIONS

    ours = {option.env for option in DOWNLOADER_OPTIONS} | {"BATCH_ENV_FILE"}
    environment = {key: value for key, value in os.environ.items() if key not in ours}
    (tmp_path / "empty.env").write_text("")
    environment.update(BATCH_ENV_FILE=str(tmp_path / "empty.env"), RAW_DATA_PATH=str(raw),
                       SPARK_MASTER="local[2]", SPARK_LOCAL_IP="127.0.0.1")
    return environment


PREVIOUS_EXPORT = "DevEui,sendtime\nprevious,export\n"


def test_the_downloader_on_a_full_disk_fails_clearly_and_keeps_the_previous_file(
        tmp_path: Path) -> None:
    raw = export_input(tmp_path / "raw", 20_000)  # about 1.5 MB of CSV
    with small_filesystem(tmp_path / "disk", 256 * 1024) as disk:
        target = disk / "export.csv"
        target.write_text(PREVIOUS_EXPORT)
        job = JobProcess([sys.executable, str(PROJECT_ROOT / "spark-downloader.py"),
                          "--output", str(target)], downloader_environment(raw, tmp_path), tmp_path / "job")
        with job:
            code = job.wait()
        assert code == 5, job.output()[-4000:]
        assert "No space left on device" in job.stderr()
        assert str(disk) in job.stderr()
        assert target.read_text() == PREVIOUS_EXPORT
        assert os.listdir(disk) == ["export.csv"]  # no part or temporary file left


def test_a_disk_that_fills_up_while_the_file_is_copied_back_keeps_the_previous_file(
        spark: SparkSession, tmp_path: Path) -> None:
    raw = export_input(tmp_path / "raw", 3000)
    export_df = spark.read.parquet(str(raw)).select("DevEui", "sendtime", "institute", "classroom", "co2")
    measured = tmp_path / "measure" / "export.csv"
    size = write_single_file(export_df, measured, "csv", False, "UTC").size_bytes
    # Room for the file Spark writes (and its checksum), not for a copy as well: enough, since
    # a file written beside the target is renamed over it, not copied.
    with small_filesystem(tmp_path / "roomy", size * 3 // 2 + 64 * 1024) as disk:
        target = disk / "export.csv"
        target.write_text(PREVIOUS_EXPORT)
        write_single_file(export_df, target, "csv", False, "UTC")
        assert target.read_bytes() == measured.read_bytes()
        assert os.listdir(disk) == ["export.csv"]
    # Staged elsewhere (as on HDFS), the file is copied beside the target: no room for it.
    staging = tmp_path / "staging"
    staging.mkdir()
    with small_filesystem(tmp_path / "disk", size // 2) as disk:
        target = disk / "export.csv"
        target.write_text(PREVIOUS_EXPORT)
        with pytest.raises(DownloadError, match="No space left on device") as raised:
            write_single_file(export_df, target, "csv", False, "UTC", staging_root=f"file://{staging}")
        assert "cannot copy the download" in str(raised.value)
        assert target.read_text() == PREVIOUS_EXPORT
        assert os.listdir(disk) == ["export.csv"]
        assert os.listdir(staging) == []


def test_an_unwritable_output_is_a_clear_error_and_keeps_the_previous_file(
        spark: SparkSession, tmp_path: Path) -> None:
    export_df = spark.createDataFrame([("a", dt.datetime(2025, 3, 3, tzinfo=UTC), 800.0)],
                                      "DevEui string, sendtime timestamp, co2 double")
    # Root writes through permission bits, so the folder is on a read-only file system.
    with small_filesystem(tmp_path / "disk", 1024 * 1024) as disk:
        target = disk / "export.csv"
        target.write_text(PREVIOUS_EXPORT)
        remount_read_only(disk)
        with pytest.raises(DownloadError, match="Read-only file system|Mkdirs failed") as raised:
            write_single_file(export_df, target, "csv", False, "UTC")
        assert str(disk) in str(raised.value)
        assert target.read_text() == PREVIOUS_EXPORT
        assert os.listdir(disk) == ["export.csv"]
    # A file where the output's folder should be.
    blocker = tmp_path / "reports"
    blocker.write_text("not a folder\n")
    with pytest.raises(DownloadError, match=f"cannot create the folder of {blocker}/export.csv"):
        write_single_file(export_df, blocker / "export.csv", "csv", False, "UTC")
    assert blocker.read_text() == "not a folder\n"


# --- the run's own files: summary and report ------------------------------------------------------

def fill(disk: Path) -> None:
    """Fill `disk` to the last byte with a file of its own, `filler`."""
    with open(disk / "filler", "wb", buffering=0) as filler:
        try:
            while filler.write(b"x" * 4096):
                pass
        except OSError as error:
            assert error.errno == errno.ENOSPC, error


def test_a_disk_full_by_the_end_of_a_published_run_costs_its_summary_and_report_not_the_run(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], datasets: Datasets,
        tmp_path: Path) -> None:
    target = make_target()
    with small_filesystem(tmp_path / "disk", 256 * 1024) as disk:
        summary, environment = disk / "summary.json", job_environment(target, datasets.second.folder, tmp_path)
        with JobProcess.analysis(environment, tmp_path / "job", "--summary-json", str(summary),
                                 "--report-dir", str(disk), hold_at="read") as job:
            # Checked when the run started, when there was room; full by the time it ends.
            wait_for(lambda: job.hold_reached("read"), "the run to be reading", job=job)
            fill(disk)
            job.release()
            code = job.wait()
        stderr = job.stderr()
        assert code == 0, job.output()[-4000:]
        assert f"WARNING batch: the run summary was not written to {summary}: No space left on device" in stderr
        assert "but its report was not written: cannot write the report" in stderr
        assert "Traceback" not in job.output()
        assert os.listdir(disk) == ["filler"]  # no temporary file of the summary or the report
    assert "status: succeeded" in job.stdout()
    with contextlib.closing(admin_connection(target)) as conn:
        assert runs(conn, target.schema)[-1]["status"] == "succeeded"
    assert_published_equals_independent(target, datasets.second.rows)


def test_a_run_that_fails_before_reading_claims_nothing_about_files(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], datasets: Datasets,
        tmp_path: Path) -> None:
    target = make_target()
    run(spark, analysis_settings(target, datasets.first.folder))
    with contextlib.closing(admin_connection(target)) as conn:
        previous = published(conn, target.schema)
    missing, summary = tmp_path / "nowhere", tmp_path / "summary.json"
    with JobProcess.analysis(job_environment(target, missing, tmp_path), tmp_path / "job",
                             "--summary-json", str(summary)) as job:
        code = job.wait()
    assert code == 3, job.output()[-4000:]
    message = f"input path {missing} does not exist"
    assert message in job.stderr().splitlines()[-1]
    printed = job.stdout()
    assert f"error_message: {message}" in printed
    # Not measured: left out of the printed summary, null in JSON and in batch_runs.
    for name in ("input_files", "skipped_files", "uncommitted_files", "files_lacking_required_columns"):
        assert name not in printed, printed
        assert json.loads(summary.read_text())[name] is None
    with contextlib.closing(admin_connection(target)) as conn:
        record = runs(conn, target.schema)[-1]
        assert record["status"] == "failed" and message in record["error_message"]
        assert [record[name] for name in ("input_files", "skipped_files", "uncommitted_files",
                                          "files_lacking_required_columns")] == [None] * 4
        assert published(conn, target.schema) == previous
