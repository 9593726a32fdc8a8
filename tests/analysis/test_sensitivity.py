"""Sensitivity to the ASSUMPTION settings: ranges, the one-at-a-time design, exact zero moves
where a setting cannot matter (common random numbers), real moves where it does, and skips."""

import math

import pytest

import sim.analysis.sensitivity as sensitivity_module
from sim.analysis.sensitivity import baseline_values, default_ranges, sensitivity
from tests.support.builders import scenario

SETTINGS = [
    "destination.burst_capacity",
    "destination.throttle_order",
    "retry_policy.backoff.base",
    "retry_policy.backoff.multiplier",
    "retry_policy.backoff.cap",
    "retry_policy.backoff.jitter",
]


def burst_scenario(**overrides):
    """A burst over the limit and an endpoint that never errs: the backoff cannot matter."""
    data = dict(
        name="sens",
        horizon=600,
        replications=3,
        seed=6,
        arrivals=[
            {"kind": "constant", "rate_per_second": 10},
            {"kind": "burst", "start": 60, "duration": 30, "rate_per_second": 100},
        ],
        destination={"invocation_rate_limit_per_second": 40},
        endpoint={"latency": {"kind": "constant", "value": 0.05}},
        slo={"max_p99_delivery_delay": 60},
    )
    data.update(overrides)
    return scenario(**data)


def test_default_ranges_cover_every_assumption_and_include_the_baseline():
    s = burst_scenario(retry_policy={"backoff": {"base": 2, "cap": 120}})
    ranges = default_ranges(s)
    assert list(ranges) == SETTINGS and set(s.assumptions()) == set(ranges)
    baseline = baseline_values(s)
    assert all(baseline[k] in values for k, values in ranges.items())
    assert ranges["destination.burst_capacity"] == [1.0, 4.0, 40.0, 200.0]
    assert ranges["retry_policy.backoff.base"] == [0.2, 1.0, 2.0, 5.0]
    assert ranges["retry_policy.backoff.cap"] == [60.0, 120.0, 300.0, 900.0, 3600.0]
    unlimited = burst_scenario(destination={"invocation_rate_limit_per_second": None})
    assert "destination.burst_capacity" not in default_ranges(unlimited)


@pytest.fixture(scope="module")
def result():
    return sensitivity(burst_scenario(), workers=2)


@pytest.mark.slow
def test_one_at_a_time_design(result):
    ranges = default_ranges(burst_scenario())
    assert len(result.sweep.points) == 1 + sum(len(v) - 1 for v in ranges.values())
    assert result.sweep.points[0] == {}  # the baseline
    for setting, by_value in result.points.items():
        assert by_value[result.baseline[setting]] == 0
        assert sorted(map(str, by_value)) == sorted(map(str, ranges[setting]))


def test_settings_that_cannot_matter_move_nothing_exactly(result):
    """No errors means no retries: every backoff setting leaves every prediction unchanged —
    exactly, because all values run on the same random numbers."""
    table = result.table()
    backoff = table[table["setting"].str.startswith("retry_policy.backoff")]
    assert len(backoff) > 0 and (backoff["max_change_pct"] == 0).all()
    holds = result.conclusions().set_index("setting")
    assert holds.loc["retry_policy.backoff.cap", "holds"]


def test_throttle_order_and_burst_move_the_delay(result):
    table = result.table().set_index(["setting", "metric"])
    p99 = table.loc[("destination.burst_capacity", "delivery_delay_s.p99")]
    assert p99["max_change_pct"] > 0 and p99["low_at"] == 200.0  # a bigger bucket drains faster
    order = table.loc[("destination.throttle_order", "delivery_delay_s.p99")]
    assert (
        order["high_at"] == "lifo" and order["max_change_pct"] > 50
    )  # newest-first starves the oldest
    flips = result.conclusions().set_index("setting").loc["destination.throttle_order"]
    assert flips["baseline_met"] and not flips["holds"] and flips["flips_at"] == "lifo"


def test_undefined_metrics_are_listed_not_averaged(result):
    table = result.table()
    drain = table[table["metric"] == "time_to_drain_s"]
    assert drain["baseline"].notna().all() and (drain["undefined_at"] == "").all()
    assert math.isfinite(drain["max_change_pct"].max())


def test_values_the_model_cannot_run_are_skipped_with_a_note(monkeypatch):
    real = sensitivity_module.run_one

    def no_lifo(s, replication, *args, **kwargs):
        if s.destination.throttle_order == "lifo":
            raise NotImplementedError("throttle_order: lifo is not supported by the model yet")
        return real(s, replication, *args, **kwargs)

    monkeypatch.setattr(sensitivity_module, "run_one", no_lifo)
    ranges = {
        "destination.throttle_order": ["fifo", "lifo"],
        "retry_policy.backoff.jitter": ["full", "none"],
    }
    partial = sensitivity(burst_scenario(replications=2), ranges=ranges, workers=1)
    assert "destination.throttle_order" not in partial.points
    assert partial.skipped == {
        "destination.throttle_order=lifo": "throttle_order: lifo is not supported by the model yet"
    }
    assert list(partial.points) == ["retry_policy.backoff.jitter"]


def test_burst_values_stay_valid_for_rates_below_one_per_second():
    slow = scenario(destination={"invocation_rate_limit_per_second": 0.5})
    bursts = default_ranges(slow)["destination.burst_capacity"]
    assert min(bursts) >= 1 and 2.5 in bursts
