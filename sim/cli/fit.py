"""From the user's data: `sim fit endpoint`, `sim fit arrivals` and `sim backtest`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from sim.cli import app, file_plots, naming_options
from sim.cli.checks import existing_file, new_file, out_folder
from sim.cli.progress import progress_bar
from sim.errors import InputError
from sim.scenario.durations import parse_duration

# The fitters, the model and matplotlib load inside the commands: `sim` starts fast.

fit_app = typer.Typer(
    no_args_is_help=True,
    help="Fit scenario inputs from real data: the endpoint from access logs, the traffic from "
    "CloudWatch metrics.",
)
app.add_typer(fit_app, name="fit")
console = Console(stderr=True)


def _seconds(value: str | None, flag: str, zero: bool = False) -> float | None:
    """A duration option in seconds (None if not given); positive, or >= 0 with `zero`."""
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as err:
        raise InputError(None, flag, str(err)) from None
    if seconds < 0 or (seconds == 0 and not zero):
        raise InputError(
            None, flag, f"must be {'at least 0' if zero else 'positive'} (got {value})"
        )
    return seconds


def _writable(out: Path | None, plot: Path | None) -> None:
    """Refuse a bad --out or --plot before the logs are read (nothing is written on error)."""
    if out is not None:
        new_file(out, "--out")
    if plot is not None:
        new_file(plot, "--plot")


def _reporter(out: Path | None) -> Callable[[str], None]:
    """Where the fit report goes: the terminal's stdout, or stderr when the YAML takes stdout."""
    return lambda line: typer.echo(line, err=out is None)


def _emit(text: str, out: Path | None) -> None:
    """YAML to `out` (its report then goes to the terminal), else to stdout."""
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as err:
        raise InputError(str(out), None, err.strerror or str(err)) from None


@fit_app.command("endpoint")
def fit_endpoint_command(
    logs: Annotated[
        list[Path], typer.Argument(help="Access log files (.gz too).", show_default=False)
    ],
    log_type: Annotated[
        str, typer.Option("--format", help="auto, nginx, alb or csv (status,latency_s[,time]).")
    ] = "auto",
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format", help="nginx log_format of the logs (default: combined + $request_time)."
        ),
    ] = None,
    timeout: Annotated[
        str, typer.Option(help="Client timeout: requests this long or longer hung.")
    ] = "5s",
    out: Annotated[
        Path | None, typer.Option(help="Write the endpoint: block here (default: stdout).")
    ] = None,
    empirical: Annotated[
        bool, typer.Option("--empirical", help="Use the latencies themselves (a CSV beside --out).")
    ] = False,
    skip_bad_lines: Annotated[
        bool, typer.Option("--skip-bad-lines", help="Skip malformed lines (and count them).")
    ] = False,
    path: Annotated[
        str | None, typer.Option("--path", help="Only requests whose path starts with this.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="CDF plot of data vs fit (default: beside --out, .png).")
    ] = None,
) -> None:
    """Fit the endpoint behind access logs: status mix, lognormal latency (median, p99), hangs
    past the timeout and the observed peak concurrency; writes an `endpoint:` block."""
    from sim.fit.logs import endpoint_yaml, fit_endpoint, write_endpoint

    if empirical and out is None:
        raise InputError(None, "--empirical", "needs --out (the latencies go into a CSV beside it)")
    _writable(out, plot)
    fit = fit_endpoint(
        logs,
        format=log_type,
        layout=log_format,
        timeout=timeout,
        path=path,
        skip_bad_lines=skip_bad_lines,
    )
    _check_endpoint(endpoint_yaml(fit, "latency.csv" if empirical else None), empirical)
    if out is None:
        typer.echo(endpoint_yaml(fit), nl=False)
    else:
        written = write_endpoint(fit, out, empirical)
    say = _reporter(out)
    for line in fit.report():
        say(line)
    plot = plot or (out.with_suffix(".png") if out is not None else None)
    if plot is not None:
        file_plots()
        from sim.report.fit import save_latency_fit

        say(f"plot: {save_latency_fit(fit, plot)}")
    if out is not None:
        say(f"wrote {', '.join(map(str, written))}")


def _check_endpoint(text: str, empirical: bool) -> None:
    """The block must load as a scenario's endpoint (as `sim check` reads it), before it is written."""
    import yaml

    from sim.scenario.loading import build_scenario

    data: dict[str, Any] = {
        "name": "fit",
        "horizon": 60,
        "arrivals": [{"kind": "constant", "rate_per_second": 1}],
    }
    data.update(yaml.safe_load(text))
    if empirical:  # its CSV is not written yet: check the rest
        data["endpoint"]["latency"] = {"kind": "constant", "value": 0.1}
    build_scenario(data, source="fitted endpoint")


@fit_app.command("arrivals")
def fit_arrivals_command(
    metrics: Annotated[
        Path, typer.Argument(help="GetMetricData JSON (or CSV export).", show_default=False)
    ],
    metric: Annotated[str, typer.Option(help="The series of events.")] = "MatchedEvents",
    rule: Annotated[str | None, typer.Option(help="The rule (when the file has several).")] = None,
    period: Annotated[
        str | None, typer.Option(help="Period of the datapoints (default: inferred).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the arrivals: entry here, its CSV beside (default: stdout + counts.csv)."
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Plot of the rate (default: beside --out, .png).")
    ] = None,
) -> None:
    """Turn a metric of matched events into an `arrivals:` entry of kind counts, with its CSV."""
    from sim.fit.arrivals import arrivals_yaml, fit_arrivals, write_counts

    csv_path = out.with_name(f"{out.stem}-counts.csv") if out is not None else Path("counts.csv")
    _writable(out, plot)
    new_file(csv_path, "--out")
    fit = fit_arrivals(metrics, metric, rule, _seconds(period, "--period"))
    write_counts(fit, csv_path)
    _emit(arrivals_yaml(fit, csv_path.name), out)
    say = _reporter(out)
    for line in fit.report_lines():
        say(line)
    plot = plot or (out.with_suffix(".png") if out is not None else None)
    if plot is not None:
        file_plots()
        from sim.report.fit import save_arrivals_fit

        say(f"plot: {save_arrivals_fit(fit, plot)}")
    say(f"counts: {csv_path}")


@app.command()
def backtest(
    scenario_file: Annotated[Path, typer.Argument(help="Scenario YAML file.", show_default=False)],
    metrics: Annotated[
        Path, typer.Option("--metrics", help="Observed metrics: GetMetricData JSON or CSV.")
    ],
    rule: Annotated[str | None, typer.Option(help="The rule (when the file has several).")] = None,
    fit: Annotated[
        list[str] | None,
        typer.Option(
            "--fit", help="Search a setting: key.path=lo:hi, lo:hi:n or a,b,c (repeatable)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a scenario key: key.path=value.")
    ] = None,
    arrivals: Annotated[
        str,
        typer.Option(help="observed: the observed MatchedEvents; scenario: the scenario's own."),
    ] = "observed",
    replications: Annotated[
        int, typer.Option(help="Model replications (per grid point; at least 100).")
    ] = 200,
    period: Annotated[
        str | None, typer.Option(help="Period of the datapoints (default: inferred).")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="Test from this time (ISO 8601, UTC unless it says).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Test up to this time (excluded).")] = None,
    warm_up: Annotated[
        str, typer.Option(help="Leave this much of the window's start out of the test.")
    ] = "0s",
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default: reports/backtest/<name>).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: all cores).")
    ] = None,
) -> None:
    """Test the model against what happened: every observed per-period series against the model's
    simultaneous 95 % band (the `sim validate` test). Exit 0 on PASS, 1 on FAIL (with --fit: 0
    if some grid point PASSes), 2 on bad input."""
    file_plots()
    from sim.scenario.loading import load_scenario
    from sim.validation.backtest import backtest as run_backtest
    from sim.validation.backtest_fit import parse_fit
    from sim.validation.backtest_report import write_report

    if arrivals not in ("observed", "scenario"):
        raise InputError(None, "--arrivals", f"must be observed or scenario (got {arrivals!r})")
    existing_file(metrics, "--metrics")
    with naming_options(scenario_file, sets=set_ or []):
        scenario = load_scenario(scenario_file, set_ or [])
    grid = dict(parse_fit(spec) for spec in fit or [])
    folder = out_folder(out or Path("reports") / "backtest" / scenario.name)
    warm = _seconds(warm_up, "--warm-up", zero=True) or 0.0
    points = (1 + _product(grid)) * replications
    with progress_bar(f"model: {points:,} runs", console) as tick:
        result = run_backtest(
            scenario,
            metrics,
            rule=rule,
            period_s=_seconds(period, "--period"),
            start_at=start,
            end_at=end,
            replications=replications,
            warm_up_s=warm,
            arrivals="observed" if arrivals == "observed" else "scenario",
            fit=grid,
            workers=workers,
            progress=tick,
        )
    report = write_report(result, folder)
    c = result.comparison
    typer.echo(
        f"{scenario.name}: {result.verdict}  T = {c.statistic:.2f} (limit {c.critical:.2f}, "
        f"p = {result.p_value:.3f}, {len(c.items)} items, {c.replications} model replications)"
    )
    for reason in result.reasons():
        typer.echo(f"  {reason}")
    for note in result.observed.notes:
        typer.echo(f"  note: {note}")
    if result.fit is not None:
        best = result.fit.best
        typer.echo(
            f"  fit: best {best.settings} (p = {best.p_value:.3f}, {'PASS' if best.passed else 'FAIL'});"
            f" {sum(p.passed for p in result.fit.points)}/{len(result.fit.points)} grid points PASS"
        )
        for line in result.fit.conclusions():
            typer.echo(f"  {line}")
    typer.echo(f"  report: {report / 'report.md'}")
    passed = any(p.passed for p in result.fit.points) if result.fit is not None else result.passed
    raise typer.Exit(0 if passed else 1)


def _product(grid: dict[str, list[Any]]) -> int:
    if not grid:
        return 0
    total = 1
    for values in grid.values():
        total *= len(values)
    return total
