"""Configuration: precedence, validation, the documented env file, secrets."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from batch.analysis.job import ANALYSIS_OPTIONS, AnalysisSettings, check_settings
from batch.core.config import (
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
from batch.core.errors import ConfigurationError

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
    ("POSTGRES_PORT", "70000", "expected a TCP port (1 to 65535), got '70000'"),
    ("POSTGRES_PORT", "abc", "expected a TCP port (1 to 65535), got 'abc'"),
    ("BATCH_TIMEZONE", "posix/Europe/Rome", "Java (Spark) does not know: use Europe/Rome"),
    ("BATCH_TIMEZONE", "europe/rome", "did you mean Europe/Rome?"),
    ("IAQ_OUTDOOR_CO2_PPM", "5000", "expected a number from 300 to 600, got '5000'"),
    ("IAQ_TIMETABLE", "", "the timetable is empty"),
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
    # Then the options nobody set (batch.core.cli.load fills it).
    assert [f.name for f in dataclasses.fields(AnalysisSettings)] == [
        o.field for o in ANALYSIS_OPTIONS] + ["options_defaulted"]


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
@pytest.mark.parametrize(("a_directory", "said"), [(False, "does not exist"), (True, "is a directory, not a file")])
def test_a_named_env_file_that_is_missing_or_a_directory_is_called_so(
        named: str, a_directory: bool, said: str, tmp_path: Path) -> None:
    if a_directory:
        (tmp_path / "site.env").mkdir()
    environ = {"BATCH_CALLER_DIR": str(tmp_path)}
    if named == "variable":
        environ["BATCH_ENV_FILE"] = "site.env"
    how = "--env-file" if named == "flag" else "BATCH_ENV_FILE"
    with pytest.raises(ConfigurationError) as raised:
        find_env_file("site.env" if named == "flag" else None, environ, PROJECT_ROOT)
    assert str(raised.value) == f"{how}: env file {tmp_path / 'site.env'} {said}"


def env_file_readers() -> dict[str, tuple[Option, ...]]:
    """Everything that reads env/spark.env, with its options: the two jobs, the report (run by
    the analysis, or on its own) and the launchers."""
    from batch.launcher.launch import LAUNCHER_OPTIONS
    from batch.report.__main__ import REPORT_JOB

    return {**JOB_OPTIONS, "python -m batch.report": REPORT_JOB.options, "the launchers": LAUNCHER_OPTIONS}


@pytest.mark.parametrize("reader", sorted(env_file_readers()))
def test_env_file_documents_every_option_with_its_default(reader: str) -> None:
    documented = dotenv_values(PROJECT_ROOT / "env" / "spark.env")
    text = (PROJECT_ROOT / "env" / "spark.env").read_text()
    options = env_file_readers()[reader]
    missing = [option.env for option in options if option.env not in documented]
    assert missing == [], f"not in env/spark.env: {', '.join(missing)} (options of {reader})"
    # A secret is documented with no value (the default, empty): the shipped file holds none.
    other_values = [f"{option.env}={documented[option.env]} (default: {option.default})"
                    for option in options if (documented[option.env] or "") != option.default]
    assert other_values == [], f"env/spark.env differs from the defaults of {reader}: {'; '.join(other_values)}"
    for option in options:
        lines = text.splitlines()
        index = next(i for i, line in enumerate(lines) if line.startswith(option.env + "="))
        # A comment may explain a block of related variables: skip up over them.
        while index > 0 and "=" in lines[index - 1] and not lines[index - 1].startswith("#"):
            index -= 1
        assert index > 0 and lines[index - 1].startswith("#"), f"{option.env} has no comment"


def test_env_file_documents_only_settings_that_are_read() -> None:
    read = {option.env for options in env_file_readers().values() for option in options}
    stray = sorted(set(dotenv_values(PROJECT_ROOT / "env" / "spark.env")) - read)
    assert stray == [], f"env/spark.env sets what no option reads: {', '.join(stray)}"


@pytest.mark.parametrize("job", sorted(JOB_OPTIONS))
def test_a_job_run_without_its_launcher_names_a_misspelt_variable_too(job: str, tmp_path: Path) -> None:
    env_file = tmp_path / "site.env"
    # LOG_DIR (the launchers') and DOWNLOAD_FORMAT (the downloader's) are settings too.
    env_file.write_text("IAQ_CLOSURE_FILE=closures.csv\nLOG_DIR=logs\nDOWNLOAD_FORMAT=csv\n")
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("POSTGRES_", "IAQ_", "BATCH_", "DOWNLOAD_"))}
    checked = subprocess.run([sys.executable, str(PROJECT_ROOT / job), "--check-config", "--env-file", str(env_file)],
                             capture_output=True, text=True, env={**environment, "POSTGRES_PASSWORD": "x"},
                             cwd=tmp_path)
    assert checked.returncode == 0 and "configuration OK" in checked.stdout, checked.stderr
    warned = [line for line in checked.stderr.splitlines() if "is not a setting" in line]
    assert len(warned) == 1 and warned[0].endswith(
        f"IAQ_CLOSURE_FILE in {env_file} is not a setting of these jobs or their launchers and is "
        "ignored; did you mean IAQ_CLOSURES_FILE?"), checked.stderr


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


# --- the time zone: right by default, and a warning when it is UTC or nobody set it --------

@pytest.mark.parametrize(("argv", "environ", "env_file_text", "warned"), [
    # Nobody set it: the built-in default, Europe/Rome, and a warning that says so.
    ([], {}, "", "occupied hours are evaluated in Europe/Rome, the built-in default"),
    # Set to UTC, or one of its names, anywhere: a warning that it is UTC.
    ([], {"BATCH_TIMEZONE": "UTC"}, "", "occupied hours are evaluated in UTC (BATCH_TIMEZONE=UTC)"),
    (["--batch-timezone", "Etc/UTC"], {}, "", "in UTC (BATCH_TIMEZONE=Etc/UTC)"),
    ([], {}, "BATCH_TIMEZONE=GMT\n", "in UTC (BATCH_TIMEZONE=GMT)"),
    ([], {"BATCH_TIMEZONE": "Zulu"}, "", "in UTC (BATCH_TIMEZONE=Zulu)"),
    # Set explicitly to a school's zone, by flag, environment or env file: no warning.
    (["--batch-timezone", "Europe/Rome"], {}, "", None),
    ([], {"BATCH_TIMEZONE": "Europe/Rome"}, "", None),
    ([], {}, "BATCH_TIMEZONE=Europe/Rome\n", None),
    # Europe/London is UTC+0 in winter only: not UTC.
    ([], {}, "BATCH_TIMEZONE=Europe/London\n", None),
])
def test_a_time_zone_in_utc_or_left_on_the_default_is_warned_about(
        tmp_path: Path, argv: list[str], environ: dict[str, str], env_file_text: str,
        warned: str | None) -> None:
    from batch.analysis.job import ANALYSIS_JOB, settings_warnings
    from batch.core.cli import load

    env_file = tmp_path / "spark.env"
    env_file.write_text(env_file_text)
    loaded = load(ANALYSIS_JOB, [*argv, "--env-file", str(env_file)], tmp_path,
                  {"POSTGRES_PASSWORD": "x", "BATCH_CALLER_DIR": str(tmp_path), **environ})
    warnings = settings_warnings(loaded.settings)
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warned in warnings[0], warnings
    assert ("batch_timezone" in loaded.settings.options_defaulted) == (warned is not None and not (
        argv or environ or env_file_text))


def test_the_shipped_env_file_sets_europe_rome() -> None:
    # The option's default and the shipped file agree (test_env_file_documents_every_option_
    # with_its_default), and the file sets it: a run with env/spark.env does not warn.
    assert dotenv_values(Path(__file__).resolve().parent.parent / "env" / "spark.env")[
        "BATCH_TIMEZONE"] == "Europe/Rome"


# --- issue 20: every value checked completely, in the project's words ----------------------------

def _every_option() -> list[Option]:
    return [option for options in JOB_OPTIONS.values() for option in options]


@pytest.mark.parametrize("garbage", ["abc", "1.5.2", "1e999", "", " ", "12abc", "x,y,z", "a-b"])
def test_no_option_answers_in_python_s_own_words(garbage: str) -> None:
    """Every option's parser refuses garbage with ConfigurationError naming the source and the
    value, never "invalid literal for int()" or "could not convert string to float"."""
    for option in _every_option():
        try:
            resolve_options([option], {}, {option.env: garbage}, None)
        except ConfigurationError as error:
            message = str(error)
            assert message.startswith(f"environment variable {option.env}: "), message
            for python_words in ("invalid literal", "could not convert", "base 10"):
                assert python_words not in message, (option.env, message)


JAVA_ZONE_CHECK = """
import java.time.ZoneId;
public class ZoneCheck {
    public static void main(String[] names) {
        // As Spark resolves spark.sql.session.timeZone and from_utc_timestamp's zone.
        for (String name : names) {
            try { ZoneId.of(name, ZoneId.SHORT_IDS); System.out.println("ok " + name); }
            catch (Exception e) { System.out.println("no " + name); }
        }
    }
}
"""


def _java() -> str | None:
    import shutil
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").is_file():
        return str(Path(java_home, "bin", "java"))
    return shutil.which("java")


def test_batch_timezone_accepts_exactly_the_zones_java_knows(tmp_path: Path) -> None:
    """Every zone Python's zoneinfo can read - its list, the posix/ and right/ copies, the
    links - is accepted by BATCH_TIMEZONE exactly when the JDK on this machine resolves it."""
    from zoneinfo import available_timezones

    from batch.core.config import parse_timezone

    java = _java()
    if java is None:
        pytest.skip("no Java runtime on this machine")
    candidates = sorted(available_timezones() | {"localtime", "posixrules", "Factory", "ROC"}
                        | {f"{prefix}/{zone}" for prefix in ("posix", "right")
                           for zone in ("Europe/Rome", "UTC", "America/New_York", "Asia/Taipei")})
    source = tmp_path / "ZoneCheck.java"
    source.write_text(JAVA_ZONE_CHECK)
    answer = subprocess.run([java, str(source), *candidates], capture_output=True, text=True,
                            check=True, timeout=300).stdout.split("\n")
    java_knows = {line[3:] for line in answer if line.startswith("ok ")}
    assert len(java_knows) + sum(line.startswith("no ") for line in answer) == len(candidates)

    def accepted(zone: str) -> bool:
        try:
            parse_timezone(zone)
        except ValueError:
            return False
        return True

    python_reads = {zone for zone in candidates if _zoneinfo_reads(zone)}
    wrong = {zone: ("accepted" if accepted(zone) else "refused", "Java knows it" if zone in java_knows
                    else "Java does not")
             for zone in python_reads if accepted(zone) != (zone in java_knows)}
    assert wrong == {}
    assert {"posix/Europe/Rome", "right/UTC", "ROC", "localtime"} <= python_reads - java_knows


def _zoneinfo_reads(zone: str) -> bool:
    from zoneinfo import ZoneInfo
    try:
        ZoneInfo(zone)
    except Exception:  # noqa: BLE001 - any refusal: not a zone Python reads
        return False
    return True


def test_a_mixed_case_schema_is_folded_to_lower_case_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        settings = resolve({}, {"POSTGRES_SCHEMA": "Probe_TT"})
    assert settings.postgres_schema == "probe_tt"
    assert [record.getMessage() for record in caplog.records] == [
        "POSTGRES_SCHEMA Probe_TT folded to lower case: publishing to schema probe_tt, as "
        "PostgreSQL reads the unquoted name Probe_TT"]
    caplog.clear()
    assert resolve({}, {"POSTGRES_SCHEMA": "probe_tt"}).postgres_schema == "probe_tt"
    assert caplog.records == []


def test_an_empty_password_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("\n")
    with pytest.raises(ConfigurationError) as raised:
        read_password(Secret(""), str(password_file))
    assert str(raised.value) == f"POSTGRES_PASSWORD_FILE {password_file} is empty: write the password in it"


def test_variables_of_an_env_file_that_no_option_reads_are_named_with_the_closest_one(tmp_path: Path) -> None:
    from batch.core.config import unknown_variables
    from batch.launcher.launch import LAUNCHER_OPTIONS

    env_file = tmp_path / "site.env"
    env_file.write_text("BATCH_TIMEZON=Europe/Rome\nIAQ_CLOSURE_FILE=closures.csv\nLOG_DIR=logs\n"
                        "DOWNLOAD_FORMAT=csv\nPOSTGRES_JDBC_JAR=/old.jar\nZZZ_QQQ=1\n")
    known = {option.env for option in (*_every_option(), *LAUNCHER_OPTIONS)}
    assert unknown_variables(env_file, known) == [
        f"BATCH_TIMEZON in {env_file} is not a setting of these jobs or their launchers and is "
        "ignored; did you mean BATCH_TIMEZONE?",
        f"IAQ_CLOSURE_FILE in {env_file} is not a setting of these jobs or their launchers and is "
        "ignored; did you mean IAQ_CLOSURES_FILE?",
        f"ZZZ_QQQ in {env_file} is not a setting of these jobs or their launchers and is ignored",
    ]
