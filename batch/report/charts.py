"""The report's charts as inline, scalable SVG: the heatmaps and the weekly lines written by
our own few lines (batch/report/svg.py: 151 Matplotlib figures took 15-30 s of a 50-institute
report), the BB101 ranking and the phases (one or two a report) drawn by Matplotlib.

Text stays text (searchable, escaped); no JavaScript, no external resource.
Every limit a chart draws is the run's (queries.RunLimits), never a constant of its own.
"""
from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import matplotlib
import numpy as np
from markupsafe import Markup, escape
from matplotlib.figure import Figure

from batch.core.thresholds import Thresholds
from batch.report import svg
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
# The SVG charts' spacing (points): the chart's edge, text to what it names, a tick's length,
# a 12 pt line (an axis title), the colour bar's gap to the grid and its width (0.15 inch).
_PAD, _GAP, _TICK, _LINE = 4.0, 4.0, 3.5, svg.FONT_SIZE * svg.LINE_EM
_BAR_GAP, _BAR_WIDTH = 8.0, 10.8
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


def co2_colour(ppm: float, stops: Sequence[tuple[float, str]]) -> str:
    """The colour of `ppm` on the scale of `stops` (co2_colour_stops): interpolated in RGB
    between the two stops around it, as a gradient through the stops is drawn; clamped at the
    ends."""
    below = stops[0]
    for stop in stops:
        if ppm <= stop[0]:
            if stop[0] == below[0]:
                return stop[1]
            share = (ppm - below[0]) / (stop[0] - below[0])
            low, high = _rgb(below[1]), _rgb(stop[1])
            return "#" + "".join(f"{round(a + (b - a) * share):02x}" for a, b in zip(low, high))
        below = stop
    return stops[-1][1]


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def co2_heatmap(cells: Sequence[ClassroomWeekCo2], weeks: Sequence[date], limits: RunLimits,
                title: str, chart_id: str) -> Markup:
    """Classroom x ISO week, each cell coloured by its weekly CO2 on the run's limits' scale,
    with the scale's bar on the right."""
    classrooms = sorted({cell.classroom for cell in cells})
    labels = [short_name(name) for name in classrooms]
    step = max(1, len(weeks) // 26)
    week_labels = {column: week_label(weeks[column]) for column in range(0, len(weeks), step)}
    floor, ceiling = co2_scale(limits)
    ticks = sorted({floor, *co2_bands(limits), ceiling})
    tick_labels = [f"{tick:,.0f}" for tick in ticks]
    # Left of the grid: the axis title and the longest classroom; right: the colour bar, its
    # ticks' labels and its title. The grid is never so small that the bar cannot show its
    # ticks, and stretches to a narrow chart's width.
    left = _PAD + _LINE + _GAP + max(map(svg.text_width, labels)) + _GAP
    right = (_BAR_GAP + _BAR_WIDTH + _TICK + _GAP + max(map(svg.text_width, tick_labels))
             + _GAP + _LINE + _PAD)
    width = max(NARROW_INCHES * 72, left + max(2.5 * 72, 0.17 * 72 * len(weeks)) + right)
    grid_width, grid_height = width - left - right, max(1.8 * 72, 0.26 * 72 * len(classrooms))
    title_lines = svg.title_lines(title, width)
    heading, top = svg.title_block(title_lines, _PAD, _PAD)
    top += 2 * _GAP
    bottom = top + grid_height
    week_labels_height = max(map(svg.text_width, week_labels.values()))
    height = bottom + _GAP + week_labels_height + _GAP + _LINE + _PAD
    cell_width, cell_height = grid_width / len(weeks), grid_height / len(classrooms)

    # The cells of one colour are one path, in a grid of one unit per cell: thousands of cells
    # cost a few hundred short paths. Missing cells are the no-data colour.
    stops = co2_colour_stops(limits)
    row_of = {name: row for row, name in enumerate(classrooms)}
    column_of = {monday: column for column, monday in enumerate(weeks)}
    colour_of = {(row, column): NO_DATA_COLOUR
                 for row in range(len(classrooms)) for column in range(len(weeks))}
    for cell in cells:
        if cell.co2_ppm is not None:
            colour_of[row_of[cell.classroom], column_of[cell.week_start]] = co2_colour(cell.co2_ppm, stops)
    shapes: dict[str, list[str]] = {}
    for (row, column), colour in colour_of.items():
        shapes.setdefault(colour, []).append(f"M{column} {row}h1v1h-1z")
    body = [heading, f'<g class="cells" transform="translate({svg.number(left)} {svg.number(top)}) '
                     f'scale({svg.number(cell_width)} {svg.number(cell_height)})">',
            *(svg.path("".join(parts), fill=colour) for colour, parts in shapes.items()), "</g>"]
    body.append(svg.path(svg.segments(
        [(left + k * cell_width, top, left + k * cell_width, bottom) for k in range(1, len(weeks))]
        + [(left, top + k * cell_height, left + grid_width, top + k * cell_height)
           for k in range(1, len(classrooms))]), stroke="white", width=0.5))
    body += [svg.text(left - _GAP, top + (row + 0.5) * cell_height, label, anchor="end",
                      align="middle") for row, label in enumerate(labels)]
    body.append(svg.text(_PAD, top + grid_height / 2, "classroom", anchor="middle", align="top",
                         upright=False))
    body += [svg.text(left + (column + 0.5) * cell_width, bottom + _GAP, label, anchor="end",
                      align="middle", upright=False) for column, label in week_labels.items()]
    body.append(svg.text(left + grid_width / 2, bottom + 2 * _GAP + week_labels_height, "ISO week",
                         anchor="middle", align="top"))
    body += _colour_bar(stops, ticks, tick_labels, co2_bands(limits), left + grid_width + _BAR_GAP,
                        top, bottom, f"{chart_id}-scale")
    return svg.chart_svg(width, height, chart_id, title, body, scrolls=True)


def _colour_bar(stops: Sequence[tuple[float, str]], ticks: Sequence[float], tick_labels: Sequence[str],
                limits: Iterable[float], x: float, top: float, bottom: float,
                gradient_id: str) -> list[str]:
    """The heatmap's scale: a bar from outdoor air up, the gradient through the stops, a black
    line at each limit, an arrow head above for "and higher", the ticks labelled, its title."""
    floor, ceiling = stops[0][0], stops[-1][0]
    bar_top = top + 0.05 * (bottom - top)  # the arrow head takes the top twentieth

    def y_of(ppm: float) -> float:
        return bottom - (ppm - floor) / (ceiling - floor) * (bottom - bar_top)

    gradient = "".join(f'<stop offset="{svg.number((ppm - floor) / (ceiling - floor))}" '
                       f'stop-color="{colour}"/>' for ppm, colour in stops)
    tick_x = x + _BAR_WIDTH + _TICK + _GAP
    label_x = tick_x + max(map(svg.text_width, tick_labels)) + _GAP
    outline = (f"M{svg.number(x)} {svg.number(bottom)}V{svg.number(bar_top)}"
               f"L{svg.number(x + _BAR_WIDTH / 2)} {svg.number(top)}L{svg.number(x + _BAR_WIDTH)} "
               f"{svg.number(bar_top)}V{svg.number(bottom)}z")
    return [
        f'<defs><linearGradient id="{escape(gradient_id)}" x1="0" y1="1" x2="0" y2="0">'
        f"{gradient}</linearGradient></defs>",
        svg.path(svg.rectangle(x, bar_top, _BAR_WIDTH, bottom - bar_top),
                 fill=f"url(#{escape(gradient_id)})"),
        svg.path(f"M{svg.number(x)} {svg.number(bar_top)}L{svg.number(x + _BAR_WIDTH / 2)} "
                 f"{svg.number(top)}L{svg.number(x + _BAR_WIDTH)} {svg.number(bar_top)}z",
                 fill=stops[-1][1]),
        svg.path(svg.segments((x, y_of(limit), x + _BAR_WIDTH, y_of(limit)) for limit in limits),
                 stroke="black", width=0.8),
        svg.path(outline, stroke="black", width=0.8),
        svg.path(svg.segments((x + _BAR_WIDTH, y_of(tick), x + _BAR_WIDTH + _TICK, y_of(tick))
                              for tick in ticks), stroke="black", width=0.8),
        *(svg.text(tick_x, y_of(tick), label, align="middle") for tick, label in zip(ticks, tick_labels)),
        svg.text(label_x, (top + bottom) / 2, "CO2, ppm", anchor="middle", align="top", upright=False),
    ]


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


@dataclass(frozen=True)
class _LimitMark:
    """A limit drawn on a weekly line: a dashed line at `low` (= `high`), or a band between them."""

    low: float
    high: float
    label: str
    colour: str


def _nice_ticks(low: float, high: float, most: int = 6) -> tuple[list[float], int]:
    """At most `most` round values in [low, high] (steps of 1, 2, 2.5 or 5 times a power of
    ten), and the decimals their labels need."""
    raw = (high - low) / most
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(magnitude * factor for factor in (1, 2, 2.5, 5, 10) if magnitude * factor >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = [k * step for k in range(first, math.floor(high / step + 1e-9) + 1)]
    decimals = next(d for d in range(12) if abs(step * 10 ** d - round(step * 10 ** d)) < 1e-6)
    return ticks, decimals


def _weekly_line(weeks: Sequence[InstituteWeek], values: Sequence[float | None], colour: str,
                 label: str, unit_label: str, title: str, chart_id: str,
                 y_range: tuple[float, float], limit: _LimitMark) -> Markup:
    """A weekly mean over the institute's weeks, broken where a week has no value or no row,
    and the run's `limit`; the weeks labelled as ISO weeks."""
    first = weeks[0].week_start
    offsets = [(week.week_start - first).days // 7 for week in weeks]
    span = offsets[-1]
    y_ticks, decimals = _nice_ticks(*y_range)
    y_labels = [f"{tick:,.{decimals}f}" for tick in y_ticks]
    week_width = max(svg.text_width(week_label(week.week_start)) for week in weeks)
    width, height = NARROW_INCHES * 72, 3.4 * 72
    heading, top = svg.title_block(svg.title_lines(title, width), _PAD, _PAD)
    top += 2 * _GAP
    left = _PAD + _LINE + _GAP + max(map(svg.text_width, y_labels)) + _GAP + _TICK
    right = width - _PAD - week_width / 2  # room for the last week's label, centred on its tick
    entries = [("series", label), ("band" if limit.high > limit.low else "line", limit.label)]
    legend, legend_height = _legend(entries, colour, limit.colour, width)
    bottom = height - _PAD - legend_height - _GAP - _LINE - _TICK - _GAP - _LINE

    def x_of(offset: float) -> float:  # four days either side of the first and the last week
        return left + (offset + 4 / 7) / (span + 8 / 7) * (right - left)

    def y_of(value: float) -> float:
        return bottom - (value - y_range[0]) / (y_range[1] - y_range[0]) * (bottom - top)

    # As many week labels as fit side by side, a round number of weeks apart.
    fit = max(1, int((right - left) // (week_width + 2 * _GAP)))
    step = next(step for step in (1, 2, 4, 8, 13, 26, 52, 104, 208, 520) if span // step + 1 <= fit)
    labelled = [first + timedelta(weeks=offset) for offset in range(0, span + 1, step)]
    body = [heading]
    if limit.high > limit.low:
        body.append(svg.path(svg.rectangle(left, y_of(limit.high), right - left,
                                           y_of(limit.low) - y_of(limit.high)),
                             fill=limit.colour, css_class="limit", extra='fill-opacity="0.7"'))
    body.append(svg.path(svg.segments((left, y_of(tick), right, y_of(tick)) for tick in y_ticks),
                         stroke="#e2e8f0", width=0.8))
    if limit.high == limit.low:
        body.append(svg.path(svg.segments([(left, y_of(limit.low), right, y_of(limit.low))]),
                             stroke=limit.colour, css_class="limit", extra='stroke-dasharray="3.7 1.6"'))
    # The axes, their ticks and labels.
    body.append(svg.path(f"M{svg.number(left)} {svg.number(top)}V{svg.number(bottom)}"
                         f"H{svg.number(right)}", stroke="black", width=0.8))
    body.append(svg.path(svg.segments(
        [(left - _TICK, y_of(tick), left, y_of(tick)) for tick in y_ticks]
        + [(x_of((monday - first).days // 7), bottom, x_of((monday - first).days // 7), bottom + _TICK)
           for monday in labelled]), stroke="black", width=0.8))
    body += [svg.text(left - _TICK - _GAP, y_of(tick), text, anchor="end", align="middle")
             for tick, text in zip(y_ticks, y_labels)]
    body += [svg.text(x_of((monday - first).days // 7), bottom + _TICK + _GAP, week_label(monday),
                      anchor="middle", align="top") for monday in labelled]
    body.append(svg.text(_PAD, (top + bottom) / 2, unit_label, anchor="middle", align="top",
                         upright=False))
    body.append(svg.text((left + right) / 2, bottom + _TICK + _GAP + _LINE, "ISO week",
                         anchor="middle", align="top"))
    # The series: a line through consecutive weeks with a value, a dot on each.
    points = [(x_of(offset), y_of(value)) if value is not None else None
              for offset, value in zip(offsets, values)]
    runs: list[list[tuple[float, float]]] = [[]]
    for index, point in enumerate(points):
        if point is None or (index and offsets[index] - offsets[index - 1] > 1):
            runs.append([])
        if point is not None:
            runs[-1].append(point)
    body.append(svg.path(svg.polylines(runs), stroke=colour, width=1.5, css_class="series",
                         extra='stroke-linejoin="round"'))
    body.append(svg.path(svg.dots([point for point in points if point], 2.0), fill=colour,
                         css_class="markers"))
    body.append(f'<g transform="translate(0 {svg.number(height - _PAD - legend_height)})">{legend}</g>')
    return svg.chart_svg(width, height, chart_id, title, body)


def _legend(entries: Sequence[tuple[str, str]], colour: str, limit_colour: str,
            width: float) -> tuple[str, float]:
    """The legend, centred under the chart: a sample of each kind ("series", "line", "band")
    and its 10 pt label; on one row if it fits, else one entry a row. Its markup and height."""
    size, sample = 10.0, 20.0
    widths = [sample + _GAP + svg.text_width(text, size) for _, text in entries]
    one_row = sum(widths) + 3 * _GAP * (len(entries) - 1) <= width - 2 * _PAD
    rows = [list(zip(entries, widths))] if one_row else [[pair] for pair in zip(entries, widths)]
    row_height = size * svg.LINE_EM
    parts = []
    for number, row in enumerate(rows):
        x = (width - sum(w for _, w in row) - 3 * _GAP * (len(row) - 1)) / 2
        y = (number + 0.5) * row_height
        for (kind, text), entry_width in row:
            if kind == "band":
                parts.append(svg.path(svg.rectangle(x, y - 3.5, sample, 7), fill=limit_colour,
                                      extra='fill-opacity="0.7"'))
            else:
                dashed = 'stroke-dasharray="3.7 1.6"' if kind == "line" else ""
                parts.append(svg.path(svg.segments([(x, y, x + sample, y)]),
                                      stroke=colour if kind == "series" else limit_colour,
                                      width=1.5 if kind == "series" else 1.0, extra=dashed))
                if kind == "series":
                    parts.append(svg.path(svg.dots([(x + sample / 2, y)], 2.0), fill=colour))
            parts.append(svg.text(x + sample + _GAP, y, text, size, align="middle"))
            x += entry_width + 3 * _GAP
    return "".join(parts), row_height * len(rows)


def co2_trend_chart(weeks: Sequence[InstituteWeek], thresholds: Thresholds, title: str,
                    chart_id: str) -> Markup:
    values = [week.co2_mean for week in weeks]
    highest = max([v for v in values if v is not None], default=0.0)
    return _weekly_line(weeks, values, "#2b6cb0", "weekly CO2 mean", "CO2, ppm", title, chart_id,
                        (0.0, max(thresholds.co2_high_ppm, highest) * 1.15),
                        _LimitMark(thresholds.co2_high_ppm, thresholds.co2_high_ppm,
                                   f"{thresholds.co2_high_ppm:,.0f} ppm", "#d73027"))


def temperature_trend_chart(weeks: Sequence[InstituteWeek], thresholds: Thresholds, title: str,
                            chart_id: str) -> Markup:
    values = [week.temperature_mean for week in weeks]
    shown = [v for v in values if v is not None] + [thresholds.comfort_min_c, thresholds.comfort_max_c]
    margin = max(0.05 * (max(shown) - min(shown)), 0.5)
    return _weekly_line(weeks, values, "#c05621", "weekly temperature mean", "temperature, °C",
                        title, chart_id, (min(shown) - margin, max(shown) + margin),
                        _LimitMark(thresholds.comfort_min_c, thresholds.comfort_max_c,
                                   f"comfort {thresholds.comfort_min_c:g}–{thresholds.comfort_max_c:g} °C",
                                   "#c6f6d5"))


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

