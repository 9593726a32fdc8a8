"""The exact M/D/1 waiting-time distribution (sim.analysis.theory) against long simulations.

Two independent checks: a 4-million-customer Lindley recursion in NumPy (no sim code at all),
and the model itself (burst capacity 1, zero latency, all 200), whose delivery delay is the
M/D/1 waiting time. Seeds are fixed; tolerances are several standard errors wide.
"""

import numpy as np
import pytest

from sim.analysis.theory import (
    md1_mean_wait,
    md1_rate_for_wait_quantile,
    md1_wait_cdf,
    md1_wait_quantile,
)
from sim.runner.simulate import simulate
from tests.support.builders import scenario


def lindley_waits(arrival_rate: float, service_rate: float, n: int, seed: int) -> np.ndarray:
    """FIFO waits of n Poisson customers at a deterministic server: W = S - min(0, min S)."""
    rng = np.random.default_rng(seed)
    steps = 1 / service_rate - rng.exponential(1 / arrival_rate, n)
    steps[0] = 0.0
    walk = np.cumsum(steps)
    return walk - np.minimum(np.minimum.accumulate(walk), 0.0)


def test_no_wait_with_probability_one_minus_load_and_pk_mean():
    assert md1_wait_cdf(0.0, 8, 10) == pytest.approx(0.2, abs=1e-12)
    grid = np.linspace(0, 6, 1201)  # seconds; P(W > 6 s) is negligible at load 0.8, D = 0.1 s
    cdf = np.array([md1_wait_cdf(t, 8, 10) for t in grid])
    assert np.all(np.diff(cdf) >= 0) and cdf[-1] == pytest.approx(1, abs=1e-9)
    mean = float(np.trapezoid(1 - cdf, grid))  # E[W] = ∫ P(W > t) dt
    assert mean == pytest.approx(md1_mean_wait(8, 10), rel=1e-4)


def test_stable_deep_in_the_tail_at_high_load():
    """At load 0.97 the p99.9 lies ~150 service times out: naive float sums would give garbage."""
    q = md1_wait_quantile(0.999, 97, 100)
    assert 1.0 < q < 5.0
    values = [md1_wait_cdf(t, 97, 100) for t in np.linspace(0, q, 50)]
    assert all(0 <= v <= 1 for v in values) and np.all(np.diff(values) >= 0)
    assert md1_wait_cdf(q, 97, 100) == pytest.approx(0.999, abs=1e-9)


@pytest.mark.parametrize("load", [0.5, 0.8, 0.9])
def test_distribution_matches_a_long_lindley_simulation(load):
    waits = lindley_waits(10 * load, 10, 4_000_000, seed=int(load * 10))
    for q in (0.5, 0.9, 0.99):
        theory = md1_wait_quantile(q, 10 * load, 10)
        assert np.quantile(waits, q) == pytest.approx(theory, rel=0.03, abs=2e-3)
    for t in (0.05, 0.2, 0.5):
        assert (waits <= t).mean() == pytest.approx(md1_wait_cdf(t, 10 * load, 10), abs=4e-3)


def test_model_delivery_delay_is_the_md1_wait():
    """Poisson 80/s, limit 100/s, burst 1: the model's delay quantiles are the M/D/1 quantiles."""
    s = scenario(
        horizon=1800,
        replications=4,
        seed=11,
        arrivals=[{"kind": "constant", "rate_per_second": 80}],
        destination={"invocation_rate_limit_per_second": 100, "burst_capacity": 1},
    )
    metrics = simulate(s, workers=1).metrics["mean"]
    for q, name in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
        assert metrics[f"delivery_delay_s.{name}"] == pytest.approx(
            md1_wait_quantile(q, 80, 100), rel=0.03
        )


def test_rate_for_a_wait_quantile_inverts_the_quantile():
    rate = md1_rate_for_wait_quantile(80, 0.99, 0.05)
    assert md1_wait_quantile(0.99, 80, rate) == pytest.approx(0.05, rel=1e-6)
    assert (
        md1_wait_quantile(0.99, 80, rate * 0.99) > 0.05 > md1_wait_quantile(0.99, 80, rate * 1.01)
    )


def test_unstable_or_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unstable"):
        md1_wait_cdf(1.0, 10, 10)
    with pytest.raises(ValueError):
        md1_wait_quantile(1.0, 5, 10)
