"""`sim validate`: run scenarios live against the real core and in the model; PASS or FAIL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
import yaml
from rich.console import Console

from sim.cli import app, file_plots, naming_options
from sim.cli.checks import out_folder
from sim.cli.progress import progress_bar
from sim.errors import InputError
from sim.scenario.loading import load_scenario
from sim.scenario.model import Scenario

if TYPE_CHECKING:
    from sim.validation.power import Power
    from sim.validation.recording import Recording
    from sim.validation.result import Validation

console = Console(stderr=True)

# The model, the live core and matplotlib load inside the command: `sim` starts fast.


@app.command()
def validate(
    scenario_files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Scenario YAML file(s); optional with --replay-live.", show_default=False
        ),
    ] = None,
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
    power: Annotated[
        bool,
        typer.Option(
            "--power",
            help="Also test the live run against a ladder of wrong models, one setting at a "
            "time: writes power.csv and the resolution (smallest error caught) to the report.",
        ),
    ] = False,
    power_setting: Annotated[
        list[str] | None,
        typer.Option(
            "--power-setting",
            help="With --power: only this setting of the ladder, e.g. retry_policy.backoff.base "
            "(repeatable).",
        ),
    ] = None,
    record_live: Annotated[
        Path | None,
        typer.Option(help="Save the live run to this file (one scenario), to replay it later."),
    ] = None,
    replay_live: Annotated[
        Path | None,
        typer.Option(
            help="Validate against a live run saved with --record-live instead of a new one."
        ),
    ] = None,
) -> None:
    """Run each scenario live (load generator → delivery core → local endpoint on 127.0.0.1)
    and in the model, compare every metric against the model's simultaneous 95 % prediction
    intervals and write reports/validation/<name>/. Exit code 0 if all PASS, 1 if any FAILs,
    2 on bad input (before any live run), 3 if a scenario could not be validated (an error).
    With --replay-live FILE no live run is made: the scenario is the recorded one (a scenario
    file given must be the same)."""
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
    files = scenario_files or []
    for flag, value in (("--out", out), ("--record-live", record_live)):
        if value is not None and len(files) > 1:
            raise InputError(None, flag, f"give {flag} with one scenario only")
    if workers is not None and workers < 1:  # the model runs after the live run: check now
        raise InputError(None, "--workers", f"must be at least 1 (got {workers})")
    replay = _replay(replay_live, files, set_ or [], loop, record_live)
    if replay is not None:
        scenarios = [_replayed_scenario(replay, files, set_ or [])]
    elif not files:
        raise InputError(None, "SCENARIO", "give a scenario file (or --replay-live FILE)")
    else:
        scenarios = []
        for path in files:
            with naming_options(path, sets=set_ or []):
                scenarios.append(load_scenario(path, set_ or []))
    if record_live is not None:
        _check_record_path(record_live)
    power_settings = _power_settings(power, power_setting)
    model_overrides = _overrides(model_set or [])
    mode: Literal["replay", "model"] = "model" if arrivals == "model" else "replay"
    check_model_overrides(model_overrides, mode)
    folders = {}
    for scenario in scenarios:  # bad input fails before any live run
        check_validatable(scenario)
        for flag, given in (("--power", power), ("--record-live", record_live is not None)):
            if scenario.is_bus and given:  # the ladder and recordings are single-form yet
                raise InputError(None, flag, "not supported for a bus scenario yet")
        with_overrides(scenario, model_overrides)
        folders[scenario.name] = out_folder(out or Path("reports") / "validation" / scenario.name)
    verdicts: list[bool] = []
    errors = 0
    for scenario in scenarios:
        folder = folders[scenario.name]
        try:
            with _model_bar(scenario.name) as tick:
                result = run_validation(
                    scenario,
                    replications=replications,
                    model_overrides=model_overrides,
                    arrivals=mode,
                    out=folder,
                    replay=replay,
                    record=record_live,
                    power=power,
                    power_settings=power_settings,
                    loop=loop,
                    workers=workers,
                    progress=_say(scenario.name),
                    model_progress=tick,
                )
        except Exception as err:  # one scenario's error must not lose the others' verdicts
            errors += 1
            message = " ".join(str(err).split()) or "(no message)"
            typer.echo(f"{scenario.name}: ERROR  {type(err).__name__}: {message}")
            continue
        _print(result, replay.recorded if replay is not None else None)
        verdicts.append(result.passed)
    if len(scenarios) > 1:
        summary = f"{sum(verdicts)}/{len(scenarios)} scenarios PASS"
        typer.echo(summary + (f", {errors} errored" if errors else ""))
    raise typer.Exit(3 if errors else 0 if all(verdicts) else 1)


@contextmanager
def _model_bar(name: str) -> Iterator[Callable[[float], None]]:
    """A progress bar for the model work, shown from its first tick (not during the live run)."""
    with ExitStack() as stack:
        bar: list[Callable[[float], None]] = []

        def tick(fraction: float) -> None:
            if not bar:
                bar.append(stack.enter_context(progress_bar(f"{name}: model", console)))
            bar[0](fraction)

        yield tick


def _replay(
    path: Path | None, files: list[Path], set_: list[str], loop: str | None, record: Path | None
) -> Recording | None:
    """The recording to replay, if any; options that need a new live run are refused."""
    if path is None:
        return None
    from sim.validation.recording import load_live

    if record is not None:
        raise InputError(None, "--record-live", "cannot record a replayed run; give one of them")
    if loop is not None:
        raise InputError(None, "--loop", "sets the event loop of a new live run; none is made")
    if len(files) > 1:
        raise InputError(None, "--replay-live", "a recording holds one scenario; give one file")
    if set_ and not files:
        raise InputError(
            None, "--set", "would change the recorded live run; use --model-set to change the model"
        )
    return load_live(path)


def _replayed_scenario(replay: Recording, files: list[Path], set_: list[str]) -> Scenario:
    """The scenario file given (which must be the recorded one), else the recorded scenario."""
    from sim.validation.recording import check_matches

    if not files:
        return replay.live.scenario
    scenario = load_scenario(files[0], set_)
    check_matches(replay, scenario)
    return scenario


def _power_settings(power: bool, chosen: list[str] | None) -> list[str] | None:
    """The settings `--power-setting` picks (None: all), checked against the ladder."""
    from sim.validation.ladder import SETTINGS

    if not chosen:
        return None
    if not power:
        raise InputError(None, "--power-setting", "give it with --power")
    unknown = [name for name in chosen if name not in SETTINGS]
    if unknown:
        raise InputError(
            None,
            "--power-setting",
            f"no such setting in the ladder: {', '.join(unknown)} (choose from "
            f"{', '.join(SETTINGS)})",
        )
    return chosen


def _check_record_path(path: Path) -> None:
    """Refuse, before the live run, a recording path that cannot be written (folders are made)."""
    if path.is_dir():
        raise InputError(None, "--record-live", f"{path} is a folder; give a file name")
    existing = next(p for p in path.absolute().parents if p.exists())
    if not existing.is_dir():
        raise InputError(None, "--record-live", f"{existing} is a file, not a folder")


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


def _print(result: Validation, recorded: dict[str, Any] | None = None) -> None:
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
    if result.replayed_from is not None:
        typer.echo(f"  live run replayed from {result.replayed_from}{_recorded(recorded)}")
    if result.recorded_to is not None:
        typer.echo(f"  live run saved to {result.recorded_to} (replay with --replay-live)")
    if result.power is not None:
        _print_power(result.power)
    if result.report_dir is not None:
        typer.echo(f"  report: {result.report_dir / 'report.md'}")
        if result.power is not None:
            typer.echo(f"  power: {result.report_dir / 'power.csv'}")


def _recorded(recorded: dict[str, Any] | None) -> str:
    """What the recording says its own validation gave, to compare with the replay."""
    if not recorded:
        return ""
    critical = recorded["critical"]  # None: not finite
    limit = "∞" if critical is None else f"{critical:.2f}"
    return (
        f" (recorded: {recorded['verdict']}  T = {recorded['statistic']:.2f}, limit {limit}, "
        f"{recorded['replications']} replications, arrivals {recorded['arrivals']})"
    )


def _print_power(power: Power) -> None:
    typer.echo(
        f"  resolution ({len(power.rows)} wrong models, {power.replications} replications "
        "each): smallest error that FAILs"
    )
    resolution = power.resolution()
    width = max((len(r.setting) for r in resolution), default=0)
    for r in resolution:
        beyond = f"  (PASS beyond: {', '.join(r.passed_beyond)})" if r.passed_beyond else ""
        typer.echo(f"    {r.setting:<{width}}  {r.summary}{beyond}")
    for setting, why in power.skipped.items():
        typer.echo(f"    {setting:<{width}}  not tested: {why}")
