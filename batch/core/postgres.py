"""The PostgreSQL connection both the analysis' sink and the report use: where the database is,
connecting with bounded retries, and database errors in the project's words."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql

from batch.core.config import Secret, parse_identifier, read_password
from batch.core.errors import ConfigurationError, PublishError, first_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostgresTarget:
    """Where results are published. The password is only revealed to the drivers."""

    host: str
    port: int
    database: str
    user: str
    password: Secret
    schema: str
    connect_attempts: int = 5
    lock_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        # Every statement quotes the schema, but a name that needs quoting is refused anyway:
        # it is a configuration mistake (or an attack), better reported before anything runs.
        try:
            parse_identifier(self.schema)
        except ValueError as error:
            raise ConfigurationError(f"POSTGRES_SCHEMA: {error}") from None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}/{self.database} as {self.user}"

    @classmethod
    def of(cls, settings: Any, **tuning: Any) -> PostgresTarget:
        """The target named by settings with the fields of config.POSTGRES_OPTIONS (the password
        read now, from its file if so); `tuning`: connect_attempts, lock_timeout_s."""
        return cls(host=settings.postgres_host, port=settings.postgres_port,
                   database=settings.postgres_db, user=settings.postgres_user,
                   password=read_password(settings.postgres_password, settings.postgres_password_file),
                   schema=settings.postgres_schema, **tuning)


def connect(target: PostgresTarget) -> psycopg2.extensions.connection:
    """Connect with bounded retries and exponential backoff; errors name the host, never the password."""
    delay = 0.5
    for attempt in range(1, target.connect_attempts + 1):
        try:
            return psycopg2.connect(
                host=target.host, port=target.port, dbname=target.database, user=target.user,
                password=target.password.reveal(), connect_timeout=10,
                application_name="indoor-air-batch")
        except psycopg2.OperationalError as error:
            reason = first_line(error)
            if attempt == target.connect_attempts or "password authentication failed" in reason:
                raise PublishError(
                    f"cannot connect to PostgreSQL at {target.address} after {attempt} "
                    f"attempt(s): {reason}") from None
            log.warning("PostgreSQL at %s:%s not reachable (attempt %d/%d): %s; retrying in %.1fs",
                        target.host, target.port, attempt, target.connect_attempts, reason, delay)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")


@contextmanager
def database_errors(target: PostgresTarget) -> Iterator[None]:
    """Report any psycopg2 error in the block (a lost connection included) as a PublishError."""
    try:
        yield
    except psycopg2.Error as error:
        raise PublishError(f"PostgreSQL at {target.address} failed: {first_line(error)}; "
                           "previous results kept") from None


def qualified(schema: str, name: str) -> sql.Composed:
    """`schema.name`, each quoted."""
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
