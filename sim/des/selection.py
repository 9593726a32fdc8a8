"""Which waiting deliveries take the next tokens, and when (S2, S3, and age-outs of S6).

A selector proposes a block: items in dispatch order with their token times, the bucket state
after each, which of them aged out waiting, and a *key* per item — the instant from which a
retry born earlier in the block could have changed the choice (its ready time for FIFO, its
token time for LIFO). The engine keeps a prefix of the block and calls `commit(k)`.

* `FifoSelector` (oldest-ready first): token times of a whole block in closed form.
* `LifoSelector` (newest-ready first): a stack walked item by item. Speculation runs on an
  overlay (the real stack is untouched), and `commit(k)` replays the first k choices for real.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim import policy
from sim.des.queues import ITEM, FifoQueue
from sim.scenario import RetryPolicy

MAX_EXPIRIES_PER_BLOCK = 256


@dataclass
class Block:
    """A proposed block of deliveries, in dispatch order."""

    items: np.ndarray  # ITEM records
    dispatch_at: np.ndarray  # NaN where the item aged out waiting
    full_after: np.ndarray  # bucket state after each item (unchanged by aged-out items)
    expired: np.ndarray  # aged out waiting for a token
    key: np.ndarray  # a retry ready at or before key[i] (LIFO) / before key[i] (FIFO) cuts here
    inclusive: bool

    def first_overtaken(self, next_ready_at: np.ndarray) -> int:
        """Length of the prefix that no retry born inside the block could have changed."""
        earliest = np.minimum.accumulate(next_ready_at)
        before = np.concatenate(([np.inf], earliest[:-1]))
        hit = self.key >= before if self.inclusive else self.key > before
        return int(np.argmax(hit)) if hit.any() else self.key.size


FINISHED = "finished"
"""Returned when the next delivery could only leave after the horizon."""


class FifoSelector:
    """Oldest-ready first: the block's token times come from the bucket's closed form."""

    def __init__(
        self,
        queue: FifoQueue,
        rate: float | None,
        capacity: float,
        retry: RetryPolicy,
        horizon: float,
    ) -> None:
        self.queue, self.rate, self.capacity = queue, rate, capacity
        self.retry, self.horizon = retry, horizon

    def select(self, n: int, before: float, full_at: float) -> Block | str | None:
        items = self.queue.peek(n, before)
        if not items.size:
            return None
        dispatch_at, full_after, expired, n = self._token_times(items, full_at)
        deadline = items["arrival_at"] + self.retry.maximum_event_age
        beyond = np.where(expired[:n], deadline[:n], dispatch_at[:n]) >= self.horizon
        if beyond.any():
            n = int(np.argmax(beyond))
            if n == 0:
                return FINISHED
        return Block(
            items[:n],
            dispatch_at[:n],
            full_after[:n],
            expired[:n],
            key=items["ready_at"][:n],
            inclusive=False,
        )

    def _token_times(
        self, items: np.ndarray, full_at: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Token times in queue order; an item that ages out takes no token and the items behind
        it are rescheduled without it."""
        ready_at, arrival_at = items["ready_at"], items["arrival_at"]
        size = ready_at.size
        dispatch_at, full_after = np.full(size, np.nan), np.empty(size)
        expired = np.zeros(size, dtype=bool)
        start, state = 0, full_at
        for _ in range(MAX_EXPIRIES_PER_BLOCK):
            times, after = policy.gcra_schedule(state, self.rate, self.capacity, ready_at[start:])
            late = np.asarray(policy.expired_waiting(times, arrival_at[start:], self.retry))
            if not late.any():
                dispatch_at[start:], full_after[start:] = times, after
                return dispatch_at, full_after, expired, size
            j = int(np.argmax(late))
            dispatch_at[start : start + j], full_after[start : start + j] = times[:j], after[:j]
            state = after[j - 1] if j else state
            expired[start + j], full_after[start + j] = True, state
            start += j + 1
            if start == size:
                return dispatch_at, full_after, expired, size
        return dispatch_at, full_after, expired, start

    def commit(self, k: int) -> None:
        self.queue.consume(k)

    def held(self) -> np.ndarray:
        """Items taken out of the queue but not yet served (none: FIFO serves straight from it)."""
        return np.zeros(0, dtype=ITEM)


class LifoSelector:
    """Newest-ready first (S3 `lifo`): at each token time, the most recently ready item goes."""

    def __init__(
        self,
        queue: FifoQueue,
        rate: float | None,
        capacity: float,
        retry: RetryPolicy,
        horizon: float,
    ) -> None:
        self.queue, self.rate, self.capacity = queue, rate, capacity
        self.retry, self.horizon = retry, horizon
        self.stack: list[tuple] = []  # visible waiting items, newest last
        self.last_dispatch_at = 0.0
        self._request: tuple[int, float, float] | None = None  # (peek size, before, full_at)

    def select(self, n: int, before: float, full_at: float) -> Block | str | None:
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
        rows, dispatch_at, full_after, expired, key = walk[:5]
        if not rows:
            return FINISHED if walk[5] else None
        items = np.array(rows, dtype=ITEM)
        return Block(
            items,
            np.array(dispatch_at),
            np.array(full_after),
            np.array(expired),
            np.array(key),
            inclusive=True,
        )

    def commit(self, k: int) -> None:
        assert self._request is not None
        size, before, full_at = self._request
        walk = self._walk(self.queue.peek(size, before), size, k, before, full_at)
        assert walk is not None
        top, pushed, taken, last = walk[6:]
        del self.stack[top:]
        self.stack.extend(pushed)
        self.queue.consume(taken)
        self.last_dispatch_at = last

    def held(self) -> np.ndarray:
        """Items on the stack: visible, waiting for a token."""
        return np.array(self.stack, dtype=ITEM) if self.stack else np.zeros(0, dtype=ITEM)

    def _walk(self, incoming: np.ndarray, size: int, n: int, before: float, full_at: float):  # type: ignore[no-untyped-def]
        """Choose up to n items on an overlay of the stack (the real one is left untouched)."""
        arrivals = incoming.tolist()
        complete = incoming.size < size  # everything ready before `before` is in `incoming`
        spacing = 0.0 if self.rate is None else 1.0 / self.rate
        slack = (self.capacity - 1.0) * spacing
        max_age = self.retry.maximum_event_age
        top, p = len(self.stack), 0
        pushed: list[tuple] = []
        rows: list[tuple] = []
        dispatch_at: list[float] = []
        full_after: list[float] = []
        expired: list[bool] = []
        key: list[float] = []
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
            key.append(t)
            if t >= item[1] + max_age:  # aged out while waiting (S6): no token taken
                dispatch_at.append(np.nan)
                expired.append(True)
            else:
                dispatch_at.append(t)
                expired.append(False)
                if self.rate is not None:
                    state = max(state, t) + spacing
                last = t
            full_after.append(state)
        return rows, dispatch_at, full_after, expired, key, finished, top, pushed, p, last
