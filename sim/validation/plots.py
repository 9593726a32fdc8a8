"""Overlay plots of a validation: model bands against the live run, item deviations, overhead."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np  # noqa: E402

from sim.report.axes import log_axis  # noqa: E402
from sim.results.accumulator import DELAY_BINS  # noqa: E402
from sim.validation.compare import KS_ITEM, Comparison  # noqa: E402
from sim.validation.observe import SCALARS, SERIES  # noqa: E402

if TYPE_CHECKING:
    from sim.validation.power import Power
    from sim.validation.result import Validation

BAND, PI, LIVE, RAW = "C0", "C0", "C3", "0.45"


def _series_band(comparison: Comparison, name: str) -> dict[str, np.ndarray]:
    items = comparison.series(name)
    return {
        "median": np.array([i.median for i in items]),
        "low": np.array([i.interval[0] for i in items]),
        "high": np.array([i.interval[1] for i in items]),
        "pi_low": np.array([i.pi95[0] for i in items]),
        "pi_high": np.array([i.pi95[1] for i in items]),
        "live": np.array([i.live for i in items]),
    }


def _overlay(
    ax: plt.Axes, v: Validation, name: str, per_s: float = 1.0, raw: np.ndarray | None = None
) -> None:
    band = _series_band(v.comparison, name)
    t = v.live_corrected.bin_end_s
    x = np.concatenate(([0.0], t))

    def stairs(values: np.ndarray) -> np.ndarray:
        return np.concatenate((values[:1], values)) / per_s

    ax.fill_between(x, stairs(band["low"]), stairs(band["high"]), step="pre", color=BAND,
                    alpha=0.15, linewidth=0, label="model: simultaneous 95 % band")  # fmt: skip
    ax.fill_between(x, stairs(band["pi_low"]), stairs(band["pi_high"]), step="pre", color=PI,
                    alpha=0.3, linewidth=0, label="model: 95 % per bin")  # fmt: skip
    ax.step(x, stairs(band["median"]), where="pre", color=BAND, label="model: median")
    ax.step(x, stairs(band["live"]), where="pre", color=LIVE, linewidth=2, label="live (corrected)")
    if raw is not None:
        ax.step(x, stairs(raw), where="pre", color=RAW, linestyle="--", label="live (raw)")
    ax.set_xlim(0, t[-1])
    ax.grid(alpha=0.3)


def plot_levels(v: Validation) -> plt.Figure:
    """Backlog and retry pool per bin: model bands vs the live run."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, name in zip(axes, ("backlog", "retry_pool"), strict=True):
        _overlay(ax, v, name, raw=v.live_raw.series[name])
        ax.set(xlabel="time (s)", ylabel="events", title=SERIES[name])
    axes[0].legend(fontsize=8)
    return fig


def plot_throughput(v: Validation) -> plt.Figure:
    """Endpoint request rate per bin (band vs live), with arrivals and successes."""
    fig, ax = plt.subplots(figsize=(12, 4))
    per_s = v.scenario.sample_every
    _overlay(ax, v, "requests", per_s=per_s)
    t = v.live_corrected.bin_end_s
    x = np.concatenate(([0.0], t))
    for name, color in (("arrivals", "C2"), ("successes", "C1")):
        model = np.median([getattr(o, name) for o in v.model], axis=0)
        live = getattr(v.live_corrected, name)
        ax.step(x, np.concatenate((model[:1], model)) / per_s, where="pre", color=color,
                alpha=0.6, label=f"model median: {name}")  # fmt: skip
        ax.step(x, np.concatenate((live[:1], live)) / per_s, where="pre", color=color,
                linestyle=":", linewidth=2, label=f"live: {name}")  # fmt: skip
    ax.set(xlabel="time (s)", ylabel="per second", title="Requests reaching the endpoint")
    ax.legend(fontsize=8, ncol=2)
    return fig


def plot_delay_cdf(v: Validation) -> plt.Figure:
    """Delivery-delay CDF: pooled model, its bands, the live run (corrected and raw)."""
    c = v.comparison
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = DELAY_BINS[1:]
    threshold = c.item(KS_ITEM).interval[1]
    low, high = (
        np.clip(c.delay_cdf_model - threshold, 0, 1),
        np.clip(c.delay_cdf_model + threshold, 0, 1),
    )
    ax.fill_between(x, low, high, step="post", color=BAND, alpha=0.15, linewidth=0,
                    label="model: simultaneous band (KS)")  # fmt: skip
    ax.fill_between(x, c.delay_band[0], c.delay_band[1], step="post", color=PI, alpha=0.3,
                    linewidth=0, label="model: 95 % per replication")  # fmt: skip
    ax.step(x, c.delay_cdf_model, where="post", color=BAND, label="model: pooled")
    ax.step(x, c.delay_cdf_live, where="post", color=LIVE, linewidth=2, label="live (corrected)")
    ax.step(x, v.comparison_raw.delay_cdf_live, where="post", color=RAW, linestyle="--",
            label="live (raw)")  # fmt: skip
    used = np.flatnonzero((c.delay_cdf_model > 0.0005) & (c.delay_cdf_model < 0.9995))
    if used.size:
        ax.set_xlim(x[max(used[0] - 2, 0)], x[min(used[-1] + 2, x.size - 1)])
    ax.set(xscale="log", xlabel="delivery delay", ylabel="fraction delivered within",
           title="Delivery delay CDF", ylim=(0, 1.01))  # fmt: skip
    log_axis(ax.xaxis, seconds=True)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def plot_items(v: Validation) -> plt.Figure:
    """Every scalar metric's standardized deviation, against the critical value ±c."""
    c = v.comparison
    items = [c.item(n) for n in (*SCALARS, KS_ITEM)]
    z = np.clip([i.z for i in items], -2 * c.critical - 1, 2 * c.critical + 1)
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(items) + 1.2))
    colors = [LIVE if not i.inside else BAND for i in items]
    ax.barh(range(len(items)), z, color=colors)
    for edge in (-c.critical, c.critical):
        ax.axvline(edge, color="k", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(items)), [i.name for i in items], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="standardized deviation z of the live value (dashed: ±c, the 95 % family limit)",
           title="Where live and model agree, and by how much")  # fmt: skip
    ax.grid(alpha=0.3, axis="x")
    return fig


def plot_overhead(v: Validation) -> plt.Figure:
    """Distributions of the live core's overheads (ms)."""
    o = v.overhead
    fig, ax = plt.subplots(figsize=(9, 4))
    for name, values in (
        ("dispatch lag behind the token bucket", o.dispatch_lag_s),
        ("client latency beyond the endpoint's", o.client_excess_s),
        ("load generator lag", o.loadgen_lag_s),
    ):
        values = np.sort(values[~np.isnan(values)]) * 1e3
        if values.size:
            ax.step(values, np.arange(1, values.size + 1) / values.size, where="post", label=name)
    ax.set(xscale="symlog", xlabel="ms", ylabel="fraction within", title="Live core overhead")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def plot_power(power: Power) -> plt.Figure:
    """T / limit of the live run against every deviated model (log scale): right of 1 FAILs."""
    from sim.validation.power import limit_ratio

    rows = [power.baseline, *power.rows]
    ratio = np.array([limit_ratio(r) for r in rows], dtype=float)
    finite = ratio[np.isfinite(ratio)]
    low = min(0.1, float(finite.min()) / 1.5) if finite.size else 0.1
    high = max(2.0, float(finite.max()) * 1.5) if finite.size else 2.0
    shown = np.clip(np.nan_to_num(ratio, nan=high, posinf=high), low, high)
    y = np.arange(len(rows))
    failed = np.array([not r.passed for r in rows])
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(rows) + 1.4))
    ax.hlines(y, 1.0, shown, color=np.where(failed, LIVE, BAND), linewidth=1.5)
    ax.scatter(shown[~failed], y[~failed], color=BAND, zorder=3, label="PASS: not caught")
    ax.scatter(shown[failed], y[failed], color=LIVE, zorder=3, label="FAIL: caught")
    labels = [f"{r.deviation.setting.split('.', 1)[-1]}  {r.deviation.label}" for r in rows]
    labels[0] = "the model as validated"
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="k", linestyle="--", linewidth=1)
    for i in range(1, len(rows)):  # a thin line between settings
        if rows[i].deviation.setting != rows[i - 1].deviation.setting:
            ax.axhline(i - 0.5, color="0.85", linewidth=0.8)
    ax.set(xscale="log", xlim=(low, high),
           xlabel="T / limit of the live run against the model with that one change",
           title=f"Resolution of {power.scenario}: which wrong models the live run rejects "
           f"({power.replications} replications each)")  # fmt: skip
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 1000) if low <= t <= high]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="best")
    return fig


PLOTS = {
    "items.png": plot_items,
    "levels.png": plot_levels,
    "throughput.png": plot_throughput,
    "delay_cdf.png": plot_delay_cdf,
    "overhead.png": plot_overhead,
}
