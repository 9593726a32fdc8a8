"""The SimPy model of delivery semantics S1-S9 and the bus (B1-B6), built so cost grows with
attempts, not backlog.

SimPy processes share one environment:

* `source` releases the scenario's arrivals window by window (S1, B1) and, on a bus, splits
  each window into the deliveries every destination's rules matched (`sim.des.matching`);
* each destination is a `sim.des.lane.Lane`: its line of waiting deliveries, served through its
  token bucket to its endpoint, decided through `sim.policy`. Without an account quota the
  destinations are independent, one process each; under one (B4, B5) a single process
  schedules every destination's block together (`sim.des.joint`).

Waiting deliveries are never SimPy processes (see `sim.des.lane`). Every attempt is emitted as a
record row; on a bus each row also says its rule and how long it waited for the account.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import simpy

from sim.des.joint import Joint
from sim.des.lane import FIRST_BLOCK, MAX_BLOCK, MIN_BLOCK, Lane
from sim.des.matching import Matcher
from sim.des.memory import tune_allocation
from sim.des.rules import LaneRules
from sim.errors import InputError
from sim.records import BUS_COLUMNS, COLUMNS, Chunk, Sink, column
from sim.rng import generator
from sim.scenario.arrivals import arrival_windows
from sim.scenario.model import Scenario

__all__ = ["FIRST_BLOCK", "MAX_BLOCK", "MIN_BLOCK", "Model", "simulate_replication"]

FLUSH_ROWS = 1 << 16
LOOK_AHEAD = 4 * MAX_BLOCK
"""Most arrivals released ahead of simulated time, over all destinations of a bus."""


def unsupported(scenario: Scenario) -> InputError | None:
    """Why the model cannot run a scenario, as the error to raise (None: it can)."""
    bus = scenario.bus
    if bus.account.invocation_limit_per_second is None:
        return None
    for destination in bus.destinations:
        if destination.throttle_order == "lifo":
            return InputError(
                scenario.source,
                f"destinations.{destination.name}.throttle_order",
                "lifo under an account quota is not modelled yet (docs/bus.md); use fifo, or "
                "set account.invocation_limit_per_second: null",
            )
    return None


class Model:
    """One replication of a scenario: the SimPy environment, its processes and their state."""

    def __init__(
        self,
        scenario: Scenario,
        replication: int,
        sink: Sink,
        progress: Callable[[float], None] | None = None,
        block_sizes: tuple[int, int, int] = (MIN_BLOCK, FIRST_BLOCK, MAX_BLOCK),
    ) -> None:
        """`block_sizes` (smallest, first, largest) bound the items decided at once; they change
        the cost, never the result (tests run the model one item at a time to show it)."""
        why = unsupported(scenario)
        if why is not None:
            raise why
        self.env = simpy.Environment()
        self.scenario = scenario
        self.replication = replication
        self.sink = sink
        self.progress = progress
        self.horizon = scenario.horizon
        bus = scenario.bus
        self.bus_form = scenario.is_bus
        self.n_rules = len(bus.rules)
        self.lanes = []
        for d, destination in enumerate(bus.destinations):
            mine = [i for i, target in enumerate(bus.targets) if target == d]
            rules = LaneRules(
                mine,
                [bus.rules[i].retry_policy for i in mine],
                [bus.rules[i].dead_letter_queue for i in mine],
                self.n_rules,
            )
            self.lanes.append(
                Lane(
                    destination,
                    rules,
                    scenario.seed,
                    replication,
                    self.horizon,
                    self._push,
                    block_sizes,
                )
            )
        self.matcher = Matcher(bus, scenario.seed, replication) if self.bus_form else None
        self._deliveries = getattr(sink, "deliveries", None)  # a bus sink counts them per rule
        self.joint = None
        if bus.account.invocation_limit_per_second is not None:
            self.joint = Joint(self.lanes, bus.account, self.horizon)
        self.known_until = 0.0  # arrivals before this instant have been released
        self._arrived = 0  # events released so far (the next one's id)
        rng = generator(scenario.seed, replication, "arrivals")
        self._windows = arrival_windows(scenario.arrivals, rng, self.horizon)
        self._upcoming: tuple[float, float, np.ndarray] | None = next(self._windows, None)
        self.wakeups: list[simpy.Event | None] = [None] * len(self.lanes)
        self._out: list[Chunk] = []
        self._out_rows = 0

    @property
    def block(self) -> int:
        """The first destination's current block size (items decided at once)."""
        return self.lanes[0].block

    # --- SimPy processes ------------------------------------------------------------------

    def run(self) -> None:
        """Simulate to the horizon and flush every record to the sink."""
        self.env.process(self.source())
        if self.joint is None:
            for index, lane in enumerate(self.lanes):
                self.env.process(self.destination(index, lane))
        else:
            self.env.process(self.account())
        if self.progress is not None:
            self.env.process(self.ticker())
        self.env.run()
        for lane in self.lanes:
            lane.age_out_leftovers()
        self._flush()

    @property
    def source_done(self) -> bool:
        """Every arrival window has been released."""
        return self._upcoming is None

    def source(self):  # type: ignore[no-untyped-def]
        """Release arrivals window by window; wake the destinations when they wait for work."""
        while self._upcoming is not None:
            start = self._upcoming[0]
            if start > self.env.now:
                yield self.env.timeout(start - self.env.now)
                continue  # a destination may have released it (and more) meanwhile
            self._release()
            self._wake()
        self._wake()

    def _release(self) -> bool:
        """Release the next arrival window to the lines and the sink; False if none is left."""
        if self._upcoming is None:
            return False
        _, end, times = self._upcoming
        self.sink.arrivals(self.replication, times)
        if self.matcher is None:
            self.lanes[0].arrivals.extend(times)
        else:
            matched = self.matcher.split(self._arrived, times)
            for lane, (lane_times, ids) in zip(self.lanes, matched.lanes, strict=True):
                lane.arrivals.extend(lane_times, ids)
            if self._deliveries is not None:
                for rule, rule_times in enumerate(matched.rules):
                    self._deliveries(self.replication, rule, rule_times)
        self._arrived += times.size
        self.known_until = end
        self._upcoming = next(self._windows, None)
        return True

    def _release_for(self, lane: Lane) -> None:
        """Release arrival windows ahead of simulated time until a block's worth waits for
        `lane` (or none are left, or the look-ahead is full)."""
        if len(self.lanes) == 1:
            while len(lane.arrivals) < lane.block and self._release():
                pass
            return
        while (
            len(lane.arrivals) < lane.block
            and sum(len(other.arrivals) for other in self.lanes) < LOOK_AHEAD
            and self._release()
        ):
            pass

    def destination(self, index: int, lane: Lane):  # type: ignore[no-untyped-def]
        """Serve one destination's deliveries block by block, sleeping until each block's last
        dispatch.

        Arrival windows are released ahead of simulated time until a block's worth of arrivals
        waits (or none are left): at low rates a block then spans many windows. Which items are
        visible changes the cost only, never the result (a block decides exactly what
        one-at-a-time service would).
        """
        while True:
            self._release_for(lane)
            last = lane.step(self.known_until)
            if last is None:  # nothing ready before the release frontier
                if self.source_done:
                    return
                self.wakeups[index] = self.env.event()
                yield self.wakeups[index]
            elif last == np.inf:  # the next dispatch would be past the horizon
                return
            elif last > self.env.now:
                yield self.env.timeout(last - self.env.now)

    def account(self):  # type: ignore[no-untyped-def]
        """Serve every destination under the account quota, one joint block at a time."""
        assert self.joint is not None
        while True:
            for lane in self.lanes:
                self._release_for(lane)
            last = self.joint.step(self.known_until)
            if last is None:  # nothing that can be scheduled before the release frontier
                if self.source_done:
                    return
                if not self._release():
                    self.wakeups[0] = self.env.event()
                    yield self.wakeups[0]
            elif last == np.inf:
                return
            elif last > self.env.now:
                yield self.env.timeout(last - self.env.now)

    def ticker(self):  # type: ignore[no-untyped-def]
        """Report simulated progress every 1 % of the horizon."""
        step = self.horizon / 100
        while self.env.now + step <= self.horizon:
            yield self.env.timeout(step)
            self.progress(self.env.now)  # type: ignore[misc]

    def _wake(self) -> None:
        for wakeup in self.wakeups:
            if wakeup is not None and not wakeup.triggered:
                wakeup.succeed()

    # --- records --------------------------------------------------------------------------

    def _push(self, chunk: Chunk) -> None:
        out: Chunk = {name: np.asarray(chunk[name], dtype=dt) for name, dt in COLUMNS.items()}
        if self.bus_form:
            delivery = out["event_id"]
            out["event_id"] = delivery // self.n_rules
            out["rule"] = (delivery % self.n_rules).astype(BUS_COLUMNS["rule"])
            out["account_wait_s"] = np.asarray(column(chunk, "account_wait_s"), float)
        self._out.append(out)
        self._out_rows += out["event_id"].size
        if self._out_rows >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._out:
            merged = {name: np.concatenate([c[name] for c in self._out]) for name in self._out[0]}
            self.sink.attempts(merged)
        self._out, self._out_rows = [], 0


def simulate_replication(
    scenario: Scenario,
    replication: int,
    sink: Sink,
    progress: Callable[[float], None] | None = None,
) -> None:
    """Run one replication of the scenario, sending arrivals and attempt records to `sink`."""
    tune_allocation()
    Model(scenario, replication, sink, progress).run()
