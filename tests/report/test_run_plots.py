"""The run report's plots have fixed margins (sim.report.axes.fixed_margins): nothing they draw
may fall outside the canvas, whatever the magnitudes — checked on real runs from a few events
a second to a backlog of millions, and on a bus."""

from __future__ import annotations

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sim.report.axes import fixed_margins
from sim.report.run import PLOTS
from sim.runner.simulate import simulate
from tests.support import ROOT

TOLERANCE_IN = 0.01

RUNS = {  # scenario, overrides: small counts, a burst, a backlog of ~3 M, a bus of five
    "burst": ("scenarios/burst.yaml", {"horizon": "2h", "replications": 2}),
    "ref-24h": ("scenarios/bench/ref-24h.yaml", {"horizon": "150m", "replications": 2}),
    "steady": ("scenarios/steady.yaml", {"horizon": "30m", "replications": 2}),
    "bus": ("scenarios/bus.yaml", {"horizon": "20m", "replications": 2}),
}


def outside_canvas(fig: Figure) -> list[str]:
    """Which edges of the canvas the figure's drawn content crosses (inches beyond, each)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    drawn = fig.get_tightbbox(canvas.get_renderer())  # everything drawn, in inches
    width, height = fig.get_size_inches()
    beyond = {
        "left": -drawn.x0,
        "bottom": -drawn.y0,
        "right": drawn.x1 - width,
        "top": drawn.y1 - height,
    }
    return [
        f"{edge} by {inches:.2f} in" for edge, inches in beyond.items() if inches > TOLERANCE_IN
    ]


@pytest.fixture(scope="module")
def results():
    return {
        name: simulate(ROOT / path, overrides, workers=1)
        for name, (path, overrides) in RUNS.items()
    }


@pytest.mark.slow
@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("plot", list(PLOTS))
def test_report_plots_fit_their_fixed_margins(results, run, plot):
    fig = fixed_margins(Figure(figsize=(9, 4)))
    PLOTS[plot](results[run], fig.subplots())
    assert outside_canvas(fig) == []


def test_the_check_sees_a_label_cut_off():
    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 123456789])
    ax.set(ylabel="a long label of events")
    fig.subplots_adjust(left=0.02)  # no room for the y tick labels
    assert any(edge.startswith("left") for edge in outside_canvas(fig))
