"""Line charts as SVG, rendered by the server: no chart library, nothing loaded by the browser.

A chart is a :class:`Series` list over evenly spaced times (one value per time bucket, None
where there is none: the line breaks there). The y axis starts at 0 and ends at a round
number above the largest value; times are labelled in UTC. Every value goes through
``html.escape``. Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

__all__ = ("PALETTE", "Series", "line_chart", "nice_ceiling", "time_label")

#: line colours, in the order series take them (readable on white, distinct for the colour-blind)
PALETTE = ("#0b5fbd", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037", "#ad1457")

_WIDTH, _HEIGHT = 640, 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 10, 10, 24
#: charts with more points than this get no per-point tooltips (the page stays small)
_TOOLTIP_POINTS = 300


@dataclass(frozen=True, slots=True)
class Series:
    """One line: its name (the legend) and a value per time bucket."""

    name: str
    values: Sequence[float | None]
    dashed: bool = False


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= ``value`` (> 0)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * power * (1 + 1e-9):
            return factor * power
    return 10 * power


def time_label(at: float, step: int) -> str:
    """A bucket's start in UTC: ``HH:MM`` for buckets under an hour, ``MM-DD HH:00`` else."""
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.strftime("%H:%M") if step < 3600 else moment.strftime("%m-%d %H:00")


def _points(values: Sequence[float | None], x: Callable[[int], float], y: Callable[[float], float]) -> list[str]:
    """SVG path data, one ``M``-started run per stretch of values without a gap."""
    runs: list[str] = []
    current: list[str] = []
    for i, value in enumerate(values):
        if value is None:
            if current:
                runs.append(" ".join(current))
                current = []
            continue
        current.append(f"{'M' if not current else 'L'}{x(i):.1f},{y(value):.1f}")
    if current:
        runs.append(" ".join(current))
    return runs


def line_chart(
    title: str,
    times: Sequence[int],
    step: int,
    series: Sequence[Series],
    fmt: Callable[[float], str],
    *,
    minimum_top: float = 0.0,
) -> str:
    """An SVG chart of ``series`` over ``times`` (bucket starts, epoch seconds), with its legend.

    ``fmt`` labels values (the y axis, the tooltips); the y axis reaches at least ``minimum_top``.
    """
    count = len(times)
    top = max([minimum_top, *(v for s in series for v in s.values if v is not None)], default=0.0)
    top = nice_ceiling(top)
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def x(i: int) -> float:
        return _LEFT + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(value: float) -> float:
        return _TOP + plot_h * (1 - min(value, top) / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for fraction in (0.0, 0.5, 1.0):
        gy = _TOP + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}"/>')
        label = escape(fmt(top * fraction))
        parts.append(f'<text class="axis" x="{_LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end">{label}</text>')
    if count:
        ticks = sorted({round(i * (count - 1) / 4) for i in range(5)}) if count > 1 else [0]
        for i in ticks:
            anchor = "start" if i == 0 else "end" if i == count - 1 else "middle"
            parts.append(
                f'<text class="axis" x="{x(i):.1f}" y="{_HEIGHT - 6}" text-anchor="{anchor}">'
                f"{escape(time_label(times[i], step))}</text>"
            )
    for n, line in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        dash = ' stroke-dasharray="5 4"' if line.dashed else ""
        for run in _points(line.values, x, y):
            if " " not in run:  # a single point between gaps: a dot, so it shows
                cx, cy = run[1:].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
            else:
                parts.append(f'<path d="{run}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
    if 0 < count <= _TOOLTIP_POINTS:
        width = plot_w / max(count - 1, 1)
        for i, at in enumerate(times):
            shown = "; ".join(
                f"{s.name} {fmt(v)}" for s in series if i < len(s.values) and (v := s.values[i]) is not None
            )
            tip = f"{time_label(at, step)} UTC: {shown or 'no data'}"
            parts.append(
                f'<rect class="hover" x="{x(i) - width / 2:.1f}" y="{_TOP}" width="{width:.1f}" height="{plot_h}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch{" dashed" if s.dashed else ""}" style="border-color:{PALETTE[n % len(PALETTE)]}">'
        f"</span>{escape(s.name)}</li>"
        for n, s in enumerate(series)
    )
    return (
        f'<figure class="chart-box"><figcaption>{escape(title)}</figcaption>'
        f'{"".join(parts)}<ul class="legend">{legend}</ul></figure>'
    )
