"""The account quota's decisions in `sim.policy` (docs/bus.md B4, B5), shared by the engines."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim import policy


def test_a_grant_takes_the_accounts_token_as_the_bucket_would() -> None:
    account = policy.TokenBucket(rate_per_second=2.0, capacity=2.0)
    grants = [policy.account_grant(account, 0.0, 60.0) for _ in range(4)]
    assert grants == [0.0, 0.0, 0.5, 1.0]


def test_a_delivery_that_would_age_out_first_takes_no_account_token() -> None:
    account = policy.TokenBucket(rate_per_second=1.0, capacity=1.0)
    assert policy.account_grant(account, 0.0, 60.0) == 0.0
    before = account.full_at
    assert policy.account_grant(account, 0.5, 0.5) is None  # its token: 1.0 > 0.5
    assert account.full_at == before
    assert policy.account_grant(account, 0.5, 60.0) == 1.0


def test_a_heads_eligibility_is_the_latest_of_ready_head_since_and_token() -> None:
    destination = policy.TokenBucket(rate_per_second=10.0, capacity=1.0)
    destination.take(0.0)
    token = policy.token_from(destination.full_at, 10.0, 1.0)
    assert policy.head_eligible_at(0.0, -np.inf, token) == 0.1  # its destination's token
    assert policy.head_eligible_at(0.3, -np.inf, token) == 0.3  # its ready time
    assert policy.head_eligible_at(0.0, 0.7, token) == 0.7  # when it became its line's head
    assert destination.full_at == 0.1
    assert policy.head_eligible_at(5.0, 0.0, policy.token_from(0.0, None, 1.0)) == 5.0


def test_the_accounts_line_before_destinations_is_oldest_ready_then_file_order() -> None:
    keys = [
        policy.before_key(1.0, 1, 0),
        policy.before_key(1.0, 0, 1),
        policy.before_key(0.5, 2, 2),
    ]
    assert sorted(keys) == [(0.5, 2, 2), (1.0, 0, 1), (1.0, 1, 0)]


def test_one_head_at_a_time_gives_what_arbitrate_gives() -> None:
    """The live core's decisions (head_eligible_at, grant_key, account_grant, one grant at a
    time) and the model's block walk (`arbitrate`) grant the same tokens at the same times."""
    rng = np.random.default_rng(3)
    ready = [np.sort(rng.uniform(0, 2, 60)).tolist(), np.sort(rng.uniform(0, 2, 80)).tolist()]
    rates, caps = [20.0, 50.0], [3.0, 5.0]
    deadline = [[t + 60.0 for t in line] for line in ready]
    walked = policy.arbitrate(ready, deadline, [0, 0], rates, caps, [0.0, 0.0],
                              [-np.inf, -np.inf], 0.0, 40.0, 4.0)  # fmt: skip
    buckets = [policy.TokenBucket(r, c) for r, c in zip(rates, caps, strict=True)]
    account = policy.TokenBucket(40.0, 4.0)
    head_since, index, grants = [-np.inf, -np.inf], [0, 0], []
    while any(i < len(line) for i, line in zip(index, ready, strict=True)):
        keys = [
            policy.grant_key(
                policy.head_eligible_at(
                    ready[d][index[d]],
                    head_since[d],
                    policy.token_from(buckets[d].full_at, rates[d], caps[d]),
                ),
                d,
            )
            for d in range(2)
            if index[d] < len(ready[d])
        ]
        eligible, d = min(keys)
        granted = policy.account_grant(account, eligible, deadline[d][index[d]])
        assert granted is not None
        assert buckets[d].take(granted) == granted  # eligible: its destination's token is there
        head_since[d], index[d] = granted, index[d] + 1
        grants.append((d, granted))
    assert [d for d, _ in grants] == walked.lane
    np.testing.assert_allclose([g for _, g in grants], walked.grant_at, rtol=0, atol=1e-9)
    assert account.full_at == pytest.approx(walked.account_full_at[-1])


def test_heads_are_served_oldest_eligible_first_ties_in_file_order() -> None:
    keys = [policy.grant_key(1.0, 1), policy.grant_key(0.5, 2), policy.grant_key(1.0, 0)]
    assert sorted(keys) == [(0.5, 2), (1.0, 0), (1.0, 1)]


@given(
    st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=100).map(sorted),
    st.floats(0.1, 1000),
    st.integers(1, 50),
)
def test_grants_in_order_are_the_gcra_schedule_when_nothing_ages_out(ready, rate, capacity):
    account = policy.TokenBucket(rate, float(capacity))
    grants = [policy.account_grant(account, t) for t in ready]
    schedule, _ = policy.gcra_schedule(0.0, rate, float(capacity), np.array(ready))
    np.testing.assert_allclose(np.array(grants, dtype=float), schedule, atol=1e-9)
