"""The catalog: one description of everything published, from which the README's list and the
reference docs/tables.md derive."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from batch.analysis.statistics import GROUPINGS
from batch.core.thresholds import Thresholds
from batch.analysis.catalog import (
    REFERENCE_COMMAND,
    RUN_RECORD_COLUMNS,
    build_catalog,
    default_reference,
    markdown,
)
from batch.analysis.job import RunSummary
from batch.core.schema import TEXT, Column, Table

PROJECT = Path(__file__).resolve().parent.parent
README = PROJECT / "README.md"
TABLES_REFERENCE = PROJECT / "docs" / "tables.md"


def test_the_readme_lists_what_the_catalog_publishes() -> None:
    # Regenerate with `python -m batch.analysis.catalog` and paste into README.md.
    assert markdown(build_catalog(Thresholds(), "UTC")) in README.read_text(encoding="utf-8")


def test_the_tables_reference_is_what_the_catalog_generates() -> None:
    assert TABLES_REFERENCE.read_text(encoding="utf-8") == default_reference(), (
        f"docs/tables.md is stale: regenerate it with `{REFERENCE_COMMAND}`")


def test_the_tables_reference_shows_every_column_with_its_type_unit_and_comment() -> None:
    # Read back without the generator: every catalog column is one row of its table's section
    # (no comment holds a pipe today; one would be escaped), every view has a section.
    catalog = build_catalog(Thresholds(), "Europe/Rome")
    text = TABLES_REFERENCE.read_text(encoding="utf-8")
    sections = {section.split("\n", 1)[0]: section for section in text.split("\n## ")[1:]}
    for table in (*catalog.published_tables, catalog.runs):
        section = sections[f"`{table.name}`"]
        assert table.description in section
        for column in table.columns:
            row = f"| `{column.name}` | {column.type.sql} | {column.unit} | {column.comment} |"
            assert row in section.splitlines(), (table.name, column.name)
    for view in catalog.views:
        assert view.description in sections[f"`{view.name}` (view)"]
    assert "local to Europe/Rome (BATCH_TIMEZONE)" in sections["`classroom_weekly_stats`"]
    assert "| `co2_share_above_high` | double precision | " in sections["`classroom_stats`"]


def test_comments_name_the_settings_they_depend_on() -> None:
    catalog = build_catalog(Thresholds(co2_high_ppm=900), "Europe/Rome")
    weekly = catalog.table("classroom_weekly_stats")
    assert "Europe/Rome" in weekly.description
    comments = {column.name: column.comment for column in weekly.columns}
    assert "900 ppm (CO2_HIGH_PPM)" in comments["co2_share_above_high"]
    assert comments["co2_count"].startswith("number of valid values of CO2 concentration")
    # The whole-period table has no local dates to speak of.
    assert "BATCH_TIMEZONE" not in catalog.table("classroom_stats").description
    assert "Europe/Rome" in catalog.views[0].description


def test_every_grouping_is_a_published_table_keyed_as_declared() -> None:
    catalog = build_catalog(Thresholds(), "UTC")
    assert [(table.name, table.key) for table in catalog.published_tables] == [
        (grouping.table, grouping.key_names) for grouping in GROUPINGS] + [
        ("classroom_daily_iaq", ("institute", "classroom", "local_date")),
        ("classroom_weekly_iaq", ("institute", "classroom", "iso_year", "iso_week", "week_start")),
        ("classroom_iaq", ("institute", "classroom")),
        ("device_daily_health", ("dev_eui", "local_date")),
        ("device_health", ("dev_eui",))]
    assert not catalog.runs.published and catalog.runs not in catalog.published_tables


def test_a_table_or_view_declared_twice_is_refused() -> None:
    clash = Table("classroom_stats", "again", ("institute",), (Column("institute", TEXT, "school"),))
    with pytest.raises(ValueError, match="twice"):
        build_catalog(Thresholds(), "UTC", extra_tables=(clash,))
    with pytest.raises(ValueError, match="key columns"):
        Table("t", "d", ("missing",), (Column("institute", TEXT, "school"),))


def test_the_run_record_is_every_column_of_batch_runs_the_sink_does_not_set_itself() -> None:
    # The run's summary fills them, each from its field of the same name; the sink sets the
    # key, the state, what the run started with and the rows it published.
    assert RUN_RECORD_COLUMNS == (
        "input_files", "skipped_files", "uncommitted_files", "files_lacking_required_columns",
        "mode", "mode_reason", "input_files_new", "input_files_changed", "input_files_removed",
        "readings_read_this_run", "device_days_recomputed",
        "rows_read", "rows_used", "rows_excluded", "values_nulled", "phase_seconds",
        "error_message", "warnings")
    fields = {field.name for field in dataclasses.fields(RunSummary)}
    assert [name for name in RUN_RECORD_COLUMNS if name not in fields] == []
    summary = RunSummary(job="analysis", input_path="/raw", rows_read=7, error_message="why",
                         rows_written={"classroom_weekly_stats": 3})
    assert summary.run_record() == {
        "input_files": None, "skipped_files": None, "uncommitted_files": None,
        "files_lacking_required_columns": None, "mode": None, "mode_reason": None,
        "input_files_new": None, "input_files_changed": None, "input_files_removed": None,
        "readings_read_this_run": None, "device_days_recomputed": None, "rows_read": 7, "rows_used": None,
        "rows_excluded": None, "values_nulled": None, "phase_seconds": {},
        "error_message": "why", "warnings": []}
