"""The backtest's report folder: observed against predicted per series (overlay plots), the
verdict table, the fit surface with `--fit`, written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sim.report.outputs import json_safe, number, save_figure, write_folder
from sim.scenario.metric_data import COUNT_METRICS
from sim.validation.backtest import OBSERVED_ARRIVALS_CSV, Backtest, observed_arrivals_csv
from sim.validation.backtest_plots import plot_overlay, plot_surface, series_items


def _table(result: Backtest) -> str:
    lines = [
        "| series | periods | outside | worst period | observed | model median | simultaneous interval | z |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for metric, stat in result.layout.series:
        items = series_items(result, metric, stat)
        worst = max(items, key=lambda i: abs(i.z) if np.isfinite(i.z) else np.inf)
        name = metric if metric in COUNT_METRICS else f"{metric} {stat}"
        low, high = worst.interval
        lines.append(
            f"| {name} | {len(items)} | {sum(not i.inside for i in items)} | {worst.name.split('[')[1][:-1]} "
            f"| {number(worst.live, 3)} | {number(worst.median, 3)} | {number(low, 3)} … {number(high, 3)} "
            f"| {worst.z:+.2f} |"
        )
        if metric in COUNT_METRICS:
            total = result.comparison.item(f"{name}.total")
            mark = "" if total.inside else " **outside**"
            lines.append(
                f"| {name} (total) | | | | {number(total.live)} | {number(total.median)} | "
                f"{number(total.interval[0])} … {number(total.interval[1])}{mark} | {total.z:+.2f} |"
            )
    return "\n".join(lines)


def report_text(result: Backtest) -> str:
    """report.md: verdict, window, table, plots, the fit surface and the method."""
    c, window = result.comparison, result.observed.window
    rule = f", rule {result.observed.rule}" if result.observed.rule else ""
    out = [
        f"# Backtest: {result.scenario.name} against {Path(result.observed.source).name}{rule}",
        "",
        f"**{result.verdict}**: T = {c.statistic:.2f}, limit {c.critical:.2f} (p = {result.p_value:.3f}; "
        f"{len(c.items)} items, {c.replications} model replications).",
        *(f"* {reason}" for reason in result.reasons()),
        "",
        f"Window: {window.label(0)} to {window.label(window.n_periods)}, {window.n_periods} periods of "
        f"{window.period_s:g} s; the first {result.layout.first_period} left out as warm-up. Arrivals: "
        f"{'the observed MatchedEvents' if result.arrivals == 'observed' else 'the scenario'}.",
        *(f"* note: {note}" for note in result.observed.notes),
        "",
        _table(result),
        "",
        "![observed against predicted](overlay.png)",
    ]
    if result.fit is not None:
        best = result.fit.best
        out += [
            "",
            "## Fit surface",
            "",
            f"Best point: {best.settings} (p = {best.p_value:.3f}, "
            f"{'PASS' if best.passed else 'FAIL'}).",
            "",
        ]
        out += [f"* {line}" for line in result.fit.conclusions()]
        out += [
            "",
            "| " + " | ".join(result.fit.keys) + " | T | limit | p | verdict |",
            "|" + "---|" * (len(result.fit.keys) + 4),
        ]
        for p in result.fit.points:
            cells = [str(p.settings[k]) for k in result.fit.keys]
            out.append(
                f"| {' | '.join(cells)} | {p.statistic:.2f} | {p.critical:.2f} | {p.p_value:.3f} | "
                f"{'PASS' if p.passed else 'FAIL'} |"
            )
        out += ["", "![p-value over the grid](fit.png)"]
    out += [
        "",
        "## Method",
        "",
        (
            "Each period of each series, and each count's total, is an item, standardized against the "
            "model replications (median, semi-deviations). T = max |z| is calibrated on held-out model "
            "replications: the limit is their 95th percentile, so a correct model FAILs 5 % of the time "
            "(docs/validation.md, docs/from-data.md)."
        ),
    ]
    return "\n".join(out) + "\n"


def summary(result: Backtest) -> dict[str, Any]:
    c = result.comparison
    data: dict[str, Any] = {
        "verdict": result.verdict,
        "T": c.statistic,
        "critical": c.critical,
        "p_value": result.p_value,
        "replications": c.replications,
        "rule": result.observed.rule,
        "window": {
            "start": result.observed.window.label(0),
            "period_s": result.observed.window.period_s,
            "periods": result.observed.window.n_periods,
        },
        "items": [
            {
                "name": i.name,
                "observed": i.live,
                "median": i.median,
                "pi95": i.pi95,
                "interval": i.interval,
                "z": i.z,
                "inside": i.inside,
            }
            for i in c.items
        ],
    }
    if result.fit is not None:
        data["fit"] = {
            "best": result.fit.best.settings,
            "conclusions": result.fit.conclusions(),
            "points": [
                {
                    **p.settings,
                    "T": p.statistic,
                    "critical": p.critical,
                    "p_value": p.p_value,
                    "passed": p.passed,
                }
                for p in result.fit.points
            ],
        }
    return data


def write_report(result: Backtest, out: Path) -> Path:
    """Write the report folder (report.md, backtest.json, overlay.png, fit.png, scenario.yaml)."""

    def fill(folder: Path) -> None:
        save_figure(plot_overlay(result), folder / "overlay.png")
        if result.fit is not None:
            save_figure(plot_surface(result.fit, result.comparison.alpha), folder / "fit.png")
        (folder / "backtest.json").write_text(
            json.dumps(json_safe(summary(result)), indent=2) + "\n"
        )
        scenario = result.scenario.resolved()
        if result.arrivals == "observed":  # the model's arrivals: a CSV kept beside it
            (folder / OBSERVED_ARRIVALS_CSV).write_text(observed_arrivals_csv(result.observed))
            scenario["arrivals"][0]["path"] = OBSERVED_ARRIVALS_CSV
        (folder / "scenario.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
        (folder / "report.md").write_text(report_text(result))

    return write_folder(out, fill)
