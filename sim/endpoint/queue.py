"""The endpoint's M/G/c/K queue (design S9a), one request at a time — shared by the model and the
local endpoint server, so both queue requests identically.

`concurrency` servers, `queue` waiting places (FIFO), anything beyond is an overload. Each
admitted request's start and leave times are fixed on admission, so a request whose client
gave up still holds its place until it leaves. When an incident changes `concurrency`, the
servers that free up last stay (new work waits for in-service work to drain).
"""

from __future__ import annotations

import heapq

from sim.scenario.model import Capacity


class ServerQueue:
    """Each server's next free time, and the leave time of every request in the system."""

    def __init__(self) -> None:
        self.free_at: list[float] = []
        self.departures: list[float] = []
        self.concurrency = 0

    def copy(self) -> ServerQueue:
        twin = ServerQueue()
        twin.free_at, twin.departures = list(self.free_at), list(self.departures)
        twin.concurrency = self.concurrency
        return twin

    def _resize(self, concurrency: int, now: float) -> None:
        if concurrency > self.concurrency:
            for _ in range(concurrency - self.concurrency):
                heapq.heappush(self.free_at, now)
        elif concurrency < self.concurrency:
            self.free_at = heapq.nlargest(concurrency, self.free_at)
            heapq.heapify(self.free_at)
        self.concurrency = concurrency

    def admit(self, now: float, capacity: Capacity, hold_s: float) -> float | None:
        """Start time of a request arriving at `now` that holds a server `hold_s`; None = overload."""
        if capacity.concurrency != self.concurrency:
            self._resize(capacity.concurrency, now)
        while self.departures and self.departures[0] <= now:
            heapq.heappop(self.departures)
        if len(self.departures) >= capacity.concurrency + capacity.queue:
            return None
        start = max(now, heapq.heappop(self.free_at))
        heapq.heappush(self.free_at, start + hold_s)
        heapq.heappush(self.departures, start + hold_s)
        return start
