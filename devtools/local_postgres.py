"""A PostgreSQL server managed by this package: for the demo and the tests, never production.

It lives in one folder (data, log, password, port), listens on 127.0.0.1 only, on a free
port. `initdb` and `postgres` refuse to run as root, so as root the server runs as the
`postgres` system user (or `nobody`) and the data folder is handed to that user.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import sql

from batch.core.errors import BatchError

_SERVER_USERS = ("postgres", "nobody")


class LocalPostgresError(BatchError):
    """The local server could not be created, started or stopped."""


@dataclass(frozen=True)
class LocalPostgres:
    """Connection facts of a running local server (the password stays in `password_file`)."""

    base_dir: Path
    host: str
    port: int
    database: str
    user: str

    @property
    def password_file(self) -> Path:
        return self.base_dir / "password"

    def password(self) -> str:
        return self.password_file.read_text(encoding="utf-8").strip()

    def environment(self) -> dict[str, str]:
        """The job's POSTGRES_* variables for this server (the password by file only)."""
        return {
            "POSTGRES_HOST": self.host, "POSTGRES_PORT": str(self.port),
            "POSTGRES_DB": self.database, "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD_FILE": str(self.password_file),
        }

    def psql_command(self) -> str:
        return (f'PGPASSWORD="$(cat {self.password_file})" psql -h {self.host} -p {self.port} '
                f'-U {self.user} -d {self.database}')


def find_server_binaries() -> Path:
    """The folder holding initdb, pg_ctl and postgres (PATH first, then Debian's layout)."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                         reverse=True)
    for folder in candidates:
        if all((folder / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise LocalPostgresError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install them, "
        "e.g. `apt-get install postgresql` (Debian/Ubuntu) or `brew install postgresql` (macOS)")


def _server_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in _SERVER_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise LocalPostgresError("running as root, and no `postgres` or `nobody` user to run the server as")


def _run(command: list[str], user: pwd.struct_passwd | None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    tool = Path(command[0]).name
    if user is not None:
        command = ["runuser", "-u", user.pw_name, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=180)
    if check and result.returncode != 0:
        raise LocalPostgresError(f"{tool} failed (exit {result.returncode}): "
                                 f"{result.stderr.strip() or result.stdout.strip()}")
    return result


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _state_file(base_dir: Path) -> Path:
    return base_dir / "server.json"


def _is_running(base_dir: Path, binaries: Path) -> bool:
    data_dir = base_dir / "data"
    if not (data_dir / "postmaster.pid").exists():
        return False
    status = _run([str(binaries / "pg_ctl"), "status", "-D", str(data_dir)], _server_user(),
                  check=False)
    return status.returncode == 0


def start(base_dir: Path, database: str = "iot", user: str = "batch",
          ephemeral: bool = False) -> LocalPostgres:
    """Start the server in `base_dir` (creating it on first use); reuse it if already running."""
    binaries = find_server_binaries()
    base_dir = base_dir.resolve()
    if _is_running(base_dir, binaries) and _state_file(base_dir).exists():
        return LocalPostgres(**{**json.loads(_state_file(base_dir).read_text()),
                                "base_dir": base_dir})
    server_user = _server_user()
    data_dir, log_dir = base_dir / "data", base_dir / "log"
    base_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(base_dir, 0o755)  # the server user must reach data/ and log/ below it
    log_dir.mkdir(exist_ok=True)
    if server_user is not None:
        os.chown(log_dir, server_user.pw_uid, server_user.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        _initialise(base_dir, binaries, server_user, database, user, ephemeral)
    port = free_port()
    _run([str(binaries / "pg_ctl"), "start", "-D", str(data_dir), "-w", "-t", "60",
          "-l", str(log_dir / "postgres.log"), "-o", f"-p {port}"], server_user)
    server = LocalPostgres(base_dir=base_dir, host="127.0.0.1", port=port, database=database,
                           user=user)
    _state_file(base_dir).write_text(json.dumps(
        {"host": server.host, "port": port, "database": database, "user": user}))
    return server


def _initialise(base_dir: Path, binaries: Path, server_user: pwd.struct_passwd | None,
                database: str, user: str, ephemeral: bool) -> None:
    data_dir = base_dir / "data"
    password_file = base_dir / "password"
    password_file.write_text(secrets.token_urlsafe(24) + "\n", encoding="utf-8")
    os.chmod(password_file, 0o600)
    data_dir.mkdir(mode=0o700, exist_ok=True)
    # initdb reads the password from a file the server user can read; removed right after.
    init_password = base_dir / "log" / ".initdb-password"
    shutil.copyfile(password_file, init_password)
    if server_user is not None:
        os.chown(data_dir, server_user.pw_uid, server_user.pw_gid)
        os.chown(init_password, server_user.pw_uid, server_user.pw_gid)
    try:
        _run([str(binaries / "initdb"), "-D", str(data_dir), "-U", user, "-E", "UTF8",
              "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256",
              f"--pwfile={init_password}"], server_user)
    finally:
        init_password.unlink(missing_ok=True)
    settings = ["listen_addresses = '127.0.0.1'", "unix_socket_directories = ''",
                "timezone = 'UTC'", "max_connections = 50"]
    if ephemeral:
        # Throwaway test servers: durability buys nothing, speed does.
        settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
    with open(data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write("\n# indoor-air-batch local server\n" + "\n".join(settings) + "\n")
    _run([str(binaries / "pg_ctl"), "start", "-D", str(data_dir), "-w", "-t", "60",
          "-l", str(base_dir / "log" / "postgres.log"), "-o", f"-p {free_port()}"], server_user)
    try:
        _create_database(base_dir, binaries, server_user, database, user)
    finally:
        _run([str(binaries / "pg_ctl"), "stop", "-D", str(data_dir), "-m", "fast", "-w"],
             server_user)


def _create_database(base_dir: Path, binaries: Path, server_user: pwd.struct_passwd | None,
                     database: str, user: str) -> None:
    port = int((base_dir / "data" / "postmaster.pid").read_text().splitlines()[3])
    password = (base_dir / "password").read_text(encoding="utf-8").strip()
    conn = psycopg2.connect(host="127.0.0.1", port=port, dbname="postgres", user=user,
                            password=password)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    conn.close()


def stop(base_dir: Path) -> bool:
    """Stop the server in `base_dir` if it runs; True if it was running."""
    binaries = find_server_binaries()
    base_dir = base_dir.resolve()
    if not _is_running(base_dir, binaries):
        return False
    _run([str(binaries / "pg_ctl"), "stop", "-D", str(base_dir / "data"), "-m", "fast", "-w",
          "-t", "60"], _server_user())
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.local_postgres",
                                     description="Manage the package's local PostgreSQL server.")
    parser.add_argument("action", choices=("start", "stop", "env"))
    parser.add_argument("--dir", type=Path, default=Path(".demo/postgres"),
                        help="folder of the server (default .demo/postgres)")
    parser.add_argument("--database", default="iot")
    parser.add_argument("--user", default="batch")
    parser.add_argument("--ephemeral", action="store_true",
                        help="no fsync: for throwaway test servers")
    args = parser.parse_args(argv)
    try:
        if args.action == "stop":
            print("stopped" if stop(args.dir) else "not running")
            return 0
        server = start(args.dir, args.database, args.user, args.ephemeral)
    except LocalPostgresError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.action == "env":
        # Shell-quoted assignments a launcher can source; the password only by file.
        for key, value in server.environment().items():
            print(f"{key}={shlex.quote(value)}")
    else:
        print(f"PostgreSQL running on {server.host}:{server.port}; connect with: "
              f"{server.psql_command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
