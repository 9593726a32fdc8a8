"""The one-process-per-event baseline (sim/des/reference.py) and the model give the same attempt log.

Both consume the same random streams in dispatch order and decide through `sim.policy`, so on
the same seed every row must match: a disagreement means one engine breaks the semantics.
"""

import numpy as np
import pytest

from sim import policy
from sim.des import simulate_replication as model
from sim.des.reference import simulate_replication as baseline
from tests.support.builders import ListSink, assert_same_attempt_log, scenario

ENDPOINT = {
    "latency": {"kind": "lognormal", "median": 0.12, "p99": 0.9},
    "responses": {200: 0.9, 503: 0.05, 429: 0.03, 400: 0.02},
    "timeout_probability": 0.02,
    "retry_after": {429: 3},
}
CAPACITY = {"concurrency": 3, "queue": 4, "overload_status": 503}


def busy_scenario(capacity: dict | None):
    """Retries, Retry-After, timeouts, a burst that ages events out, DLQ; optionally M/G/c/K.

    The rate is not a divisor of the 5 s timeout, so no hang's release lands exactly on the
    bucket's dispatch grid (such exact ties may resolve either way under float rounding).
    """
    endpoint = dict(ENDPOINT, capacity=capacity) if capacity else ENDPOINT
    return scenario(
        horizon=400,
        arrivals=[
            {"kind": "constant", "rate_per_second": 6},
            {"kind": "burst", "start": 60, "duration": 20, "rate_per_second": 60},
        ],
        destination={"invocation_rate_limit_per_second": 9.73, "burst_capacity": 5},
        endpoint=endpoint,
        retry_policy={"maximum_event_age": 90},
        dead_letter_queue=True,
    )


def rows_of(simulate, s) -> dict[str, np.ndarray]:
    sink = ListSink()
    simulate(s, 1, sink)
    return sink.rows()


@pytest.mark.parametrize("capacity", [None, CAPACITY], ids=["unlimited", "mgck"])
def test_baseline_gives_the_models_exact_attempt_log(capacity):
    s = busy_scenario(capacity)
    fast, slow = rows_of(model, s), rows_of(baseline, s)
    exercised = {policy.DELIVERED, policy.RETRY, policy.FAILED, policy.TIMEOUT, policy.EXPIRED}
    assert exercised <= set(fast["outcome"].tolist())
    assert (fast["final_reason"] == policy.MAXIMUM_EVENT_AGE).any()
    assert_same_attempt_log(fast, slow)


def test_capacity_overloads_appear_in_the_log():
    rows = rows_of(model, busy_scenario(CAPACITY))
    overloaded = (rows["status"] == 503) & (rows["complete_at"] == rows["dispatch_at"])
    assert overloaded.any()
