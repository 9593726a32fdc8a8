"""The model on a bus (docs/bus.md T1-T3): the account quota in theory, the single form as a bus of
one, and block-size independence under an account quota for both orders."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.des import engine
from sim.records import concat
from sim.runner.replications import run_one
from sim.scenario.loading import build_scenario
from tests.support.builders import ListSink

GOLDEN = Path(__file__).parents[1] / "golden"
CONSTANT_10MS = {"latency": {"kind": "constant", "value": 0.01}, "responses": {200: 1.0}}


def bus(destinations, rules, account, horizon=600, rate=400, seed=5, **extra):
    data = {
        "name": "bus-test",
        "horizon": horizon,
        "seed": seed,
        "replications": 1,
        "arrivals": [{"kind": "constant", "rate_per_second": rate}],
        "account": account,
        "destinations": destinations,
        "rules": rules,
        **extra,
    }
    return build_scenario(data, source="test", base_dir=Path("."))


def two_partners(limit_a, limit_b, quota, order="after_destination", horizon=600):
    destinations = [
        {"name": name, "invocation_rate_limit_per_second": limit, "endpoint": CONSTANT_10MS}
        for name, limit in (("a", limit_a), ("b", limit_b))
    ]
    rules = [
        {"name": "to-a", "match_fraction": 1, "target": "a"},
        {"name": "to-b", "match_fraction": 1, "target": "b"},
    ]
    account = {"invocation_limit_per_second": quota, "order": order}
    return bus(destinations, rules, account, horizon=horizon)


def attempts_per_destination(scenario):
    summary = run_one(scenario, 0).summary
    return (
        summary["destinations.a.InvocationAttempts"],
        summary["destinations.b.InvocationAttempts"],
        summary,
    )


@pytest.mark.slow
@pytest.mark.parametrize("order", ["after_destination", "before_destination"])
def test_t1_account_quota_passes_its_rate_and_shares_it_fairly(order):
    """Issue Done-means: 2 x 300/s fed 400/s each, quota 500/s, 10 min: 500 + 500 x 600 attempts
    within 1 %, each destination half of them within 5 %."""
    a, b, summary = attempts_per_destination(two_partners(300, 300, 500, order))
    expected = 500 + 500 * 600
    assert a + b == summary["InvocationAttempts"]
    assert a + b == pytest.approx(expected, rel=0.01)
    assert a == pytest.approx(expected / 2, rel=0.05)
    assert b == pytest.approx(expected / 2, rel=0.05)
    assert summary["account.throttled_fraction"] > 0.9  # the account holds nearly every attempt
    assert summary["account.peak_rps"] <= 500 + 500 + 1  # rate + burst in the first second


@pytest.mark.slow
def test_t2_the_order_matters_when_a_destination_limit_binds():
    """docs/bus.md T2: a limit 100/s, b 300/s, quota 300/s, 10 min. after_destination: b takes what
    a cannot use (about 100 + 200 per second); before_destination: the quota alternates and b gets
    about 150 per second."""
    after_a, after_b, _ = attempts_per_destination(two_partners(100, 300, 300))
    before_a, before_b, _ = attempts_per_destination(
        two_partners(100, 300, 300, "before_destination")
    )
    assert after_a == pytest.approx(100 * 600, rel=0.03)
    assert before_a == pytest.approx(100 * 600, rel=0.03)
    assert after_b == pytest.approx(200 * 600, rel=0.03)
    assert before_b == pytest.approx(150 * 600, rel=0.03)


def _as_bus(single: dict) -> dict:
    """A single-destination scenario rewritten as a bus of one (docs/bus.md T3)."""
    data = dict(single)
    destination = dict(data.pop("destination"))
    destination.setdefault("name", "partner")
    destination["endpoint"] = data.pop("endpoint")
    rule = {"name": "all-events", "match_fraction": 1, "target": destination["name"]}
    if "retry_policy" in data:
        rule["retry_policy"] = data.pop("retry_policy")
    if "dead_letter_queue" in data:
        rule["dead_letter_queue"] = data.pop("dead_letter_queue")
    data.update(
        account={"invocation_limit_per_second": None},
        destinations=[destination],
        rules=[rule],
    )
    return data


@pytest.mark.slow
@pytest.mark.parametrize("name", ["burst", "capacity", "lifo", "inputs"])
def test_t3_the_single_form_is_a_bus_of_one(name):
    """A bus with one destination, one rule matching everything and no quota gives the single
    form's summary exactly, metric by metric, replication by replication."""
    path = GOLDEN / f"{name}.yaml"
    single_data = yaml.safe_load(path.read_text())
    single = build_scenario(single_data, source=str(path), base_dir=GOLDEN)
    as_bus = build_scenario(_as_bus(single_data), source=str(path), base_dir=GOLDEN)
    assert as_bus.is_bus and not single.is_bus
    for replication in range(min(single.replications, 2)):
        expected = run_one(single, replication)
        got = run_one(as_bus, replication)
        for key, value in expected.summary.items():
            assert got.summary[key] == pytest.approx(value, rel=0, abs=0, nan_ok=True), key
            destination = f"destinations.{as_bus.bus.destinations[0].name}.{key}"
            if key != "replication":
                assert got.summary[destination] == pytest.approx(value, abs=0, nan_ok=True), key
        columns = [c for c in expected.timeseries.columns]
        assert (got.timeseries[columns].to_numpy() == expected.timeseries.to_numpy()).all()
        assert got.summary["account.throttled_fraction"] == 0


def busy_bus(order, horizon=240):
    """Three destinations, four rules (two share one destination, different retry policies), an
    account quota that binds, retries, Retry-After, age-outs and a capacity-limited endpoint."""
    flaky = {
        "latency": {"kind": "lognormal", "median": 0.05, "p99": 0.4},
        "responses": {200: 0.8, 503: 0.15, 429: 0.04, 400: 0.01},
        "retry_after": {429: 2},
        "timeout_probability": 0.01,
    }
    crowded = {
        "latency": {"kind": "gamma", "mean": 0.2, "cv": 1.2},
        "capacity": {"concurrency": 4, "queue": 6, "overload_status": 503},
    }
    destinations = [
        {"name": "a", "invocation_rate_limit_per_second": 40, "burst_capacity": 10,
         "timeout": 1, "endpoint": flaky},
        {"name": "b", "invocation_rate_limit_per_second": 25, "endpoint": crowded},
        {"name": "c", "invocation_rate_limit_per_second": None, "endpoint": CONSTANT_10MS},
    ]  # fmt: skip
    short = {"maximum_event_age": 60, "backoff": {"base": 0.5, "multiplier": 2, "cap": 8}}
    rules = [
        {"name": "r0", "match_fraction": 0.7, "target": "a", "retry_policy": short,
         "dead_letter_queue": True},
        {"name": "r1", "match_fraction": 0.5, "target": "b"},
        {"name": "r2", "match_fraction": 0.4, "target": "a",
         "retry_policy": {"maximum_retry_attempts": 2}},
        {"name": "r3", "match_fraction": 1, "target": "c"},
    ]  # fmt: skip
    account = {"invocation_limit_per_second": 70, "burst_capacity": 20, "order": order}
    return bus(destinations, rules, account, horizon=horizon, rate=40, seed=9)


def _rows(scenario, block_sizes):
    """All attempt rows, ordered by delivery (event, rule) then attempt."""
    sink = ListSink()
    engine.Model(scenario, 0, sink, block_sizes=block_sizes).run()
    merged = concat(sink.chunks)
    order = np.lexsort((merged["attempt"], merged["rule"], merged["event_id"]))
    return {name: column[order] for name, column in merged.items()}


@pytest.mark.slow
@pytest.mark.parametrize("order", ["after_destination", "before_destination"])
def test_bus_records_do_not_depend_on_block_size(order):
    s = busy_bus(order)
    default = _rows(s, (engine.MIN_BLOCK, engine.FIRST_BLOCK, engine.MAX_BLOCK))
    one_by_one = _rows(s, (1, 1, 1))
    assert default["event_id"].size > 15_000
    assert (default["account_wait_s"] > 0).mean() > 0.1  # the quota binds
    assert set(np.unique(default["rule"]).tolist()) == {0, 1, 2, 3}
    for name in default:
        if default[name].dtype.kind == "f":
            np.testing.assert_allclose(default[name], one_by_one[name], atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(default[name], one_by_one[name], err_msg=name)


def test_lifo_under_an_account_quota_is_refused_with_its_key():
    from sim.errors import InputError
    from sim.runner.replications import run_replications

    s = two_partners(300, 300, 500, horizon=60)
    lifo = bus(
        [{"name": "a", "throttle_order": "lifo", "endpoint": CONSTANT_10MS}],
        [{"name": "to-a", "match_fraction": 1, "target": "a"}],
        {"invocation_limit_per_second": 100},
        horizon=60,
    )
    assert run_replications(s, workers=1)  # fifo runs
    with pytest.raises(InputError) as caught:
        run_replications(lifo, workers=1)
    assert caught.value.key == "destinations.a.throttle_order"
