"""One destination's line: its waiting deliveries, token bucket, endpoint and rules (S2-S9, B3).

A `Lane` serves waiting deliveries (arrivals its rules matched, and retries) oldest-ready first
(or newest-first with `throttle_order: lifo`) through its bucket, sends them to its endpoint,
classifies the responses and decides retries, Retry-After waits, age limits and
dead-lettering — all through `sim.policy`, by each delivery's rule (`sim.des.rules`).

Waiting deliveries are never SimPy processes. `step` takes a *block* of the earliest waiting
items, computes their token times in closed form, draws their responses in one vectorized call
and decides them together; it keeps the longest prefix that no retry born inside the block
could have overtaken (a retry joins the FIFO by its ready time). A lane steps on its own when
nothing couples it to the others (no account quota); under a quota `sim.des.joint` schedules
every lane's block together and uses `attempt` and `commit` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim import policy
from sim.des.items import Items, concat
from sim.des.queues import ArrivalBuffer, FifoQueue, RetryPool
from sim.des.rules import LaneRules
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
from sim.records import Chunk
from sim.rng import KeyedUniforms, keyed_draws
from sim.scenario.model import BusDestination

MIN_BLOCK, FIRST_BLOCK, MAX_BLOCK = 64, 1024, 1 << 17
"""Items per block: halved after a block is cut short, doubled after one is kept whole."""
MAX_GUESSED_GENERATIONS = 4
"""How many generations of retries born inside a block are guessed ahead (`_with_descendants`)."""
DRAWS = ("status", "hang", "latency", "backoff")


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


def children_of(items: Items, rows: dict[str, np.ndarray]) -> tuple[Items, np.ndarray]:
    """The retries decided attempts produced, and the position of each one's attempt."""
    waiting = rows["final"] == policy.NO_FINAL
    children = Items(
        rows["next_ready_at"][waiting],
        items.arrival_at[waiting],
        items.event_id[waiting],
        (items.retries_done[waiting] + 1).astype(np.int16),
        rows["backoff_s"][waiting],
    )
    return children, np.flatnonzero(waiting)


class Lane:
    """One destination of a replication: its line of waiting deliveries, bucket and endpoint."""

    def __init__(
        self,
        destination: BusDestination,
        rules: LaneRules,
        seed: int,
        replication: int,
        horizon: float,
        emit: Callable[[Chunk], None],
        block_sizes: tuple[int, int, int] = (MIN_BLOCK, FIRST_BLOCK, MAX_BLOCK),
    ) -> None:
        self.name = destination.name
        self.rules = rules
        self.replication = replication
        self.horizon = horizon
        self.emit = emit  # where record chunks go (the model adds the bus columns)
        self.rate = destination.invocation_rate_limit_per_second
        self.capacity = destination.burst
        self.timeout = destination.timeout
        self.lifo = destination.throttle_order == "lifo"
        self.full_at = 0.0  # token bucket state: full from this instant on (S2)
        self.head_since = 0.0  # when the line's head became head: its last grant (B5)
        self.endpoint = EndpointModel(destination.endpoint)
        self.server = ServerQueue() if self.endpoint.has_capacity else None
        self.arrivals = ArrivalBuffer()
        self.queue = FifoQueue(self.arrivals, RetryPool())
        kind = LifoSelector if self.lifo else FifoSelector
        self.selector: Selector = kind(self.queue, self.rate, self.capacity, rules, horizon)
        self.draws = {name: KeyedUniforms(seed, replication, name) for name in DRAWS}
        self._server_after: ServerQueue | None = None
        self.min_block, self.block, self.max_block = block_sizes

    # --- one block, on its own ------------------------------------------------------------

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
        self.resize_block(cut=k < block.items.size)
        items = block.items[:k]
        deadline = self.rules.deadline(items.arrival_at, items.event_id)
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
            born = children_of(born, self.attempt(born, guess))[0]
            born = born[born.ready_at < ready[-1]]
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
            rows = self.attempt(items, dispatch_at)
        else:
            fresh = match < 0
            new = self.attempt(items[fresh], dispatch_at[fresh])
            rows = {}
            for name, column in previous.rows.items():  # one gather, then the few fresh rows
                rows[name] = column[match]
                rows[name][fresh] = new[name]
        children, parents = children_of(items, rows)
        return Decided(block, live, rows, children, live[parents])

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

    # --- attempts and their records -------------------------------------------------------

    def attempt(self, items: Items, dispatch_at: np.ndarray) -> dict[str, np.ndarray]:
        """Send attempts to the endpoint and decide each (S4-S9), by its rule's policy.

        Draws are keyed to (delivery, attempt), so an attempt's dice do not depend on the block.
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
        retry_after = self.endpoint.retry_after_s(status, dispatch_at)
        kind, backoff, decision = self.rules.decide(
            status,
            items.retries_done,
            items.arrival_at,
            complete_at,
            u["backoff"],
            items.previous_backoff_s,
            retry_after,
            event_id,
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
            "backoff_s": backoff,
            **drawn,
        }

    def _commit(self, block: Block, decided: Decided, k: int) -> None:
        """Keep the first k items of the block: move state, queue the retries, emit records."""
        taken = int(np.searchsorted(decided.live, k))  # attempts among the first k items
        self.full_at = float(block.full_after[k - 1])
        self.selector.commit(int(np.count_nonzero(block.from_queue[:k])))
        live = decided.live[:taken]
        sent = block.items[:taken] if taken == 0 or live[-1] == taken - 1 else block.items[live]
        self.keep(
            block.items[:k],
            block.from_queue[:k],
            sent,
            {n: c[:taken] for n, c in decided.rows.items()},
            taken == decided.live.size,
            decided.children[decided.parents < k],
            block.expired[:k],
        )

    def keep(
        self,
        items: Items,
        from_queue: np.ndarray,
        sent: Items,
        rows: dict[str, np.ndarray],
        whole: bool,
        children: Items,
        expired: np.ndarray,
    ) -> None:
        """Commit served items: advance the endpoint's queue over the attempts `sent` (`rows`;
        `whole`: every attempt of the last `attempt` call, whose queue state is kept), queue the
        `children` not merged into `items`, emit the records."""
        if self.server is not None and sent.size:
            if whole:
                assert self._server_after is not None
                self.server = self._server_after
            else:
                respond(
                    self.server,
                    self.endpoint,
                    rows["dispatch_at"],
                    rows["status_drawn"],
                    rows["service_s"],
                    rows["hang_drawn"],
                    self.timeout,
                )
        merged_in = _as_set(items[~from_queue])
        waiting = (
            ~np.isin(identity(children), list(merged_in))
            if merged_in
            else np.ones(children.size, dtype=bool)
        )
        self.queue.retries.add(children[waiting])
        self.records(sent, rows)
        aged = np.flatnonzero(expired)
        if aged.size:
            late = items[aged]
            self.aged_out(late, self.rules.deadline(late.arrival_at, late.event_id))

    def resize_block(self, cut: bool) -> None:
        if cut:
            self.block = max(self.min_block, self.block // 2)
        else:
            self.block = min(self.max_block, self.block * 2)

    def records(self, sent: Items, rows: dict[str, np.ndarray]) -> None:
        """Emit the record rows of attempts."""
        if not sent.size:
            return
        self.emit(
            {
                "replication": np.full(sent.size, self.replication, dtype=np.int32),
                "event_id": sent.event_id,
                "attempt": (sent.retries_done + 1).astype(np.int16),
                "arrival_at": sent.arrival_at,
                "ready_at": sent.ready_at,
                **rows,
            }
        )

    def aged_out(self, items: Items, deadline: np.ndarray) -> None:
        """Rows for deliveries that reached their maximum age while waiting for a token (S6)."""
        n = items.size
        self.emit(
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
                "final": self.rules.age_out_final(items.event_id),
                "final_reason": np.full(n, policy.MAXIMUM_EVENT_AGE, dtype=np.int8),
            }
        )

    def age_out_leftovers(self) -> None:
        """Items still waiting at the horizon whose maximum age fell before it have aged out."""
        items = concat([self.queue.peek(len(self.queue), self.horizon), self.selector.held()])
        deadline = self.rules.deadline(items.arrival_at, items.event_id)
        aged = deadline < self.horizon
        if aged.any():
            self.aged_out(items[aged], deadline[aged])
