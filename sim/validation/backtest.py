"""`backtest`: the model against a window that really happened, seen through CloudWatch metrics.

The observed per-period series of one rule (`sim.scenario.metric_data`; the counts, and the
latency statistics, that EventBridge publishes) are put on the period grid of their window,
a missing count being 0 and a missing latency no value. The window is that of the arrivals,
the first to the last `MatchedEvents` datapoint: the model is conditioned on them, so the
choice biases nothing. (Ending it at the last datapoint of any series would: its last period
would always hold some straggling retry, which the model's need not.)

The model runs the scenario over that window (its horizon), by default with the observed
`MatchedEvents` as its arrivals (a `counts` source: Poisson at each period's rate, spread
over the period), N replications on the one `Executor`. Each replication's records become
the same series by the code the live core writes its metrics with (`sim.results.cloudwatch`).

Every period of every series is an item, and so is each count's total over the window; the
test is `sim validate`'s (`sim.validation.compare.calibrate_items`): T = max |z| over the
items, calibrated on held-out model replications, PASS iff T <= c (each item inside its
simultaneous 95 % band). The model starts empty at the window's start, so a window should
begin quiet; `warm_up_s` leaves its first periods out of the test.

`--fit` runs the same test at each point of a grid of settings (the ASSUMPTION settings, or
any scenario key that does not set the window): see `sim.validation.backtest_fit`.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sim.des import simulate_replication
from sim.errors import InputError
from sim.records import concat
from sim.results.cloudwatch import check_stat, model_metrics
from sim.runner.executor import Executor
from sim.scenario.loading import load_scenario, with_overrides
from sim.scenario.metric_data import (
    COUNT_METRICS,
    LATENCY_METRIC,
    MetricData,
    MetricSeries,
    iso,
    read_metric_data,
    to_epoch,
)
from sim.scenario.model import Scenario
from sim.validation.backtest_fit import FitSurface, check_grid, fit_surface, p_value
from sim.validation.compare import (
    ALPHA,
    COUNT_FLOOR,
    DELAY_FLOOR_S,
    MIN_REPLICATIONS,
    Comparison,
    Items,
    calibrate_items,
)
from sim.validation.observe import Collector

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ArrivalsSource = Literal["observed", "scenario"]
DEFAULT_REPLICATIONS = 200
Series = tuple[str, str]  # (metric, statistic)
LATENCY_FLOOR_MS = DELAY_FLOOR_S * 1000.0


@dataclass(frozen=True)
class Window:
    """The observed window: `n_periods` periods of `period_s` from `start_at` (epoch s)."""

    start_at: float
    period_s: float
    n_periods: int

    @property
    def horizon_s(self) -> float:
        return self.period_s * self.n_periods

    @property
    def edges(self) -> np.ndarray:
        """Period edges in model time (seconds since the window's start)."""
        return self.period_s * np.arange(self.n_periods + 1)

    def label(self, index: int) -> str:
        return iso(self.start_at + index * self.period_s)


@dataclass
class Observed:
    """One rule's observed series on the window's grid (counts 0, latencies NaN where missing)."""

    source: str
    rule: str | None
    window: Window
    series: dict[Series, np.ndarray]
    notes: list[str] = field(default_factory=list)


def observe_metrics(
    data: MetricData,
    rule: str | None = None,
    period_s: float | None = None,
    start_at: float | None = None,
    end_at: float | None = None,
) -> Observed:
    """The observed series of `rule` over the window (InputError naming the file and line when
    they cannot be put on one period grid, or there is no MatchedEvents in the window).

    `start_at`/`end_at` (epoch s) narrow the window to a part of the file (the default: from
    the first to the last MatchedEvents datapoint)."""
    try:
        rule = data.resolve_rule(rule)
        chosen = data.rule_series(rule)
    except ValueError as err:
        raise InputError(None, None, str(err)) from None
    period = data.period(period_s)
    notes = list(data.notes)
    usable: list[MetricSeries] = []
    for series in chosen:
        try:
            check_stat(series.metric or "", series.stat)
        except ValueError as err:
            notes.append(f"{series.label or series.id} left out: {err}")
            continue
        if (series.metric, series.stat) in {(s.metric, s.stat) for s in usable}:
            raise InputError(
                data.source, f"line {series.line}", f"a second series of {series.describe()}"
            )
        usable.append(series)
    lo, hi = start_at if start_at is not None else -np.inf, end_at if end_at is not None else np.inf
    matched = [
        s
        for s in usable
        if s.metric == "MatchedEvents" and ((s.times >= lo) & (s.times < hi)).any()
    ]
    if not matched:
        where = "" if start_at is None and end_at is None else " in the window given"
        raise InputError(
            data.source,
            None,
            f"no MatchedEvents datapoints{_of(rule)}{where}: the window is that of the arrivals",
        )
    times = matched[0].times[(matched[0].times >= lo) & (matched[0].times < hi)]
    start = float(times[0]) if start_at is None else start_at
    end = float(times[-1]) + period if end_at is None else end_at
    if end - start < period / 2:
        raise InputError(None, "window", f"{iso(start)} to {iso(end)} is shorter than a period")
    window = Window(start, period, max(1, round((end - start) / period)))
    values: dict[Series, np.ndarray] = {}
    outside = 0
    for series in sorted(usable, key=lambda s: _ORDER.index(s.metric)):
        inside = (series.times >= start) & (series.times < end - period / 2)
        outside += int((~inside).sum())
        steps = (series.times[inside] - start) / period
        index = np.rint(steps).astype(np.int64)
        off = np.flatnonzero(np.abs(steps - index) > 1e-6)
        if off.size:
            line = int(series.lines[inside][off[0]])
            raise InputError(
                data.source,
                f"line {line}",
                f"not on the {period:g} s grid of the window from {iso(start)}",
            )
        grid = (
            np.zeros(window.n_periods) if series.is_count else np.full(window.n_periods, math.nan)
        )
        grid[index] = series.values[inside]
        values[(str(series.metric), series.stat)] = grid
    if outside:
        notes.append(
            f"{outside} datapoints outside the window ({iso(start)} to {iso(end)}) left out"
        )
    return Observed(data.source, rule, window, values, notes)


_ORDER = (*COUNT_METRICS, LATENCY_METRIC)


def _of(rule: str | None) -> str:
    return f" of rule {rule!r}" if rule else ""


@dataclass(frozen=True)
class Layout:
    """Which items are compared: the series, the periods after the warm-up, and the totals."""

    series: tuple[Series, ...]
    first_period: int
    window: Window

    def names(self) -> list[str]:
        out = []
        for metric, stat in self.series:
            name = metric if metric in COUNT_METRICS else f"{metric} {stat}"
            out += [
                f"{name}[{self.window.label(i)}]"
                for i in range(self.first_period, self.window.n_periods)
            ]
            if metric in COUNT_METRICS:
                out.append(f"{name}.total")
        return out

    def floors(self) -> np.ndarray:
        per = self.window.n_periods - self.first_period
        return np.concatenate(
            [
                np.full(per + 1, COUNT_FLOOR)
                if metric in COUNT_METRICS
                else np.full(per, LATENCY_FLOOR_MS)
                for metric, _ in self.series
            ]
        )

    def values(self, series: Mapping[Series, np.ndarray]) -> np.ndarray:
        """The item values of one run's series, in `names` order."""
        parts = []
        for key in self.series:
            kept = series[key][self.first_period :]
            parts.append(kept)
            if key[0] in COUNT_METRICS:
                parts.append(np.array([kept.sum()]))
        return np.concatenate(parts)


def model_row(scenario: Scenario, replication: int, layout: Layout) -> np.ndarray:
    """Simulate one replication over the window; its item values (one Executor task)."""
    sink = Collector()
    simulate_replication(scenario, replication, sink)
    records = _concat(sink)
    arrivals = np.concatenate(sink.arrival_times) if sink.arrival_times else np.empty(0)
    wanted: dict[str, list[str]] = {}
    for metric, stat in layout.series:
        wanted.setdefault(metric, []).append(stat)
    series = model_metrics(records, arrivals, layout.window.edges, wanted)
    return layout.values(series)


def _concat(sink: Collector) -> dict[str, np.ndarray]:
    return concat(sink.chunks)


@dataclass
class Backtest:
    """A backtest's outcome: what was observed, the scenario the model ran, the comparison."""

    observed: Observed
    scenario: Scenario
    layout: Layout
    comparison: Comparison
    model_values: np.ndarray  # (replications, items)
    observed_values: np.ndarray
    arrivals: ArrivalsSource
    fit: FitSurface | None = None  # with --fit
    report_dir: Path | None = None

    @property
    def passed(self) -> bool:
        return self.comparison.passed

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def p_value(self) -> float:
        return p_value(self.comparison)

    def plot(self) -> Figure:
        """Observed against predicted, one panel per series (the report's overlay.png)."""
        from sim.validation.backtest_plots import plot_overlay

        return plot_overlay(self)

    def plot_fit(self) -> Figure:
        """p-value over the `fit` grid (the report's fit.png); ValueError without a fit."""
        from sim.validation.backtest_plots import plot_surface

        if self.fit is None:
            raise ValueError("this backtest searched no settings (give `fit`)")
        return plot_surface(self.fit, self.comparison.alpha)

    def reasons(self) -> list[str]:
        if self.passed:
            return []
        failed = self.comparison.failed()
        shown = ", ".join(failed[:8]) + (f" and {len(failed) - 8} more" if len(failed) > 8 else "")
        return [
            f"outside: {shown}"
            if failed
            else f"T = {self.comparison.statistic:.2f} above {self.comparison.critical:.2f}"
        ]


OBSERVED_ARRIVALS_CSV = "observed_matched_events.csv"


def observed_arrivals_csv(observed: Observed) -> str:
    """The observed MatchedEvents per period as a counts CSV (`start_s,events`)."""
    period = observed.window.period_s
    counts = observed.series[("MatchedEvents", "Sum")]
    return "start_s,events\n" + "".join(f"{i * period!r},{c:g}\n" for i, c in enumerate(counts))


def window_scenario(
    scenario: Scenario, observed: Observed, arrivals: ArrivalsSource, folder: Path
) -> Scenario:
    """The scenario over the observed window: its horizon, periods as `sample_every` and (with
    `observed` arrivals) the observed MatchedEvents as a `counts` source (a CSV in `folder`)."""
    window = observed.window
    overrides: dict[str, Any] = {"horizon": window.horizon_s, "sample_every": window.period_s}
    if arrivals == "observed":
        path = folder / OBSERVED_ARRIVALS_CSV
        path.write_text(observed_arrivals_csv(observed))
        overrides["arrivals"] = [
            {
                "kind": "counts",
                "path": str(path),
                "time_column": "start_s",
                "count_column": "events",
                "bin": window.period_s,
            }
        ]
    return with_overrides(scenario, overrides)


def backtest(
    scenario: Scenario | str | Path,
    metrics: MetricData | str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    rule: str | None = None,
    period_s: float | None = None,
    start_at: float | str | None = None,
    end_at: float | str | None = None,
    replications: int = DEFAULT_REPLICATIONS,
    warm_up_s: float = 0.0,
    arrivals: ArrivalsSource = "observed",
    fit: Mapping[str, list[Any]] | None = None,
    workers: int | None = None,
    alpha: float = ALPHA,
    progress: Callable[[float], None] | None = None,
) -> Backtest:
    """Test the model of `scenario` (with `overrides`) against the observed metrics, a
    GetMetricData JSON file or CSV export (see the module docstring). `fit` maps setting key
    paths to the values to search (`sim.validation.backtest_fit.parse_fit` reads `lo:hi`);
    `start_at`/`end_at` (ISO 8601 or epoch s) narrow the window to a part of the file."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    scenario = with_overrides(scenario, dict(overrides or {}))
    data = metrics if isinstance(metrics, MetricData) else _read(Path(metrics))
    if replications < MIN_REPLICATIONS:
        raise InputError(None, "replications", f"at least {MIN_REPLICATIONS} (got {replications})")
    observed = observe_metrics(data, rule, period_s, _at(start_at, "start"), _at(end_at, "end"))
    window = observed.window
    first = math.ceil(warm_up_s / window.period_s - 1e-9)
    if first >= window.n_periods:
        raise InputError(
            None,
            "warm_up",
            f"{warm_up_s:g} s leaves none of the {window.n_periods} periods to test",
        )
    layout = Layout(tuple(observed.series), first, window)
    grid = check_grid(scenario, fit or {}, arrivals)
    with tempfile.TemporaryDirectory(prefix="sim-backtest-") as folder:
        base = window_scenario(scenario, observed, arrivals, Path(folder))
        points = [base, *(with_overrides(base, point) for point in grid)]
        rows = run_points(points, replications, layout, workers, progress)
    observed_values = layout.values(observed.series)
    items = Items(
        layout.names(), layout.floors(), np.zeros(len(layout.names()), dtype=bool), rows[0]
    )
    comparison = calibrate_items(items, alpha).test_values(observed_values)
    result = Backtest(observed, base, layout, comparison, rows[0], observed_values, arrivals)
    if grid:
        result.fit = fit_surface(grid, rows[1:], items.names, items.floors, observed_values, alpha)
    return result


def _at(value: float | str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        return to_epoch(value)
    except ValueError as err:
        raise InputError(None, "window", f"{name}: {err}") from None


def _read(path: Path) -> MetricData:
    try:
        return read_metric_data(path)
    except ValueError as err:
        raise InputError(None, None, str(err)) from None


def run_points(
    scenarios: list[Scenario],
    replications: int,
    layout: Layout,
    workers: int | None,
    progress: Callable[[float], None] | None,
) -> list[np.ndarray]:
    """Item values of replications 0..N-1 of each scenario (the same streams at every point)."""
    tasks = [(s, i, layout) for s in scenarios for i in range(replications)]
    rows = Executor(workers).gather(model_row, tasks, progress)
    return [
        np.array(rows[k * replications : (k + 1) * replications]) for k in range(len(scenarios))
    ]
