"""The endpoint as an M/G/c/K server inside the model (S9a), fed requests in dispatch order.

`concurrency` servers, `queue` waiting places (FIFO), overload answered at once. A request
the client abandoned at its timeout keeps its server until its service ends; a hanging
request holds its server for the client timeout. Capacity may change with incidents.
"""

from __future__ import annotations

import heapq

import numpy as np

from sim.endpoint_model import EndpointModel


class Server:
    """State of the endpoint's servers and queue: server free times and departure times."""

    def __init__(self) -> None:
        self.free_at: list[float] = []  # one entry per server: when it is next free
        self.departures: list[float] = []  # every request in the system: when it leaves
        self.concurrency = 0

    def copy(self) -> Server:
        twin = Server()
        twin.free_at, twin.departures = list(self.free_at), list(self.departures)
        twin.concurrency = self.concurrency
        return twin

    def _resize(self, concurrency: int, now: float) -> None:
        if concurrency > self.concurrency:
            for _ in range(concurrency - self.concurrency):
                heapq.heappush(self.free_at, now)
        elif concurrency < self.concurrency:
            # the servers that free up last stay: new work waits for in-service work to drain
            self.free_at = heapq.nlargest(concurrency, self.free_at)
            heapq.heapify(self.free_at)
        self.concurrency = concurrency

    def respond(
        self,
        model: EndpointModel,
        dispatch_at: np.ndarray,
        status: np.ndarray,
        service_s: np.ndarray,
        hang: np.ndarray,
        timeout_s: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Queue the requests in order; return (status, response seconds, hang) after capacity."""
        status, hang = status.copy(), hang.copy()
        response = np.where(hang, timeout_s, service_s)
        segments = model.segment(dispatch_at)
        for i in range(dispatch_at.size):
            capacity = model.regimes[segments[i]].capacity
            if capacity is None:
                continue
            now = float(dispatch_at[i])
            if capacity.concurrency != self.concurrency:
                self._resize(capacity.concurrency, now)
            departures = self.departures
            while departures and departures[0] <= now:
                heapq.heappop(departures)
            if len(departures) >= capacity.concurrency + capacity.queue:
                status[i], response[i], hang[i] = capacity.overload_status, 0.0, False
                continue
            start = max(now, heapq.heappop(self.free_at))
            leave = start + float(response[i])
            heapq.heappush(self.free_at, leave)
            heapq.heappush(departures, leave)
            response[i] = leave - now
        return status, response, hang
