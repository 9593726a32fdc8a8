"""The shared policy: token bucket, classification, backoff, Retry-After, limits (design S2, S5–S9)."""

import email.utils
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sim import policy
from sim.scenario.model import Backoff, RetryPolicy
from tests.support.builders import explicit_bucket

ready_times = st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=200).map(sorted)


@given(ready_times, st.floats(0.1, 1000), st.integers(1, 50))
def test_gcra_equals_an_explicit_token_count(ready, rate, capacity):
    dispatch, _ = policy.gcra_schedule(0.0, rate, float(capacity), np.array(ready))
    np.testing.assert_allclose(dispatch, explicit_bucket(ready, rate, capacity), rtol=0, atol=1e-6)


@given(ready_times, st.floats(0.1, 1000), st.integers(1, 50), st.integers(0, 199))
def test_gcra_blocks_chain_like_one_long_run(ready, rate, capacity, split):
    ready = np.array(ready)
    split = min(split, ready.size)
    whole, _ = policy.gcra_schedule(0.0, rate, capacity, ready)
    first, state = policy.gcra_schedule(0.0, rate, capacity, ready[:split])
    second, _ = policy.gcra_schedule(state[-1] if split else 0.0, rate, capacity, ready[split:])
    np.testing.assert_allclose(np.concatenate((first, second)), whole, atol=1e-9)


def test_token_bucket_object_matches_schedule_and_starts_full():
    bucket = policy.TokenBucket(rate_per_second=2.0, capacity=3.0)
    assert bucket.tokens_at(0.0) == 3.0
    assert [bucket.take(0.0) for _ in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]
    assert bucket.tokens_at(1.0) == 0.0 and bucket.tokens_at(10.0) == 3.0


def test_unlimited_rate_never_waits():
    dispatch, _ = policy.gcra_schedule(0.0, None, 1.0, np.array([0.0, 0.0, 1.0]))
    assert dispatch.tolist() == [0.0, 0.0, 1.0]


TABLE = policy.outcome_table([409, 429, "5xx"])


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, policy.DELIVERED),
        (204, policy.DELIVERED),
        (299, policy.DELIVERED),
        (409, policy.RETRY),
        (429, policy.RETRY),
        (500, policy.RETRY),
        (503, policy.RETRY),
        (599, policy.RETRY),
        (100, policy.FAILED),
        (301, policy.FAILED),
        (302, policy.FAILED),
        (400, policy.FAILED),
        (401, policy.FAILED),
        (404, policy.FAILED),
        (407, policy.FAILED),
        (408, policy.FAILED),
        (policy.STATUS_TIMEOUT, policy.TIMEOUT),
        (policy.STATUS_CONNECTION_ERROR, policy.CONNECTION_ERROR),
    ],
)
def test_classification_follows_s5(status, outcome):
    assert policy.classify(status, TABLE) == outcome


def test_retry_statuses_can_add_401_and_407():
    table = policy.outcome_table([401, 407, 409, 429, "5xx"])
    assert policy.classify(np.array([401, 407, 403]), table).tolist() == [
        policy.RETRY,
        policy.RETRY,
        policy.FAILED,
    ]


backoffs = st.builds(
    Backoff,
    base=st.floats(0.01, 10),
    multiplier=st.floats(1, 4),
    cap=st.floats(10, 3600),
    jitter=st.sampled_from(["full", "equal", "none", "decorrelated"]),
)


@given(backoffs, st.integers(1, 185), st.floats(0, 1, exclude_max=True), st.floats(0.01, 3600))
def test_backoff_is_within_zero_and_cap(backoff, k, u, previous):
    delay = policy.backoff_delay(k, u, backoff, previous)
    assert 0 <= delay <= backoff.cap + 1e-9
    ceiling = min(backoff.cap, backoff.base * backoff.multiplier ** (k - 1))
    if backoff.jitter == "full":
        assert delay <= ceiling * (1 + 1e-12)
    elif backoff.jitter == "equal":
        assert ceiling / 2 - 1e-9 <= delay <= ceiling * (1 + 1e-12)
    elif backoff.jitter == "none":
        assert delay == pytest.approx(ceiling)
    else:
        # uniform between base and 3 x the previous delay (Brooker's decorrelated jitter), capped
        low, high = sorted((backoff.base, 3 * previous))
        assert min(low, backoff.cap) - 1e-9 <= delay <= min(high, backoff.cap) + 1e-9


def test_default_backoff_spans_about_a_day_over_185_retries():
    backoff = Backoff()
    ceilings = policy.backoff_delay(np.arange(1, 186), np.ones(185) - 1e-12, Backoff(jitter="none"))
    assert ceilings[:4].tolist() == [1, 2, 4, 8] and ceilings.max() == backoff.cap
    assert 0.5 * 86400 < ceilings.sum() / 2 < 1.5 * 86400  # mean of full jitter: half the ceiling


def test_backoff_vectorized_equals_scalar():
    backoff = Backoff(base=0.5, multiplier=3, cap=60)
    k, u = np.arange(1, 30), np.linspace(0, 0.99, 29)
    vector = policy.backoff_delay(k, u, backoff)
    assert vector.tolist() == [
        policy.backoff_delay(int(a), float(b), backoff) for a, b in zip(k, u, strict=True)
    ]


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30.0),
        (" 7 ", 7.0),
        ("-1", -1.0),
        ("0", 0.0),
        (email.utils.formatdate(NOW + 120, usegmt=True), 120.0),
        (email.utils.formatdate(NOW - 120, usegmt=True), 0.0),
        ("soon", None),
        ("1.5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_or_http_date(header, seconds):
    parsed = policy.parse_retry_after(header, NOW)
    assert parsed == (None if seconds is None else pytest.approx(seconds, abs=1))


RP = RetryPolicy(maximum_event_age=3600, maximum_retry_attempts=3)


def decide(
    outcome,
    retries_done=0,
    arrival=0.0,
    complete=10.0,
    backoff=2.0,
    retry_after=math.nan,
    dlq=True,
    rp=RP,
):
    return policy.decide(outcome, retries_done, arrival, complete, backoff, retry_after, rp, dlq)


def test_delivered_and_not_retryable():
    assert decide(policy.DELIVERED)[1:] == (policy.FINAL_DELIVERED, policy.NO_REASON)
    assert decide(policy.FAILED)[1:] == (policy.FINAL_DLQ, policy.NOT_RETRYABLE)
    assert decide(policy.FAILED, dlq=False)[1:] == (policy.FINAL_DROPPED, policy.NOT_RETRYABLE)


@pytest.mark.parametrize("kind", [policy.RETRY, policy.TIMEOUT, policy.CONNECTION_ERROR])
def test_retryable_waits_the_longer_of_backoff_and_retry_after(kind):
    assert decide(kind).next_ready_at == 12.0
    assert decide(kind, retry_after=30).next_ready_at == 40.0
    assert decide(kind, backoff=50, retry_after=30).next_ready_at == 60.0
    assert decide(kind).final == policy.NO_FINAL


def test_negative_retry_after_stops_retrying():
    assert decide(policy.RETRY, retry_after=-1)[1:] == (
        policy.FINAL_DLQ,
        policy.RETRY_AFTER_NEGATIVE,
    )


def test_retry_attempt_limit():
    assert decide(policy.RETRY, retries_done=2).final == policy.NO_FINAL
    assert decide(policy.RETRY, retries_done=3)[1:] == (
        policy.FINAL_DLQ,
        policy.MAXIMUM_RETRY_ATTEMPTS,
    )
    zero = RetryPolicy(maximum_retry_attempts=0)
    assert decide(policy.TIMEOUT, rp=zero)[2] == policy.MAXIMUM_RETRY_ATTEMPTS


def test_a_wait_ending_past_the_maximum_age_ends_the_event_now():
    assert decide(policy.RETRY, complete=3590, backoff=10).final == policy.NO_FINAL  # ends at 3600
    late = decide(policy.RETRY, complete=3590, backoff=10.001)
    assert late[1:] == (policy.FINAL_DLQ, policy.MAXIMUM_EVENT_AGE) and math.isnan(
        late.next_ready_at
    )
    assert decide(policy.RETRY, complete=3000, retry_after=601)[2] == policy.MAXIMUM_EVENT_AGE


@settings(max_examples=200)
@given(
    st.sampled_from([policy.DELIVERED, policy.RETRY, policy.FAILED, policy.TIMEOUT]),
    st.integers(0, 185),
    st.floats(0, 1e5),
    st.floats(0, 1e4),
    st.floats(0, 900),
    st.one_of(st.just(math.nan), st.floats(-5, 1e4)),
    st.booleans(),
)
def test_decision_invariants(kind, retries, arrival, after, backoff, retry_after, dlq):
    rp = RetryPolicy()
    d = policy.decide(kind, retries, arrival, arrival + after, backoff, retry_after, rp, dlq)
    if d.final == policy.NO_FINAL:
        assert kind != policy.DELIVERED and retries < rp.maximum_retry_attempts
        assert d.next_ready_at >= arrival + after + backoff
        assert d.next_ready_at <= arrival + rp.maximum_event_age
        assume(not math.isnan(retry_after))
        assert d.next_ready_at >= arrival + after + retry_after
    else:
        assert math.isnan(d.next_ready_at)
        if kind != policy.DELIVERED:
            assert d.final == (policy.FINAL_DLQ if dlq else policy.FINAL_DROPPED)


def test_decide_vectorized_equals_scalar():
    kinds = np.array([policy.DELIVERED, policy.RETRY, policy.FAILED, policy.TIMEOUT, policy.RETRY])
    retry_after = np.array([np.nan, -1, np.nan, 5, np.nan])
    vector = policy.decide(kinds, np.array([0, 1, 0, 3, 2]), 0.0, 10.0, 2.0, retry_after, RP, True)
    for i in range(kinds.size):
        one = policy.decide(
            int(kinds[i]), [0, 1, 0, 3, 2][i], 0.0, 10.0, 2.0, float(retry_after[i]), RP, True
        )
        assert (vector.final[i], vector.reason[i]) == (one.final, one.reason)
        assert np.isclose(vector.next_ready_at[i], one.next_ready_at, equal_nan=True)


def test_dlq_attributes():
    assert policy.error_code(policy.STATUS_TIMEOUT) == "TIMEOUT"
    assert policy.error_code(policy.STATUS_CONNECTION_ERROR) == "CONNECTION_FAILURE"
    assert policy.error_code(503) == "ERROR_FROM_TARGET"
    assert policy.exhausted_retry_condition(policy.MAXIMUM_EVENT_AGE) == "MaximumEventAgeInSeconds"
    assert policy.exhausted_retry_condition(policy.MAXIMUM_RETRY_ATTEMPTS) == "MaximumRetryAttempts"
    assert policy.exhausted_retry_condition(policy.NOT_RETRYABLE) is None
    assert policy.exhausted_retry_condition(policy.RETRY_AFTER_NEGATIVE) is None


# --- the scalar fast paths (live core, one attempt at a time) equal the array paths (model) ---


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    policy.DELIVERED,
                    policy.RETRY,
                    policy.FAILED,
                    policy.TIMEOUT,
                    policy.CONNECTION_ERROR,
                ]
            ),
            st.integers(0, 185),
            st.floats(0, 1e5),
            st.floats(0, 1e4),
            st.floats(0, 900),
            st.one_of(st.just(math.nan), st.floats(-5, 1e4)),
        ),
        min_size=1,
        max_size=20,
    ),
    st.booleans(),
)
def test_decide_scalar_path_equals_array_path(rows, dlq):
    rp = RetryPolicy(maximum_event_age=7200, maximum_retry_attempts=20)
    kind, retries, arrival, after, backoff, retry_after = (
        np.array(c) for c in zip(*rows, strict=True)
    )
    vector = policy.decide(kind, retries, arrival, arrival + after, backoff, retry_after, rp, dlq)
    for i, row in enumerate(rows):
        one = policy.decide(row[0], row[1], row[2], row[2] + row[3], row[4], row[5], rp, dlq)
        assert (one.final, one.reason) == (vector.final[i], vector.reason[i])
        assert np.isclose(
            one.next_ready_at, vector.next_ready_at[i], rtol=0, atol=0, equal_nan=True
        )


@given(
    backoffs,
    st.lists(
        st.tuples(st.integers(1, 185), st.floats(0, 1, exclude_max=True), st.floats(0.01, 3600)),
        min_size=1,
        max_size=20,
    ),
)
def test_backoff_scalar_path_equals_array_path(backoff, rows):
    k, u, previous = (np.array(c) for c in zip(*rows, strict=True))
    vector = policy.backoff_delay(k, u, backoff, previous)
    scalar = [policy.backoff_delay(int(a), float(b), backoff, float(c)) for a, b, c in rows]
    # NumPy's vectorized pow may round the last bit differently from the C library's
    np.testing.assert_allclose(vector, np.array(scalar), rtol=1e-12, atol=0)


@given(ready_times, st.floats(0.1, 1000), st.integers(1, 50))
def test_token_bucket_take_equals_the_block_schedule(ready, rate, capacity):
    bucket = policy.TokenBucket(rate, float(capacity))
    one_by_one = [bucket.take(a) for a in ready]
    block, state = policy.gcra_schedule(0.0, rate, float(capacity), np.array(ready))
    # the closed form sums n spacings at once; one at a time they accumulate: equal to rounding
    np.testing.assert_allclose(np.array(one_by_one), block, rtol=0, atol=1e-9)
    assert bucket.full_at == pytest.approx(state[-1], abs=1e-9)
