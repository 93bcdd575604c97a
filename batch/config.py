"""Configuration: env/spark.env, overridden by the environment, overridden by flags.

Each job declares its options as data (`Option`); from that one list come the argparse
flags, the `--help` text and the frozen settings object. Secrets (the database password)
have no flag - a command line is visible to every user of the machine - and are wrapped
in `Secret` so that no repr, log line or summary can show them.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from batch.errors import ConfigurationError

ENV_FILE_VARIABLE = "BATCH_ENV_FILE"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class Secret:
    """A value that never shows itself in a repr, a log line or an f-string."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_timezone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{text!r} is not a known IANA time zone (e.g. UTC, Europe/Rome)") from None
    return text


def parse_identifier(text: str) -> str:
    if not _IDENTIFIER.match(text):
        raise ValueError(
            f"{text!r} is not a plain SQL identifier (letters, digits and _, not starting "
            "with a digit, at most 63 characters)")
    return text


def parse_port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{port} is not a TCP port")
    return port


def parse_positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"expected a positive whole number, got {text!r}")
    return value


@dataclass(frozen=True)
class Option:
    """One setting: its variable, default (as written in env/spark.env) and meaning."""

    env: str
    default: str
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False

    @property
    def field(self) -> str:
        return self.env.lower()

    @property
    def flag(self) -> str:
        return "--" + self.env.lower().replace("_", "-")


# Options both jobs share.
COMMON_OPTIONS: tuple[Option, ...] = (
    Option("RAW_DATA_PATH", "hdfs://hadoop-namenode:8020/iot-lorawan/raw/indoor_sensor_data",
           "raw Parquet readings: any URI Spark reads (hdfs://, file://, a local path)"),
    Option("BATCH_TIMEZONE", "UTC",
           "IANA time zone of the local days, weeks and months (e.g. Europe/Rome)", parse_timezone),
    Option("SKIP_CORRUPT_FILES", "false",
           "skip (and report) unreadable Parquet files instead of failing", parse_bool),
    Option("SPARK_MASTER", "local[*]",
           "Spark master when the job is not launched by spark-submit"),
)

POSTGRES_OPTIONS: tuple[Option, ...] = (
    Option("POSTGRES_HOST", "postgres", "PostgreSQL host"),
    Option("POSTGRES_PORT", "5432", "PostgreSQL port", parse_port),
    Option("POSTGRES_DB", "iot", "PostgreSQL database"),
    Option("POSTGRES_USER", "batch", "PostgreSQL role the job connects as"),
    Option("POSTGRES_PASSWORD", "", "PostgreSQL password (environment or env file only)",
           secret=True),
    Option("POSTGRES_PASSWORD_FILE", "",
           "file holding the PostgreSQL password (used when POSTGRES_PASSWORD is empty)"),
    Option("POSTGRES_SCHEMA", "indoor_air", "schema the statistics are published to",
           parse_identifier),
    Option("POSTGRES_JDBC_JAR", "",
           "PostgreSQL JDBC driver jar (empty: the launcher finds or fetches POSTGRES_JDBC_PACKAGE)"),
    Option("POSTGRES_JDBC_PACKAGE", "org.postgresql:postgresql:42.7.4",
           "Maven coordinates of the PostgreSQL JDBC driver (pinned)"),
)


def default_env_file(project_root: Path) -> Path:
    return Path(os.environ.get(ENV_FILE_VARIABLE) or project_root / "env" / "spark.env")


def build_parser(prog: str, description: str, options: Sequence[Option]) -> argparse.ArgumentParser:
    # No abbreviations: `--postgres-password x` must be refused, not taken for
    # `--postgres-password-file x`.
    parser = argparse.ArgumentParser(
        prog=prog, description=description, allow_abbrev=False,
        epilog="Every option can also be set as the variable named in brackets, in the "
               "environment or in the env file (default env/spark.env, or $BATCH_ENV_FILE); "
               "flags override the environment, which overrides the file. The password is "
               "read only from POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, never from a flag.",
    )
    parser.add_argument("--env-file", type=Path, help="env file to load (default env/spark.env)")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the options and settings, then exit without running")
    for option in options:
        if option.secret:
            continue
        help_text = f"{option.help} [{option.env}, default: {option.default or 'empty'}]"
        if option.parse is parse_bool:
            parser.add_argument(option.flag, dest=option.field, default=None,
                                action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(option.flag, dest=option.field, default=None,
                                metavar=option.env, help=help_text)
    return parser


def resolve_options(
    options: Sequence[Option],
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    env_file: Path | None,
) -> dict[str, Any]:
    """Each option's value: a flag, else the environment, else the env file, else the default."""
    file_values: Mapping[str, str | None] = {}
    if env_file is not None:
        if not env_file.is_file():
            raise ConfigurationError(f"env file {env_file} does not exist")
        file_values = dotenv_values(env_file)
    values: dict[str, Any] = {}
    for option in options:
        flag_value = flags.get(option.field)
        if flag_value is not None:
            values[option.field] = (flag_value if isinstance(flag_value, bool)
                                    else _parse(option, str(flag_value), option.flag))
            continue
        if option.env in environ:
            raw, source = environ[option.env], f"environment variable {option.env}"
        elif file_values.get(option.env) is not None:
            raw, source = str(file_values[option.env]), f"{option.env} in {env_file}"
        else:
            raw, source = option.default, f"default of {option.env}"
        values[option.field] = _parse(option, raw, source)
    return values


def _parse(option: Option, raw: str, source: str) -> Any:
    if option.secret:
        return Secret(raw)
    try:
        return option.parse(raw)
    except ValueError as error:
        raise ConfigurationError(f"{source}: {error}") from None


def settings_from(cls: type, values: Mapping[str, Any]) -> Any:
    """Build the frozen settings dataclass `cls` from resolved option values."""
    names = {field.name for field in dataclasses.fields(cls)}
    return cls(**{name: value for name, value in values.items() if name in names})


def read_password(password: Secret, password_file: str) -> Secret:
    """The password itself, from the variable or else from the file it names."""
    if password or not password_file:
        return password
    try:
        return Secret(Path(password_file).read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as error:
        raise ConfigurationError(
            f"cannot read POSTGRES_PASSWORD_FILE {password_file}: {error.strerror}") from None


def public_view(settings: Any) -> dict[str, Any]:
    """The settings as plain values for summaries and batch_runs; secrets left out."""
    return {
        field.name: str(value) if isinstance(value, Path) else value
        for field in dataclasses.fields(settings)
        if not isinstance(value := getattr(settings, field.name), Secret)
    }


def _print_launcher_settings(argv: Sequence[str]) -> int:
    """`python -m batch.config ENV_FILE KEY...`: shell assignments for the launchers.

    Each KEY is resolved as the jobs resolve it (environment over env file over the
    default written there) and printed shell-quoted, so a launcher can `eval` the output.
    """
    env_file, keys = Path(argv[0]), argv[1:]
    file_values = dotenv_values(env_file) if env_file.is_file() else {}
    for key in keys:
        value = os.environ.get(key, file_values.get(key) or "")
        print(f"{key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(_print_launcher_settings(sys.argv[1:]))
