"""Read this first: the semantics, slowly. One SimPy process per event — the reference model.

This is the model as one would write it from design §3, and the yardstick of the fast engine
(`sim.des.engine`): on the same seed both give the same attempt log (tests/des/test_reference.py),
and `python -m bench ratio` times one against the other.

Same semantics (design S1–S9a), same scenario, same random streams, same `sim.policy` decisions
(called with scalars, as the live core calls them), same attempt records into the same sink —
only the simulation strategy differs:

* the source sleeps until each arrival and starts one process per delivery: per event, for
  each rule that matches it (B2; the single-destination form has one rule matching all);
* a delivery process takes its token from its destination's bucket (`policy.gcra_schedule`)
  when it becomes ready (FIFO by ready time, S3) and sleeps until its dispatch time — or, if its
  token would come after its maximum age, sleeps until that age and ends (S6). Under an account
  quota (B4, B5) it joins a line instead and an *arbiter* process grants the account's tokens
  one at a time, by the rule of `account.order` (`policy.token_from`, `policy.take_token`);
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
On a bus, records carry the bus columns (`sim.records.BUS_COLUMNS`).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from sim import policy, rng
from sim.endpoint.model import EndpointModel
from sim.records import BUS_COLUMNS, COLUMNS, Sink
from sim.scenario.arrivals import arrival_windows
from sim.scenario.model import BusDestination, BusRule, Scenario
from sim.scenario.model import Endpoint as EndpointConfig

FLUSH_ROWS = 1 << 14
Row = tuple[Any, ...]
ROW_COLUMNS = tuple(name for name in COLUMNS if name != "replication")


class Endpoint:
    """The partner endpoint: draws per request, and a `simpy.Resource` when it has capacity."""

    def __init__(self, env: simpy.Environment, endpoint: EndpointConfig) -> None:
        self.env = env
        self.model = EndpointModel(endpoint)
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
        """(status, hang, latency, backoff) uniforms of this attempt (of a delivery, on a bus)."""
        e, a = np.array([event_id]), np.array([attempt])
        u = [float(stream.at(e, a)[0]) for stream in self.streams]
        return u[0], u[1], u[2], u[3]


class Line:
    """One destination: its bucket, endpoint, and (under an account quota) its waiting line."""

    def __init__(self, env: simpy.Environment, destination: BusDestination) -> None:
        if destination.throttle_order != "fifo":
            raise NotImplementedError("baseline: only throttle_order fifo is modelled")
        self.rate = destination.invocation_rate_limit_per_second
        self.burst = destination.burst
        self.full_at = 0.0  # token bucket state (S2): full again from this instant
        self.head_since = 0.0  # when its line's head became head: the last grant (B5)
        self.timeout_s = destination.timeout
        self.endpoint = Endpoint(env, destination.endpoint)
        self.waiting: list[Delivery] = []  # in line order (B5 after_destination)

    def token_time(self, ready_at: float) -> tuple[float, float]:
        """(dispatch time, bucket state after) for an item ready now, without taking the token."""
        dispatch_at, full_after = policy.gcra_schedule(
            self.full_at, self.rate, self.burst, np.array([ready_at])
        )
        return float(dispatch_at[0]), float(full_after[0])


class Rule:
    """One rule target: its policy, outcome table and DLQ."""

    def __init__(self, rule: BusRule, target: int) -> None:
        self.match_fraction = rule.match_fraction
        self.retry = rule.retry_policy
        self.table = policy.outcome_table(self.retry.retry_statuses)
        self.dead_letter_queue = rule.dead_letter_queue
        self.target = target


class Delivery:
    """One (event, rule) pair on its way; `decided` fires when the account has decided it."""

    def __init__(self, env: simpy.Environment, delivery_id: int, event_id: int, rule: int,
                 arrival_at: float, deadline: float) -> None:  # fmt: skip
        self.id, self.event_id, self.rule = delivery_id, event_id, rule
        self.arrival_at, self.deadline = arrival_at, deadline
        self.ready_at = arrival_at
        self.order = 0  # order of joining the account's line (set as it joins), for ties
        self.retries_done = 0
        self.decided = env.event()


class BaselineModel:
    """One replication: a SimPy environment holding one process per delivery (per event, for a
    single destination), and under an account quota one arbiter process for the account."""

    def __init__(self, scenario: Scenario, replication: int, sink: Sink) -> None:
        self.env = simpy.Environment()
        self.scenario = scenario
        self.replication = replication
        self.sink = sink
        self.horizon = scenario.horizon
        bus = scenario.bus
        self.bus_form = scenario.is_bus
        self.lines = [Line(self.env, d) for d in bus.destinations]
        self.rules = [Rule(r, t) for r, t in zip(bus.rules, bus.targets, strict=True)]
        self.account = bus.account
        self.account_full_at = 0.0
        self.account_waiting: list[Delivery] = []  # B5 before_destination: one line, ready order
        self.changed: simpy.Event | None = None  # fired when a delivery joins a line
        self.joined = 0
        self.draws = Draws(scenario.seed, replication)
        self.matches = rng.KeyedUniforms(scenario.seed, replication, "match")
        self.rows: list[Row] = []

    @property
    def limited(self) -> bool:
        return self.account.invocation_limit_per_second is not None

    def run(self) -> None:
        """Simulate to the horizon (attempts dispatched before it complete) and flush records."""
        self.env.process(self.source())
        if self.limited:
            after = self.account.order == "after_destination"
            self.env.process(self.arbiter_after() if after else self.arbiter_before())
        longest = max(line.timeout_s for line in self.lines)
        self.env.run(until=self.horizon + longest + 1.0)
        for delivery in [*self.account_waiting, *(d for ln in self.lines for d in ln.waiting)]:
            if delivery.deadline < self.horizon:  # still waiting when its age ran out (S6)
                self._expired(delivery, delivery.deadline)
        self._flush()

    def source(self) -> Generator[simpy.Event, Any, None]:
        """Sleep until each arrival and start a process for each rule it matches (B2)."""
        arrivals = rng.generator(self.scenario.seed, self.replication, "arrivals")
        deliveries = getattr(self.sink, "deliveries", None)
        n_rules, event_id = len(self.rules), 0
        for _, _, times in arrival_windows(self.scenario.arrivals, arrivals, self.horizon):
            self.sink.arrivals(self.replication, times)
            events = np.arange(event_id, event_id + times.size)
            matched = []
            for r, rule in enumerate(self.rules):
                draw = self.matches.at(events, np.full(times.size, r + 1))
                matched.append(policy.matches(draw, rule.match_fraction))
                if deliveries is not None and self.bus_form:
                    deliveries(self.replication, r, times[matched[-1]])
            for i, arrival_at in enumerate(times.tolist()):
                yield self.env.timeout(arrival_at - self.env.now)
                for r, rule in enumerate(self.rules):
                    if matched[r][i]:
                        delivery = Delivery(
                            self.env, event_id * n_rules + r, event_id, r, arrival_at,
                            policy.age_deadline(arrival_at, rule.retry),
                        )  # fmt: skip
                        self.env.process(self.deliver(delivery))
                event_id += 1

    # --- one delivery -------------------------------------------------------------------------

    def deliver(self, d: Delivery) -> Generator[simpy.Event, Any, None]:
        """One delivery's life: wait for its tokens, attempt, decide, back off, until it ends."""
        env, rule = self.env, self.rules[d.rule]
        line = self.lines[rule.target]
        previous_backoff_s = math.nan
        while True:
            retries_done = d.retries_done
            d.ready_at = env.now
            token = yield from self.tokens(d, line)
            if token is None:
                return
            dispatch_at, account_wait_s = token
            u_status, u_hang, u_latency, u_backoff = self.draws.attempt(d.id, retries_done + 1)
            status, complete_at = yield from self.attempt(line, u_status, u_hang, u_latency)
            kind = policy.classify(status, rule.table)
            retry_after = float(
                line.endpoint.model.retry_after_s(np.array([status]), np.array([dispatch_at]))[0]
            )
            backoff = policy.backoff_delay(
                retries_done + 1, u_backoff, rule.retry.backoff, previous_backoff_s
            )
            decision = policy.decide(
                kind, retries_done, d.arrival_at, complete_at, backoff, retry_after,
                rule.retry, rule.dead_letter_queue,
            )  # fmt: skip
            self._row(
                d, retries_done + 1, dispatch_at, complete_at, status, kind, retry_after,
                decision.next_ready_at, decision.final, decision.reason, account_wait_s,
            )  # fmt: skip
            if decision.final != policy.NO_FINAL:
                return
            yield env.timeout(float(decision.next_ready_at) - env.now)
            d.retries_done += 1
            previous_backoff_s = float(backoff)
            d.decided = env.event()

    def tokens(
        self, d: Delivery, line: Line
    ) -> Generator[simpy.Event, Any, tuple[float, float] | None]:
        """Wait for the delivery's tokens; (dispatch time, seconds waited for the account), or
        None when it aged out waiting (its record written) or would leave after the horizon."""
        env = self.env
        if not self.limited:  # its destination's token, taken in ready order (S2, S3)
            return (yield from self._destination_token(d, line, env.now, 0.0))
        self.joined += 1
        d.order = self.joined
        waiting = (
            line.waiting if self.account.order == "after_destination" else self.account_waiting
        )
        waiting.append(d)
        self._signal()
        decision = yield d.decided
        if decision[0] == "expired":
            yield from self._age_out(d)
            return None
        if self.account.order == "after_destination":
            _, grant_at, eligible_at = decision
            return grant_at, grant_at - eligible_at
        _, grant_at = decision  # before_destination: then its destination's token
        return (yield from self._destination_token(d, line, grant_at, grant_at - d.ready_at))

    def _destination_token(
        self, d: Delivery, line: Line, ready_at: float, account_wait_s: float
    ) -> Generator[simpy.Event, Any, tuple[float, float] | None]:
        dispatch_at, full_after = line.token_time(ready_at)
        if policy.aged_out(dispatch_at, d.deadline):
            yield from self._age_out(d)
            return None
        if dispatch_at >= self.horizon:
            return None
        line.full_at = full_after  # take the token
        yield self.env.timeout(dispatch_at - self.env.now)
        return dispatch_at, account_wait_s

    def _age_out(self, d: Delivery) -> Generator[simpy.Event, Any, None]:
        """Aged out waiting for a token (S6): ends at its deadline, recorded if before the horizon."""
        if d.deadline < self.horizon:
            yield self.env.timeout(max(0.0, d.deadline - self.env.now))
            self._expired(d, d.deadline)

    def attempt(
        self, line: Line, u_status: float, u_hang: float, u_latency: float
    ) -> Generator[simpy.Event, Any, tuple[int, float]]:
        """Send one request now; return (status, completion time) after response or timeout."""
        env, endpoint, timeout_s = self.env, line.endpoint, line.timeout_s
        status, service_s, hang = endpoint.draw(env.now, u_status, u_hang, u_latency)
        hold_s = timeout_s if hang else service_s
        if endpoint.server is not None:
            if endpoint.overloaded():
                return endpoint.capacity.overload_status, env.now  # type: ignore[union-attr]
            done = env.event()
            env.process(endpoint.serve(hold_s, done))
            yield done | env.timeout(timeout_s)
            if not done.triggered or hang:
                return policy.STATUS_TIMEOUT, env.now
            return status, env.now
        if hang or hold_s > timeout_s:
            yield env.timeout(timeout_s)
            return policy.STATUS_TIMEOUT, env.now
        yield env.timeout(hold_s)
        return status, env.now

    # --- the account (B4, B5) -----------------------------------------------------------------

    def _signal(self) -> None:
        if self.changed is not None and not self.changed.triggered:
            self.changed.succeed()

    def _account_token_from(self) -> float:
        return policy.token_from(
            self.account_full_at, self.account.invocation_limit_per_second, self.account.burst
        )

    def _take_account_token(self, at: float) -> None:
        limit = self.account.invocation_limit_per_second
        self.account_full_at = policy.take_token(self.account_full_at, at, limit)

    def arbiter_after(self) -> Generator[simpy.Event, Any, None]:
        """B5 after_destination: grant the account's next token to the line head that became
        eligible first (its destination holding a token), taking a token from both buckets."""
        env = self.env
        while True:
            best: tuple[float, int] | None = None
            for index, line in enumerate(self.lines):
                if line.waiting:
                    head = line.waiting[0]
                    token = policy.token_from(line.full_at, line.rate, line.burst)
                    eligible = policy.head_eligible_at(head.ready_at, line.head_since, token)
                    if best is None or policy.grant_key(eligible, index) < best:
                        best = policy.grant_key(eligible, index)
            if best is None:
                yield from self._wait(None)
                continue
            eligible, index = best
            line = self.lines[index]
            head = line.waiting[0]
            grant = max(eligible, self._account_token_from())
            if policy.aged_out(grant, head.deadline):
                line.waiting.pop(0)
                head.decided.succeed(("expired",))
                continue
            if grant >= self.horizon:
                return
            if grant > env.now and not (yield from self._wait(grant)):
                continue  # a delivery joined meanwhile: decide again
            line.waiting.pop(0)
            line.full_at = policy.take_token(line.full_at, grant, line.rate)
            line.head_since = grant
            self._take_account_token(grant)
            head.decided.succeed(("grant", grant, eligible))

    def arbiter_before(self) -> Generator[simpy.Event, Any, None]:
        """B5 before_destination: one line for the whole account, oldest ready first (ties: the
        lower destination), each delivery taking an account token before its destination's."""
        env = self.env
        while True:
            if not self.account_waiting:
                yield from self._wait(None)
                continue
            head = min(
                self.account_waiting,
                key=lambda d: policy.before_key(d.ready_at, self.rules[d.rule].target, d.order),
            )
            grant = max(head.ready_at, self._account_token_from())
            if policy.aged_out(grant, head.deadline):
                self.account_waiting.remove(head)
                head.decided.succeed(("expired",))
                continue
            if grant >= self.horizon:
                return
            if grant > env.now and not (yield from self._wait(grant)):
                continue
            self.account_waiting.remove(head)
            self._take_account_token(grant)
            head.decided.succeed(("grant", grant))

    def _wait(self, until: float | None) -> Generator[simpy.Event, Any, bool]:
        """Sleep until `until` (None: for ever) or until a delivery joins a line; True if
        nothing joined (the decision taken before sleeping stands)."""
        self.changed = self.env.event()
        if until is None:
            yield self.changed
            return False
        yield self.env.timeout(until - self.env.now) | self.changed
        return not self.changed.triggered

    # --- records ------------------------------------------------------------------------------

    def _row(self, d: Delivery, attempt: int, *values: Any) -> None:
        *columns, account_wait_s = values
        row = (d.event_id, attempt, d.arrival_at, d.ready_at, *columns)
        self.rows.append((*row, d.rule, account_wait_s))
        if len(self.rows) >= FLUSH_ROWS:
            self._flush()

    def _expired(self, d: Delivery, deadline: float) -> None:
        final = policy.age_out_final(self.rules[d.rule].dead_letter_queue)
        self._row(
            d, d.retries_done + 1, math.nan, deadline, policy.STATUS_TIMEOUT, policy.EXPIRED,
            math.nan, math.nan, final, policy.MAXIMUM_EVENT_AGE, 0.0,
        )  # fmt: skip

    def _flush(self) -> None:
        if not self.rows:
            return
        columns = list(zip(*self.rows, strict=True))
        chunk = {"replication": np.full(len(self.rows), self.replication, dtype=np.int32)}
        names = (*ROW_COLUMNS, *BUS_COLUMNS)
        for name, values in zip(names, columns, strict=True):
            chunk[name] = np.asarray(values, dtype={**COLUMNS, **BUS_COLUMNS}[name])
        if not self.bus_form:
            for name in BUS_COLUMNS:
                del chunk[name]
        self.sink.attempts(chunk)
        self.rows = []


def simulate_replication(scenario: Scenario, replication: int, sink: Sink) -> None:
    """Run one replication of the scenario with the baseline, sending records to `sink`."""
    BaselineModel(scenario, replication, sink).run()
