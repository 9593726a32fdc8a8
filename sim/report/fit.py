"""Plots of what was fitted from the user's data: the endpoint's latency (the data's CDF against
the fitted lognormal) and the arrivals read from CloudWatch metrics.

Each draws on `ax` (a new figure if None) and returns it, as `sim.report.plots` does.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from sim.fit.arrivals import ArrivalsFit
from sim.fit.endpoint import EndpointFit, duration
from sim.report.axes import log_axis
from sim.report.outputs import save_figure


def plot_latency_fit(fit: EndpointFit, ax: plt.Axes | None = None) -> plt.Axes:
    """CDF of the answered requests' latencies against the fitted lognormal (log time axis)."""
    ax = ax or plt.subplots(figsize=(8, 4.5))[1]
    values, counts = np.unique(np.maximum(fit.latencies_s, 1e-4), return_counts=True)
    ax.step(
        values,
        np.cumsum(counts) / counts.sum(),
        where="post",
        color="C3",
        linewidth=2,
        label=f"data ({fit.latencies_s.size:,} answered requests)",
    )
    if fit.lognormal:
        from scipy.special import ndtr  # the normal CDF, without loading scipy.stats

        grid = np.geomspace(values[0], values[-1] * 1.5, 400)
        fitted = ndtr((np.log(grid) - fit.mu) / fit.sigma)
        ax.plot(
            grid,
            fitted,
            color="C0",
            label=f"lognormal: median {duration(fit.median_s)}, "
            f"p99 {duration(fit.p99_s)} (KS distance {fit.ks_distance:.3f})",
        )
    for q in (0.5, 0.99):
        ax.axhline(q, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    log_axis(ax.xaxis, seconds=True)
    ax.set(
        xlabel="latency",
        ylabel="fraction of requests within",
        title=f"Endpoint latency: data vs fit ({100 * fit.timeout_probability:.2f} % hung)",
    )
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3, which="both")
    return ax


def plot_arrivals_fit(fit: ArrivalsFit, ax: plt.Axes | None = None) -> plt.Axes:
    """Events per second in each period of the metric, over UTC time."""
    ax = ax or plt.subplots(figsize=(9, 4))[1]
    edges = np.append(fit.times, fit.times[-1] + fit.period_s)
    times = np.round(edges * 1e6).astype("datetime64[us]")  # UTC
    rates = fit.counts / fit.period_s
    ax.stairs(rates, times, color="C0", fill=True, alpha=0.35)
    ax.stairs(rates, times, color="C0", baseline=None)
    rule = f" (rule {fit.rule})" if fit.rule else ""
    ax.set(xlabel="time (UTC)", ylabel="events per second", title=f"{fit.metric}{rule}")
    ax.grid(alpha=0.3)
    ax.figure.autofmt_xdate()
    return ax


def save_latency_fit(fit: EndpointFit, path: Path) -> Path:
    """Write the latency plot to `path` (PNG)."""
    save_figure(_figure(plot_latency_fit(fit)), path)
    return path


def save_arrivals_fit(fit: ArrivalsFit, path: Path) -> Path:
    """Write the arrivals plot to `path` (PNG)."""
    save_figure(_figure(plot_arrivals_fit(fit)), path)
    return path


def _figure(ax: plt.Axes) -> Figure:
    figure = ax.get_figure()
    assert isinstance(figure, Figure)
    return figure
