"""The report's charts: Matplotlib figures written as inline, scalable SVG.

Text stays text (searchable, escaped by Matplotlib); no JavaScript, no external resource.
Every limit a chart draws is the run's (queries.RunLimits), never a constant of its own.
"""
from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import matplotlib
import matplotlib.colors
import matplotlib.dates
import matplotlib.font_manager
import matplotlib.textpath
import matplotlib.ticker
import matplotlib.transforms
import numpy as np
from markupsafe import Markup
from matplotlib.figure import Figure

from batch.core.thresholds import Thresholds
from batch.report.queries import Bb101Failures, ClassroomWeekCo2, InstituteWeek, RunLimits

# The BB101 ranking charts this many classrooms of an institute (its table lists them all).
RANKING_ROWS_CHARTED = 15
# Longer names are shortened on chart axes (the tables show them in full).
CHART_LABEL_CHARS = 28

_RC = {
    # Text stays text (small, searchable; Matplotlib escapes it), never parsed as TeX math:
    # a name holding `$` is a name.
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.family": "DejaVu Sans",  # shipped with Matplotlib: its layout matches the text
    "font.size": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
# Most charts are drawn this wide (inches): shrunk to a phone's width, 12 pt text stays legible.
NARROW_INCHES = 4.8
NO_DATA_COLOUR = "#d9d9d9"
# The heatmap's colour scale runs from outdoor air (no room is below it) to this far above the
# highest limit: the colours turn at the limits (`co2_colour_stops`).
CO2_SCALE_HEADROOM_PPM = 500.0
# Measures text without a renderer (points, as the charts' fonts are sized in).
_TEXT_METRICS = matplotlib.textpath.TextToPath()
_SVG_HEADER = re.compile(r"\A.*?(?=<svg\b)", re.S)
_SVG_SIZE = re.compile(r'\s(?:width|height)="[^"]*"')
_SVG_VIEWBOX_WIDTH = re.compile(r'viewBox="[-\d.]+ [-\d.]+ ([\d.]+) ')


def _svg(figure: Figure, chart_id: str, scrolls: bool = False) -> Markup:
    """`figure` as an inline, scalable <svg> element (sized by CSS through its viewBox).

    A chart is shown at most at its natural size (a point is 4/3 CSS pixels), narrower when
    the screen is. One that `scrolls` keeps at least one CSS pixel per point: on a phone it
    scrolls sideways in its frame rather than shrink its text below legibility.
    """
    buffer = io.StringIO()
    # The salt makes clip-path ids unique per chart: several SVGs share one HTML document.
    with matplotlib.rc_context({**_RC, "svg.hashsalt": chart_id}):
        # Place the axes by the constrained layout once, then keep them there: with a layout
        # engine set, savefig would draw the whole figure twice and lay it out at each draw.
        figure.get_layout_engine().execute(figure)
        figure.set_layout_engine(None)
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = _SVG_HEADER.sub("", buffer.getvalue(), count=1)
    opening, rest = text.split(">", 1)
    opening = _SVG_SIZE.sub("", opening) + f' class="chart-svg" data-chart="{chart_id}" role="img"'
    width = float(_SVG_VIEWBOX_WIDTH.search(opening).group(1))
    opening += f' style="max-width: {width * 4 / 3:.0f}px'
    opening += f'; min-width: {width:.0f}px"' if scrolls else '"'
    # Matplotlib wrote this markup and escaped every text in it.
    return Markup(opening + ">" + rest)


def _figure(width: float, height: float) -> Figure:
    # 72 dpi, the SVG backend's: the layout is measured at the resolution it is written at.
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), dpi=72, layout="constrained")


def _label_inches(names: Iterable[str]) -> float:
    """About how wide the longest of `names` is as a 12 pt axis label, and the axis title beside it."""
    return 0.6 + 0.09 * max((len(short_name(name)) for name in names), default=0)


def short_name(name: str) -> str:
    return name if len(name) <= CHART_LABEL_CHARS else name[:CHART_LABEL_CHARS - 1] + "…"


def _set_title(figure: Figure, title: str) -> None:
    """Title the chart from the figure's left edge, wrapped to its width (long names would overflow)."""
    # Bold 13 pt DejaVu Sans: about 8 average characters an inch, fewer wide ones (w, <, M).
    characters = int(figure.get_figwidth() * 7)
    figure.suptitle("\n".join(textwrap.wrap(title, characters)), x=0.01, ha="left",
                    fontsize=13, fontweight="bold")


def week_label(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def co2_bands(limits: RunLimits) -> tuple[float, float, float]:
    """The limits the heatmap's colours turn at: CO2_HIGH_PPM, CO2_VERY_HIGH_PPM, the BB101 peak."""
    return (limits.thresholds.co2_high_ppm, limits.thresholds.co2_very_high_ppm,
            limits.iaq_bb101_peak_co2_ppm)


def co2_scale(limits: RunLimits) -> tuple[float, float]:
    """The heatmap's lowest and highest ppm: outdoor air, and above the highest limit."""
    return limits.iaq_outdoor_co2_ppm, max(co2_bands(limits)) + CO2_SCALE_HEADROOM_PPM


def co2_colour_stops(limits: RunLimits) -> list[tuple[float, str]]:
    """(ppm, colour) anchors of the heatmap's scale, in ppm order: greens up to the first limit,
    then the hue turns at each limit (a run's limits need not be in this order)."""
    floor, ceiling = co2_scale(limits)
    high, very_high, peak = co2_bands(limits)
    stops = [(floor, "#1a9850"), (high * 0.8, "#91cf60"), (high, "#fee08b"),
             (very_high, "#fc8d59"), (peak, "#d73027"), (ceiling, "#67001f")]
    return sorted((min(max(ppm, floor), ceiling), colour) for ppm, colour in stops)


def co2_heatmap(cells: Sequence[ClassroomWeekCo2], weeks: Sequence[date], limits: RunLimits,
                title: str, chart_id: str) -> Markup:
    """Classroom x ISO week, each cell coloured by its weekly CO2 on the run's limits' scale."""
    classrooms = sorted({cell.classroom for cell in cells})
    row_of = {name: row for row, name in enumerate(classrooms)}
    column_of = {monday: column for column, monday in enumerate(weeks)}
    grid = np.full((len(classrooms), len(weeks)), np.nan)
    for cell in cells:
        if cell.co2_ppm is not None:
            grid[row_of[cell.classroom], column_of[cell.week_start]] = cell.co2_ppm
    floor, ceiling = co2_scale(limits)
    colours = matplotlib.colors.LinearSegmentedColormap.from_list(
        "co2", [((ppm - floor) / (ceiling - floor), colour) for ppm, colour in co2_colour_stops(limits)])
    colours.set_bad(NO_DATA_COLOUR)
    # The grid, never so small that the colour bar beside it cannot show its ticks, with room
    # for the longest classroom label, the week labels, the title and the colour bar.
    grid_width, grid_height = max(2.5, 0.17 * len(weeks)), max(1.8, 0.26 * len(classrooms))
    figure = _figure(max(NARROW_INCHES, _label_inches(classrooms) + 1.4 + grid_width),
                     grid_height + 2.0)
    with matplotlib.rc_context(_RC):
        axes = figure.add_subplot()
        # One image of one pixel per cell (the browser scales it up without smoothing), not a
        # path per cell: thousands of cells cost what one does.
        mesh = axes.imshow(np.ma.masked_invalid(grid), cmap=colours, vmin=floor,
                           vmax=ceiling, interpolation="none", aspect="auto",
                           extent=(0, len(weeks), len(classrooms), 0))
        axes.plot(*_cell_borders(len(weeks), len(classrooms)), color="white", linewidth=0.5)
        axes.set(xlim=(0, len(weeks)), ylim=(len(classrooms), 0))  # first classroom on top
        _category_labels(axes, "y", np.arange(len(classrooms)) + 0.5,
                         [short_name(name) for name in classrooms], "classroom")
        step = max(1, len(weeks) // 26)
        _category_labels(axes, "x", np.arange(0, len(weeks), step) + 0.5,
                         [week_label(monday) for monday in weeks[::step]], "ISO week")
        for side in ("left", "bottom"):
            axes.spines[side].set_visible(False)
        _set_title(figure, title)
        # A bar 0.15 inch wide along the whole grid, whatever the grid's size.
        bar = figure.colorbar(mesh, ax=axes, location="right", fraction=0.15 / grid_width,
                              aspect=grid_height / 0.15, pad=0.01, extend="max")
        bar.set_ticks(sorted({floor, *co2_bands(limits), ceiling}))
        bar.ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
        for limit in co2_bands(limits):
            bar.ax.axhline(limit, color="black", linewidth=0.8)
        bar.set_label("CO2, ppm")
    return _svg(figure, chart_id, scrolls=True)


def _cell_borders(columns: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y of the lines between the cells of a `rows` x `columns` grid, as one polyline
    broken by NaN (one path to draw, where a line per border would be one each)."""
    xs = [(k, k, np.nan) for k in range(1, columns)] + [(0, columns, np.nan)] * (rows - 1)
    ys = [(0, rows, np.nan)] * (columns - 1) + [(k, k, np.nan) for k in range(1, rows)]
    return np.array(xs, dtype=float).ravel(), np.array(ys, dtype=float).ravel()


def _category_labels(axes: Any, axis: str, positions: Sequence[float], labels: Sequence[str],
                     title: str) -> None:
    """Label the rows ("y") or columns ("x", written upwards) of a grid at `positions`, in data
    units, with plain texts beside the axes instead of ticks (a tick is four artists, built,
    measured and drawn at each layout pass, and a heatmap has dozens); `title` names the axis,
    beyond the longest label."""
    gap_points = 4.0
    font = matplotlib.font_manager.FontProperties(family=_RC["font.family"], size=_RC["font.size"])
    longest = max((_TEXT_METRICS.get_text_width_height_descent(label, font, ismath=False)[0]
                   for label in labels), default=0.0)
    shift = (-gap_points / 72, 0) if axis == "y" else (0, -gap_points / 72)
    gap = matplotlib.transforms.ScaledTranslation(*shift, axes.figure.dpi_scale_trans)
    if axis == "y":
        axes.set_yticks([])
        place = matplotlib.transforms.blended_transform_factory(axes.transAxes, axes.transData)
        for position, label in zip(positions, labels):
            axes.text(0, position, label, transform=place + gap, ha="right", va="center",
                      clip_on=False)
        axes.set_ylabel(title, labelpad=longest + 2 * gap_points)
    else:
        axes.set_xticks([])
        place = matplotlib.transforms.blended_transform_factory(axes.transData, axes.transAxes)
        for position, label in zip(positions, labels):
            axes.text(position, 0, label, transform=place + gap, ha="center", va="top",
                      rotation=90, clip_on=False)
        axes.set_xlabel(title, labelpad=longest + 2 * gap_points)


def bb101_chart(failures: Sequence[Bb101Failures], title: str, chart_id: str) -> Markup:
    """Horizontal bars: judged school days failing BB101 per classroom, worst at the top."""
    shown = list(failures[:RANKING_ROWS_CHARTED])
    figure = _figure(max(NARROW_INCHES, _label_inches(row.classroom for row in shown) + 3.0),
                     1.8 + 0.32 * max(1, len(shown)))
    with matplotlib.rc_context(_RC):
        axes = figure.add_subplot()
        positions = np.arange(len(shown))
        axes.barh(positions, [row.judged_days for row in shown], color="#d9d9d9",
                  label="judged school days")
        axes.barh(positions, [row.days_failed for row in shown], color="#b2182b",
                  label="failing BB101")
        axes.set_yticks(positions, [short_name(row.classroom) for row in shown])
        axes.invert_yaxis()
        axes.xaxis.get_major_locator().set_params(integer=True)
        # The weeks are named in the caption: listed here, they outgrew a narrow chart.
        axes.set_xlabel("judged school days")
        axes.set_ylabel("classroom")
        _set_title(figure, title)
        figure.legend(loc="outside lower center", ncols=2, frameon=False, fontsize=10)
    return _svg(figure, chart_id)


def _weekly_line(weeks: Sequence[InstituteWeek], values: Sequence[float | None], colour: str,
                 label: str, unit_label: str, title: str, chart_id: str,
                 draw_limits: Callable[[Any], None]) -> Markup:
    """A weekly mean over the institute's weeks, and the run's limits drawn by `draw_limits(axes)`."""
    with matplotlib.rc_context(_RC):
        figure = _figure(NARROW_INCHES, 3.4)
        axes = figure.add_subplot()
        axes.plot([week.week_start for week in weeks], [np.nan if v is None else v for v in values],
                  marker="o", markersize=3, color=colour, label=label)
        first, last = weeks[0].week_start, weeks[-1].week_start
        span_weeks = (last - first).days // 7
        axes.set_xlim(first - timedelta(days=4), last + timedelta(days=4))
        if span_weeks < 12:
            # Too short a span for AutoDateLocator (it would tick hours): tick a few Mondays.
            axes.xaxis.set_major_locator(
                matplotlib.dates.WeekdayLocator(matplotlib.dates.MO, interval=span_weeks // 5 + 1))
            axes.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%d %b"))
        else:
            locator = matplotlib.dates.AutoDateLocator(maxticks=7)
            axes.xaxis.set_major_locator(locator)
            axes.xaxis.set_major_formatter(matplotlib.dates.ConciseDateFormatter(locator))
        # The dates' locators walk calendar rules at every call, and the layout and the drawing
        # call them a dozen times: the ticks, which depend on the span only, are placed once.
        axes.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(axes.xaxis.get_major_locator()()))
        axes.set_xlabel("week (Monday it starts on)")
        axes.set_ylabel(unit_label)
        _set_title(figure, title)
        axes.grid(axis="y", color="#e2e8f0", linewidth=0.8)
        draw_limits(axes)
        figure.legend(loc="outside lower center", frameon=False, fontsize=10, ncols=2)
    return _svg(figure, chart_id)


def co2_trend_chart(weeks: Sequence[InstituteWeek], thresholds: Thresholds, title: str,
                    chart_id: str) -> Markup:
    values = [week.co2_mean for week in weeks]

    def draw_limits(axes: Any) -> None:
        axes.axhline(thresholds.co2_high_ppm, color="#d73027", linestyle="--", linewidth=1,
                     label=f"{thresholds.co2_high_ppm:,.0f} ppm")
        highest = max([v for v in values if v is not None], default=0.0)
        axes.set_ylim(0, max(thresholds.co2_high_ppm, highest) * 1.15)

    return _weekly_line(weeks, values, "#2b6cb0", "weekly CO2 mean", "CO2, ppm", title, chart_id,
                        draw_limits)


def temperature_trend_chart(weeks: Sequence[InstituteWeek], thresholds: Thresholds, title: str,
                            chart_id: str) -> Markup:
    return _weekly_line(
        weeks, [week.temperature_mean for week in weeks], "#c05621", "weekly temperature mean",
        "temperature, °C", title, chart_id, lambda axes: axes.axhspan(
            thresholds.comfort_min_c, thresholds.comfort_max_c, color="#c6f6d5", alpha=0.7, zorder=0,
            label=f"comfort {thresholds.comfort_min_c:g}–{thresholds.comfort_max_c:g} °C"))


# The phases in the order they run (batch_runs.phase_seconds is a JSON object: PostgreSQL
# returns its keys sorted by name); a phase not listed follows them, by name.
PHASE_ORDER = ("read", "plan", "aggregate", "write", "publish", "report")


def _phase_rank(phase: str) -> tuple[int, str]:
    head = phase.split(".")[0]
    return (PHASE_ORDER.index(head) if head in PHASE_ORDER else len(PHASE_ORDER), phase)


def phase_chart(phase_seconds: Mapping[str, float], title: str, chart_id: str) -> Markup:
    """Every phase the run recorded, in the order they run."""
    phases = sorted(phase_seconds, key=_phase_rank)
    figure = _figure(NARROW_INCHES, 1.5 + 0.34 * max(1, len(phases)))
    with matplotlib.rc_context(_RC):
        axes = figure.add_subplot()
        positions = np.arange(len(phases))
        seconds = [float(phase_seconds[phase]) for phase in phases]
        bars = axes.barh(positions, seconds, color="#4a5568")
        axes.bar_label(bars, labels=[f"{value:,.1f} s" for value in seconds], padding=3, fontsize=10)
        axes.set_yticks(positions, phases)
        axes.invert_yaxis()
        axes.set_xlabel("wall time, seconds")
        axes.set_ylabel("phase")
        _set_title(figure, title)
        axes.margins(x=0.2)
    return _svg(figure, chart_id)

