"""Plots and report folders of the analyses: sweeps, rate-limit sizing and sensitivity.

Folders are written under a temporary name and renamed into place, as `sim.report` does, so
an error never leaves a partial folder behind. The matplotlib backend is left alone (a notebook
keeps its inline plots; without a display matplotlib picks a file-only backend itself).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from sim.outputs import json_safe, number, save_figure, write_folder
from sim.sweeps import SweepResult, label

if TYPE_CHECKING:
    from sim.sensitivity import SensitivityResult
    from sim.sizing import SizingResult

SWEEP_METRICS = (
    "delivery_delay_s.p99",
    "backlog_peak",
    "time_to_drain_s",
    "dropped_fraction",
    "dlq_fraction",
    "InvocationAttempts",
    "endpoint_peak_rps",
)


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
    from sim.sizing import SLO_METRICS

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


# --- folders -----------------------------------------------------------------------------------


def _filename(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", metric)


def write_sweep_report(
    result: SweepResult, out_dir: Path, metrics: Sequence[str] | None = None
) -> Path:
    """runs.csv (one row per grid point × replication), aggregated.csv, slo.csv, plots, report.md."""
    metrics = [m for m in (metrics or SWEEP_METRICS) if m in result.metric_names]

    def fill(folder: Path) -> None:
        result.runs.to_csv(folder / "runs.csv", index=False)
        result.aggregated.to_csv(folder / "aggregated.csv", index=False)
        slo = result.slo()
        slo.to_csv(folder / "slo.csv")
        (folder / "scenario.yaml").write_text(
            yaml.safe_dump(result.scenario.resolved(), sort_keys=False)
        )
        plots = []
        for metric in metrics:
            name = f"{_filename(metric)}.png"
            fig, ax = plt.subplots(figsize=(8, 4.5))
            plot_sweep_metric(result, metric, ax=ax)
            save_figure(fig, folder / name)
            plots.append(name)
            if len(result.parameters) == 2:
                name = f"{_filename(metric)}-heatmap.png"
                fig, ax = plt.subplots(figsize=(7, 5))
                plot_sweep_heatmap(result, metric, ax=ax)
                save_figure(fig, folder / name)
                plots.append(name)
        (folder / "report.md").write_text(_sweep_markdown(result, slo, metrics, plots))

    return write_folder(out_dir, fill)


def _sweep_markdown(
    result: SweepResult, slo: pd.DataFrame, metrics: list[str], plots: list[str]
) -> str:
    s = result.scenario
    lines = [
        f"# {s.name}: sweep over {', '.join(result.parameters) or 'no parameter'}",
        "",
        f"{len(result.points)} grid points × {s.replications} replications (seed {s.seed}, "
        f"horizon {s.horizon:g} s) on {result.backend}, {result.wall_s:.1f} s. Every grid point uses "
        "the same random streams (common random numbers), so differences between points come "
        "from the parameters.",
        "",
        "| " + " | ".join([*result.parameters, *metrics, "SLOs met"]) + " |",
        "|" + "---|" * (len(result.parameters) + len(metrics) + 1),
    ]
    for point in range(len(result.points)):
        values = result.point_values(point)
        cells = [number(values[p]) for p in result.parameters]
        for metric in metrics:
            row = result.metric(metric).loc[point]
            ci = (
                ""
                if math.isnan(row["ci_low"])
                else f" ({number(row['ci_low'])} – {number(row['ci_high'])})"
            )
            cells.append(number(row["mean"]) + ci)
        met = slo.loc[point, "all_met"]
        cells.append("–" if isinstance(met, float) else ("yes" if met else "**no**"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Mean (95 % CI) across replications. Files: `runs.csv`, `aggregated.csv`, "
        "`slo.csv`, `scenario.yaml` (the base scenario).",
        "",
    ]
    lines += [f"![{p[:-4]}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def size_document(result: SizingResult) -> dict[str, Any]:
    """The content of size.json."""
    return json_safe(
        {
            "scenario": result.scenario.name,
            "recommendation": result.sentence(),
            "recommended_rate": result.recommended,
            "met": result.met,
            "binding": result.binding,
            "monotone": result.monotone,
            "range": {"min": result.min_rate, "max": result.max_rate, "step": result.step},
            "replications": result.scenario.replications,
            "slo": result.scenario.slo.model_dump(exclude_none=True),
            "endpoint_limit": result.endpoint_limit,
            "overload_tolerance": result.overload_tolerance,
            "notes": result.notes,
            "assumptions": result.scenario.assumptions(),
        }
    )


def write_size_report(result: SizingResult, out_dir: Path) -> Path:
    """size.json, evaluations.csv, runs.csv, endpoint_probe.csv, size.png and report.md."""

    def fill(folder: Path) -> None:
        (folder / "size.json").write_text(json.dumps(size_document(result), indent=2))
        result.evaluations.to_csv(folder / "evaluations.csv", index=False)
        result.runs.to_csv(folder / "runs.csv", index=False)
        if result.endpoint_probe is not None:
            result.endpoint_probe.to_csv(folder / "endpoint_probe.csv", index=False)
        (folder / "scenario.yaml").write_text(
            yaml.safe_dump(result.scenario.resolved(), sort_keys=False)
        )
        save_figure(plot_sizing(result), folder / "size.png")
        lines = [f"# {result.scenario.name}: rate-limit sizing", "", result.sentence(), ""]
        lines += [f"* {note}" for note in result.notes]
        lines += ["", _markdown_table(result.evaluations), "", "![size](size.png)", ""]
        if result.endpoint_probe is not None:
            lines += ["## Endpoint probe", "", _markdown_table(result.endpoint_probe), ""]
        lines += [
            "Assumptions: "
            + ", ".join(f"`{k}` = {v}" for k, v in result.scenario.assumptions().items())
        ]
        (folder / "report.md").write_text("\n".join(lines) + "\n")

    return write_folder(out_dir, fill)


def write_sensitivity_report(result: SensitivityResult, out_dir: Path) -> Path:
    """runs.csv, sensitivity.csv, conclusions.csv, tornado.png and report.md."""

    def fill(folder: Path) -> None:
        result.sweep.runs.to_csv(folder / "runs.csv", index=False)
        result.table().to_csv(folder / "sensitivity.csv", index=False)
        conclusions = result.conclusions()
        conclusions.to_csv(folder / "conclusions.csv", index=False)
        save_figure(plot_sensitivity(result), folder / "tornado.png")
        s = result.scenario
        lines = [
            f"# {s.name}: sensitivity to the ASSUMPTION settings",
            "",
            f"Each setting varied alone around the baseline, {s.replications} replications per value, "
            "common random numbers throughout.",
            "",
            "## Do the SLO verdicts hold?",
            "",
            _markdown_table(conclusions),
            "",
        ]
        lines += [f"* skipped `{k}`: {why}" for k, why in result.skipped.items()]
        lines += [
            "",
            "## How much each prediction moves",
            "",
            _markdown_table(result.table()),
            "",
            "![tornado](tornado.png)",
        ]
        (folder / "report.md").write_text("\n".join(lines) + "\n")

    return write_folder(out_dir, fill)


def _markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    lines = [header, "|" + "---|" * len(frame.columns)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(number(v) for v in row) + " |")
    return "\n".join(lines)
