"""Configuration: precedence, validation, the documented env file, secrets."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from batch.analysis import ANALYSIS_OPTIONS, AnalysisSettings, check_settings
from batch.config import (
    Option,
    Secret,
    build_parser,
    find_env_file,
    parse_positive_int,
    public_view,
    read_password,
    resolve_options,
    settings_from,
    settings_type,
)
from batch.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JOB_OPTIONS = {"start-spark.py": ANALYSIS_OPTIONS}
try:
    from batch.download.settings import DOWNLOADER_OPTIONS

    JOB_OPTIONS["spark-downloader.py"] = DOWNLOADER_OPTIONS
except ImportError:  # the downloader is optional for this test
    pass


def resolve(flags: dict[str, object], environ: dict[str, str], env_file: Path | None = None) -> AnalysisSettings:
    return settings_from(AnalysisSettings, resolve_options(ANALYSIS_OPTIONS, flags, environ, env_file))


def test_flags_override_the_environment_which_overrides_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "spark.env"
    env_file.write_text("BATCH_TIMEZONE=Europe/Rome\nPOSTGRES_PORT=6000\nCO2_HIGH_PPM=900\n"
                        "DROP_REPLAYS=true\n")
    settings = resolve({"co2_high_ppm": "950"}, {"POSTGRES_PORT": "6001"}, env_file)
    assert (settings.batch_timezone, settings.postgres_port, settings.co2_high_ppm,
            settings.drop_replays, settings.postgres_db) == ("Europe/Rome", 6001, 950.0, True, "iot")
    assert resolve({"drop_replays": False}, {}, env_file).drop_replays is False


@pytest.mark.parametrize("variable, value, fragment", [
    ("BATCH_TIMEZONE", "Mars/Olympus", "not a known IANA time zone"),
    ("POSTGRES_SCHEMA", "x; DROP TABLE y", "not a plain SQL identifier"),
    ("POSTGRES_PORT", "70000", "not a TCP port"),
    ("DROP_REPLAYS", "maybe", "expected true or false"),
    ("CO2_HIGH_PPM", "lots", "expected a number above 0 and at most 40000, got 'lots'"),
    ("CO2_HIGH_PPM", "nan", "got 'nan'"),
    ("CO2_HIGH_PPM", "inf", "got 'inf'"),
    ("CO2_HIGH_PPM", "-5", "got '-5'"),
    ("CO2_VERY_HIGH_PPM", "0", "got '0'"),
    ("COMFORT_MIN_C", "-300", "expected a number from -40 to 85, got '-300'"),
    ("COMFORT_MAX_C", "abc", "got 'abc'"),
    ("PUBLISH_LOCK_TIMEOUT_S", "-3", "got '-3'"),
    ("POSTGRES_CONNECT_ATTEMPTS", "abc", "expected a positive whole number, got 'abc'"),
    ("POSTGRES_CONNECT_ATTEMPTS", "0", "expected a positive whole number, got '0'"),
])
def test_invalid_values_name_the_variable(variable: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        resolve({}, {variable: value})
    assert variable in str(raised.value) and fragment in str(raised.value)


def test_a_flag_value_error_names_the_flag_and_the_value() -> None:
    with pytest.raises(ConfigurationError, match=r"^--co2-high-ppm: expected a number .*, got 'nan'$"):
        resolve({"co2_high_ppm": "nan"}, {})


@pytest.mark.parametrize("variables, message", [
    ({"CO2_HIGH_PPM": "1500", "CO2_VERY_HIGH_PPM": "1200"},
     "CO2_VERY_HIGH_PPM must not be below CO2_HIGH_PPM (--co2-very-high-ppm 1200 < --co2-high-ppm 1500)"),
    ({"COMFORT_MIN_C": "26", "COMFORT_MAX_C": "26"},
     "COMFORT_MIN_C must be below COMFORT_MAX_C (--comfort-min-c 26 >= --comfort-max-c 26)"),
])
def test_pairs_of_settings_are_checked_in_order(variables: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        check_settings(resolve({}, variables))
    assert str(raised.value) == message


def test_settings_dataclass_has_exactly_one_field_per_option() -> None:
    assert [f.name for f in dataclasses.fields(AnalysisSettings)] == [o.field for o in ANALYSIS_OPTIONS]


def test_a_new_option_is_one_line() -> None:
    options = ANALYSIS_OPTIONS + (Option("EXTRA_LIMIT", "7", "a test-only option", parse_positive_int),)
    settings_class = settings_type("ExtendedSettings", options)
    settings = settings_from(settings_class, resolve_options(options, {"extra_limit": "9"}, {}, None))
    assert settings.extra_limit == 9 and settings.co2_high_ppm == 1000.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.extra_limit = 3  # type: ignore[misc]
    assert "--extra-limit EXTRA_LIMIT" in build_parser("job", "", options).format_help()


def test_relative_paths_are_read_from_the_caller_folder_or_the_project(tmp_path: Path) -> None:
    env_file = tmp_path / "site.env"
    env_file.write_text("POSTGRES_PASSWORD_FILE=secrets/password\n")
    caller = tmp_path / "caller"
    values = resolve_options(ANALYSIS_OPTIONS, {"summary_json": "out/summary.json"},
                             {"BATCH_CALLER_DIR": str(caller), "RAW_DATA_PATH": "data/raw"}, env_file,
                             project_root=tmp_path / "project")
    assert values["summary_json"] == str(caller / "out" / "summary.json")
    assert values["raw_data_path"] == str(caller / "data" / "raw")
    assert values["postgres_password_file"] == str(tmp_path / "project" / "secrets" / "password")
    uri = resolve_options(ANALYSIS_OPTIONS, {"raw_data_path": "file:///data/x"}, {}, None, tmp_path)
    assert uri["raw_data_path"] == "file:///data/x"


@pytest.mark.parametrize("named", ["flag", "variable"])
def test_a_named_env_file_that_does_not_exist_is_an_error(named: str, tmp_path: Path) -> None:
    environ = {"BATCH_CALLER_DIR": str(tmp_path)}
    if named == "variable":
        environ["BATCH_ENV_FILE"] = "does-not-exist.env"
    how = "--env-file" if named == "flag" else "BATCH_ENV_FILE"
    with pytest.raises(ConfigurationError) as raised:
        find_env_file("does-not-exist.env" if named == "flag" else None, environ, PROJECT_ROOT)
    assert str(raised.value) == f"{how}: env file {tmp_path / 'does-not-exist.env'} does not exist"


@pytest.mark.parametrize("job", sorted(JOB_OPTIONS))
def test_env_file_documents_every_option_with_its_default(job: str) -> None:
    documented = dotenv_values(PROJECT_ROOT / "env" / "spark.env")
    text = (PROJECT_ROOT / "env" / "spark.env").read_text()
    for option in JOB_OPTIONS[job]:
        assert option.env in documented, f"{option.env} is not in env/spark.env"
        assert (documented[option.env] or "") == option.default, option.env
        lines = text.splitlines()
        index = next(i for i, line in enumerate(lines) if line.startswith(option.env + "="))
        # A comment may explain a block of related variables: skip up over them.
        while index > 0 and "=" in lines[index - 1] and not lines[index - 1].startswith("#"):
            index -= 1
        assert index > 0 and lines[index - 1].startswith("#"), f"{option.env} has no comment"


def test_env_file_documents_only_settings_that_are_read() -> None:
    from batch.launcher.main import LAUNCHER_OPTIONS

    read = {option.env for options in (*JOB_OPTIONS.values(), LAUNCHER_OPTIONS) for option in options}
    assert set(dotenv_values(PROJECT_ROOT / "env" / "spark.env")) - read == set()


def test_the_jdbc_driver_settings_of_older_env_files_are_ignored(tmp_path: Path) -> None:
    current = tmp_path / "current.env"
    current.write_text("POSTGRES_HOST=db.school.example\n")
    older = tmp_path / "older.env"
    older.write_text("POSTGRES_HOST=db.school.example\nPOSTGRES_JDBC_JAR=/nowhere/postgresql-42.7.4.jar\n"
                     "POSTGRES_JDBC_PACKAGE=org.postgresql:postgresql:42.7.4\n")
    environ = {"POSTGRES_JDBC_JAR": "/nowhere/either.jar"}
    assert resolve({}, environ, older) == resolve({}, {}, current)
    assert resolve({}, environ, older).postgres_host == "db.school.example"


def test_the_password_never_shows() -> None:
    secret = Secret("hunter2-very-secret")
    settings = resolve({}, {"POSTGRES_PASSWORD": "hunter2-very-secret"})
    assert settings.postgres_password == secret
    assert "hunter2" not in repr(settings) and "hunter2" not in str(public_view(settings))
    assert "postgres_password" not in public_view(settings)
    assert "hunter2" not in f"{secret} {secret!r}"
    help_text = build_parser("job", "", ANALYSIS_OPTIONS).format_help()
    assert "--postgres-password " not in help_text and "--postgres-password\n" not in help_text


def test_the_password_is_read_from_a_file(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("s3cret\n")
    assert read_password(Secret(""), str(password_file)).reveal() == "s3cret"
    assert read_password(Secret("direct"), str(password_file)).reveal() == "direct"
    with pytest.raises(ConfigurationError, match="cannot read POSTGRES_PASSWORD_FILE"):
        read_password(Secret(""), str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="no PostgreSQL password: set POSTGRES_PASSWORD_FILE"):
        read_password(Secret(""), "")


@pytest.mark.parametrize("job", sorted(JOB_OPTIONS))
def test_job_help_lists_every_variable_and_rejects_a_password_flag(job: str) -> None:
    environment = {"POSTGRES_PASSWORD": "hunter2-very-secret", "PATH": "/usr/bin:/bin"}
    shown = subprocess.run([sys.executable, str(PROJECT_ROOT / job), "--help"], capture_output=True,
                           text=True, env=environment, cwd=PROJECT_ROOT, check=True).stdout
    for option in JOB_OPTIONS[job]:
        if not option.secret:
            assert option.env in shown, option.env
    assert "hunter2" not in shown
    refused = subprocess.run([sys.executable, str(PROJECT_ROOT / job), "--postgres-password", "x"],
                             capture_output=True, text=True, env=environment, cwd=PROJECT_ROOT)
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr
