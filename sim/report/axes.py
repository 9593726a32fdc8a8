"""Tick labels as people write the numbers — counts as 1k or 2.5M, durations on round values of
their own units (1 s, 10 min, 6 h) — and the fixed margins they allow.

On log axes, plain text and major ticks only: matplotlib's default typesets every label as
mathtext (10^3) and draws eight minor ticks a decade, which was most of the cost of drawing a
log axis. Compact labels are at most a few characters wide, so a report's single-axes plot can
have fixed margins (`fixed_margins`) instead of measuring every label to lay the figure out
(`tight_layout`, a third of the cost of drawing it)."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, Locator, LogLocator, NullLocator

MOST_TICKS = 8
# round durations in seconds: fine (1-2-5 and the clock's own steps), about a decade apart,
# and the clock's units
FINE = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300,
        600, 1200, 1800, 3600, 7200, 21600, 43200, 86400, 172800, 604800)  # fmt: skip
COARSE = (0.001, 0.01, 0.1, 1, 10, 60, 600, 3600, 21600, 86400, 604800)
CLOCK = (0.001, 0.1, 1, 60, 3600, 86400, 604800)
MARGINS_IN = {"left": 0.95, "right": 0.2, "bottom": 0.6, "top": 0.4}
"""Room around a single axes with compact tick labels: y labels and their title on the left,
x labels and title below, the title above."""
UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"), (0.001, "ms"))


def compact(count: float, _position: object = None) -> str:
    """1, 10, 100, 1k, 10k, 100k, 1M, ...: a count short enough for a tick label."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= size:
            return f"{count / size:.3g}{unit}"
    return f"{count:.3g}"


def duration(seconds: float, _position: object = None) -> str:
    """A duration in the largest unit it reaches: 500 ms, 1 s, 10 min, 1.5 h, 7 d."""
    for size, unit in UNITS:
        if abs(seconds) >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds * 1000:.3g} ms"


class DurationTicks(Locator):
    """Major ticks on round durations: the finest ladder of which at most MOST_TICKS are in
    view; a plain log locator when the view is too narrow to hold two round values."""

    def __call__(self) -> Sequence[float]:
        assert self.axis is not None, "set on an axis"
        low, high = self.axis.get_view_interval()
        return self.tick_values(low, high)

    def tick_values(self, vmin: float, vmax: float) -> Sequence[float]:
        low, high = sorted((vmin, vmax))
        in_view = [[t for t in ladder if low <= t <= high] for ladder in (FINE, COARSE, CLOCK)]
        if len(in_view[0]) < 2:
            return LogLocator().tick_values(low, high)
        return next(ticks for ticks in in_view if len(ticks) <= MOST_TICKS)  # CLOCK always fits


def log_axis(axis: Axis, *, seconds: bool = False) -> None:
    """Tick a log-scale axis (already set to log): counts, or durations given in seconds."""
    if seconds:
        axis.set_major_locator(DurationTicks())
    axis.set_major_formatter(FuncFormatter(duration if seconds else compact))
    axis.set_minor_locator(NullLocator())


def count_axis(axis: Axis) -> None:
    """Label a linear axis of counts or rates compactly (800k rather than 800000)."""
    axis.set_major_formatter(FuncFormatter(compact))


def fixed_margins(fig: Figure) -> Figure:
    """Give a figure's single axes the fixed margins MARGINS_IN (for compact tick labels)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=MARGINS_IN["left"] / width,
        right=1 - MARGINS_IN["right"] / width,
        bottom=MARGINS_IN["bottom"] / height,
        top=1 - MARGINS_IN["top"] / height,
    )
    return fig
