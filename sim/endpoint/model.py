"""The endpoint's behaviour (design S9a) as time-segmented regimes and inverse-CDF samplers.

Shared by the model (which simulates the endpoint) and the local endpoint server (which
serves it over HTTP). Incidents split the horizon into segments; in each segment one
`Regime` holds the response mix, latency, hang probability, Retry-After and capacity in
force (a later incident overrides an earlier one for the keys it sets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.scenario.model import (
    Capacity,
    ConstantLatency,
    EmpiricalLatency,
    Endpoint,
    GammaLatency,
    Incident,
    Latency,
    LognormalLatency,
)


def service_quantile(latency: Latency, u: np.ndarray) -> np.ndarray:
    """Service times (seconds) at quantiles u on [0, 1) of the latency distribution."""
    from scipy import special  # loaded on first use: the CLI starts without SciPy

    u = np.asarray(u, dtype=float)
    if isinstance(latency, ConstantLatency):
        return np.full(u.shape, latency.value)
    if isinstance(latency, LognormalLatency):
        mu, sigma = latency.log_params
        return np.exp(mu + sigma * special.ndtri(u))
    if isinstance(latency, GammaLatency):
        shape = 1.0 / latency.cv**2
        return special.gammaincinv(shape, u) * latency.mean / shape
    if isinstance(latency, EmpiricalLatency):
        samples = latency.samples
        return samples[np.minimum((u * samples.size).astype(np.int64), samples.size - 1)]
    raise TypeError(f"unknown latency {latency!r}")


@dataclass(frozen=True)
class Regime:
    """What the endpoint does during one time segment."""

    statuses: np.ndarray  # candidate status codes
    cumulative: np.ndarray  # cumulative probabilities, last = 1
    latency: Latency
    timeout_probability: float
    retry_after: dict[int, float]
    capacity: Capacity | None

    def draw_status(self, u: np.ndarray) -> np.ndarray:
        index = np.searchsorted(self.cumulative, u, side="right")
        return self.statuses[np.minimum(index, self.statuses.size - 1)]


def _regime(endpoint: Endpoint, active: list[Incident]) -> Regime:
    values: dict[str, Any] = {
        "responses": endpoint.responses,
        "latency": endpoint.latency,
        "timeout_probability": endpoint.timeout_probability,
        "retry_after": endpoint.retry_after,
        "capacity": endpoint.capacity,
    }
    for incident in active:
        for key in values:
            override = getattr(incident, key)
            if override is not None:
                values[key] = override
    mix = values["responses"]
    statuses = np.array(sorted(mix), dtype=np.int16)
    cumulative = np.cumsum([mix[s] for s in sorted(mix)])
    cumulative[-1] = 1.0
    return Regime(
        statuses=statuses,
        cumulative=cumulative,
        latency=values["latency"],
        timeout_probability=values["timeout_probability"],
        retry_after=dict(values["retry_after"]),
        capacity=values["capacity"],
    )


class EndpointModel:
    """The endpoint's regimes over time, with vectorized sampling at given request times."""

    def __init__(self, endpoint: Endpoint) -> None:
        cuts = {0.0}
        for incident in endpoint.incidents:
            cuts.update((incident.start, incident.end))
        self.starts = np.array(sorted(cuts))
        self.regimes = [
            _regime(endpoint, [i for i in endpoint.incidents if i.start <= t < i.end])
            for t in self.starts
        ]
        self.has_capacity = any(r.capacity is not None for r in self.regimes)
        self._retry_after = np.full((len(self.regimes), 600), np.nan)
        for i, regime in enumerate(self.regimes):
            for status, seconds in regime.retry_after.items():
                self._retry_after[i, status] = seconds

    def segment(self, t: np.ndarray | float) -> np.ndarray:
        """Index of the regime in force at time(s) t (times before zero count as zero)."""
        return np.maximum(np.searchsorted(self.starts, t, side="right") - 1, 0)

    def draw(
        self, t: np.ndarray, u_status: np.ndarray, u_hang: np.ndarray, u_latency: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(status, service seconds, hangs) for requests arriving at times t, from uniform draws."""
        if len(self.regimes) == 1:  # no incidents: one regime throughout
            regime = self.regimes[0]
            return (
                regime.draw_status(u_status),
                service_quantile(regime.latency, u_latency),
                u_hang < regime.timeout_probability,
            )
        segment = self.segment(t)
        status = np.empty(t.shape, dtype=np.int16)
        service = np.empty(t.shape)
        hang = np.empty(t.shape, dtype=bool)
        for i in np.unique(segment):
            mask = segment == i if len(self.regimes) > 1 else slice(None)
            regime = self.regimes[i]
            status[mask] = regime.draw_status(u_status[mask])
            service[mask] = service_quantile(regime.latency, u_latency[mask])
            hang[mask] = u_hang[mask] < regime.timeout_probability
        return status, service, hang

    def retry_after_s(self, status: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Retry-After seconds the endpoint sends with each status at time t (NaN = none)."""
        if len(self.regimes) == 1:
            return self._retry_after[0, status]
        return self._retry_after[self.segment(t), status]
