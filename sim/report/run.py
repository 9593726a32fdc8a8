"""The report folder of design §6: summary.json, timeseries.csv, the resolved scenario, plots, report.md.

The folder is written atomically (`sim.report.outputs.write_folder`), so an error never leaves a
partial report behind.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure

from sim.report.axes import fixed_margins
from sim.report.bus import backlog_plot_name, bus_intro, bus_markdown, timeseries_table
from sim.report.outputs import human_seconds, json_safe, number, save_figure, write_folder
from sim.report.plots import (
    plot_attempts_per_event,
    plot_backlog,
    plot_delay_cdf,
    plot_destination_backlog,
    plot_dlq,
    plot_throughput,
)
from sim.results.run import RunResult
from sim.scenario.durations import format_duration

HEADLINE = (
    "events_arrived",
    "events_delivered",
    "InvocationAttempts",
    "RetryInvocationAttempts",
    "InvocationsSentToDlq",
    "events_dropped",
    "events_pending",
    "backlog_peak",
    "time_to_drain_s",
    "delivery_delay_s.p50",
    "delivery_delay_s.p99",
    "delivery_delay_s.max",
    "endpoint_peak_rps",
    "throttled_fraction",
    "estimated_cost_usd",
)


PLOTS = {
    "backlog.png": plot_backlog,
    "throughput.png": plot_throughput,
    "delay_cdf.png": plot_delay_cdf,
    "dlq.png": plot_dlq,
    "attempts_per_event.png": plot_attempts_per_event,
}


# --- files ------------------------------------------------------------------------------------


def summary_document(result: RunResult) -> dict[str, Any]:
    """The content of summary.json."""
    scenario = result.scenario
    return json_safe(
        {
            "scenario": scenario.name,
            "seed": scenario.seed,
            "replications": len(result.replications),
            "horizon_s": scenario.horizon,
            "wall_s": round(result.wall_s, 3),
            "metrics": {
                name: {k: row[k] for k in ("mean", "sd", "ci_low", "ci_high", "n")}
                for name, row in result.metrics.iterrows()
            },
            "per_replication": result.summary.reset_index().to_dict(orient="records"),
            "slo": result.slo,
            "assumptions": scenario.assumptions(),
        }
    )


def headline_rows(result: RunResult) -> list[tuple[str, str, str]]:
    """(metric, mean, 95 % CI) of each HEADLINE metric, formatted for people."""
    rows = []
    for name in HEADLINE:
        row = result.metrics.loc[name]
        interval = (
            "–"
            if math.isnan(row["ci_low"])
            else f"{number(row['ci_low'])} – {number(row['ci_high'])}"
        )
        rows.append((name, number(row["mean"]), interval))
    return rows


def _clock(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}"
    return f"day {days + 1} {text}" if days else text


def line_burst(result: RunResult) -> float:
    """The backlog one burst absorbs: the destination's burst capacity; on a bus, the sum of
    the destinations' (at most the account's)."""
    scenario = result.scenario
    return scenario.bus.burst if scenario.is_bus else scenario.destination.burst


def headline(result: RunResult) -> list[str]:
    """The answer in plain sentences: what happened to the events, the backlog, the delay, the SLOs."""
    m = result.metrics["mean"]
    arrived = m["events_arrived"]
    lines = []
    noun = "deliveries" if result.scenario.is_bus else "events"
    share = m["events_delivered"] / arrived if arrived else 0.0
    reasons = [
        f"{number(m[name])} {name.split('.', 1)[1]}"
        for name in m.index
        if str(name).startswith("InvocationsSentToDlq.") and m[name] > 0
    ]
    lines.append(
        f"Of {number(arrived)} {noun} per replication, {share:.2%} were delivered, "
        f"{number(m['InvocationsSentToDlq'])} dead-lettered"
        + (f" ({', '.join(reasons)})" if reasons else "")
        + f", {number(m['events_dropped'])} dropped and {number(m['events_pending'])} still pending at the horizon."
    )
    burst = line_burst(result)
    if m["backlog_peak"] <= burst:
        lines.append("No backlog built up: the rate limit was never the bottleneck for long.")
    else:
        peak = f"The backlog peaked at {number(m['backlog_peak'])} {noun} (around {_clock(m['backlog_peak_at_s'])})"
        drained = int(result.summary["time_to_drain_s"].notna().sum())
        runs = len(result.summary)
        if drained == 0:
            lines.append(f"{peak} and had not drained by the horizon.")
        elif drained < runs:
            lines.append(
                f"{peak}; it had not drained by the horizon in {runs - drained} of {runs} "
                f"replications (in the others the congestion lasted "
                f"{human_seconds(m['time_to_drain_s'])} on average)."
            )
        else:
            lines.append(f"{peak}; the congestion lasted {human_seconds(m['time_to_drain_s'])}.")
    lines.append(
        f"Delivery delay: half within {human_seconds(m['delivery_delay_s.p50'])}, 99 % within "
        f"{human_seconds(m['delivery_delay_s.p99'])}, the slowest {human_seconds(m['delivery_delay_s.max'])}."
    )
    attempts = m["InvocationAttempts"]
    retried = m["RetryInvocationAttempts"] / attempts if attempts else 0.0
    lines.append(
        f"The endpoint saw up to {number(m['endpoint_peak_rps'])} requests/s; {retried:.1%} of "
        f"{number(attempts)} attempts were retries (about ${m['estimated_cost_usd']:.2f} per replication)."
    )
    failed = [c["slo"] for c in result.slo if not c["met"]]
    judged = (
        "judged on the upper 95 % bound"
        if len(result.summary) > 1
        else "judged on the one replication's value: no confidence bound"
    )
    if result.slo:
        lines.append(
            "All SLOs met." if not failed else f"SLO not met: {', '.join(failed)} ({judged})."
        )
    return lines


def report_markdown(result: RunResult) -> str:
    """report.md: verdict, headline metrics with CIs, plots and the assumptions used."""
    s = result.scenario
    lines = [f"# {s.name}", ""]
    if s.is_bus:
        setup = bus_intro(result)
    else:
        rate = s.destination.invocation_rate_limit_per_second
        setup = (
            f"rate limit {'unlimited' if rate is None else f'{rate:g}/s'}, "
            f"burst {s.destination.burst:g}, DLQ {'on' if s.dead_letter_queue else 'off'}."
        )
    lines.append(
        f"Horizon {format_duration(s.horizon)}, {len(result.replications)} replications "
        f"(seed {s.seed}), {setup} Simulated in {result.wall_s:.1f} s."
    )
    lines += ["", "## Answer", ""]
    if s.is_bus:
        lines += ["For the whole bus (counts are deliveries: one per rule an event matched):", ""]
    lines += [*headline(result), ""]
    if s.is_bus:
        lines += bus_markdown(result)
    lines += ["## SLO verdict", ""]
    if result.slo:
        lines += ["| objective | limit | mean | 95 % CI upper | verdict |", "|---|---|---|---|---|"]
        for check in result.slo:
            verdict = "**met**" if check["met"] else "**NOT met**"
            show = human_seconds if "delay" in check["slo"] else number
            lines.append(
                f"| {check['slo']} | {show(check['limit'])} | {show(check['mean'])} | "
                f"{show(check['ci_high'])} | {verdict} |"
            )
    else:
        lines.append("The scenario sets no SLO (`slo:`), so there is no verdict.")
    lines += ["", "## Metrics (mean and 95 % CI across replications)", ""]
    lines += ["| metric | mean | 95 % CI |", "|---|---|---|"]
    lines += [f"| {name} | {mean} | {interval} |" for name, mean, interval in headline_rows(result)]
    lines += ["", "Dead-letter reasons (mean events per replication):", ""]
    for name, row in result.metrics.iterrows():
        if str(name).startswith("InvocationsSentToDlq.") and row["mean"] > 0:
            lines.append(f"* {str(name).split('.', 1)[1]}: {number(row['mean'])}")
    lines += ["", "## Plots", ""]
    for file in PLOTS:
        lines.append(f"![{file[:-4]}]({file})")
    lines += ["", "## Assumptions (not documented by AWS; see design S2, S3, S7)", ""]
    for key, value in s.assumptions().items():
        lines.append(f"* `{key}`: {value}")
    lines += [
        "",
        "Definitions: delivery delay = arrival to the successful response; backlog = events ready "
        "and waiting for a token; time_to_drain_s = length of the congestion episode around the "
        "backlog peak (backlog above one burst); counts are as seen at the horizon.",
        "",
        "Files: `summary.json`, `timeseries.csv`, `scenario.yaml` (resolved), "
        + ("`attempts.csv`, " if result.records is not None else "")
        + "and the plots above.",
    ]
    return "\n".join(lines) + "\n"


def draw_plot(name: str, result: RunResult, path: Path) -> str:
    """Draw one of the report's PLOTS into a PNG file."""
    fig = fixed_margins(Figure(figsize=(9, 4)))  # no pyplot: no GUI backend, whatever the process
    PLOTS[name](result, fig.subplots())
    save_figure(fig, path, layout=False)
    return name


def write_report(result: RunResult, out_dir: Path) -> Path:
    """Write the whole report folder atomically; returns its path.

    The plots are drawn here, in this process, which has matplotlib loaded already: on two
    cores, drawing them on the worker processes cost as much in their imports as it saved."""

    def fill(folder: Path) -> None:
        for name in PLOTS:
            draw_plot(name, result, folder / name)
        for destination in result.destination_names:
            fig = Figure(figsize=(9, 4))
            plot_destination_backlog(result, destination, fig.subplots())
            save_figure(fig, folder / backlog_plot_name(destination))
        (folder / "summary.json").write_text(json.dumps(summary_document(result), indent=2))
        timeseries_table(result).to_csv(folder / "timeseries.csv", index=False)
        (folder / "scenario.yaml").write_text(
            yaml.safe_dump(result.scenario.resolved(), sort_keys=False)
        )
        if result.records is not None:
            result.records.to_csv(folder / "attempts.csv", index=False)
        (folder / "report.md").write_text(report_markdown(result))

    return write_folder(out_dir, fill)
