"""The account quota's decisions in `sim.policy` (docs/bus.md B4, B5), shared by the engines."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from sim import policy
from sim.scenario.model import RetryPolicy

AGE_60 = RetryPolicy(maximum_event_age=60)


def test_a_grant_takes_the_accounts_token_as_the_bucket_would() -> None:
    account = policy.TokenBucket(rate_per_second=2.0, capacity=2.0)
    grants = [policy.account_grant(account, 0.0, 0.0, AGE_60) for _ in range(4)]
    assert grants == [0.0, 0.0, 0.5, 1.0]


def test_a_delivery_that_would_age_out_first_takes_no_account_token() -> None:
    account = policy.TokenBucket(rate_per_second=1.0, capacity=1.0)
    assert policy.account_grant(account, 0.0, 0.0, AGE_60) == 0.0
    before = account.full_at
    assert policy.account_grant(account, 0.5, -59.5, AGE_60) is None  # its token: 1.0 > 0.5
    assert account.full_at == before
    assert policy.account_grant(account, 0.5, 0.0, AGE_60) == 1.0


def test_a_heads_eligibility_is_its_destinations_token_time_and_takes_nothing() -> None:
    destination = policy.TokenBucket(rate_per_second=10.0, capacity=1.0)
    destination.take(0.0)
    assert policy.head_eligible_at(destination, 0.0) == 0.1
    assert policy.head_eligible_at(destination, 0.3) == 0.3
    assert destination.full_at == 0.1


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
    never = RetryPolicy(maximum_event_age=86400)
    grants = [policy.account_grant(account, t, t, never) for t in ready]
    schedule, _ = policy.gcra_schedule(0.0, rate, float(capacity), np.array(ready))
    np.testing.assert_allclose(np.array(grants, dtype=float), schedule, atol=1e-9)
