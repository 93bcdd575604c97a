"""The set-up of the test and benchmark commands (tests/run.sh, tests/bench/run.sh).

    python3 devtools/dev_env.py tests [PYTEST ARGS...]
    python3 devtools/dev_env.py bench [ARGS...]

First with the system's Python (standard library only): the virtualenv with the dev extras;
then, in it: Java 17+ and PostgreSQL's server binaries. `tests` gives the tests a folder
for a throwaway PostgreSQL (started by tests/conftest.py, stopped and removed at the end even
on failure) and runs pytest; `bench` exports POSTGRES_JDBC_JAR, the pinned PostgreSQL JDBC
driver from the Maven cache (fetched with mvn when missing), and runs tests/bench/run.py.
The jobs publish over psycopg2 and need no driver; the benchmark's seed-style reference
(tests/bench/seed_reference.py) writes through Spark's JDBC writer on purpose, and an
earlier commit's analysis (--before REV) may need it too.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if not __package__:
    # Run as a file with the system's Python, before the virtualenv exists: the project's
    # package is not importable yet, but its exit codes are (standard library only).
    sys.path.insert(0, str(PROJECT_ROOT))
from batch.core.errors import (  # noqa: E402
    EXIT_CONFIGURATION,
    EXIT_MISSING_PREREQUISITE,
    EXIT_SIGINT,
)

# The benchmark's seed-style reference writes through Spark's JDBC writer (pinned driver).
JDBC_DRIVER_PACKAGE = "org.postgresql:postgresql:42.7.4"
# Where Maven caches it (~/.m2/repository/GROUP/ARTIFACT/VERSION/ARTIFACT-VERSION.jar).
JDBC_DRIVER_JAR = (Path.home() / ".m2" / "repository" / "org" / "postgresql" / "postgresql" / "42.7.4"
                   / "postgresql-42.7.4.jar")


def _die(message: str) -> None:
    print(f"{sys.argv[0]}: {message}", file=sys.stderr)
    sys.exit(EXIT_MISSING_PREREQUISITE)


def jdbc_driver_jar() -> str:
    """The driver jar in Maven's cache, fetched with mvn when missing; empty when neither."""
    if not JDBC_DRIVER_JAR.is_file():
        try:
            subprocess.run(["mvn", "-q", "dependency:get", f"-Dartifact={JDBC_DRIVER_PACKAGE}"],
                           stdout=sys.stderr, stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError:
            pass
    return str(JDBC_DRIVER_JAR) if JDBC_DRIVER_JAR.is_file() else ""


def in_venv(command: str, args: list[str]) -> int:
    from batch.launcher.launch import LauncherError
    from batch.launcher.main import check_java
    from devtools import local_postgres

    try:
        java_home = check_java()
    except LauncherError as error:
        _die(str(error))
    try:
        local_postgres.find_server_binaries()
    except local_postgres.LocalPostgresError as error:
        _die(f"the {command} need the PostgreSQL server binaries: {error}")
    environ = dict(os.environ)
    if java_home is not None:
        environ["JAVA_HOME"] = java_home
    if command == "bench":
        jar = jdbc_driver_jar()
        if not jar:
            _die(f"the bench needs the PostgreSQL JDBC driver {JDBC_DRIVER_PACKAGE}: not at "
                 f"{JDBC_DRIVER_JAR}, and mvn could not fetch it")
        environ["POSTGRES_JDBC_JAR"] = jar
        os.execve(sys.executable, [sys.executable, "-m", "tests.bench.run", *args], environ)
    environ["TEST_POSTGRES_DIR"] = tempfile.mkdtemp(prefix="indoor-air-tests-pg.")
    try:
        return subprocess.run([sys.executable, "-m", "pytest", *args], env=environ).returncode
    except KeyboardInterrupt:
        return EXIT_SIGINT
    finally:
        local_postgres.stop(Path(environ["TEST_POSTGRES_DIR"]))
        shutil.rmtree(environ["TEST_POSTGRES_DIR"], ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--in-venv"]:
        return in_venv(argv[1], argv[2:])
    if not argv or argv[0] not in ("tests", "bench"):
        print("usage: dev_env.py tests|bench [ARGS...]", file=sys.stderr)
        return EXIT_CONFIGURATION
    from batch.launcher.bootstrap import ensure_venv

    python = ensure_venv(PROJECT_ROOT, with_dev_extras=True)
    os.chdir(PROJECT_ROOT)
    os.execv(str(python), [str(python), "-m", "devtools.dev_env", "--in-venv", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
