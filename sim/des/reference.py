"""Read this first: the semantics, slowly. One SimPy process per event — the reference model.

This is the model as one would write it from design §3, and the yardstick of the fast engine
(`sim.des.engine`): on the same seed both give the same attempt log (tests/des/test_reference.py),
and `python -m bench ratio` times one against the other.

Same semantics (design S1–S9a), same scenario, same random streams, same `sim.policy` decisions
(called with scalars, as the live core calls them), same attempt records into the same sink —
only the simulation strategy differs:

* the source sleeps until each arrival and starts one process per event;
* an event process takes its token from the policy's bucket (`policy.gcra_schedule`) when it
  becomes ready (FIFO by ready time, S3) and sleeps until its dispatch time — or, if its token
  would come after its maximum age, sleeps until that age and ends (S6);
* at dispatch it draws status, hang and latency from the scenario's `EndpointModel`; with a
  `capacity` the endpoint is a `simpy.Resource` (concurrency) with a bounded wait list, served by
  its own process, so an abandoned request keeps its place (S9a); the client waits for the
  response or its timeout, whichever comes first (S4);
* it classifies, draws a backoff and decides (S5–S9), then sleeps out the wait and goes again.

Every waiting event is a live SimPy process with a pending timeout, so memory grows with the
backlog and time with events, processes and heap operations: the cost the fast model avoids.
Draws are taken exactly as the fast model takes them (see `Draws`), so on the same seed both
give the same attempt log (up to exact-time ties).
Not modelled: `throttle_order: lifo` and incidents that change the endpoint's capacity.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from sim import policy, rng
from sim.endpoint.model import EndpointModel
from sim.records import COLUMNS, Sink
from sim.scenario.arrivals import arrival_windows
from sim.scenario.model import Scenario

FLUSH_ROWS = 1 << 14
Row = tuple[Any, ...]
ROW_COLUMNS = tuple(name for name in COLUMNS if name != "replication")


class Endpoint:
    """The partner endpoint: draws per request, and a `simpy.Resource` when it has capacity."""

    def __init__(self, env: simpy.Environment, scenario: Scenario) -> None:
        self.env = env
        self.model = EndpointModel(scenario.endpoint)
        capacities = {r.capacity for r in self.model.regimes}
        if len(capacities) > 1:
            raise NotImplementedError("baseline: incidents that change capacity are not modelled")
        self.capacity = next(iter(capacities))
        self.server = (
            None
            if self.capacity is None
            else simpy.Resource(env, capacity=self.capacity.concurrency)
        )

    def draw(
        self, now: float, u_status: float, u_hang: float, u_latency: float
    ) -> tuple[int, float, bool]:
        """(status, service seconds, hang) of one request at `now`."""
        status, service, hang = self.model.draw(
            np.array([now]), np.array([u_status]), np.array([u_hang]), np.array([u_latency])
        )
        return int(status[0]), float(service[0]), bool(hang[0])

    def overloaded(self) -> bool:
        """True when every server is busy and every waiting place taken (M/G/c/K, S9a)."""
        assert self.server is not None and self.capacity is not None
        in_system = len(self.server.users) + len(self.server.queue)
        return in_system >= self.capacity.concurrency + self.capacity.queue

    def serve(self, hold_s: float, done: simpy.Event) -> Generator[simpy.Event, Any, None]:
        """Hold a server for `hold_s` once one is free; tell the client when the response leaves."""
        assert self.server is not None
        with self.server.request() as request:
            yield request
            yield self._leave_after(hold_s)
        done.succeed()

    def _leave_after(self, delay_s: float) -> simpy.Event:
        """A timeout that fires before ordinary events at the same instant: a request leaving
        at t frees its place for one arriving at t, as in `sim.endpoint.queue` (a tie whenever a
        hang's client timeout lands on the bucket's dispatch grid)."""
        event = simpy.Event(self.env)
        event._ok, event._value = True, None  # what simpy.Timeout sets, at URGENT priority
        self.env.schedule(event, simpy.events.URGENT, delay_s)
        return event


class Draws:
    """The four uniforms of one attempt, taken exactly as the fast model takes them: counter-based
    streams (`sim.rng.KeyedUniforms`), so a draw is a function of (event, attempt) alone."""

    STREAMS = ("status", "hang", "latency", "backoff")

    def __init__(self, seed: int, replication: int) -> None:
        self.streams = [rng.KeyedUniforms(seed, replication, s) for s in self.STREAMS]

    def attempt(self, event_id: int, attempt: int) -> tuple[float, float, float, float]:
        """(status, hang, latency, backoff) uniforms of this attempt."""
        e, a = np.array([event_id]), np.array([attempt])
        u = [float(stream.at(e, a)[0]) for stream in self.streams]
        return u[0], u[1], u[2], u[3]


class BaselineModel:
    """One replication: a SimPy environment holding one process per event."""

    def __init__(self, scenario: Scenario, replication: int, sink: Sink) -> None:
        self.env = simpy.Environment()
        self.scenario = scenario
        self.replication = replication
        self.sink = sink
        self.horizon = scenario.horizon
        destination = scenario.destination
        if destination.throttle_order != "fifo":
            raise NotImplementedError("baseline: only throttle_order fifo is modelled")
        self.rate = destination.invocation_rate_limit_per_second
        self.burst = destination.burst
        self.full_at = 0.0  # token bucket state (S2): full again from this instant
        self.timeout_s = destination.timeout
        self.retry = scenario.retry_policy
        self.table = policy.outcome_table(self.retry.retry_statuses)
        self.endpoint = Endpoint(self.env, scenario)
        self.draws = Draws(scenario.seed, replication)
        self.rows: list[Row] = []

    def run(self) -> None:
        """Simulate to the horizon (attempts dispatched before it complete) and flush records."""
        self.env.process(self.source())
        self.env.run(until=self.horizon + self.timeout_s + 1.0)
        self._flush()

    def source(self) -> Generator[simpy.Event, Any, None]:
        """Sleep until each arrival and start its event process."""
        arrivals = rng.generator(self.scenario.seed, self.replication, "arrivals")
        event_id = 0
        for _, _, times in arrival_windows(self.scenario.arrivals, arrivals, self.horizon):
            self.sink.arrivals(self.replication, times)
            for arrival_at in times.tolist():
                yield self.env.timeout(arrival_at - self.env.now)
                self.env.process(self.event(event_id, arrival_at))
                event_id += 1

    def event(self, event_id: int, arrival_at: float) -> Generator[simpy.Event, Any, None]:
        """One event's life: wait for a token, attempt, decide, back off, until it ends."""
        env, retry = self.env, self.retry
        deadline = policy.age_deadline(arrival_at, retry)
        retries_done, previous_backoff_s = 0, math.nan
        while True:
            ready_at = env.now
            dispatch_at, full_after = self._token_time(ready_at)
            if policy.expired_waiting(dispatch_at, arrival_at, retry):
                if deadline < self.horizon:  # aged out waiting for its token (S6)
                    yield env.timeout(deadline - env.now)
                    self._expired(event_id, retries_done, arrival_at, ready_at, deadline)
                return
            if dispatch_at >= self.horizon:
                return
            self.full_at = full_after  # take the token
            yield env.timeout(dispatch_at - env.now)
            u_status, u_hang, u_latency, u_backoff = self.draws.attempt(event_id, retries_done + 1)
            status, complete_at = yield from self.attempt(u_status, u_hang, u_latency)
            kind = policy.classify(status, self.table)
            retry_after = float(
                self.endpoint.model.retry_after_s(np.array([status]), np.array([dispatch_at]))[0]
            )
            backoff = policy.backoff_delay(
                retries_done + 1, u_backoff, retry.backoff, previous_backoff_s
            )
            decision = policy.decide(
                kind,
                retries_done,
                arrival_at,
                complete_at,
                backoff,
                retry_after,
                retry,
                self.scenario.dead_letter_queue,
            )
            self._row(
                event_id,
                retries_done + 1,
                arrival_at,
                ready_at,
                dispatch_at,
                complete_at,
                status,
                kind,
                retry_after,
                decision.next_ready_at,
                decision.final,
                decision.reason,
            )
            if decision.final != policy.NO_FINAL:
                return
            yield env.timeout(float(decision.next_ready_at) - env.now)
            retries_done += 1
            previous_backoff_s = float(backoff)

    def attempt(
        self, u_status: float, u_hang: float, u_latency: float
    ) -> Generator[simpy.Event, Any, tuple[int, float]]:
        """Send one request now; return (status, completion time) after response or timeout."""
        env = self.env
        status, service_s, hang = self.endpoint.draw(env.now, u_status, u_hang, u_latency)
        hold_s = self.timeout_s if hang else service_s
        if self.endpoint.server is not None:
            if self.endpoint.overloaded():
                return self.endpoint.capacity.overload_status, env.now  # type: ignore[union-attr]
            done = env.event()
            env.process(self.endpoint.serve(hold_s, done))
            yield done | env.timeout(self.timeout_s)
            if not done.triggered or hang:
                return policy.STATUS_TIMEOUT, env.now
            return status, env.now
        if hang or hold_s > self.timeout_s:
            yield env.timeout(self.timeout_s)
            return policy.STATUS_TIMEOUT, env.now
        yield env.timeout(hold_s)
        return status, env.now

    def _token_time(self, ready_at: float) -> tuple[float, float]:
        """(dispatch time, bucket state after) for an item ready now, without taking the token."""
        dispatch_at, full_after = policy.gcra_schedule(
            self.full_at, self.rate, self.burst, np.array([ready_at])
        )
        return float(dispatch_at[0]), float(full_after[0])

    # --- records ------------------------------------------------------------------------------

    def _row(self, *values: Any) -> None:
        self.rows.append(values)
        if len(self.rows) >= FLUSH_ROWS:
            self._flush()

    def _expired(
        self, event_id: int, retries_done: int, arrival_at: float, ready_at: float, deadline: float
    ) -> None:
        self._row(
            event_id,
            retries_done + 1,
            arrival_at,
            ready_at,
            math.nan,
            deadline,
            policy.STATUS_TIMEOUT,
            policy.EXPIRED,
            math.nan,
            math.nan,
            policy.age_out_final(self.scenario.dead_letter_queue),
            policy.MAXIMUM_EVENT_AGE,
        )

    def _flush(self) -> None:
        if not self.rows:
            return
        columns = list(zip(*self.rows, strict=True))
        chunk = {"replication": np.full(len(self.rows), self.replication, dtype=np.int32)}
        for name, values in zip(ROW_COLUMNS, columns, strict=True):
            chunk[name] = np.asarray(values, dtype=COLUMNS[name])
        self.sink.attempts(chunk)
        self.rows = []


def simulate_replication(scenario: Scenario, replication: int, sink: Sink) -> None:
    """Run one replication of the scenario with the baseline, sending records to `sink`."""
    BaselineModel(scenario, replication, sink).run()
