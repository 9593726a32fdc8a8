"""Plots of a backtest: observed against the model's bands per series, and the fit surface.

They take a `sim.validation.backtest.Backtest` (`Backtest.plot()` and `plot_fit()` call them).
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from sim.scenario.metric_data import COUNT_METRICS
from sim.validation.backtest_fit import FitSurface
from sim.validation.compare import ItemResult

BAND, OBSERVED = "C0", "C3"


def series_items(result: Any, metric: str, stat: str) -> list[ItemResult]:
    name = metric if metric in COUNT_METRICS else f"{metric} {stat}"
    return [i for i in result.comparison.items if i.name.startswith(f"{name}[")]


def plot_overlay(result: Any) -> Figure:
    """One panel per observed series: observed, model median, per-period and simultaneous bands."""
    series = result.layout.series
    fig, axes = plt.subplots(
        len(series), 1, figsize=(10, 2.6 * len(series)), sharex=True, squeeze=False
    )
    window = result.observed.window
    first = result.layout.first_period
    seconds = window.start_at + window.period_s * np.arange(first, window.n_periods + 1)
    edges = np.round(seconds * 1e6).astype("datetime64[us]")  # UTC
    for ax, (metric, stat) in zip(axes[:, 0], series, strict=True):
        items = series_items(result, metric, stat)
        low, high = (np.array([i.interval[k] for i in items]) for k in (0, 1))
        pi_low, pi_high = (np.array([i.pi95[k] for i in items]) for k in (0, 1))
        ax.stairs(
            high,
            edges,
            baseline=low,
            fill=True,
            color=BAND,
            alpha=0.15,
            label="model: simultaneous 95 % band",
        )
        ax.stairs(
            pi_high,
            edges,
            baseline=pi_low,
            fill=True,
            color=BAND,
            alpha=0.3,
            label="model: 95 % per period",
        )
        ax.stairs(
            np.array([i.median for i in items]),
            edges,
            baseline=None,
            color=BAND,
            label="model: median",
        )
        ax.stairs(
            np.array([i.live for i in items]),
            edges,
            baseline=None,
            color=OBSERVED,
            linewidth=2,
            label="observed",
        )
        outside = [k for k, i in enumerate(items) if not i.inside]
        if outside:
            centers = [edges[k] + (edges[k + 1] - edges[k]) / 2 for k in outside]
            ax.plot(centers, [items[k].live for k in outside], "x", color=OBSERVED, markersize=8)
        unit = "ms" if metric not in COUNT_METRICS else "per period"
        ax.set_ylabel(f"{unit}")
        ax.set_title(
            metric if metric in COUNT_METRICS else f"{metric} ({stat})", fontsize=10, loc="left"
        )
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("time (UTC)")
    fig.autofmt_xdate()
    return fig


def plot_surface(surface: FitSurface, alpha: float) -> Figure:
    """p-value over the grid: a heatmap for two settings, else one profile per setting (the best
    p-value over the other settings at each value)."""
    if len(surface.keys) == 2:
        x_key, y_key = surface.keys
        xs, ys = surface.values(x_key), surface.values(y_key)
        grid = np.full((len(ys), len(xs)), np.nan)
        for point in surface.points:
            grid[ys.index(point.settings[y_key]), xs.index(point.settings[x_key])] = point.p_value
        fig, ax = plt.subplots(figsize=(7, 5))
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1)
        for (row, col), p in np.ndenumerate(grid):
            ax.text(
                col,
                row,
                "PASS" if p > alpha else "",
                ha="center",
                va="center",
                color="w",
                fontsize=8,
            )
        ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        ax.set_yticks(range(len(ys)), [str(v) for v in ys])
        ax.set(xlabel=x_key, ylabel=y_key, title="p-value of the backtest over the grid")
        fig.colorbar(image, ax=ax, label="p-value")
        return fig
    fig, axes = plt.subplots(
        1, len(surface.keys), figsize=(4.5 * len(surface.keys), 3.8), squeeze=False
    )
    for ax, key in zip(axes[0], surface.keys, strict=True):
        values = surface.values(key)
        best = [max(p.p_value for p in surface.points if p.settings[key] == v) for v in values]
        labels = [str(v) for v in values]
        ax.plot(labels, best, "o-", color=BAND)
        ax.axhline(alpha, color=OBSERVED, linestyle="--", label=f"α = {alpha:g}: below, ruled out")
        ax.set(xlabel=key, ylabel="best p-value", ylim=(0, 1.02), title=key.rsplit(".", 1)[-1])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig
