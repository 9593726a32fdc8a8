"""Compact waiting structures of the model: arrivals not yet served, retries waiting out a backoff.

Nothing here is per-event Python objects: arrivals are windows of sorted times (a backlog of
millions is a few arrays and a position), retries are a few sorted runs of `Items` merged
like an LSM tree. Both support `peek` (look at the earliest items without taking them)
and `consume` (take a prefix of what was peeked), which is what block-wise dispatch needs.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from sim.des.items import Items, concat, empty, merge, sort_by_ready


class ArrivalBuffer:
    """Arrivals not yet served, oldest first. Their ids are their global arrival index, or —
    for a destination of a bus, which gets only the deliveries its rules matched — given."""

    def __init__(self) -> None:
        # (id of the first time, times, ids or None: consecutive from the first)
        self._windows: deque[tuple[int, np.ndarray, np.ndarray | None]] = deque()
        self._pos = 0  # position in the first window
        self._next_id = 0
        self._consumed = 0  # arrivals served (taken out) so far

    def extend(self, times: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Append a window of sorted arrival times (with their ids, else the next consecutive)."""
        if times.size:
            self._windows.append((self._next_id, times, ids))
            self._next_id += times.size

    def __len__(self) -> int:
        return self._next_id - self._consumed

    @property
    def arrived(self) -> int:
        """Arrivals appended so far."""
        return self._next_id

    def peek(self, n: int, before: float) -> Items:
        """Up to n earliest waiting arrivals with arrival time < before."""
        if n <= 0:
            return empty()
        parts, need, pos = [], n, self._pos
        for first_id, times, ids in self._windows:
            stop = min(times.size, pos + need)
            if times[stop - 1] >= before:
                stop = pos + int(np.searchsorted(times[pos:stop], before, side="left"))
            if stop > pos:
                arrived = times[pos:stop]
                parts.append(
                    Items(
                        arrived,
                        arrived,
                        np.arange(first_id + pos, first_id + stop, dtype=np.int64)
                        if ids is None
                        else ids[pos:stop],
                        np.zeros(stop - pos, dtype=np.int16),
                        np.full(stop - pos, np.nan),
                    )
                )
                need -= stop - pos
            if need == 0 or stop < times.size:
                break
            pos = 0
        return concat(parts)

    def consume(self, k: int) -> None:
        """Remove the k earliest waiting arrivals."""
        while k:
            times = self._windows[0][1]
            step = min(k, times.size - self._pos)
            self._pos += step
            self._consumed += step
            k -= step
            if self._pos == times.size:
                self._windows.popleft()
                self._pos = 0


class RetryPool:
    """Retries waiting for their ready time, as sorted runs (merged so there are O(log n) runs)."""

    def __init__(self) -> None:
        self._runs: list[Items] = []
        self._starts: list[int] = []
        self._peeked_from: np.ndarray = np.zeros(0, dtype=np.int32)

    def __len__(self) -> int:
        return sum(r.size - s for r, s in zip(self._runs, self._starts, strict=True))

    def add(self, items: Items) -> None:
        """Add items (any order)."""
        if not items.size:
            return
        self._runs.append(sort_by_ready(items))
        self._starts.append(0)
        while len(self._runs) > 1 and self._size(-2) <= 2 * self._size(-1):
            newer, older = self._pop_run(), self._pop_run()
            self._runs.append(merge(older, newer)[0])  # a stable sort of older + newer
            self._starts.append(0)

    def _size(self, i: int) -> int:
        return self._runs[i].size - self._starts[i]

    def _pop_run(self) -> Items:
        run, start = self._runs.pop(), self._starts.pop()
        return run[start:]

    def peek(self, n: int, until: float) -> Items:
        """Up to n earliest retries with ready time <= until, sorted by ready time."""
        parts, sources = [], []
        for i, (run, start) in enumerate(zip(self._runs, self._starts, strict=True)):
            stop = start + int(np.searchsorted(run.ready_at[start:], until, side="right"))
            stop = min(stop, start + n)
            if stop > start:
                parts.append(run[start:stop])
                sources.append(np.full(stop - start, i, dtype=np.int32))
        if not parts:
            self._peeked_from = np.zeros(0, dtype=np.int32)
            return empty()
        if len(parts) == 1:
            self._peeked_from = sources[0][:n]
            return parts[0][:n]
        items, origin = concat(parts), np.concatenate(sources)
        order = np.argsort(items.ready_at, kind="stable")[:n]
        self._peeked_from = origin[order]
        return items[order]

    def consume(self, k: int) -> None:
        """Remove the first k items of the last peek."""
        if k:
            counts = np.bincount(self._peeked_from[:k], minlength=len(self._runs))
            for i, count in enumerate(counts):
                self._starts[i] += int(count)
            keep = [i for i, r in enumerate(self._runs) if self._starts[i] < r.size]
            self._runs = [self._runs[i] for i in keep]
            self._starts = [self._starts[i] for i in keep]
        self._peeked_from = np.zeros(0, dtype=np.int32)


class FifoQueue:
    """Oldest-ready first (S3 `fifo`): arrivals and ready retries merged by ready time."""

    def __init__(self, arrivals: ArrivalBuffer, retries: RetryPool) -> None:
        self.arrivals = arrivals
        self.retries = retries
        self._is_arrival: np.ndarray = np.zeros(0, dtype=bool)

    def peek(self, n: int, before: float) -> Items:
        """Up to n waiting items ready before `before`, in service order."""
        if n <= 0:
            return empty()
        fresh = self.arrivals.peek(n, before)
        until = fresh.ready_at[-1] if fresh.size == n else np.nextafter(before, -np.inf)
        retries = self.retries.peek(n, until)
        if not retries.size:
            self._is_arrival = np.ones(fresh.size, dtype=bool)
            return fresh
        items, is_arrival = merge(fresh, retries)  # at equal ready times, arrivals first
        self._is_arrival = is_arrival[:n]
        return items[:n]

    def consume(self, k: int) -> None:
        """Take the first k items of the last peek out of the queue."""
        from_arrivals = int(np.count_nonzero(self._is_arrival[:k]))
        self.arrivals.consume(from_arrivals)
        self.retries.consume(k - from_arrivals)

    def __len__(self) -> int:
        return len(self.arrivals) + len(self.retries)
