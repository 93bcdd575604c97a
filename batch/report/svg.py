"""A small SVG writer for the report's charts: the inline, scalable <svg> element and the few
shapes and texts they are made of, as strings, every text and attribute escaped by markupsafe.

Coordinates are points (1/72 inch), as the viewBox is: shown at its natural size a point is
4/3 CSS pixels, so a 12 pt text reads as 12 pt. Nothing here measures text with a font
renderer: `text_width` estimates it from DejaVu Sans' advance widths, rounded up by character
class, so that a label laid out by it never overlaps in DejaVu Sans or a narrower sans-serif.
"""
from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence

from markupsafe import Markup, escape

FONT_FAMILY = "DejaVu Sans, Verdana, sans-serif"
FONT_SIZE = 12.0
TITLE_SIZE = 13.0
# Baseline offsets (em) that centre a line of text on y, or hang it below y (DejaVu Sans'
# ascent above the baseline is 0.76 em; digits and capitals are 0.73 em high).
_MIDDLE_EM, _HANG_EM = 0.36, 0.76
LINE_EM = 1.2

# DejaVu Sans advance widths (em), each character class rounded up to its widest member
# (measured from the font Matplotlib ships): narrow, medium, the rest of ASCII (lowercase,
# digits, most capitals), wide capitals and symbols, the widest. Bold is about 1.12 times as
# wide. A character outside ASCII counts as the widest (a fallback font may draw it).
_CHARACTER_EMS = {
    **dict.fromkeys("'ijlIJ,. /:;\\|", 0.34),
    **dict.fromkeys("f-()[]t!r\"", 0.46),
    **dict.fromkeys("KAVXZBRCUNHDG&OQw#+<=>^~", 0.84),
    **dict.fromkeys("M%mW@", 1.0),
}
_ASCII_EM = 0.64
_OTHER_EM = 1.0
_BOLD_FACTOR = 1.12


def text_width(text: str, size: float = FONT_SIZE, bold: bool = False) -> float:
    """About how wide `text` is, in points, at `size` points in DejaVu Sans (never narrower)."""
    ems = sum(_CHARACTER_EMS.get(character, _ASCII_EM if character.isascii() else _OTHER_EM)
              for character in text)
    return ems * size * (_BOLD_FACTOR if bold else 1.0)


def number(value: float) -> str:
    """A coordinate, short: two decimals at most (a hundredth of a point is below any screen's pixel)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def text(x: float, y: float, content: str, size: float = FONT_SIZE, anchor: str = "start",
         align: str = "baseline", upright: bool = True, bold: bool = False,
         fill: str | None = None) -> str:
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
    if fill:
        attributes.append(f'fill="{escape(fill)}"')
    return f"<text {' '.join(attributes)}>{escape(content)}</text>"


def path(d: str, stroke: str | None = None, width: float = 1.0, fill: str = "none",
         css_class: str | None = None, extra: str = "") -> str:
    """One <path>: a shape (fill) or lines (stroke), `d` in the element's coordinates."""
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
