"""Validation building blocks with exact expectations: arrivals, load generator, overhead."""

import asyncio

import numpy as np
import pytest

from sim import policy
from sim.des import simulate_replication
from sim.endpoint.server import RequestRecord
from sim.records import concat
from sim.validation.live import EVENT_HEADER, LiveRun
from sim.validation.loadgen import LoadGenerator, arrival_times, make_event
from sim.validation.observe import Collector, before_horizon
from sim.validation.overhead import conformance, corrected_records, ideal_dispatch, measure
from tests.support.builders import chunk, scenario

NAN = np.nan


def test_the_live_arrivals_are_the_models_arrivals_for_that_replication():
    s = scenario(
        horizon=300,
        arrivals=[
            {"kind": "constant", "rate_per_second": 20},
            {"kind": "burst", "start": 100, "duration": 30, "rate_per_second": 80},
        ],
    )
    sink = Collector()
    simulate_replication(s, 7, sink)
    np.testing.assert_array_equal(arrival_times(s, 7), np.concatenate(sink.arrival_times))
    assert not np.array_equal(arrival_times(s, 7)[:50], arrival_times(s, 8)[:50])


def test_load_generator_submits_every_event_in_order_never_early_beyond_a_batch():
    times = np.sort(np.random.default_rng(1).uniform(0, 0.3, 200))
    batches: list[list[dict]] = []

    async def main() -> LoadGenerator:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def submit(events):
            batches.append(list(events))

        generator = LoadGenerator(times, submit, lambda: loop.time() - t0)
        await generator.run()
        return generator

    generator = asyncio.run(main())
    ids = [int(e["id"]) for batch in batches for e in batch]
    assert ids == list(range(200))
    assert batches[0][0] == make_event(0, float(times[0]))
    assert (generator.lag_s >= -generator.batch_s - 1e-9).all()


def test_ideal_dispatch_serves_sent_attempts_oldest_ready_first_through_the_bucket():
    records = chunk(
        event_id=[1, 2, 3, 4],
        ready_at=[0.0, 0.0, 0.05, 0.01],
        dispatch_at=[0.004, 0.120, NAN, 0.210],  # event 3 aged out: takes no token
    )
    ideal = ideal_dispatch(records, rate=10.0, burst=1.0)
    np.testing.assert_allclose(ideal, [0.0, 0.1, NAN, 0.2])


def live_run(records, requests, event_of_delivery, horizon=10.0, timeout=1.0):
    s = scenario(
        horizon=horizon,
        sample_every=1,
        destination={"invocation_rate_limit_per_second": None, "timeout": timeout},
    )
    return LiveRun(
        scenario=s,
        replication=0,
        scheduled_at=np.array([0.0, 0.0]),
        submitted_at=np.array([0.001, 0.002]),
        arrival_times=np.array([0.001, 0.002]),
        records=records,
        requests=requests,
        event_of_delivery=event_of_delivery,
        wall_s=0.0,
    )


def request(event: int, arrival_at: float, service_s: float, completed_at: float, wait=0.0):
    return RequestRecord(
        arrival_at=arrival_at,
        method="POST",
        path="/",
        query={},
        headers={EVENT_HEADER: str(event)},
        queue_wait_s=wait,
        service_s=service_s,
        completed_at=completed_at,
    )


def test_overhead_per_attempt_and_the_corrected_records():
    """Delivery 7 (event 0): a 503 then a 200; delivery 8 (event 1): a client timeout.
    Unlimited rate, so the token schedule is the ready time itself."""
    records = chunk(
        event_id=[7, 8, 7],
        attempt=[1, 1, 2],
        arrival_at=[1.0, 2.0, 1.0],
        ready_at=[1.0, 2.0, 1.6],
        dispatch_at=[1.01, 2.02, 1.64],
        complete_at=[1.23, 3.03, 1.75],
        status=[503, 0, 200],
        outcome=[policy.RETRY, policy.TIMEOUT, policy.DELIVERED],
        next_ready_at=[1.6, 3.53, NAN],
        final=[policy.NO_FINAL, policy.NO_FINAL, policy.FINAL_DELIVERED],
    )
    requests = [
        request(0, 1.012, 0.2, 1.22),  # client saw 0.22 s for 0.2 s: excess 0.02
        request(1, 2.021, 1.0, 3.03),  # a hang: the client's 1 s timeout is the model's time
        request(0, 1.641, 0.1, 1.745),  # client saw 0.11 s for 0.1 s: excess 0.01
    ]
    live = live_run(records, requests, {7: 0, 8: 1})
    overhead = measure(live)
    np.testing.assert_allclose(overhead.dispatch_lag_s, [0.01, 0.02, 0.04])
    np.testing.assert_allclose(overhead.client_excess_s, [0.02, 0.01, 0.01], atol=1e-12)
    np.testing.assert_allclose(overhead.connect_s, [0.002, 0.001, 0.001], atol=1e-12)
    assert overhead.n_unmatched == 0 and overhead.n_orphans == 0 and overhead.n_requests == 3
    fixed = corrected_records(records, overhead, rate=None, burst=1.0)
    # response = client time − excess (0.2, 1.0, 0.1); waits as live (0.37, 0.5)
    np.testing.assert_allclose(fixed["ready_at"], [1.0, 2.0, 1.57])
    np.testing.assert_allclose(fixed["dispatch_at"], [1.0, 2.0, 1.57])
    np.testing.assert_allclose(fixed["complete_at"], [1.2, 3.0, 1.67])
    np.testing.assert_allclose(fixed["next_ready_at"], [1.57, 3.5, NAN])
    np.testing.assert_array_equal(fixed["arrival_at"], records["arrival_at"])
    np.testing.assert_array_equal(fixed["status"], records["status"])


def test_the_ideal_core_dispatches_on_the_token_schedule_oldest_ready_first():
    """Live, a stall let three deliveries out at once (t = 0.5); the ideal core spaces them
    at 1/r from their ready times, and the retry of event 1 joins by its ready time."""
    records = chunk(
        event_id=[1, 2, 3, 1],
        attempt=[1, 1, 1, 2],
        arrival_at=[0.0, 0.05, 0.1, 0.0],
        ready_at=[0.0, 0.05, 0.1, 0.75],
        dispatch_at=[0.5, 0.5, 0.5, 0.8],
        complete_at=[0.55, 0.55, 0.55, 0.85],
        outcome=[policy.RETRY, policy.DELIVERED, policy.DELIVERED, policy.DELIVERED],
        next_ready_at=[0.75, NAN, NAN, NAN],
    )
    overhead = measure(live_run(records, [], {1: 0, 2: 1, 3: 2}))
    fixed = corrected_records(records, overhead, rate=10.0, burst=1.0)
    # event 1's retry is ready at 0.05 + 0.2 (its live wait) = 0.25; its token comes at 0.3
    np.testing.assert_allclose(fixed["ready_at"], [0.0, 0.05, 0.1, 0.25])
    np.testing.assert_allclose(fixed["dispatch_at"], [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(fixed["complete_at"], [0.05, 0.15, 0.25, 0.35])


def test_attempts_the_endpoint_never_saw_are_counted_and_left_uncorrected():
    records = chunk(
        event_id=[7], attempt=[1], arrival_at=[1.0], ready_at=[1.0], dispatch_at=[1.0],
        complete_at=[1.001], status=[policy.STATUS_CONNECTION_ERROR],
        outcome=[policy.CONNECTION_ERROR], final=[policy.NO_FINAL], next_ready_at=[2.0],
    )  # fmt: skip
    overhead = measure(live_run(records, [], {7: 0}))
    assert overhead.n_unmatched == 1 and np.isnan(overhead.client_excess_s[0])
    fixed = corrected_records(records, overhead, rate=None, burst=1.0)
    np.testing.assert_allclose(fixed["complete_at"], [1.001])


def test_only_what_the_model_could_record_before_the_horizon_is_kept():
    records = chunk(
        event_id=[1, 2, 3, 4],
        dispatch_at=[9.9, 10.0, NAN, NAN],
        complete_at=[10.5, 10.2, 9.5, 10.0],  # 3 and 4: age-outs at their deadline
    )
    kept = before_horizon(records, 10.0)
    assert kept["event_id"].tolist() == [1, 3]


@pytest.mark.parametrize("status", [200, 503])
def test_client_excess_uses_queue_wait_plus_service(status):
    records = chunk(
        event_id=[1], attempt=[1], arrival_at=[0.0], ready_at=[0.0], dispatch_at=[0.0],
        complete_at=[0.5], status=[status], outcome=[policy.DELIVERED], final=[1],
    )  # fmt: skip
    live = live_run(records, [request(0, 0.001, 0.3, 0.49, wait=0.15)], {1: 0})
    assert measure(live).client_excess_s[0] == pytest.approx(0.05)


def model_records(rate: float, burst: float, order: str = "fifo"):
    """One model run's attempt records: a perfect core at `rate`/`burst`, serving `order`."""
    s = scenario(
        horizon=40,
        sample_every=5,
        arrivals=[
            {"kind": "constant", "rate_per_second": 20},
            {"kind": "burst", "start": 5, "duration": 10, "rate_per_second": 120},
        ],
        destination={
            "invocation_rate_limit_per_second": rate,
            "burst_capacity": burst,
            "throttle_order": order,
        },
        endpoint={
            "latency": {"kind": "constant", "value": 0.01},
            "responses": {200: 0.9, 503: 0.1},
        },
    )
    sink = Collector()
    simulate_replication(s, 0, sink)
    return concat(sink.chunks)


def test_a_core_keeping_to_its_schedule_conforms():
    result = conformance(model_records(40, 10), rate=40, burst=10)
    assert result.ok and result.attempts > 1000 and result.problems() == []


def test_a_core_dispatching_at_twice_the_rate_does_not_conform():
    """The reviewer's case: 2x the rate, burst 200. The re-timing would hide it; this cannot."""
    result = conformance(model_records(80, 200), rate=40, burst=10)
    assert not result.ok and result.ahead > 100 and result.ahead_max_s > 1.0
    assert "ahead of the token bucket" in result.problems()[0]


def test_a_lifo_core_configured_fifo_does_not_conform():
    result = conformance(model_records(40, 10, order="lifo"), rate=40, burst=10)
    assert result.ahead == 0  # its rate is right: only its order is wrong
    assert not result.ok and result.out_of_order > 100 and result.out_of_order_max_s > 1.0
    assert "out of the configured" in result.problems()[0]


def test_conformance_tolerates_jitter_but_not_a_dispatch_before_ready():
    records = chunk(
        event_id=[1, 2, 3],
        ready_at=[0.0, 0.002, 1.0],
        dispatch_at=[0.003, 0.001, 0.99],  # 2 before 1 within 5 ms; 3 ten ms before ready
    )
    result = conformance(records, rate=None, burst=1.0)
    assert result.out_of_order == 0
    assert result.before_ready == 1 and result.before_ready_max_s == pytest.approx(0.01)
    assert not result.ok
