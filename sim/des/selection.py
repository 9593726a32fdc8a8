"""Which waiting deliveries take the next tokens, and when (S2, S3, and age-outs of S6).

A selector proposes a block: items in dispatch order with their token times, the bucket state
after each, and which of them aged out waiting. The engine decides the block's attempts; the
block then says how long a prefix of it is *settled* — exactly what a one-at-a-time
simulation would have done, given the retries those attempts gave birth to.

* `FifoSelector` (oldest-ready first): token times of a whole block in closed form. A retry
  born inside the block that is ready before the block's last item belongs *in* the block, so
  a FIFO block is rescheduled with those retries merged in by ready time until the retries it
  holds are exactly the retries its attempts produce.
* `LifoSelector` (newest-ready first): a stack walked item by item. Speculation runs on an
  overlay (the real stack is untouched), and `commit(k)` replays the first k choices for real.
  A retry ready by an item's token time could have been chosen instead: the prefix ends there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

import numpy as np

from sim import policy
from sim.des.items import Items, empty, merge, sort_by_ready
from sim.des.queues import FifoQueue
from sim.des.rules import LaneRules

MAX_EXPIRIES = 256
"""Age-outs handled per line and block by the closed form (each reschedules what follows)."""

MAX_ROUNDS = 8
"""Reschedulings of a FIFO block with the retries born inside it before settling for a prefix."""


class Finished:
    """The type of `FINISHED`: the next delivery could only leave after the horizon."""

    def __repr__(self) -> str:
        return "FINISHED"


FINISHED: Final = Finished()


def identity(items: Items) -> np.ndarray:
    """One int64 per waiting delivery: its event and its retries so far (unique in a block)."""
    return items.event_id * 256 + items.retries_done


@dataclass
class Block:
    """A proposed block of deliveries, in dispatch order."""

    items: Items
    dispatch_at: np.ndarray  # NaN where the item aged out waiting
    full_after: np.ndarray  # bucket state after each item (unchanged by aged-out items)
    expired: np.ndarray  # aged out waiting for a token
    from_queue: np.ndarray  # False: a retry born inside this block, merged in by ready time
    source: Items  # FIFO: the queue items peeked, to reschedule with merged-in retries
    walk_at: np.ndarray | None = None  # LIFO: the token time at which each item was chosen

    def born_inside(self, children: Items) -> Items:
        """FIFO: the retries that belong inside this block (ready before its last item)."""
        return children[children.ready_at < self.items.ready_at[-1]]

    def holds(self, inside: Items) -> bool:
        """FIFO: whether the merged-in retries are exactly `inside` (same deliveries, same times)."""
        return _as_map(self.items[~self.from_queue]) == _as_map(inside)

    def settled(self, children: Items, parents: np.ndarray) -> int:
        """Length of the prefix left unchanged by the retries born in the block.

        `children` are those retries, `parents` the block positions of the
        attempts that produced them.
        """
        if self.walk_at is not None:
            return self._settled_lifo(children, parents)
        want = _as_map(self.born_inside(children))
        merged = self.items[~self.from_queue]
        have = _as_map(merged)
        ready = self.items.ready_at
        cuts = [self.items.size]
        for key, at in want.items():  # missing: it would have queued after the items ready by `at`
            if have.get(key) != at:
                cuts.append(int(np.searchsorted(ready, at, side="right")))
        positions = np.flatnonzero(~self.from_queue)
        for key, position in zip(identity(merged).tolist(), positions.tolist(), strict=True):
            if want.get(key) != have[key]:  # stale: no longer born, or born at another time
                cuts.append(position)
        return min(cuts)

    def _settled_lifo(self, children: Items, parents: np.ndarray) -> int:
        assert self.walk_at is not None
        born = np.full(self.items.size, np.inf)
        np.minimum.at(born, parents, children.ready_at)
        earliest_before = np.concatenate(([np.inf], np.minimum.accumulate(born)[:-1]))
        hit = self.walk_at >= earliest_before
        return int(np.argmax(hit)) if hit.any() else self.items.size


def carried_over(block: Block, previous: Block) -> np.ndarray:
    """For each position of a rescheduled FIFO block, the position the same delivery held in
    the `previous` proposal of it (-1: not in it). Both hold a prefix of the same queue items,
    in queue order, plus retries merged in by ready time; the retries are matched by identity."""
    return carried_over_items(block.items, block.from_queue, previous.items, previous.from_queue)


def carried_over_items(
    items: Items, from_queue: np.ndarray, previous: Items, previous_from_queue: np.ndarray
) -> np.ndarray:
    """`carried_over` of items (and which of them are queue items) rather than blocks."""
    at = np.full(items.size, -1, dtype=np.int64)
    now, before = np.flatnonzero(from_queue), np.flatnonzero(previous_from_queue)
    shared = min(now.size, before.size)
    at[now[:shared]] = before[:shared]
    merged = np.flatnonzero(~from_queue)
    earlier = np.flatnonzero(~previous_from_queue)
    if merged.size and earlier.size:
        keys = identity(previous[earlier])
        order = np.argsort(keys)
        wanted = identity(items[merged])
        found = np.minimum(np.searchsorted(keys, wanted, sorter=order), keys.size - 1)
        same = keys[order[found]] == wanted
        at[merged[same]] = earlier[order[found[same]]]
    return at


def _as_map(items: Items) -> dict[int, float]:
    return dict(zip(identity(items).tolist(), items.ready_at.tolist(), strict=True))


class Selector(Protocol):
    """Which waiting deliveries take the next tokens: what the engine asks of FIFO and LIFO."""

    rounds: int
    """How often a block may be rescheduled with the retries born inside it (0: never)."""

    def select(self, n: int, before: float, full_at: float) -> Block | Finished | None:
        """The next block of up to n items ready before `before`, the bucket full from `full_at`;
        None when nothing is ready, FINISHED when the next could only leave after the horizon."""
        ...

    def reschedule(self, block: Block, inside: Items, full_at: float) -> Block | Finished:
        """The same block with the retries `inside` (born in it, ready before its end) merged in."""
        ...

    def commit(self, k: int) -> None:
        """Take the first k queued items of the last block out of the queue."""
        ...

    def held(self) -> Items:
        """Items taken out of the queue but not yet served."""
        ...


class _Selector:
    """What both selectors are built from: the queue, the bucket and the limits."""

    def __init__(
        self,
        queue: FifoQueue,
        rate: float | None,
        capacity: float,
        rules: LaneRules,
        horizon: float,
    ) -> None:
        self.queue, self.rate, self.capacity = queue, rate, capacity
        self.rules, self.horizon = rules, horizon


class FifoSelector(_Selector):
    """Oldest-ready first: the block's token times come from the bucket's closed form."""

    rounds = MAX_ROUNDS

    def select(self, n: int, before: float, full_at: float) -> Block | Finished | None:
        """The next block: up to n waiting items ready before `before`."""
        peeked = self.queue.peek(n, before)
        if not peeked.size:
            return None
        return self._schedule(peeked, empty(), full_at)

    def reschedule(self, block: Block, inside: Items, full_at: float) -> Block | Finished:
        """The same block with the retries `inside` merged in by their ready times."""
        return self._schedule(block.source, inside, full_at)

    def _schedule(self, peeked: Items, inside: Items, full_at: float) -> Block | Finished:
        # peeked is in ready order; at equal ready times, queued items go first
        items, from_queue = merge(peeked, sort_by_ready(inside))
        deadline = self.rules.deadline(items.arrival_at, items.event_id)
        dispatch_at, full_after, expired, n = token_times(
            items.ready_at, deadline, full_at, self.rate, self.capacity
        )
        dispatch_at[expired] = np.nan  # an item that aged out took no token
        beyond = np.where(expired[:n], deadline[:n], dispatch_at[:n]) >= self.horizon
        if beyond.any():
            n = int(np.argmax(beyond))
            if n == 0:
                return FINISHED
        return Block(
            items[:n], dispatch_at[:n], full_after[:n], expired[:n], from_queue[:n], peeked
        )

    def commit(self, k: int) -> None:
        """Take the first k queued items of the last block out of the queue."""
        self.queue.consume(k)

    def held(self) -> Items:
        """Items taken out of the queue but not yet served (none: FIFO serves straight from it)."""
        return empty()


@dataclass
class Walk:
    """One walk of the LIFO stack: the items chosen, in order, and where the stack would be after.

    A walk runs on an overlay: `select` proposes its choices as a block, `commit` walks again for
    the settled prefix and applies its stack state for real.
    """

    rows: list[tuple] = field(default_factory=list)  # the chosen items (`Items.rows` tuples)
    dispatch_at: list[float] = field(default_factory=list)  # NaN: aged out waiting (S6)
    full_after: list[float] = field(default_factory=list)  # bucket state after each choice
    expired: list[bool] = field(default_factory=list)
    walk_at: list[float] = field(default_factory=list)  # the token time of each choice
    finished: bool = False  # stopped at the horizon
    stack_top: int = 0  # items of the real stack left untouched below this
    pushed: list[tuple] = field(default_factory=list)  # arrivals pushed and not taken
    taken: int = 0  # items taken out of the queue onto the stack
    last_dispatch_at: float = 0.0

    def block(self) -> Block:
        items = Items.from_rows(self.rows)
        return Block(
            items,
            np.array(self.dispatch_at),
            np.array(self.full_after),
            np.array(self.expired),
            np.ones(items.size, dtype=bool),
            items,
            walk_at=np.array(self.walk_at),
        )


class LifoSelector(_Selector):
    """Newest-ready first (S3 `lifo`): at each token time, the most recently ready item goes."""

    def __init__(
        self,
        queue: FifoQueue,
        rate: float | None,
        capacity: float,
        rules: LaneRules,
        horizon: float,
    ) -> None:
        super().__init__(queue, rate, capacity, rules, horizon)
        self.stack: list[tuple] = []  # visible waiting items, newest last
        self.last_dispatch_at = 0.0
        self._request: tuple[int, float, float] | None = None  # (peek size, before, full_at)

    rounds = 0  # a walk stops at the first retry that could overtake: nothing to reschedule

    def select(self, n: int, before: float, full_at: float) -> Block | Finished | None:
        """The next block: up to n items chosen newest-first at their token times."""
        size = 4 * n
        while True:
            incoming = self.queue.peek(size, before)
            walk = self._walk(incoming, size, n, before, full_at)
            if walk is not None or incoming.size < size:
                break
            size *= 4  # every known item was ready at once: look further
        self._request = (size, before, full_at)
        if walk is None:
            return None
        if not walk.rows:
            return FINISHED if walk.finished else None
        return walk.block()

    def reschedule(self, block: Block, inside: Items, full_at: float) -> Block | Finished:
        """Never asked (`rounds` is 0): a LIFO block is settled by its walk."""
        return block

    def commit(self, k: int) -> None:
        """Replay the first k choices of the last block on the real stack."""
        assert self._request is not None
        size, before, full_at = self._request
        walk = self._walk(self.queue.peek(size, before), size, k, before, full_at)
        assert walk is not None
        del self.stack[walk.stack_top :]
        self.stack.extend(walk.pushed)
        self.queue.consume(walk.taken)
        self.last_dispatch_at = walk.last_dispatch_at

    def held(self) -> Items:
        """Items on the stack: visible, waiting for a token."""
        return Items.from_rows(self.stack)

    def _walk(
        self, incoming: Items, size: int, n: int, before: float, full_at: float
    ) -> Walk | None:
        """Choose up to n items on an overlay of the stack (the real one is left untouched);
        None when an item not yet seen could be newer than the first choice."""
        arrivals = incoming.rows()
        complete = incoming.size < size  # everything ready before `before` is in `incoming`
        spacing = 0.0 if self.rate is None else 1.0 / self.rate
        slack = (self.capacity - 1.0) * spacing
        top, p = len(self.stack), 0
        pushed: list[tuple] = []
        rows: list[tuple] = []
        dispatch_at: list[float] = []
        full_after: list[float] = []
        expired: list[bool] = []
        walk_at: list[float] = []
        state, last, finished = full_at, self.last_dispatch_at, False
        while len(rows) < n:
            t = last if self.rate is None else max(state - slack, last)
            if not pushed and top == 0:
                if p == len(arrivals):
                    break
                t = max(t, arrivals[p][0])
            if t >= before or t >= self.horizon:
                finished = t >= self.horizon
                break
            while p < len(arrivals) and arrivals[p][0] <= t:
                pushed.append(arrivals[p])
                p += 1
            if p == len(arrivals) and not complete:
                if not rows:
                    return None  # cannot tell whether an unseen item is newer
                break
            if pushed:
                item = pushed.pop()
            else:
                top -= 1
                item = self.stack[top]
            rows.append(item)
            walk_at.append(t)
            if policy.aged_out(t, self.rules.deadline_one(item[1], item[2])):  # S6: no token
                dispatch_at.append(np.nan)
                expired.append(True)
            else:
                dispatch_at.append(t)
                expired.append(False)
                if self.rate is not None:
                    state = max(state, t) + spacing
                last = t
            full_after.append(state)
        return Walk(rows, dispatch_at, full_after, expired, walk_at, finished, top, pushed, p, last)


def token_times(
    ready_at: np.ndarray, deadline: np.ndarray, full_at: float, rate: float | None, capacity: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A bucket's token times for items served in order, each aging out (no token, the items
    behind it rescheduled without it) where its token would come at or after its deadline.

    Returns (token time, also for those that aged out; bucket after each; aged out; how many
    were resolved — fewer than all after MAX_EXPIRIES age-outs)."""
    size = ready_at.size
    times, after = np.empty(size), np.empty(size)
    expired = np.zeros(size, dtype=bool)
    start, state = 0, full_at
    for _ in range(MAX_EXPIRIES):
        t, a = policy.gcra_schedule(state, rate, capacity, ready_at[start:])
        late = np.asarray(policy.aged_out(t, deadline[start:]))
        if not late.any():
            times[start:], after[start:] = t, a
            return times, after, expired, size
        j = int(np.argmax(late))
        times[start : start + j + 1], after[start : start + j] = t[: j + 1], a[:j]
        state = a[j - 1] if j else state
        expired[start + j], after[start + j] = True, state
        start += j + 1
        if start == size:
            return times, after, expired, size
    return times, after, expired, start
