"""Configuration: env/spark.env, overridden by the environment, overridden by flags.

Each job declares its options as data (`Option`); from that one list come the argparse
flags, the `--help` text and the frozen settings object. Secrets (the database password)
have no flag - a command line is visible to every user of the machine - and are wrapped
in `Secret` so that no repr, log line or summary can show them.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dotenv import dotenv_values

from batch.core.errors import ConfigurationError

log = logging.getLogger(__name__)

ENV_FILE_VARIABLE = "BATCH_ENV_FILE"
# Settings of earlier releases that an old env file may still hold: no longer read, and
# harmless (the JDBC driver: the analysis COPYs its tables over its own connection).
OBSOLETE_VARIABLES = frozenset({"POSTGRES_JDBC_JAR", "POSTGRES_JDBC_PACKAGE"})
# The folder the user typed the command in: relative paths given by flag or environment are
# read from there (the launcher sets it; the job's own working directory otherwise).
CALLER_DIR_VARIABLE = "BATCH_CALLER_DIR"
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
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


# Spark resolves BATCH_TIMEZONE with java.time.ZoneId.of(name, ZoneId.SHORT_IDS), from the JDK's
# own zone database (tzdb.dat), not the system's files that Python's zoneinfo reads. Names only
# the system's files hold pass zoneinfo and fail the run in the JVM: the `posix/` and `right/`
# copies (`right/` counts leap seconds), the host's `localtime` link, `posixrules`, `Factory`
# (a placeholder), the alias `ROC` the JDK leaves out, and zones newer than the JDK's database.
# tests/test_config.py checks this rule against the JDK on the machine, zone by zone.
_JAVA_UNKNOWN_PREFIXES = ("posix/", "right/")
_JAVA_UNKNOWN_ZONES: dict[str, str] = {
    "localtime": "the host's own zone: name it, e.g. Europe/Rome",
    "posixrules": "a rules template: name the zone, e.g. America/New_York",
    "Factory": "a placeholder zone: name the real one, e.g. Europe/Rome",
    "ROC": "an alias the JDK leaves out: use Asia/Taipei",
    "America/Coyhaique": "added in tzdata 2025b, after this JDK's zone database: update the JDK's "
                         "time-zone data (tzupdater) first",
}


def parse_timezone(text: str) -> str:
    """An IANA zone that both Python (the driver) and Java (Spark) know."""
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        canonical = {zone for zone in available_timezones()
                     if zone not in _JAVA_UNKNOWN_ZONES and not zone.startswith(_JAVA_UNKNOWN_PREFIXES)}
        suggestion = closest_name(text, canonical)
        hint = f"; did you mean {suggestion}?" if suggestion else " (e.g. UTC, Europe/Rome)"
        raise ValueError(f"{text!r} is not a known IANA time zone{hint}") from None
    prefix = next((prefix for prefix in _JAVA_UNKNOWN_PREFIXES if text.startswith(prefix)), None)
    if prefix is not None:
        raise ValueError(f"{text!r} is a copy in the system's zone files that Java (Spark) does not "
                         f"know: use {text[len(prefix):]}")
    if text in _JAVA_UNKNOWN_ZONES:
        raise ValueError(f"{text!r} is not a time zone Java (Spark) knows: {_JAVA_UNKNOWN_ZONES[text]}")
    return text


def closest_name(text: str, known: set[str], cutoff: float = 0.75) -> str | None:
    """The known name closest to `text` whatever the case (a typo's likely meaning), if one is close."""
    by_folded = {name.lower(): name for name in known}
    found = difflib.get_close_matches(text.lower(), by_folded, n=1, cutoff=cutoff)
    return by_folded[found[0]] if found else None


def parse_identifier(text: str) -> str:
    if not _IDENTIFIER.match(text):
        raise ValueError(
            f"{text!r} is not a plain SQL identifier (letters, digits and _, not starting "
            "with a digit, at most 63 characters)")
    return text


def parse_schema_name(text: str) -> str:
    """POSTGRES_SCHEMA: a plain identifier, folded to lower case as PostgreSQL folds unquoted names.

    Dashboards write `SELECT ... FROM Indoor_Air.classroom_stats`, which PostgreSQL reads as
    indoor_air: a schema created as "Indoor_Air" would never be found by them.
    """
    name = parse_identifier(text)
    if name != name.lower():
        log.warning("POSTGRES_SCHEMA %s folded to lower case: publishing to schema %s, as PostgreSQL "
                    "reads the unquoted name %s", name, name.lower(), name)
    return name.lower()


def whole_number(text: str) -> int:
    """`text` as an integer; a ValueError in the project's words, not Python's."""
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def finite_number(text: str) -> float:
    """`text` as a finite number; a ValueError in the project's words, not Python's."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {text!r}")
    return value


def _whole_number_from_1(high: float, expected: str) -> Callable[[str], int]:
    def parse_whole_number(text: str) -> int:
        try:
            value = whole_number(text)
        except ValueError:
            value = 0
        if not 1 <= value <= high:
            raise ValueError(f"expected {expected}, got {text!r}")
        return value

    return parse_whole_number


parse_port = _whole_number_from_1(65535, "a TCP port (1 to 65535)")
parse_positive_int = _whole_number_from_1(math.inf, "a positive whole number")


def number(low: float, high: float, *, above_low: bool = False) -> Callable[[str], float]:
    """A parser of finite numbers from `low` (excluded with `above_low`) to `high`."""
    bounds = f"{'above' if above_low else 'from'} {low:g} {'and at most' if above_low else 'to'} {high:g}"

    def parse_number(text: str) -> float:
        try:
            value = finite_number(text)
        except ValueError:
            raise ValueError(f"expected a number {bounds}, got {text!r}") from None
        if value < low or (above_low and value == low) or value > high:
            raise ValueError(f"expected a number {bounds}, got {text!r}")
        return value

    return parse_number


@dataclass(frozen=True)
class Option:
    """One setting: its variable, default (as written in env/spark.env) and meaning."""

    env: str
    default: str
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False
    # The flag, when not the one derived from the variable (--output for DOWNLOAD_OUTPUT).
    flag_name: str = ""
    # A local path: a relative one is read from the caller's folder when given by flag or
    # environment, from the project folder when it comes from the env file or the default.
    path: bool = False

    @property
    def field(self) -> str:
        return self.env.lower()

    @property
    def flag(self) -> str:
        return self.flag_name or "--" + self.env.lower().replace("_", "-")


# Options both jobs share.
COMMON_OPTIONS: tuple[Option, ...] = (
    Option("RAW_DATA_PATH", "hdfs://hadoop-namenode:8020/iot-lorawan/raw/indoor_sensor_data",
           "raw Parquet readings: any URI Spark reads (hdfs://, file://, a local path)",
           path=True),
    # The platform's schools are in Italy; a run left on this default says so (batch/analysis/job.py).
    Option("BATCH_TIMEZONE", "Europe/Rome",
           "IANA time zone of the local days, weeks, months and school timetables", parse_timezone),
    Option("SKIP_CORRUPT_FILES", "false",
           "skip (and report) unreadable Parquet files instead of failing", parse_bool),
    Option("SPARK_MASTER", "local[*]",
           "Spark master when the job is not launched by spark-submit"),
)

SUMMARY_JSON_OPTION = Option("SUMMARY_JSON", "", "also write the run summary as JSON to this file",
                             path=True)

REPORT_DIR_OPTION = Option("REPORT_DIR", "reports",
                           "folder the HTML report of each run is written to (one file per run)",
                           path=True)

POSTGRES_OPTIONS: tuple[Option, ...] = (
    Option("POSTGRES_HOST", "postgres", "PostgreSQL host"),
    Option("POSTGRES_PORT", "5432", "PostgreSQL port", parse_port),
    Option("POSTGRES_DB", "iot", "PostgreSQL database"),
    Option("POSTGRES_USER", "batch", "PostgreSQL role the job connects as"),
    Option("POSTGRES_PASSWORD", "", "PostgreSQL password (environment or env file only)",
           secret=True),
    Option("POSTGRES_PASSWORD_FILE", "",
           "file holding the PostgreSQL password (used when POSTGRES_PASSWORD is empty)",
           path=True),
    Option("POSTGRES_SCHEMA", "indoor_air",
           "schema the statistics are published to (folded to lower case, as PostgreSQL folds "
           "unquoted names)", parse_schema_name),
)


def caller_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(CALLER_DIR_VARIABLE) or os.getcwd())


def find_env_file(given: str | Path | None, environ: Mapping[str, str], project_root: Path) -> Path | None:
    """The env file in use: --env-file, else $BATCH_ENV_FILE, else env/spark.env if present.

    A file named by flag or variable must exist (ConfigurationError); a relative name is read
    from the caller's folder.
    """
    named, how = (given, "--env-file") if given else (environ.get(ENV_FILE_VARIABLE), ENV_FILE_VARIABLE)
    if not named:
        default = project_root / "env" / "spark.env"
        return default if default.is_file() else None
    path = Path(os.path.abspath(caller_dir(environ) / Path(named)))
    check_readable_file(path, f"{how}: env file")
    return path


def check_readable_file(path: Path, what: str) -> None:
    """Refuse (ConfigurationError) a file that does not exist or is a folder, saying which."""
    if path.is_dir():
        raise ConfigurationError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise ConfigurationError(f"{what} {path} does not exist")


def unknown_variables(env_file: Path, known: set[str]) -> list[str]:
    """One warning per variable of `env_file` that no option reads, with the closest known name.

    A misspelt variable would otherwise be ignored without a word, its setting silently the
    default.
    """
    warnings = []
    for name in dotenv_values(env_file):
        if name in known or name in OBSOLETE_VARIABLES:
            continue
        closest = closest_name(name, known)
        hint = f"; did you mean {closest}?" if closest else ""
        warnings.append(f"{name} in {env_file} is not a setting of these jobs or their launchers "
                        f"and is ignored{hint}")
    return warnings


def build_parser(prog: str, description: str, options: Sequence[Option]) -> argparse.ArgumentParser:
    # No abbreviations: `--postgres-password x` must be refused, not taken for
    # `--postgres-password-file x`.
    parser = argparse.ArgumentParser(
        prog=prog, description=description, allow_abbrev=False,
        epilog="Every option can also be set as the variable named in brackets, in the "
               "environment or in the env file (default env/spark.env, or $BATCH_ENV_FILE); "
               "flags override the environment, which overrides the file. Relative paths "
               "given by flag or environment are read from the folder the command is run in, "
               "those in the env file from the project folder; messages and summaries show "
               "them absolute. The password is read only from POSTGRES_PASSWORD or "
               "POSTGRES_PASSWORD_FILE, never from a flag.",
    )
    parser.add_argument("--env-file", help="env file to load (default env/spark.env)")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the options and settings, then exit without running")
    for option in (option for option in options if not option.secret):
        kind = {"action": argparse.BooleanOptionalAction} if option.parse is parse_bool else {"metavar": option.env}
        parser.add_argument(option.flag, dest=option.field, default=None, **kind,
                            help=f"{option.help} [{option.env}, default: {option.default or 'empty'}]")
    return parser


def resolve_options(
    options: Sequence[Option],
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    env_file: Path | None,
    project_root: Path | None = None,
    defaulted: set[str] | None = None,
) -> dict[str, Any]:
    """Each option's value: a flag, else the environment, else the env file, else the default.

    With `project_root`, relative paths become absolute (see `Option.path`). `defaulted`, if
    given, receives the fields nobody set (the built-in default was used).
    """
    file_values: Mapping[str, str | None] = {}
    if env_file is not None:
        check_readable_file(env_file, "env file")
        file_values = dotenv_values(env_file)
    values: dict[str, Any] = {}
    for option in options:
        flag_value = flags.get(option.field)
        base = caller_dir(environ)
        if flag_value is not None:
            if isinstance(flag_value, bool):
                values[option.field] = flag_value
                continue
            raw, source = str(flag_value), option.flag
        elif option.env in environ:
            raw, source = environ[option.env], f"environment variable {option.env}"
        elif file_values.get(option.env) is not None:
            raw, source, base = str(file_values[option.env]), f"{option.env} in {env_file}", project_root
        else:
            raw, source, base = option.default, f"default of {option.env}", project_root
            if defaulted is not None:
                defaulted.add(option.field)
        if option.path and project_root is not None and base is not None:
            raw = absolute_path(raw, base)
        values[option.field] = _parse(option, raw, source)
    return values


# The settings field, for settings types that declare it (`settings_type` extra), naming the
# options no flag, environment variable or env file set: a job can warn about a default that
# only the operator can know to be right (BATCH_TIMEZONE).
DEFAULTED_OPTIONS_FIELD = "options_defaulted"
DEFAULTED_OPTIONS_EXTRA: tuple[str, type, Any] = (DEFAULTED_OPTIONS_FIELD, tuple, ())


def absolute_path(text: str, base: Path) -> str:
    """`text` read from `base` if it is a relative local path; URIs and empty values as given."""
    if not text or URI_SCHEME.match(text) or os.path.isabs(text):
        return text
    return os.path.abspath(os.path.join(base, text))


def _parse(option: Option, raw: str, source: str) -> Any:
    if option.secret:
        return Secret(raw)
    try:
        return option.parse(raw)
    except ValueError as error:
        raise ConfigurationError(f"{source}: {error}") from None


def settings_type(name: str, options: Sequence[Option],
                  extra: Sequence[tuple[str, type, Any]] = (), with_defaults: bool = False) -> type:
    """A frozen dataclass with one field per option (then `extra` fields with defaults).

    Subclass it to add properties: a new option is then one `Option` line, nothing else.
    `with_defaults`: each field defaults to its option's parsed default (for settings that
    code builds itself, such as a test's).
    """
    fields: list[Any] = [
        (option.field, Any, dataclasses.field(default=_parse(option, option.default, option.env)))
        if with_defaults else (option.field, Any)
        for option in options]
    fields += [(field_name, kind, dataclasses.field(default=default)) for field_name, kind, default in extra]
    return dataclasses.make_dataclass(name, fields, frozen=True)


def settings_from(cls: type, values: Mapping[str, Any]) -> Any:
    """Build the frozen settings dataclass `cls` from resolved option values."""
    names = {field.name for field in dataclasses.fields(cls)}
    return cls(**{name: value for name, value in values.items() if name in names})


def read_password(password: Secret, password_file: str) -> Secret:
    """The password itself, from the variable or else from the file it names."""
    if password:
        return password
    if not password_file:
        raise ConfigurationError(
            "no PostgreSQL password: set POSTGRES_PASSWORD_FILE (preferred) or POSTGRES_PASSWORD, "
            "in the environment or the env file")
    try:
        password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        raise ConfigurationError(
            f"cannot read POSTGRES_PASSWORD_FILE {password_file}: {error.strerror}") from None
    if not password:
        # PostgreSQL would only answer "no password supplied", after every connection attempt.
        raise ConfigurationError(f"POSTGRES_PASSWORD_FILE {password_file} is empty: write the "
                                 "password in it")
    return Secret(password)


def public_view(settings: Any) -> dict[str, Any]:
    """The settings as plain values for summaries and batch_runs; secrets left out."""
    return {
        field.name: str(value) if isinstance(value, Path) else value
        for field in dataclasses.fields(settings)
        if not isinstance(value := getattr(settings, field.name), Secret)
    }


def check_file_target(path: Path, flag: str) -> None:
    """Refuse, before any Spark work, a file that cannot be created at `path` (ConfigurationError).

    The nearest existing folder on its way must be a folder that takes a new file (a probe
    file is created there and removed); nothing else is created.
    """
    if path.is_dir():
        raise ConfigurationError(f"{flag} {path} is a directory; give a file name")
    folder = path.parent
    existing = next(ancestor for ancestor in (folder, *folder.parents) if ancestor.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError
        with tempfile.TemporaryFile(dir=existing, prefix=f".{path.name}.probe-"):
            pass
    except OSError as error:
        reason = error.strerror or "not writable"
        if isinstance(error, NotADirectoryError):
            reason = "a file is in the way where a folder should be"
        raise ConfigurationError(f"{flag} {path}: cannot write to the folder {folder}: {reason}") from None
