"""What validation compares for a bus: the whole bus, each destination and each rule.

A bus run's observation holds, under the single form's names, the same items for all its
deliveries together (so the report's plots and tables read as for one destination), and
prefixed copies for each part:

* `destinations.NAME.<metric>` — every scalar metric, and the series per time bin
  (`destinations.NAME.backlog[10s]`, ...), over the deliveries to that destination: its
  bucket's backlog, its retry pool, the requests its endpoint received;
* `rules.NAME.<metric>` — every scalar metric over that rule's deliveries: its matches
  (`events_arrived`), attempts by outcome, retries, DLQ by reason, drops, delays.

Each part is summarized by the shared results code (`observe`, hence
`sim.results.accumulator.Accumulator`) on its own records and arrivals, with a
single-destination view of the scenario (`single_view`) for the settings the accumulator reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sim.des import simulate_replication
from sim.records import Chunk, concat
from sim.scenario.model import Destination, Scenario
from sim.validation.bus_timing import corrected_bus_records
from sim.validation.live import LiveRun
from sim.validation.observe import Collector, Observation, observe
from sim.validation.overhead import Overhead, bus_lines


def single_view(scenario: Scenario, destination: int = 0) -> Scenario:
    """A single-destination scenario with the bus's horizon, bins and SLO and one destination
    (with its endpoint and its first rule's retry policy): what an accumulator needs to read."""
    bus = scenario.bus
    chosen = bus.destinations[destination]
    rule = next(r for r in bus.rules if r.target == chosen.name)
    return Scenario.model_validate(
        {
            "name": scenario.name,
            "horizon": scenario.horizon,
            "seed": scenario.seed,
            "arrivals": scenario.arrivals,
            "destination": {name: getattr(chosen, name) for name in Destination.model_fields},
            "endpoint": chosen.endpoint,
            "retry_policy": rule.retry_policy,
            "dead_letter_queue": rule.dead_letter_queue,
            "sample_every": scenario.sample_every,
            "slo": scenario.slo,
        }
    )


def _rows(records: Chunk, keep: np.ndarray) -> Chunk:
    return {name: column[keep] for name, column in records.items()}


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
    """
    bus = scenario.bus
    targets = np.array(bus.targets, dtype=int)
    destination_of_row = targets[rule_of_row] if rule_of_row.size else rule_of_row
    requests_all = (
        None if requests_by_destination is None else np.concatenate(requests_by_destination)
    )
    everything = observe(
        single_view(scenario), replication, arrivals_by_rule, [records], requests_all
    )
    scalars, series = dict(everything.scalars), dict(everything.series)
    for d, destination in enumerate(bus.destinations):
        rules = np.flatnonzero(targets == d)
        part = observe(
            single_view(scenario, d),
            replication,
            [arrivals_by_rule[int(r)] for r in rules],
            [_rows(records, destination_of_row == d)],
            None if requests_by_destination is None else requests_by_destination[d],
        )
        prefix = f"destinations.{destination.name}."
        scalars.update({prefix + name: value for name, value in part.scalars.items()})
        series.update({prefix + name: values for name, values in part.series.items()})
    for r, rule in enumerate(bus.rules):
        part = observe(
            single_view(scenario, int(targets[r])),
            replication,
            [arrivals_by_rule[r]],
            [_rows(records, rule_of_row == r)],
        )
        scalars.update({f"rules.{rule.name}.{name}": value for name, value in part.scalars.items()})
    return Observation(
        scalars=scalars,
        series=series,
        delay_histogram=everything.delay_histogram,
        bin_end_s=everything.bin_end_s,
        arrivals=everything.arrivals,
        successes=everything.successes,
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
    raw = observe_bus(scenario, live.replication, live.records, lines.rule, arrivals, requests)
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
