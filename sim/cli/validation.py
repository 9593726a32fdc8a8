"""`sim validate`: run scenarios live against the real core and in the model; PASS or FAIL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
import yaml

from sim.cli import app, file_plots, naming_options
from sim.cli.checks import out_folder
from sim.errors import InputError
from sim.scenario.loading import load_scenario

if TYPE_CHECKING:
    from sim.validation.result import Validation

# The model, the live core and matplotlib load inside the command: `sim` starts fast.


@app.command()
def validate(
    scenario_files: Annotated[
        list[Path], typer.Argument(help="Scenario YAML file(s).", show_default=False)
    ],
    replications: Annotated[int, typer.Option(help="Model replications (at least 100).")] = 500,
    out: Annotated[
        Path | None,
        typer.Option(help="Report folder (one scenario only; default: reports/validation/<name>)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a scenario key, live and model: key.path=value."),
    ] = None,
    model_set: Annotated[
        list[str] | None,
        typer.Option(
            "--model-set", help="Override a key in the model only (a deliberately wrong model)."
        ),
    ] = None,
    arrivals: Annotated[
        str,
        typer.Option(
            help="replay: the model replays the live arrival times (conditional comparison); "
            "model: each replication draws its own arrivals."
        ),
    ] = "replay",
    loop: Annotated[
        str | None,
        typer.Option(
            help="Event loop of the live run: asyncio or uvloop (default: uvloop if installed)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Model worker processes (default: all cores).")
    ] = None,
) -> None:
    """Run each scenario live (load generator → delivery core → local endpoint on 127.0.0.1)
    and in the model, compare every metric against the model's simultaneous 95 % prediction
    intervals and write reports/validation/<name>/. Exit code 0 if all PASS, 1 if any FAILs,
    2 on bad input (before any live run), 3 if a scenario could not be validated (an error)."""
    file_plots()
    from sim.live.delivery import loops
    from sim.scenario.loading import with_overrides
    from sim.validation.compare import MIN_REPLICATIONS
    from sim.validation.pipeline import check_model_overrides, check_validatable
    from sim.validation.pipeline import validate as run_validation

    if replications < MIN_REPLICATIONS:
        raise InputError(None, "--replications", f"must be at least {MIN_REPLICATIONS}")
    if arrivals not in ("replay", "model"):
        raise InputError(None, "--arrivals", f"must be replay or model (got {arrivals!r})")
    try:
        loops.check_loop(loop)
    except ValueError as err:
        raise InputError(None, "--loop", str(err)) from None
    if out is not None and len(scenario_files) > 1:
        raise InputError(None, "--out", "give --out with one scenario only")
    if workers is not None and workers < 1:  # the model runs after the live run: check now
        raise InputError(None, "--workers", f"must be at least 1 (got {workers})")
    scenarios = []
    for path in scenario_files:
        with naming_options(path, sets=set_ or []):
            scenarios.append(load_scenario(path, set_ or []))
    model_overrides = _overrides(model_set or [])
    mode: Literal["replay", "model"] = "model" if arrivals == "model" else "replay"
    check_model_overrides(model_overrides, mode)
    folders = {}
    for scenario in scenarios:  # bad input fails before any live run
        check_validatable(scenario)
        with_overrides(scenario, model_overrides)
        folders[scenario.name] = out_folder(out or Path("reports") / "validation" / scenario.name)
    verdicts: list[bool] = []
    errors = 0
    for scenario in scenarios:
        folder = folders[scenario.name]
        try:
            result = run_validation(
                scenario,
                replications=replications,
                model_overrides=model_overrides,
                arrivals=mode,
                out=folder,
                loop=loop,
                workers=workers,
                progress=_say(scenario.name),
            )
        except Exception as err:  # one scenario's error must not lose the others' verdicts
            errors += 1
            message = " ".join(str(err).split()) or "(no message)"
            typer.echo(f"{scenario.name}: ERROR  {type(err).__name__}: {message}")
            continue
        _print(result)
        verdicts.append(result.passed)
    if len(scenarios) > 1:
        summary = f"{sum(verdicts)}/{len(scenarios)} scenarios PASS"
        typer.echo(summary + (f", {errors} errored" if errors else ""))
    raise typer.Exit(3 if errors else 0 if all(verdicts) else 1)


def _say(name: str) -> Callable[[str], None]:
    return lambda message: typer.echo(f"{name}: {message}", err=True)


def _overrides(items: list[str]) -> dict[str, Any]:
    """`key.path=value` strings (values read as YAML) as a mapping."""
    pairs: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(None, "--model-set", f"{item!r}: expected key.path=value")
        try:
            pairs[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            pairs[key.strip()] = text
    return pairs


def _print(result: Validation) -> None:
    c = result.comparison
    verdict = result.verdict
    figures = result.overhead.figures()
    lag, excess = figures["dispatch_lag_ms"], figures["client_excess_ms"]
    typer.echo(
        f"{result.scenario.name}: {verdict}  T = {c.statistic:.2f} (limit {c.critical:.2f}, "
        f"{len(c.items)} items, {c.replications} model replications)"
    )
    for reason in result.reasons():
        typer.echo(f"  {reason}")
    if c.undefined():
        typer.echo(f"  not tested (undefined in too many model runs): {', '.join(c.undefined())}")
    typer.echo(
        f"  core overhead: dispatch lag p50 {lag['p50']:.1f} ms, p99 {lag['p99']:.1f} ms; "
        f"client latency beyond the endpoint's p50 {excess['p50']:.1f} ms, "
        f"p99 {excess['p99']:.1f} ms"
    )
    if result.report_dir is not None:
        typer.echo(f"  report: {result.report_dir / 'report.md'}")
