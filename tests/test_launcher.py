"""start-spark.sh for real: help, option errors, exit codes, background runs, secrets."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from devtools.local_postgres import LocalPostgres
from batch.postgres import PostgresTarget

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = PROJECT_ROOT / "start-spark.sh"


def launcher_environment(target: PostgresTarget, tmp_path: Path, server: LocalPostgres) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("POSTGRES_")}
    environment.update({
        "POSTGRES_HOST": target.host, "POSTGRES_PORT": str(target.port),
        "POSTGRES_DB": target.database, "POSTGRES_USER": target.user,
        "POSTGRES_PASSWORD_FILE": str(server.password_file), "POSTGRES_SCHEMA": target.schema,
        "SPARK_MASTER": "local[2]", "LOG_DIR": str(tmp_path / "logs"), "RUN_DIR": str(tmp_path / "run"),
        "POSTGRES_CONNECT_ATTEMPTS": "2",
    })
    return environment


def raw_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True)
    pq.write_table(pa.table({
        "DevEui": ["a1", "a1"], "institute": ["Liceo", "Liceo"], "classroom": ["3A", "3A"],
        "sendtime": pa.array([dt.datetime(2025, 3, 3, 9, tzinfo=dt.timezone.utc),
                              dt.datetime(2025, 3, 3, 10, tzinfo=dt.timezone.utc)],
                             pa.timestamp("us", tz="UTC")),
        "co2": [700.0, 900.0]}), folder / "part-0.parquet")
    return folder


def launch(*args: str, environment: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LAUNCHER), *args], capture_output=True, text=True, timeout=timeout,
                          env=environment if environment is not None else dict(os.environ),
                          stdin=subprocess.DEVNULL)


def test_help_lists_the_launcher_and_job_options() -> None:
    shown = launch("--help")
    assert shown.returncode == 0
    for text in ("--background", "--foreground", "--local", "--demo", "RAW_DATA_PATH",
                 "BATCH_TIMEZONE", "POSTGRES_SCHEMA", "--summary-json"):
        assert text in shown.stdout, text


def test_an_unknown_option_exits_with_2_and_usage() -> None:
    refused = launch("--foreground", "--no-such-option")
    assert refused.returncode == 2
    assert "unrecognized arguments: --no-such-option" in refused.stderr
    assert "usage:" in refused.stderr


def test_foreground_passes_the_job_exit_code_through(
        make_target: Callable[..., PostgresTarget], postgres_server: LocalPostgres, tmp_path: Path) -> None:
    environment = launcher_environment(make_target(), tmp_path, postgres_server)
    missing = launch("--foreground", "--local", "--raw-data-path", str(tmp_path / "nowhere"),
                     environment=environment)
    # spark-submit merges the Python driver's stderr into its stdout.
    assert missing.returncode == 3, missing.stdout[-2000:]
    assert f"input path {tmp_path / 'nowhere'} does not exist" in missing.stdout

    done = launch("--foreground", "--raw-data-path", str(raw_dataset(tmp_path / "raw")),
                  "--summary-json", str(tmp_path / "summary.json"), environment=environment)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "status: succeeded" in done.stdout
    assert postgres_server.password() not in done.stdout + done.stderr
    assert '"rows_read": 2' in (tmp_path / "summary.json").read_text()


def _processes_of(root_pid: int) -> dict[int, str]:
    """Command lines of `root_pid` and its descendants."""
    children: dict[int, list[int]] = {}
    command_lines: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if command_line:  # empty for a zombie
            command_lines[int(entry.name)] = command_line
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = {}, [root_pid]
    while pending:
        pid = pending.pop()
        if pid in command_lines:
            found[pid] = command_lines[pid]
        pending += children.get(pid, [])
    return found


def test_background_writes_pid_and_log_and_keeps_secrets_off_command_lines(
        make_target: Callable[..., PostgresTarget], postgres_server: LocalPostgres, tmp_path: Path) -> None:
    environment = launcher_environment(make_target(), tmp_path, postgres_server)
    # The password travels by variable here, to prove it never reaches a command line.
    environment.pop("POSTGRES_PASSWORD_FILE")
    environment["POSTGRES_PASSWORD"] = postgres_server.password()
    started = launch("--background", "--raw-data-path", str(raw_dataset(tmp_path / "raw")),
                     environment=environment)
    assert started.returncode == 0, started.stderr
    pid_file = tmp_path / "run" / "analysis.pid"
    pid = int(pid_file.read_text())
    log_files = list((tmp_path / "logs").glob("analysis-*.log"))
    assert len(log_files) == 1
    assert f"tail -f '{log_files[0]}'" in started.stdout and f"kill {pid}" in started.stdout

    seen: dict[int, str] = {}
    deadline = time.monotonic() + 300
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        seen.update(_processes_of(pid))
        time.sleep(0.5)
    assert not Path(f"/proc/{pid}").exists(), "the background job did not finish in 5 minutes"
    assert any("SparkSubmit" in line for line in seen.values()), (seen, log_files[0].read_text()[-3000:])
    assert not [line for line in seen.values() if postgres_server.password() in line]
    log = log_files[0].read_text()
    assert "status: succeeded" in log
    assert postgres_server.password() not in log
