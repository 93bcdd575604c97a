from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from devtools import local_postgres
from batch.core.config import Secret
from batch.core.postgres import PostgresTarget
from batch.core.session import BASE_CONF

@pytest.fixture(scope="session")
def spark() -> SparkSession:
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("batch-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
    )
    for key, value in BASE_CONF.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[local_postgres.LocalPostgres]:
    """A throwaway PostgreSQL for the whole session (tests/run.sh gives it a folder)."""
    given = os.environ.get("TEST_POSTGRES_DIR")
    base_dir = Path(given) if given else Path(tempfile.mkdtemp(prefix="indoor-air-tests-pg."))
    server = local_postgres.start(base_dir, database="iot", user="batch_test", ephemeral=True)
    try:
        yield server
    finally:
        local_postgres.stop(base_dir)
        if not given:
            shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture
def make_target(postgres_server: local_postgres.LocalPostgres) -> Callable[..., PostgresTarget]:
    """PostgresTarget factory; every test gets schemas of its own."""

    def make(schema: str | None = None, **overrides: object) -> PostgresTarget:
        fields = dict(host=postgres_server.host, port=postgres_server.port,
                      database=postgres_server.database, user=postgres_server.user,
                      password=Secret(postgres_server.password()),
                      schema=schema or f"t_{uuid.uuid4().hex[:12]}", connect_attempts=2,
                      lock_timeout_s=5.0)
        fields.update(overrides)
        return PostgresTarget(**fields)  # type: ignore[arg-type]

    return make
