"""What validation compares for a bus: the whole bus, each destination, each rule and the account.

A bus run's observation holds, under the single form's names, the same items for all its
deliveries together (so the report's plots and tables read as for one destination), and
prefixed copies for each part:

* `destinations.NAME.<metric>` — every scalar metric, and the series per time bin
  (`destinations.NAME.backlog[10s]`, ...), over the deliveries to that destination: its
  bucket's backlog, its retry pool, the requests its endpoint received;
* `rules.NAME.<metric>` — every scalar metric over that rule's deliveries: its matches
  (`events_arrived`), attempts by outcome, retries, DLQ by reason, drops, delays;
* `account.throttled_fraction` (attempts that waited for an account token after their
  destination let them go) and `account.peak_rps` (most attempts in any 1 s window).

Every metric is computed by the shared results code for a bus, `sim.results.bus.BusAccumulator`
(the one `sim run` uses), from records carrying each attempt's `rule` and `account_wait_s`;
only the attempts by outcome and the requests per bin are counted here, as for one destination
(`observe`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sim import policy
from sim.des import simulate_replication
from sim.records import Chunk, concat
from sim.results.bus import BusAccumulator
from sim.scenario.model import Scenario
from sim.validation.bus_timing import corrected_bus_records, ideal_bus_dispatch
from sim.validation.live import LiveRun
from sim.validation.observe import (
    SCALARS,
    Collector,
    Observation,
    before_horizon,
    bin_edges,
    outcome_counts,
    series_of,
)
from sim.validation.overhead import Overhead, bus_lines

ACCOUNT_METRICS = ("account.throttled_fraction", "account.peak_rps")
"""The account's items (every bus: without a quota nothing waits for it)."""


def _rows(records: Chunk, keep: np.ndarray) -> Chunk:
    return {name: column[keep] for name, column in records.items()}


def _scalars(summary: dict[str, float], prefix: str, records: Chunk) -> dict[str, float]:
    """A part's scalars in the single form's order (`observe.SCALARS`)."""
    outcomes = outcome_counts(records)
    return {
        prefix + name: outcomes[name] if name in outcomes else float(summary[prefix + name])
        for name in SCALARS
    }


def observe_bus(
    scenario: Scenario,
    replication: int,
    records: Chunk,
    rule_of_row: np.ndarray,
    arrivals_by_rule: Sequence[np.ndarray],
    requests_by_destination: Sequence[np.ndarray] | None = None,
) -> Observation:
    """One bus run's observation (module docstring).

    `rule_of_row` gives each record row's rule (an index into `scenario.bus.rules`),
    `arrivals_by_rule[r]` the arrival times of rule r's deliveries (its matches);
    `requests_by_destination[d]`: when destination d's endpoint received each request, if
    measured there (live); otherwise the attempts' dispatch times stand for them (model).
    Records without `account_wait_s` waited for no account token.
    """
    bus = scenario.bus
    chunk = dict(records)
    chunk["rule"] = np.asarray(rule_of_row, dtype=np.int16)
    chunk = before_horizon(concat([chunk]), scenario.horizon)
    sink = BusAccumulator(scenario, replication)
    for r, times in enumerate(arrivals_by_rule):
        sink.deliveries(replication, r, np.asarray(times, dtype=float))
    sink.attempts(chunk)
    result = sink.finish()
    summary = result.summary
    rule = chunk["rule"].astype(int)
    destination = np.asarray(bus.targets, dtype=int)[rule] if rule.size else rule
    sent = ~np.isin(chunk["outcome"], policy.UNSENT_OUTCOMES)
    frame = result.timeseries
    edges = bin_edges(frame)
    dispatched = [
        chunk["dispatch_at"][sent & (destination == d)] for d in range(len(bus.destinations))
    ]
    requests = list(requests_by_destination) if requests_by_destination is not None else dispatched
    scalars = _scalars(summary, "", chunk)
    series = series_of(frame, edges, np.concatenate(requests) if requests else np.zeros(0))
    by_destination = result.destination_series
    assert by_destination is not None, "a bus's result"
    for d, part in enumerate(bus.destinations):
        prefix = f"destinations.{part.name}."
        scalars.update(_scalars(summary, prefix, _rows(chunk, destination == d)))
        mine = by_destination[by_destination["destination"] == part.name]
        series.update(
            {prefix + k: v for k, v in series_of(mine, edges, np.asarray(requests[d])).items()}
        )
    for r, bus_rule in enumerate(bus.rules):
        scalars.update(_scalars(summary, f"rules.{bus_rule.name}.", _rows(chunk, rule == r)))
    # always (0 waits without a quota): a model with another quota, or none, has the same items
    scalars.update({name: float(summary[name]) for name in ACCOUNT_METRICS})
    return Observation(
        scalars=scalars,
        series=series,
        delay_histogram=result.delay_histogram,
        bin_end_s=frame["time_s"].to_numpy(),
        arrivals=frame["arrivals"].to_numpy(dtype=float),
        successes=frame["successes"].to_numpy(dtype=float),
    )


class BusCollector(Collector):
    """A `Collector` that also keeps, per rule, the arrival times of the events it matched
    (the model reports them through the sink's `deliveries`, `sim.records.Sink`)."""

    def __init__(self, rules: int) -> None:
        super().__init__()
        self.rule_times: list[list[np.ndarray]] = [[] for _ in range(rules)]

    def deliveries(self, replication: int, rule: int, times: np.ndarray) -> None:
        self.rule_times[rule].append(np.asarray(times, dtype=float))


def observe_bus_replication(scenario: Scenario, replication: int) -> Observation:
    """Simulate one model replication of a bus and observe it like the live run (`observe_bus`):
    the model's records carry each attempt's rule (`sim.records.BUS_COLUMNS`)."""
    sink = BusCollector(len(scenario.bus.rules))
    simulate_replication(scenario, replication, sink)
    records = concat(sink.chunks)
    rule = records.get("rule", np.zeros(records["event_id"].size, dtype=np.int16))
    arrivals = [np.concatenate(times) if times else np.empty(0) for times in sink.rule_times]
    return observe_bus(scenario, replication, records, rule.astype(int), arrivals)


def live_rule_arrivals(live: LiveRun) -> list[np.ndarray]:
    """Each rule's deliveries' arrival times before the horizon: when the load generator
    submitted the events that matched it (`LiveRun.submitted_at`, read just before the core
    read its own clock for them)."""
    assert live.matches is not None, "a bus run"
    times = live.submitted_at
    out = []
    for r in range(live.matches.shape[1]):
        chosen = times[live.matches[:, r]]
        out.append(np.sort(chosen[chosen < live.horizon]))
    return out


def live_bus_observations(live: LiveRun, overhead: Overhead) -> tuple[Observation, Observation]:
    """A bus run's raw observation (requests counted where each endpoint received them) and
    its overhead-corrected one (records re-timed on an ideal core, `corrected_bus_records`)."""
    scenario, bus = live.scenario, live.scenario.bus
    lines = bus_lines(live)
    arrivals = live_rule_arrivals(live)
    index = {f"/{d.name}": i for i, d in enumerate(bus.destinations)}
    received: list[list[float]] = [[] for _ in bus.destinations]
    for request in live.requests:
        if request.path in index:
            received[index[request.path]].append(request.arrival_at)
    requests = [np.array(times, dtype=float) for times in received]
    records = dict(live.records)  # the account's wait of each attempt, on the ideal core
    records["account_wait_s"] = ideal_bus_dispatch(bus, lines, live.records)[1]
    raw = observe_bus(scenario, live.replication, records, lines.rule, arrivals, requests)
    ideal = corrected_bus_records(bus, lines, live.records, overhead.client_excess_s)
    corrected = observe_bus(scenario, live.replication, ideal, lines.rule, arrivals)
    return raw, corrected


def live_matches(live: LiveRun) -> pd.DataFrame:
    """The realized matches of a bus run: per event, its index, scheduled and submitted times
    and one 0/1 column per rule (what the rules' patterns selected; a replayable trace)."""
    assert live.matches is not None, "a bus run"
    frame = pd.DataFrame(
        {"event": np.arange(live.scheduled_at.size), "scheduled_s": live.scheduled_at}
    )
    frame["arrival_s"] = live.submitted_at
    for r, rule in enumerate(live.scenario.bus.rules):
        frame[rule.name] = live.matches[:, r].astype(np.int8)
    return frame
