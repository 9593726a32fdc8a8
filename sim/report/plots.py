"""Every plot the reports draw, for notebooks too: a model run's, a sweep's, sizing's, sensitivity's,
and the fits to the user's data (from `sim.report.fit`).

Each run plot draws on `ax` (a new figure if None) and returns it; the analysis plots return a
figure. The matplotlib backend is left alone (a notebook keeps its inline plots; the commands
choose a file-only backend before anything is drawn).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim.analysis.sweeps import SweepResult, label
from sim.report.axes import count_axis, log_axis
from sim.report.fit import plot_arrivals_fit, plot_latency_fit  # noqa: F401  (public here too)
from sim.report.outputs import number
from sim.results.run import RunResult
from sim.results.tables import ci_half_width
from sim.scenario.durations import format_duration

if TYPE_CHECKING:
    from sim.analysis.sensitivity import SensitivityResult
    from sim.analysis.sizing import SizingResult


# --- plots ------------------------------------------------------------------------------------


def _band(timeseries: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean and 95 % CI of a time-series column across replications, per time bin."""
    grouped = timeseries.groupby("time_s")[column]
    mean, sd, n = grouped.mean(), grouped.std(ddof=1), grouped.count()
    half = pd.Series(ci_half_width(sd, n), index=mean.index).fillna(0)  # as the tables' CIs
    return pd.DataFrame({"mean": mean, "low": mean - half, "high": mean + half})


def _hours(seconds: pd.Index | np.ndarray) -> np.ndarray:
    return np.asarray(seconds, dtype=float) / 3600.0


def _backlog_bands(ax: plt.Axes, timeseries: pd.DataFrame) -> None:
    """The backlog and the retry pool over time (hours), mean with 95 % CI band."""
    for column, color in (("backlog", "C0"), ("retry_pool", "C3")):
        band = _band(timeseries, column)
        x = _hours(band.index)
        ax.plot(x, band["mean"], color=color, label=column.replace("_", " "))
        ax.fill_between(x, band["low"], band["high"], color=color, alpha=0.25, linewidth=0)


def plot_backlog(result: RunResult, ax: plt.Axes | None = None) -> plt.Axes:
    """Events waiting for a token and waiting out a backoff, mean with 95 % CI band."""
    ax = ax or plt.subplots(figsize=(9, 4))[1]
    _backlog_bands(ax, result.timeseries)
    ax.set(xlabel="time (h)", ylabel="events", title="Backlog (waiting for a token) and retry pool")
    count_axis(ax.yaxis)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def plot_destination_backlog(
    result: RunResult, destination: str, ax: plt.Axes | None = None
) -> plt.Axes:
    """One destination of a bus: its deliveries waiting for a token and waiting out a backoff
    (mean with 95 % CI band), and its attempts per second against its own rate limit."""
    ax = ax or plt.subplots(figsize=(9, 4))[1]
    series = result.destination_timeseries
    if series is None:
        raise ValueError("a per-destination backlog needs a bus run")
    mine = series[series["destination"] == destination]
    _backlog_bands(ax, mine)
    ax.set(xlabel="time (h)", ylabel="deliveries", title=f"{destination}: backlog and retry pool")
    ax.grid(alpha=0.3)
    rate_ax = ax.twinx()
    attempts = _band(mine, "attempts")
    widths = np.diff(attempts.index.to_numpy(dtype=float), prepend=0.0)
    rate_ax.plot(_hours(attempts.index), attempts["mean"] / widths, color="C2", linewidth=0.8,
                 label="attempts/s (right)")  # fmt: skip
    limit = result.scenario.bus.destination(destination).invocation_rate_limit_per_second
    if limit is not None:
        rate_ax.axhline(limit, color="C2", linestyle="--", linewidth=1, label="its rate limit")
    rate_ax.set_ylabel("attempts per second")
    rate_ax.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()
    more = rate_ax.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left")
    return ax


def plot_throughput(result: RunResult, ax: plt.Axes | None = None) -> plt.Axes:
    """Arrivals, attempts and successes per second, mean across replications."""
    ax = ax or plt.subplots(figsize=(9, 4))[1]
    for column in ("arrivals", "attempts", "successes"):
        band = _band(result.timeseries, column)
        widths = np.diff(band.index.to_numpy(dtype=float), prepend=0.0)  # the last may be short
        ax.plot(_hours(band.index), band["mean"] / widths, label=column)
    scenario = result.scenario
    if scenario.is_bus:
        limit = scenario.bus.account.invocation_limit_per_second
        name = "account quota"
    else:
        limit = scenario.destination.invocation_rate_limit_per_second
        name = "rate limit"
    if limit is not None:
        ax.axhline(limit, color="k", linestyle="--", linewidth=1, label=name)
    ax.set(xlabel="time (h)", ylabel="per second", title="Throughput")
    count_axis(ax.yaxis)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def plot_delay_cdf(result: RunResult, ax: plt.Axes | None = None) -> plt.Axes:
    """Cumulative distribution of delivery delay (arrival to successful response)."""
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    edges, cdf = result.delay_cdf()
    ax.step(edges, cdf, where="post")
    slo = result.scenario.slo.max_p99_delivery_delay
    if slo is not None:
        ax.axvline(slo, color="C3", linestyle="--", label=f"SLO p99 ≤ {format_duration(slo)}")
        ax.legend()
    ax.set(
        xscale="log",
        xlabel="delivery delay",
        ylabel="fraction delivered within",
        title="Delivery delay CDF",
        ylim=(0, 1.01),
    )
    log_axis(ax.xaxis, seconds=True)
    ax.grid(alpha=0.3, which="both")
    return ax


def plot_dlq(result: RunResult, ax: plt.Axes | None = None) -> plt.Axes:
    """Cumulative events dead-lettered and dropped over time, mean across replications."""
    ax = ax or plt.subplots(figsize=(9, 4))[1]
    series = result.timeseries.copy()
    for column in ("dlq", "dropped"):
        series[column] = series.groupby("replication")[column].cumsum()
        band = _band(series, column)
        ax.plot(_hours(band.index), band["mean"], label=column)
        ax.fill_between(_hours(band.index), band["low"], band["high"], alpha=0.25, linewidth=0)
    ax.set(xlabel="time (h)", ylabel="events (cumulative)", title="Dead-lettered and dropped")
    count_axis(ax.yaxis)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def plot_attempts_per_event(result: RunResult, ax: plt.Axes | None = None) -> plt.Axes:
    """How many attempts ended events took."""
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    counts = result.attempts_per_event()
    used = np.flatnonzero(counts)
    last = int(used[-1]) + 1 if used.size else 2
    ax.bar(np.arange(last), counts[:last], color="C2")
    ax.set(yscale="log", xlabel="attempts per event", ylabel="events", title="Attempts per event")
    log_axis(ax.yaxis)
    ax.grid(alpha=0.3, axis="y")
    return ax


# --- sweep plots -------------------------------------------------------------------------------


def _select(table: pd.DataFrame, where: Mapping[str, Any] | None) -> pd.DataFrame:
    for key, value in (where or {}).items():
        if key not in table.columns:
            raise KeyError(f"{key!r} is not a swept parameter")
        wanted = label(value) if isinstance(value, dict | list) else value
        table = table[table[key] == wanted]
        if table.empty:
            raise ValueError(f"no grid point has {key} = {value!r}")
    return table


def _numeric(values: pd.Series) -> bool:
    return all(isinstance(v, Real) and not isinstance(v, bool) for v in values)


def _positions(values: pd.Series) -> tuple[np.ndarray, list[Any] | None]:
    """x positions for parameter values: the numbers themselves, or 0..n-1 for categories."""
    if _numeric(values):
        return values.to_numpy(dtype=float), None
    categories = list(dict.fromkeys(values))
    return np.array([categories.index(v) for v in values], dtype=float), categories


def _short_key(key: str) -> str:
    """A key path without its section (`destination.`, `endpoint.`, ...) for legends."""
    section, _, rest = key.partition(".")
    return rest if rest and section in ("destination", "endpoint", "retry_policy", "slo") else key


def _legend(row: pd.Series, names: Sequence[str]) -> str:
    return ", ".join(f"{_short_key(name)}={number(row[name])}" for name in names)


def plot_sweep_metric(
    result: SweepResult,
    metric: str,
    x: str | None = None,
    where: Mapping[str, Any] | None = None,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Mean and 95 % CI band of a metric against parameter `x`, a line per value of the others."""
    ax = ax or plt.subplots(figsize=(8, 4.5))[1]
    table = _select(result.metric(metric), where)
    fixed = set(where or {})
    free = [p for p in result.parameters if p not in fixed]
    varied = [p for p in free if table[p].nunique(dropna=False) > 1]
    x = x or next(iter(varied or free), None)  # on x: the first parameter that varies
    others = [p for p in result.parameters if p != x and p not in fixed]
    groups = table.groupby(others, sort=False) if others else [((), table)]
    categories: list[Any] | None = None
    for _, group in groups:
        if x is None:
            positions = np.zeros(len(group))
        else:
            group = group.sort_values(x) if _numeric(group[x]) else group
            positions, categories = _positions(group[x])
        line = ax.plot(positions, group["mean"], marker="o", label=_legend(group.iloc[0], others))[
            0
        ]
        if group["ci_low"].notna().any():
            ax.fill_between(
                positions,
                group["ci_low"],
                group["ci_high"],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
    if categories is not None:
        ax.set_xticks(range(len(categories)), [number(c) for c in categories], rotation=15)
    if others:
        ax.legend(fontsize="small")
    title = metric + (f" ({_legend(pd.Series(where, dtype=object), list(where))})" if where else "")
    ax.set(xlabel=x or "", ylabel=metric, title=title)
    ax.grid(alpha=0.3)
    return ax


def plot_sweep_heatmap(
    result: SweepResult,
    metric: str,
    x: str | None = None,
    y: str | None = None,
    where: Mapping[str, Any] | None = None,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Heatmap of a metric's mean over two parameters; any others must be fixed with `where`."""
    free = [p for p in result.parameters if p not in (where or {})]
    x = x or (free[0] if free else None)
    y = y or next((p for p in free if p != x), None)
    if x is None or y is None:
        raise ValueError("a heatmap needs two swept parameters")
    rest = [p for p in free if p not in (x, y)]
    if rest:
        raise ValueError(f"fix the other parameters with where={{...}}: {', '.join(rest)}")
    ax = ax or plt.subplots(figsize=(7, 5))[1]
    table = _select(result.metric(metric), where)
    grid = table.pivot_table(index=y, columns=x, values="mean", aggfunc="first", sort=True)
    image = ax.imshow(grid.to_numpy(dtype=float), origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(grid.shape[1]), [number(v) for v in grid.columns], rotation=15)
    ax.set_yticks(range(grid.shape[0]), [number(v) for v in grid.index])
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        shade = float(np.asarray(image.norm(value))) if np.isfinite(value) else 0.0
        ax.text(
            j,
            i,
            number(value),
            ha="center",
            va="center",
            fontsize="small",
            color="k" if shade > 0.6 else "w",
        )
    ax.figure.colorbar(image, ax=ax, label=metric)
    fixed = f", {_legend(pd.Series(where, dtype=object), list(where))}" if where else ""
    ax.set(xlabel=x, ylabel=y, title=f"{metric} (mean{fixed})")
    return ax


# --- sizing and sensitivity plots ---------------------------------------------------------------


def plot_sizing(result: SizingResult) -> Figure:
    """One panel per SLO metric against the rate limit (mean, 95 % CI, limit), plus the probe."""
    table = result.evaluations.sort_values("rate")
    checks = [c for c in table.columns if c.endswith(".met") and c != "all_met"]
    panels = len(checks) + (result.endpoint_probe is not None)
    fig, axes = plt.subplots(panels, 1, figsize=(8, 3.2 * panels), squeeze=False)
    from sim.results.tables import SLO_METRICS

    for ax, check in zip(axes[:, 0], checks, strict=False):
        slo = check.removesuffix(".met")
        metric = SLO_METRICS[slo]
        rate = table["rate"].to_numpy()
        ax.plot(rate, table[f"{metric}.mean"], marker="o", label="mean")
        ax.fill_between(
            rate,
            table[f"{metric}.ci_low"].fillna(table[f"{metric}.mean"]),
            table[f"{metric}.ci_high"].fillna(table[f"{metric}.mean"]),
            alpha=0.25,
            linewidth=0,
            label="95 % CI",
        )
        ax.axhline(getattr(result.scenario.slo, slo), color="C3", linestyle="--", label=f"{slo}")
        _mark_recommendation(ax, result)
        ax.set(ylabel=metric, title=f"{metric} vs rate limit")
        means = table[f"{metric}.mean"]
        if metric == "delivery_delay_s.p99" and (means > 0).all():
            ax.set_yscale("log", nonpositive="clip")  # delays span decades; a CI below 0 is cut
            log_axis(ax.yaxis, seconds=True)
            ax.set_ylim(bottom=float(means.min()) / 3)
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    if result.endpoint_probe is not None:
        ax = axes[-1, 0]
        probe = result.endpoint_probe
        ax.plot(
            probe["rate"],
            probe["overload_fraction.mean"],
            marker="o",
            color="C1",
            label="overload answers + timeouts",
        )
        ax.fill_between(
            probe["rate"],
            probe["overload_fraction.ci_low"].fillna(probe["overload_fraction.mean"]),
            probe["overload_fraction.ci_high"].fillna(probe["overload_fraction.mean"]),
            color="C1",
            alpha=0.25,
            linewidth=0,
        )
        if result.endpoint_limit is not None:
            ax.axvline(result.endpoint_limit, color="C1", linestyle=":", label="endpoint limit")
        _mark_recommendation(ax, result)
        ax.set(
            ylabel="fraction of attempts", title="Endpoint probe (healthy endpoint fed at the rate)"
        )
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("invocation_rate_limit_per_second")
    fig.tight_layout()
    return fig


def _mark_recommendation(ax: plt.Axes, result: SizingResult) -> None:
    if result.recommended is not None:
        ax.axvline(result.recommended, color="k", linestyle=":", label="recommended")


def plot_sensitivity(result: SensitivityResult, metrics: Sequence[str] | None = None) -> Figure:
    """Tornado chart: per metric, the range of % change from baseline each assumption causes."""
    table = result.table()
    metrics = list(metrics or dict.fromkeys(table["metric"]))
    fig, axes = plt.subplots(
        len(metrics),
        1,
        figsize=(8, 1.2 + 0.45 * len(result.settings) * len(metrics)),
        squeeze=False,
    )
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        rows = table[table["metric"] == metric]
        # from a zero baseline any change is infinite in %: drawn to the edge
        low = np.clip(rows["low_change_pct"].fillna(0).to_numpy(), -1000, 1000)
        high = np.clip(rows["high_change_pct"].fillna(0).to_numpy(), -1000, 1000)
        positions = np.arange(len(rows))
        ax.barh(positions, high - low, left=low, color="C0", alpha=0.7)
        ax.axvline(0, color="k", linewidth=1)
        ax.set_yticks(positions, [s.split(".")[-1] for s in rows["setting"]])
        ax.set(
            title=f"{metric} (baseline {number(rows['baseline'].iloc[0])})",
            xlabel="% change from baseline",
        )
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig
