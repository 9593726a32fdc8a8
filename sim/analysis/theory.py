"""Queueing theory the model is checked against: the M/D/1 queue (S2 with burst capacity 1).

With burst capacity 1 the token bucket is a D/1 spacer: dispatch_n = max(ready_n,
dispatch_{n-1} + 1/r), the Lindley recursion of an M/D/1 queue with service time D = 1/r.
With Poisson arrivals, zero latency and all-2xx responses, delivery delay = M/D/1 waiting time.

The waiting-time distribution is Erlang's (1909) exact formula, with x in units of D and load ρ:

    P(W ≤ x) = (1 − ρ) Σ_{k=0}^{⌊x⌋} (ρ(k − x))^k / k! · e^{ρ(x − k)}

Its terms alternate in sign and grow like e^{2ρx}, so it cancels catastrophically in floating
point; it is summed here in decimal arithmetic with enough digits to absorb the cancellation.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

from scipy import optimize

__all__ = ["md1_mean_wait", "md1_rate_for_wait_quantile", "md1_wait_cdf", "md1_wait_quantile"]


def _check_load(arrival_rate: float, service_rate: float) -> float:
    if arrival_rate < 0 or service_rate <= 0:
        raise ValueError("rates must be positive")
    load = arrival_rate / service_rate
    if load >= 1:
        raise ValueError(f"load {load:.3g} ≥ 1: the queue is unstable, waits grow without bound")
    return load


def md1_wait_cdf(wait_s: float, arrival_rate: float, service_rate: float) -> float:
    """P(W ≤ wait_s) for FIFO M/D/1: Poisson arrivals per second, service_rate served per second."""
    load = _check_load(arrival_rate, service_rate)
    if wait_s < 0:
        return 0.0
    x = wait_s * service_rate  # in units of the service time D = 1/service_rate
    digits = 30 + int(2 * load * x / math.log(10))  # the terms reach about e^{2ρx}
    with localcontext() as ctx:
        ctx.prec = digits
        rho, dx = Decimal(load), Decimal(x)
        total = (rho * dx).exp()  # the k = 0 term
        factorial = Decimal(1)
        for k in range(1, math.floor(x) + 1):
            factorial *= k
            gap = Decimal(k) - dx  # ≤ 0
            total += (rho * gap) ** k / factorial * (-rho * gap).exp()
        value = (1 - rho) * total
    return min(1.0, max(0.0, float(value)))


def md1_wait_quantile(q: float, arrival_rate: float, service_rate: float) -> float:
    """The q-quantile of the M/D/1 waiting time, seconds (0 when q ≤ P(W = 0) = 1 − ρ)."""
    load = _check_load(arrival_rate, service_rate)
    if not 0 < q < 1:
        raise ValueError("q must lie strictly between 0 and 1")
    if q <= 1 - load:
        return 0.0
    service_s = 1 / service_rate
    high = service_s
    while md1_wait_cdf(high, arrival_rate, service_rate) < q:
        high *= 2
    return float(
        optimize.brentq(
            lambda w: md1_wait_cdf(w, arrival_rate, service_rate) - q,
            0.0,
            high,
            xtol=1e-9 * service_s,
            rtol=1e-12,
        )
    )


def md1_mean_wait(arrival_rate: float, service_rate: float) -> float:
    """Mean M/D/1 waiting time, seconds (Pollaczek–Khinchine): ρ / (2 μ (1 − ρ))."""
    load = _check_load(arrival_rate, service_rate)
    return load / (2 * service_rate * (1 - load))


def md1_rate_for_wait_quantile(arrival_rate: float, q: float, max_wait_s: float) -> float:
    """The smallest service rate (per second) whose M/D/1 q-quantile wait is at most max_wait_s."""
    if max_wait_s <= 0:
        raise ValueError("max_wait_s must be positive")

    def excess(rate: float) -> float:
        return md1_wait_quantile(q, arrival_rate, rate) - max_wait_s

    high = 2 * arrival_rate + 1 / max_wait_s
    while excess(high) > 0:
        high *= 2
    low = high  # walk down towards the arrival rate until the quantile exceeds the target
    while excess(low) <= 0:
        low = arrival_rate + (low - arrival_rate) / 2
        high = min(high, 2 * low - arrival_rate)  # the previous `low`, which met the target
    return float(optimize.brentq(excess, low, high, xtol=1e-9, rtol=1e-12))
