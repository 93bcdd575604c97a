"""The analysis job as a real process, for fault-injection tests: start, hold, kill, look.

The job runs as production runs it - its own session and process group, a real JVM, real
connections to PostgreSQL - with its output in files (a pipe nobody reads would block it).
`JobProcess.kill_tree` sends SIGKILL, which no code can intercept, to the whole process tree:
the Python driver, the spark-submit JVM and PySpark's worker daemon, which puts itself in a
process group of its own.

Where the job is held is decided from outside: PostgreSQL itself holds it (a lock the test
takes, a trigger that waits for an advisory lock the test holds), or, for the Spark phases,
`tests/support/held_analysis.py` stops it at a named point. Every wait has a deadline.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import psycopg2
from psycopg2 import sql

from batch.analysis.job import ANALYSIS_OPTIONS
from batch.core.postgres import PostgresTarget

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ANALYSIS_SCRIPT = PROJECT_ROOT / "start-spark.py"
HELD_ANALYSIS_SCRIPT = Path(__file__).with_name("held_analysis.py")
JOB_APPLICATION = "indoor-air-batch"  # psycopg2 sessions of the job (postgres.connect)
DEADLINE_S = 300.0

T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout: float = DEADLINE_S,
             job: JobProcess | None = None, interval: float = 0.05) -> T:
    """Poll `condition` until it returns something true; fail clearly at the deadline or if `job` ends."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if job is not None and job.poll() is not None:
            raise AssertionError(f"the job ended (exit {job.poll()}) before {what}:\n{job.output()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for {what}"
                                 + (f":\n{job.output()[-4000:]}" if job is not None else ""))
        time.sleep(interval)


def job_environment(target: PostgresTarget, raw_path: Path | str, work_dir: Path,
                    **variables: str) -> dict[str, str]:
    """The environment of a job publishing to `target`: the password by variable, an empty env file."""
    ours = {option.env for option in ANALYSIS_OPTIONS} | {"BATCH_ENV_FILE", "LOG_DIR", "RUN_DIR"}
    environment = {key: value for key, value in os.environ.items() if key not in ours}
    env_file = work_dir / "empty.env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text("")
    environment.update({
        "BATCH_ENV_FILE": str(env_file), "RAW_DATA_PATH": str(raw_path),
        "POSTGRES_HOST": target.host, "POSTGRES_PORT": str(target.port),
        "POSTGRES_DB": target.database, "POSTGRES_USER": target.user,
        "POSTGRES_PASSWORD": target.password.reveal(), "POSTGRES_SCHEMA": target.schema,
        "POSTGRES_CONNECT_ATTEMPTS": "2", "PUBLISH_LOCK_TIMEOUT_S": "30",
        # The jobs' tests were written when UTC was the default (Europe/Rome now).
        "BATCH_TIMEZONE": "UTC",
        "SPARK_MASTER": "local[2]",
        "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_DRIVER_MEMORY": "1g",
        # Spark's Python workers run the virtualenv's Python, as under the launcher.
        "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
        "LOG_DIR": str(work_dir / "logs"), "RUN_DIR": str(work_dir / "run"),
    })
    environment.update(variables)
    return environment


# --- processes -------------------------------------------------------------------------------

def _parent_and_state(pid: int) -> tuple[int, str] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0]


def process_tree(root: int) -> set[int]:
    """`root` and all its descendants that still exist."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _parent_and_state(int(entry.name))) is not None:
            children.setdefault(info[0], []).append(int(entry.name))
    found, pending = set(), [root]
    while pending:
        pid = pending.pop()
        if pid not in found and Path(f"/proc/{pid}").exists():
            found.add(pid)
            pending += children.get(pid, [])
    return found


def alive_tree(root: int) -> set[int]:
    """The processes of `process_tree` that have not ended (zombies left out)."""
    return {pid for pid in process_tree(root) if _alive(pid)}


def command_lines(pids: Sequence[int] | set[int]) -> dict[int, str]:
    lines = {}
    for pid in pids:
        try:
            lines[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return lines


def _alive(pid: int) -> bool:
    info = _parent_and_state(pid)
    return info is not None and info[1] != "Z"


def kill_tree(root: int) -> set[int]:
    """SIGKILL `root` and its descendants, whatever process group they moved to; wait until all are gone."""
    pids = process_tree(root)
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            pass
    # Killing the groups first also reaches a child forked after the tree was read.
    for group in groups - {os.getpgid(0)}:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not any(_alive(pid) for pid in pids), "the killed processes to end", 60)
    return pids


class JobProcess:
    """A job started in its own session; stdout and stderr go to files in `work_dir`."""

    def __init__(self, command: Sequence[str], environment: Mapping[str, str], work_dir: Path) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = work_dir / "stdout.txt"
        self.stderr_path = work_dir / "stderr.txt"
        with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self.popen = subprocess.Popen(
                list(command), env=dict(environment), cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                stdout=stdout, stderr=stderr, start_new_session=True)
        self.pid = self.popen.pid

    @classmethod
    def analysis(cls, environment: Mapping[str, str], work_dir: Path, *args: str,
                 hold_at: str | None = None) -> JobProcess:
        """start-spark.py with the virtualenv's Python, optionally held at `hold_at` (held_analysis.py)."""
        if hold_at is None:
            command = [sys.executable, str(ANALYSIS_SCRIPT), *args]
        else:
            command = [sys.executable, str(HELD_ANALYSIS_SCRIPT), hold_at, str(work_dir / "hold"), *args]
        return cls(command, environment, work_dir)

    def hold_reached(self, point: str) -> bool:
        return (self.stdout_path.parent / "hold" / point).exists()

    def release(self) -> None:
        """Let a job held by held_analysis.py go on."""
        hold_dir = self.stdout_path.parent / "hold"
        hold_dir.mkdir(parents=True, exist_ok=True)
        (hold_dir / "release").touch()

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float = DEADLINE_S) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_tree()
            raise AssertionError(f"the job did not end within {timeout:g}s:\n{self.output()[-4000:]}") from None

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout() + self.stderr()

    def kill_tree(self) -> set[int]:
        """SIGKILL every process of the job; wait until all are gone."""
        pids = kill_tree(self.pid)
        self.popen.wait(timeout=60)
        return pids

    def __enter__(self) -> JobProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.poll() is None or any(_alive(pid) for pid in process_tree(self.pid)):
            self.kill_tree()


# --- PostgreSQL, seen from outside -------------------------------------------------------------

def admin_connection(target: PostgresTarget, autocommit: bool = True) -> Any:
    conn = psycopg2.connect(host=target.host, port=target.port, dbname=target.database,
                            user=target.user, password=target.password.reveal(),
                            application_name="indoor-air-tests")
    conn.autocommit = autocommit
    return conn


def query(conn: Any, statement: Any, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description is not None else []


def job_backends(conn: Any) -> dict[int, tuple[str, str | None, str | None, str]]:
    """Sessions of the job: pid -> (application, wait type, wait event, query)."""
    rows = query(conn, "SELECT pid, application_name, wait_event_type, wait_event, query "
                       "FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid() AND application_name = %s", (JOB_APPLICATION,))
    return {pid: (application, wait_type, wait_event, text)
            for pid, application, wait_type, wait_event, text in rows}


def staging_tables(conn: Any, schema: str) -> list[str]:
    return [name for (name,) in query(
        conn, "SELECT tablename FROM pg_tables WHERE schemaname = %s "
              "AND starts_with(tablename, '_staging_') ORDER BY tablename", (schema,))]


def runs(conn: Any, schema: str) -> list[dict[str, Any]]:
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT * FROM {}.batch_runs ORDER BY run_id").format(sql.Identifier(schema)))
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def wait_until_gone(conn: Any, pids: set[int] | Sequence[int], what: str = "the killed job's sessions") -> None:
    """PostgreSQL ends a dead client's session when it next talks to it: wait for that."""
    wanted = list(pids)
    wait_for(lambda: not query(conn, "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (wanted,)),
             f"{what} to end", timeout=120)


@contextmanager
def advisory_hold(target: PostgresTarget, key: int) -> Iterator[Any]:
    """Hold advisory lock `key` in a session of its own until the block ends (or it is unlocked)."""
    conn = admin_connection(target)
    query(conn, "SELECT pg_advisory_lock(%s)", (key,))
    try:
        yield conn
    finally:
        conn.close()  # ends the session, and the lock with it


def install_commit_hold(conn: Any, schema: str, key: int) -> None:
    """Make the job wait just before its commit: the run's update to 'succeeded' waits for lock `key`.

    That update is the swap transaction's last statement: every table has been replaced in it.
    """
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL(
            "CREATE FUNCTION {schema}.hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN PERFORM pg_advisory_lock_shared({key}); PERFORM pg_advisory_unlock_shared({key}); "
            "RETURN NEW; END $$").format(schema=sql.Identifier(schema), key=sql.Literal(key)))
        cursor.execute(sql.SQL(
            "CREATE TRIGGER hold_commit BEFORE UPDATE ON {schema}.batch_runs FOR EACH ROW "
            "WHEN (NEW.status = 'succeeded') EXECUTE FUNCTION {schema}.hold_commit()").format(
            schema=sql.Identifier(schema)))


def remove_commit_hold(conn: Any, schema: str) -> None:
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("DROP TRIGGER IF EXISTS hold_commit ON {}.batch_runs").format(sql.Identifier(schema)))
        cursor.execute(sql.SQL("DROP FUNCTION IF EXISTS {}.hold_commit()").format(sql.Identifier(schema)))
