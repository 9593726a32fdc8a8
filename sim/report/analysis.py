"""Report folders of the analyses: sweeps, rate-limit sizing and sensitivity.

Folders are written under a temporary name and renamed into place, as `sim.report.run` does, so
an error never leaves a partial folder behind. The matplotlib backend is left alone (a notebook
keeps its inline plots; without a display matplotlib picks a file-only backend itself).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import pandas as pd
import yaml

from sim.analysis.sweeps import SweepResult
from sim.report.outputs import json_safe, number, save_figure, write_folder
from sim.report.plots import plot_sensitivity, plot_sizing, plot_sweep_heatmap, plot_sweep_metric

if TYPE_CHECKING:
    from sim.analysis.sensitivity import SensitivityResult
    from sim.analysis.sizing import SizingResult

SWEEP_METRICS = (
    "delivery_delay_s.p99",
    "backlog_peak",
    "time_to_drain_s",
    "dropped_fraction",
    "dlq_fraction",
    "InvocationAttempts",
    "endpoint_peak_rps",
)


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
            "method": result.method,
            "rates_evaluated": result.rates_evaluated,
            "replications_run": result.replications_run,
            "lattice_size": result.lattice_size,
            "wall_s": round(result.wall_s, 3),
            "evaluations": result.evaluations[["rate", "replications", "all_met"]].to_dict(
                orient="records"
            ),
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
        if result.scenario.is_bus:
            judged = (
                f"the deliveries of `{result.target.prefix[:-1]}`"
                if result.target.prefix
                else "every delivery of the bus"
            )
            lines += [f"Sized: `{result.target.key}`; SLOs judged on {judged}.", ""]
        lines += [result.effort(), ""]
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
