"""The model against exact recursions and queueing theory where tests/des does not reach.

tests/des covers M/D/1 with burst 1 (mean wait at loads 0.3–0.9), Little's law, zero-error
delivery and dispatch times on a short replayed trace for burst 1 and 5. Added here: for burst
b > 1, on the model's own long Poisson stream — and with retries merging back into the queue —
every wait equals the Lindley recursion of a D/1 queue minus the bucket's slack (b − 1)/r; and
the wait distribution matches Erlang's exact M/D/1 formula shifted by that slack.
"""

from decimal import Decimal, localcontext
from math import factorial, floor

import numpy as np
import pytest

from sim import policy
from sim.des import simulate_replication
from tests.support.builders import ListSink, scenario

RATE = 10.0  # tokens per second: service time D = 0.1 s of the virtual D/1 queue


def token_waits_by_lindley(ready_at: np.ndarray, rate: float, burst: float) -> np.ndarray:
    """Waits for a token of items served in ready order, from the D/1 Lindley recursion.

    W_n = max(0, W_{n-1} + D − (t_n − t_{n-1})) is the wait of a D/1 queue with service D = 1/r;
    a bucket of capacity b lets an item go (b − 1)·D before the queue would: wait = (W − (b−1)D)+.
    """
    service, slack = 1.0 / rate, (burst - 1.0) / rate
    queue_wait = np.empty(ready_at.size)
    previous = 0.0
    for n in range(ready_at.size):
        gap = ready_at[n] - ready_at[n - 1] if n else np.inf
        previous = max(0.0, previous + service - gap) if n else 0.0
        queue_wait[n] = previous
    return np.maximum(queue_wait - slack, 0.0)


def run(load: float, burst: float, horizon: float, **overrides) -> dict[str, np.ndarray]:
    s = scenario(
        horizon=horizon,
        arrivals=[{"kind": "constant", "rate_per_second": load * RATE}],
        destination={"invocation_rate_limit_per_second": RATE, "burst_capacity": burst},
        **overrides,
    )
    sink = ListSink()
    simulate_replication(s, 0, sink)
    return sink.rows()


@pytest.mark.parametrize("burst", [3, 20])
def test_waits_equal_the_lindley_recursion_for_burst_above_one(burst):
    rows = run(0.95, burst, horizon=3600)
    order = np.lexsort((rows["dispatch_at"], rows["ready_at"]))
    waits = (rows["dispatch_at"] - rows["ready_at"])[order]
    expected = token_waits_by_lindley(rows["ready_at"][order], RATE, burst)
    assert rows["event_id"].size > 30_000 and (waits > 0).mean() > 0.1  # the bucket binds
    np.testing.assert_allclose(waits, expected, rtol=0, atol=1e-7)


def test_retries_merge_into_the_lindley_recursion_by_ready_time():
    """10 % of responses are 503: retries rejoin the FIFO at their ready time (S3) and every
    attempt, first or retry, takes one token (S2)."""
    rows = run(
        0.8,
        5,
        horizon=1800,
        endpoint={
            "latency": {"kind": "constant", "value": 0.05},
            "responses": {200: 0.9, 503: 0.1},
        },
    )
    sent = ~np.isnan(rows["dispatch_at"])
    order = np.lexsort((rows["dispatch_at"][sent], rows["ready_at"][sent]))
    ready, dispatch = rows["ready_at"][sent][order], rows["dispatch_at"][sent][order]
    assert (rows["attempt"] > 1).sum() > 1000 and (rows["outcome"] == policy.RETRY).any()
    np.testing.assert_allclose(
        dispatch - ready, token_waits_by_lindley(ready, RATE, 5), rtol=0, atol=1e-7
    )


def md1_wait_cdf(wait_s: float, arrival_rate: float, service_s: float) -> float:
    """Erlang's exact M/D/1 waiting-time CDF, summed in decimal arithmetic (its terms cancel):
    P(W ≤ x) = (1 − ρ) Σ_{k=0}^{⌊x/D⌋} (λ(kD − x))^k / k! · e^{−λ(kD − x)}."""
    with localcontext() as ctx:
        ctx.prec = 60
        lam, x, d = Decimal(arrival_rate), Decimal(wait_s), Decimal(service_s)
        total = (lam * x).exp()  # k = 0 (Decimal refuses 0 ** 0)
        for k in range(1, floor(wait_s / service_s) + 1):
            total += (lam * (k * d - x)) ** k / factorial(k) * (-lam * (k * d - x)).exp()
        return float((1 - lam * d) * total)


@pytest.mark.slow
def test_erlang_formula_reference_values():
    """P(W = 0) = 1 − ρ, and the M/D/1 mean wait by Pollaczek–Khinchine from the CDF."""
    assert md1_wait_cdf(0.0, 8, 0.1) == pytest.approx(0.2, abs=1e-12)
    grid = np.linspace(0, 6, 6001)
    cdf = np.array([md1_wait_cdf(x, 8, 0.1) for x in grid[::10]])
    mean = np.sum(1 - cdf) * (grid[10] - grid[0])
    assert mean == pytest.approx(0.8 / (2 * 10 * 0.2), rel=0.02)


@pytest.mark.slow
@pytest.mark.parametrize("burst", [2, 5])
def test_wait_distribution_is_md1_shifted_by_the_bucket_slack(burst):
    """Poisson 8/s into 10/s with burst b: P(wait ≤ x) = P_MD1(W ≤ x + (b − 1)/r). 12 h, one
    replication (about 345,000 waits); tolerance 0.01 on each of five CDF points."""
    rows = run(0.8, burst, horizon=43200)
    waits = rows["dispatch_at"] - rows["ready_at"]
    slack = (burst - 1) / RATE
    for x in (0.0, 0.1, 0.25, 0.5, 1.0):
        expected = md1_wait_cdf(x + slack, 8.0, 1 / RATE)
        assert (waits <= x + 1e-9).mean() == pytest.approx(expected, abs=0.01), x
