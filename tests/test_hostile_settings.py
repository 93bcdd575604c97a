"""Issue 20: hostile settings, for real. Each is refused before Spark starts with exit 2 and one
line (the launcher's --check-config), or warned about in one line; a run that would replace
published rows with an empty table stops with exit 3, recorded as failed, the tables untouched.

The launcher is the one the user types (start-spark.sh); the runs are `python start-spark.py`
processes against the tests' PostgreSQL (tests/support/jobs.py).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg2 import sql

from batch.analysis import publish
from batch.core.config import Secret
from batch.core.errors import PublishError
from batch.analysis.publish import PostgresTarget
from batch.analysis.timetable import load_closures
from devtools.local_postgres import LocalPostgres
from tests.rawdata import build_rows
from tests.support.jobs import (
    JobProcess,
    admin_connection,
    advisory_hold,
    job_environment,
    query,
    runs,
    staging_tables,
)
from tests.support.published import STAGED, write_rows

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = PROJECT_ROOT / "start-spark.sh"
IAQ_TABLES = ("classroom_daily_iaq", "classroom_weekly_iaq", "classroom_iaq")


# --- refused (or warned about) before anything starts: the launcher's --check-config ------------

@pytest.fixture
def check_environment(tmp_path: Path) -> dict[str, str]:
    """A launcher environment with a password and an empty env file; no PostgreSQL needed."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("POSTGRES_", "IAQ_", "BATCH_"))}
    (tmp_path / "empty.env").write_text("")
    environment.update(BATCH_ENV_FILE=str(tmp_path / "empty.env"), POSTGRES_PASSWORD="not-used",
                       LOG_DIR=str(tmp_path / "logs"), RUN_DIR=str(tmp_path / "run"), SPARK_MASTER="local[2]")
    return environment


def check_config(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LAUNCHER), "--local", "--check-config", *args], capture_output=True,
                          text=True, env=environment, timeout=300, stdin=subprocess.DEVNULL,
                          cwd=PROJECT_ROOT)


def assert_refused(checked: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 2, and the error is the launcher's last line, exactly; nothing started."""
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert checked.stderr.strip().splitlines()[-1] == f"start-spark.sh: {message}"
    assert "configuration OK" not in checked.stdout
    assert "Traceback" not in checked.stderr and "SparkSubmit" not in checked.stdout + checked.stderr


def test_an_empty_timetable_is_refused_and_none_is_how_to_say_never_occupied(
        check_environment: dict[str, str], tmp_path: Path) -> None:
    advice = ("the timetable is empty: give one, e.g. 'Mon-Fri 08:00-14:00', or write 'none' for "
              "rooms never occupied")
    assert_refused(check_config(check_environment, "--iaq-timetable", ""), f"--iaq-timetable: {advice}")
    env_file = tmp_path / "site.env"
    env_file.write_text("IAQ_TIMETABLE=\n")
    assert_refused(check_config({**check_environment, "BATCH_ENV_FILE": str(env_file)}),
                   f"IAQ_TIMETABLE in {env_file}: {advice}")
    timetables = tmp_path / "timetables.csv"
    timetables.write_text("institute,timetable\nLiceo Galilei,\n")
    assert_refused(check_config(check_environment, "--iaq-timetable-file", str(timetables)),
                   f"IAQ_TIMETABLE_FILE {timetables} line 2: timetable '': {advice}")
    accepted = check_config(check_environment, "--iaq-timetable", "none")
    assert accepted.returncode == 0 and "configuration OK" in accepted.stdout, accepted.stderr


@pytest.mark.parametrize("zone, message", [
    ("posix/Europe/Rome", "'posix/Europe/Rome' is a copy in the system's zone files that Java (Spark) "
                          "does not know: use Europe/Rome"),
    ("right/UTC", "'right/UTC' is a copy in the system's zone files that Java (Spark) does not know: use UTC"),
    ("ROC", "'ROC' is not a time zone Java (Spark) knows: an alias the JDK leaves out: use Asia/Taipei"),
    ("Factory", "'Factory' is not a time zone Java (Spark) knows: a placeholder zone: name the real one, "
                "e.g. Europe/Rome"),
    ("localtime", "'localtime' is not a time zone Java (Spark) knows: the host's own zone: name it, "
                  "e.g. Europe/Rome"),
])
def test_time_zones_java_does_not_know_are_refused_before_spark_starts(
        check_environment: dict[str, str], zone: str, message: str) -> None:
    assert_refused(check_config(check_environment, "--batch-timezone", zone), f"--batch-timezone: {message}")


def test_an_empty_password_file_is_refused_at_the_check(check_environment: dict[str, str], tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("")
    environment = {**check_environment, "POSTGRES_PASSWORD": "", "POSTGRES_PASSWORD_FILE": str(password_file)}
    assert_refused(check_config(environment),
                   f"POSTGRES_PASSWORD_FILE {password_file} is empty: write the password in it")


@pytest.mark.parametrize("args, variables, message", [
    (("--postgres-port", "abc"), {}, "--postgres-port: expected a TCP port (1 to 65535), got 'abc'"),
    (("--iaq-en16798-co2-excess-ppm", "550,lots,1350"), {},
     "--iaq-en16798-co2-excess-ppm: expected a number, got 'lots'"),
    ((), {"IAQ_TEMPERATURE_HEATING_C": "20-warm"},
     "environment variable IAQ_TEMPERATURE_HEATING_C: expected a number, got 'warm'"),
    (("--iaq-outdoor-co2-ppm", "5000"), {},
     "--iaq-outdoor-co2-ppm: expected a number from 300 to 600, got '5000'"),
], ids=["port", "excess", "band", "outdoor_co2"])
def test_bad_numbers_are_refused_in_the_project_s_words(
        check_environment: dict[str, str], args: tuple[str, ...], variables: dict[str, str], message: str) -> None:
    assert_refused(check_config({**check_environment, **variables}, *args), message)


def test_an_env_file_or_closures_file_that_is_a_directory_is_called_a_directory(
        check_environment: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    assert_refused(check_config(check_environment, "--env-file", str(folder)),
                   f"--env-file: env file {folder} is a directory, not a file")
    assert_refused(check_config({**check_environment, "BATCH_ENV_FILE": str(folder)}),
                   f"BATCH_ENV_FILE: env file {folder} is a directory, not a file")
    assert_refused(check_config(check_environment, "--iaq-closures-file", str(folder)),
                   f"--iaq-closures-file: {folder} is a directory, not a file")


def test_a_misspelt_variable_in_the_env_file_is_named_with_the_closest_option(
        check_environment: dict[str, str], tmp_path: Path) -> None:
    env_file = tmp_path / "site.env"
    env_file.write_text("IAQ_CLOSURE_FILE=closures.csv\nLOG_DIR=logs\nDOWNLOAD_FORMAT=csv\n")
    checked = check_config({**check_environment, "BATCH_ENV_FILE": str(env_file)})
    assert checked.returncode == 0 and "configuration OK" in checked.stdout, checked.stderr
    warned = [line for line in checked.stderr.splitlines() if "is not a setting" in line]
    # LOG_DIR (the launcher's) and DOWNLOAD_FORMAT (the other job's) are settings too.
    assert warned == [f"IAQ_CLOSURE_FILE in {env_file} is not a setting of these jobs or their "
                      "launchers and is ignored; did you mean IAQ_CLOSURES_FILE?"]


def test_the_check_says_in_one_line_that_a_mixed_case_schema_is_folded(check_environment: dict[str, str]) -> None:
    checked = check_config(check_environment, "--postgres-schema", "Probe_TT")
    assert checked.returncode == 0 and "configuration OK" in checked.stdout, checked.stderr
    assert [line for line in checked.stderr.splitlines() if "Probe_TT" in line] == [
        "POSTGRES_SCHEMA Probe_TT folded to lower case: publishing to schema probe_tt, as PostgreSQL "
        "reads the unquoted name Probe_TT"]


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    closures = tmp_path / "closures.csv"
    closures.write_bytes("institute,first_date,last_date,reason\r\n*,2025-02-14,2025-02-14,elections\r\n"
                         .encode("utf-8-sig"))  # as Excel saves "CSV UTF-8"
    loaded, _ = load_closures(str(closures))
    assert [(c.institute, c.first_date.isoformat(), c.last_date.isoformat()) for c in loaded] == [
        ("*", "2025-02-14", "2025-02-14")]


def test_the_publish_lock_wait_is_logged_once_not_every_poll(
        make_target: Any, caplog: pytest.LogCaptureFixture) -> None:
    target = make_target(lock_timeout_s=5.0)
    with contextlib.closing(admin_connection(target)) as admin:
        [(key,)] = query(admin, "SELECT hashtext(%s)", (f"indoor-air-batch:{target.schema}",))
    conn = publish.connect(target)
    try:
        with advisory_hold(target, key), caplog.at_level(logging.INFO, logger="batch.analysis.publish"):
            with pytest.raises(PublishError, match="gave up after waiting 5s"):
                with publish.publish_lock(conn, target):
                    pass
    finally:
        conn.close()
    # Polled every 2 s over 5 s: three polls that found the lock taken, one line.
    assert [record.getMessage() for record in caplog.records] == [
        f"another run holds the publish lock of schema {target.schema}; waiting up to 5s"]


# --- real runs against PostgreSQL ------------------------------------------------------------------

@dataclass(frozen=True)
class FirstRun:
    target: PostgresTarget  # the schema as PostgreSQL stores it (folded)
    given_schema: str  # as the user typed it
    environment: dict[str, str]
    job: JobProcess
    summary_json: Path
    closures: Path
    timetables: Path
    work_dir: Path


@pytest.fixture(scope="module")
def first_run(postgres_server: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    """One successful run, as an operator would type it: a mixed-case schema, Excel's CSV files
    (byte-order mark) naming two institutes the input does not hold."""
    work_dir = tmp_path_factory.mktemp("first-run")
    given = f"Probe_{uuid.uuid4().hex[:8]}"
    target = PostgresTarget(host=postgres_server.host, port=postgres_server.port,
                            database=postgres_server.database, user=postgres_server.user,
                            password=Secret(postgres_server.password()), schema=given.lower())
    raw = write_rows(work_dir / "raw", build_rows(5, readings_per_window=12))
    closures = work_dir / "closures.csv"
    closures.write_bytes("institute,first_date,last_date,reason\r\n*,2020-12-31,2020-12-31,eve\r\n"
                         "Liceo Galileo,2025-01-29,2025-01-30,typo\r\n".encode("utf-8-sig"))
    timetables = work_dir / "timetables.csv"
    timetables.write_bytes("institute,timetable\r\nScuola Inesistente,Mon-Fri 08:00-12:00\r\n"
                           .encode("utf-8-sig"))
    summary_json = work_dir / "out" / "summary.json"
    environment = job_environment(target, raw, work_dir, POSTGRES_SCHEMA=given,
                                  IAQ_CLOSURES_FILE=str(closures), IAQ_TIMETABLE_FILE=str(timetables),
                                  SUMMARY_JSON=str(summary_json))
    with JobProcess.analysis(environment, work_dir / "job") as job:
        assert job.wait() == 0, job.output()[-4000:]
    yield FirstRun(target, given, environment, job, summary_json, closures, timetables, work_dir)
    with contextlib.closing(admin_connection(target)) as conn:
        query(conn, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(target.schema)))


def test_a_mixed_case_schema_is_published_folded_with_one_line_saying_so(first_run: FirstRun) -> None:
    folded = first_run.given_schema.lower()
    said = [line for line in first_run.job.stderr().splitlines() if "folded to lower case" in line]
    assert len(said) == 1 and said[0].endswith(
        f"WARNING batch.core.config: POSTGRES_SCHEMA {first_run.given_schema} folded to lower case: publishing "
        f"to schema {folded}, as PostgreSQL reads the unquoted name {first_run.given_schema}")
    with contextlib.closing(admin_connection(first_run.target)) as conn:
        assert query(conn, "SELECT nspname FROM pg_namespace WHERE lower(nspname) = %s", (folded,)) == [(folded,)]
        # What a dashboard writes, unquoted, finds the published rows.
        [(rows,)] = query(conn, f"SELECT count(*) FROM {first_run.given_schema}.classroom_stats")  # noqa: S608
    assert rows > 0


def test_institutes_of_the_files_that_match_no_institute_are_warned_about(first_run: FirstRun) -> None:
    expected = [
        f"IAQ_TIMETABLE_FILE {first_run.timetables} line 2: institute 'Scuola Inesistente' matches no "
        "institute of the input; the line has no effect",
        f"IAQ_CLOSURES_FILE {first_run.closures} line 3: institute 'Liceo Galileo' matches no institute "
        "of the input (did you mean 'Liceo Galilei'?); the line has no effect",
    ]
    summary = json.loads(first_run.summary_json.read_text())
    # The tests' jobs run in UTC, which is warned about too (tests/test_config.py).
    institute_warnings = [warning for warning in summary["warnings"] if "BATCH_TIMEZONE" not in warning]
    assert (summary["status"], institute_warnings) == ("succeeded", expected)
    logged = [line for line in first_run.job.stderr().splitlines() if "matches no institute" in line]
    assert [line.split(": ", 1)[1] for line in logged] == expected


def test_the_summary_json_is_created_like_a_normal_file(first_run: FirstRun) -> None:
    umask = os.umask(0)
    os.umask(umask)  # the job inherited this process's umask
    assert first_run.summary_json.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [path.name for path in first_run.summary_json.parent.iterdir()] == ["summary.json"]


def published_checksums(target: PostgresTarget) -> dict[str, tuple[int, str]]:
    """Each table a run publishes: its row count and an md5 of its rows in a fixed order."""
    with contextlib.closing(admin_connection(target)) as conn:
        return {table: query(conn, sql.SQL(
            "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') "
            "FROM {}.{} AS t").format(sql.Identifier(target.schema), sql.Identifier(table)))[0]
            for table in STAGED}


def test_a_run_that_would_empty_published_tables_stops_and_keeps_them(first_run: FirstRun) -> None:
    before = published_checksums(first_run.target)
    assert all(before[table][0] > 0 for table in IAQ_TABLES), before
    with JobProcess.analysis({**first_run.environment, "IAQ_TIMETABLE": "none", "IAQ_TIMETABLE_FILE": ""},
                             first_run.work_dir / "emptying") as job:
        code = job.wait()
    message = (
        "this run would replace published tables holding rows with empty ones: "
        + ", ".join(f"{table} ({before[table][0]} rows)" for table in IAQ_TABLES)
        + "; nothing was published, previous results kept (check IAQ_TIMETABLE, IAQ_TIMETABLE_FILE, "
        "IAQ_CLOSURES_FILE; --allow-empty-tables publishes them empty)")
    assert code == 3, job.output()[-4000:]
    assert job.stderr().strip().splitlines()[-1].endswith(f"ERROR batch: {message}")
    assert published_checksums(first_run.target) == before
    with contextlib.closing(admin_connection(first_run.target)) as conn:
        last = runs(conn, first_run.target.schema)[-1]
        assert staging_tables(conn, first_run.target.schema) == []
    assert (last["status"], last["error_message"], last["rows_written"]) == ("failed", message, None)
    assert last["settings"]["iaq_timetable"] == "none"


def test_allow_empty_tables_publishes_them_empty_with_a_warning(first_run: FirstRun) -> None:
    # Last of the module: it empties the compliance tables the tests above read.
    before = published_checksums(first_run.target)
    summary_json = first_run.work_dir / "allowed.json"
    with JobProcess.analysis({**first_run.environment, "IAQ_TIMETABLE": "none", "IAQ_TIMETABLE_FILE": "",
                              "SUMMARY_JSON": str(summary_json)},
                             first_run.work_dir / "allowed", "--allow-empty-tables") as job:
        assert job.wait() == 0, job.output()[-4000:]
    after = published_checksums(first_run.target)
    assert {table: after[table][0] for table in IAQ_TABLES} == dict.fromkeys(IAQ_TABLES, 0)
    assert {table: after[table] for table in STAGED if table not in IAQ_TABLES} == {
        table: before[table] for table in STAGED if table not in IAQ_TABLES}
    warnings = json.loads(summary_json.read_text())["warnings"]
    assert [w for w in warnings if "published with no row" in w] == [
        f"{first_run.target.schema}.{table} is published with no row, replacing its {before[table][0]} rows "
        "(ALLOW_EMPTY_TABLES)" for table in IAQ_TABLES]
