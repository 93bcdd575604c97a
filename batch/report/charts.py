"""The report's charts, as inline, scalable SVG written by batch/report/svg.py: the CO2
heatmaps, the weekly CO2 and temperature lines, the BB101 ranking and the time per phase.

Written as strings, not drawn by a plotting library: Matplotlib took 0.1-0.3 s a figure (its
layout engine, text layout, SVG printing), 15-30 s for the 151 charts of a 50-institute
report. Text stays text (searchable, escaped); no JavaScript, no external resource. Every
limit a chart draws is the run's (queries.RunLimits), never a constant of its own.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from markupsafe import Markup, escape

from batch.core.thresholds import Thresholds
from batch.report import svg
from batch.report.queries import Bb101Failures, ClassroomWeekCo2, InstituteWeek, RunLimits
from batch.report.svg import GAP, LINE, PAD, TICK, LegendEntry

# The BB101 ranking charts this many classrooms of an institute (its table lists them all).
RANKING_ROWS_CHARTED = 15
# Longer names are shortened on chart axes (the tables show them in full).
CHART_LABEL_CHARS = 28
# Most charts are drawn this wide (inches): shrunk to a phone's width, 12 pt text stays legible.
NARROW_INCHES = 4.8
NO_DATA_COLOUR = "#d9d9d9"
# The heatmap's colour scale runs from outdoor air (no room is below it) to this far above the
# highest limit: the colours turn at the limits (`co2_colour_stops`).
CO2_SCALE_HEADROOM_PPM = 500.0
# The colour bar's gap to the heatmap's grid and its width (0.15 inch), points.
_BAR_GAP, _BAR_WIDTH = 8.0, 10.8


def short_name(name: str) -> str:
    return name if len(name) <= CHART_LABEL_CHARS else name[:CHART_LABEL_CHARS - 1] + "…"


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


def _known(value: float | None) -> bool:
    """A value to draw: not NULL, nor NaN (a double precision column may hold one)."""
    return value is not None and value == value


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
    left = PAD + LINE + GAP + max(map(svg.text_width, labels)) + GAP
    right = (_BAR_GAP + _BAR_WIDTH + TICK + GAP + max(map(svg.text_width, tick_labels))
             + GAP + LINE + PAD)
    width = max(NARROW_INCHES * 72, left + max(2.5 * 72, 0.17 * 72 * len(weeks)) + right)
    grid_width, grid_height = width - left - right, max(1.8 * 72, 0.26 * 72 * len(classrooms))
    title_lines = svg.title_lines(title, width)
    heading, top = svg.title_block(title_lines, PAD, PAD)
    top += 2 * GAP
    bottom = top + grid_height
    week_labels_height = max(map(svg.text_width, week_labels.values()))
    height = bottom + GAP + week_labels_height + GAP + LINE + PAD
    cell_width, cell_height = grid_width / len(weeks), grid_height / len(classrooms)

    # The cells of one colour are one path, in a grid of one unit per cell: thousands of cells
    # cost a few hundred short paths. Missing cells are the no-data colour.
    stops = co2_colour_stops(limits)
    row_of = {name: row for row, name in enumerate(classrooms)}
    column_of = {monday: column for column, monday in enumerate(weeks)}
    colour_of = {(row, column): NO_DATA_COLOUR
                 for row in range(len(classrooms)) for column in range(len(weeks))}
    for cell in cells:
        if _known(cell.co2_ppm):
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
    body += [svg.text(left - GAP, top + (row + 0.5) * cell_height, label, anchor="end",
                      align="middle") for row, label in enumerate(labels)]
    body.append(svg.text(PAD, top + grid_height / 2, "classroom", anchor="middle", align="top",
                         upright=False))
    body += [svg.text(left + (column + 0.5) * cell_width, bottom + GAP, label, anchor="end",
                      align="middle", upright=False) for column, label in week_labels.items()]
    body.append(svg.text(left + grid_width / 2, bottom + 2 * GAP + week_labels_height, "ISO week",
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
    tick_x = x + _BAR_WIDTH + TICK + GAP
    label_x = tick_x + max(map(svg.text_width, tick_labels)) + GAP
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
        svg.path(svg.segments((x + _BAR_WIDTH, y_of(tick), x + _BAR_WIDTH + TICK, y_of(tick))
                              for tick in ticks), stroke="black", width=0.8),
        *(svg.text(tick_x, y_of(tick), label, align="middle") for tick, label in zip(ticks, tick_labels)),
        svg.text(label_x, (top + bottom) / 2, "CO2, ppm", anchor="middle", align="top", upright=False),
    ]


@dataclass(frozen=True)
class _LimitMark:
    """A limit drawn on a weekly line: a dashed line at `low` (= `high`), or a band between them."""

    low: float
    high: float
    label: str
    colour: str


def _weekly_line(weeks: Sequence[InstituteWeek], values: Sequence[float | None], colour: str,
                 label: str, unit_label: str, title: str, chart_id: str,
                 y_range: tuple[float, float], limit: _LimitMark) -> Markup:
    """A weekly mean over the institute's weeks, a dot a week, the line broken where a week has
    no value or no row; the run's `limit` behind it."""
    first = weeks[0].week_start
    offsets = [(week.week_start - first).days // 7 for week in weeks]
    y_values, decimals = svg.nice_ticks(*y_range)
    y_labels = [f"{value:,.{decimals}f}" for value in y_values]
    dates = _date_ticks(first, weeks[-1].week_start)
    width, height = NARROW_INCHES * 72, 3.4 * 72
    heading, top = svg.title_block(svg.title_lines(title, width), PAD, PAD)
    top += 2 * GAP
    left = svg.axes_left(y_labels)
    right = width - PAD - max(svg.text_width(text) for _, text in dates) / 2  # the last label, centred
    band = limit.high > limit.low
    legend, legend_height = svg.legend(
        [LegendEntry("series", label, colour),
         LegendEntry("patch", limit.label, limit.colour, 0.7) if band
         else LegendEntry("dashed", limit.label, limit.colour)], width)
    bottom = height - PAD - legend_height - GAP - svg.axes_below()

    def x_of(offset: float) -> float:  # in weeks; four days either side of the first and the last
        return left + (offset + 4 / 7) / (offsets[-1] + 8 / 7) * (right - left)

    def y_of(value: float) -> float:
        return bottom - (value - y_range[0]) / (y_range[1] - y_range[0]) * (bottom - top)

    body = [heading]
    if band:
        body.append(svg.path(svg.rectangle(left, y_of(limit.high), right - left,
                                           y_of(limit.low) - y_of(limit.high)),
                             fill=limit.colour, css_class="limit", extra='fill-opacity="0.7"'))
    body.append(svg.path(svg.segments((left, y_of(value), right, y_of(value)) for value in y_values),
                         stroke="#e2e8f0", width=0.8))
    if not band:
        body.append(svg.path(svg.segments([(left, y_of(limit.low), right, y_of(limit.low))]),
                             stroke=limit.colour, css_class="limit", extra=svg.DASHED))
    body += svg.axes(left, top, right, bottom,
                     [(x_of((day - first).days / 7), text) for day, text in dates],
                     list(zip(map(y_of, y_values), y_labels)), "week (Monday it starts on)", unit_label)
    points = [None if value is None else (x_of(offset), y_of(value))
              for offset, value in zip(offsets, values)]
    runs: list[list[tuple[float, float]]] = [[]]
    for index, point in enumerate(points):
        if point is None or (index and offsets[index] - offsets[index - 1] > 1):
            runs.append([])
        if point is not None:
            runs[-1].append(point)
    body.append(svg.path(svg.polylines(runs), stroke=colour, width=1.5, css_class="series",
                         extra='stroke-linejoin="round"'))
    body.append(svg.path(svg.dots([point for point in points if point], svg.DOT_RADIUS),
                         fill=colour, css_class="markers"))
    body.append(f'<g transform="translate(0 {svg.number(height - PAD - legend_height)})">{legend}</g>')
    return svg.chart_svg(width, height, chart_id, title, body)


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _date_ticks(first: date, last: date) -> list[tuple[date, str]]:
    """The dates a weekly line from Monday `first` to Monday `last` ticks, labelled: a few
    Mondays ("03 Mar") over fewer than 12 weeks; else at most 7 month starts a round number of
    months apart, named by month, or by year in January ("Sep", "2024", "May")."""
    span_weeks = (last - first).days // 7
    if span_weeks < 12:
        return [(monday, f"{monday.day:02d} {MONTHS[monday.month - 1]}")
                for monday in (first + timedelta(weeks=k)
                               for k in range(0, span_weeks + 1, span_weeks // 5 + 1))]
    start, end = first - timedelta(days=4), last + timedelta(days=4)
    months = range(start.year * 12 + start.month, end.year * 12 + end.month)  # those that start inside
    for interval in (1, 2, 3, 4, 6, 12, 24, 60, 120):
        ticks = [date(month // 12, month % 12 + 1, 1) for month in months if month % interval == 0]
        if len(ticks) <= 7:
            break
    return [(day, str(day.year) if day.month == 1 else MONTHS[day.month - 1]) for day in ticks]


def co2_trend_chart(weeks: Sequence[InstituteWeek], thresholds: Thresholds, title: str,
                    chart_id: str) -> Markup:
    values = [week.co2_mean if _known(week.co2_mean) else None for week in weeks]
    highest = max([v for v in values if v is not None], default=0.0)
    return _weekly_line(weeks, values, "#2b6cb0", "weekly CO2 mean", "CO2, ppm", title, chart_id,
                        (0.0, max(thresholds.co2_high_ppm, highest) * 1.15),
                        _LimitMark(thresholds.co2_high_ppm, thresholds.co2_high_ppm,
                                   f"{thresholds.co2_high_ppm:,.0f} ppm", "#d73027"))


def temperature_trend_chart(weeks: Sequence[InstituteWeek], thresholds: Thresholds, title: str,
                            chart_id: str) -> Markup:
    values = [week.temperature_mean if _known(week.temperature_mean) else None for week in weeks]
    shown = [v for v in values if v is not None] + [thresholds.comfort_min_c, thresholds.comfort_max_c]
    margin = max(0.05 * (max(shown) - min(shown)), 0.5)
    return _weekly_line(weeks, values, "#c05621", "weekly temperature mean", "temperature, °C",
                        title, chart_id, (min(shown) - margin, max(shown) + margin),
                        _LimitMark(thresholds.comfort_min_c, thresholds.comfort_max_c,
                                   f"comfort {thresholds.comfort_min_c:g}–{thresholds.comfort_max_c:g} °C",
                                   "#c6f6d5"))


def _horizontal_bars(labels: Sequence[str], series: Sequence[tuple[Sequence[float], str]],
                     x_high: float, x_title: str, y_title: str, title: str, chart_id: str,
                     size: tuple[float, float], legend: Sequence[LegendEntry] = (),
                     value_labels: Sequence[str] = (), integer: bool = False) -> Markup:
    """A bar per label (the first on top) for each of `series` (values, colour), drawn over
    one another in order; the x axis from 0 to `x_high`; `value_labels` (10 pt) beyond the
    bars' ends. `size`: the chart's least width and its height (points); wider if the labels
    need it."""
    x_values, decimals = svg.nice_ticks(0.0, x_high, integer=integer)
    x_labels = [f"{value:,.{decimals}f}" for value in x_values]
    left = svg.axes_left(labels)
    width, height = max(size[0], left + 2.4 * 72 + PAD), size[1]
    right = width - PAD - svg.text_width(x_labels[-1]) / 2
    heading, top = svg.title_block(svg.title_lines(title, width), PAD, PAD)
    top += 2 * GAP
    legend_markup, legend_height = svg.legend(legend, width) if legend else ("", 0.0)
    bottom = height - PAD - legend_height - (GAP if legend else 0.0) - svg.axes_below()
    row = (bottom - top) / max(1, len(labels))

    def x_of(value: float) -> float:
        return left + value / x_high * (right - left)

    body = [heading]
    body += [svg.path(svg.rectangle(left, top + (k + 0.1) * row, x_of(value) - left, 0.8 * row), fill=colour)
             for values, colour in series for k, value in enumerate(values)]
    body += [svg.text(x_of(value) + 3, top + (k + 0.5) * row, label, svg.LEGEND_SIZE, align="middle")
             for k, (value, label) in enumerate(zip(series[0][0], value_labels))]
    body += svg.axes(left, top, right, bottom, list(zip(map(x_of, x_values), x_labels)),
                     [(top + (k + 0.5) * row, label) for k, label in enumerate(labels)], x_title, y_title)
    if legend:
        body.append(f'<g transform="translate(0 {svg.number(height - PAD - legend_height)})">'
                    f"{legend_markup}</g>")
    return svg.chart_svg(width, height, chart_id, title, body)


def bb101_chart(failures: Sequence[Bb101Failures], title: str, chart_id: str) -> Markup:
    """Horizontal bars: judged school days failing BB101 per classroom, worst at the top."""
    shown = list(failures[:RANKING_ROWS_CHARTED])
    judged = [row.judged_days for row in shown]
    # The weeks are named in the caption: listed here, they outgrew a narrow chart.
    return _horizontal_bars(
        [short_name(row.classroom) for row in shown],
        [(judged, NO_DATA_COLOUR), ([row.days_failed for row in shown], "#b2182b")],
        max(1.0, max(judged, default=0) * 1.05), "judged school days", "classroom", title, chart_id,
        (NARROW_INCHES * 72, (1.8 + 0.32 * max(1, len(shown))) * 72),
        legend=[LegendEntry("patch", "judged school days", NO_DATA_COLOUR),
                LegendEntry("patch", "failing BB101", "#b2182b")], integer=True)


# The phases in the order they run (batch_runs.phase_seconds is a JSON object: PostgreSQL
# returns its keys sorted by name); a phase not listed follows them, by name.
PHASE_ORDER = ("read", "plan", "aggregate", "write", "publish", "report")


def _phase_rank(phase: str) -> tuple[int, str]:
    head = phase.split(".")[0]
    return (PHASE_ORDER.index(head) if head in PHASE_ORDER else len(PHASE_ORDER), phase)


def phase_chart(phase_seconds: Mapping[str, float], title: str, chart_id: str) -> Markup:
    """Every phase the run recorded, in the order they run, its seconds written beside its bar."""
    phases = sorted(phase_seconds, key=_phase_rank)
    seconds = [float(phase_seconds[phase]) for phase in phases]
    # A fifth more than the longest bar: room for its label.
    return _horizontal_bars(phases, [(seconds, "#4a5568")], max(1.0, max(seconds) * 1.2),
                            "wall time, seconds", "phase", title, chart_id,
                            (NARROW_INCHES * 72, (1.5 + 0.34 * max(1, len(phases))) * 72),
                            value_labels=[f"{value:,.1f} s" for value in seconds])
