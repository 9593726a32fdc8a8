"""Analysis commands: `sim sweep` (what-if grids), `sim size` (rate limit), `sim sensitivity`."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from sim.cli import app, file_plots, naming_options
from sim.cli.checks import out_folder
from sim.cli.progress import progress_bar
from sim.errors import InputError
from sim.report.outputs import number
from sim.scenario.loading import load_scenario
from sim.scenario.model import Slo

# The model, pandas and matplotlib load inside the commands that need them: `sim` starts fast.

console = Console()
SLO_NAMES = tuple(Slo.model_fields)

ScenarioArg = Annotated[Path, typer.Argument(help="Scenario YAML file.", show_default=False)]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a scenario key: key.path=value (repeatable)."),
]
Replications = Annotated[
    int | None, typer.Option(help="Replications per point (default: scenario's).")
]
Seed = Annotated[int | None, typer.Option(help="Root random seed (default: scenario's).")]
Horizon = Annotated[str | None, typer.Option(help="Simulated time, e.g. 6h (default: scenario's).")]
Workers = Annotated[
    int | None,
    typer.Option(help="Local worker processes, or LocalCluster workers (default: all cores)."),
]
Dask = Annotated[
    str | None,
    typer.Option(
        help="Run on Dask: a scheduler address (tcp://host:8786) or 'local' for a LocalCluster."
    ),
]
Out = Annotated[
    Path | None, typer.Option(help="Output folder (default: reports/<name>-<command>).")
]

MAX_RANGE_VALUES = 10_000
"""Most values one --vary range may expand to (the grid itself is capped in sim.analysis.sweeps)."""
_RANGE = re.compile(r"^\s*(-?[\d.]+)\s*:\s*(-?[\d.]+)\s*:\s*([\d.]+)\s*$")


def parse_vary(item: str) -> tuple[str, list[Any]]:
    """`key.path=v1,v2,...` (values read as YAML) or `key.path=start:stop:step` (inclusive)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip() or not text.strip():
        raise InputError(
            "--vary", None, f"{item!r}: expected key.path=v1,v2,... or key.path=start:stop:step"
        )
    key = key.strip()
    match = _RANGE.match(text)
    if match:
        try:
            start, stop, step = (float(g) for g in match.groups())
        except ValueError:
            raise InputError(
                "--vary", key, f"bad range {text!r}: expected start:stop:step"
            ) from None
        if step <= 0 or stop < start:
            raise InputError("--vary", key, f"bad range {text!r}: need start ≤ stop and step > 0")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > MAX_RANGE_VALUES:
            raise InputError(
                "--vary", key, f"range {text!r} has {count:,} values (at most {MAX_RANGE_VALUES:,})"
            )
        values: list[Any] = [round(start + i * step, 9) for i in range(count)]
        return key, [int(v) if v == int(v) else v for v in values]
    try:
        values = yaml.safe_load(f"[{text}]")
    except yaml.YAMLError:
        raise InputError("--vary", key, f"cannot read the values {text!r}") from None
    return key, values


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """The grid of repeated `--vary` options; a key may appear once."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, values = parse_vary(item)
        if key in grid:
            raise InputError("--vary", key, "given twice: list all its values in one --vary")
        grid[key] = values
    return grid


def _pairs(items: list[str] | None, option: str) -> dict[str, Any]:
    pairs = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(option, None, f"{item!r}: expected name=value")
        pairs[key.strip()] = yaml.safe_load(text) if text.strip() else None
    return pairs


SHORT = {
    "delivery_delay_s.p99": "p99 delay s",
    "delivery_delay_s.p50": "p50 delay s",
    "backlog_peak": "backlog peak",
    "dropped_fraction": "dropped",
    "dlq_fraction": "DLQ",
    "RetryInvocationAttempts": "retries",
    "InvocationAttempts": "attempts",
    "endpoint_peak_rps": "peak rps",
    "time_to_drain_s": "drain s",
}


def _headers(keys: list[str]) -> list[str]:
    """Short column headers: a metric's short name, a key path's last part unless ambiguous."""
    lasts = [key.split(".")[-1] for key in keys]
    return [
        SHORT.get(k, last if lasts.count(last) == 1 else k)
        for k, last in zip(keys, lasts, strict=True)
    ]


def _percent(value: float) -> str:
    if math.isnan(value):
        return "–"
    if value == 0:
        return "0"
    if value < 0.1:
        return "<0.1"
    return f"±{value:.1f}" if value < 10 else f"±{value:,.0f}"


@app.command()
def sweep(
    scenario_file: ScenarioArg,
    vary: Annotated[
        list[str],
        typer.Option(
            help="A parameter and its values: key.path=v1,v2,... or key.path=start:stop:step (repeatable)."
        ),
    ],
    replications: Replications = None,
    seed: Seed = None,
    horizon: Horizon = None,
    set_: SetOption = None,
    workers: Workers = None,
    dask: Dask = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Replications per task (default: balanced).")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option(help="Metric to plot (repeatable; default: headline).")
    ] = None,
    out: Out = None,
) -> None:
    """Run a what-if grid (every combination × replications); write CSVs, plots and report.md."""
    file_plots()
    from sim.analysis.sweeps import expand_grid
    from sim.analysis.sweeps import sweep as run_sweep
    from sim.report.analysis import write_sweep_report

    with naming_options(scenario_file, sets=set_ or []):
        scenario = load_scenario(scenario_file, set_ or [])
    grid = parse_grid(vary)
    n_points = len(expand_grid(grid))
    out = out_folder(out or Path("reports") / f"{scenario.name}-sweep")
    shortcuts = {"replications": replications, "seed": seed, "horizon": horizon}
    with (
        naming_options(scenario_file, shortcuts, set_ or []),
        progress_bar(
            f"sweeping {scenario.name} ({n_points} grid points)", console, n_points
        ) as tick,
    ):
        result = run_sweep(
            scenario,
            grid,
            replications=replications,
            seed=seed,
            horizon=horizon,
            workers=workers,
            dask=dask,
            batch_size=batch_size,
            progress=tick,
        )
    folder = write_sweep_report(result, out, metric)
    shown = [
        m
        for m in (metric or ["delivery_delay_s.p99", "backlog_peak", "dropped_fraction"])
        if m in result.metric_names
    ]
    table = Table(
        title=f"{result.scenario.name}: {n_points} points × {result.scenario.replications} "
        f"replications on {result.backend}, {result.wall_s:.1f} s",
        title_justify="left",
    )
    for name in [*_headers([*result.parameters, *shown]), "SLOs"]:
        table.add_column(name, justify="right")
    slo = result.slo()
    for point in range(n_points):
        values = result.point_values(point)
        cells = [number(values[p]) for p in result.parameters]
        cells += [number(result.metric(m).loc[point, "mean"]) for m in shown]
        met = slo.loc[point, "all_met"]
        cells.append(
            "–"
            if isinstance(met, float)
            else ("[green]met[/green]" if met else "[red]NOT met[/red]")
        )
        table.add_row(*cells)
    console.print(table)
    console.print(f"sweep: [bold]{folder / 'report.md'}[/bold] (runs.csv, aggregated.csv, plots)")


@app.command()
def size(
    scenario_file: ScenarioArg,
    slo: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Set an SLO: name=value, name one of {', '.join(SLO_NAMES)} (repeatable)."
        ),
    ] = None,
    min_rate: Annotated[
        float | None,
        typer.Option(
            "--min",
            help="Lowest rate to consider (default: just above the mean arrival rate; rates at "
            "or below it are never tried).",
        ),
    ] = None,
    max_rate: Annotated[
        float | None,
        typer.Option("--max", help="Highest rate (default: twice the peak arrival rate)."),
    ] = None,
    step: Annotated[
        float | None, typer.Option(help="Rate resolution (default: a 1-2-5 step, ≤ 200 rates).")
    ] = None,
    replications: Replications = None,
    seed: Seed = None,
    horizon: Horizon = None,
    set_: SetOption = None,
    workers: Workers = None,
    dask: Dask = None,
    max_overload: Annotated[
        float,
        typer.Option(help="Endpoint probe: tolerated fraction of overload answers and timeouts."),
    ] = 0.0,
    grid: Annotated[
        bool,
        typer.Option(
            "--grid",
            help="Evaluate every rate of the lattice with every replication (exhaustive, slow) "
            "instead of bisecting with replications added only until each verdict is clear.",
        ),
    ] = False,
    destination: Annotated[
        str | None,
        typer.Option(
            "--destination",
            metavar="NAME",
            help="Bus scenario: size this destination's rate limit (SLOs on its deliveries).",
        ),
    ] = None,
    account: Annotated[
        bool,
        typer.Option(
            "--account", help="Bus scenario: size the account invocation quota (SLOs on the bus)."
        ),
    ] = False,
    out: Out = None,
) -> None:
    """Find the smallest invocation rate limit meeting the SLOs (95 % confidence); exit 1 if none.

    Bisects on the rate with common random numbers; each rate runs replications a batch at a
    time until its confidence interval clears the SLOs either way (at most --replications)."""
    file_plots()
    from sim.analysis.rate_search import target_for
    from sim.analysis.sizing import size_rate_limit
    from sim.report.analysis import write_size_report
    from sim.results.tables import SLO_METRICS

    with naming_options(scenario_file, sets=set_ or []):
        scenario = load_scenario(scenario_file, set_ or [])
    target = target_for(scenario, destination, account)
    for option, value in (("--min", min_rate), ("--max", max_rate), ("--step", step)):
        if value is not None and not 0 < value < math.inf:
            raise InputError(None, option, f"must be positive and finite (got {value:g})")
    out = out_folder(out or Path("reports") / f"{scenario.name}-size")
    shortcuts = {"replications": replications, "seed": seed, "horizon": horizon}
    with (
        naming_options(scenario_file, shortcuts, pairs={"slo": slo or []}),
        progress_bar(f"sizing {scenario.name}", console) as tick,
    ):
        result = size_rate_limit(
            scenario,
            slo=_pairs(slo, "--slo"),
            min_rate=min_rate,
            max_rate=max_rate,
            step=step,
            replications=replications,
            seed=seed,
            horizon=horizon,
            workers=workers,
            dask=dask,
            overload_tolerance=max_overload,
            grid=grid,
            progress=tick,
            target=target,
        )
    folder = write_size_report(result, out)
    table = Table(
        title=f"{result.scenario.name}: {target.key if scenario.is_bus else 'rates'} evaluated "
        "(mean [95 % CI upper]), "
        f"{result.wall_s:.1f} s",
        title_justify="left",
    )
    table.add_column("rate/s", justify="right")
    table.add_column("reps", justify="right")
    checks = [c.removesuffix(".met") for c in result.evaluations.columns if c.startswith("max_")]
    for name in checks:
        table.add_column(SLO_METRICS[name], justify="right")
    table.add_column("SLOs", justify="right")
    for _, row in result.evaluations.iterrows():
        cells = [number(row["rate"]), number(row["replications"])]
        for name in checks:
            metric = SLO_METRICS[name]
            cells.append(f"{number(row[f'{metric}.mean'])} [{number(row[f'{metric}.ci_high'])}]")
        cells.append("[green]met[/green]" if row["all_met"] else "[red]NOT met[/red]")
        table.add_row(*cells)
    console.print(table)
    console.print(result.effort())
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(f"[bold]{result.sentence()}[/bold]")
    console.print(f"evidence: [bold]{folder / 'report.md'}[/bold]")
    if not result.met:
        raise typer.Exit(1)


@app.command()
def sensitivity(
    scenario_file: ScenarioArg,
    replications: Replications = None,
    seed: Seed = None,
    horizon: Horizon = None,
    set_: SetOption = None,
    workers: Workers = None,
    dask: Dask = None,
    out: Out = None,
) -> None:
    """Vary each ASSUMPTION setting over a plausible range; report how much each prediction moves."""
    file_plots()
    from sim.analysis.sensitivity import sensitivity as run_sensitivity
    from sim.report.analysis import write_sensitivity_report

    with naming_options(scenario_file, sets=set_ or []):
        scenario = load_scenario(scenario_file, set_ or [])
    scenario.require_single("sim sensitivity")
    out = out_folder(out or Path("reports") / f"{scenario.name}-sensitivity")
    shortcuts = {"replications": replications, "seed": seed, "horizon": horizon}
    with (
        naming_options(scenario_file, shortcuts),
        progress_bar(f"sensitivity of {scenario.name}", console) as tick,
    ):
        result = run_sensitivity(
            scenario,
            replications=replications,
            seed=seed,
            horizon=horizon,
            workers=workers,
            dask=dask,
            progress=tick,
        )
    folder = write_sensitivity_report(result, out)
    changes = result.table()
    conclusions = result.conclusions()
    shown = [
        "delivery_delay_s.p99",
        "backlog_peak",
        "dropped_fraction",
        "dlq_fraction",
        "RetryInvocationAttempts",
    ]
    table = Table(
        title=f"{result.scenario.name}: largest change of each prediction from baseline (%), "
        "and whether the SLO verdicts hold",
        title_justify="left",
    )
    table.add_column("setting")
    table.add_column("values")
    for header in _headers(shown):
        table.add_column(header, justify="right")
    table.add_column("SLO verdicts")
    for setting, by_value in result.points.items():
        cells = [
            setting.removeprefix("destination.").removeprefix("retry_policy."),
            ", ".join(number(v) for v in by_value),
        ]
        for metric in shown:
            rows = changes[(changes["setting"] == setting) & (changes["metric"] == metric)]
            cells.append("–" if rows.empty else _percent(rows["max_change_pct"].iloc[0]))
        verdicts = conclusions[conclusions["setting"] == setting]
        flips = verdicts[~verdicts["holds"]]
        cells.append(
            "–"
            if verdicts.empty
            else "hold"
            if flips.empty
            else "[red]flip[/red]: "
            + "; ".join(f"{r.slo} at {r.flips_at}" for r in flips.itertuples())
        )
        table.add_row(*cells)
    console.print(table)
    for what, why in result.skipped.items():
        console.print(f"skipped {what}: {why}")
    console.print(f"sensitivity: [bold]{folder / 'report.md'}[/bold]")
