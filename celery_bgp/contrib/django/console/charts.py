"""Server-side SVG charts for the console: readable alone, no JavaScript, no build step.

Each chart has labelled axes with ticks, a legend, and a ``<title>`` on every bar (the
browser shows it on hover), so an operator reads it without the table under it. The
markup is built here from numbers only; every text that reaches it is escaped.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

__all__ = [
    "FAILED",
    "OK",
    "PERCENTILE_COLOURS",
    "Series",
    "duration_label",
    "nice_ceiling",
    "percentile_chart",
    "stacked_bars",
]

OK = "#2e7d32"
FAILED = "#c62828"
#: p50, p95, p99 bar colours (light to dark: the tail is the darkest).
PERCENTILE_COLOURS = ("#90caf9", "#1e88e5", "#0d47a1")
FONT = 'font-family="system-ui, sans-serif" font-size="11" fill="currentColor"'


@dataclass
class Series:
    """One bar of a stacked chart: its label, its hover title and its stacked values."""

    label: str
    title: str
    values: tuple[int, ...]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^n at or above ``value`` (an axis maximum)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # pragma: no cover (unreachable)


def _legend(items: Sequence[tuple[str, str]], x: float, y: float) -> str:
    parts = []
    for label, colour in items:
        parts.append(f'<rect x="{x:.0f}" y="{y - 9:.0f}" width="10" height="10" '
                     f'fill="{colour}"/><text x="{x + 14:.0f}" y="{y:.0f}" {FONT}>'
                     f"{escape(label)}</text>")
        x += 22 + 7 * len(label)
    return '<g class="bgp-legend">' + "".join(parts) + "</g>"


def stacked_bars(bars: Sequence[Series], *, names: Sequence[str], colours: Sequence[str],
                 y_title: str, x_title: str, label_every: int, chart_id: str,
                 width: int = 900, height: int = 220) -> SafeString:
    """A stacked bar chart over time (e.g. succeeded and failed per minute)."""
    left, right, top, bottom = 52, 12, 26, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    step = max(1, nice_ceiling(max([sum(b.values) for b in bars] + [0]) / 4))
    peak = step * 4  # four round steps: 0, 5, 10, 15, 20
    slot = plot_w / max(len(bars), 1)
    out = [f'<svg id="{escape(chart_id)}" class="bgp-chart" role="img" '
           f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(y_title)}</title>']
    for i in range(5):  # horizontal grid and y ticks: 0, 1/4 ... peak
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="currentColor" stroke-opacity="{0.5 if i == 0 else 0.12}"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
                   f"{_number(value)}</text>")
    for index, bar in enumerate(bars):
        x = left + slot * index + slot * 0.1
        base = top + plot_h
        out.append(f'<g class="bgp-bar-group"><title>{escape(bar.title)}</title>')
        # an invisible full-height target: the hover title works over empty slots too
        out.append(f'<rect x="{x:.1f}" y="{top}" width="{slot * 0.8:.1f}" height="{plot_h}" '
                   'fill="transparent"/>')
        for value, colour in zip(bar.values, colours, strict=True):
            if value <= 0:
                continue
            h = plot_h * value / peak
            base -= h
            out.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{slot * 0.8:.1f}" '
                       f'height="{h:.1f}" fill="{colour}"/>')
        out.append("</g>")
        if index % label_every == 0:
            out.append(f'<text x="{x + slot * 0.4:.1f}" y="{top + plot_h + 14}" '
                       f'text-anchor="middle" {FONT}>{escape(bar.label)}</text>')
    out.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle" '
               f"{FONT}>{escape(x_title)}</text>")
    out.append(f'<text x="12" y="{top + plot_h / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 12 {top + plot_h / 2:.0f})" {FONT}>'
               f"{escape(y_title)}</text>")
    out.append(_legend(list(zip(names, colours, strict=True)), left, 14))
    out.append("</svg>")
    return mark_safe("".join(out))  # numbers and escaped text only


def duration_label(seconds: float) -> str:
    """``850ms``, ``2.5s``, ``3m``, ``1.5h``: an axis tick or a hover value."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms" if seconds >= 0.001 else f"{seconds * 1000:.2f}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    if seconds < 3600:
        return f"{seconds / 60:.3g}m"
    return f"{seconds / 3600:.3g}h"


def percentile_chart(rows: Sequence[tuple[str, int, Sequence[float]]], *, chart_id: str,
                     width: int = 900) -> SafeString:
    """Horizontal p50/p95/p99 bars per job name on a log scale of seconds.

    ``rows`` are ``(name, jobs, (p50, p95, p99))``; a log scale keeps a 20 ms job and a
    10-minute job readable on one chart.
    """
    label_w, right, top, row_h = 260, 60, 28, 30
    plot_w = width - label_w - right
    height = top + row_h * max(len(rows), 1) + 40
    values = [v for _, _, ps in rows for v in ps if v and v > 0]
    low = 10 ** math.floor(math.log10(min(values))) if values else 0.001
    high = 10 ** math.ceil(math.log10(max(values))) if values else 1
    if high <= low:
        high = low * 10
    span = math.log10(high) - math.log10(low)

    def xpos(seconds: float) -> float:
        seconds = max(seconds, low)
        return label_w + plot_w * (math.log10(seconds) - math.log10(low)) / span

    out = [f'<svg id="{escape(chart_id)}" class="bgp-chart" role="img" '
           f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
           f'xmlns="http://www.w3.org/2000/svg"><title>Run time percentiles per job name'
           "</title>"]
    bottom = top + row_h * max(len(rows), 1)
    decade = low
    steps = (1, 2, 5) if span <= 3 else (1,)  # 1-2-5 ticks when there is room
    while decade <= high * 1.0001:
        for k in steps:
            tick = decade * k
            if tick > high * 1.0001:
                break
            x = xpos(tick)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" '
                       f'stroke="currentColor" stroke-opacity="{0.2 if k == 1 else 0.08}"/>'
                       f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" {FONT}>'
                       f"{_tick_label(tick)}</text>")
        decade *= 10
    bar_h = (row_h - 8) / 3
    for index, (name, jobs, ps) in enumerate(rows):
        y = top + row_h * index + 4
        summary = ", ".join(f"p{q} {duration_label(v)}" for q, v in zip((50, 95, 99), ps,
                                                                         strict=True))
        out.append(f'<g class="bgp-percentile-row"><title>{escape(name)}: {summary} '
                   f"({jobs} jobs)</title>")
        out.append(f'<text x="{label_w - 8}" y="{y + row_h / 2}" text-anchor="end" {FONT}>'
                   f"{escape(_short(name))}</text>")
        for k, (value, colour) in enumerate(zip(ps, PERCENTILE_COLOURS, strict=True)):
            out.append(f'<rect x="{label_w}" y="{y + k * bar_h:.1f}" '
                       f'width="{max(xpos(value) - label_w, 1):.1f}" height="{bar_h - 1:.1f}" '
                       f'fill="{colour}"/>')
        out.append(f'<text x="{xpos(ps[-1]) + 4:.1f}" y="{y + row_h / 2}" {FONT}>'
                   f"{duration_label(ps[-1])}</text></g>")
    out.append(f'<text x="{label_w + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle" '
               f"{FONT}>run time (log scale; last Executing to finish)</text>")
    out.append(_legend([("p50", PERCENTILE_COLOURS[0]), ("p95", PERCENTILE_COLOURS[1]),
                        ("p99", PERCENTILE_COLOURS[2])], label_w, 14))
    out.append("</svg>")
    return mark_safe("".join(out))  # numbers and escaped text only


def _tick_label(seconds: float) -> str:
    """A tick of the log axis: ``10ms``, ``100s``, ``17m``, ``2.8h``."""
    if seconds < 1:
        return duration_label(seconds)
    if seconds < 1000:
        return f"{seconds:g}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.2g}h"


def _short(name: str, limit: int = 38) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
