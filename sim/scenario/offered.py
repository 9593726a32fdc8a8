"""The first-attempt load a bus scenario offers each destination and the account, before any model run.

Arrivals times each destination's invocations per event (the sum of its rules' match
fractions), at the mean and at the peak of the expected arrival rate. Retries come on top, so
these are lower bounds: a peak over a limit means events will wait, whatever the endpoint does.
`sim check` prints them for a bus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.scenario.arrivals import expected_count, expected_rate
from sim.scenario.model import BurstArrivals, CountsArrivals, DiurnalArrivals, Scenario

MAX_GRID = 2_000_000
"""Most points the expected rate is evaluated at to find its peak (one per second up to ~23 days)."""


@dataclass(frozen=True)
class OfferedLoad:
    """First attempts per second offered to one destination (or to the account, `name` None)."""

    name: str | None
    mean: float
    peak: float
    limit: float | None

    @property
    def over(self) -> bool:
        """True when the peak is above the limit: attempts must wait for tokens."""
        return self.limit is not None and self.peak > self.limit


def peak_rate(scenario: Scenario) -> float:
    """The highest expected arrival rate over the horizon (events/s; a trace's busiest second)."""
    horizon = scenario.horizon
    step = max(1.0, horizon / MAX_GRID)
    points = [np.arange(0.0, horizon, step)]
    for source in scenario.arrivals:
        if isinstance(source, BurstArrivals):
            points.append(np.array([source.start]))
        elif isinstance(source, CountsArrivals):
            points.append(source.bins[0])
        elif isinstance(source, DiurnalArrivals):
            points.append(np.arange(source.peak_at % source.period, horizon, source.period))
    grid = np.concatenate(points)
    grid = grid[(grid >= 0) & (grid < horizon)]
    return float(expected_rate(scenario.arrivals, grid).max(initial=0.0))


def offered_loads(scenario: Scenario) -> list[OfferedLoad]:
    """Per destination, then for the account: first attempts/s at the mean and peak arrival rate."""
    bus = scenario.bus
    mean = expected_count(scenario.arrivals, scenario.horizon) / scenario.horizon
    peak = peak_rate(scenario)
    loads = [
        OfferedLoad(d.name, share * mean, share * peak, d.invocation_rate_limit_per_second)
        for d in bus.destinations
        for share in [bus.invocations_per_event(d.name)]
    ]
    fan_out = bus.invocations_per_event()
    limit = bus.account.invocation_limit_per_second
    loads.append(OfferedLoad(None, fan_out * mean, fan_out * peak, limit))
    return loads


def describe(scenario: Scenario) -> list[str]:
    """Comment lines for `sim check`: the bus's fan-out and the load offered against each limit."""
    bus = scenario.bus
    loads = offered_loads(scenario)
    fan_out = bus.invocations_per_event()
    lines = [
        f"# bus: {_count(len(bus.destinations), 'destination')}, "
        f"{_count(len(bus.rules), 'rule')}, "
        f"{fan_out:.3g} invocations per event (fan-out)",
        "# first attempts/s (retries come on top) at the mean and the peak arrival rate:",
    ]
    width = max(len(load.name or "account") for load in loads)
    for load in loads:
        name = load.name or "account"
        kind = "quota" if load.name is None else "limit"
        limit = "unlimited" if load.limit is None else f"{load.limit:,.6g}/s"
        flag = f"  <- the peak is over the {kind}: events will wait" if load.over else ""
        lines.append(
            f"#   {name:<{width}}  mean {load.mean:>10,.1f}  peak {load.peak:>10,.1f}  "
            f"{kind} {limit}{flag}"
        )
    return lines


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"
