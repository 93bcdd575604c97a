"""The demo dataset, checked from the outside: its files are read back with pyarrow and pandas
and held against the data contract (batch/core/contract.py) and against the school calendar and
story written here by hand, not against the generator's tables."""
from __future__ import annotations

import hashlib
import json
import re
from datetime import date, time
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.core.contract import RAW_COLUMNS, RAW_COLUMNS_BY_NAME
from devtools.demo import (
    MARKER_FILE,
    DemoDatasetExistsError,
    ensure_demo_dataset,
    generate_demo_dataset,
    holiday_closures_csv,
    main,
    read_demo_dataset_info,
    timetables_csv,
)

# A sparse dataset (a reading per device every ~7 hours) for the contract's cases; the demo
# itself (`--demo`: the defaults) for its school term and story.
READINGS = 5_000
SEED = 7
RANGED_METRICS = ("co2", "humidity", "temperature", "pressure")
INTEGER_MEANING = ("light_level", "pir", "door_status", "door_open_times", "last_open_minutes",
                   "alarm")


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output_dir = tmp_path_factory.mktemp("demo") / "raw"
    generate_demo_dataset(output_dir, readings=READINGS, seed=SEED)
    return output_dir


@pytest.fixture(scope="module")
def readings_pdf(dataset_dir: Path) -> pd.DataFrame:
    return pd.concat([_as_pandas(pq.read_table(f)) for f in _data_files(dataset_dir)],
                     ignore_index=True)


@pytest.fixture(scope="module")
def demo_pdf(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The readings of the demo `./start-spark.sh --demo` analyses, with their local time."""
    output_dir = tmp_path_factory.mktemp("demo-default") / "raw"
    generate_demo_dataset(output_dir)
    columns = ["DevEui", "sendtime", "co2", "institute", "classroom", "profile"]
    readings = pd.concat([_as_pandas(pq.read_table(f, columns=columns)) for f in _data_files(output_dir)],
                         ignore_index=True)
    readings["local"] = readings["sendtime"].dt.tz_convert("Europe/Rome")
    return readings


def _data_files(folder: Path) -> list[Path]:
    """The committed part files: those the streaming sink log names (read here as JSON lines)."""
    paths = set()
    for log_file in (folder / "_spark_metadata").iterdir():
        if log_file.name.startswith("."):
            continue
        version, *entries = log_file.read_text(encoding="utf-8").splitlines()
        assert version == "v1", log_file
        for entry in map(json.loads, entries):
            assert entry["action"] == "add"
            paths.add(Path(unquote(urlparse(entry["path"]).path)))
    return sorted(paths)


def _as_pandas(table: pa.Table) -> pd.DataFrame:
    # Every numeric type the contract allows (int, float, decimal) read as float64: null -> NaN.
    columns = {
        name: column.cast(pa.float64())
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        or pa.types.is_decimal(column.type) else column
        for name, column in zip(table.column_names, table.columns)
    }
    return pa.table(columns).to_pandas()


def _out_of_range(values: pd.Series, metric: str) -> pd.Series:
    """True where a value is present but outside the contract's physical range."""
    spec = RAW_COLUMNS_BY_NAME[metric]
    outside = pd.Series(False, index=values.index)
    if spec.lower is not None:
        outside |= values < spec.lower
    if spec.upper is not None:
        outside |= values > spec.upper
    return outside


def _digests(folder: Path) -> dict[str, str]:
    """The part files and the marker (the sink log holds paths and times, which differ)."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.iterdir()) if path.is_file()}


def test_writes_the_reporting_slots_in_several_files(dataset_dir: Path) -> None:
    files = _data_files(dataset_dir)
    assert len(files) >= 6
    assert all(f.parent == dataset_dir and f.is_file() for f in files)
    # The slots of the late and the stale classroom (3 of 104 devices, a few weeks) stay empty.
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    assert rows == read_demo_dataset_info(dataset_dir).rows
    assert 0.98 * READINGS < rows < READINGS
    assert (dataset_dir / MARKER_FILE).is_file()
    assert not [p for p in dataset_dir.parent.iterdir() if p.name.startswith(".")]


def test_is_a_streaming_sink_with_a_compacted_log_and_an_orphan_part_file(dataset_dir: Path) -> None:
    log = {p.name for p in (dataset_dir / "_spark_metadata").iterdir() if not p.name.startswith(".")}
    assert "3.compact" in log and "0" in log
    committed = {f.name for f in _data_files(dataset_dir)}
    [orphan] = [p for p in dataset_dir.glob("*.parquet") if p.name not in committed]
    # The aborted attempt's readings were written again by its restart, in a committed file.
    again = {f.name: f.read_bytes() for f in _data_files(dataset_dir)}
    assert orphan.read_bytes() in again.values()
    assert read_demo_dataset_info(dataset_dir).uncommitted_files == (orphan.name,)


def test_newest_file_has_every_contract_column_with_its_meaning(dataset_dir: Path) -> None:
    schema = pq.read_schema(_data_files(dataset_dir)[-1])
    for column in RAW_COLUMNS:
        stored = schema.field(column.name).type
        kind = column.spark_type.typeName()
        if kind == "string":
            assert pa.types.is_string(stored), column.name
        elif kind == "timestamp":
            assert stored == pa.timestamp("us", tz="UTC"), column.name
        elif column.name in INTEGER_MEANING:
            assert pa.types.is_integer(stored), column.name
        else:
            assert pa.types.is_floating(stored) or pa.types.is_decimal(stored), column.name


def test_values_have_the_contract_meaning(readings_pdf: pd.DataFrame) -> None:
    assert readings_pdf["DevEui"].dropna().str.fullmatch(r"[0-9A-F]{16}").all()
    assert set(readings_pdf["profile"].dropna()) == {"AM319", "AM103", "WS301"}
    for flag in ("pir", "door_status", "alarm"):
        assert set(readings_pdf[flag].dropna()) == {0.0, 1.0}, flag
    assert readings_pdf["DevEui"].nunique() >= 100
    assert readings_pdf["institute"].nunique() >= 4
    institutes = readings_pdf["institute"].dropna()
    assert institutes.str.contains("'").any()
    assert institutes.map(lambda name: not name.isascii()).any()


def test_every_dirty_case_is_present_in_a_small_share(readings_pdf: pd.DataFrame) -> None:
    small_share = 0.05 * len(readings_pdf)
    for metric in RANGED_METRICS:
        outside = int(_out_of_range(readings_pdf[metric], metric).sum())
        assert 0 < outside < small_share, metric
    unregistered = readings_pdf["institute"].isna()
    assert 0 < unregistered.sum() < small_share
    assert readings_pdf.loc[unregistered, "classroom"].isna().all()
    null_sendtime = readings_pdf["sendtime"].isna()
    assert 0 < null_sendtime.sum() < small_share
    assert 0 < readings_pdf["DevEui"].isna().sum() < small_share
    keyed = readings_pdf[~null_sendtime]
    replays = keyed.duplicated(["DevEui", "sendtime"])
    assert 0 < replays.sum() < small_share
    # A replay is the same uplink stored again: the whole row repeats.
    assert keyed.astype(str).duplicated().sum() == replays.sum()


def test_a_faulty_sensor_sends_nan_which_is_a_value_not_a_null(dataset_dir: Path) -> None:
    # Read with pyarrow alone: pandas would blur NaN and null.
    nan_count = 0
    for path in _data_files(dataset_dir):
        temperature = pq.read_table(path, columns=["temperature"])["temperature"]
        valid = temperature.drop_null().to_numpy()
        nan_count += int(np.isnan(valid).sum())
    assert nan_count > 0


def test_schema_drifts_across_files(dataset_dir: Path) -> None:
    schemas = [pq.read_schema(path) for path in _data_files(dataset_dir)]
    co2_types = {str(schema.field("co2").type) for schema in schemas}
    assert any(t.startswith("int") for t in co2_types)
    assert "double" in co2_types
    assert sum(pa.types.is_decimal(schema.field("co2").type) for schema in schemas) == 1
    assert "tvoc" not in schemas[0].names
    assert "tvoc" in schemas[-1].names
    extra = set(schemas[-1].names) - {column.name for column in RAW_COLUMNS}
    assert extra & {"rssi", "snr"}
    assert not extra & set(schemas[0].names)


def test_a_metric_a_device_does_not_measure_is_null(readings_pdf: pd.DataFrame) -> None:
    door = readings_pdf[readings_pdf["profile"] == "WS301"]
    assert len(door) > 0
    assert door[["co2", "temperature", "humidity"]].isna().all().all()
    assert door["door_status"].notna().all()
    basic = readings_pdf[readings_pdf["profile"] == "AM103"]
    assert basic[["tvoc", "pressure", "light_level", "pir"]].isna().all().all()
    assert basic["co2"].notna().all()
    full = readings_pdf[readings_pdf["profile"] == "AM319"]
    # temperature aside: pandas reads the NaN a faulty sensor sends as missing
    assert full[["co2", "humidity", "pressure", "light_level", "pir"]].notna().all().all()


def test_classroom_names_repeat_across_institutes(readings_pdf: pd.DataFrame) -> None:
    institutes_per_name = readings_pdf.dropna(subset=["institute"]).groupby("classroom")[
        "institute"].nunique()
    assert institutes_per_name.get("3A", 0) >= 2


def test_span_crosses_the_iso_year_boundary(readings_pdf: pd.DataFrame) -> None:
    sendtime = readings_pdf["sendtime"].dropna()
    iso_year = sendtime.dt.isocalendar().year
    assert (iso_year != sendtime.dt.year).any()
    assert sendtime.min() < pd.Timestamp("2025-01-01", tz="UTC") < sendtime.max()
    assert sendtime.max() - sendtime.min() > pd.Timedelta(days=150)


def test_co2_follows_school_hours(readings_pdf: pd.DataFrame) -> None:
    local = readings_pdf["sendtime"].dt.tz_convert("Europe/Rome")
    valid_co2 = readings_pdf["co2"].where(~_out_of_range(readings_pdf["co2"], "co2"))
    night = valid_co2[local.dt.hour < 5]
    lessons = valid_co2[(local.dt.weekday < 5) & local.dt.hour.between(10, 12)
                        & local.dt.month.isin([11, 12, 1, 2, 3])]
    assert 380 <= night.median() <= 460
    assert lessons.quantile(0.75) > 900
    assert (valid_co2 > 1500).any()
    temperature = readings_pdf["temperature"]
    assert temperature[~_out_of_range(temperature, "temperature")].dropna().between(15, 30).all()


def test_same_seed_gives_identical_files(tmp_path: Path, dataset_dir: Path) -> None:
    again = generate_demo_dataset(tmp_path / "again", readings=READINGS, seed=SEED)
    without_marker = lambda folder: {k: v for k, v in _digests(folder).items() if k != MARKER_FILE}  # noqa: E731
    assert without_marker(again.path) == without_marker(dataset_dir)
    other = generate_demo_dataset(tmp_path / "other", readings=READINGS, seed=SEED + 1)
    assert _digests(other.path) != _digests(dataset_dir)


def test_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    output_dir = tmp_path / "raw"
    generate_demo_dataset(output_dir, readings=500, seed=1)
    with pytest.raises(DemoDatasetExistsError):
        generate_demo_dataset(output_dir, readings=600, seed=1)
    info = generate_demo_dataset(output_dir, readings=600, seed=1, force=True)
    assert info.readings == 600
    assert sum(pq.read_metadata(output_dir / name).num_rows for name in info.files) == info.rows
    assert sorted(p.name for p in output_dir.glob("*.parquet")) == sorted(info.files + info.uncommitted_files)
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_ensure_generates_only_when_absent_or_different(tmp_path: Path) -> None:
    output_dir = tmp_path / "raw"
    first = ensure_demo_dataset(output_dir, readings=800, seed=3)
    stamps = {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()}
    again = ensure_demo_dataset(output_dir, readings=800, seed=3)
    assert again == first
    assert {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()} == stamps
    changed = ensure_demo_dataset(output_dir, readings=900, seed=3)
    assert changed.readings == 900 and changed.rows > first.rows
    assert sum(pq.read_metadata(output_dir / name).num_rows for name in changed.files) == changed.rows


def test_ensure_leaves_foreign_data_alone(tmp_path: Path) -> None:
    foreign = tmp_path / "raw"
    foreign.mkdir()
    (foreign / "part-00000.parquet").write_bytes(b"not ours")
    with pytest.raises(DemoDatasetExistsError):
        ensure_demo_dataset(foreign, readings=500, seed=1)
    assert (foreign / "part-00000.parquet").read_bytes() == b"not ours"


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output_dir = tmp_path / "cli"
    arguments = ["--output", str(output_dir), "--readings", "700", "--seed", "5",
                 "--start", date(2025, 11, 3).isoformat(), "--days", "90"]
    assert main(arguments) == 0
    written = sum(pq.read_metadata(path).num_rows for path in _data_files(output_dir))
    assert f"demo dataset: {written} readings of 104 devices" in capsys.readouterr().out
    first_files = {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()}
    # Run again: the same demo dataset is kept as it is, not rewritten.
    assert main(arguments) == 0
    assert {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()} == first_files
    assert main([*arguments, "--force"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()} != first_files
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.parquet").write_bytes(b"not ours")
    assert main(["--output", str(foreign), "--readings", "700"]) != 0
    assert re.search(r"not a demo dataset", capsys.readouterr().err)
    with pytest.raises(SystemExit) as exit_info:
        main(["--readings", "0"])
    assert exit_info.value.code == 2


def test_an_interrupted_run_leaves_no_half_dataset(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import devtools.demo as demo

    output_dir = tmp_path / "raw"
    previous = generate_demo_dataset(output_dir, readings=500, seed=1)
    before = _digests(output_dir)
    real_write_file = demo._write_file
    written: list[Path] = []

    def write_then_fail(path: Path, *args: object) -> int:
        if written:
            raise KeyboardInterrupt
        written.append(path)
        return real_write_file(path, *args)

    monkeypatch.setattr(demo, "_write_file", write_then_fail)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_dataset(output_dir, readings=5_000, seed=2, force=True)
    assert _digests(output_dir) == before
    assert read_demo_dataset_info(output_dir) == previous
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


# --- the demo itself: a school term in Italy, and its story --------------------------------------

# The demo schools' calendar for 2024/25 as a school writes it down (Europe/Rome local time).
TIMETABLES = {  # institute: (lesson days from Monday, lessons [start, end))
    "Liceo Galilei": (6, [(time(8), time(13))]),
    "Istituto Sant'Anna": (5, [(time(8), time(14))]),
    "École Voltaire": (5, [(time(8, 30), time(12)), (time(13, 30), time(16, 30))]),
    "IIS Enrico Fermi": (5, [(time(8), time(14))]),
}
SCHOOL_BREAKS = ("institute,first_date,last_date,reason\n"
                 "*,2024-12-23,2025-01-06,Christmas holidays\n"
                 "*,2025-03-03,2025-03-04,Carnival\n"
                 "*,2025-04-17,2025-04-19,Easter holidays\n")
# Italy's public holidays on weekdays of the term outside the breaks: Easter Monday,
# Liberation Day, Labour Day. Each with a school day close to it.
PUBLIC_HOLIDAYS = {date(2025, 4, 21): date(2025, 4, 14), date(2025, 4, 25): date(2025, 4, 24),
                   date(2025, 5, 1): date(2025, 4, 30)}
MINUTES = pd.Timedelta(minutes=1)


def _valid(readings: pd.DataFrame) -> pd.DataFrame:
    """Readings of registered devices with a time and a device, each uplink once, in order."""
    kept = readings.dropna(subset=["DevEui", "sendtime", "institute"])
    return kept.drop_duplicates(["DevEui", "sendtime"]).sort_values(["DevEui", "sendtime"])


def _in_lessons(readings: pd.DataFrame) -> pd.Series:
    """True for readings inside their institute's timetable (closed days not considered)."""
    clock = readings["local"].dt.time
    weekday = readings["local"].dt.weekday
    inside = pd.Series(False, index=readings.index)
    for institute, (days, ranges) in TIMETABLES.items():
        at_school = (readings["institute"] == institute) & (weekday < days)
        for start, end in ranges:
            inside |= at_school & (clock >= start) & (clock < end)
    return inside


def _rome(local: str) -> pd.Timestamp:
    return pd.Timestamp(local, tz="Europe/Rome")


def _co2(readings: pd.DataFrame) -> pd.Series:
    return readings["co2"].where(~_out_of_range(readings["co2"], "co2"))


def test_the_files_beside_the_demo_list_its_school_breaks_and_timetables() -> None:
    # Public holidays are no closures of the school: the analysis knows them (BATCH_TIMEZONE's country).
    assert holiday_closures_csv(date(2024, 12, 30), 154) == SCHOOL_BREAKS
    assert timetables_csv() == ('institute,timetable\n'
                                'Liceo Galilei,Mon-Sat 08:00-13:00\n'
                                "Istituto Sant'Anna,Mon-Fri 08:00-14:00\n"
                                'École Voltaire,"Mon-Fri 08:30-12:00,13:30-16:30"\n'
                                'IIS Enrico Fermi,Mon-Fri 08:00-14:00\n')


def test_the_demo_spans_iso_weeks_1_to_22_of_2025_across_the_spring_clock_change(
        demo_pdf: pd.DataFrame) -> None:
    sendtime = demo_pdf["sendtime"].dropna()
    assert sendtime.min().floor("D") == pd.Timestamp("2024-12-30", tz="UTC")
    assert pd.Timestamp("2025-06-01 23:30", tz="UTC") < sendtime.max() < pd.Timestamp("2025-06-02", tz="UTC")
    offsets = demo_pdf["local"].dropna().map(lambda instant: instant.utcoffset()).unique()
    assert sorted(offsets) == [pd.Timedelta(hours=1), pd.Timedelta(hours=2)]


def test_each_device_reports_every_5_to_15_minutes_in_school_hours(demo_pdf: pd.DataFrame) -> None:
    readings = _valid(demo_pdf)
    lessons = _in_lessons(readings)
    gap = readings.groupby("DevEui", observed=True)["sendtime"].diff()
    # Between two readings of a device both in the lessons of one day.
    follows = lessons & lessons.shift(1, fill_value=False) & gap.notna() & (gap < pd.Timedelta(hours=1))
    gaps = gap[follows] / MINUTES
    assert len(gaps) > 300_000  # ~100 devices x ~100 school days x ~35
    assert gaps.min() >= 5 and 9.5 < gaps.median() < 10.5
    # Longer only where a dirty row took the place of a reading (a null time or device, a replay).
    dirty = demo_pdf["sendtime"].isna() | demo_pdf["DevEui"].isna() \
        | demo_pdf.dropna(subset=["sendtime"]).duplicated(["DevEui", "sendtime"]).reindex(
            demo_pdf.index, fill_value=False)
    assert 0 < (gaps > 15).sum() <= dirty.sum() < 0.01 * len(demo_pdf)


def test_a_classroom_comes_online_at_1355_on_a_school_day(demo_pdf: pd.DataFrame) -> None:
    readings = _valid(demo_pdf)
    late = readings[(readings["institute"] == "Istituto Sant'Anna") & (readings["classroom"] == "Aula Musica")]
    first = late.groupby("DevEui", observed=True)["local"].min()
    assert len(first) >= 2  # its air and door sensors
    for instant in first:  # on Wednesday 15 January, a school day
        assert _rome("2025-01-15 13:50") <= instant < _rome("2025-01-15 14:00"), instant
    # One reading of its air sensor in that day's lessons (08:00-14:00), against ~36 in the others'.
    that_day = readings[_in_lessons(readings) & (readings["local"].dt.date == date(2025, 1, 15))]
    air = that_day[that_day["profile"].isin(["AM319", "AM103"])]
    per_classroom = air.groupby(["institute", "classroom"], observed=True).size()
    assert per_classroom[("Istituto Sant'Anna", "Aula Musica")] == 1
    assert per_classroom.drop(("Istituto Sant'Anna", "Aula Musica")).min() >= 30


def test_a_classroom_goes_silent_three_weeks_before_the_end_while_its_institute_goes_on(
        demo_pdf: pd.DataFrame) -> None:
    readings = _valid(demo_pdf)
    fermi = readings[readings["institute"] == "IIS Enrico Fermi"]
    last = fermi.groupby("classroom", observed=True)["local"].max()
    stale = last.pop("Lab Chimica")
    assert _rome("2025-05-09 10:45") <= stale < _rome("2025-05-09 11:05"), stale  # a Friday
    assert len(last) == 9 and (last > _rome("2025-06-01 23:00")).all(), last
    lab = fermi[fermi["classroom"] == "Lab Chimica"]
    assert lab["local"].min() < _rome("2024-12-31 00:00")


def test_some_classrooms_pass_the_bb101_peak_for_more_than_20_minutes_and_others_meet_bb101(
        demo_pdf: pd.DataFrame) -> None:
    readings = _valid(demo_pdf)
    readings = readings[_in_lessons(readings) & readings["profile"].isin(["AM319", "AM103"])].copy()
    readings["co2"] = _co2(readings)
    readings["day"] = readings["local"].dt.date
    above = (readings["co2"] > 2000).to_numpy()
    gap = readings.groupby(["DevEui", "day"], observed=True)["sendtime"].diff()
    # An episode: consecutive readings of a device and day above 2000 ppm, each at most 15
    # minutes after the one before; its length here from its first to its last reading.
    continues = above & np.roll(above, 1) & (gap <= pd.Timedelta(minutes=15)).to_numpy()
    readings["episode"] = np.cumsum(~continues)
    episodes = readings[above].groupby("episode").agg(
        institute=("institute", "first"), classroom=("classroom", "first"),
        minutes=("sendtime", lambda times: (times.max() - times.min()) / MINUTES))
    failing = episodes[episodes["minutes"] > 20].groupby(["institute", "classroom"], observed=True).size()
    assert len(failing) >= 5 and failing.index.get_level_values("institute").nunique() >= 2, failing
    daily_mean = readings.groupby(["institute", "classroom", "day"], observed=True)["co2"].mean()
    peak = readings.groupby(["institute", "classroom"], observed=True)["co2"].max()
    meeting = [room for room, worst in peak.items()
               if worst <= 2000 and daily_mean[room].max() < 1500]
    assert len(meeting) >= 10, peak


def test_rooms_are_empty_on_public_holidays_and_in_the_breaks(demo_pdf: pd.DataFrame) -> None:
    readings = _valid(demo_pdf)
    readings = readings[_in_lessons(readings)]
    co2 = _co2(readings)
    day = readings["local"].dt.date
    for holiday, school_day in PUBLIC_HOLIDAYS.items():
        assert co2[day == holiday].max() < 600, holiday
        assert co2[day == school_day].max() > 1500, school_day
    for closed in (date(2025, 1, 2), date(2025, 3, 3), date(2025, 4, 17)):
        assert co2[day == closed].max() < 600, closed


def test_lessons_follow_local_time_across_the_spring_clock_change(demo_pdf: pd.DataFrame) -> None:
    readings = _valid(demo_pdf)
    readings = readings[readings["institute"].isin(["Istituto Sant'Anna", "IIS Enrico Fermi"])]
    co2, local = _co2(readings), readings["local"]
    clock = local.dt.time
    for monday in (date(2025, 3, 24), date(2025, 3, 31)):  # the weeks before and after 30 March
        week = (local.dt.date >= monday) & (local.dt.date < date.fromordinal(monday.toordinal() + 5))
        before = co2[week & (clock >= time(7)) & (clock < time(7, 50))].median()
        lessons = co2[week & (clock >= time(8, 40)) & (clock < time(9, 0))].median()
        assert before < 480 and lessons > before + 200, (monday, before, lessons)


def test_without_readings_each_device_reports_every_10_minutes_over_any_span(tmp_path: Path) -> None:
    info = generate_demo_dataset(tmp_path / "raw", start=date(2025, 5, 5), days=3)
    assert info.readings == 104 * 3 * 24 * 6
    readings = pd.concat([_as_pandas(pq.read_table(f, columns=["DevEui", "sendtime", "institute"]))
                          for f in _data_files(info.path)], ignore_index=True)
    gaps = _valid(readings).groupby("DevEui")["sendtime"].diff().dropna() / MINUTES
    assert 9.5 < gaps.median() < 10.5 and gaps.min() >= 5
