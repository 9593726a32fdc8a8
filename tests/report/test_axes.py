"""The reports' log-axis ticks (sim.report.axes): plain-text labels on round values."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from sim.report.axes import MOST_TICKS, DurationTicks, compact, duration, log_axis


@pytest.mark.parametrize(
    ("count", "label"),
    [
        (1, "1"),
        (10, "10"),
        (999, "999"),
        (1000, "1k"),
        (2500, "2.5k"),
        (1e6, "1M"),
        (3.2e9, "3.2G"),
    ],
)
def test_counts_are_compact(count, label):
    assert compact(count) == label


@pytest.mark.parametrize(
    ("seconds", "label"),
    [(0.001, "1 ms"), (0.25, "250 ms"), (1, "1 s"), (30, "30 s"), (60, "1 min"),
     (600, "10 min"), (3600, "1 h"), (5400, "1.5 h"), (86400, "1 d"), (604800, "7 d")],
)  # fmt: skip
def test_durations_in_their_largest_unit(seconds, label):
    assert duration(seconds) == label


@pytest.mark.parametrize(
    ("low", "high", "ticks"),
    [
        (0.05, 3, [0.05, 0.1, 0.2, 0.5, 1, 2]),  # a latency: the 1-2-5 ladder
        (0.5, 4000, [1, 10, 60, 600, 3600]),  # too many fine ones: about a decade apart
        (0.0005, 1e6, [0.001, 0.1, 1, 60, 3600, 86400, 604800]),  # a day's delays: clock units
    ],
)
def test_duration_ticks_are_round_and_few(low, high, ticks):
    assert list(DurationTicks().tick_values(low, high)) == ticks
    assert len(ticks) <= MOST_TICKS


def test_a_view_too_narrow_for_round_durations_still_gets_ticks():
    ticks = DurationTicks().tick_values(0.11, 0.19)
    assert len(ticks) >= 1


def test_log_axis_draws_plain_text_major_ticks_only():
    fig = Figure()
    ax = fig.subplots()
    ax.plot([0.01, 5000], [1, 2e6])
    ax.set(xscale="log", yscale="log")
    log_axis(ax.xaxis, seconds=True)
    log_axis(ax.yaxis)
    fig.canvas.draw()
    x_labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    y_labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert "1 s" in x_labels and "1 h" in x_labels
    assert "1k" in y_labels and "1M" in y_labels
    assert not any("$" in label for label in x_labels + y_labels)  # no mathtext
    assert len(ax.xaxis.get_minorticklocs()) == 0 and len(ax.yaxis.get_minorticklocs()) == 0
