"""`config_for_scenario` for a bus scenario: the core config validation runs (docs/bus.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sim.errors import InputError
from sim.live.config.from_scenario import MATCHED_RULES
from sim.live.config.loading import config_for_scenario
from sim.plan.draft import draft_scenario
from sim.scenario.loading import build_scenario
from sim.scenario.model import Scenario

ENDPOINT = {"latency": {"kind": "constant", "value": 0}}
URLS = {"a": "http://127.0.0.1:8001/a", "b": "http://127.0.0.1:8002/b"}


def bus(**overrides: Any) -> Scenario:
    """Destinations `a` (50/s) and `b` (unlimited); rules r1, r2 -> a, r3 -> b; quota 60/s."""
    data: dict[str, Any] = {
        "name": "shop",
        "horizon": 60,
        "seed": 5,
        "arrivals": [{"kind": "constant", "rate_per_second": 10}],
        "account": {"invocation_limit_per_second": 60, "order": "before_destination"},
        "destinations": [
            {
                "name": "a",
                "invocation_rate_limit_per_second": 50,
                "timeout": 2,
                "endpoint": ENDPOINT,
            },
            {
                "name": "b",
                "invocation_rate_limit_per_second": None,
                "timeout": 2,
                "endpoint": ENDPOINT,
            },
        ],
        "rules": [
            {"name": "r1", "match_fraction": 0.5, "target": "a", "dead_letter_queue": True},
            {
                "name": "r2",
                "match_fraction": 0.2,
                "target": "a",
                "retry_policy": {"maximum_retry_attempts": 3, "maximum_event_age": "10m"},
            },
            {"name": "r3", "match_fraction": 1, "target": "b"},
        ],
    }
    data.update(overrides)
    return build_scenario(data, source="shop.yaml", base_dir=Path("."))


def test_one_api_destination_per_destination_each_at_its_own_endpoint() -> None:
    config = config_for_scenario(bus(), URLS)
    destinations = {d.Name: d for d in config.ApiDestinations}
    assert set(destinations) == {"a", "b"}
    assert destinations["a"].InvocationEndpoint == URLS["a"]
    assert destinations["a"].InvocationRateLimitPerSecond == 50
    assert destinations["b"].InvocationRateLimitPerSecond is None
    assert config.burst(destinations["a"]) == 50  # one second of its rate, as in the scenario
    assert config.sim.timeout == 2


def test_one_url_for_all_gives_each_destination_a_path_of_its_own() -> None:
    config = config_for_scenario(bus(), "http://127.0.0.1:8000/")
    endpoints = [d.InvocationEndpoint for d in config.ApiDestinations]
    assert endpoints == ["http://127.0.0.1:8000/a", "http://127.0.0.1:8000/b"]


def test_one_rule_per_bus_rule_with_its_retry_policy_and_dead_letter_queue() -> None:
    config = config_for_scenario(bus(), URLS)
    rules = {r.Name: r for r in config.Rules}
    assert list(rules) == ["r1", "r2", "r3"]
    targets = {name: rule.Targets[0] for name, rule in rules.items()}
    assert {name: config.destination_of(t).Name for name, t in targets.items()} == {
        "r1": "a",
        "r2": "a",
        "r3": "b",
    }
    assert targets["r1"].DeadLetterConfig is not None
    assert targets["r1"].DeadLetterConfig.Arn.endswith(":shop-r1-dlq")
    assert targets["r2"].DeadLetterConfig is None and targets["r3"].DeadLetterConfig is None
    r2 = config.retry_policy(targets["r2"])
    assert (r2.maximum_retry_attempts, r2.maximum_event_age) == (3, 600)
    assert config.retry_policy(targets["r1"]).maximum_retry_attempts == 185


def test_each_rule_selects_the_events_that_list_it() -> None:
    config = config_for_scenario(bus(), URLS)
    event = {
        "id": "1",
        "source": "sim.validation",
        "detail-type": "x",
        "detail": {MATCHED_RULES: ["r1", "r3"]},
    }
    assert [r.Name for r in config.Rules if r.pattern.matches(event)] == ["r1", "r3"]
    event["detail"][MATCHED_RULES] = []
    assert not any(r.pattern.matches(event) for r in config.Rules)


def test_the_account_quota_goes_to_sim_with_its_effective_burst_and_order() -> None:
    quota = config_for_scenario(bus(), URLS).sim.account_quota
    assert (quota.invocation_limit_per_second, quota.burst, quota.order) == (
        60,
        60,
        "before_destination",
    )
    unlimited = bus(account={"invocation_limit_per_second": None})
    assert (
        config_for_scenario(unlimited, URLS).sim.account_quota.invocation_limit_per_second is None
    )


def test_the_drafted_scenario_of_the_config_has_the_same_bus() -> None:
    """`sim scenario` on the config gives back the destinations, rules and account quota."""
    scenario = bus()
    config = config_for_scenario(scenario, URLS)
    drafted = draft_scenario(config, config_source="c.yaml", name="shop").scenario.bus
    assert drafted.account == scenario.bus.account.model_copy(update={"burst_capacity": 60.0})
    assert [(r.name, r.target, r.dead_letter_queue) for r in drafted.rules] == [
        (r.name, r.target, r.dead_letter_queue) for r in scenario.bus.rules
    ]
    assert [r.retry_policy for r in drafted.rules] == [r.retry_policy for r in scenario.bus.rules]
    assert [d.invocation_rate_limit_per_second for d in drafted.destinations] == [50, None]


@pytest.mark.parametrize(
    ("change", "key", "setting"),
    [
        ({"destinations.1.timeout": 3}, "destinations.1.timeout", "sim.timeout"),
        ({"destinations.1.throttle_order": "lifo"}, "destinations.1.throttle_order", "sim.throttle_order"),
        ({"destinations.1.invocation_rate_limit_per_second": 20, "destinations.1.burst_capacity": 5},
         "destinations.1.burst_capacity", "sim.burst_capacity"),
        ({"rules.2.retry_policy.backoff.base": "2s"}, "rules.2.retry_policy.backoff", "sim.backoff"),
        ({"rules.1.retry_policy.retry_statuses": [429]}, "rules.1.retry_policy.retry_statuses",
         "sim.retry_statuses"),
    ],
)  # fmt: skip
def test_settings_the_core_takes_once_must_agree(
    change: dict[str, Any], key: str, setting: str
) -> None:
    from sim.scenario.loading import with_overrides

    scenario = with_overrides(bus(), change)
    with pytest.raises(InputError) as caught:
        config_for_scenario(scenario, URLS)
    assert (caught.value.source, caught.value.key) == ("shop.yaml", key)
    assert f"the live core takes one `{setting}`" in caught.value.problem


def test_equal_explicit_bursts_are_one_setting() -> None:
    from sim.scenario.loading import with_overrides

    scenario = with_overrides(
        bus(),
        {
            "destinations.1.invocation_rate_limit_per_second": 20,
            "destinations.0.burst_capacity": 5,
            "destinations.1.burst_capacity": 5,
        },
    )
    config = config_for_scenario(scenario, URLS)
    assert config.sim.burst_capacity == 5
    assert [config.burst(d) for d in config.ApiDestinations] == [5, 5]
