"""Hostile input, SQL identifiers, secrets and least privilege, against the real PostgreSQL.

- Institute and classroom names made to break SQL, CSV, shells and encodings are published
  and exported verbatim (compared with the independent computation of tests/independent.py
  and with the rows written); names PostgreSQL cannot store fail the run clearly.
- The schema name is validated before anything runs; no SQL is built by pasting values.
- A distinctive password appears in no log, error, summary, batch_runs column or command
  line of the launcher's processes while a job runs.
- The job works as a role that owns only its schema; a read-only role reads every table and
  view and can write nothing. The SQL of both roles is `ROLE_SQL`, as given in docs/reliability.md.
Related tests elsewhere: tests/test_config.py (POSTGRES_SCHEMA refused by the config),
tests/test_launcher.py (no secret on the command lines of a background run),
tests/test_download_files.py (the CSV dialect with quotes, commas, CR/LF and Unicode).
"""
from __future__ import annotations

import ast
import contextlib
import csv
import dataclasses
import datetime as dt
import json
import logging
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
from psycopg2 import sql
from pyspark.sql import SparkSession

from batch.analysis.job import RunSummary, run_analysis
from batch.core.config import Secret
from batch.core.errors import ConfigurationError, InputNotFoundError, PublishError
from devtools.local_postgres import LocalPostgres, free_port
from batch.analysis.publish import PostgresTarget
from tests import independent
from tests.rawdata import METRICS
from tests.support.jobs import (
    JOB_APPLICATION,
    JobProcess,
    admin_connection,
    advisory_hold,
    alive_tree,
    command_lines,
    install_commit_hold,
    job_backends,
    job_environment,
    kill_tree,
    process_tree,
    query,
    remove_commit_hold,
    runs,
    wait_for,
)
from tests.support.published import (
    CATALOG,
    STAGED,
    TABLES,
    VIEWS,
    assert_published_equals_independent,
    write_rows,
)
from tests.test_analysis import analysis_settings, run

PROJECT_ROOT = Path(__file__).resolve().parents[1]
UTC = dt.timezone.utc

# --- hostile names --------------------------------------------------------------------------------

LONG_NAME = ("Aula \"magna\"; DROP TABLE x; -- \\ é 😀 \n" * 40)[:1000]
HOSTILE_INSTITUTES = (
    "Liceo \"Galilei\"; DROP TABLE batch_runs; --",
    "Istituto Sant'Anna' OR '1'='1",
    "C:\\scuole\\nuove\\ \\N \\\\",
    "École ñ 日本 😀🏫 👩‍🔬",
    "line 1\nline 2\r\nline 3\ttab",
    "$(touch PWNED) `touch PWNED` ${HOME} %s %(x)s {0} {} ?",
    LONG_NAME,
)
HOSTILE_CLASSROOMS = ("3A'; DELETE FROM classroom_stats; --", "", "  spaces around  ", "\\", '"', "😀" * 10,
                      LONG_NAME)
assert len(LONG_NAME) == 1000


def hostile_rows(count: int = 60) -> list[dict[str, Any]]:
    """Readings spread over every hostile institute and classroom, two devices each, over three weeks."""
    rows = []
    for index in range(count):
        institute = HOSTILE_INSTITUTES[index % len(HOSTILE_INSTITUTES)]
        classroom = HOSTILE_CLASSROOMS[(index // 2) % len(HOSTILE_CLASSROOMS)]
        row: dict[str, Any] = {
            "DevEui": f"{index % 4:016x}",
            "sendtime": dt.datetime(2025, 3, 3, 8, tzinfo=UTC) + dt.timedelta(hours=7 * index),
            "institute": institute, "classroom": classroom,
        }
        for position, metric in enumerate(METRICS):
            row[metric] = (index * (position + 3)) % 37 + 20 if metric == "light_level" else \
                float((index * (position + 3)) % 37) + 20.5
        rows.append(row)
    return rows


def test_hostile_names_are_published_verbatim_under_a_schema_name_that_needs_quoting(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path) -> None:
    # Mixed case: every statement must quote the schema the same way (DDL, COPY, view, comments).
    target = make_target(schema=f"Indoor_Air_{secrets.token_hex(4)}")
    rows = hostile_rows()
    # POSTGRES_SCHEMA folds a mixed-case name (tests/test_hostile_settings.py); the library
    # quotes whatever name it is given, which is what this test is about.
    settings = dataclasses.replace(analysis_settings(target, write_rows(tmp_path / "raw", rows)),
                                   postgres_schema=target.schema)
    summary = run(spark, settings)
    assert summary.status == "succeeded"
    assert_published_equals_independent(target, rows)
    with contextlib.closing(admin_connection(target)) as conn:
        stored = set(query(conn, sql.SQL("SELECT institute, classroom FROM {}.classroom_stats").format(
            sql.Identifier(target.schema))))
        view = set(query(conn, sql.SQL("SELECT institute, classroom FROM {}.latest_complete_week_by_classroom")
                         .format(sql.Identifier(target.schema))))
        assert query(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (target.schema,)) == [(1,)]
    assert stored == {(row["institute"], row["classroom"]) for row in rows}
    assert view <= stored and view
    assert not (PROJECT_ROOT / "PWNED").exists()


@pytest.mark.parametrize("case, name, message", [
    ("NUL character", "Aula\x00magna", "invalid byte sequence for encoding \"UTF8\": 0x00"),
    # 1,000 scattered CJK characters: 3,000 bytes that do not compress, in institute and classroom.
    ("beyond the primary key's index", "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(1000)),
     "index row size"),
], ids=["nul", "index_limit"])
def test_names_postgresql_cannot_store_fail_the_run_clearly_and_keep_the_previous_results(
        spark: SparkSession, make_target: Callable[..., PostgresTarget], tmp_path: Path,
        case: str, name: str, message: str) -> None:
    target = make_target()
    good = hostile_rows(12)
    run(spark, analysis_settings(target, write_rows(tmp_path / "good", good)))
    with contextlib.closing(admin_connection(target)) as conn:
        previous = {table: independent.published_table(conn, target.schema, table) for table in TABLES}
    bad = [dict(row, classroom=name, institute=name) for row in good]
    with pytest.raises(PublishError) as raised:
        run(spark, analysis_settings(target, write_rows(tmp_path / "bad", bad)))
    assert message in str(raised.value), case
    assert target.address in str(raised.value) and "previous results kept" in str(raised.value)
    assert target.password.reveal() not in str(raised.value)
    with contextlib.closing(admin_connection(target)) as conn:
        assert {table: independent.published_table(conn, target.schema, table) for table in TABLES} == previous
        assert (runs(conn, target.schema)[-1]["status"], runs(conn, target.schema)[-1]["error_message"]) == (
            "failed", str(raised.value))


def test_the_downloader_exports_hostile_names_verbatim_through_its_launcher(tmp_path: Path) -> None:
    rows = hostile_rows()
    raw = write_rows(tmp_path / "raw", rows)
    target = tmp_path / "export.csv"
    (tmp_path / "empty.env").write_text("")
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("RAW_DATA_PATH", "BATCH_ENV_FILE", "DOWNLOAD_OUTPUT")}
    environment.update(BATCH_ENV_FILE=str(tmp_path / "empty.env"), SPARK_MASTER="local[2]",
                       SPARK_LOCAL_IP="127.0.0.1", LOG_DIR=str(tmp_path / "logs"),
                       RUN_DIR=str(tmp_path / "run"))
    wanted = (LONG_NAME, HOSTILE_INSTITUTES[5])  # selected through the shell launcher's arguments
    result = subprocess.run(
        [str(PROJECT_ROOT / "spark-downloader.sh"), "--foreground", "--raw-data-path", str(raw),
         "--output", str(target), *[argument for name in wanted for argument in ("--institute", name)]],
        env=environment, capture_output=True, text=True, timeout=600, cwd=tmp_path,
        stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(target, encoding="utf-8", newline="") as handle:
        header, *lines = list(csv.reader(handle))
    exported = [dict(zip(header, line)) for line in lines]
    expected = sorted((row for row in rows if row["institute"] in wanted),
                      key=lambda row: (row["sendtime"], row["DevEui"]))
    assert len(exported) == len(expected) > 0
    for line, row in zip(exported, expected):
        # Byte for byte, newlines, quotes and backslashes included.
        assert (line["institute"], line["classroom"], line["DevEui"]) == (
            row["institute"], row["classroom"], row["DevEui"])
        assert (float(line["co2"]), float(line["light_level"])) == (row["co2"], row["light_level"])
        assert dt.datetime.fromisoformat(line["sendtime"].replace("Z", "+00:00")) == row["sendtime"]
    assert not (tmp_path / "PWNED").exists() and not (PROJECT_ROOT / "PWNED").exists()


# --- identifiers and SQL --------------------------------------------------------------------------

def test_an_injected_schema_name_is_refused_before_anything_runs(
        make_target: Callable[..., PostgresTarget], postgres_server: LocalPostgres, tmp_path: Path) -> None:
    canary = make_target()
    with contextlib.closing(admin_connection(canary)) as conn:
        query(conn, sql.SQL("CREATE SCHEMA {schema}; CREATE TABLE {schema}.y (id int)").format(
            schema=sql.Identifier(canary.schema)))
        schemas_before = query(conn, "SELECT nspname FROM pg_namespace ORDER BY 1")
    hostile = f"{canary.schema}; DROP TABLE {canary.schema}.y; --"

    with pytest.raises(ConfigurationError, match="not a plain SQL identifier"):
        dataclasses.replace(canary, schema=hostile)  # the library refuses it too

    environment = job_environment(canary, tmp_path / "raw", tmp_path)
    for how, arguments, variables in (
            ("variable", (), {"POSTGRES_SCHEMA": hostile}),
            ("flag", ("--postgres-schema", hostile), {})):
        launched = subprocess.run(
            [str(PROJECT_ROOT / "start-spark.sh"), "--foreground", *arguments],
            env={**environment, **variables}, capture_output=True, text=True, timeout=300,
            stdin=subprocess.DEVNULL)
        assert launched.returncode == 2, (how, launched.stdout[-2000:], launched.stderr[-2000:])
        assert f"{hostile!r} is not a plain SQL identifier" in launched.stderr, how
        assert "SparkSubmit" not in launched.stdout + launched.stderr, how  # Spark never started
    assert not (tmp_path / "logs").exists() and not (tmp_path / "run").exists()
    with contextlib.closing(admin_connection(canary)) as conn:
        assert query(conn, "SELECT nspname FROM pg_namespace ORDER BY 1") == schemas_before
        assert query(conn, sql.SQL("SELECT count(*) FROM {}.y").format(sql.Identifier(canary.schema))) == [(0,)]
        assert job_backends(conn) == {}


SQL_CALLS = {"execute", "executemany", "mogrify", "copy_expert", "SQL"}


def _built_from_values(node: ast.expr) -> bool:
    """An f-string, `%` or `+` on strings, or "...".format(...): text built from values."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return not (isinstance(node.left, ast.Constant) and isinstance(node.right, ast.Constant))
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format" and isinstance(node.func.value, ast.Constant))


def test_no_sql_text_is_built_from_values_in_the_package() -> None:
    """Values go as parameters or sql.Literal, names as sql.Identifier: never pasted into SQL text."""
    offending = []
    checked = 0
    for path in sorted((PROJECT_ROOT / "batch").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in SQL_CALLS:
                checked += 1
                argument = node.args[0]
                if _built_from_values(argument):
                    offending.append(f"{path.name}:{node.lineno}: {ast.unparse(argument)[:100]}")
    assert checked > 30  # the check does look at the package's SQL
    assert offending == []


# --- least privilege ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Roles:
    database: str
    schema: str
    batch: str
    batch_password: str
    batch_password_token: str
    reader: str
    reader_password: str


# The SQL of docs/reliability.md (least privilege), with the names and passwords as parameters.
ROLE_SQL = (
    # The job: owns the schema it publishes to, and nothing else (no CREATE on the database).
    "CREATE ROLE {batch} LOGIN PASSWORD {batch_password}",
    "GRANT CONNECT ON DATABASE {database} TO {batch}",
    "CREATE SCHEMA {schema} AUTHORIZATION {batch}",
    # Dashboards and chatbots: read every table and view of the schema, now and later.
    "CREATE ROLE {reader} LOGIN PASSWORD {reader_password}",
    "GRANT CONNECT ON DATABASE {database} TO {reader}",
    "GRANT USAGE ON SCHEMA {schema} TO {reader}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reader}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {batch} IN SCHEMA {schema} GRANT SELECT ON TABLES TO {reader}",
    "ALTER ROLE {reader} SET default_transaction_read_only = on",
    "ALTER ROLE {reader} SET statement_timeout = '30s'",
)


@pytest.fixture
def roles(postgres_server: LocalPostgres, make_target: Callable[..., PostgresTarget]) -> Iterator[Roles]:
    suffix, token = secrets.token_hex(4), secrets.token_hex(12)
    # Distinctive, and with the characters that break naive quoting.
    created = Roles(database=postgres_server.database, schema=f"indoor_air_{suffix}",
                    batch=f"indoor_air_batch_{suffix}", batch_password=f"Pw-{token}-'\";\\ é",
                    batch_password_token=token,
                    reader=f"indoor_air_reader_{suffix}", reader_password=f"Rd-{secrets.token_hex(12)}")
    admin = admin_connection(make_target())
    names = {"batch": created.batch, "reader": created.reader, "schema": created.schema,
             "database": created.database}
    parts = {key: sql.Identifier(value) for key, value in names.items()}
    parts.update(batch_password=sql.Literal(created.batch_password),
                 reader_password=sql.Literal(created.reader_password))
    try:
        for statement in ROLE_SQL:
            query(admin, sql.SQL(statement).format(**parts))
        yield created
    finally:
        query(admin, sql.SQL("DROP SCHEMA IF EXISTS {schema} CASCADE").format(**parts))
        for role in ("batch", "reader"):
            query(admin, sql.SQL("DROP OWNED BY {role}").format(role=parts[role]))
            query(admin, sql.SQL("DROP ROLE {role}").format(role=parts[role]))
        admin.close()


def role_target(server: LocalPostgres, roles: Roles, password: str | None = None) -> PostgresTarget:
    return PostgresTarget(host=server.host, port=server.port, database=server.database,
                          user=roles.batch, password=Secret(password or roles.batch_password),
                          schema=roles.schema, connect_attempts=2, lock_timeout_s=5)


def connect_as(server: LocalPostgres, user: str, password: str) -> Any:
    conn = psycopg2.connect(host=server.host, port=server.port, dbname=server.database, user=user,
                            password=password)
    conn.autocommit = True
    return conn


def refused(conn: Any, statement: Any) -> type[Exception] | None:
    """The error class PostgreSQL answers `statement` with (None if it ran)."""
    try:
        query(conn, statement)
    except psycopg2.Error as error:
        return type(error)
    return None


def test_the_job_needs_only_its_schema_and_the_reader_role_reads_everything_and_writes_nothing(
        spark: SparkSession, postgres_server: LocalPostgres, roles: Roles, tmp_path: Path) -> None:
    target = role_target(postgres_server, roles)
    schema = sql.Identifier(roles.schema)
    with contextlib.closing(connect_as(postgres_server, roles.batch, roles.batch_password)) as batch:
        assert refused(batch, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(roles.schema + "_x"))) \
            is psycopg2.errors.InsufficientPrivilege
        assert refused(batch, "CREATE TABLE public.indoor_air_x (id int)") is psycopg2.errors.InsufficientPrivilege

    rows = hostile_rows(30)
    summary = run(spark, analysis_settings(target, write_rows(tmp_path / "raw", rows)))
    assert summary.status == "succeeded"
    assert_published_equals_independent(dataclasses.replace(
        target, user=postgres_server.user, password=Secret(postgres_server.password())), rows)

    with contextlib.closing(connect_as(postgres_server, roles.reader, roles.reader_password)) as reader:
        relations = query(reader, "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
                                  "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'v') "
                                  "ORDER BY 1", (roles.schema,))
        assert sorted(name for name, _ in relations) == sorted(
            [*STAGED, "batch_runs", *VIEWS, *(table.name for table in CATALOG.state_tables)])
        for name, _ in relations:  # every table and view, created after the grants, is readable
            assert query(reader, sql.SQL("SELECT count(*) FROM {}.{}").format(schema, sql.Identifier(name)))
        table = sql.SQL("{}.classroom_stats").format(schema)
        # Sessions are read-only by default ...
        assert refused(reader, sql.SQL("DELETE FROM {}").format(table)) is psycopg2.errors.ReadOnlySqlTransaction
        # ... and, with that switched off, the privileges refuse every write.
        query(reader, "SET default_transaction_read_only = off")
        for name, kind in relations:
            relation = sql.SQL("{}.{}").format(schema, sql.Identifier(name))
            if kind == "r":
                # Any column will do: the first the catalog declares (status for batch_runs).
                column = "status" if name == "batch_runs" else CATALOG.table(name).columns[0].name
                writes = [sql.SQL("INSERT INTO {} DEFAULT VALUES"), sql.SQL("DELETE FROM {}"),
                          sql.SQL("UPDATE {0} SET {1} = {1}"),
                          sql.SQL("TRUNCATE {}"), sql.SQL("ALTER TABLE {} ADD COLUMN x int"),
                          sql.SQL("COMMENT ON TABLE {} IS 'x'"), sql.SQL("DROP TABLE {}")]
            else:  # the view cannot take rows at all (DISTINCT ON); its definition is the owner's
                writes = [sql.SQL("CREATE OR REPLACE VIEW {} AS SELECT 1"),
                          sql.SQL("COMMENT ON VIEW {} IS 'x'"), sql.SQL("DROP VIEW {}")]
            for write in writes:
                statement = write.format(relation, sql.Identifier(column))
                assert refused(reader, statement) is psycopg2.errors.InsufficientPrivilege, \
                    statement.as_string(reader)
        for statement in (sql.SQL("CREATE TABLE {}.x (id int)").format(schema),
                          sql.SQL("CREATE VIEW {}.x AS SELECT 1").format(schema),
                          sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(roles.schema + "_r"))):
            assert refused(reader, statement) is psycopg2.errors.InsufficientPrivilege, statement.as_string(reader)
    with contextlib.closing(connect_as(postgres_server, roles.batch, roles.batch_password)) as batch:
        assert len(runs(batch, roles.schema)) == 1  # nothing the reader tried changed anything
        assert query(batch, sql.SQL("SELECT count(*) FROM {}.classroom_stats").format(schema))[0][0] == len(
            {(row["institute"], row["classroom"]) for row in rows})


# --- secrets --------------------------------------------------------------------------------------

def assert_absent(secret_values: tuple[str, ...], sources: dict[str, str]) -> None:
    leaks = [name for name, text in sources.items() for value in secret_values if value in text]
    assert leaks == [], f"a password appears in: {leaks}"


def all_command_lines() -> dict[int, str]:
    return command_lines([int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()])


def test_the_password_appears_in_no_log_error_summary_run_record_or_command_line(
        spark: SparkSession, postgres_server: LocalPostgres, roles: Roles, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    password = roles.batch_password
    target = role_target(postgres_server, roles)
    superuser = dataclasses.replace(target, user=postgres_server.user, password=Secret(postgres_server.password()))
    rows = hostile_rows(20)
    # A folder name made to break shell quoting; the launcher passes it on untouched.
    raw = write_rows(tmp_path / "raw 'q' \"dq\"; $(touch PWNED) `touch PWNED` é😀", rows)
    run(spark, analysis_settings(target, raw))
    sources: dict[str, str] = {}
    failures: list[str] = []

    # 1. A background run of the launcher, the password by variable, held just before commit.
    environment = job_environment(target, raw, tmp_path / "launcher")
    summary_path = tmp_path / "summary.json"
    key = secrets.randbits(62)
    admin = admin_connection(superuser)
    install_commit_hold(admin, roles.schema, key)
    pid = None
    try:
        with advisory_hold(superuser, key) as hold:
            started = subprocess.run(
                [str(PROJECT_ROOT / "start-spark.sh"), "--background", "--raw-data-path", str(raw),
                 "--summary-json", str(summary_path)],
                env=environment, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
            assert started.returncode == 0, started.stderr
            sources.update(launcher_stdout=started.stdout, launcher_stderr=started.stderr)
            pid = int((tmp_path / "launcher" / "run" / "analysis.pid").read_text())
            wait_for(lambda: any(app == JOB_APPLICATION and event == "advisory" and text.startswith("UPDATE")
                                 for app, _, event, text in job_backends(admin).values()),
                     "the background run to be publishing")
            tree = command_lines(process_tree(pid))
            assert any("SparkSubmit" in line for line in tree.values()), tree
            assert any("start-spark.py" in line and "java" not in line for line in tree.values()), tree
            sources.update({f"command line of {p} ({line[:60]})": line for p, line in tree.items()})
            sources.update({f"command line of process {p}": line for p, line in all_command_lines().items()})

            # 2. Meanwhile, another run gives up waiting for the lock.
            with pytest.raises(PublishError) as timed_out:
                run(spark, analysis_settings(target, raw, PUBLISH_LOCK_TIMEOUT_S="1"))
            failures.append(str(timed_out.value))
            query(hold, "SELECT pg_advisory_unlock(%s)", (key,))
            wait_for(lambda: not alive_tree(pid), "the background run to end")
    finally:
        if pid is not None and alive_tree(pid):
            kill_tree(pid)
        remove_commit_hold(admin, roles.schema)
        admin.close()
    (log_file,) = (tmp_path / "launcher" / "logs").glob("analysis-*.log")
    sources.update(log=log_file.read_text(), summary_json=summary_path.read_text())
    assert "status: succeeded" in sources["log"], sources["log"][-3000:]
    assert json.loads(sources["summary_json"])["status"] == "succeeded"
    assert not (PROJECT_ROOT / "PWNED").exists() and not (tmp_path / "PWNED").exists()

    # 3. Failures: a wrong password (through the job's command line), an unreachable server,
    #    an input that is not there.
    wrong = f"Wrong-{secrets.token_hex(12)}"
    wrong_summary = tmp_path / "wrong.json"
    with JobProcess.analysis(job_environment(target, raw, tmp_path / "wrong", POSTGRES_PASSWORD=wrong,
                                             SUMMARY_JSON=str(wrong_summary)), tmp_path / "wrong") as job:
        assert job.wait() == 4, job.output()[-3000:]
    assert f'password authentication failed for user "{roles.batch}"' in job.stderr()
    assert "attempt 1/" not in job.stderr()  # a wrong password is not retried
    sources.update(wrong_password_output=job.output(), wrong_password_summary=wrong_summary.read_text())
    caplog.set_level(logging.INFO)
    for failing_target, path, error_class in (
            (dataclasses.replace(target, port=free_port()), raw, PublishError),
            (target, tmp_path / "nowhere", InputNotFoundError)):
        summary = RunSummary(job="analysis", input_path=str(path))
        with pytest.raises(error_class) as raised:
            run_analysis(spark, analysis_settings(failing_target, path), summary)
        failures.append(str(raised.value))
        sources[f"summary of {error_class.__name__}"] = json.dumps(dataclasses.asdict(summary), default=str)
    sources.update(errors="\n".join(failures), logs=caplog.text)

    with contextlib.closing(admin_connection(superuser)) as conn:
        records = [json.loads(text) for (text,) in query(conn, sql.SQL(
            "SELECT row_to_json(r)::text FROM {}.batch_runs r ORDER BY run_id").format(sql.Identifier(roles.schema)))]
    assert [(r["status"], r["input_path"]) for r in records] == [
        ("succeeded", str(raw)), ("succeeded", str(raw)), ("failed", str(tmp_path / "nowhere"))]
    sources["batch_runs"] = "\n".join(strings(records))
    sources["summary_json"] = "\n".join(strings(json.loads(sources["summary_json"])))
    # The token inside the password also catches it escaped (JSON, repr).
    assert_absent((password, roles.batch_password_token, wrong), sources)


def strings(value: Any) -> Iterator[str]:
    """Every key and value of a JSON document, as text."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    else:
        yield str(value)
