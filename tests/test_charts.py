"""The report's charts (batch/report/charts.py, written by batch/report/svg.py) for small
hand-made inputs: parsed back as XML, they hold the cells, points, bars and labels worked out
by hand. tests/test_report.py shows them in a real browser."""
from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ElementTree

from markupsafe import Markup

from batch.core.thresholds import Thresholds
from batch.report import charts
from batch.report.queries import Bb101Failures, ClassroomWeekCo2, InstituteWeek, RunLimits

SVG = "{http://www.w3.org/2000/svg}"
W10, W11, W12, W13, W14, W15 = (dt.date(2025, 3, 3) + dt.timedelta(weeks=k) for k in range(6))
# CO2_HIGH_PPM 1,000, CO2_VERY_HIGH_PPM 1,500, BB101 peak 2,000, outdoor air 400: the scale's
# stops are 400 #1a9850, 800 #91cf60, 1,000 #fee08b, 1,500 #fc8d59, 2,000 #d73027, 2,500 #67001f.
LIMITS = RunLimits()
HOSTILE = "<b>2B & \"x\"</b>"


def parse(chart: Markup) -> ElementTree.Element:
    return ElementTree.fromstring(str(chart))


def texts(root: ElementTree.Element) -> list[str]:
    return [element.text or "" for element in root.iter(f"{SVG}text")]


def pairs(d: str) -> list[tuple[float, float]]:
    """The (x, y) pairs of a path's M and L commands."""
    return [(float(x), float(y)) for x, y in re.findall(r"[ML](-?[\d.]+) (-?[\d.]+)", d)]


def cell(classroom: str, monday: dt.date, ppm: float | None) -> ClassroomWeekCo2:
    return ClassroomWeekCo2("Liceo", classroom, monday, *monday.isocalendar()[:2], ppm)


def test_the_heatmap_colours_each_cell_by_its_ppm_and_missing_ones_grey() -> None:
    cells = [cell("1A", W10, 812.5), cell("1A", W11, 1100.0), cell(HOSTILE, W10, 3000.0),
             cell(HOSTILE, W11, None), cell(HOSTILE, W12, 1000.0)]  # 1A has no row in W12
    root = parse(charts.co2_heatmap(cells, [W10, W11, W12], LIMITS, "Liceo: weekly CO2", "heatmap-7"))
    assert (root.get("class"), root.get("data-chart"), root.get("role")) == ("chart-svg", "heatmap-7", "img")
    assert root.find(f"{SVG}title").text == "Liceo: weekly CO2"
    width = float(root.get("viewBox").split()[2])
    assert root.get("style") == f"max-width: {width * 4 / 3:.0f}px; min-width: {width:.0f}px"
    colours = {}
    for path in root.find(f"{SVG}g[@class='cells']"):
        for column, row in re.findall(r"M(\d+) (\d+)h1v1h-1z", path.get("d")):
            colours[int(row), int(column)] = path.get("fill")
    # Rows sorted by name ("1A" before "<b>..."); by hand, interpolating in RGB:
    # 812.5: 1/16 of the way from #91cf60 (145, 207, 96) to #fee08b (254, 224, 139) = (152, 208, 99);
    # 1,100: 1/5 of the way from #fee08b to #fc8d59 (252, 141, 89) = (254, 207, 129);
    # 3,000: above the scale's top, its top colour; 1,000: exactly the stop.
    assert colours == {(0, 0): "#98d063", (0, 1): "#fecf81", (0, 2): charts.NO_DATA_COLOUR,
                       (1, 0): "#67001f", (1, 1): charts.NO_DATA_COLOUR, (1, 2): "#fee08b"}
    shown = texts(root)
    for label in ("1A", HOSTILE, "2025-W10", "2025-W11", "2025-W12", "classroom", "ISO week",
                  "400", "1,000", "1,500", "2,000", "2,500", "CO2, ppm"):
        assert label in shown
    stops = root.findall(f".//{SVG}linearGradient[@id='heatmap-7-scale']/{SVG}stop")
    assert [(stop.get("offset"), stop.get("stop-color")) for stop in stops] == [
        ("0", "#1a9850"), ("0.19", "#91cf60"), ("0.29", "#fee08b"), ("0.52", "#fc8d59"),
        ("0.76", "#d73027"), ("1", "#67001f")]  # (ppm - 400) / 2,100


def institute_week(monday: dt.date, co2: float | None, temperature: float | None) -> InstituteWeek:
    return InstituteWeek("Liceo", monday, *monday.isocalendar()[:2], co2, temperature)


# W12 has no CO2 value, W14 no row at all: the line is broken at both.
TREND = [institute_week(W10, 800.0, 21.0), institute_week(W11, 1200.0, 22.0),
         institute_week(W12, None, 23.0), institute_week(W13, 900.0, 24.0),
         institute_week(W15, 1300.0, 19.0)]


def test_the_co2_line_has_a_point_a_week_with_a_value_and_gaps_where_there_is_none() -> None:
    root = parse(charts.co2_trend_chart(TREND, Thresholds(), "Liceo: weekly CO2", "co2-trend-7"))
    assert root.get("data-chart") == "co2-trend-7" and root.get("style").startswith("max-width: ")
    line = root.find(f"{SVG}path[@class='series']").get("d")
    # Three runs: W10-W11, W13 alone, W15 alone.
    assert line.count("M") == 3 and len(pairs(line)) == 4
    assert root.find(f"{SVG}path[@class='markers']").get("d").count("M") == 4  # a dot a point
    (x10, y800), (x11, y1200), (x13, y900), (x15, y1300) = pairs(line)
    # Weeks evenly spaced (W14, absent, keeps its place); the values on one linear scale.
    assert abs((x13 - x11) - 2 * (x11 - x10)) < 0.05 and abs((x15 - x13) - 2 * (x11 - x10)) < 0.05
    assert abs((y800 - y1200) - 4 * (y800 - y900)) < 0.05 and abs((y800 - y1300) - 5 * (y800 - y900)) < 0.05
    ((_, limit_y), _) = pairs(root.find(f"{SVG}path[@class='limit']").get("d"))
    assert abs((y800 - limit_y) - 2 * (y800 - y900)) < 0.05  # CO2_HIGH_PPM, 1,000
    shown = texts(root)
    for label in ("Liceo: weekly CO2", "CO2, ppm", "weekly CO2 mean", "1,000 ppm",
                  "week (Monday it starts on)", "03 Mar", "17 Mar", "31 Mar"):
        assert label in shown


def test_the_temperature_line_shows_the_comfort_band() -> None:
    root = parse(charts.temperature_trend_chart(TREND, Thresholds(comfort_min_c=20.0, comfort_max_c=25.0),
                                                "Liceo: weekly temperature", "temperature-trend-7"))
    line = root.find(f"{SVG}path[@class='series']").get("d")
    assert line.count("M") == 2 and len(pairs(line)) == 5  # W10-W13, then W15 after W14's gap
    (_, y21), (_, y22), *_ = pairs(line)
    band = [float(value) for value in re.findall(r"-?[\d.]+", root.find(f"{SVG}path[@class='limit']").get("d"))]
    _, top, _, height = band[:4]  # M x y h width v height ...
    assert abs(top - (y21 - 4 * (y21 - y22))) < 0.05  # 25 °C
    assert abs(height - 5 * (y21 - y22)) < 0.05  # 20-25 °C
    assert {"temperature, °C", "weekly temperature mean", "comfort 20–25 °C"} <= set(texts(root))


def bar_widths(root: ElementTree.Element, fill: str) -> list[float]:
    return [float(re.search(r"h(-?[\d.]+)", path.get("d")).group(1))
            for path in root.iter(f"{SVG}path") if path.get("fill") == fill and "v" in path.get("d")]


def test_the_bb101_ranking_has_a_bar_of_judged_and_of_failed_days_per_classroom() -> None:
    root = parse(charts.bb101_chart([Bb101Failures("Liceo", "1A", 10, 4), Bb101Failures("Liceo", HOSTILE, 5, 1)],
                                    "Liceo: school days failing BB101", "bb101-7"))
    judged, failed = bar_widths(root, charts.NO_DATA_COLOUR), bar_widths(root, "#b2182b")
    assert len(judged) == 2 + 1 and len(failed) == 2 + 1  # and the legend's samples (20 pt)
    assert abs(failed[0] / judged[0] - 0.4) < 0.01 and abs(judged[1] / judged[0] - 0.5) < 0.01
    assert abs(failed[1] / judged[0] - 0.1) < 0.01
    assert {"1A", HOSTILE, "classroom", "judged school days", "failing BB101"} <= set(texts(root))


def test_the_phase_chart_lists_the_phases_in_the_order_they_run_with_their_seconds() -> None:
    root = parse(charts.phase_chart({"publish": 3.75, "read": 12.5, "zz.extra": 1.0}, "Run time", "phases"))
    shown = texts(root)
    assert [label for label in shown if label in ("read", "publish", "zz.extra")] == ["read", "publish", "zz.extra"]
    assert {"12.5 s", "3.8 s", "1.0 s", "wall time, seconds", "phase"} <= set(shown)
    read, publish, extra = bar_widths(root, "#4a5568")
    assert abs(publish / read - 0.3) < 0.01 and abs(extra / read - 0.08) < 0.01
