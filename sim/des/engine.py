"""The SimPy model of delivery semantics S1–S9, built so cost grows with attempts, not backlog.

Two SimPy processes share one environment:

* `source` releases the scenario's arrivals window by window (design S1);
* `destination` serves the waiting deliveries oldest-ready first through the token bucket
  (S2, S3), sends them to the endpoint (S4, S9a), classifies the responses (S5) and decides
  retries, Retry-After waits, age limits and dead-lettering (S6–S9) — all through `sim.policy`.

Waiting deliveries are never SimPy processes. The destination takes a *block* of the earliest
waiting items, computes their token times in closed form, draws their responses in one
vectorized call and decides them together; it keeps the longest prefix that no retry born
inside the block could have overtaken (a retry joins the FIFO by its ready time), then sleeps
in simulated time until the block's last dispatch. Every attempt is emitted as a record row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import simpy

from sim import policy
from sim.des.items import Items, concat
from sim.des.queues import ArrivalBuffer, FifoQueue, RetryPool
from sim.des.selection import (
    Block,
    FifoSelector,
    Finished,
    LifoSelector,
    Selector,
    carried_over,
    identity,
)
from sim.des.server import respond
from sim.endpoint.model import EndpointModel
from sim.endpoint.queue import ServerQueue
from sim.records import COLUMNS, Chunk, Sink
from sim.rng import KeyedUniforms, generator, keyed_draws
from sim.scenario.arrivals import arrival_windows
from sim.scenario.model import Scenario

MIN_BLOCK, FIRST_BLOCK, MAX_BLOCK = 64, 1024, 1 << 17
"""Items per block: halved after a block is cut short, doubled after one is kept whole."""
FLUSH_ROWS = 1 << 16
MAX_GUESSED_GENERATIONS = 4
"""How many generations of retries born inside a block are guessed ahead (`_with_descendants`)."""


@dataclass
class Decided:
    """A block's attempts, decided: which items were sent, their record rows, their retries."""

    block: Block  # the proposal decided
    live: np.ndarray  # block positions of the items sent (not aged out)
    rows: dict[str, np.ndarray]  # record columns and draws, one entry per sent item
    children: Items  # the retries they produced
    parents: np.ndarray  # block position of each child's attempt


def _as_set(items: Items) -> set[int]:
    return set(identity(items).tolist())


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
        self.env = simpy.Environment()
        self.scenario = scenario
        self.replication = replication
        self.sink = sink
        self.progress = progress
        self.horizon = scenario.horizon
        destination = scenario.destination
        self.rate = destination.invocation_rate_limit_per_second
        self.capacity = destination.burst
        self.timeout = destination.timeout
        self.full_at = 0.0  # token bucket state: full from this instant on (S2)
        self.policy = scenario.retry_policy
        self.table = policy.outcome_table(self.policy.retry_statuses)
        self.endpoint = EndpointModel(scenario.endpoint)
        self.server = ServerQueue() if self.endpoint.has_capacity else None
        self.arrival_buffer = ArrivalBuffer()
        self.queue = FifoQueue(self.arrival_buffer, RetryPool())
        kind = LifoSelector if destination.throttle_order == "lifo" else FifoSelector
        self.selector: Selector = kind(
            self.queue, self.rate, self.capacity, self.policy, self.horizon
        )
        self.draws = {
            name: KeyedUniforms(scenario.seed, replication, name)
            for name in ("status", "hang", "latency", "backoff")
        }
        self._server_after: ServerQueue | None = None
        self.known_until = 0.0  # arrivals before this instant have been released
        rng = generator(scenario.seed, replication, "arrivals")
        self._windows = arrival_windows(scenario.arrivals, rng, self.horizon)
        self._upcoming: tuple[float, float, np.ndarray] | None = next(self._windows, None)
        self.wakeup: simpy.Event | None = None
        self.min_block, self.block, self.max_block = block_sizes
        self._out: list[Chunk] = []
        self._out_rows = 0

    # --- SimPy processes ------------------------------------------------------------------

    def run(self) -> None:
        """Simulate to the horizon and flush every record to the sink."""
        self.env.process(self.source())
        self.env.process(self.destination())
        if self.progress is not None:
            self.env.process(self.ticker())
        self.env.run()
        self._age_out_leftovers()
        self._flush()

    @property
    def source_done(self) -> bool:
        """Every arrival window has been released."""
        return self._upcoming is None

    def source(self):  # type: ignore[no-untyped-def]
        """Release arrivals window by window; wake the destination when it waits for work."""
        while self._upcoming is not None:
            start = self._upcoming[0]
            if start > self.env.now:
                yield self.env.timeout(start - self.env.now)
                continue  # the destination may have released it (and more) meanwhile
            self._release()
            self._wake()
        self._wake()

    def _release(self) -> bool:
        """Release the next arrival window to the queue and the sink; False if none is left."""
        if self._upcoming is None:
            return False
        _, end, times = self._upcoming
        self.arrival_buffer.extend(times)
        self.sink.arrivals(self.replication, times)
        self.known_until = end
        self._upcoming = next(self._windows, None)
        return True

    def destination(self):  # type: ignore[no-untyped-def]
        """Serve waiting deliveries block by block, sleeping until each block's last dispatch.

        Arrival windows are released ahead of simulated time until a block's worth of arrivals
        waits (or none are left): at low rates a block then spans many windows. Which items are
        visible changes the cost only, never the result (a block decides exactly what
        one-at-a-time service would).
        """
        while True:
            while len(self.arrival_buffer) < self.block and self._release():
                pass
            last = self.step(self.known_until)
            if last is None:  # nothing ready before the release frontier
                if self.source_done:
                    return
                self.wakeup = self.env.event()
                yield self.wakeup
            elif last == np.inf:  # the next dispatch would be past the horizon
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
        if self.wakeup is not None and not self.wakeup.triggered:
            self.wakeup.succeed()

    # --- one block of deliveries ----------------------------------------------------------

    def step(self, before: float) -> float | None:
        """Serve one block of items ready before `before`.

        Returns the last time the block reached (dispatch or age-out), None when nothing is
        ready, inf when the next item could only leave after the horizon.
        """
        proposed = self.selector.select(self.block, before, self.full_at)
        if proposed is None:
            return None
        if isinstance(proposed, Finished):
            return np.inf
        block, decided = proposed, self._decide(proposed, None)
        selector = self.selector
        for _ in range(selector.rounds):
            inside = block.born_inside(decided.children)
            if block.holds(inside):
                break
            if self.server is None:
                inside = self._with_descendants(block, inside)
            rescheduled = selector.reschedule(block, inside, self.full_at)
            if isinstance(rescheduled, Finished):  # the merged retries push it past the horizon
                break
            block, decided = rescheduled, self._decide(rescheduled, decided)
        k = block.settled(decided.children, decided.parents)
        self._commit(block, decided, k)
        self._resize_block(cut=k < block.items.size)
        deadline = policy.age_deadline(block.items.arrival_at[:k], self.policy)
        reached = np.where(block.expired[:k], deadline, block.dispatch_at[:k])
        return float(reached.max())

    def _with_descendants(self, block: Block, inside: Items) -> Items:
        """`inside` plus a guess of the retries its newly born items will have inside the block.

        A retry merged into a block may fail again and give birth to another inside it, which
        would take one more rescheduling to find. Guessing each new retry's token time (its ready
        time where the bucket is not binding there, else the token time of the item it lands
        before) and deciding it ahead, the descendants are usually merged at once. Only a guess:
        the block is then decided for real, and `holds` accepts the merge only if the retries it
        holds are exactly those born inside it."""
        merged = set(identity(block.items[~block.from_queue]).tolist())
        newly = ~np.isin(identity(inside), list(merged)) if merged else np.ones(inside.size, bool)
        born, parts = inside[newly], [inside]
        ready, dispatch = block.items.ready_at, block.dispatch_at
        for _ in range(MAX_GUESSED_GENERATIONS):
            if not born.size:
                break
            at = np.minimum(np.searchsorted(ready, born.ready_at, side="right"), ready.size - 1)
            free = dispatch[at] <= ready[at]  # the bucket let that item go at once (NaN: no)
            guess = np.where(free, born.ready_at, np.fmax(born.ready_at, dispatch[at]))
            rows = self._attempt(born, guess)
            waiting = (rows["final"] == policy.NO_FINAL) & (rows["next_ready_at"] < ready[-1])
            born = Items(
                rows["next_ready_at"][waiting],
                born.arrival_at[waiting],
                born.event_id[waiting],
                (born.retries_done[waiting] + 1).astype(np.int16),
                rows["backoff_s"][waiting],
            )
            parts.append(born)
        return concat(parts)

    def _decide(self, block: Block, previous: Decided | None) -> Decided:
        """Outcomes of the block's attempts; those unchanged since `previous` are reused."""
        live = np.flatnonzero(~block.expired)
        if live.size == block.items.size:  # nothing aged out: no copy
            items, dispatch_at = block.items, block.dispatch_at
        else:
            items, dispatch_at = block.items[live], block.dispatch_at[live]
        match = None
        if previous is not None and self.server is None and previous.live.size:
            match = self._reusable(block, live, dispatch_at, previous)
        if match is None or previous is None:
            rows = self._attempt(items, dispatch_at)
        else:
            fresh = match < 0
            new = self._attempt(items[fresh], dispatch_at[fresh])
            rows = {}
            for name, column in previous.rows.items():  # one gather, then the few fresh rows
                rows[name] = column[match]
                rows[name][fresh] = new[name]
        waiting = rows["final"] == policy.NO_FINAL
        children = Items(
            rows["next_ready_at"][waiting],
            items.arrival_at[waiting],
            items.event_id[waiting],
            (items.retries_done[waiting] + 1).astype(np.int16),
            rows["backoff_s"][waiting],
        )
        return Decided(block, live, rows, children, live[waiting])

    @staticmethod
    def _reusable(
        block: Block, live: np.ndarray, dispatch_at: np.ndarray, previous: Decided
    ) -> np.ndarray:
        """For each attempt of `block`, the row of `previous` holding the same attempt at the same
        dispatch time (its draws and decision still hold), or -1 where it must be decided anew."""
        to_row = np.full(previous.block.items.size, -1, dtype=np.int64)
        to_row[previous.live] = np.arange(previous.live.size)
        before = carried_over(block, previous.block)[live]
        match = np.where(before >= 0, to_row[np.maximum(before, 0)], -1)
        seen = match >= 0
        seen[seen] = previous.rows["dispatch_at"][match[seen]] == dispatch_at[seen]
        return np.where(seen, match, -1)

    def _attempt(self, items: Items, dispatch_at: np.ndarray) -> dict[str, np.ndarray]:
        """Send attempts to the endpoint and decide each (S4–S9).

        Draws are keyed to (event, attempt), so an attempt's dice do not depend on the block.
        With a capacity-limited endpoint the queue state is advanced on a copy (kept in
        `self._server_after`), since a block may be decided more than once.
        """
        event_id, attempt = items.event_id, items.retries_done + 1
        u = keyed_draws(self.draws, event_id, attempt)
        status, service, hang = self.endpoint.draw(
            dispatch_at, u["status"], u["hang"], u["latency"]
        )
        drawn = {"status_drawn": status, "service_s": service, "hang_drawn": hang}
        if self.server is not None:
            self._server_after = self.server.copy()
            status, response, hang = respond(
                self._server_after, self.endpoint, dispatch_at, status, service, hang, self.timeout
            )
        else:
            response = np.where(hang, self.timeout, service)
        timed_out = hang | (response > self.timeout)
        status = np.where(timed_out, policy.STATUS_TIMEOUT, status).astype(np.int16)
        complete_at = dispatch_at + np.where(timed_out, self.timeout, response)
        kind = policy.classify(status, self.table)
        retry_after = self.endpoint.retry_after_s(status, dispatch_at)
        retries_done = items.retries_done
        backoff = policy.backoff_delay(
            retries_done + 1, u["backoff"], self.policy.backoff, items.previous_backoff_s
        )
        decision = policy.decide(
            kind,
            retries_done,
            items.arrival_at,
            complete_at,
            backoff,
            retry_after,
            self.policy,
            self.scenario.dead_letter_queue,
        )
        return {
            "dispatch_at": dispatch_at,
            "complete_at": complete_at,
            "status": status,
            "outcome": np.asarray(kind, dtype=np.int8),
            "retry_after_s": retry_after,
            "next_ready_at": np.asarray(decision.next_ready_at, dtype=float),
            "final": np.asarray(decision.final, dtype=np.int8),
            "final_reason": np.asarray(decision.reason, dtype=np.int8),
            "backoff_s": np.asarray(backoff, dtype=float),
            **drawn,
        }

    def _commit(self, block: Block, decided: Decided, k: int) -> None:
        """Keep the first k items of the block: move state, queue the retries, emit records."""
        taken = int(np.searchsorted(decided.live, k))  # attempts among the first k items
        if self.server is not None:
            if taken == decided.live.size:
                self.server = self._server_after
            else:
                rows = decided.rows
                respond(
                    self.server,
                    self.endpoint,
                    rows["dispatch_at"][:taken],
                    rows["status_drawn"][:taken],
                    rows["service_s"][:taken],
                    rows["hang_drawn"][:taken],
                    self.timeout,
                )
        self.full_at = float(block.full_after[k - 1])
        self.selector.commit(int(np.count_nonzero(block.from_queue[:k])))
        kept = decided.parents < k
        merged_in = _as_set(block.items[:k][~block.from_queue[:k]])
        children = decided.children[kept]
        waiting = (
            ~np.isin(identity(children), list(merged_in))
            if merged_in
            else np.ones(children.size, dtype=bool)
        )
        self.queue.retries.add(children[waiting])
        live = decided.live[:taken]
        sent = block.items[:taken] if taken == 0 or live[-1] == taken - 1 else block.items[live]
        self._emit(sent, {n: c[:taken] for n, c in decided.rows.items()})
        aged = np.flatnonzero(block.expired[:k])
        if aged.size:
            items = block.items[aged]
            self._emit_aged_out(items, policy.age_deadline(items.arrival_at, self.policy))

    def _resize_block(self, cut: bool) -> None:
        if cut:
            self.block = max(self.min_block, self.block // 2)
        else:
            self.block = min(self.max_block, self.block * 2)

    # --- records --------------------------------------------------------------------------

    def _emit(self, sent: Items, chosen: dict[str, np.ndarray]) -> None:
        if not sent.size:
            return
        chunk = {
            "replication": np.full(sent.size, self.replication, dtype=np.int32),
            "event_id": sent.event_id,
            "attempt": (sent.retries_done + 1).astype(np.int16),
            "arrival_at": sent.arrival_at,
            "ready_at": sent.ready_at,
            **{name: chosen[name] for name in COLUMNS if name in chosen},
        }
        self._push(chunk)

    def _emit_aged_out(self, items: Items, deadline: np.ndarray) -> None:
        """Rows for events that reached the maximum age while waiting for a token (S6)."""
        n = items.size
        self._push(
            {
                "replication": np.full(n, self.replication, dtype=np.int32),
                "event_id": items.event_id,
                "attempt": (items.retries_done + 1).astype(np.int16),
                "arrival_at": items.arrival_at,
                "ready_at": items.ready_at,
                "dispatch_at": np.full(n, np.nan),
                "complete_at": deadline,
                "status": np.full(n, policy.STATUS_TIMEOUT, dtype=np.int16),
                "outcome": np.full(n, policy.EXPIRED, dtype=np.int8),
                "retry_after_s": np.full(n, np.nan),
                "next_ready_at": np.full(n, np.nan),
                "final": np.full(n, policy.age_out_final(self.scenario.dead_letter_queue), np.int8),
                "final_reason": np.full(n, policy.MAXIMUM_EVENT_AGE, dtype=np.int8),
            }
        )

    def _age_out_leftovers(self) -> None:
        """Items still waiting at the horizon whose maximum age fell before it have aged out."""
        items = concat([self.queue.peek(len(self.queue), self.horizon), self.selector.held()])
        deadline = policy.age_deadline(items.arrival_at, self.policy)
        aged = deadline < self.horizon
        if aged.any():
            self._emit_aged_out(items[aged], deadline[aged])

    def _push(self, chunk: Chunk) -> None:
        self._out.append({name: np.asarray(chunk[name], dtype=dt) for name, dt in COLUMNS.items()})
        self._out_rows += chunk["event_id"].size
        if self._out_rows >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._out:
            merged = {name: np.concatenate([c[name] for c in self._out]) for name in COLUMNS}
            self.sink.attempts(merged)
        self._out, self._out_rows = [], 0


def simulate_replication(
    scenario: Scenario,
    replication: int,
    sink: Sink,
    progress: Callable[[float], None] | None = None,
) -> None:
    """Run one replication of the scenario, sending arrivals and attempt records to `sink`."""
    Model(scenario, replication, sink, progress).run()
