"""Model commands: `sim run` (simulate and write a report) and `sim check` (validate a scenario)."""

from __future__ import annotations

import gc
import importlib
import math
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from sim.cli import app, file_plots, naming_options
from sim.cli.checks import out_folder
from sim.cli.progress import progress_bar
from sim.report.outputs import number
from sim.runner.executor import Executor
from sim.scenario.loading import load_scenario, loads_scenario

if TYPE_CHECKING:
    from sim.results.run import RunResult

# The model, SciPy and matplotlib load inside the commands that need them: `sim` starts fast.

console = Console()

ScenarioArg = Annotated[Path, typer.Argument(help="Scenario YAML file.", show_default=False)]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a scenario key: key.path=value (repeatable)."),
]


@app.command()
def run(
    scenario_file: ScenarioArg,
    replications: Annotated[
        int | None, typer.Option(help="Replications (default: scenario's).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Root random seed (default: scenario's).")
    ] = None,
    horizon: Annotated[
        str | None, typer.Option(help="Simulated time, e.g. 6h (default: scenario's).")
    ] = None,
    set_: SetOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default: reports/<name>).")
    ] = None,
    records: Annotated[bool, typer.Option("--records", help="Also write attempts.csv.")] = False,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: all cores).")
    ] = None,
) -> None:
    """Simulate a scenario and write its report folder (summary, time series, plots, report.md)."""
    shortcuts = {"replications": replications, "seed": seed, "horizon": horizon}
    overrides = [*(set_ or []), *(f"{k}={v}" for k, v in shortcuts.items() if v is not None)]
    with naming_options(scenario_file, shortcuts, set_ or []):
        scenario = load_scenario(scenario_file, overrides)
    out = out_folder(out or Path("reports") / scenario.name)  # before the run, not after
    Executor(workers)  # a bad --workers is refused before anything starts
    from sim.runner.simulate import simulate

    # the report code (matplotlib, pandas, SciPy's t quantiles) loads in the background while
    # the replications run
    loading = threading.Thread(target=_load_report)
    loading.start()
    with progress_bar(f"simulating {scenario.name}", console) as tick:
        result = simulate(scenario, records=records, workers=workers, progress=tick)
    loading.join()
    from sim.report.run import write_report

    folder = write_report(result, out)
    _print_summary(result)
    console.print(f"report: [bold]{folder / 'report.md'}[/bold]")
    # everything is written and the process ends here: spare its exit a search for garbage
    # among every object the run made (half of the exit's 0.6 s)
    gc.freeze()


def _load_report() -> None:
    file_plots()  # before pyplot loads
    for module in ("sim.report.run", "scipy.special"):
        importlib.import_module(module)


@app.command()
def check(
    scenario_file: Annotated[
        str, typer.Argument(help="Scenario YAML file, or - for stdin.", show_default=False)
    ],
    set_: SetOption = None,
) -> None:
    """Validate a scenario and print it resolved, with every default filled in."""
    from sim.scenario.arrivals import expected_count
    from sim.scenario.offered import describe

    with naming_options(Path(scenario_file), sets=set_ or []):
        if scenario_file == "-":
            scenario = loads_scenario(sys.stdin.read(), set_ or [], base_dir=Path.cwd())
        else:
            scenario = load_scenario(Path(scenario_file), set_ or [])
    typer.echo(yaml.safe_dump(scenario.resolved(), sort_keys=False).rstrip())
    expected = expected_count(scenario.arrivals, scenario.horizon)
    typer.echo(
        f"# valid: {scenario.source}; about {expected:,.0f} arrivals expected per replication "
        f"({expected / scenario.horizon:,.1f}/s on average)"
    )
    if scenario.is_bus:
        for line in describe(scenario):
            typer.echo(line)


def _print_summary(result: RunResult) -> None:
    from sim.report.run import headline, headline_rows, human_seconds

    table = Table(
        title=f"{result.scenario.name}: {len(result.replications)} replications, "
        f"{result.wall_s:.1f} s",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("95 % CI", justify="right")
    for cells in headline_rows(result):
        table.add_row(*cells)
    console.print(table)
    for sentence in headline(result):
        console.print(sentence)
    if result.scenario.is_bus:
        from sim.report.bus import account_lines, binding

        for sentence in account_lines(result):
            console.print(sentence)
        holds = [f"{d}: {binding(result, d)}" for d in result.destination_names]
        console.print("What holds each destination back: " + "; ".join(holds) + ".")
    for check in result.slo:
        mark = "[green]met[/green]" if check["met"] else "[red]NOT met[/red]"
        show = human_seconds if "delay" in check["slo"] else number
        console.print(
            f"SLO {check['slo']} ≤ {show(check['limit'])}: {mark} {_evidence(check, show)}"
        )


def _evidence(check: dict[str, Any], show: Callable[[float], str]) -> str:
    """What an SLO verdict rests on: the mean and its upper 95 % bound, when there is one."""
    if math.isnan(check["mean"]):
        return "(no data: no event delivered or pending)"
    if math.isnan(check["ci_high"]):
        return f"(value {show(check['mean'])}; one replication gives no confidence bound)"
    return f"(mean {show(check['mean'])}, upper 95 % bound {show(check['ci_high'])})"
