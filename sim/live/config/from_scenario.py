"""A core config that does what a scenario describes, aimed at local endpoints (for validation).

`config_data` gives the plain config data (`sim.live.config.loading.config_for_scenario`
validates it into a `CoreConfig`):

* **single form**: one API destination (the scenario's), one catch-all rule on the default bus
  with the scenario's retry policy and DLQ;
* **bus form**: one API destination per bus destination, each at its own endpoint URL; one
  rule per bus rule, each with one target (its destination) carrying the rule's retry policy
  and DLQ; the account quota as `sim.account_*`. A bus rule matches an event whose
  `detail.sim-rules` lists the rule's name (`rule_pattern`): whoever sends the events decides
  which rules each matches (validation draws them with the rules' `match_fraction`s).

Both get one API_KEY connection (a fixed, non-secret test key) and `allow_private_endpoints`.
The core takes `burst_capacity`, `timeout`, `throttle_order`, the backoff and the retry
statuses once, in `sim:`, for every destination and target: a bus whose destinations (or
rules) differ in one of them cannot be run by the core, and is an InputError naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sim.errors import InputError
from sim.scenario.bus import Bus, BusDestination, BusRule
from sim.scenario.model import Destination, RetryPolicy, Scenario

CATCH_ALL_PATTERN = {"source": [{"prefix": ""}]}
"""An event pattern every event (with a string `source`) matches."""

MATCHED_RULES = "sim-rules"
"""Key of an event's `detail` listing the bus rules it matches (a list of rule names)."""

CONNECTION = {
    "Name": "validation",
    "AuthorizationType": "API_KEY",
    "AuthParameters": {
        "ApiKeyAuthParameters": {"ApiKeyName": "x-sim-key", "ApiKeyValue": "validation"}
    },
}

EndpointUrls = str | Mapping[str, str]
"""One URL for every destination, or one per destination name."""


def rule_pattern(rule: str) -> dict[str, Any]:
    """The event pattern of a bus rule: events whose `detail.sim-rules` holds its name."""
    return {"detail": {MATCHED_RULES: [rule]}}


def config_data(scenario: Scenario, endpoint_urls: EndpointUrls) -> dict[str, Any]:
    """Plain config data for the scenario (see the module docstring)."""
    if not scenario.is_bus:
        return _single(scenario, _url(endpoint_urls, scenario.destination.name))
    return _bus(scenario, endpoint_urls)


def _url(urls: EndpointUrls, destination: str) -> str:
    return urls if isinstance(urls, str) else urls[destination]


def _queue(name: str) -> str:
    return f"arn:aws:sqs:us-east-1:123456789012:{name}"


def _target(destination: str, retry: RetryPolicy, dead_letter_arn: str | None) -> Any:
    target: dict[str, Any] = {
        "Id": "target",
        "Arn": destination,
        "RetryPolicy": {
            "MaximumEventAgeInSeconds": retry.maximum_event_age,
            "MaximumRetryAttempts": retry.maximum_retry_attempts,
        },
    }
    if dead_letter_arn is not None:
        target["DeadLetterConfig"] = {"Arn": dead_letter_arn}
    return target


def _api_destination(destination: Destination, url: str) -> dict[str, Any]:
    return {
        "Name": destination.name,
        "ConnectionArn": CONNECTION["Name"],
        "InvocationEndpoint": url,
        "HttpMethod": "POST",
        "InvocationRateLimitPerSecond": destination.invocation_rate_limit_per_second,
    }


def _settings(scenario: Scenario, destination: Destination, retry: RetryPolicy) -> dict[str, Any]:
    return {
        "burst_capacity": destination.burst,
        "timeout": destination.timeout,
        "backoff": retry.backoff.model_dump(),
        "retry_statuses": list(retry.retry_statuses),
        "throttle_order": destination.throttle_order,
        "allow_private_endpoints": True,
        "seed": scenario.seed,
    }


def _single(scenario: Scenario, url: str) -> dict[str, Any]:
    destination, retry = scenario.destination, scenario.retry_policy
    queue = _queue(f"{scenario.name}-dlq") if scenario.dead_letter_queue else None
    target = _target(destination.name, retry, queue)
    return {
        "Connections": [CONNECTION],
        "ApiDestinations": [_api_destination(destination, url)],
        "Rules": [{"Name": "all-events", "EventPattern": CATCH_ALL_PATTERN, "Targets": [target]}],
        "sim": _settings(scenario, destination, retry),
    }


def _bus(scenario: Scenario, urls: EndpointUrls) -> dict[str, Any]:
    bus = scenario.bus
    _check_shared_settings(scenario, bus)
    destinations = [
        _api_destination(d, _path(urls, d.name) if isinstance(urls, str) else urls[d.name])
        for d in bus.destinations
    ]
    rules = []
    for rule in bus.rules:
        queue = _queue(f"{scenario.name}-{rule.name}-dlq")
        target = _target(rule.target, rule.retry_policy, queue if rule.dead_letter_queue else None)
        rules.append(
            {"Name": rule.name, "EventPattern": rule_pattern(rule.name), "Targets": [target]}
        )
    settings = _settings(scenario, bus.destinations[0], bus.rules[0].retry_policy)
    settings["burst_capacity"] = _burst_setting(bus.destinations)
    account = bus.account
    if account.invocation_limit_per_second is not None:
        settings["account_invocation_limit_per_second"] = account.invocation_limit_per_second
        settings["account_burst_capacity"] = account.burst
        settings["account_order"] = account.order
    return {
        "Connections": [CONNECTION],
        "ApiDestinations": destinations,
        "Rules": rules,
        "sim": settings,
    }


def _path(base: str, destination: str) -> str:
    """One endpoint for every destination: a path of its own for each (`BASE/NAME`)."""
    return f"{base.rstrip('/')}/{destination}"


def _burst_setting(destinations: Sequence[BusDestination]) -> float | None:
    """`sim.burst_capacity` giving every destination its burst: null (one second of each
    rate) if that is what they all have, else their common value."""
    if _default_bursts(destinations):
        return None
    limited = [d for d in destinations if d.invocation_rate_limit_per_second is not None]
    return limited[0].burst  # equal for all (checked by `_check_shared_settings`)


def _default_bursts(destinations: Sequence[BusDestination]) -> bool:
    """Whether every rate-limited destination has the default burst, one second of its rate."""
    return all(
        d.burst == max(1.0, d.invocation_rate_limit_per_second)
        for d in destinations
        if d.invocation_rate_limit_per_second is not None
    )


def _check_shared_settings(scenario: Scenario, bus: Bus) -> None:
    """The settings the core takes once for every destination or target must agree."""
    limited = [
        (i, d)
        for i, d in enumerate(bus.destinations)
        if d.invocation_rate_limit_per_second is not None
    ]
    if limited and not _default_bursts(bus.destinations):
        _same(scenario, "destinations", [(i, d.burst) for i, d in limited], "burst_capacity",
              "sim.burst_capacity")  # fmt: skip
    indexed = list(enumerate(bus.destinations))
    _same(scenario, "destinations", [(i, d.timeout) for i, d in indexed], "timeout", "sim.timeout")
    orders = [(i, d.throttle_order) for i, d in indexed]
    _same(scenario, "destinations", orders, "throttle_order", "sim.throttle_order")
    rules: list[tuple[int, BusRule]] = list(enumerate(bus.rules))
    backoffs = [(i, r.retry_policy.backoff.model_dump()) for i, r in rules]
    _same(scenario, "rules", backoffs, "retry_policy.backoff", "sim.backoff")
    statuses = [(i, list(r.retry_policy.retry_statuses)) for i, r in rules]
    _same(scenario, "rules", statuses, "retry_policy.retry_statuses", "sim.retry_statuses")


def _same(
    scenario: Scenario, section: str, values: Sequence[tuple[int, Any]], key: str, setting: str
) -> None:
    first_index, first = values[0]
    for i, value in values[1:]:
        if value != first:
            raise InputError(
                scenario.source,
                f"{section}.{i}.{key}",
                f"{value!r} differs from {section}.{first_index}.{key} ({first!r}): the live "
                f"core takes one `{setting}` for every {section[:-1]}, so sim validate needs "
                "them equal",
            )
