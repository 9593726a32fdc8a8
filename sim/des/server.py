"""The endpoint's capacity inside the model: requests in dispatch order through the shared queue.

A hanging request holds its server for the client timeout (S9a); see `sim.endpoint.queue`.
"""

from __future__ import annotations

import numpy as np

from sim.endpoint.model import EndpointModel
from sim.endpoint.queue import ServerQueue


def respond(
    queue: ServerQueue,
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
        hold = float(response[i])
        start = queue.admit(now, capacity, hold)
        if start is None:
            status[i], response[i], hang[i] = capacity.overload_status, 0.0, False
        else:
            response[i] = start + hold - now
    return status, response, hang
