"""Metrics of a bus (docs/bus.md): the whole bus, each destination, each rule, and the account.

`BusAccumulator` is the sink for a bus scenario. It folds the same records into one
`Accumulator` for the whole bus and one per rule and per destination (a destination with a
single rule shares that rule's), so every existing metric exists at each level:

* top level: every metric over all **deliveries** (one per rule match of a bus event: what
  EventBridge invokes), plus `bus_events_arrived` (events put on the bus) and `fan_out`;
* `destinations.<name>.<metric>`, `rules.<name>.<metric>`: the same metrics over the
  deliveries of that destination's rules, or of that rule;
* `destinations.<name>.account_throttled_fraction`: its attempts the account held after their
  destination let them go (with `endpoint_peak_rps` against its own limit: which bucket binds);
* `account.throttled_fraction` (attempts that waited for an account token, over all attempts)
  and `account.peak_rps` (most attempts of the account in any 1 s window, per second).

A bus with one destination, one rule matching every event and no account quota gives the
single-destination form's top-level metrics exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from sim import policy
from sim.records import Chunk, column
from sim.results.accumulator import Accumulator, ReplicationResult
from sim.scenario.model import Scenario

ALL = "all"
"""The `destination` of the whole bus's rows in a bus run's time series."""
WAITED_S = 1e-9
"""A wait longer than this counts as throttled (float noise in token times is far below it)."""


def accumulator_for(
    scenario: Scenario, replication: int, keep_records: bool = False
) -> Accumulator | BusAccumulator:
    """The sink that summarizes a replication of this scenario (a bus's: `BusAccumulator`)."""
    if scenario.is_bus:
        return BusAccumulator(scenario, replication, keep_records)
    return Accumulator(scenario, replication, keep_records)


class BusAccumulator:
    """Sink for a bus: arrivals, each rule's deliveries and the attempt records, folded per level."""

    def __init__(self, scenario: Scenario, replication: int, keep_records: bool = False) -> None:
        bus = scenario.bus
        self.bus = bus
        self.replication = replication
        bursts = [d.burst for d in bus.destinations]
        self.total = Accumulator(scenario, replication, keep_records, burst=bus.burst)
        self.targets = np.asarray(bus.targets, dtype=np.int64)
        self.rules = [Accumulator(scenario, replication, burst=bursts[t]) for t in bus.targets]
        self.alone = [  # a destination whose only rule is this one shares its accumulator
            int(np.count_nonzero(self.targets == d)) == 1 for d in range(len(bus.destinations))
        ]
        self.destinations = [
            self.rules[int(np.flatnonzero(self.targets == d)[0])]
            if self.alone[d]
            else Accumulator(scenario, replication, burst=bursts[d])
            for d in range(len(bus.destinations))
        ]
        n = len(bus.destinations)
        self.sent = np.zeros(n, dtype=np.int64)
        self.held_by_account = np.zeros(n, dtype=np.int64)
        self.events = 0

    # --- the sink -------------------------------------------------------------------------

    def arrivals(self, replication: int, times: np.ndarray) -> None:
        self.events += times.size

    def deliveries(self, replication: int, rule: int, times: np.ndarray) -> None:
        """The arrival times of the events `rule` matched: one delivery each."""
        self.total.arrivals(replication, times)
        self.rules[rule].arrivals(replication, times)
        d = int(self.targets[rule])
        if not self.alone[d]:
            self.destinations[d].arrivals(replication, times)

    def attempts(self, chunk: Chunk) -> None:
        self.total.attempts(chunk)
        rule = column(chunk, "rule").astype(np.int64)
        destination = self.targets[rule]
        for r, accumulator in enumerate(self.rules):
            mine = rule == r
            if mine.any():
                accumulator.attempts({name: values[mine] for name, values in chunk.items()})
        for d, accumulator in enumerate(self.destinations):
            if self.alone[d]:
                continue
            mine = destination == d
            if mine.any():
                accumulator.attempts({name: values[mine] for name, values in chunk.items()})
        sent = ~np.isin(chunk["outcome"], policy.UNSENT_OUTCOMES)
        wait = column(chunk, "account_wait_s")
        by_account = sent & (wait > WAITED_S)
        n = len(self.destinations)
        self.sent += np.bincount(destination[sent], minlength=n)
        self.held_by_account += np.bincount(destination[by_account], minlength=n)

    # --- the results ----------------------------------------------------------------------

    def finish(self) -> ReplicationResult:
        """The whole bus's result, its summary extended by every level's metrics and its time
        series by each destination's (column `destination`)."""
        result = self.total.finish()
        summary: dict[str, Any] = dict(result.summary)
        summary["bus_events_arrived"] = self.events
        summary["fan_out"] = summary["events_arrived"] / self.events if self.events else math.nan
        frames = []
        done: dict[int, ReplicationResult] = {}  # a destination alone with its rule: one finish

        def finish(accumulator: Accumulator) -> ReplicationResult:
            if id(accumulator) not in done:
                done[id(accumulator)] = accumulator.finish()
            return done[id(accumulator)]

        for d, destination in enumerate(self.bus.destinations):
            part = finish(self.destinations[d])
            prefix = f"destinations.{destination.name}."
            summary.update(_prefixed(prefix, part.summary))
            sent = int(self.sent[d])
            held = int(self.held_by_account[d])
            summary[prefix + "account_throttled_fraction"] = held / sent if sent else 0.0
            frames.append(part.timeseries.assign(destination=destination.name))
        for r, rule in enumerate(self.bus.rules):
            part = finish(self.rules[r])
            summary.update(_prefixed(f"rules.{rule.name}.", part.summary))
        attempts = int(self.sent.sum())
        summary["account.throttled_fraction"] = (
            int(self.held_by_account.sum()) / attempts if attempts else 0.0
        )
        summary["account.peak_rps"] = summary["endpoint_peak_rps"]
        whole = result.timeseries.assign(destination=ALL)
        result.summary = summary
        result.timeseries = whole
        result.destination_series = pd.concat(frames, ignore_index=True)
        return result


def _prefixed(prefix: str, summary: dict[str, Any]) -> dict[str, Any]:
    return {prefix + key: value for key, value in summary.items() if key != "replication"}
