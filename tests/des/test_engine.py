"""The SimPy model: exact logs on tiny cases, block-size independence, conservation, determinism."""

import numpy as np
import pytest

from sim import policy
from sim.des import engine, simulate_replication
from tests.support.builders import ListSink, explicit_bucket, scenario, trace_scenario

ALWAYS_503 = {"latency": {"kind": "constant", "value": 0.1}, "responses": {503: 1.0}}
NO_JITTER = {"backoff": {"base": 1, "multiplier": 2, "cap": 900, "jitter": "none"}}


def run(s, replication=0, block_sizes=None):
    sink = ListSink()
    if block_sizes is None:
        simulate_replication(s, replication, sink)
    else:
        engine.Model(s, replication, sink, block_sizes=block_sizes).run()
    return sink


def log(rows, *names):
    return [
        tuple(np.round(rows[n][i], 9).item() for n in names) for i in range(rows["event_id"].size)
    ]


@pytest.mark.parametrize("burst", [1, 5])
def test_trace_dispatches_exactly_when_the_bucket_allows(tmp_path, burst):
    rng = np.random.default_rng(1)
    times = np.sort(np.concatenate([rng.uniform(0, 100, 600), rng.uniform(40, 41, 300)]))
    s = trace_scenario(
        tmp_path,
        times.tolist(),
        horizon=1000,
        destination={"invocation_rate_limit_per_second": 10, "burst_capacity": burst},
    )
    rows = run(s).rows()
    assert rows["event_id"].size == times.size and (rows["outcome"] == policy.DELIVERED).all()
    expected = explicit_bucket(times, 10.0, burst)
    np.testing.assert_allclose(rows["dispatch_at"], expected, rtol=0, atol=1e-6)


def test_exact_log_of_retries_until_the_attempt_limit(tmp_path):
    s = trace_scenario(
        tmp_path,
        [0.0],
        endpoint=ALWAYS_503,
        dead_letter_queue=True,
        retry_policy={"maximum_retry_attempts": 3, **NO_JITTER},
    )
    assert log(
        run(s).rows(), "attempt", "dispatch_at", "complete_at", "status", "final", "final_reason"
    ) == [
        (1, 0.0, 0.1, 503, policy.NO_FINAL, policy.NO_REASON),
        (2, 1.1, 1.2, 503, policy.NO_FINAL, policy.NO_REASON),
        (3, 3.2, 3.3, 503, policy.NO_FINAL, policy.NO_REASON),
        (4, 7.3, 7.4, 503, policy.FINAL_DLQ, policy.MAXIMUM_RETRY_ATTEMPTS),
    ]


def test_retry_after_wins_when_longer_and_negative_stops(tmp_path):
    endpoint = {
        "latency": {"kind": "constant", "value": 0},
        "responses": {429: 1.0},
        "retry_after": {429: "30s"},
    }
    s = trace_scenario(
        tmp_path,
        [0.0],
        endpoint=endpoint,
        horizon=100,
        retry_policy={"maximum_retry_attempts": 2, **NO_JITTER},
    )
    rows = run(s).rows()
    assert log(rows, "dispatch_at", "retry_after_s", "final") == [
        (0.0, 30.0, 0),
        (30.0, 30.0, 0),
        (60.0, 30.0, policy.FINAL_DROPPED),
    ]
    endpoint["retry_after"] = {429: -1}
    rows = run(trace_scenario(tmp_path, [0.0], endpoint=endpoint)).rows()
    assert log(rows, "attempt", "final", "final_reason") == [
        (1, policy.FINAL_DROPPED, policy.RETRY_AFTER_NEGATIVE)
    ]


def test_a_retry_that_would_outlive_the_maximum_age_ends_now(tmp_path):
    endpoint = {"latency": {"kind": "constant", "value": 0}, "responses": {503: 1.0}}
    s = trace_scenario(
        tmp_path,
        [0.0],
        endpoint=endpoint,
        horizon=200,
        dead_letter_queue=True,
        retry_policy={"maximum_event_age": 60, **NO_JITTER},
    )
    assert log(run(s).rows(), "dispatch_at", "final_reason") == [
        (0.0, 0),
        (1.0, 0),
        (3.0, 0),
        (7.0, 0),
        (15.0, 0),
        (31.0, policy.MAXIMUM_EVENT_AGE),
    ]


def test_events_age_out_while_waiting_for_a_token(tmp_path):
    s = trace_scenario(
        tmp_path,
        [0.0] * 100,
        horizon=200,
        dead_letter_queue=True,
        destination={"invocation_rate_limit_per_second": 1, "burst_capacity": 1},
        retry_policy={"maximum_event_age": 60},
    )
    rows = run(s).rows()
    sent = rows["outcome"] == policy.DELIVERED
    assert rows["dispatch_at"][sent].tolist() == list(np.arange(60.0))
    aged = rows["outcome"] == policy.EXPIRED
    assert aged.sum() == 40 and (rows["complete_at"][aged] == 60.0).all()
    assert (rows["final_reason"][aged] == policy.MAXIMUM_EVENT_AGE).all() and np.isnan(
        rows["dispatch_at"][aged]
    ).all()


def test_client_timeout(tmp_path):
    endpoint = {"latency": {"kind": "constant", "value": 10}}
    s = trace_scenario(
        tmp_path, [0.0], endpoint=endpoint, retry_policy={"maximum_retry_attempts": 0}
    )
    assert log(run(s).rows(), "complete_at", "status", "outcome", "final_reason") == [
        (5.0, policy.STATUS_TIMEOUT, policy.TIMEOUT, policy.MAXIMUM_RETRY_ATTEMPTS)
    ]


def test_capacity_queues_then_overloads(tmp_path):
    endpoint = {
        "latency": {"kind": "constant", "value": 1},
        "capacity": {"concurrency": 1, "queue": 1, "overload_status": 503},
    }
    s = trace_scenario(
        tmp_path,
        [0.0, 0.1, 0.2, 1.5],
        endpoint=endpoint,
        horizon=60,
        destination={"invocation_rate_limit_per_second": None},
        retry_policy=NO_JITTER,
    )
    assert log(run(s).rows(), "event_id", "dispatch_at", "complete_at", "status") == [
        (0, 0.0, 1.0, 200),
        (1, 0.1, 2.0, 200),  # queued behind event 0
        (2, 0.2, 0.2, 503),  # server busy and queue full: answered at once
        (2, 1.2, 3.0, 200),  # retry after 1 s backoff, queued behind event 1
        (3, 1.5, 1.5, 503),  # two in the system again
        (3, 2.5, 4.0, 200),
    ]


def test_an_abandoned_request_keeps_its_server(tmp_path):
    endpoint = {
        "latency": {"kind": "constant", "value": 8},
        "capacity": {"concurrency": 1, "queue": 0},
    }
    s = trace_scenario(
        tmp_path,
        [0.0],
        endpoint=endpoint,
        horizon=60,
        retry_policy=NO_JITTER,
        destination={"invocation_rate_limit_per_second": None},
    )
    assert log(run(s).rows(), "dispatch_at", "complete_at", "status") == [
        (0.0, 5.0, policy.STATUS_TIMEOUT),  # client gives up at 5 s; service runs to 8 s
        (6.0, 6.0, 503),  # the retry finds the server still busy
        (8.0, 13.0, policy.STATUS_TIMEOUT),  # free at 8 s, but 8 s of service exceeds the timeout
        (17.0, 22.0, policy.STATUS_TIMEOUT),
        (30.0, 35.0, policy.STATUS_TIMEOUT),
        (51.0, 56.0, policy.STATUS_TIMEOUT),
    ]


def busy_scenario(**overrides):
    base = dict(
        horizon=900,
        dead_letter_queue=True,
        arrivals=[
            {"kind": "constant", "rate_per_second": 30},
            {"kind": "burst", "start": 100, "duration": 60, "rate_per_second": 200},
        ],
        destination={"invocation_rate_limit_per_second": 40, "burst_capacity": 10},
        endpoint={
            "latency": {"kind": "lognormal", "median": 0.2, "p99": 3},
            "responses": {200: 0.9, 429: 0.04, 503: 0.05, 400: 0.01},
            "timeout_probability": 0.01,
            "retry_after": {429: 20},
            "capacity": {"concurrency": 8, "queue": 10},
            "incidents": [{"start": 400, "duration": 60, "responses": {503: 1.0}}],
        },
        retry_policy={"maximum_event_age": 300, "maximum_retry_attempts": 5},
    )
    base.update(overrides)
    return scenario(**base)


@pytest.mark.slow
def test_every_path_is_exercised_and_events_are_conserved():
    s = busy_scenario()
    sink = run(s)
    rows = sink.rows()
    arrived = sum(t.size for t in sink.arrival_times)
    outcomes = set(np.unique(rows["outcome"]).tolist())
    assert {
        policy.DELIVERED,
        policy.RETRY,
        policy.FAILED,
        policy.TIMEOUT,
        policy.EXPIRED,
    } <= outcomes
    reasons = set(np.unique(rows["final_reason"]).tolist())
    assert {
        policy.NOT_RETRYABLE,
        policy.MAXIMUM_EVENT_AGE,
        policy.MAXIMUM_RETRY_ATTEMPTS,
    } <= reasons
    ended = rows["final"] != policy.NO_FINAL
    ids, counts = np.unique(rows["event_id"][ended], return_counts=True)
    assert (counts == 1).all()  # an event ends once
    assert ((0 <= rows["event_id"]) & (rows["event_id"] < arrived)).all()
    # conservation: every arrival ended, waits out a backoff (its last row a retry), or was
    # never sent — and FIFO sends arrivals in order, so those are the newest arrivals
    last = np.r_[rows["event_id"][1:] != rows["event_id"][:-1], True]
    waiting = last & ~ended
    assert np.isfinite(rows["next_ready_at"][waiting]).all()
    seen = np.unique(rows["event_id"])
    never_sent = np.setdiff1d(np.arange(arrived), seen)
    assert np.array_equal(never_sent, np.arange(arrived - never_sent.size, arrived))
    assert ids.size + int(waiting.sum()) + never_sent.size == arrived
    # attempts of one event are consecutive, spaced by at least their completion
    same = rows["event_id"][1:] == rows["event_id"][:-1]
    assert (rows["attempt"][1:][same] == rows["attempt"][:-1][same] + 1).all()
    assert (rows["ready_at"][1:][same] == rows["next_ready_at"][:-1][same]).all()
    sent = rows["outcome"] != policy.EXPIRED
    assert (rows["dispatch_at"][sent] >= rows["ready_at"][sent]).all()
    assert (rows["dispatch_at"][sent] < s.horizon).all()


def test_same_seed_same_records_other_seed_differs():
    s = busy_scenario(horizon=300)
    first, second = run(s).rows(), run(s).rows()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    other = run(s, replication=1).rows()
    assert first["event_id"].size != other["event_id"].size or not np.array_equal(
        first["dispatch_at"], other["dispatch_at"]
    )


def test_lifo_serves_the_newest_ready_first(tmp_path):
    s = trace_scenario(
        tmp_path,
        [0.0, 0.0, 0.5, 1.5],
        horizon=60,
        destination={
            "invocation_rate_limit_per_second": 1,
            "burst_capacity": 1,
            "throttle_order": "lifo",
        },
    )
    assert log(run(s).rows(), "event_id", "dispatch_at") == [(0, 3.0), (1, 0.0), (2, 1.0), (3, 2.0)]


def test_lifo_ages_out_the_oldest_waiting(tmp_path):
    s = trace_scenario(
        tmp_path,
        [float(t) for t in range(100)],
        horizon=300,
        destination={
            "invocation_rate_limit_per_second": 0.5,
            "burst_capacity": 1,
            "throttle_order": "lifo",
        },
        retry_policy={"maximum_event_age": 60},
    )
    rows = run(s).rows()
    aged = rows["outcome"] == policy.EXPIRED
    sent = rows["outcome"] == policy.DELIVERED
    assert aged.sum() + sent.sum() == 100
    assert (rows["complete_at"][aged] == rows["arrival_at"][aged] + 60).all()
    assert (rows["dispatch_at"][sent] - rows["arrival_at"][sent] < 60).all()


@pytest.mark.slow
@pytest.mark.parametrize("order", ["fifo", "lifo"])
def test_results_do_not_depend_on_block_size_for_either_order(order):
    s = busy_scenario(
        horizon=400,
        destination={
            "invocation_rate_limit_per_second": 40,
            "burst_capacity": 10,
            "throttle_order": order,
        },
    )
    default = run(s).rows()
    one_by_one = run(s, block_sizes=(1, 1, 1)).rows()
    assert default["event_id"].size > 10_000
    for name in default:
        if default[name].dtype.kind == "f":
            np.testing.assert_allclose(default[name], one_by_one[name], atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(default[name], one_by_one[name], err_msg=name)


@pytest.mark.slow
def test_lifo_conserves_events_and_differs_from_fifo():
    fifo = busy_scenario()
    lifo = busy_scenario(
        destination={
            "invocation_rate_limit_per_second": 40,
            "burst_capacity": 10,
            "throttle_order": "lifo",
        }
    )
    rows_fifo, sink = run(fifo).rows(), run(lifo)
    rows = sink.rows()
    arrived = sum(t.size for t in sink.arrival_times)
    ended = rows["final"] != policy.NO_FINAL
    assert np.unique(rows["event_id"][ended]).size == ended.sum() <= arrived
    # overloaded, LIFO serves the newest quickly and lets the oldest age out; FIFO does the opposite
    wait_fifo = np.nanmedian(rows_fifo["dispatch_at"] - rows_fifo["ready_at"])
    wait_lifo = np.nanmedian(rows["dispatch_at"] - rows["ready_at"])
    assert wait_lifo < wait_fifo / 10
    expired = [(r["outcome"] == policy.EXPIRED).sum() for r in (rows_fifo, rows)]
    assert expired[1] > expired[0]
