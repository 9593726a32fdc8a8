"""Sizing (one destination's rate limit, or the account quota) and sweeps on a bus (docs/bus.md)."""

from pathlib import Path

import pytest

from sim.analysis.rate_search import target_for
from sim.analysis.sizing import size_rate_limit
from sim.errors import InputError
from sim.scenario.loading import build_scenario

CONSTANT = {"latency": {"kind": "constant", "value": 0.01}}


def two_partners(quota, limit_a=1000.0, limit_b=1000.0):
    """80 events/s, one rule to each destination matching all of them; SLO p99 <= 3 s."""
    data = {
        "name": "size-bus",
        "horizon": 120,
        "seed": 4,
        "replications": 3,
        "arrivals": [{"kind": "constant", "rate_per_second": 80}],
        "account": {"invocation_limit_per_second": quota},
        "destinations": [
            {"name": "a", "invocation_rate_limit_per_second": limit_a, "endpoint": CONSTANT},
            {"name": "b", "invocation_rate_limit_per_second": limit_b, "endpoint": CONSTANT},
        ],
        "rules": [
            {"name": "to-a", "match_fraction": 1, "target": "a"},
            {"name": "to-b", "match_fraction": 0.5, "target": "b"},
        ],
        "sample_every": 10,
        "slo": {"max_p99_delivery_delay": 3},
    }
    return build_scenario(data, source="test", base_dir=Path("."))


@pytest.mark.slow
def test_account_quota_is_sized_above_the_bus_first_attempt_rate():
    """120 first attempts/s (80 x (1 + 0.5)) reach the account: the smallest quota meeting the
    SLO lies just above it, and every quota at or below it is never tried."""
    s = two_partners(quota=500)
    result = size_rate_limit(s, target=target_for(s, None, True), max_rate=200, step=5, workers=1)
    assert result.target.key == "account.invocation_limit_per_second"
    assert result.recommended is not None
    assert 120 < result.recommended <= 140
    assert result.evaluations["rate"].min() > 120
    assert "Set account.invocation_limit_per_second to" in result.sentence()


@pytest.mark.slow
def test_a_destination_limit_is_sized_on_its_own_deliveries():
    """b gets 40 deliveries/s; the account (500/s) never binds: b's limit is sized just above
    40/s, judged on b's delays, whatever a does."""
    s = two_partners(quota=500, limit_a=70)  # a is overloaded (80/s > 70/s): the bus fails
    result = size_rate_limit(s, target=target_for(s, "b", False), max_rate=100, step=2, workers=1)
    assert result.target.prefix == "destinations.b."
    assert result.recommended is not None
    assert 40 < result.recommended <= 50
    row = result.runs[result.runs["rate"] == result.recommended]
    assert (row["delivery_delay_s.p99_with_pending"] > 3).all()  # the whole bus fails (a)
    assert (row["destinations.b.delivery_delay_s.p99_with_pending"] <= 3).all()


def test_a_bus_needs_a_target_and_the_single_form_refuses_one():
    s = two_partners(quota=500)
    with pytest.raises(InputError, match="--destination NAME"):
        target_for(s, None, False)
    with pytest.raises(InputError, match="no destination named 'c'"):
        target_for(s, "c", False)
    with pytest.raises(InputError):
        size_rate_limit(s, max_rate=100, workers=1)  # no target: the single form's key


def test_a_sweep_varies_a_bus_key_by_name():
    from sim.analysis.sweeps import sweep

    s = two_partners(quota=500)
    key = "destinations.b.invocation_rate_limit_per_second"
    result = sweep(s, {key: [30, 60]}, replications=2, horizon=60, workers=1)
    by_rate = result.runs.groupby(key)["destinations.b.delivery_delay_s.p99_with_pending"].mean()
    assert by_rate[30] > 3 > by_rate[60]  # 40 deliveries/s: 30/s falls behind, 60/s keeps up
    a = result.runs.groupby(key)["destinations.a.InvocationAttempts"].mean()
    assert a[30] == a[60]  # a is not touched: same seeds, same attempts
