"""Rate-limit sizing: the smallest `invocation_rate_limit_per_second` that meets the scenario's SLOs.

A rate meets the SLOs when, for each one the scenario sets, the upper bound of the 95 % CI
across replications is within the limit (the verdict of `sim run`). Candidate rates form a
lattice min, min + step, ..., max, above the mean arrival rate (at or below it the backlog
grows without bound, however short a horizon hides that). `sim.analysis.rate_search` finds the
smallest: the top of the range, then bisection, with common random numbers across rates and
replications added per rate only until its verdict is clear (`grid=True`: every rate, every
replication). A rate above the answer that fails is reported: then the SLOs are not monotone in
the rate (typically an endpoint overloaded by the higher rate).

When the endpoint has a `capacity`, a second search finds the largest rate the endpoint
absorbs without overload answers or timeouts. A probe runs the endpoint as configured (latency,
capacity) but healthy (all 200, no hangs, no incidents) and feeds it exactly the rate: a
standing backlog from time zero and burst capacity 1, so requests leave evenly spaced at 1/rate
for the probe's horizon. Every unsuccessful attempt is then an overload answer or a timeout.
(Bursts of up to `burst_capacity` requests after an idle spell are not part of the probe.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sim.analysis.rate_search import RATE_KEY, Lattice, SloSearch, Target
from sim.analysis.sweeps import prepare, run_points
from sim.errors import InputError
from sim.results.tables import SLO_METRICS, aggregate
from sim.runner.executor import Executor, Progress
from sim.scenario.arrivals import expected_count, expected_rate
from sim.scenario.durations import format_duration
from sim.scenario.loading import with_overrides
from sim.scenario.model import Scenario

if TYPE_CHECKING:
    from distributed import Client

PROBE_HORIZON_S = 600.0
PROBE_OVERSUPPLY = 1.1
"""The probe's standing backlog, relative to what the rate can send within the probe horizon."""


@dataclass
class SizingResult:
    """The recommendation with its evidence: every rate evaluated, its SLO metrics and verdicts."""

    scenario: Scenario
    min_rate: float
    max_rate: float
    step: float
    evaluations: pd.DataFrame
    runs: pd.DataFrame
    recommended: float | None
    binding: list[str]
    monotone: bool
    endpoint_limit: float | None = None
    endpoint_probe: pd.DataFrame | None = None
    overload_tolerance: float = 0.0
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    method: str = "search"  # "search" (bisection, sequential replications) or "grid"
    replications_run: int = 0  # replications simulated by the SLO search (not the probe)
    lattice_size: int = 0  # rates in the lattice: what the exhaustive grid evaluates
    target: Target = field(
        default_factory=Target
    )  # the key sized (a bus: a destination's, the account's)

    @property
    def rates_evaluated(self) -> int:
        """How many rates the SLO search evaluated."""
        return len(self.evaluations)

    def effort(self) -> str:
        """How much the search ran, against what the exhaustive grid would."""
        most = self.scenario.replications
        grid = self.lattice_size * most
        if self.method == "grid":
            return f"Exhaustive grid: {self.rates_evaluated} rates × {most} replications."
        return (
            f"Searched {self.rates_evaluated} of {self.lattice_size} rates with "
            f"{self.replications_run} replications in all (at most {most} per rate; the "
            f"exhaustive grid would run {grid:,})."
        )

    @property
    def met(self) -> bool:
        """Whether some rate in range meets every SLO."""
        return self.recommended is not None

    def sentence(self) -> str:
        """The recommendation in one sentence."""
        slos = _slo_text(self.scenario)
        span = f"[{_rate(self.min_rate)}, {_rate(self.max_rate)}] (step {_rate(self.step)})"
        n = self.scenario.replications
        evidence = (
            (
                f"at 95 % confidence over {n} replications"
                if self.method == "grid"
                else f"at 95 % confidence (up to {n} replications per rate)"
            )
            if n > 1
            else "on the mean of 1 replication (no confidence interval)"
        )
        if self.recommended is None:
            return (
                f"No rate limit in {span} meets {slos} {evidence}: "
                f"{_binding_text(self)} still fails at {_rate(self.max_rate)}/s."
            )
        text = (
            f"Set {self.target.label} to {_rate(self.recommended)}/s: the smallest rate "
            f"in {span} that meets {slos} {evidence}"
        )
        text += f" ({_binding_text(self)} binds)." if self.binding else "."
        if self.endpoint_probe is not None and self.endpoint_limit is None:
            text += (
                f" But the endpoint overloads even at {_rate(self.min_rate)}/s: ask the partner "
                "for capacity."
            )
        elif self.endpoint_limit is not None:
            if self.recommended > self.endpoint_limit:
                text += (
                    f" But the endpoint overloads above {_rate(self.endpoint_limit)}/s, so no rate "
                    "both meets the SLOs and spares the endpoint: ask the partner for capacity."
                )
            else:
                text += (
                    f" The endpoint absorbs up to {_rate(self.endpoint_limit)}/s without overload."
                )
        return text


def _rate(value: float) -> str:
    return f"{value:,.6g}"


def _slo_text(scenario: Scenario) -> str:
    parts = []
    for name in SLO_METRICS:
        limit = getattr(scenario.slo, name)
        if limit is not None:
            shown = format_duration(limit) if name == "max_p99_delivery_delay" else f"{limit:g}"
            parts.append(f"{name} ≤ {shown}")
    return " and ".join(parts)


def _binding_text(result: SizingResult) -> str:
    return " and ".join(result.binding) if result.binding else "no SLO"


def nice_step(span: float, points: int = 200) -> float:
    """A 1-2-5 step giving at most about `points` lattice points over `span`."""
    raw = max(span / points, 1e-9)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def mean_arrival_rate(scenario: Scenario, per_event: float = 1.0) -> float:
    """Expected arrivals per second over the horizon (times the invocations per event a bus
    bucket sees: `Target.per_event`)."""
    return per_event * expected_count(scenario.arrivals, scenario.horizon) / scenario.horizon


def default_range(scenario: Scenario, per_event: float = 1.0) -> tuple[float, float]:
    """Search range: from the mean arrival rate (below it the backlog can only grow) to twice
    the peak expected arrival rate, rounded to 1-2-5 steps (rates of first attempts on a bus)."""
    horizon = scenario.horizon
    times = np.arange(0.0, horizon, max(1.0, horizon / 200_000)) + 0.5
    mean = mean_arrival_rate(scenario, per_event)
    peak_events = float(expected_rate(scenario.arrivals, times).max(initial=0.0))
    peak = max(per_event * peak_events, mean, 1.0)
    unit = nice_step(2 * peak, 10)
    return max(1.0, math.floor(mean / unit) * unit), math.ceil(2 * peak / unit) * unit


def _check_inputs(
    scenario: Scenario, low: float, high: float, step: float, overload_tolerance: float
) -> None:
    if not any(getattr(scenario.slo, name) is not None for name in SLO_METRICS):
        raise InputError(
            scenario.name,
            "slo",
            "the scenario sets no SLO; give one of " + ", ".join(SLO_METRICS),
        )
    if not 0 < low <= high:
        raise InputError(None, "min_rate", f"need 0 < min ≤ max (got {low:g}, {high:g})")
    if step <= 0:
        raise InputError(None, "step", f"must be positive (got {step:g})")
    if not 0 <= overload_tolerance < 1:
        problem = f"must be in [0, 1) (got {overload_tolerance:g})"
        raise InputError(None, "overload_tolerance", problem)


def size_rate_limit(
    scenario: Scenario | str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    slo: Mapping[str, Any] | None = None,
    min_rate: float | None = None,
    max_rate: float | None = None,
    step: float | None = None,
    replications: int | None = None,
    seed: int | None = None,
    horizon: float | str | None = None,
    workers: int | None = None,
    dask: str | Client | None = None,
    coarse_points: int = 6,
    grid: bool = False,
    overload_tolerance: float = 0.0,
    probe_horizon: float = PROBE_HORIZON_S,
    progress: Progress | None = None,
    target: Target | None = None,
) -> SizingResult:
    """The smallest rate limit (events/s) in [min_rate, max_rate] meeting the scenario's SLOs.

    `slo` sets or replaces objectives (`{"max_p99_delivery_delay": "10m"}`). The burst capacity
    is held as the scenario sets it (when unset it follows the rate: one second of burst).
    The scenario's `replications` (or `replications`) is the most a rate gets: the search adds
    them a batch at a time until the verdict is clear; `grid=True` evaluates every lattice rate
    with all of them (exhaustive, slow: the check of the search).
    With an endpoint `capacity`, also finds the largest rate the endpoint absorbs with at most
    `overload_tolerance` of attempts answered by overload or timing out (95 % CI upper bound).
    On a bus, `target` (`rate_search.target_for`) says what to size: one destination's rate limit
    (SLOs judged on that destination's deliveries) or the account quota (on the whole bus's);
    the endpoint probe is then not run.
    """
    slo_overrides = {f"slo.{name}": value for name, value in (slo or {}).items()}
    base = prepare(
        scenario,
        {**(overrides or {}), **slo_overrides},
        replications=replications,
        seed=seed,
        horizon=horizon,
    )
    target = target or Target()
    if target.key == RATE_KEY:
        base.require_single("sizing without --destination or --account")
    default_low, default_high = default_range(base, target.per_event)
    low = default_low if min_rate is None else float(min_rate)
    high = default_high if max_rate is None else float(max_rate)
    _check_inputs(base, low, high, 1.0 if step is None else float(step), overload_tolerance)
    step = nice_step(high - low) if step is None else float(step)
    mean = mean_arrival_rate(base, target.per_event)
    notes = []
    if low <= mean:  # the backlog would grow for ever: such a rate is never recommended
        origin = 0.0 if min_rate is None else low  # default lattice: multiples of the step
        first_above = origin + (math.floor((mean - origin) / step + 1e-9) + 1) * step
        if min_rate is not None:
            notes.append(
                f"Rates at or below the mean arrival rate ({_rate(mean)}/s) were not tried: the "
                f"backlog would grow without bound; the search starts at {_rate(first_above)}/s."
            )
        low = round(first_above, 9)
    if low > high:
        raise InputError(
            None,
            "max_rate",
            f"every rate up to {_rate(high)}/s is at or below the mean arrival rate "
            f"{_rate(mean)}/s, where the backlog grows without bound",
        )
    lattice = Lattice(low, high, step)
    probe_wall_s = 0.0
    with Executor(workers, dask) as executor:
        search = SloSearch(base, lattice, executor, progress, grid=grid, target=target)
        started = time.perf_counter()
        hi, lo, monotone = search.run(coarse_points)
        search.wall_s = time.perf_counter() - started
        recommended = None if hi is None else lattice.rate(hi)
        if hi is None:
            binding = search.failing(lattice.last)
        else:
            binding = search.failing(lo) if lo is not None and lo in search.evaluations else []
        result = SizingResult(
            scenario=base,
            min_rate=low,
            max_rate=lattice.rate(lattice.last),
            step=step,
            evaluations=search.table(),
            runs=search.all_runs(),
            recommended=recommended,
            binding=binding,
            monotone=monotone,
            overload_tolerance=overload_tolerance,
            notes=notes,
            method="grid" if grid else "search",
            replications_run=search.replications_run,
            lattice_size=len(lattice),
            target=target,
        )
        if recommended is not None and not base.is_bus:
            result.notes += _undrained(search, base, recommended)
        else:
            low_fails, high_fails = search.failing(0), search.failing(lattice.last)
            if set(low_fails) != set(high_fails):
                result.notes.append(
                    f"Different SLOs fail at the two ends ({', '.join(low_fails)} at the lowest rate, "
                    f"{', '.join(high_fails)} at the highest): a narrow window between the rates tried "
                    "may meet them all — narrow the range or use a finer step."
                )
        if not monotone:
            result.notes.append(
                "Meeting the SLOs is not monotone in the rate here: a rate above the "
                "recommendation fails (see the table) — look for endpoint overload."
            )
        if not base.is_bus and base.endpoint.capacity is not None:
            probe = _EndpointProbe(base, lattice, executor, overload_tolerance, probe_horizon)
            result.endpoint_limit, result.endpoint_probe = probe.run(coarse_points)
            result.notes += probe.notes
            probe_wall_s = probe.wall_s
    result.wall_s = search.wall_s + probe_wall_s
    return result


def _undrained(search: SloSearch, base: Scenario, rate: float) -> list[str]:
    """A note when the backlog has not drained by the horizon at the recommended rate."""
    row = search.table().set_index("rate").loc[rate]
    burst = with_overrides(base, {RATE_KEY: rate}).destination.burst
    if row["backlog_at_end.mean"] <= burst:
        return []
    return [
        f"At {_rate(rate)}/s about {row['backlog_at_end.mean']:,.0f} events still wait for a token "
        "at the horizon; the p99 counts them at their age so far, but they will wait longer — "
        "lengthen the horizon to see their full delays."
    ]


class _EndpointProbe:
    """The largest lattice rate a healthy endpoint with its capacity absorbs without overload."""

    def __init__(
        self,
        base: Scenario,
        lattice: Lattice,
        executor: Executor,
        tolerance: float,
        horizon: float,
    ) -> None:
        self.lattice, self.executor, self.tolerance = lattice, executor, tolerance
        self.horizon = horizon = min(horizon, base.horizon)
        self.base = with_overrides(
            base,
            {
                "endpoint.responses": {200: 1.0},
                "endpoint.timeout_probability": 0.0,
                "endpoint.incidents": [],
                "horizon": horizon,
                "sample_every": min(base.sample_every, horizon),
                "destination.burst_capacity": 1,
            },
        )
        self.rows: dict[int, dict[str, Any]] = {}
        self.notes: list[str] = []
        self.wall_s = 0.0

    def evaluate(self, indices: list[int]) -> None:
        todo = [k for k in indices if k not in self.rows]
        if not todo:
            return
        points = []
        for k in todo:
            rate = self.lattice.rate(k)
            backlog = PROBE_OVERSUPPLY * rate * self.horizon
            arrivals = [{"kind": "burst", "start": 0, "duration": 1, "rate_per_second": backlog}]
            points.append({RATE_KEY: rate, "arrivals": arrivals})
        sweep = run_points(self.base, points, executor=self.executor)
        self.wall_s += sweep.wall_s
        for point, k in enumerate(todo):
            runs = sweep.runs[sweep.runs["point"] == point]
            # attempts answered (or timed out) by the horizon; those still in flight are not
            answered = runs["InvocationAttempts"] - runs["in_flight_at_end"]
            ok = runs["SuccessfulInvocationAttempts"].to_numpy(dtype=float)
            overload = pd.DataFrame(
                {"overload_fraction": 1 - ok / np.maximum(answered.to_numpy(dtype=float), 1)}
            )
            stats = aggregate(overload).loc["overload_fraction"]
            worst = stats["ci_high"] if not math.isnan(stats["ci_high"]) else stats["mean"]
            self.rows[k] = {
                "rate": self.lattice.rate(k),
                "overload_fraction.mean": stats["mean"],
                "overload_fraction.ci_low": stats["ci_low"],
                "overload_fraction.ci_high": stats["ci_high"],
                "absorbed": bool(worst <= self.tolerance),
            }

    def run(self, coarse_points: int) -> tuple[float | None, pd.DataFrame]:
        self.evaluate(self.lattice.coarse(coarse_points))
        absorbed = [k for k in sorted(self.rows) if self.rows[k]["absorbed"]]
        if not absorbed:
            self.notes.append(
                f"The endpoint overloads even at {_rate(self.lattice.rate(0))}/s (its capacity is "
                "below the search range)."
            )
            return None, self._table()
        lo = absorbed[-1]
        above = [k for k in self.rows if k > lo]
        hi = min(above) if above else None
        while hi is not None and hi - lo > 1:
            mid = (lo + hi) // 2
            self.evaluate([mid])
            if self.rows[mid]["absorbed"]:
                lo = mid
            else:
                hi = mid
        if hi is None:
            self.notes.append(
                f"The endpoint absorbs every rate up to {_rate(self.lattice.rate(lo))}/s, the top of the range."
            )
        return self.lattice.rate(lo), self._table()

    def _table(self) -> pd.DataFrame:
        return pd.DataFrame([self.rows[k] for k in sorted(self.rows)])
