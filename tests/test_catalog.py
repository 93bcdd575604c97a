"""The catalog: one description of everything published, from which the README's list derives."""
from __future__ import annotations

from pathlib import Path

import pytest

from batch.aggregations import GROUPINGS, Thresholds
from batch.catalog import build_catalog, markdown
from batch.schema import TEXT, Column, Table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_lists_what_the_catalog_publishes() -> None:
    # Regenerate with `python -m batch.catalog` and paste into README.md.
    assert markdown(build_catalog(Thresholds(), "UTC")) in README.read_text(encoding="utf-8")


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
        ("classroom_iaq", ("institute", "classroom"))]
    assert catalog.runs.build is None and catalog.runs not in catalog.published_tables


def test_a_table_or_view_declared_twice_is_refused() -> None:
    clash = Table("classroom_stats", "again", ("institute",), (Column("institute", TEXT, "school"),),
                  build=lambda results: results["x"])
    with pytest.raises(ValueError, match="twice"):
        build_catalog(Thresholds(), "UTC", extra_tables=(clash,))
    with pytest.raises(ValueError, match="key columns"):
        Table("t", "d", ("missing",), (Column("institute", TEXT, "school"),))
