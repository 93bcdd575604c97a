"""A small SVG writer for the report's charts: the inline, scalable <svg> element and the few
shapes and texts they are made of, as strings, every text and attribute escaped by markupsafe.

Coordinates are points (1/72 inch), as the viewBox is: shown at its natural size a point is
4/3 CSS pixels, so a 12 pt text reads as 12 pt. Nothing here measures text with a font
renderer: `text_width` estimates it from DejaVu Sans' advance widths, rounded up by character
class, so that a label laid out by it never overlaps in DejaVu Sans or a narrower sans-serif.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

FONT_FAMILY = "DejaVu Sans, sans-serif"
FONT_SIZE = 12.0
TITLE_SIZE = 13.0
# Baseline offsets (em) that centre a line of text on y, or hang it below y (DejaVu Sans'
# ascent above the baseline is 0.76 em; digits and capitals are 0.73 em high).
_MIDDLE_EM, _HANG_EM = 0.36, 0.76
LINE_EM = 1.2
# Spacing (points): the chart's edge, text to what it names, a tick's length, a 12 pt line.
PAD, GAP, TICK, LINE = 4.0, 4.0, 3.5, FONT_SIZE * LINE_EM
LEGEND_SIZE = 10.0

DASHED = 'stroke-dasharray="3.7 1.6"'  # Matplotlib's "--" at 1 pt
DOT_RADIUS = 2.0

# DejaVu Sans advance widths (em), each character class rounded up to its widest member
# (measured from the font Matplotlib ships): narrow, medium, the rest of ASCII (lowercase,
# digits, most capitals), wide capitals and symbols, the widest. A character outside ASCII
# counts as the widest (a fallback font may draw it). Titles are wrapped by their length.
_CHARACTER_EMS = {
    **dict.fromkeys("'ijlIJ,. /:;\\|", 0.34),
    **dict.fromkeys("f-()[]t!r\"", 0.46),
    **dict.fromkeys("KAVXZBRCUNHDG&OQw#+<=>^~", 0.84),
    **dict.fromkeys("M%mW@", 1.0),
}
_ASCII_EM = 0.64
_OTHER_EM = 1.0


def text_width(text: str, size: float = FONT_SIZE) -> float:
    """About how wide `text` is, in points, at `size` points in DejaVu Sans (never narrower)."""
    return size * sum(_CHARACTER_EMS.get(character, _ASCII_EM if character.isascii() else _OTHER_EM)
                      for character in text)


def number(value: float) -> str:
    """A coordinate, short: two decimals at most (a hundredth of a point is below any screen's pixel)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def text(x: float, y: float, content: str, size: float = FONT_SIZE, anchor: str = "start",
         align: str = "baseline", upright: bool = True, bold: bool = False) -> str:
    """A line of text at (x, y): `anchor` start/middle/end along it; `align` says where y is
    (baseline, middle, or top: the text hangs below y); not `upright`: read bottom to top."""
    shift = {"baseline": 0.0, "middle": _MIDDLE_EM, "top": _HANG_EM}[align] * size
    if upright:
        place = f'x="{number(x)}" y="{number(y + shift)}"'
    else:
        # Turned a quarter left about (x, y): "below y" becomes "right of x".
        place = (f'x="{number(x)}" y="{number(y)}" transform="rotate(-90 {number(x)} '
                 f'{number(y)}) translate(0 {number(shift)})"')
    attributes = [place]
    if size != FONT_SIZE:
        attributes.append(f'font-size="{number(size)}"')
    if anchor != "start":
        attributes.append(f'text-anchor="{anchor}"')
    if bold:
        attributes.append('font-weight="bold"')
    return f"<text {' '.join(attributes)}>{escape(content)}</text>"


def path(d: str, stroke: str | None = None, width: float = 1.0, fill: str = "none",
         css_class: str | None = None, extra: str = "") -> str:
    """One <path>: a shape (fill) or lines (stroke), `d` in the element's coordinates (numbers
    only, built here); `css_class` and `extra` are the charts' own constants."""
    attributes = [f'd="{d}"', f'fill="{escape(fill)}"']
    if stroke:
        attributes.append(f'stroke="{escape(stroke)}" stroke-width="{number(width)}"')
    if css_class:
        attributes.append(f'class="{css_class}"')
    if extra:
        attributes.append(extra)
    return f"<path {' '.join(attributes)}/>"


def segments(lines: Iterable[tuple[float, float, float, float]]) -> str:
    """Path data of separate straight lines (x1, y1, x2, y2): one path, however many lines."""
    return "".join(f"M{number(x1)} {number(y1)}L{number(x2)} {number(y2)}"
                   for x1, y1, x2, y2 in lines)


def rectangle(x: float, y: float, width: float, height: float) -> str:
    """Path data of a rectangle."""
    return f"M{number(x)} {number(y)}h{number(width)}v{number(height)}h{number(-width)}z"


def polylines(runs: Iterable[Sequence[tuple[float, float]]]) -> str:
    """Path data of polylines through the points of each run (a new run starts after a gap)."""
    return "".join("M" + "L".join(f"{number(x)} {number(y)}" for x, y in run)
                   for run in runs if run)


def dots(points: Iterable[tuple[float, float]], radius: float) -> str:
    """Path data of a filled circle at each point (two half-circle arcs each)."""
    r = number(radius)
    return "".join(f"M{number(x - radius)} {number(y)}a{r} {r} 0 1 0 {number(2 * radius)} 0"
                   f"a{r} {r} 0 1 0 {number(-2 * radius)} 0z" for x, y in points)


def title_lines(title: str, width: float) -> list[str]:
    """The title wrapped to a chart `width` points wide (long names would overflow it):
    bold 13 pt DejaVu Sans is about 8 average characters an inch, fewer wide ones."""
    return textwrap.wrap(title, max(1, int(width / 72 * 7)))


def title_block(lines: Sequence[str], x: float, y: float) -> tuple[str, float]:
    """The title's lines from (x, y) down, and the y below them."""
    step = TITLE_SIZE * LINE_EM
    markup = "".join(text(x, y + k * step, line, TITLE_SIZE, align="top", bold=True)
                     for k, line in enumerate(lines))
    return markup, y + step * len(lines)


def chart_svg(width: float, height: float, chart_id: str, title: str, body: Iterable[str],
              scrolls: bool = False) -> Markup:
    """The chart as an inline, scalable <svg> element (sized by CSS through its viewBox).

    A chart is shown at most at its natural size (a point is 4/3 CSS pixels), narrower when
    the screen is. One that `scrolls` keeps at least one CSS pixel per point: on a phone it
    scrolls sideways in its frame rather than shrink its text below legibility.
    """
    style = f"max-width: {width * 4 / 3:.0f}px" + (f"; min-width: {width:.0f}px" if scrolls else "")
    opening = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {number(width)} '
               f'{number(height)}" class="chart-svg" data-chart="{escape(chart_id)}" role="img" '
               f'style="{style}" font-family="{FONT_FAMILY}" font-size="{number(FONT_SIZE)}">')
    # Every text and attribute value above and in `body` went through escape().
    return Markup(opening + f"<title>{escape(title)}</title>" + "".join(body) + "</svg>")


def nice_ticks(low: float, high: float, most: int = 6, integer: bool = False) -> tuple[list[float], int]:
    """At most `most` round values in [low, high] (steps of 1, 2, 2.5 or 5 times a power of
    ten; whole ones if `integer`), and the decimals their labels need."""
    raw = max(high - low, 1e-9) / most
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(magnitude * factor for factor in (1, 2, 2.5, 5, 10) if magnitude * factor >= raw)
    if integer:
        step = max(1, math.ceil(step))
    ticks = [k * step for k in range(math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9) + 1)]
    decimals = next(d for d in range(12) if abs(step * 10 ** d - round(step * 10 ** d)) < 1e-6)
    return ticks, decimals


def axes(left: float, top: float, right: float, bottom: float, x_ticks: Sequence[tuple[float, str]],
         y_ticks: Sequence[tuple[float, str]], x_title: str, y_title: str) -> list[str]:
    """The left and bottom axes of a plot area, their ticks at (position, label), and their
    titles: the y title turned along the left edge, the x title under the tick labels."""
    return [
        path(f"M{number(left)} {number(top)}V{number(bottom)}H{number(right)}", stroke="black", width=0.8),
        path(segments([(left - TICK, y, left, y) for y, _ in y_ticks]
                      + [(x, bottom, x, bottom + TICK) for x, _ in x_ticks]), stroke="black", width=0.8),
        *(text(left - TICK - GAP, y, label, anchor="end", align="middle") for y, label in y_ticks),
        *(text(x, bottom + TICK + GAP, label, anchor="middle", align="top") for x, label in x_ticks),
        text(PAD, (top + bottom) / 2, y_title, anchor="middle", align="top", upright=False),
        text((left + right) / 2, bottom + TICK + GAP + LINE, x_title, anchor="middle", align="top"),
    ]


def axes_left(y_labels: Iterable[str]) -> float:
    """Where a plot area starts for `axes`: right of the y title and the longest y tick label."""
    return PAD + LINE + GAP + max(map(text_width, y_labels), default=0.0) + GAP + TICK


def axes_below() -> float:
    """How far below a plot area `axes` draws: a tick, its label, the x title."""
    return TICK + GAP + LINE + LINE


@dataclass(frozen=True)
class LegendEntry:
    """A legend's entry: a sample of `kind` ("series": a line with a dot, "dashed": a dashed
    line, "patch": a filled box) in `colour`, and its text."""

    kind: str
    text: str
    colour: str
    opacity: float = 1.0


def legend(entries: Sequence[LegendEntry], width: float) -> tuple[str, float]:
    """The legend of a chart `width` wide, its 10 pt entries centred from y = 0 down: on one row
    if they fit, else one entry a row. Its markup and its height."""
    sample, space = 20.0, 3 * GAP
    widths = [sample + GAP + text_width(entry.text, LEGEND_SIZE) for entry in entries]
    pairs = list(zip(entries, widths))
    rows = [pairs] if sum(widths) + space * (len(pairs) - 1) <= width - 2 * PAD else [[pair] for pair in pairs]
    row_height = LEGEND_SIZE * LINE_EM
    parts = []
    for row_number, row in enumerate(rows):
        x = (width - sum(entry_width for _, entry_width in row) - space * (len(row) - 1)) / 2
        y = (row_number + 0.5) * row_height
        for entry, entry_width in row:
            opacity = f'fill-opacity="{number(entry.opacity)}"' if entry.opacity < 1 else ""
            if entry.kind == "patch":
                parts.append(path(rectangle(x, y - 3.5, sample, 7), fill=entry.colour, extra=opacity))
            else:
                parts.append(path(segments([(x, y, x + sample, y)]), stroke=entry.colour,
                                  width=1.5 if entry.kind == "series" else 1.0,
                                  extra=DASHED if entry.kind == "dashed" else ""))
            if entry.kind == "series":
                parts.append(path(dots([(x + sample / 2, y)], DOT_RADIUS), fill=entry.colour))
            parts.append(text(x + sample + GAP, y, entry.text, LEGEND_SIZE, align="middle"))
            x += entry_width + space
    return "".join(parts), row_height * len(rows)
