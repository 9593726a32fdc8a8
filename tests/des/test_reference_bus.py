"""The reference model (one process per delivery) and the fast model on a bus: the same attempt
log, row by row, with no account quota and under one in either order (docs/bus.md B1-B6)."""

from pathlib import Path

import numpy as np
import pytest

from sim import policy
from sim.des import simulate_replication as model
from sim.des.reference import simulate_replication as reference
from sim.records import concat
from sim.scenario.loading import build_scenario
from tests.support.builders import ListSink, assert_same_attempt_log

FLAKY = {
    "latency": {"kind": "lognormal", "median": 0.12, "p99": 0.9},
    "responses": {200: 0.88, 503: 0.06, 429: 0.04, 400: 0.02},
    "timeout_probability": 0.02,
    "retry_after": {429: 3},
}
CROWDED = {
    "latency": {"kind": "gamma", "mean": 0.3, "cv": 1.0},
    "capacity": {"concurrency": 2, "queue": 3, "overload_status": 503},
}


def small_bus(order: str | None):
    """Two destinations (one shared by two rules with different policies), a burst that ages
    deliveries out, retries, Retry-After, timeouts, DLQ and drops, an M/G/c/K endpoint.

    Rates are not divisors of the 5 s timeout, so no hang's release lands exactly on a bucket's
    grid (exact ties may resolve either way under float rounding)."""
    quota = None if order is None else 11.3
    data = {
        "name": "reference-bus",
        "horizon": 300,
        "seed": 21,
        "replications": 1,
        "arrivals": [
            {"kind": "constant", "rate_per_second": 4},
            {"kind": "burst", "start": 60, "duration": 15, "rate_per_second": 30},
        ],
        "account": {"invocation_limit_per_second": quota, "burst_capacity": 4,
                    **({"order": order} if order else {})},
        "destinations": [
            {"name": "a", "invocation_rate_limit_per_second": 7.37, "burst_capacity": 3,
             "endpoint": FLAKY},
            {"name": "b", "invocation_rate_limit_per_second": 5.91, "endpoint": CROWDED},
        ],
        "rules": [
            {"name": "a-long", "match_fraction": 0.7, "target": "a", "dead_letter_queue": True,
             "retry_policy": {"maximum_event_age": 90}},
            {"name": "a-short", "match_fraction": 0.4, "target": "a",
             "retry_policy": {"maximum_event_age": 60, "maximum_retry_attempts": 2}},
            {"name": "b-all", "match_fraction": 1, "target": "b", "dead_letter_queue": True,
             "retry_policy": {"maximum_event_age": 120}},
        ],
        "sample_every": 10,
    }  # fmt: skip
    return build_scenario(data, source="test", base_dir=Path("."))


def rows_of(simulate, s) -> dict[str, np.ndarray]:
    sink = ListSink()
    simulate(s, 0, sink)
    merged = concat(sink.chunks)
    order = np.lexsort((merged["attempt"], merged["rule"], merged["event_id"]))
    return {name: column[order] for name, column in merged.items()}


@pytest.mark.slow
@pytest.mark.parametrize("order", [None, "after_destination", "before_destination"],
                         ids=["no-quota", "after", "before"])  # fmt: skip
def test_reference_gives_the_models_exact_attempt_log_on_a_bus(order):
    s = small_bus(order)
    fast, slow = rows_of(model, s), rows_of(reference, s)
    exercised = {policy.DELIVERED, policy.RETRY, policy.FAILED, policy.TIMEOUT, policy.EXPIRED}
    assert exercised <= set(fast["outcome"].tolist())
    assert set(fast["rule"].tolist()) == {0, 1, 2}
    if order is not None:
        assert (fast["account_wait_s"] > 0).mean() > 0.05  # the quota binds
    assert_same_attempt_log(fast, slow)
