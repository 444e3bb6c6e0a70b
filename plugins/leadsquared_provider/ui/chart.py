"""A run's calls per second against the account's limit, as a small server-side SVG (no script, no build).

The rate plotted at each moment is the number of calls in the window before it (the plan's window, e.g.
5 s) divided by the window: the quantity LeadSquared limits, so the line is comparable with the limit.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 760, 210
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 14, 34
MAX_POINTS = 240


@dataclass(frozen=True)
class Limit:
    """The account's limit from the LeadSquared connection's extras (never its keys)."""

    calls: int
    window_seconds: float
    share: float = 1.0

    @property
    def per_second(self) -> float:
        return self.calls / self.window_seconds

    @property
    def share_per_second(self) -> float:
        return self.per_second * self.share


@dataclass(frozen=True)
class RateSeries:
    """Calls per second over the run, sampled every ``step`` seconds from the first call."""

    window_seconds: float
    step: float
    values: list[float]  # calls per second in the window ending at first + i * step
    calls: int
    duration: float  # first call to last call, seconds
    busiest: int  # most calls in any window

    @property
    def peak_per_second(self) -> float:
        return self.busiest / self.window_seconds

    @property
    def mean_per_second(self) -> float:
        """Calls per second from the first call to the last, over at least one window."""
        return self.calls / max(self.duration, self.window_seconds)


def rate_series(times: Iterable[float], window_seconds: float) -> RateSeries | None:
    """The sliding-window rate of the calls at ``times`` (seconds), or None when there were none."""
    ordered = sorted(times)
    if not ordered:
        return None
    window = window_seconds if window_seconds > 0 else 1.0
    first, last = ordered[0], ordered[-1]
    duration = last - first
    span = duration + window  # the tail: the last calls leave the window
    step = max(span / MAX_POINTS, min(1.0, window / 5))
    values = []
    for i in range(int(span / step) + 1):
        at = first + i * step
        inside = bisect.bisect_right(ordered, at) - bisect.bisect_right(ordered, at - window)
        values.append(inside / window)
    busiest, start = 0, 0
    for end, at in enumerate(ordered):  # every window that ends on a call: (at - window, at]
        while ordered[start] <= at - window:
            start += 1
        busiest = max(busiest, end - start + 1)
    return RateSeries(window, step, values, len(ordered), duration, busiest)


def _seconds_label(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _nice_ceiling(value: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return float(next(factor * power for factor in (1, 2, 2.5, 5, 10) if factor * power >= value))


def render_svg(series: RateSeries, limit: Limit | None) -> str:
    """The chart as an inline ``<svg>`` element: the rate as an area, the limit as a dashed line."""
    ceiling = max(series.peak_per_second, max(series.values), limit.per_second if limit else 0.0)
    y_max = _nice_ceiling(ceiling * 1.15)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max(series.step * (len(series.values) - 1), 1e-9)

    def x(seconds: float) -> float:
        return LEFT + plot_w * seconds / span

    def y(per_second: float) -> float:
        return TOP + plot_h * (1 - per_second / y_max)

    points = " ".join(f"{x(i * series.step):.1f},{y(v):.1f}" for i, v in enumerate(series.values))
    area = f"{x(0):.1f},{y(0):.1f} {points} {x(span):.1f},{y(0):.1f}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="rate-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-labelledby="rate-chart-title">',
        f'<title id="rate-chart-title">Calls per second over the run (each point: the calls of the '
        f"{series.window_seconds:g} s before it){f', against the limit of {limit.per_second:g}/s' if limit else ''}"
        "</title>",
    ]
    for fraction in (0, 0.25, 0.5, 0.75, 1):  # horizontal grid and y labels
        value = y_max * fraction
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" class="axis">{value:g}</text>'
        )
    for fraction in (0, 0.25, 0.5, 0.75, 1):  # x labels: seconds since the first call
        at = span * fraction
        anchor = "start" if fraction == 0 else "end" if fraction == 1 else "middle"
        parts.append(
            f'<text x="{x(at):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="{anchor}" class="axis">'
            f"{_seconds_label(at)}</text>"
        )
    parts.append(f'<polygon points="{area}" class="rate-area"/><polyline points="{points}" class="rate-line"/>')
    if limit is not None:
        label = f"account limit {limit.per_second:g}/s ({limit.calls} per {limit.window_seconds:g} s)"
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(limit.per_second):.1f}" y2="{y(limit.per_second):.1f}" '
            f'class="limit"/><text x="{WIDTH - RIGHT}" y="{y(limit.per_second) - 5:.1f}" text-anchor="end" '
            f'class="limit-label">{escape(label)}</text>'
        )
        if limit.share < 1:
            parts.append(
                f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(limit.share_per_second):.1f}" '
                f'y2="{y(limit.share_per_second):.1f}" class="share"/><text x="{WIDTH - RIGHT}" '
                f'y="{y(limit.share_per_second) - 5:.1f}" text-anchor="end" class="share-label">'
                f"this connection's share {limit.share_per_second:g}/s</text>"
            )
    parts.append(
        f'<text x="{LEFT}" y="{HEIGHT - 4}" class="axis">calls/s (over each {series.window_seconds:g} s) '
        "against time since the first call</text></svg>"
    )
    return "".join(parts)
